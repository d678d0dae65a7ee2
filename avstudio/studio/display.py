"""The clip's sound as the app shows and plays it: the mix at a playback rate, its log-mel
spectrogram and min/max envelope for the timeline, and what the track holds (no track, silence,
sound: :mod:`avstudio.analysis.sound`); numpy only, fast enough for an hour of sound.

The spectrogram is in dB relative to a full-scale sine, on one fixed scale for every clip, from
:data:`SPEC_FLOOR_DB` to :data:`SPEC_TOP_DB`: a quiet clip looks quiet and silence is drawn as
silence (the floor colour), never stretched to fill the colour map."""

from __future__ import annotations

import numpy as np

from ..analysis.sound import NO_AUDIO, sound_of_samples
from ..errors import Cancelled
from ..media import probe, read_audio

#: the spectrogram's fixed display range (dB relative to a full-scale sine): draw it with these
SPEC_FLOOR_DB = -100.0
SPEC_TOP_DB = 0.0


def load_clip_sound(path: str, max_rate: int = 48000, progress=None, cancel=None) -> dict:
    """The clip's sound for playback and its pictures: mix, rate, spectrogram (and the levels to
    draw it with), envelope, and ``"sound"``: the :class:`~avstudio.analysis.sound.SoundCheck`
    made from the same samples. A clip without an audio track gives ``{"sound": NO_AUDIO}``."""
    info = probe(path, check=False)
    if not info.has_audio:
        return {"sound": NO_AUDIO}
    native = int(info.audio_rate or 48000)
    sr = native if 16000 <= native <= max_rate else max_rate
    mix = read_audio(path, sr=sr)
    if cancel is not None and cancel.is_set():
        raise Cancelled("audio loading cancelled")
    spec, hop_s, mel_hz = mel_spectrogram(mix, sr)
    env_t, env_lo, env_hi = envelope(mix, sr)
    n_fft = 2048 if sr > 24000 else 1024
    # column i is the window starting at i * hop: centred at i * hop + n_fft / 2
    t0 = (n_fft / 2.0) / sr - hop_s / 2.0
    return {"mix": mix, "sr": sr, "spec": spec, "spec_hop_s": float(hop_s), "spec_t0": float(t0),
            "spec_levels": (SPEC_FLOOR_DB, SPEC_TOP_DB), "mel_hz": mel_hz, "env_t": env_t, "env_lo": env_lo,
            "env_hi": env_hi, "sound": sound_of_samples(mix, sr)}


def _mel_filters(sr: int, n_fft: int, n_mels: int) -> tuple[np.ndarray, np.ndarray]:
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)

    fmax = sr / 2.0
    mels = np.linspace(hz_to_mel(0.0), hz_to_mel(fmax), n_mels + 2)
    hz = mel_to_hz(mels)
    bins = np.fft.rfftfreq(n_fft, 1.0 / sr)
    fb = np.zeros((n_mels, len(bins)), np.float32)
    for i in range(n_mels):
        lo, c, hi = hz[i], hz[i + 1], hz[i + 2]
        up = (bins - lo) / max(c - lo, 1e-9)
        down = (hi - bins) / max(hi - c, 1e-9)
        fb[i] = np.clip(np.minimum(up, down), 0, None)
    # keep narrow low filters non-empty
    for i in range(n_mels):
        if fb[i].sum() == 0:
            fb[i, np.argmin(np.abs(bins - hz[i + 1]))] = 1.0
    return fb, hz[1:-1]


def mel_spectrogram(x: np.ndarray, sr: int, n_mels: int = 128, max_columns: int = 8000):
    """Log-mel power for display: (dB [n_mels, T], the hop in seconds, the mel centres in Hz).

    dB are relative to a full-scale sine (one at the centre of a band reads about 0 dB there),
    clipped to :data:`SPEC_FLOOR_DB` .. :data:`SPEC_TOP_DB`: draw it with exactly those levels."""
    x = np.asarray(x, np.float32)
    n_fft = 2048 if sr > 24000 else 1024
    hop = max(int(sr * 0.01), int(np.ceil(len(x) / max_columns)))
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    n = 1 + (len(x) - n_fft) // hop
    win = np.hanning(n_fft).astype(np.float32)
    ref = (float(win.sum()) / 2.0) ** 2  # |X|^2 of a full-scale sine at its bin
    fb, centres = _mel_filters(sr, n_fft, n_mels)
    out = np.empty((n_mels, n), np.float32)
    step = 512
    for a in range(0, n, step):
        b = min(n, a + step)
        idx = (np.arange(a, b) * hop)[:, None] + np.arange(n_fft)[None, :]
        frames = x[idx] * win
        p = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        out[:, a:b] = (fb @ p.T.astype(np.float32))
    db = 10.0 * np.log10(np.maximum(out / ref, 10.0 ** (SPEC_FLOOR_DB / 10.0)))
    return np.clip(db, SPEC_FLOOR_DB, SPEC_TOP_DB).astype(np.float32), hop / sr, centres


def envelope(x: np.ndarray, sr: int, bins: int = 4000):
    """Min/max envelope of a waveform in ``bins`` columns: (times, low, high)."""
    if len(x) == 0:
        z = np.zeros(1, np.float32)
        return z, z, z
    bins = max(1, min(bins, len(x)))
    edges = np.linspace(0, len(x), bins + 1).astype(np.int64)
    lo = np.minimum.reduceat(x, edges[:-1])
    hi = np.maximum.reduceat(x, edges[:-1])
    t = (edges[:-1] + edges[1:]) / 2.0 / sr
    return t.astype(np.float64), lo.astype(np.float32), hi.astype(np.float32)
