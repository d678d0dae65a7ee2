"""Background work for the GUI: threads that run the Qt-free core and report with signals.

* :class:`Job` runs one function in a QThread. The function gets a ``progress`` callable
  (the core's :class:`~avstudio.progress.ProgressEvent` protocol) and a ``cancel``
  ``threading.Event``; the job turns them into the ``progress`` signal and a cancel slot.
  Connect its signals to methods of the window or panel that owns it (never to lambdas that
  hold widgets): a signal still queued when its owner is deleted is then dropped with it.
* :class:`AnalysisScheduler` analyses a clip chunk by chunk, starting where the user is and
  re-prioritised on every seek (:class:`avstudio.studio.planner.ChunkPlanner`), storing each
  chunk in the on-disk cache as it comes.

Torch is imported only inside these threads (start-up stays fast).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Optional

import numpy as np
from PySide6.QtCore import QThread, Signal

from ..errors import AVStudioError, Cancelled
from ..progress import ProgressEvent
from ..studio.planner import ChunkPlanner, decide_k, fill_slots, order_clusters

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


# ------------------------------------------------------------------------ the scheduler

class AnalysisScheduler(QThread):
    """Heatmaps for a clip, chunk by chunk, from the playhead onwards (then the start).

    Signals (delivered in the GUI thread): ``soundChecked(SoundCheck)``, ``kDecided(k, how)``,
    ``chunkReady(HeatmapData)``, ``progress(done_frames, total_frames, message)``,
    ``finishedAll()``, ``failed(message)``, ``cancelled()``. A clip without sound (no audio
    track, or silent) gets ``kDecided(0, why)`` and ``finishedAll()``: nothing is localised.

    Cluster identity is kept across chunks (:func:`~avstudio.studio.planner.order_clusters`):
    each chunk's audio centers are matched to the clip's reference centers (the first chunk
    analysed, stored in the cache), so colours and stems mean the same source everywhere.
    """

    soundChecked = Signal(object)
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
        self.batch = int(batch)
        self.threads = threads
        self.plan = ChunkPlanner(frame_count, chunk, playhead)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._chunk_cancel = threading.Event()
        self.state = "new"
        self.seconds_model = 0.0
        self.frames_analysed = 0
        self.setObjectName("avstudio-analysis")

    @property
    def done_mask(self) -> np.ndarray:
        return self.plan.done

    # -- GUI side --------------------------------------------------------------------------
    def set_playhead(self, frame: int, jump: bool = True) -> None:
        """Re-prioritise: analyse from ``frame`` on. After a jump (a seek), a chunk in flight
        far from it is dropped; while playing (``jump=False``) it is finished first."""
        if self.plan.set_playhead(frame, jump):
            self._chunk_cancel.set()

    def cancel(self) -> None:
        self._stop.set()
        self._chunk_cancel.set()

    def stop(self, wait_ms: int = 10000) -> None:
        self.cancel()
        self.wait(wait_ms)

    # -- thread ----------------------------------------------------------------------------
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
        from ..analysis.sound import NO_AUDIO, check_sound

        sound = check_sound(self.path, cancel=self._stop) if self.has_audio else NO_AUDIO
        self.soundChecked.emit(sound)
        k, how = decide_k(self.k_request, self.cache, self.bundle, self.path, sound)
        self.k = k
        self.kDecided.emit(k, how)
        if k == 0:  # no sound: nothing to localise (the window says why)
            self.plan.mark_range(0, self.frame_count)
            self.progress.emit(self.frame_count, self.frame_count, "")
            self.state = "done"
            self.finishedAll.emit()
            return
        cached = self.cache.load(k)
        if cached is not None:
            self.plan.mark(cached.frames)
            self.chunkReady.emit(cached)
        ref = self.cache.reference(k)
        self.progress.emit(self.plan.n_done, self.frame_count, "")
        while True:
            if self._stop.is_set():
                raise Cancelled("analysis cancelled")
            nxt = self.plan.next_chunk()
            if nxt is None:
                break
            a, b = nxt
            with self._lock:
                self.plan.begin(a, b)
                self._chunk_cancel.clear()
                if self._stop.is_set():
                    self._chunk_cancel.set()
            t = time.perf_counter()
            try:
                res = analyze_clip(self.bundle, self.path, k=k, batch=self.batch, start_frame=a,
                                   stop_frame=b, cancel=self._chunk_cancel, sound=sound)
            except Cancelled:
                self.plan.end()
                if self._stop.is_set():
                    raise
                continue  # re-prioritised: pick the chunk at the new playhead
            finally:
                self.seconds_model += time.perf_counter() - t
            self.plan.end()
            data = HeatmapData(k=k, frames=res.frame_indices.astype(np.int64), times=res.times,
                               heatmaps=res.heatmaps, aligned=res.aligned, unaligned=res.unaligned,
                               visual_vectors=res.visual_vectors, audio_centers=res.audio_centers,
                               attended_vectors=res.attended_vectors)
            data = fill_slots(data, a, min(b, self.frame_count))
            ref, new = order_clusters(data, ref)
            if new:
                self.cache.save_reference(data.k, ref)
            self.cache.save_chunk(data)
            self.plan.mark(data.frames)
            self.plan.mark_range(a, b)  # frames the decoder could not produce: not retried forever
            self.frames_analysed += len(data)
            self.chunkReady.emit(data)
            self.progress.emit(self.plan.n_done, self.frame_count,
                               f"{len(data) / max(1e-6, time.perf_counter() - t):.0f} frames/s")
        self.cache.consolidate(k)
        self.state = "done"
        self.finishedAll.emit()
