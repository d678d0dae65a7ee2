"""Separation's speed on this machine, for ``avstudio bench`` (:func:`bench_separation`)."""

from __future__ import annotations

import time

import numpy as np
import torch

from .pixel import PixelSounder
from .stems import separate_clip


def bench_separation(bundle, seconds: float = 10.0, k: int = 2, repeats: int = 3) -> dict:
    """Timings of separation on this machine: stems for ``k`` clusters of a ``seconds`` clip
    (target: 2 clusters of 10 s in <= 1 s on 2 CPU cores) and the sound of a pixel (a click:
    one frame through the visual encoder, the head and the inverse STFT; the first click of
    a clip also runs the U-Net). Wall-clock medians of ``repeats`` runs at the current torch
    thread count, plus the process CPU time (``stems_cpu_s``: what the work costs on a
    machine that other jobs share)."""
    sep = bundle.separator
    if sep is None:
        return {"available": False, "reason": "the model has no separator"}
    sep.eval()
    sr = sep.cfg.sample_rate
    rng = np.random.default_rng(0)
    N = int(round(seconds * sr))
    t = np.arange(N) / sr
    audio = (0.1 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 587 * t * (1 + 0.01 * np.sin(t)))
             + 0.02 * rng.standard_normal(N)).astype(np.float32)
    T = max(1, int(seconds * 25))
    vv = rng.standard_normal((T, k, sep.cfg.cond_dim)).astype(np.float32)
    vv /= np.linalg.norm(vv, axis=-1, keepdims=True)
    times = np.arange(T) / 25.0
    separate_clip(bundle, audio[: sr], vv[:25], times[:25])  # warm-up
    runs, cpu = [], []
    for _ in range(max(1, repeats)):
        t0, c0 = time.perf_counter(), time.process_time()
        separate_clip(bundle, audio, vv, times)
        runs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    stems_s = float(np.median(runs))
    ps = PixelSounder(bundle, audio=audio)
    t0 = time.perf_counter()
    ps.sound_of_vector(vv[0, 0])
    first = time.perf_counter() - t0
    clicks = []
    for i in range(max(1, repeats)):
        t0 = time.perf_counter()
        if bundle.av is not None:
            S = bundle.av.cfg.frame_size
            dev = next(bundle.av.parameters()).device
            with torch.no_grad():
                vis = bundle.av.visual(torch.from_numpy(rng.integers(0, 255, (1, 3, S, S), dtype=np.uint8)).to(dev))[0]
            vec = PixelSounder.vector_at(vis, 0.3 + 0.1 * i, 0.5)
        else:
            vec = vv[i % T, 0]
        ps.sound_of_vector(vec)
        clicks.append(time.perf_counter() - t0)
    return {"available": True, "seconds": float(seconds), "k": int(k), "threads": torch.get_num_threads(),
            "device": str(next(sep.parameters()).device),
            "stems_s": stems_s, "stems_min_s": float(min(runs)), "stems_cpu_s": float(np.median(cpu)),
            "stems_target_s": 1.0,
            "stems_meets_target": bool(stems_s <= 1.0), "stems_realtime_factor": float(seconds / stems_s),
            "pixel_first_click_s": float(first), "pixel_click_s": float(np.median(clicks))}
