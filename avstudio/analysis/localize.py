"""Running the clustering-alignment model over a whole clip: heatmaps per sound cluster.

Streaming: frames come from :class:`avstudio.media.VideoReader` in order and audio from
:func:`avstudio.media.iter_audio` into a rolling buffer that keeps only the window around
the frames being analysed, so memory does not grow with the clip's length (only the output
heatmaps do, as they must).

Cluster identity is kept stable over time: the k audio centers of each window are put in
the order that best matches a running average of the previous windows' centers, so
cluster 0 is the same sound from the first frame to the last (the GUI colours and the
stems depend on it).

An AVIN model (:mod:`avstudio.nets.avin`) has no clusters: it gives one heatmap per frame
(k = 1), the cosine of the window's audio embedding with every position, min-max normalised
per frame (exactly the map its evaluation binarises at 0.5); it has no aligned or unaligned
visual centers and no separator conditioning, so those arrays are absent from its analysis.
"""

from __future__ import annotations

import itertools
import json
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..errors import AVStudioError, MediaError
from ..media._common import show
from ..nets.kmeans import best_matching, normalize  # noqa: F401  (re-exported, used before)
from ..nets.separator import attend
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
    aligned: Optional[np.ndarray]  # [T, k, h, w] float32 (aligned visual center's mask; None: AVIN)
    unaligned: Optional[np.ndarray]  # [T, h, w] float32 (the paper's control; None: AVIN)
    visual_vectors: Optional[np.ndarray]  # [T, k, D] aligned visual centers (separator conditioning; None: AVIN)
    audio_centers: np.ndarray  # [T, k, D] (AVIN: its unit audio embedding, k = 1)
    timings: dict = field(default_factory=dict)
    model: str = ""
    count_prediction: Optional[dict] = None
    # [T, k, D] each cluster's attended visual vector (features pooled where its sound is
    # heard, avstudio.nets.separator.attend at attended_tau): the separator's conditioning
    attended_vectors: Optional[np.ndarray] = None
    attended_tau: float = 0.05
    # analysed with a sink (``analyze_clip(..., sink=)``): heatmaps, aligned and unaligned went
    # to the sink batch by batch and are None here; save() completes the sink's .npz
    sink: Optional[Any] = None
    method: str = "hsa"  # "hsa" (clusters) or "avin" (one map per frame)
    # what the clip's audio holds (avstudio.analysis.sound.SoundCheck.to_dict())
    sound: Optional[dict] = None
    # one sentence when there is nothing to show: no sound, or no source found (k = 0)
    note: Optional[str] = None

    def small_arrays(self) -> dict[str, np.ndarray]:
        d = {"times": self.times.astype(np.float64), "frames": self.frame_indices}
        if self.visual_vectors is not None:
            d["visual_vectors"] = self.visual_vectors.astype(np.float32)
        if self.attended_vectors is not None:
            d["attended_vectors"] = self.attended_vectors.astype(np.float32)
        return d

    def save(self, out_dir: str | Path, extra_summary: Optional[dict] = None) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if self.heatmaps is None:
            if self.sink is None:
                raise AVStudioError("this analysis kept no heatmaps to save")
            if Path(self.sink.path).resolve() != (out / "heatmaps.npz").resolve():
                raise AVStudioError(f"the heatmaps were streamed to {self.sink.path}, not into {out}")
            if not self.sink.done:
                self.sink.finish(self.small_arrays())
            heatmap_shape = list(self.sink.shape("heatmaps")[1:])
        else:
            maps = {"heatmaps": self.heatmaps.astype(np.float32)}
            if self.aligned is not None:
                maps["aligned"] = self.aligned.astype(np.float32)
            if self.unaligned is not None:  # none for AVIN, and when there is no sound (k = 0)
                maps["unaligned"] = self.unaligned.astype(np.float32)
            np.savez_compressed(out / "heatmaps.npz", **maps, **self.small_arrays())
            heatmap_shape = list(self.heatmaps.shape[1:])
        summary = {"video": self.path, "model": self.model, "method": self.method, "k": self.k, "fps": self.fps,
                   "frames": int(len(self.times)),
                   "heatmap_shape": heatmap_shape, "timings": self.timings,
                   "count_prediction": self.count_prediction, "sound": self.sound}
        if self.note:
            summary["note"] = self.note
        elif self.method == "avin":
            summary["note"] = ("AVIN: one heatmap per frame (k = 1, no clusters): the cosine of the audio "
                               "embedding with every position, min-max normalised per frame")
        if extra_summary:
            summary.update(extra_summary)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return out


