"""Writing MP4 (H.264 + AAC) from RGB frames and float audio, streamed."""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Optional

import av
import numpy as np

from ..dbguard import ensure_not_database
from ..errors import MediaError
from ..progress import CancelToken, ProgressFn, check_cancel, emit
from ._common import reason, show

_AV_ERRORS = (av.error.FFmpegError, ValueError, RuntimeError, OSError, MemoryError)
_LAYOUTS = {1: "mono", 2: "stereo"}


def _as_rgb(frame, i: int, path) -> np.ndarray:
    a = np.asarray(frame)
    if a.dtype != np.uint8:
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        else:
            raise MediaError(f"cannot write {show(path)}: frame {i} has dtype {a.dtype}, "
                             "frames must be uint8 RGB [H, W, 3]")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise MediaError(f"cannot write {show(path)}: frame {i} has shape {np.shape(frame)}, "
                         "frames must be uint8 RGB [H, W, 3]")
    return a


def _as_audio(audio, channels: Optional[int] = None) -> np.ndarray:
    """float32 ``[C, N]`` from ``[N]``, ``[C, N]`` (or an unambiguous ``[N, C]``)."""
    a = np.asarray(audio)
    if a.ndim == 1:
        a = a[None, :]
    elif a.ndim == 2:
        if channels is not None and a.shape[0] != channels and a.shape[1] == channels:
            a = a.T
        elif channels is None and a.shape[0] > 16 and a.shape[1] <= 16:
            a = a.T
    else:
        raise ValueError(f"audio must be [N] or [channels, N], got shape {a.shape}")
    if a.dtype.kind in "iu":
        a = a.astype(np.float32) / (np.iinfo(a.dtype).max + 1.0)
    a = np.nan_to_num(a.astype(np.float32, copy=False))
    return np.ascontiguousarray(np.clip(a, -1.0, 1.0))


