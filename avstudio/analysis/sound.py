"""Is there sound in a clip? Levels, silence, and the spectrogram the app shows.

A model asked "where is the sound?" always answers somewhere, even when there is nothing to
hear. So before anything localises, counts or separates, the clip's audio is measured:

* **no audio track**: nothing to localise, count or separate;
* **silent**: the loudest :data:`LEVEL_WINDOW_S` window of the track is below
  :data:`SILENCE_DBFS` (digital silence, every sample 0, is minus infinity);
* otherwise **sound**.

Levels are RMS in dBFS as AES17 defines them: a full-scale sine is 0 dBFS (so a full-scale
square wave is +3). -60 dBFS is far below speech in a quiet room (about -50 to -30 dBFS on
a phone) and above the noise of a lossy codec encoding digital silence (below -90 dBFS).

The app draws the spectrogram on a fixed dB scale (:mod:`avstudio.studio.display`), so that
silence is drawn as silence.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from ..progress import check_cancel

#: a track whose loudest window stays below this level (dBFS) is silent
SILENCE_DBFS = -60.0
#: the window over which levels are measured (seconds)
LEVEL_WINDOW_S = 0.05


def level_dbfs(x: np.ndarray) -> float:
    """RMS level of ``x`` in dBFS (AES17: a full-scale sine is 0); -inf for digital silence."""
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return -math.inf
    rms = math.sqrt(float(np.mean(x * x)))
    return 20.0 * math.log10(rms * math.sqrt(2.0)) if rms > 0 else -math.inf


def window_levels(x: np.ndarray, sr: int, window_s: float = LEVEL_WINDOW_S) -> np.ndarray:
    """The level (dBFS) of each whole ``window_s`` window of ``x`` (a shorter tail is its own window)."""
    x = np.asarray(x, np.float64)
    n = max(1, int(round(window_s * sr)))
    if x.size == 0:
        return np.zeros(0)
    m = -(-x.size // n)
    pad = np.zeros(m * n)
    pad[:x.size] = x
    ms = (pad.reshape(m, n) ** 2).sum(1) / np.minimum(n, x.size - np.arange(m) * n)
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(np.sqrt(ms) * math.sqrt(2.0))


@dataclass(frozen=True)
class SoundCheck:
    """What a clip's audio holds: no track, silence, or sound (see the module docstring)."""

    has_audio: bool
    #: the loudest window's level in dBFS (-inf: digital silence; None: no audio track). For a
    #: clip with sound, reading may stop at the first window above the silence floor: then it
    #: is the loudest window read so far.
    loudest_dbfs: Optional[float] = None
    #: the largest sample magnitude read (0..1; None: no audio track)
    peak: Optional[float] = None
    #: seconds of audio read
    seconds: float = 0.0

    @property
    def state(self) -> str:
        """"none" (no audio track), "silent" or "sound"."""
        if not self.has_audio:
            return "none"
        if self.loudest_dbfs is None or self.loudest_dbfs < SILENCE_DBFS:
            return "silent"
        return "sound"

    @property
    def silent(self) -> bool:
        return self.state == "silent"

    @property
    def sound(self) -> bool:
        return self.state == "sound"

    def level_text(self) -> str:
        if self.loudest_dbfs is None or not math.isfinite(self.loudest_dbfs):
            return "digital silence: every sample is 0"
        return f"its loudest {LEVEL_WINDOW_S * 1000:.0f} ms reach {self.loudest_dbfs:.0f} dBFS"

    def note(self) -> Optional[str]:
        """One sentence for a clip without sound (None when there is sound)."""
        if self.state == "none":
            return "this clip has no sound (no audio track): nothing to localise, count or separate"
        if self.state == "silent":
            return (f"this clip is silent ({self.level_text()}; silence is below {SILENCE_DBFS:.0f} dBFS): "
                    "nothing to localise, count or separate")
        return None

    def short(self) -> str:
        """A few words for a status line: "no sound", "silent", "sound"."""
        return {"none": "no sound (no audio track)", "silent": "silent", "sound": "sound"}[self.state]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["state"] = self.state
        d["digital_silence"] = self.has_audio and self.loudest_dbfs is not None and self.loudest_dbfs == -math.inf
        if d["loudest_dbfs"] is not None:
            d["loudest_dbfs"] = round(d["loudest_dbfs"], 2) if math.isfinite(d["loudest_dbfs"]) else None
        d["silence_below_dbfs"] = SILENCE_DBFS
        d["note"] = self.note()
        return d


NO_AUDIO = SoundCheck(has_audio=False)


def no_sound_reason(sound: Optional[SoundCheck]) -> Optional[str]:
    """Why what needs sound (heatmaps, a count, stems, the sound of a pixel) cannot work on a
    clip: "this clip is silent" / "this clip has no sound (no audio track)"; None when it has
    sound or its sound is not known yet. The app shows it on every control it disables."""
    if sound is None or sound.sound:
        return None
    return "this clip has no sound (no audio track)" if sound.state == "none" else "this clip is silent"


def sound_of_samples(x: np.ndarray, sr: int) -> SoundCheck:
    """The :class:`SoundCheck` of a decoded track (mono float samples in -1..1)."""
    x = np.asarray(x, np.float32)
    lv = window_levels(x, sr)
    loud = float(lv.max()) if lv.size else -math.inf
    return SoundCheck(True, loud, float(np.abs(x).max()) if x.size else 0.0, x.size / float(sr))


def check_sound(path, info=None, sr: int = 16000, stop_at_sound: bool = True, cancel=None) -> SoundCheck:
    """Measure a clip's audio (decoded at ``sr``). ``info``: its probe, if already made.

    With ``stop_at_sound`` reading stops at the first window above the silence floor, so a
    clip with sound costs a fraction of a second; a silent one is read to the end.
    """
    from ..media import iter_audio, probe

    info = info if info is not None else probe(path, check=False)
    if not info.has_audio:
        return NO_AUDIO
    n = max(1, int(round(LEVEL_WINDOW_S * sr)))
    loud, peak, seconds = -math.inf, 0.0, 0.0
    carry = np.zeros(0, np.float32)
    for chunk in iter_audio(path, sr, chunk_seconds=5.0):
        check_cancel(cancel, "sound check")
        c = np.asarray(chunk, np.float32)
        seconds += c.size / float(sr)
        if c.size:
            peak = max(peak, float(np.abs(c).max()))
        x = np.concatenate([carry, c])
        whole = (x.size // n) * n
        if whole:
            lv = window_levels(x[:whole], sr)
            loud = max(loud, float(lv.max()))
        carry = x[whole:]
        if stop_at_sound and loud >= SILENCE_DBFS:
            break
    if carry.size and loud < SILENCE_DBFS:
        loud = max(loud, level_dbfs(carry))
    return SoundCheck(True, loud, peak, seconds)


__all__ = ["LEVEL_WINDOW_S", "NO_AUDIO", "SILENCE_DBFS", "SoundCheck", "check_sound", "level_dbfs",
           "no_sound_reason", "sound_of_samples", "window_levels"]