#: frames decoded ahead of the model by analyze_clip's decoding thread (0: decode inline)
PREFETCH_FRAMES = 64
#: give freed heap memory back to the OS every this many frames (glibc; 0: never)
TRIM_EVERY_FRAMES = 500
_TRIM = None


def _release_free_memory() -> float:
    """Return freed heap pages to the OS (glibc ``malloc_trim``); seconds it took.

    glibc keeps memory that was freed: torch's aligned feature buffers, freed after every
    batch, interleave with the small outputs that are kept, and the process grew by 100-290 KB
    per analysed frame (4.9 GB for a 10-minute clip, ``avstudio bench``) although the live
    data grows by 16 KB per frame. Trimming every few hundred frames keeps it flat."""
    global _TRIM
    if _TRIM is None:
        _TRIM = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes
                import ctypes.util

                _TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
            except (OSError, AttributeError):
                _TRIM = False
    if not _TRIM:
        return 0.0
    t = time.perf_counter()
    _TRIM(0)
    return time.perf_counter() - t


class _Prefetch:
    """Iterate ``make_iter()`` in a daemon thread, at most ``depth`` items ahead.

    Items, the end and any exception (re-raised here, after the items that came before it)
    pass through a bounded queue; :meth:`close` stops the thread early (cancel, errors).
    """

    def __init__(self, make_iter: Callable[[], object], depth: int):
        self._q: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=max(1, int(depth)))
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, args=(make_iter,), name="analysis-decode", daemon=True)
        self._th.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, make_iter) -> None:
        try:
            it = make_iter()
            try:
                for x in it:
                    if not self._put(("item", x)):
                        return
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
            self._put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(("error", exc))

    def __iter__(self):
        while True:
            kind, val = self._q.get()
            if kind == "item":
                yield val
            elif kind == "end":
                return
            else:
                raise val  # type: ignore[misc]

    def close(self) -> None:
        self._stop.set()
        while self._th.is_alive():
            try:
                while True:
                    self._q.get_nowait()
            except queue.Empty:
                pass
            self._th.join(0.05)


@lru_cache(maxsize=8)
def _permutations(k: int) -> np.ndarray:
    """Every ordering of k centers [k!, k], in :func:`best_matching`'s order (first best wins)."""
    return np.array(list(itertools.permutations(range(k))), dtype=np.int64).reshape(-1, k)


def _to_tensor_frames(frames: list[np.ndarray]) -> torch.Tensor:
    """RGB frames [H, W, 3] (or stacks [F, H, W, 3]) -> uint8 [B, 3, H, W] (or [B, F, 3, H, W])."""
    x = torch.from_numpy(np.stack(frames))
    return (x.permute(0, 3, 1, 2) if x.dim() == 4 else x.permute(0, 1, 4, 2, 3)).contiguous()