class Mp4Writer:
    """Incremental MP4 writer: H.264 (yuv420p) video + optional AAC audio.

    >>> with Mp4Writer("out.mp4", fps=25, sample_rate=16000) as w:
    ...     w.add_audio(samples)          # float32 [N] or [C, N]; any time, any chunk size
    ...     for rgb in frames:
    ...         w.add_frame(rgb)          # uint8 [H, W, 3]; size fixed by the first frame

    The streams are created at the first frame, so audio added before it is buffered (and
    enables the audio track); pass ``audio=True`` to always have an audio track, ``False`` for
    none. Odd widths/heights are padded by one pixel (edge copy) since yuv420p needs even
    sizes, unless ``pad_odd=False`` (then a MediaError). Problems raise MediaError naming the file.
    """

    def __init__(self, path, fps: float, *, sample_rate: int = 16000, audio: Optional[bool] = None,
                 audio_channels: int = 1, crf: int = 20, preset: str = "veryfast",
                 gop: Optional[int] = None, bframes: Optional[int] = None,
                 codec: str = "libx264", audio_codec: str = "aac", audio_bitrate: int = 128_000,
                 pad_odd: bool = True, faststart: bool = True):
        self.path = Path(os.fspath(path))
        if not fps or float(fps) <= 0 or not np.isfinite(float(fps)):
            raise ValueError(f"fps must be positive, got {fps!r}")
        self.fps = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
        self.sample_rate = int(sample_rate)
        self.audio_channels = int(audio_channels)
        self.want_audio = audio
        self.crf, self.preset, self.gop, self.bframes = crf, preset, gop, bframes
        self.codec, self.audio_codec, self.audio_bitrate = codec, audio_codec, audio_bitrate
        self.pad_odd = pad_odd
        self.frames_written = 0
        self.samples_written = 0
        self.size: Optional[tuple[int, int]] = None  # (w, h) as written (after padding)
        self._in_size: Optional[tuple[int, int]] = None
        self._pending_audio: list[np.ndarray] = []
        self._vs = self._as = None
        self._closed = False
        parent = self.path.parent
        if str(parent) and not parent.is_dir():
            raise MediaError(f"cannot write {show(self.path)}: the folder {show(parent)} does not exist")
        if self.path.is_dir():
            raise MediaError(f"cannot write {show(self.path)}: it is a directory")
        ensure_not_database(self.path, "write over", MediaError)
        options = {"movflags": "+faststart"} if faststart else {}
        try:
            self._c = av.open(str(self.path), "w", format=None, options=options)
        except _AV_ERRORS as exc:
            raise MediaError(f"cannot write {show(self.path)}: {reason(exc)}") from None

    # -- context manager
    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- streams
    def _open_streams(self, w: int, h: int) -> None:
        c = self._c
        try:
            vs = c.add_stream(self.codec, rate=self.fps)
        except _AV_ERRORS as exc:
            raise MediaError(f"cannot write {show(self.path)}: video encoder {self.codec!r} "
                             f"unavailable ({reason(exc)})") from None
        vs.width, vs.height = w, h
        vs.pix_fmt = "yuv420p"
        opts = {}
        if self.codec in ("libx264", "libx265"):
            opts = {"crf": str(self.crf), "preset": str(self.preset)}
        vs.options = opts
        if self.gop is not None:
            vs.codec_context.gop_size = int(self.gop)
        if self.bframes is not None:
            vs.codec_context.max_b_frames = int(self.bframes)
        self._vs = vs
        if self.want_audio or (self.want_audio is None and self._pending_audio):
            try:
                aus = c.add_stream(self.audio_codec, rate=self.sample_rate,
                                   layout=_LAYOUTS.get(self.audio_channels, f"{self.audio_channels}c"))
                if self.audio_bitrate:
                    aus.codec_context.bit_rate = int(self.audio_bitrate)
            except _AV_ERRORS as exc:
                raise MediaError(f"cannot write {show(self.path)}: audio encoder "
                                 f"{self.audio_codec!r} unavailable ({reason(exc)})") from None
            self._as = aus
            pending, self._pending_audio = self._pending_audio, []
            for a in pending:
                self._encode_audio(a)

    def _mux(self, packets) -> None:
        for p in packets:
            self._c.mux(p)

    # -- public
    def add_frame(self, frame) -> None:
        """Append one RGB uint8 ``[H, W, 3]`` frame."""
        if self._closed:
            raise MediaError(f"cannot write {show(self.path)}: the writer is closed")
        a = _as_rgb(frame, self.frames_written, self.path)
        h, w = a.shape[:2]
        if self._in_size is None:
            if (w % 2 or h % 2) and not self.pad_odd:
                raise MediaError(f"cannot write {show(self.path)}: frame size {w}x{h} is odd; "
                                 "H.264 yuv420p needs an even width and height")
            self._in_size = (w, h)
            self.size = (w + w % 2, h + h % 2)
            with self._errors("starting the encoder"):
                self._open_streams(*self.size)
        elif (w, h) != self._in_size:
            raise MediaError(f"cannot write {show(self.path)}: frame {self.frames_written} is "
                             f"{w}x{h}, the first frame was {self._in_size[0]}x{self._in_size[1]}")
        if (w, h) != self.size:
            a = np.pad(a, ((0, self.size[1] - h), (0, self.size[0] - w), (0, 0)), mode="edge")
        with self._errors("encoding video"):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")
            vf.pts = self.frames_written
            vf.time_base = 1 / self.fps
            self._mux(self._vs.encode(vf))
        self.frames_written += 1

    def add_frames(self, frames: Iterable) -> None:
        for f in frames:
            self.add_frame(f)

    def add_audio(self, samples) -> None:
        """Append audio: float32 in -1..1, ``[N]`` (mono) or ``[channels, N]``."""
        if self._closed:
            raise MediaError(f"cannot write {show(self.path)}: the writer is closed")
        a = _as_audio(samples, self.audio_channels)
        if a.shape[0] != self.audio_channels:
            if a.shape[0] == 1:
                a = np.repeat(a, self.audio_channels, axis=0)
            elif self.audio_channels == 1:
                a = a.mean(axis=0, keepdims=True)
            else:
                raise ValueError(f"audio has {a.shape[0]} channels, the writer {self.audio_channels}")
        if not a.shape[1]:
            return
        if self._vs is None:
            if self.want_audio is False:
                return
            self._pending_audio.append(a)
            return
        if self._as is None:
            raise MediaError(f"cannot write {show(self.path)}: audio added after the first frame "
                             "to a writer without an audio track (pass audio=True or add audio first)")
        self._encode_audio(a)

    def _encode_audio(self, a: np.ndarray) -> None:
        with self._errors("encoding audio"):
            af = av.AudioFrame.from_ndarray(a, format="fltp",
                                            layout=_LAYOUTS.get(a.shape[0], f"{a.shape[0]}c"))
            af.sample_rate = self.sample_rate
            af.pts = self.samples_written
            af.time_base = Fraction(1, self.sample_rate)
            self._mux(self._as.encode(af))
        self.samples_written += a.shape[1]

    def close(self) -> Path:
        """Flush the encoders and finish the file. Returns its path."""
        if self._closed:
            return self.path
        try:
            if self._vs is None:
                raise MediaError(f"cannot write {show(self.path)}: no video frames were given")
            with self._errors("finishing the file"):
                self._mux(self._vs.encode(None))
                if self._as is not None:
                    self._mux(self._as.encode(None))
                self._c.close()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Stop without finishing; the partial file is removed."""
        if self._closed:
            return
        self._closed = True
        try:
            self._c.close()
        except Exception:
            pass
        try:
            self.path.unlink()
        except OSError:
            pass

    def _errors(self, what: str):
        writer = self

        class _Ctx:
            def __enter__(self):
                return self

            def __exit__(self, et, ev, tb):
                if et is not None and issubclass(et, _AV_ERRORS) and not issubclass(et, MediaError):
                    raise MediaError(f"cannot write {show(writer.path)}: error while {what}: "
                                     f"{reason(ev)}") from None
                return False

        return _Ctx()


def write_mp4(path, frames: Iterable, fps: float, audio=None, sample_rate: int = 16000,
              crf: int = 20, preset: str = "veryfast", gop: Optional[int] = None,
              bframes: Optional[int] = None, progress: Optional[ProgressFn] = None,
              cancel: Optional[CancelToken] = None, total: Optional[int] = None) -> Path:
    """Write an H.264/AAC mp4 from an iterable of RGB uint8 frames (streamed, not kept).

    ``audio``: float32 mono ``[N]`` or ``[channels, N]`` at ``sample_rate`` (AAC), or None.
    Odd frame sizes are padded by one pixel. ``progress`` gets ``ProgressEvent("write", i,
    total)``; ``cancel.is_set()`` stops early (raises Cancelled, the partial file is removed).
    """
    channels = 1
    if audio is not None:
        audio = _as_audio(audio)
        channels = audio.shape[0]
    w = Mp4Writer(path, fps, sample_rate=sample_rate, audio=audio is not None,
                  audio_channels=channels, crf=crf, preset=preset, gop=gop, bframes=bframes)
    try:
        if total is None and hasattr(frames, "__len__"):
            total = len(frames)  # type: ignore[arg-type]
        apos = 0
        for i, frame in enumerate(frames):
            check_cancel(cancel, f"writing {os.fspath(path)}")
            w.add_frame(frame)
            if audio is not None:
                # interleave audio with video (about one frame's worth each time)
                nxt = int(round((i + 1) * sample_rate / float(w.fps)))
                if nxt > apos:
                    w.add_audio(audio[:, apos:nxt])
                    apos = nxt
            if progress is not None and (i % 10 == 0):
                emit(progress, "write", i + 1, total)
        if audio is not None and apos < audio.shape[1]:
            w.add_audio(audio[:, apos:])
        w.close()
        emit(progress, "write", w.frames_written, total or w.frames_written)
    except BaseException:
        w.abort()
        raise
    return w.path
