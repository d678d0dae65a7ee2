"""``probe(path) -> MediaInfo``: what a media file holds, without decoding it all."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import av

from ..errors import MediaError
from ._common import audio_stream, check_file, open_input, reason, show, stream_fps, video_stream

#: Files up to this size are demuxed (not decoded) in full by :func:`probe` to count frames
#: exactly and to notice truncation; bigger files get an estimate from duration x fps.
COUNT_PACKETS_MAX_BYTES = 256 * 1024 * 1024


@dataclass
class MediaInfo:
    """What :func:`probe` learns about a media file. Times in seconds.

    ``width``/``height`` are the *display* size (after ``rotation``); ``coded_width`` /
    ``coded_height`` the size of the stored pictures. ``rotation`` is the display-matrix
    rotation in degrees counter-clockwise (0, 90, 180 or 270, FFmpeg's convention): frames
    from :class:`~avstudio.media.VideoReader` are already rotated. ``frame_count_exact`` says
    whether ``frame_count`` was counted (or read from the container's index) rather than
    estimated from ``duration * fps``. ``duration`` is the video's duration when there is
    video, else the audio's; ``container_duration`` is what the container header says.
    ``start_time`` is the container's first timestamp: time 0 of frames and audio.
    ``problem`` is set (and ``truncated_at`` when known) when the file looks truncated or
    corrupt; :func:`probe` raises instead unless called with ``check=False``.
    """

    path: str
    container: str
    duration: float
    fps: float
    frame_count: int
    frame_count_exact: bool
    width: int
    height: int
    rotation: int
    video_codec: Optional[str]
    has_video: bool
    has_audio: bool
    audio_rate: Optional[int]
    audio_channels: Optional[int]
    audio_codec: Optional[str]
    coded_width: int = 0
    coded_height: int = 0
    pix_fmt: Optional[str] = None
    audio_duration: Optional[float] = None
    container_duration: Optional[float] = None
    start_time: float = 0.0
    video_start: float = 0.0  # first video frame, seconds after start_time
    bit_rate: Optional[int] = None
    size_bytes: int = 0
    problem: Optional[str] = None
    truncated_at: Optional[float] = None
    # internal, for the reader: stream time base numerator/denominator and first pts
    _extra: dict = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the public fields."""
        d = asdict(self)
        d.pop("_extra", None)
        for k, v in list(d.items()):
            if isinstance(v, float):
                d[k] = round(v, 6) if math.isfinite(v) else None
        return d

    @property
    def size(self) -> tuple[int, int]:
        """Display size ``(width, height)``."""
        return (self.width, self.height)


def _container_name(container, path: str) -> str:
    names = [n for n in (container.format.name or "").split(",") if n]
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext in names:
        return ext
    return names[0] if names else (ext or "unknown")


def _first_video_frame(container, vs):
    """Decode the first frame of ``vs`` (for rotation and first pts); None if none decodes."""
    try:
        for packet in container.demux(vs):
            for frame in packet.decode():
                return frame
    except (av.error.FFmpegError, ValueError, RuntimeError, OSError):
        return None
    return None


def _norm_rotation(deg: float) -> int:
    return int(round(deg / 90.0)) % 4 * 90


def _tag_duration(stream) -> Optional[float]:
    """A stream's duration from its metadata (Matroska's ``DURATION`` tag: HH:MM:SS.fffffffff)."""
    try:
        text = stream.metadata.get("DURATION") or stream.metadata.get("duration")
        if not text:
            return None
        parts = [float(x) for x in str(text).strip().split(":")]
        secs = 0.0
        for x in parts:
            secs = secs * 60 + x
        return secs if secs > 0 and math.isfinite(secs) else None
    except (ValueError, AttributeError, TypeError):
        return None


def _scan_packets(container, streams):
    """Demux every packet of ``streams``: per-stream count, min pts and max end (stream units).

    Returns ``(stats, error)`` where ``error`` is the reason demuxing stopped early, if it did.
    """
    stats = {s.index: {"count": 0, "min": None, "end": None, "keys": 0} for s in streams}
    error = None
    try:
        for packet in container.demux(*streams):
            st = stats.get(packet.stream.index)
            if st is None or packet.size == 0:
                continue
            st["count"] += 1
            if packet.is_keyframe:
                st["keys"] += 1
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:
                continue
            if st["min"] is None or ts < st["min"]:
                st["min"] = ts
            end = ts + (packet.duration or 0)
            if st["end"] is None or end > st["end"]:
                st["end"] = end
    except (av.error.FFmpegError, ValueError, RuntimeError, OSError) as exc:
        error = reason(exc)
    return stats, error


def probe(path, check: bool = True) -> MediaInfo:
    """Describe a media file. Raises :class:`MediaError` for anything that is not readable media.

    With ``check`` (default) a file that looks truncated or corrupt raises too; with
    ``check=False`` the problem is reported in ``MediaInfo.problem`` instead.
    """
    p = check_file(path)
    container = open_input(p)
    try:
        return _probe(container, p, check)
    except MediaError:
        raise
    except (av.error.FFmpegError, ValueError, RuntimeError, OSError, ZeroDivisionError) as exc:
        raise MediaError(f"{show(p)}: cannot read media information: {reason(exc)}") from None
    finally:
        container.close()


def _probe(container, p: str, check: bool) -> MediaInfo:
    vs = video_stream(container)
    aus = audio_stream(container)
    size_bytes = os.path.getsize(p)
    cstart = container.start_time / av.time_base if container.start_time is not None else 0.0
    cdur = container.duration / av.time_base if container.duration else None
    extra: dict[str, Any] = {}

    fps = 0.0
    width = height = cw = ch = rotation = 0
    vcodec = pix_fmt = None
    first_pts = None
    if vs is not None:
        cc = vs.codec_context
        vcodec = cc.name
        pix_fmt = cc.pix_fmt
        cw, ch = cc.width, cc.height
        rate = stream_fps(vs)
        fps = float(rate) if rate else 0.0
        frame = _first_video_frame(container, vs)
        if frame is None:
            raise MediaError(f"{show(p)}: no video frame could be decoded "
                             "(the video stream is empty, truncated or corrupt)")
        first_pts = frame.pts
        try:
            rotation = _norm_rotation(frame.rotation or 0)
        except Exception:
            rotation = 0
        cw, ch = frame.width or cw, frame.height or ch
        width, height = (ch, cw) if rotation in (90, 270) else (cw, ch)
        if not fps:
            raise MediaError(f"{show(p)}: the video stream has no frame rate")
        if first_pts is None:
            first_pts = vs.start_time or 0
        extra.update(tb=(vs.time_base.numerator, vs.time_base.denominator), first_pts=first_pts)

    audio_rate = audio_channels = None
    acodec = None
    if aus is not None:
        acc = aus.codec_context
        audio_rate = int(acc.sample_rate or 0) or None
        audio_channels = int(acc.channels or 0) or None
        acodec = acc.name

    # -- counting: demux (no decode) small files for exact counts and a truncation check
    streams = [s for s in (vs, aus) if s is not None]
    stats = None
    demux_error = None
    if size_bytes <= COUNT_PACKETS_MAX_BYTES:
        try:
            container.seek(0)
        except (av.error.FFmpegError, OSError, ValueError):
            pass
        stats, demux_error = _scan_packets(container, streams)

    def stream_end(s) -> Optional[float]:
        if stats and stats[s.index]["end"] is not None:
            return float(stats[s.index]["end"] * s.time_base)
        return None

    problem = None
    truncated_at = None
    frame_count = 0
    exact = False
    vdur = None
    vstart = 0.0
    if vs is not None:
        tb = vs.time_base
        vstart = float(first_pts * tb) - cstart
        vend = stream_end(vs)
        header_frames = int(vs.frames or 0)
        if vend is not None:
            vdur = vend - float(first_pts * tb)
            frame_count = max(1, int(round(vdur * fps)))
            exact = demux_error is None
        elif header_frames > 0:
            frame_count, exact = header_frames, True
            vdur = header_frames / fps
        if vdur is None:
            if vs.duration:
                vdur = float(vs.duration * tb)
            elif _tag_duration(vs):
                vdur = _tag_duration(vs)
            elif cdur is not None:
                vdur = max(0.0, cdur - vstart)
            else:
                vdur = 0.0
            frame_count = max(1, int(round(vdur * fps)))
            exact = False
        if stats is not None and header_frames > 0 and frame_count + 1 < header_frames:
            truncated_at = vdur
            problem = (f"frames stop at {vdur:.2f} s (frame {frame_count} of {header_frames})")

    adur = None
    if aus is not None:
        aend = stream_end(aus)
        if aus.duration:
            adur = float(aus.duration * aus.time_base)
        elif aend is not None:
            adur = aend - float((stats[aus.index]["min"] or 0) * aus.time_base)
        elif cdur is not None:
            adur = cdur

    duration = vdur if vs is not None else (adur or 0.0)

    if stats is not None and problem is None:
        ends = [e for e in (stream_end(s) for s in streams) if e is not None]
        data_end = (max(ends) - cstart) if ends else 0.0
        header_dur = cdur
        if vs is not None and vs.duration:
            header_dur = max(header_dur or 0.0, float(vs.duration * vs.time_base))
        if demux_error is not None:
            truncated_at = data_end
            problem = f"data stops at {data_end:.2f} s ({demux_error})"
        elif header_dur and data_end < header_dur - max(0.5, 0.1 * header_dur):
            truncated_at = data_end
            problem = f"data stops at {data_end:.2f} s of {header_dur:.2f} s"
    if problem is not None and vs is not None and truncated_at is not None:
        # the count is what the header promised, the file has less
        hf = int(vs.frames or 0)
        promised = _tag_duration(vs) or (float(vs.duration * vs.time_base) if vs.duration else None) \
            or cdur or vdur
        extra["expected_frames"] = max(frame_count, hf, int(round(promised * fps)))

    info = MediaInfo(
        path=p,
        container=_container_name(container, p),
        duration=float(duration or 0.0),
        fps=fps,
        frame_count=int(frame_count),
        frame_count_exact=bool(exact),
        width=int(width), height=int(height), rotation=int(rotation),
        video_codec=vcodec,
        has_video=vs is not None,
        has_audio=aus is not None,
        audio_rate=audio_rate, audio_channels=audio_channels, audio_codec=acodec,
        coded_width=int(cw), coded_height=int(ch), pix_fmt=pix_fmt,
        audio_duration=adur, container_duration=cdur, start_time=cstart, video_start=vstart,
        bit_rate=int(container.bit_rate) if container.bit_rate else None,
        size_bytes=size_bytes, problem=None, truncated_at=truncated_at, _extra=extra,
    )
    if problem is not None:
        info.problem = f"{show(p)} is truncated or corrupt: {problem}"
        if check:
            raise MediaError(info.problem)
    return info