class FrameStacker:
    """Turns a stream of decoded frames into the model's visual inputs: for a model that stacks
    F frames (``cfg.stack``) each frame's stack is ready once the frame ``cfg.stack_step_s * F/2``
    after it has arrived; a still-frame model gets each frame as it comes. Frames past either end
    of the clip are the clip's first / last frame (as in training)."""

    def __init__(self, cfg, fps: float, n_frames: int):
        self.cfg, self.fps, self.n = cfg, float(fps), int(n_frames)
        self.buf: dict[int, np.ndarray] = {}
        self.pad = 0 if cfg.stack <= 1 else max(abs(int(round(o * fps))) for o in cfg.stack_offsets_s())
        self.waiting: list[tuple[int, float]] = []
        self.last = -1

    def decode_range(self, start: int, stop: int) -> tuple[int, int]:
        """The frames to decode so that frames [start, stop) get whole stacks."""
        return max(0, start - self.pad), (min(self.n, stop + self.pad) if self.n > 0 and stop < self.n
                                           else stop + self.pad)

    def _stack(self, j: int) -> np.ndarray:
        if self.cfg.stack <= 1:
            return self.buf[j]
        have = sorted(self.buf)
        out = []
        for k in self.cfg.stack_indices(j, self.fps, max(self.n, self.last + 1)):
            if k not in self.buf:  # not decoded (outside the decoded range, or damaged): nearest
                k = min(have, key=lambda x: abs(x - k))
            out.append(self.buf[k])
        return np.stack(out)

    def push(self, fi: int, ft: float, rgb: np.ndarray, wanted: bool) -> list[tuple[int, float, np.ndarray]]:
        """Add decoded frame ``fi``; ``wanted``: its heatmap is asked for. Returns the (index,
        time, model input) of the frames whose stacks are now complete."""
        self.buf[fi] = rgb
        self.last = max(self.last, fi)
        if wanted:
            self.waiting.append((fi, ft))
        ready = [(j, t) for j, t in self.waiting if j + self.pad <= fi]
        return self._emit(ready)

    def finish(self) -> list[tuple[int, float, np.ndarray]]:
        return self._emit(list(self.waiting))

    def _emit(self, ready) -> list[tuple[int, float, np.ndarray]]:
        out = [(j, t, self._stack(j)) for j, t in ready]
        done = {j for j, _ in ready}
        self.waiting = [w for w in self.waiting if w[0] not in done]
        keep_from = (min(j for j, _ in self.waiting) if self.waiting else self.last + 1) - self.pad
        for k in [k for k in self.buf if k < keep_from and k != self.last]:
            del self.buf[k]
        return out


#: what the counter's rate is, in the words the app and the CLI use
RATE_MEANING = ("the counter's rate: its estimate of the expected number of sound sources "
                "(Poisson regression over moments of the clip); the count is the rate rounded to "
                "the nearest whole number")


@dataclass(frozen=True)
class CountEstimate:
    """How many sound sources a clip has, and why.

    ``count``: 0..16. ``rate``: the counter's Poisson rate (see :data:`RATE_MEANING`), or None
    when the count did not come from the counter: a clip without sound has 0 sources
    (``sound`` says why). ``model``: the model that counted.
    """

    count: int
    rate: Optional[float]
    sound: Any  # avstudio.analysis.sound.SoundCheck
    model: str = ""

    @property
    def by_counter(self) -> bool:
        return self.rate is not None

    def text(self) -> str:
        """"2 sources (rate 1.94)", "0 sources: this clip is silent (...)"."""
        s = "source" if self.count == 1 else "sources"
        if self.by_counter:
            return f"{self.count} {s} (rate {self.rate:.2f})"
        return f"{self.count} {s}: {self.sound.note()}"

    def to_dict(self) -> dict:
        d = {"count": int(self.count), "rate": None if self.rate is None else float(self.rate),
             "by": "counter" if self.by_counter else "sound check",
             "sound": self.sound.state}
        if self.by_counter:
            d["rate_meaning"] = RATE_MEANING
        else:
            d["note"] = self.sound.note()
        if self.model:
            d["model"] = self.model
        return d


