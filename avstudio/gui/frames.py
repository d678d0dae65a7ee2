"""Decoding ahead: a frame cache at display size and the thread that fills it.

The :class:`FrameServer` thread owns its own :class:`~avstudio.media.VideoReader`. The GUI
asks for one frame at a time (:meth:`FrameServer.request`: the latest request wins, so a
fast scrub never queues work); when idle, the thread decodes ahead of the playhead in the
direction of playback (sequential decoding, no seeks; backwards it decodes the span behind
the playhead forwards) and keeps the frames, already converted to the painter's format, in
a :class:`FrameCache` bounded in bytes.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Optional

import numpy as np
from PySide6.QtCore import QThread, Signal
from PySide6.QtGui import QImage

from .render import rgb_to_qimage


class FrameCache:
    """Thread-safe LRU of decoded frames (QImage) keyed by frame index, bounded in bytes."""

    def __init__(self, max_bytes: int = 512 * 1024 * 1024):
        self.max_bytes = int(max_bytes)
        self._d: OrderedDict[int, QImage] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.generation = 0  # bumped when the display size changes
        self.hits = 0
        self.misses = 0

    def get(self, index: int) -> Optional[QImage]:
        with self._lock:
            img = self._d.get(index)
            if img is not None:
                self._d.move_to_end(index)
                self.hits += 1
            else:
                self.misses += 1
            return img

    def __contains__(self, index: int) -> bool:
        with self._lock:
            return index in self._d

    def put(self, index: int, img: QImage, protect: Optional[tuple[int, int]] = None) -> None:
        with self._lock:
            old = self._d.pop(index, None)
            if old is not None:
                self._bytes -= old.sizeInBytes()
            self._d[index] = img
            self._bytes += img.sizeInBytes()
            while self._bytes > self.max_bytes and len(self._d) > 1:
                victim = next(iter(self._d))
                if protect is not None and protect[0] <= victim <= protect[1] and len(self._d) > 2:
                    # keep the frames around the playhead: evict the oldest outside the window
                    for key in self._d:
                        if not (protect[0] <= key <= protect[1]):
                            victim = key
                            break
                v = self._d.pop(victim)
                self._bytes -= v.sizeInBytes()

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self._bytes = 0
            self.generation += 1

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._d)

    def indices(self) -> list[int]:
        with self._lock:
            return list(self._d)


class FrameServer(QThread):
    """Decodes requested frames and decodes ahead. Signals are delivered in the GUI thread."""

    frameReady = Signal(int, object, int)  # index, QImage, cache generation
    failed = Signal(str)

    def __init__(self, path: str, frame_count: int, size: Optional[tuple[int, int]],
                 cache: FrameCache, ahead: int = 40, after_decode=None, parent=None):
        super().__init__(parent)
        self.after_decode = after_decode  # called with each index decoded ahead (overlays)
        self.path = path
        self.frame_count = int(frame_count)
        self.size = size
        self.cache = cache
        self.ahead = int(ahead)
        self._cond = threading.Condition()
        self._request: Optional[int] = None
        self._playhead = 0
        self._direction = 1
        self._stop = False
        self._size_changed = False
        self._bad: set[int] = set()
        self.playing = False  # paused: decode ahead only after a pause in the requests
        self.idle_before_prefetch = 0.15
        self.ahead_paused = 12
        self._last_request = 0.0
        self.decode_seconds = 0.0
        self.decode_cpu_seconds = 0.0
        self.decoded = 0
        self.setObjectName("avstudio-frames")

    # -- GUI side --------------------------------------------------------------------------
    def request(self, index: int, direction: int = 1) -> None:
        with self._cond:
            self._last_request = time.perf_counter()
            self._request = int(index)
            self._playhead = int(index)
            self._direction = 1 if direction >= 0 else -1
            self._cond.notify()

    def set_playhead(self, index: int, direction: int = 1) -> None:
        """Where decoding ahead should happen (no frame is delivered)."""
        with self._cond:
            self._playhead = int(index)
            self._direction = 1 if direction >= 0 else -1
            self._cond.notify()

    def set_size(self, size: Optional[tuple[int, int]]) -> None:
        with self._cond:
            if size == self.size:
                return
            self.size = size
            self._size_changed = True
            self.cache.clear()
            self._cond.notify()

    def stop(self, wait_ms: int = 5000) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self.wait(wait_ms)

    # -- thread ----------------------------------------------------------------------------
    def _prefetch_wait(self) -> float:
        """Seconds to hold back decoding ahead (while scrubbing, requests come first)."""
        if self.playing:
            return 0.0
        return max(0.0, self._last_request + self.idle_before_prefetch - time.perf_counter())

    def _next_prefetch(self) -> Optional[int]:
        n = self.frame_count
        ph, d = self._playhead, self._direction
        ahead = self.ahead if self.playing else self.ahead_paused
        if d > 0:
            for i in range(max(0, ph), min(n, ph + ahead + 1)):
                if i not in self.cache and i not in self._bad:
                    return i
        else:
            lo = max(0, ph - ahead)
            for i in range(lo, min(n, ph + 1)):
                if i not in self.cache and i not in self._bad:
                    return lo if (lo not in self.cache and lo not in self._bad) else i
        return None

    def run(self) -> None:  # noqa: C901 - a small event loop
        from ..errors import AVStudioError
        from ..media import VideoReader

        try:
            vr = VideoReader(self.path, threads=1)
        except AVStudioError as exc:
            self.failed.emit(str(exc))
            return
        try:
            while True:
                with self._cond:
                    while not self._stop and self._request is None:
                        hold = self._prefetch_wait()
                        if hold <= 0 and self._next_prefetch() is not None:
                            break
                        self._cond.wait(hold if hold > 0 else 0.25)
                    if self._stop:
                        return
                    req, self._request = self._request, None
                    size = self.size
                    gen = self.cache.generation
                    direction, ph = self._direction, self._playhead
                if req is not None:
                    img = self.cache.get(req)
                    if img is None:
                        img = self._decode(vr, req, size)
                        if img is None:
                            self._bad.add(req)
                            continue
                        self.cache.put(req, img, self._protect(ph, direction))
                    self.frameReady.emit(req, img, gen)
                    continue
                i = self._next_prefetch()
                if i is None:
                    continue
                img = self._decode(vr, i, size)
                if img is None:
                    self._bad.add(i)  # cannot decode it: do not spin on it
                    continue
                if gen == self.cache.generation:
                    self.cache.put(i, img, self._protect(ph, direction))
                if self.after_decode is not None:
                    try:
                        self.after_decode(i)
                    except Exception:
                        pass
        finally:
            vr.close()

    def _protect(self, ph: int, direction: int) -> tuple[int, int]:
        return (ph - 4, ph + self.ahead) if direction > 0 else (ph - self.ahead, ph + 4)

    def _decode(self, vr, index: int, size) -> Optional[QImage]:
        from ..errors import AVStudioError

        if index < 0 or index >= self.frame_count:
            return None
        t, c = time.perf_counter(), time.thread_time()
        try:
            rgb = vr.frame(index, size=size)
        except AVStudioError as exc:
            self.failed.emit(str(exc))
            return None
        img = rgb_to_qimage(rgb)
        self.decode_seconds += time.perf_counter() - t
        self.decode_cpu_seconds += time.thread_time() - c
        self.decoded += 1
        return img


def lower_thread_priority(nice: int = 10) -> None:
    """Make the calling thread yield to the GUI and the frame server (Linux: per-thread nice)."""
    try:
        import os

        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), nice))
    except (AttributeError, OSError, PermissionError):
        pass


class ProxyStore:
    """Small JPEG copies of (ideally) every frame, for instant scrubbing: thread-safe, bounded."""

    def __init__(self, max_bytes: int = 256 * 1024 * 1024):
        self.max_bytes = int(max_bytes)
        self._d: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self.nbytes = 0
        self.complete = False

    def put(self, index: int, data: bytes) -> bool:
        with self._lock:
            if self.nbytes + len(data) > self.max_bytes:
                return False
            old = self._d.get(index)
            if old is not None:
                self.nbytes -= len(old)
            self._d[index] = data
            self.nbytes += len(data)
            return True

    def get(self, index: int) -> Optional[QImage]:
        with self._lock:
            data = self._d.get(index)
        if data is None:
            return None
        img = QImage.fromData(data, "JPG")
        return None if img.isNull() else img

    def __contains__(self, index: int) -> bool:
        return index in self._d

    def __len__(self) -> int:
        return len(self._d)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self.nbytes = 0
            self.complete = False


def proxy_size(width: int, height: int, box: tuple[int, int] = (480, 270)) -> tuple[int, int]:
    s = min(1.0, box[0] / max(1, width), box[1] / max(1, height))
    w, h = max(2, int(round(width * s))), max(2, int(round(height * s)))
    return w - w % 2, h - h % 2


class ProxyBuilder(QThread):
    """Decodes the whole clip once, in order, at low priority, into small JPEG proxies.

    Scrubbing to a frame not decoded yet at full size shows its proxy at once (a few ms,
    whatever the distance to the previous keyframe), then the exact full-size frame.
    Frames are taken every ``stride`` when the clip is too long for the memory budget.
    """

    progress = Signal(int, int)

    def __init__(self, path: str, frame_count: int, size: tuple[int, int], store: ProxyStore,
                 quality: int = 80, bytes_per_frame: int = 16000, parent=None):
        super().__init__(parent)
        self.path, self.frame_count, self.size, self.store = path, int(frame_count), size, store
        self.quality = int(quality)
        self.stride = max(1, int(np.ceil(self.frame_count * bytes_per_frame / max(1, store.max_bytes))))
        self._stop = threading.Event()
        self.seconds = 0.0
        self.setObjectName("avstudio-proxies")

    def stop(self, wait_ms: int = 5000) -> None:
        self._stop.set()
        self.wait(wait_ms)

    def run(self) -> None:
        from PySide6.QtCore import QBuffer, QByteArray, QIODevice

        from ..errors import AVStudioError
        from ..media import VideoReader

        lower_thread_priority(5)
        t0 = time.perf_counter()
        n = 0
        try:
            with VideoReader(self.path, threads=1) as vr:
                for idx, _t, rgb in vr.frames(size=self.size, step=self.stride):
                    if self._stop.is_set():
                        return
                    img = rgb_to_qimage(rgb)
                    ba = QByteArray()
                    buf = QBuffer(ba)
                    buf.open(QIODevice.OpenModeFlag.WriteOnly)
                    img.save(buf, "JPG", self.quality)
                    buf.close()
                    if not self.store.put(idx, bytes(ba.data())):
                        break  # over budget
                    n += 1
                    if n % 25 == 0:
                        self.progress.emit(n * self.stride, self.frame_count)
            self.store.complete = True
        except AVStudioError:
            pass  # the frame server reports decoding problems
        finally:
            self.seconds = time.perf_counter() - t0
