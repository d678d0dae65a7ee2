"""Background work for the GUI: threads that run the Qt-free core and report with signals.

* :class:`Job` runs one function in a QThread. The function gets a ``progress`` callable
  (the core's :class:`~avstudio.progress.ProgressEvent` protocol) and a ``cancel``
  ``threading.Event``; the job turns them into the ``progress`` signal and a cancel slot.
* :class:`AnalysisScheduler` analyses a clip chunk by chunk, starting where the user is and
  re-prioritised on every seek, storing each chunk in the on-disk cache as it comes.

Torch is imported only inside these threads (start-up stays fast).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
from PySide6.QtCore import QThread, Signal

from ..errors import AVStudioError, Cancelled
from ..progress import ProgressEvent, check_cancel

if TYPE_CHECKING:
    from ..analysis.cache import HeatmapData

_live_jobs: set[Job] = set()


class Job(QThread):
    """Run ``fn(*args, progress=..., cancel=..., **kwargs)`` in a thread.

    Signals: ``progress(ProgressEvent)``, ``done(result)``, ``failed(message)`` (an
    AVStudioError's one line, or "internal error: ..." for a bug), ``cancelled()``.
    Exactly one of done/failed/cancelled is emitted.
    """

    progress = Signal(object)
    done = Signal(object)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, name: str, fn: Callable[..., Any], *args, pass_progress: bool = True,
                 nice: int = 0, **kwargs):
        super().__init__()
        self.name = name
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.pass_progress = pass_progress
        self.nice = nice
        self.cancel_event = threading.Event()
        self.result: Any = None
        self.error: Optional[str] = None
        self.state = "new"  # new | running | done | failed | cancelled
        self.setObjectName(f"avstudio-{name}")
        self.finished.connect(self._forget)

    def start(self, *a) -> None:  # keep a reference while running (no GC of a live QThread)
        _live_jobs.add(self)
        self.state = "running"
        super().start(*a)

    def _forget(self) -> None:
        _live_jobs.discard(self)

    def cancel(self) -> None:
        self.cancel_event.set()

    def _emit_progress(self, ev: ProgressEvent) -> None:
        self.progress.emit(ev)

    def run(self) -> None:
        if self.nice:
            from .frames import lower_thread_priority

            lower_thread_priority(self.nice)
        kw = dict(self.kwargs)
        if self.pass_progress:
            kw.setdefault("progress", self._emit_progress)
            kw.setdefault("cancel", self.cancel_event)
        try:
            self.result = self.fn(*self.args, **kw)
        except Cancelled:
            self.state = "cancelled"
            self.cancelled.emit()
            return
        except AVStudioError as exc:
            self.state = "failed"
            self.error = str(exc)
            self.failed.emit(self.error)
            return
        except Exception as exc:  # a bug: say so, keep the app running
            traceback.print_exc()
            self.state = "failed"
            self.error = f"internal error in {self.name}: {type(exc).__name__}: {exc}"
            self.failed.emit(self.error)
            return
        if self.cancel_event.is_set():
            self.state = "cancelled"
            self.cancelled.emit()
            return
        self.state = "done"
        self.done.emit(self.result)


def stop_all_jobs(wait_ms: int = 10000) -> None:
    """Cancel every running job and wait for them (on quit)."""
    for j in list(_live_jobs):
        j.cancel()
    for j in list(_live_jobs):
        j.wait(wait_ms)


# ------------------------------------------------------------------------ the functions

def load_model_fn(model_path, progress=None, cancel=None):
    """Load a MODEL (None: the shipped default). Imports torch (seconds, in this thread)."""
    import torch

    from ..nets.checkpoint import load_model

    torch.set_num_threads(1)
    bundle = load_model(model_path)
    # touch model_id now (stat of the files): the cache key
    _ = bundle.model_id
    return bundle


def load_audio_fn(path: str, max_rate: int = 48000, progress=None, cancel=None) -> Optional[dict]:
    """The clip's sound for playback and its pictures: mix, rate, spectrogram, envelope."""
    from ..media import probe, read_audio

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


def fill_slots(data: HeatmapData, start: int, stop: int) -> HeatmapData:
    """Give every frame slot in ``[start, stop)`` the heatmaps of the frame shown there.

    Frame indices are time slots at the stream's average rate (``VideoReader``): in a
    variable-frame-rate clip some slots have no frame of their own and show the frame before
    them (the reader's ``frame(i)`` does so). Those slots get that frame's heatmaps (a slot
    before the chunk's first decoded frame gets the first one); a constant-rate clip is
    returned as it is."""
    fr = np.asarray(data.frames, np.int64)
    if len(fr) == 0 or stop <= start:
        return data
    slots = np.arange(start, stop, dtype=np.int64)
    if len(fr) == len(slots) and np.array_equal(fr, slots):
        return data
    src = np.clip(np.searchsorted(fr, slots, side="right") - 1, 0, len(fr) - 1)
    # keep decoded frames outside the range too (there should be none)
    extra = np.flatnonzero((fr < start) | (fr >= stop))
    order = np.concatenate([src, extra])
    frames = np.concatenate([slots, fr[extra]])
    srt = np.argsort(frames, kind="stable")
    return data.select(order[srt], frames[srt])


# ------------------------------------------------------------------------ separation adapter

def separation_available(bundle) -> bool:
    return bundle is not None and bundle.separator is not None


def separate_fn(bundle, path: str, cache, k: int, fps: float, progress=None, cancel=None):
    """Stems ``[k, N]`` (and the residual no cluster claimed) at the separator's rate for the
    clip: from the cache, else :func:`avstudio.analysis.separate.separate_analysis` (each cluster
    conditioned on the visual features where its sound is heard, as the separator was trained)."""
    from ..analysis import separate
    from ..media import probe, read_audio

    sr = _sep_rate(bundle)
    info = probe(path, check=False)
    if info.has_audio:
        audio = read_audio(path, sr)
    else:
        audio = np.zeros(int(round(info.duration * sr)), np.float32)
    check_cancel(cancel, "separation")
    got = cache.load_stems(k)
    if got is not None and got[1] == sr:
        stems = got[0]
        cached = True
    else:
        data = cache.load(k)
        if data is None or data.visual_vectors is None:
            raise AVStudioError("no heatmaps to separate with yet")
        stems = separate.separate_analysis(bundle, path, data, audio=audio, progress=progress, cancel=cancel)
        stems = np.asarray(stems, np.float32)
        check_cancel(cancel, "separation")
        cache.save_stems(k, stems, sr)
        cached = False
    n = min(len(audio), stems.shape[1])
    residual = audio[:n] - stems[:, :n].sum(0)
    return {"stems": stems, "sr": sr, "residual": residual.astype(np.float32), "cached": cached}


def _sep_rate(bundle) -> int:
    try:
        return int(bundle.separator.cfg.sample_rate)
    except Exception:
        from ..nets.config import SAMPLE_RATE

        return SAMPLE_RATE


def pixel_sound_fn(bundle, path: str, time_s: float, x: float, y: float, progress=None, cancel=None):
    """The sound of one pixel (normalised x, y in 0..1 of the frame) of the frame at ``time_s``,
    over the whole clip: {"audio": float32 [N], "sr": rate, "offset": 0.0}."""
    from ..analysis import separate

    audio = separate.pixel_sound(bundle, path, time_s, x, y)
    return {"audio": np.asarray(audio, np.float32).reshape(-1), "sr": _sep_rate(bundle), "offset": 0.0}


# ------------------------------------------------------------------------ the scheduler

class AnalysisScheduler(QThread):
    """Heatmaps for a clip, chunk by chunk, from the playhead onwards (then the start).

    Signals (delivered in the GUI thread): ``kDecided(k, how)``, ``chunkReady(HeatmapData)``,
    ``progress(done_frames, total_frames, message)``, ``finishedAll()``, ``failed(message)``,
    ``cancelled()``.

    Cluster identity is kept across chunks: each chunk's audio centers are matched to the
    clip's reference centers (the first chunk analysed, stored in the cache) and its
    clusters are put in that order, so colours and stems mean the same source everywhere.
    """

    kDecided = Signal(int, str)
    chunkReady = Signal(object)
    progress = Signal(int, int, str)
    finishedAll = Signal()
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, bundle, path: str, frame_count: int, fps: float, has_audio: bool, cache,
                 k: Optional[int] = None, chunk: int = 64, batch: int = 16, playhead: int = 0,
                 threads: int = 1):
        super().__init__()
        self.bundle, self.path = bundle, path
        self.frame_count = int(frame_count)
        self.fps = float(fps)
        self.has_audio = has_audio
        self.cache = cache
        self.k_request = k
        self.k: Optional[int] = None
        self.chunk = int(chunk)
        self.batch = int(batch)
        self.threads = threads
        self._playhead = int(playhead)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._chunk_cancel = threading.Event()
        self._current: Optional[tuple[int, int]] = None
        self.done_mask = np.zeros(self.frame_count, bool)
        self.state = "new"
        self.seconds_model = 0.0
        self.frames_analysed = 0
        self.setObjectName("avstudio-analysis")

    # -- GUI side --------------------------------------------------------------------------
    def set_playhead(self, frame: int, jump: bool = True) -> None:
        """Re-prioritise: analyse from ``frame`` on. After a jump (a seek), a chunk in flight
        far from it is dropped; while playing (``jump=False``) it is finished first."""
        with self._lock:
            self._playhead = int(frame)
            cur = self._current
        if cur is not None and jump:
            a, b = cur
            if not (a <= frame < b + self.chunk):
                self._chunk_cancel.set()

    def cancel(self) -> None:
        self._stop.set()
        self._chunk_cancel.set()

    def stop(self, wait_ms: int = 10000) -> None:
        self.cancel()
        self.wait(wait_ms)

    # -- thread ----------------------------------------------------------------------------
    def _chunks(self) -> list[tuple[int, int]]:
        n = self.frame_count
        return [(a, min(n, a + self.chunk)) for a in range(0, n, self.chunk)]

    def _next_chunk(self) -> Optional[tuple[int, int]]:
        with self._lock:
            ph = max(0, min(self._playhead, self.frame_count - 1))
        chunks = self._chunks()
        first = ph // self.chunk
        order = chunks[first:] + chunks[:first]
        for a, b in order:
            if not self.done_mask[a:b].all():
                return a, b
        return None

    def _decide_k(self) -> tuple[int, str]:
        if self.k_request is not None:
            return int(self.k_request), "chosen in the panel"
        got = self.cache.auto_k()
        if got is not None:
            return int(got["k"]), f"the counter found {got['k']} (cached)"
        if self.bundle.counter is not None and self.has_audio:
            from ..analysis.localize import predict_count

            n, conf, lam = predict_count(self.bundle, self.path)
            k = int(max(1, min(6, n)))
            self.cache.save_auto_k(k, conf, lam)
            return k, f"the counter found {n} (confidence {conf:.2f})"
        return 1, "this model has no source counter (choose how many in the panel)"

    def run(self) -> None:
        from .frames import lower_thread_priority

        lower_thread_priority(5)  # the GUI and the frame server come first
        self.state = "running"
        try:
            self._run()
        except Cancelled:
            self.state = "cancelled"
            self.cancelled.emit()
        except AVStudioError as exc:
            self.state = "failed"
            self.failed.emit(str(exc))
        except Exception as exc:  # a bug: report, keep the app alive
            traceback.print_exc()
            self.state = "failed"
            self.failed.emit(f"internal error in the analysis: {type(exc).__name__}: {exc}")

    def _run(self) -> None:
        import torch

        from ..analysis.cache import HeatmapData
        from ..analysis.localize import analyze_clip

        torch.set_num_threads(max(1, int(self.threads)))
        if self._stop.is_set():
            raise Cancelled("analysis cancelled")
        k, how = self._decide_k()
        self.k = k
        self.kDecided.emit(k, how)
        cached = self.cache.load(k)
        if cached is not None:
            ok = (cached.frames >= 0) & (cached.frames < self.frame_count)
            self.done_mask[cached.frames[ok]] = True
            self.chunkReady.emit(cached)
        ref = self.cache.reference(k)
        self.progress.emit(int(self.done_mask.sum()), self.frame_count, "")
        while True:
            if self._stop.is_set():
                raise Cancelled("analysis cancelled")
            nxt = self._next_chunk()
            if nxt is None:
                break
            a, b = nxt
            # start inside the chunk where frames are missing (a cancelled chunk restarts
            # where it stopped)
            missing = np.flatnonzero(~self.done_mask[a:b])
            a2 = a + int(missing[0])
            with self._lock:
                self._current = (a2, b)
                self._chunk_cancel.clear()
                if self._stop.is_set():
                    self._chunk_cancel.set()
            t = time.perf_counter()
            try:
                res = analyze_clip(self.bundle, self.path, k=k, batch=self.batch, start_frame=a2,
                                   stop_frame=b, cancel=self._chunk_cancel)
            except Cancelled:
                with self._lock:
                    self._current = None
                if self._stop.is_set():
                    raise
                continue  # re-prioritised: pick the chunk at the new playhead
            finally:
                self.seconds_model += time.perf_counter() - t
            with self._lock:
                self._current = None
            data = HeatmapData(k=k, frames=res.frame_indices.astype(np.int64), times=res.times,
                               heatmaps=res.heatmaps, aligned=res.aligned, unaligned=res.unaligned,
                               visual_vectors=res.visual_vectors, audio_centers=res.audio_centers,
                               attended_vectors=res.attended_vectors)
            data = fill_slots(data, a2, min(b, self.frame_count))
            ref = self._order_clusters(data, ref)
            self.cache.save_chunk(data)
            ok = (data.frames >= 0) & (data.frames < self.frame_count)
            self.done_mask[data.frames[ok]] = True
            # frames the decoder could not produce (a short clip): do not retry them forever
            self.done_mask[a2:b] = True
            self.frames_analysed += len(data)
            self.chunkReady.emit(data)
            self.progress.emit(int(self.done_mask.sum()), self.frame_count,
                               f"{len(data) / max(1e-6, time.perf_counter() - t):.0f} frames/s")
        self.cache.consolidate(k)
        self.state = "done"
        self.finishedAll.emit()

    def _order_clusters(self, data, ref: Optional[np.ndarray]) -> np.ndarray:
        """Permute ``data``'s clusters in place to match ``ref`` [k, D]; returns the reference."""
        if data.audio_centers is None or data.k <= 1:
            if ref is None and data.audio_centers is not None:
                ref = _unit(data.audio_centers.mean(0))
                self.cache.save_reference(data.k, ref)
            return ref
        mean = _unit(np.asarray(data.audio_centers, np.float64).mean(0))  # [k, D]
        if ref is None:
            self.cache.save_reference(data.k, mean.astype(np.float32))
            return mean.astype(np.float32)
        from scipy.optimize import linear_sum_assignment

        sim = ref @ mean.T  # [k_ref, k_chunk]
        _, perm = linear_sum_assignment(-sim)
        if not np.array_equal(perm, np.arange(data.k)):
            for name in ("heatmaps", "aligned", "visual_vectors", "audio_centers"):
                a = getattr(data, name)
                if a is not None:
                    setattr(data, name, a[:, perm])
        return ref


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)