@torch.no_grad()
def estimate_count(bundle, path: str, windows: int = 8, sound=None) -> CountEstimate:
    """How many sound sources ``path`` has: 0 when it has no sound (no audio track, or silent:
    :mod:`avstudio.analysis.sound`), else the counter's rate over ``windows`` evenly spaced
    (frame, audio window) pairs, rounded. ``sound``: the clip's SoundCheck, if already made.
    """
    from ..media import VideoReader, read_audio
    from ..nets.counter import rate_to_count
    from .sound import check_sound

    if sound is None:
        sound = check_sound(path)
    if not sound.sound:
        return CountEstimate(0, None, sound, bundle.name)
    if bundle.counter is None:
        raise AVStudioError(f"{bundle.name}: this model has no source counter")
    cfg = bundle.av.cfg
    S = cfg.frame_size
    with VideoReader(path) as vr:
        info = vr.info
        n = vr.frame_count
        if n <= 0:
            raise MediaError(f"{show(path)}: no video frames")
        idx = sorted({int(i) for i in np.linspace(0, n - 1, min(windows, n)).round()})
        fps = float(info.fps or 25.0)
        got: dict[int, np.ndarray] = {}
        for i in idx:
            for j in cfg.stack_indices(i, fps, n):
                if j not in got:
                    got[j] = vr.frame(j, size=(S, S))
        frames = [got[i] if cfg.stack <= 1 else np.stack([got[j] for j in cfg.stack_indices(i, fps, n)])
                  for i in idx]
        times = [vr.time_of_index(i) for i in idx]
    waves = []
    for t in times:
        a0 = t - cfg.audio_seconds / 2
        w = read_audio(path, cfg.sample_rate, max(0.0, a0), max(0.0, a0) + cfg.audio_seconds)
        waves.append(np.pad(w, (0, max(0, cfg.audio_samples - len(w))))[:cfg.audio_samples])
    dev = next(bundle.av.parameters()).device
    ft = _to_tensor_frames(frames).to(dev)
    wt = torch.from_numpy(np.stack(waves).astype(np.float32)).to(dev)
    lam = float(bundle.counter.log_rate(wt, bundle.av, ft).exp().mean())
    return CountEstimate(rate_to_count(lam), lam, sound, bundle.name)


