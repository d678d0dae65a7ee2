"""Running the clustering-alignment model over a whole clip: heatmaps per sound cluster.

Streaming: frames come from :class:`avstudio.media.VideoReader` in order and audio from
:func:`avstudio.media.iter_audio` into a rolling buffer that keeps only the window around
the frames being analysed, so memory does not grow with the clip's length (only the output
heatmaps do, as they must).

Cluster identity is kept stable over time: the k audio centers of each window are put in
the order that best matches a running average of the previous windows' centers, so
cluster 0 is the same sound from the first frame to the last (the GUI colours and the
stems depend on it).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..errors import AVStudioError, MediaError
from ..nets.kmeans import best_matching, normalize
from ..progress import ProgressFn, check_cancel, emit


class AudioRing:
    """A rolling buffer over a streamed audio track: ``window(t)`` for increasing ``t``."""

    def __init__(self, chunks, sample_rate: int, window: int):
        self.chunks = iter(chunks) if chunks is not None else iter(())
        self.sr = sample_rate
        self.n = window
        self.buf = np.zeros(0, dtype=np.float32)
        self.start = 0  # absolute sample index of buf[0]
        self.exhausted = chunks is None

    def _fill(self, upto: int) -> None:
        while not self.exhausted and self.start + len(self.buf) < upto:
            try:
                c = next(self.chunks)
            except StopIteration:
                self.exhausted = True
                break
            self.buf = np.concatenate([self.buf, np.asarray(c, dtype=np.float32)])

    def window(self, center_s: float) -> np.ndarray:
        a = int(round(center_s * self.sr)) - self.n // 2
        b = a + self.n
        self._fill(b)
        # drop what no later window needs (windows only move forward)
        drop = max(0, a - self.start)
        if drop:
            self.buf = self.buf[drop:]
            self.start += drop
        out = np.zeros(self.n, dtype=np.float32)
        lo, hi = max(a, self.start), min(b, self.start + len(self.buf))
        if hi > lo:
            out[lo - a:hi - a] = self.buf[lo - self.start:hi - self.start]
        return out


@dataclass
class ClipAnalysis:
    path: str
    k: int
    fps: float
    frame_indices: np.ndarray  # [T] int
    times: np.ndarray  # [T] float64 seconds
    heatmaps: np.ndarray  # [T, k, h, w] float32 0..1 (audio center vs positions)
    aligned: np.ndarray  # [T, k, h, w] float32 (aligned visual center's assignment mask)
    unaligned: np.ndarray  # [T, h, w] float32 (the paper's control)
    visual_vectors: np.ndarray  # [T, k, D] aligned visual centers (separator conditioning)
    audio_centers: np.ndarray  # [T, k, D]
    timings: dict = field(default_factory=dict)
    model: str = ""
    count_prediction: Optional[dict] = None

    def save(self, out_dir: str | Path, extra_summary: Optional[dict] = None) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out / "heatmaps.npz", heatmaps=self.heatmaps.astype(np.float32),
                            times=self.times.astype(np.float64), frames=self.frame_indices,
                            aligned=self.aligned.astype(np.float32),
                            unaligned=self.unaligned.astype(np.float32),
                            visual_vectors=self.visual_vectors.astype(np.float32))
        summary = {"video": self.path, "model": self.model, "k": self.k, "fps": self.fps,
                   "frames": int(len(self.times)),
                   "heatmap_shape": list(self.heatmaps.shape[1:]), "timings": self.timings,
                   "count_prediction": self.count_prediction}
        if extra_summary:
            summary.update(extra_summary)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return out


def _to_tensor_frames(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def predict_count(bundle, path: str, windows: int = 8) -> tuple[int, float, float]:
    """The counter's estimate for a clip: (count, confidence 0..1, Poisson rate).

    The rate is the mean over ``windows`` evenly spaced (frame, audio window) pairs.
    """
    from ..media import VideoReader, read_audio
    from ..nets.counter import rate_to_count

    if bundle.counter is None:
        raise AVStudioError(f"{bundle.name}: this model has no source counter")
    cfg = bundle.av.cfg
    S = cfg.frame_size
    with VideoReader(path) as vr:
        info = vr.info
        n = vr.frame_count
        if n <= 0:
            raise MediaError(f"{path}: no video frames")
        idx = sorted({int(i) for i in np.linspace(0, n - 1, min(windows, n)).round()})
        frames = [vr.frame(i, size=(S, S)) for i in idx]
        times = [vr.time_of_index(i) for i in idx]
    waves = []
    for t in times:
        if info.has_audio:
            a0 = t - cfg.audio_seconds / 2
            w = read_audio(path, cfg.sample_rate, max(0.0, a0), max(0.0, a0) + cfg.audio_seconds)
        else:
            w = np.zeros(cfg.audio_samples, np.float32)
        waves.append(np.pad(w, (0, max(0, cfg.audio_samples - len(w))))[:cfg.audio_samples])
    dev = next(bundle.av.parameters()).device
    ft = _to_tensor_frames(frames).to(dev)
    wt = torch.from_numpy(np.stack(waves).astype(np.float32)).to(dev)
    lam = float(bundle.counter.log_rate(wt, bundle.av, ft).exp().mean())
    n_pred, conf = rate_to_count(lam)
    return n_pred, conf, lam


@torch.no_grad()
def analyze_clip(bundle, path: str, k: Optional[int] = None, batch: int = 32,
                 start_frame: int = 0, stop_frame: Optional[int] = None,
                 progress: ProgressFn | None = None, cancel=None,
                 on_batch: Optional[Callable[[np.ndarray, np.ndarray], None]] = None,
                 threads: Optional[int] = None) -> ClipAnalysis:
    """Heatmaps for every frame in [start_frame, stop_frame) of ``path``.

    ``k`` = number of sound clusters (None: the counter's estimate, else 1).
    ``on_batch(frame_indices, heatmaps)`` is called as results come (GUI: show them early).
    """
    from ..media import VideoReader, iter_audio, probe

    if bundle.av is None:
        raise AVStudioError(f"{bundle.name}: this model has no clustering-alignment network")
    if threads:
        torch.set_num_threads(threads)
    av = bundle.av.eval()
    cfg = av.cfg
    S = cfg.frame_size
    dev = next(av.parameters()).device
    info = probe(path)
    if not info.has_video:
        raise MediaError(f"{path}: has no video stream to analyse")
    t_start = time.perf_counter()
    count_pred = None
    if k is None:
        if bundle.counter is not None and info.has_audio:
            n, conf, lam = predict_count(bundle, path)
            count_pred = {"count": n, "confidence": conf, "rate": lam}
            k = max(1, n)
        else:
            k = 1
    k = int(max(1, min(k, 6)))
    fps = float(info.fps or 25.0)
    total = info.frame_count if stop_frame is None else min(stop_frame, info.frame_count)
    t0 = start_frame / fps
    chunks = iter_audio(path, cfg.sample_rate, chunk_seconds=2.0, start=max(0.0, t0 - cfg.audio_seconds)) \
        if info.has_audio else None
    ring = AudioRing(chunks, cfg.sample_rate, cfg.audio_samples)
    if chunks is not None:
        ring.start = int(round(max(0.0, t0 - cfg.audio_seconds) * cfg.sample_rate))

    heat, aligned, unaligned, vvecs, acent, idxs, times = [], [], [], [], [], [], []
    ref: Optional[torch.Tensor] = None
    t_decode = t_model = 0.0
    pending: list[tuple[int, float, np.ndarray]] = []

    def flush():
        nonlocal ref, t_model
        if not pending:
            return
        tm = time.perf_counter()
        fr = _to_tensor_frames([p[2] for p in pending]).to(dev)
        wv = torch.from_numpy(np.stack([ring.window(p[1]) for p in pending])).to(dev)
        vis = av.visual(fr)
        aud, w = av.audio(wv)
        A, _ = av.audio_centers(aud, w, k)
        # keep cluster identity over time: order each window's centers like the running ref
        if k > 1:
            order = []
            for b in range(A.shape[0]):
                if ref is None:
                    ref = A[b].clone()
                _, perm = best_matching((ref @ A[b].t()).unsqueeze(0))
                A[b] = A[b][perm[0]]
                ref = normalize(0.9 * ref + 0.1 * A[b])
                order.append(perm[0])
        loc = av.localize_features(vis, aud, w, k, audio_centers=A)
        hv = loc.heatmaps.cpu().numpy().astype(np.float16)
        heat.append(hv)
        aligned.append(loc.aligned.cpu().numpy().astype(np.float16))
        unaligned.append(loc.unaligned.cpu().numpy().astype(np.float16))
        V = torch.gather(loc.visual_centers, 1, loc.match.unsqueeze(-1).expand(-1, -1, loc.visual_centers.shape[-1]))
        vvecs.append(V.cpu().numpy().astype(np.float32))
        acent.append(A.cpu().numpy().astype(np.float32))
        fi = np.array([p[0] for p in pending])
        idxs.append(fi)
        times.append(np.array([p[1] for p in pending]))
        t_model += time.perf_counter() - tm
        if on_batch is not None:
            on_batch(fi, hv.astype(np.float32))
        pending.clear()

    with VideoReader(path) as vr:
        td = time.perf_counter()
        for fi, ft, rgb in vr.frames(start_frame, stop_frame, size=(S, S)):
            t_decode += time.perf_counter() - td
            check_cancel(cancel, "analysis")
            pending.append((fi, float(ft), rgb))
            if len(pending) >= batch:
                flush()
                emit(progress, "analyze", fi + 1 - start_frame, max(1, total - start_frame),
                     f"frame {fi + 1}/{total}")
            td = time.perf_counter()
        flush()
    emit(progress, "analyze", max(1, total - start_frame), max(1, total - start_frame), "done")
    if not idxs:
        raise MediaError(f"{path}: no frames in the requested range could be decoded")
    elapsed = time.perf_counter() - t_start
    n = int(sum(len(x) for x in idxs))
    timings = {"total_s": elapsed, "decode_s": t_decode, "model_s": t_model, "frames": n,
               "frames_per_s": n / elapsed if elapsed > 0 else None,
               "realtime_factor": (n / fps) / elapsed if elapsed > 0 else None}
    return ClipAnalysis(
        path=str(path), k=k, fps=fps, frame_indices=np.concatenate(idxs), times=np.concatenate(times),
        heatmaps=np.concatenate(heat).astype(np.float32), aligned=np.concatenate(aligned).astype(np.float32),
        unaligned=np.concatenate(unaligned).astype(np.float32), visual_vectors=np.concatenate(vvecs),
        audio_centers=np.concatenate(acent), timings=timings, model=bundle.name, count_prediction=count_pred)
