"""The playback mixer and the audio clock (Qt-free, numpy only).

The mixer is the ``source`` of an :mod:`avstudio.media.audio_out` output: the audio
thread pulls blocks of samples from it. Each track (the original mix, one stem per sound
cluster, the sound of a clicked pixel) keeps its own sample rate and is read at
fractional positions with linear interpolation, so stems at the model's 16 kHz and a
48 kHz mix play together without resampling them in memory, and playback speed (any
factor, negative = backwards) is just a step size.

What is heard is the sum of the tracks that are on: a soloed track silences every
track that is not soloed; a muted one is off. Gain changes ramp over one block (no
clicks).

The clock: every block pulled is logged as (output sample where it starts, media time of
its first sample, speed, seek epoch). :meth:`Mixer.media_time` maps the output's
``position_samples`` (minus its latency: what is being heard now) back to the media time
through that log, so the video follows what the listener hears, including after speed
changes; right after a seek, blocks of the old position that are still in the device's
buffer map to the seek target (the playhead never jumps back).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass
class Track:
    name: str
    data: np.ndarray  # float32 [N]
    sample_rate: int
    gain: float = 1.0
    mute: bool = False
    solo: bool = False
    offset: float = 0.0  # media time (s) of data[0]
    _last_gain: float = 0.0

    @property
    def duration(self) -> float:
        return self.offset + len(self.data) / float(self.sample_rate)


def read_at(data: np.ndarray, sr: int, times: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """Samples of ``data`` (rate ``sr``, starting at media time ``offset``) at ``times``,
    linearly interpolated, zero outside."""
    pos = (times - offset) * sr
    n = len(data)
    i0 = np.floor(pos).astype(np.int64)
    frac = (pos - i0).astype(np.float32)
    ok0 = (i0 >= 0) & (i0 < n)
    ok1 = (i0 + 1 >= 0) & (i0 + 1 < n)
    a = np.where(ok0, data[np.clip(i0, 0, max(0, n - 1))], 0.0) if n else np.zeros(len(times), np.float32)
    b = np.where(ok1, data[np.clip(i0 + 1, 0, max(0, n - 1))], 0.0) if n else np.zeros(len(times), np.float32)
    return (a * (1.0 - frac) + b * frac).astype(np.float32)


class Mixer:
    """Pull source for the audio output: ``mixer(n) -> float32 [n]``."""

    def __init__(self, sample_rate: int = 48000):
        self.sample_rate = int(sample_rate)
        self.tracks: dict[str, Track] = {}
        self.master_gain = 1.0
        self.master_mute = False
        self._lock = threading.RLock()
        self._pos = 0.0  # media seconds of the next sample to render
        self._speed = 1.0
        self._epoch = 0
        self._epoch_start = 0.0
        self._out = 0  # output samples pulled so far (the output's position_samples scale)
        self._log: deque = deque(maxlen=512)
        self.playing = False
        self.peak = 0.0  # level meter (last block)
        self.blocks = 0

    # -- tracks -------------------------------------------------------------------------------
    def set_track(self, name: str, data: np.ndarray, sample_rate: int, offset: float = 0.0,
                  **state) -> Track:
        with self._lock:
            old = self.tracks.get(name)
            t = Track(name, np.ascontiguousarray(data, np.float32).reshape(-1), int(sample_rate),
                      offset=float(offset))
            if old is not None:
                t.gain, t.mute, t.solo = old.gain, old.mute, old.solo
            for k, v in state.items():
                setattr(t, k, v)
            self.tracks[name] = t
            return t

    def remove_track(self, name: str) -> None:
        with self._lock:
            self.tracks.pop(name, None)

    def clear(self) -> None:
        with self._lock:
            self.tracks.clear()

    def set_state(self, name: str, **state) -> None:
        with self._lock:
            t = self.tracks.get(name)
            if t is None:
                return
            for k, v in state.items():
                setattr(t, k, v)

    def audible(self) -> list[str]:
        """Names of the tracks heard now (solo/mute logic)."""
        with self._lock:
            ts = list(self.tracks.values())
        solo = any(t.solo for t in ts)
        return [t.name for t in ts if (t.solo if solo else not t.mute) and t.gain > 0]

    # -- transport ----------------------------------------------------------------------------
    @property
    def speed(self) -> float:
        return self._speed

    def seek(self, media_time: float) -> None:
        with self._lock:
            self._pos = float(media_time)
            self._epoch += 1
            self._epoch_start = self._pos

    def set_speed(self, speed: float) -> None:
        with self._lock:
            self._speed = float(speed)

    def sync_output(self, position_samples: int) -> None:
        """Align the mixer's count of pulled samples with an output's clock (before start)."""
        with self._lock:
            self._out = int(position_samples)
            self._log.clear()
            self._epoch += 1
            self._epoch_start = self._pos

    @property
    def position(self) -> float:
        """Media time of the next sample the mixer will render."""
        return self._pos

    # -- rendering ----------------------------------------------------------------------------
    def render(self, t0: float, n: int, speed: float = 1.0, ramp: bool = False) -> np.ndarray:
        """Mix ``n`` output samples starting at media time ``t0`` (no state change unless ramp)."""
        times = t0 + speed * np.arange(n, dtype=np.float64) / self.sample_rate
        y = np.zeros(n, np.float32)
        with self._lock:
            names = set(self.audible())
            tracks = list(self.tracks.values())
        for t in tracks:
            g = float(t.gain) if t.name in names else 0.0
            g0 = t._last_gain if ramp else g
            if ramp:
                t._last_gain = g
            if g == 0.0 and g0 == 0.0:
                continue
            x = read_at(t.data, t.sample_rate, times, t.offset)
            if g0 != g:
                x *= np.linspace(g0, g, n, dtype=np.float32)
            else:
                x *= g
            y += x
        if self.master_mute:
            y[:] = 0.0
        elif self.master_gain != 1.0:
            y *= self.master_gain
        np.clip(y, -1.0, 1.0, out=y)
        return y

    def __call__(self, n: int) -> np.ndarray:  # the audio thread
        with self._lock:
            t0, speed, epoch = self._pos, self._speed, self._epoch
            self._log.append((self._out, t0, speed, epoch))
            self._out += n
            self._pos = t0 + speed * n / self.sample_rate
        y = self.render(t0, n, speed, ramp=True)
        self.peak = float(np.abs(y).max()) if n else 0.0
        self.blocks += 1
        return y

    def mixdown(self, start: float, duration: float, sample_rate: Optional[int] = None) -> np.ndarray:
        """What is heard now (solo/mute/gains) over [start, start + duration) at speed 1."""
        sr = int(sample_rate or self.sample_rate)
        n = max(0, int(round(duration * sr)))
        saved = self.sample_rate
        out = np.zeros(n, np.float32)
        block = sr * 10
        try:
            self.sample_rate = sr
            for a in range(0, n, block):
                m = min(block, n - a)
                out[a:a + m] = self.render(start + a / sr, m)
        finally:
            self.sample_rate = saved
        return out

    # -- the clock ----------------------------------------------------------------------------
    def media_time(self, heard_samples: float) -> float:
        """Media time being heard when the output has played ``heard_samples`` samples."""
        with self._lock:
            log = list(self._log)
            epoch, epoch_start, pos = self._epoch, self._epoch_start, self._pos
        if not log:
            return epoch_start if epoch else pos
        # the last block that starts at or before the heard position
        lo, hi = 0, len(log) - 1
        if heard_samples < log[0][0]:
            b = log[0]
            if b[3] != epoch:
                return epoch_start
            return b[1]
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if log[mid][0] <= heard_samples:
                lo = mid
            else:
                hi = mid - 1
        out0, t0, sp, ep = log[lo]
        if ep != epoch:
            return epoch_start
        return t0 + sp * (heard_samples - out0) / self.sample_rate