@torch.no_grad()
def analyze_clip(bundle, path: str, k: Optional[int] = None, batch: int = 32,
                 start_frame: int = 0, stop_frame: Optional[int] = None,
                 progress: ProgressFn | None = None, cancel=None,
                 on_batch: Optional[Callable[[np.ndarray, np.ndarray], None]] = None,
                 threads: Optional[int] = None, sink=None, sound=None) -> ClipAnalysis:
    """Heatmaps for every frame in [start_frame, stop_frame) of ``path``.

    ``k`` = number of sound clusters (None: the counter's estimate, else 1). A clip without
    sound (no audio track, or silent: :mod:`avstudio.analysis.sound`) has none: ``k`` is 0
    whatever was asked, the maps have no cluster (``[T, 0, h, w]``) and ``note`` says why;
    the model is not run on it. ``sound``: the clip's SoundCheck when already made (the app
    analyses a clip chunk by chunk and checks its sound once).
    ``on_batch(frame_indices, heatmaps)`` is called as results come (GUI: show them early).
    ``sink``: an :class:`~avstudio.analysis.npzstream.NpzStreamWriter`; the per-frame maps
    (``heatmaps``, ``aligned``, ``unaligned``) go to it batch by batch instead of being kept,
    so memory stays flat however long the clip (``avstudio analyze`` does this); the returned
    analysis has them as None and ``save()`` completes the sink's file.
    """
    from ..media import VideoReader, iter_audio, probe

    net = bundle.localizer
    if net is None:
        raise AVStudioError(f"{bundle.name}: this model has no localizer (no clustering-alignment or AVIN network)")
    is_avin = bundle.kind == "avin"
    if is_avin and k not in (None, 1):
        raise AVStudioError(f"{bundle.name} is an AVIN model: it gives one heatmap per frame (k = 1), not {k}")
    if threads:
        torch.set_num_threads(threads)
    av = net.eval()
    if is_avin:
        from ..nets.avin import minmax01
    cfg = av.cfg
    S = cfg.frame_size
    dev = next(av.parameters()).device
    from .sound import check_sound

    info = probe(path)
    if not info.has_video:
        raise MediaError(f"{show(path)} has no video stream to analyse (it holds audio only)")
    t_start = time.perf_counter()
    if sound is None:
        sound = check_sound(path, info, cancel=cancel)
    count_est: Optional[CountEstimate] = None
    note = None
    if not sound.sound:  # nothing to localise, whatever the model or k
        count_est = CountEstimate(0, None, sound, bundle.name)
        note = sound.note()
        if k:
            note += f" (k = {k} was asked: no sound cluster is made)"
        k = 0
    elif is_avin:
        k = 1
    elif k is None:
        if bundle.counter is not None:
            count_est = estimate_count(bundle, path, sound=sound)
            k = count_est.count
            if k == 0:
                note = f"the counter found no sound source (rate {count_est.rate:.2f})"
        else:
            k = 1
    k = int(max(0, min(k, 6)))
    fps = float(info.fps or 25.0)
    total = info.frame_count if stop_frame is None else min(stop_frame, info.frame_count)
    t0 = start_frame / fps
    chunks = iter_audio(path, cfg.sample_rate, chunk_seconds=2.0, start=max(0.0, t0 - cfg.audio_seconds)) \
        if info.has_audio and k > 0 else None
    ring = AudioRing(chunks, cfg.sample_rate, cfg.audio_samples)
    if chunks is not None:
        ring.start = int(round(max(0.0, t0 - cfg.audio_seconds) * cfg.sample_rate))

    # per-frame outputs, filled in place (analysis of frames start_frame..total)
    rows = max(1, total - start_frame)
    heat, aligned, unaligned, vvecs, acent = (_Rows(rows) for _ in range(5))
    idxs, times = _Rows(rows, np.int64), _Rows(rows, np.float64)
    ref: Optional[np.ndarray] = None  # running reference of the k audio centers [k, D]
    t_decode = t_model = t_trim = 0.0
    trimmed_at = 0
    pending: list[tuple[int, float, np.ndarray]] = []
    # the separator's conditioning, computed here from the visual maps already at hand
    # (saves recomputing them from decoded frames when stems are wanted)
    sep = bundle.separator if not is_avin else None
    attend_tau = None
    attended = _Rows(rows)
    if sep is not None and sep.cfg.conditioning == "attended":
        attend_tau = float(sep.cfg.attend_tau)

    map_hw: list[tuple[int, int]] = []

    def flush_silent():
        """k = 0: no sound to localise; the frames and their times, maps with no cluster."""
        if not map_hw:  # the map size, from one frame through the visual network
            vis_net = av.visual_map if is_avin else av.visual
            map_hw.append(tuple(vis_net(_to_tensor_frames([pending[0][2]]).to(dev)).shape[-2:]))
        h, w = map_hw[0]
        B = len(pending)
        z = np.zeros((B, 0, h, w), np.float32)
        if sink is not None:
            sink.append("heatmaps", z)
            sink.append("aligned", z)
        else:
            heat.append(z)
            aligned.append(z)
        D = int(av.cfg.embed_dim)
        vvecs.append(np.zeros((B, 0, D), np.float32))
        acent.append(np.zeros((B, 0, D), np.float32))
        if attend_tau is not None:
            attended.append(np.zeros((B, 0, D), np.float32))
        fi = np.array([p[0] for p in pending])
        idxs.append(fi)
        times.append(np.array([p[1] for p in pending]))
        if on_batch is not None:
            on_batch(fi, z)
        pending.clear()

    def flush():
        nonlocal ref, t_model
        if not pending:
            return
        if k == 0:
            flush_silent()
            return
        tm = time.perf_counter()
        fr = _to_tensor_frames([p[2] for p in pending]).to(dev)
        wv = torch.from_numpy(np.stack([ring.window(p[1]) for p in pending])).to(dev)
        if is_avin:  # one map per frame: cos(audio embedding, every position), min-max normalised
            fv = av.visual_map(fr)
            fa = av.audio_embedding(wv)
            out = {"heatmaps": minmax01(av.heatmap_features(fv, fa)).unsqueeze(1).cpu().numpy().astype(np.float32),
                   "audio_centers": torch.nn.functional.normalize(fa, dim=1)[:, None].cpu().numpy().astype(np.float32)}
        else:
            vis = av.visual(fr)
            aud, w = av.audio(wv)
            A, _ = av.audio_centers(aud, w, k)
            # keep cluster identity over time: order each window's centers like the running ref.
            # A sequential loop of k x k problems: done in numpy, since tiny torch ops on a
            # multi-threaded pool cost milliseconds each on a busy CPU (measured 1.1 s per batch
            # of 32 with 2 threads on 2 loaded cores, 15 ms in numpy; `avstudio bench`)
            if k > 1:
                An = A.detach().cpu().numpy().copy()
                perms = _permutations(k)
                rows = np.arange(k)
                for b in range(An.shape[0]):
                    if ref is None:
                        ref = An[b].copy()
                    sim = (ref[:, None, :] * An[b][None, :, :]).sum(-1)  # [k, k]
                    An[b] = An[b][perms[int(sim[rows, perms].mean(-1).argmax())]]
                    r = 0.9 * ref + 0.1 * An[b]
                    ref = r / np.maximum(np.sqrt((r * r).sum(-1, keepdims=True)), 1e-6)
                A = torch.from_numpy(An).to(A.device)
            loc = av.localize_features(vis, aud, w, k, audio_centers=A)
            V = torch.gather(loc.visual_centers, 1,
                             loc.match.unsqueeze(-1).expand(-1, -1, loc.visual_centers.shape[-1]))
            out = {"heatmaps": loc.heatmaps.cpu().numpy().astype(np.float32),
                   "aligned": loc.aligned.cpu().numpy().astype(np.float32),
                   "unaligned": loc.unaligned.cpu().numpy().astype(np.float32),
                   "visual_vectors": V.cpu().numpy().astype(np.float32),
                   "audio_centers": A.cpu().numpy().astype(np.float32)}
            if attend_tau is not None:
                out["attended"] = attend(vis, A, attend_tau).cpu().numpy().astype(np.float32)
        fi_a = np.array([p[0] for p in pending])
        ti_a = np.array([p[1] for p in pending])
        pending.clear()
        # frames between the computed ones (a model analysed at a map rate below the frame
        # rate) get maps interpolated linearly between their two neighbours
        fi, ti, out = interp.add(fi_a, ti_a, out)
        t_model += time.perf_counter() - tm
        if not len(fi):
            return
        if sink is not None:
            for name in ("heatmaps", "aligned", "unaligned"):
                if name in out:
                    sink.append(name, out[name])
            hv = out["heatmaps"]
        else:
            hv = out["heatmaps"].astype(np.float16)
            heat.append(hv)
            if "aligned" in out:
                aligned.append(out["aligned"].astype(np.float16))
                unaligned.append(out["unaligned"].astype(np.float16))
        if "visual_vectors" in out:
            vvecs.append(out["visual_vectors"])
        if attend_tau is not None:
            attended.append(out["attended"])
        acent.append(out["audio_centers"])
        idxs.append(fi)
        times.append(ti)
        if on_batch is not None:
            on_batch(fi, hv.astype(np.float32))

    stacker = FrameStacker(cfg, fps, info.frame_count)
    # no stop asked for: every frame that decodes (a variable-frame-rate file may hold more
    # frames than its header says)
    stop_at = sys.maxsize if stop_frame is None else stop_frame
    stride = map_stride(cfg, fps)
    interp = _Interpolator()
    last_seen: list = []  # the latest frame not computed: computed at the end if it is the last
    d0, d1 = stacker.decode_range(start_frame, stop_at)
    with VideoReader(path) as vr:
        # frames are decoded in a background thread, up to PREFETCH_FRAMES ahead, so decoding
        # overlaps the model (PyAV and torch release the GIL); decode_s is the time spent
        # waiting for frames. A model that stacks frames also gets the few frames around the
        # range (its stacks' neighbours).
        frames = _Prefetch(lambda: vr.frames(d0, d1 if stop_frame is not None or stacker.pad else None,
                                             size=(S, S)),
                           max(PREFETCH_FRAMES, batch)) if PREFETCH_FRAMES > 0 else \
            vr.frames(d0, d1 if stop_frame is not None or stacker.pad else None, size=(S, S))
        try:
            td = time.perf_counter()
            for fi, ft, rgb in _stacked(frames, stacker, start_frame, stop_at):
                t_decode += time.perf_counter() - td
                check_cancel(cancel, "analysis")
                if (fi - start_frame) % stride:
                    interp.skip(fi, float(ft))
                    last_seen[:] = [(fi, float(ft), rgb)]
                    td = time.perf_counter()
                    continue
                last_seen.clear()
                pending.append((fi, float(ft), rgb))
                if len(pending) >= batch:
                    flush()
                    emit(progress, "analyze", fi + 1 - start_frame, max(1, total - start_frame),
                         f"frame {fi + 1}/{total}")
                    done = fi + 1 - start_frame
                    if TRIM_EVERY_FRAMES > 0 and done - trimmed_at >= TRIM_EVERY_FRAMES:
                        t_trim += _release_free_memory()
                        trimmed_at = done
                td = time.perf_counter()
            if last_seen:  # the range ends between two computed frames: compute its last one
                interp.unskip(last_seen[0][0])
                pending.append(last_seen[0])
            flush()
        finally:
            frames.close()
    emit(progress, "analyze", max(1, total - start_frame), max(1, total - start_frame), "done")
    if not idxs:
        raise MediaError(f"{show(path)}: no frames in the requested range could be decoded")
    elapsed = time.perf_counter() - t_start
    n = len(idxs)
    timings = {"total_s": elapsed, "decode_s": t_decode, "model_s": t_model, "trim_s": t_trim, "frames": n,
               "frames_per_s": n / elapsed if elapsed > 0 else None,
               "realtime_factor": (n / fps) / elapsed if elapsed > 0 else None,
               "maps_computed": interp.computed, "map_stride": stride,
               "maps_per_second_of_video": fps / stride}
    return ClipAnalysis(
        path=str(path), k=k, fps=fps, frame_indices=idxs.array(), times=times.array(),
        heatmaps=None if sink is not None else heat.array(),
        aligned=None if sink is not None or is_avin else aligned.array(),
        unaligned=None if sink is not None or is_avin or k == 0 else unaligned.array(),
        visual_vectors=None if is_avin else vvecs.array(), audio_centers=acent.array(), timings=timings,
        model=bundle.name, method="avin" if is_avin else "hsa",
        count_prediction=None if count_est is None else count_est.to_dict(),
        attended_vectors=attended.array() if attend_tau is not None else None,
        attended_tau=float(attend_tau if attend_tau is not None else 0.05), sink=sink,
        sound=sound.to_dict(), note=note)


