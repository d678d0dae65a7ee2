"""Frame-exact video reading: streaming, random access by index or time, scrubbing.

Index ``i`` is the frame whose presentation time is ``i / fps`` after the first frame:
indices come from each frame's pts, the stream time base and the average frame rate, so they
are exact after seeks and for streams whose first pts is not 0. ``time`` is seconds since
the container's start (the same clock as :func:`~avstudio.media.read_audio`).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterator
from fractions import Fraction
from typing import Optional

import av
import numpy as np

from ..errors import MediaError
from ._common import open_input, reason, show, stream_fps, video_stream
from .probe import MediaInfo, probe

Size = Optional[tuple[int, int]]

#: Give up on a stream after this many packets in a row that fail to decode.
MAX_CONSECUTIVE_DECODE_ERRORS = 25
_DECODE_ERRORS = (av.error.FFmpegError, ValueError, RuntimeError, OSError, MemoryError)


class FrameIndexError(MediaError, IndexError):
    """A frame index or time outside the clip."""


def _to_rgb(frame: av.VideoFrame, size: Size, rotation: int) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` of a decoded frame, rotated for display, resized to ``size``."""
    kw = {}
    if size is not None:
        w, h = int(size[0]), int(size[1])
        if w <= 0 or h <= 0:
            raise ValueError(f"size must be positive (width, height), got {size!r}")
        if rotation in (90, 270):
            w, h = h, w
        if (w, h) != (frame.width, frame.height):
            kw = {"width": w, "height": h}
    img = frame.to_ndarray(format="rgb24", **kw)
    if rotation:
        img = np.ascontiguousarray(np.rot90(img, k=rotation // 90))
    return img


class _Cursor:
    """One open container and decoder, positioned somewhere in the video stream."""

    def __init__(self, reader: VideoReader):
        self.r = reader
        self.container = open_input(reader.path)
        self.vs = video_stream(self.container)
        cc = self.vs.codec_context
        if reader.threads != 1:
            try:
                cc.thread_type = "AUTO"
                cc.thread_count = int(reader.threads or 0)
            except Exception:
                pass
        self._it: Optional[Iterator] = None
        self.last: Optional[tuple[int, av.VideoFrame]] = None
        self.eof = False
        self.stop_reason: Optional[str] = None
        self._keyframes: Optional[list[int]] = None

    # -- decoding
    def _frames(self) -> Iterator[av.VideoFrame]:
        demux = self.container.demux(self.vs)
        errors = 0
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except _DECODE_ERRORS as exc:
                self.stop_reason = reason(exc)
                return
            try:
                frames = packet.decode()
            except _DECODE_ERRORS as exc:
                errors += 1
                if errors >= MAX_CONSECUTIVE_DECODE_ERRORS:
                    self.stop_reason = reason(exc)
                    return
                continue
            for f in frames:
                errors = 0
                yield f

    def read(self) -> Optional[tuple[int, av.VideoFrame]]:
        """The next decoded frame as ``(index, frame)``, or None at the end."""
        if self.eof:
            return None
        if self._it is None:
            self._it = self._frames()
        try:
            f = next(self._it)
        except StopIteration:
            f = None
        except _DECODE_ERRORS as exc:  # pragma: no cover - decode errors are caught above
            self.stop_reason = reason(exc)
            f = None
        if f is None:
            self.eof = True
            return None
        idx = self.r._index_of(f, self.last)
        self.last = (idx, f)
        return self.last

    # -- seeking
    def seek_pts(self, pts: int) -> None:
        try:
            self.container.seek(int(pts), stream=self.vs, backward=True, any_frame=False)
        except _DECODE_ERRORS:
            # some demuxers refuse timestamps before the start: go to the very beginning
            try:
                self.container.seek(0, backward=True, any_frame=False)
            except _DECODE_ERRORS as exc:
                raise MediaError(f"{show(self.r.path)}: cannot seek: {reason(exc)}") from None
        self._it = None
        self.last = None
        self.eof = False
        self.stop_reason = None

    def rewind(self) -> None:
        """Back to the very start of the file."""
        try:
            self.container.seek(0, backward=True, any_frame=False)
        except _DECODE_ERRORS:
            try:
                self.container.seek(self.vs.start_time or 0, stream=self.vs, backward=True,
                                    any_frame=True)
            except _DECODE_ERRORS as exc:
                raise MediaError(f"{show(self.r.path)}: cannot seek: {reason(exc)}") from None
        self._it = None
        self.last = None
        self.eof = False
        self.stop_reason = None

    def keyframe_before(self, pts: int) -> Optional[int]:
        """Timestamp of the last indexed keyframe at or before ``pts`` (None: no index)."""
        if self._keyframes is None:
            kf: list[int] = []
            try:
                entries = self.vs.index_entries
                if entries is not None and len(entries) >= 2:
                    kf = [e.timestamp for e in entries if e.is_keyframe]
            except Exception:
                kf = []
            self._keyframes = sorted(kf)
        if len(self._keyframes) < 1:
            return None
        i = bisect.bisect_right(self._keyframes, pts) - 1
        return self._keyframes[i] if i >= 0 else self._keyframes[0]

    def close(self) -> None:
        self._it = None
        try:
            self.container.close()
        except Exception:
            pass


class VideoReader:
    """Decode a video file frame-exactly. Use as a context manager (or call :meth:`close`).

    >>> with VideoReader("clip.mp4", size=(128, 96)) as vr:
    ...     for index, t, rgb in vr.frames():
    ...         ...
    ...     rgb = vr.frame(42)          # exactly frame 42
    ...     rgb = vr.frame_at(1.5)      # the frame shown at 1.5 s

    ``size=(width, height)`` resizes every frame (per-call ``size`` overrides it). Frames are
    RGB uint8 ``[H, W, 3]``, rotated as the display matrix says. Random access keeps the
    decoder open: a request just ahead of the last one decodes forward without seeking.
    Bad or truncated files raise :class:`~avstudio.errors.MediaError` (and never a PyAV error).
    """

    #: decode forward instead of seeking when the target is at most this many frames ahead
    #: (used when the container has no keyframe index)
    forward_limit_frames = 100

    def __init__(self, path, size: Size = None, threads: int = 0, cache_mb: float = 64):
        self.info: MediaInfo = probe(path, check=False)
        self.path = self.info.path
        if not self.info.has_video:
            raise MediaError(f"{show(self.path)} has no video stream")
        self.size = tuple(size) if size is not None else None
        self.threads = threads
        self._cursor: Optional[_Cursor] = None
        self._cache: Optional[tuple[int, av.VideoFrame]] = None
        # recently decoded frames (decoder's own format, e.g. yuv420p): stepping backwards
        # after a seek + decode-forward finds them here instead of decoding the GOP again
        self._recent: OrderedDict[int, av.VideoFrame] = OrderedDict()
        self._recent_bytes = 0
        self.cache_bytes = int(cache_mb * 1024 * 1024)
        self._closed = False
        cur = self._get_cursor()
        vs = cur.vs
        self._tb = Fraction(vs.time_base)
        self._fps = stream_fps(vs) or Fraction(self.info.fps).limit_denominator(1001)
        self._first_pts = int(self.info._extra.get("first_pts") or 0)
        self._start = self.info.start_time
        self.rotation = self.info.rotation
        self._expected = int(self.info._extra.get("expected_frames") or self.info.frame_count)

    # -- context manager
    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None
        self._cache = None
        self._recent.clear()
        self._recent_bytes = 0

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    # -- properties
    @property
    def fps(self) -> float:
        return float(self._fps)

    @property
    def frame_count(self) -> int:
        return self.info.frame_count

    @property
    def duration(self) -> float:
        return self.info.duration

    @property
    def position(self) -> Optional[int]:
        """Index of the frame the random-access decoder decoded last (None: not started)."""
        if self._cursor is None or self._cursor.last is None:
            return None
        return self._cursor.last[0]

    # -- index/time arithmetic
    def _index_of(self, frame, last) -> int:
        pts = frame.pts if frame.pts is not None else getattr(frame, "dts", None)
        if pts is None:
            return last[0] + 1 if last is not None else 0
        return int(round((Fraction(pts - self._first_pts) * self._tb) * self._fps))

    def _pts_of_index(self, index: int) -> int:
        return self._first_pts + int((Fraction(index) / self._fps) / self._tb)

    def _time_of(self, frame, index: int) -> float:
        if frame.pts is not None:
            return float(Fraction(frame.pts) * self._tb) - self._start
        return self.info.video_start + index / float(self._fps)

    def time_of_index(self, index: int) -> float:
        """Seconds (container clock) at which frame ``index`` is shown."""
        return self.info.video_start + index / float(self._fps)

    def index_at(self, time_s: float) -> int:
        """Index of the frame shown at ``time_s`` seconds (not clamped)."""
        return int(np.floor((time_s - self.info.video_start) * float(self._fps) + 1e-6))

    # -- internals
    def _get_cursor(self) -> _Cursor:
        if self._closed:
            raise MediaError(f"{show(self.path)}: the reader is closed")
        if self._cursor is None:
            self._cursor = _Cursor(self)
        return self._cursor

    def _truncated(self, last: Optional[tuple[int, object]], why: Optional[str] = None) -> MediaError:
        n = (last[0] + 1) if last is not None else 0
        t = self.info.video_start + n / float(self._fps)
        total = max(self._expected, n)
        tail = f" ({why})" if why else ""
        return MediaError(f"{show(self.path)}: stopped decoding at {t:.2f} s (frame {n} of ~{total}): "
                          f"file is truncated or corrupt{tail}")

    def _short(self, last_index: int) -> bool:
        """Did decoding end clearly before the end the container promised?"""
        if self.info.problem is not None:
            return last_index + 1 < self._expected
        if self.info.frame_count_exact:
            return last_index + 2 < self.info.frame_count
        return False

    def _forward_ok(self, cur: _Cursor, last, index: int, target_pts: int) -> bool:
        """Is decoding forward from ``last`` cheaper than seeking to ``index``?"""
        if index - last[0] <= 4:
            return True
        kf = cur.keyframe_before(target_pts)
        if kf is not None:
            last_pts = last[1].pts if last[1].pts is not None else -(1 << 62)
            return kf <= last_pts  # a seek would land on a keyframe before where we are
        return index - last[0] <= self.forward_limit_frames

    def _decode_to(self, index: int) -> av.VideoFrame:
        """The frame shown at ``index``: the decoded frame with the largest index <= ``index``."""
        cur = self._get_cursor()
        last = cur.last
        if last is not None and last[0] == index:
            return last[1]
        if self._cache is not None and self._cache[0] == index:
            return self._cache[1]
        hit = self._recent.get(index)
        if hit is not None:
            self._recent.move_to_end(index)
            return hit
        target_pts = self._pts_of_index(index)
        plan: list = []
        if last is not None and not cur.eof and last[0] < index and \
                self._forward_ok(cur, last, index, target_pts):
            plan.append("forward")
        # seek to the keyframe before the target; if that lands after it (timestamps in the
        # index are decode times, B-frames...), seek further back; finally from the start
        plan += [0.0, 1.0, 4.0, 16.0, None]
        for step in plan:
            if step == "forward":
                prev = last
            elif step is None:
                cur.rewind()
                prev = None
            else:
                cur.seek_pts(target_pts - int(Fraction(step) / self._tb))
                prev = None
            found = self._scan(cur, index, prev, final=step is None)
            if found is not None:
                return found
        raise self._truncated(None, "no frame decoded")  # pragma: no cover - final never None

    def _remember(self, index: int, frame: av.VideoFrame) -> None:
        if self.cache_bytes <= 0 or index in self._recent:
            return
        try:
            nbytes = sum(p.buffer_size for p in frame.planes)
        except Exception:
            nbytes = frame.width * frame.height * 3
        if nbytes > self.cache_bytes:
            return
        self._recent[index] = frame
        self._recent_bytes += nbytes
        while self._recent_bytes > self.cache_bytes and self._recent:
            _, old = self._recent.popitem(last=False)
            try:
                self._recent_bytes -= sum(p.buffer_size for p in old.planes)
            except Exception:
                self._recent_bytes -= old.width * old.height * 3

    def _scan(self, cur: _Cursor, index: int, prev, final: bool):
        """Decode forward to ``index``; None when positioned after it (seek further back)."""
        while True:
            got = cur.read()
            if got is None:
                if cur.stop_reason is not None or (
                        prev is not None and self._short(prev[0]) and index < self._expected):
                    raise self._truncated(prev, cur.stop_reason)
                if prev is None:
                    if not final:
                        return None
                    raise self._truncated(None, "no frame decoded")
                self._cache = (index, prev[1])
                return prev[1]
            idx, frame = got
            self._remember(idx, frame)
            if idx == index:
                return frame
            if idx > index:
                if prev is not None:
                    self._cache = (index, prev[1])
                    return prev[1]
                if not final:
                    return None
                return frame  # nothing before it: the first frame
            prev = got

    # -- public API
    def frame(self, index: int, size: Size = None) -> np.ndarray:
        """Exactly frame ``index`` as RGB uint8 ``[H, W, 3]`` (seek + decode forward)."""
        index = int(index)
        limit = self._expected if self.info.problem else self.info.frame_count
        if index < 0 or (self.info.frame_count_exact and index >= limit):
            raise FrameIndexError(f"{show(self.path)}: frame {index} is out of range "
                                  f"(the clip has {self.info.frame_count} frames)")
        frame = self._decode_to(index)
        return _to_rgb(frame, size if size is not None else self.size, self.rotation)

    def frame_at(self, time_s: float, size: Size = None) -> np.ndarray:
        """The frame shown at ``time_s`` seconds (container clock; clamped to the clip)."""
        if not np.isfinite(time_s):
            raise FrameIndexError(f"{show(self.path)}: time {time_s} is not a number")
        index = self.index_at(float(time_s))
        index = max(0, index)
        if self.info.frame_count_exact:
            index = min(index, (self._expected if self.info.problem else self.info.frame_count) - 1)
        return self.frame(index, size=size)

    def frames(self, start: int = 0, stop: Optional[int] = None, size: Size = None,
               step: int = 1) -> Iterator[tuple[int, float, np.ndarray]]:
        """Stream ``(index, time_seconds, rgb)`` for ``start <= index < stop`` in order.

        Uses its own decoder (random access with :meth:`frame` meanwhile is fine). A file that
        stops decoding early yields what decodes, then raises MediaError saying where.
        """
        size = size if size is not None else self.size
        start = max(0, int(start))
        step = max(1, int(step))
        cur = _Cursor(self)
        try:
            if start > 0:
                cur.seek_pts(self._pts_of_index(start))
            prev_idx = -1
            last = None
            while True:
                got = cur.read()
                if got is None:
                    break
                idx, frame = got
                if idx <= prev_idx:  # rounding in variable-rate streams: keep indices increasing
                    idx = prev_idx + 1
                prev_idx = idx
                last = (idx, frame)
                if idx < start:
                    continue
                if stop is not None and idx >= stop:
                    return
                if (idx - start) % step:
                    continue
                yield idx, self._time_of(frame, idx), _to_rgb(frame, size, self.rotation)
            if cur.stop_reason is not None or (last is not None and self._short(last[0])
                                               and (stop is None or last[0] + 1 < stop)):
                raise self._truncated(last, cur.stop_reason)
            if last is None and start == 0:
                raise self._truncated(None, "no frame decoded")
        finally:
            cur.close()

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        return self.frames()

    def __len__(self) -> int:
        return self.info.frame_count

