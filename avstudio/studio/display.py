"""The clip's sound as the app shows and plays it: the mix at a playback rate, its log-mel
spectrogram and min/max envelope for the timeline (numpy only, fast enough for an hour of
sound)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import Cancelled
from ..media import probe, read_audio


def load_clip_sound(path: str, max_rate: int = 48000, progress=None, cancel=None) -> Optional[dict]:
    """The clip's sound for playback and its pictures: mix, rate, spectrogram, envelope."""
    info = probe(path, check=False)
    if not info.has_audio:
        return None
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
            "mel_hz": mel_hz, "env_t": env_t, "env_lo": env_lo, "env_hi": env_hi}


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
    """Log-mel power (dB, [n_mels, T]) for display, the hop in seconds and the mel centres (Hz)."""
    n_fft = 2048 if sr > 24000 else 1024
    hop = max(int(sr * 0.01), int(np.ceil(len(x) / max_columns)))
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    n = 1 + (len(x) - n_fft) // hop
    win = np.hanning(n_fft).astype(np.float32)
    fb, centres = _mel_filters(sr, n_fft, n_mels)
    out = np.empty((n_mels, n), np.float32)
    step = 512
    for a in range(0, n, step):
        b = min(n, a + step)
        idx = (np.arange(a, b) * hop)[:, None] + np.arange(n_fft)[None, :]
        frames = x[idx] * win
        p = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        out[:, a:b] = (fb @ p.T.astype(np.float32))
    db = 10.0 * np.log10(out + 1e-10)
    top = float(db.max()) if db.size else 0.0
    db = np.clip(db, top - 80.0, top)
    return db, hop / sr, centres


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