def map_stride(cfg, fps: float) -> int:
    """Every how many frames the model runs: 1 (every frame) unless the model asks for maps at
    ``cfg.map_rate`` per second of video, fewer than the clip's frames (the frames between get
    interpolated maps)."""
    rate = float(getattr(cfg, "map_rate", 0.0) or 0.0)
    if rate <= 0 or fps <= rate:
        return 1
    return max(1, int(fps // rate))


class _Interpolator:
    """Per-frame outputs from outputs at some frames: the frames skipped between two computed
    ones get their maps and vectors interpolated linearly in frame index (vectors renormalised).
    Frames come out in order; those after the last computed frame wait for the next one."""

    def __init__(self):
        self.prev = None  # (index, time, {name: array [...] of the last computed frame})
        self.skipped: list[tuple[int, float]] = []
        self.computed = 0

    def skip(self, fi: int, ft: float) -> None:
        self.skipped.append((fi, ft))

    def unskip(self, fi: int) -> None:
        self.skipped = [s for s in self.skipped if s[0] != fi]

    def add(self, fi: np.ndarray, ti: np.ndarray, out: dict) -> tuple[np.ndarray, np.ndarray, dict]:
        self.computed += len(fi)
        if not self.skipped and self.prev is None:
            self.prev = (int(fi[-1]), float(ti[-1]), {k: v[-1] for k, v in out.items()})
            return fi, ti, out
        rows_f, rows_t, rows = [], [], {k: [] for k in out}
        for j in range(len(fi)):
            a = int(fi[j])
            before = [s for s in self.skipped if s[0] < a]
            self.skipped = [s for s in self.skipped if s[0] > a]
            cur = {k: v[j] for k, v in out.items()}
            for sf, st in before:
                if self.prev is None:  # before the first computed frame: its maps
                    vals = cur
                else:
                    p0, _, pv = self.prev
                    u = (sf - p0) / max(1, a - p0)
                    vals = {k: (1 - u) * pv[k] + u * cur[k] for k in out}
                    for k in ("visual_vectors", "audio_centers", "attended"):
                        if k in vals:
                            nrm = np.linalg.norm(vals[k], axis=-1, keepdims=True)
                            vals[k] = vals[k] / np.maximum(nrm, 1e-6)
                rows_f.append(sf)
                rows_t.append(st)
                for k in out:
                    rows[k].append(vals[k])
            rows_f.append(a)
            rows_t.append(float(ti[j]))
            for k in out:
                rows[k].append(cur[k])
            self.prev = (a, float(ti[j]), cur)
        return (np.asarray(rows_f, np.int64), np.asarray(rows_t, np.float64),
                {k: np.stack(v).astype(np.float32) for k, v in rows.items()})


def _stacked(frames, stacker: FrameStacker, start: int, stop: int):
    """(index, time, model input) of the frames in [start, stop), from the decoded stream."""
    try:
        for fi, ft, rgb in frames:
            yield from stacker.push(fi, ft, rgb, start <= fi < stop)
    except MediaError:
        yield from stacker.finish()  # what decoded before the damage still gets its maps
        raise
    yield from stacker.finish()


class _Rows:
    """Per-frame outputs appended batch by batch into one array allocated for the whole clip
    (``capacity`` rows: the frame count its header gives), grown by half when a file holds more
    frames than it says. A list of batches concatenated at the end held every output twice at
    the peak of a long clip; rows of the capacity never written are never touched, so they
    cost no memory."""

    def __init__(self, capacity: int, dtype=np.float32):
        self.capacity = max(1, int(capacity))
        self.dtype = dtype
        self.buf: Optional[np.ndarray] = None
        self.n = 0

    def append(self, a) -> None:
        a = np.asarray(a)
        if self.buf is None:
            self.buf = np.empty((max(self.capacity, len(a)), *a.shape[1:]), self.dtype)
        need = self.n + len(a)
        if need > len(self.buf):
            grown = np.empty((max(need, len(self.buf) * 3 // 2), *self.buf.shape[1:]), self.dtype)
            grown[:self.n] = self.buf[:self.n]
            self.buf = grown
        self.buf[self.n:need] = a
        self.n = need

    def __len__(self) -> int:
        return self.n

    def array(self) -> np.ndarray:
        """The rows written (a view of the buffer: no copy)."""
        return np.empty((0,), self.dtype) if self.buf is None else self.buf[:self.n]
