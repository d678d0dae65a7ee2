"""Shared helpers of the media layer: opening files and turning PyAV errors into MediaError."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from typing import Optional

import av

from ..dbguard import ensure_not_database
from ..errors import MediaError


def show(path) -> str:
    """How a path appears in messages: the name as given, quoted."""
    return repr(os.fspath(path))


def reason(exc: BaseException) -> str:
    """A short human reason for a PyAV / OS error."""
    if isinstance(exc, av.error.FFmpegError):
        text = exc.strerror or str(exc)
    elif isinstance(exc, OSError):
        text = exc.strerror or str(exc)
    else:
        text = str(exc) or type(exc).__name__
    text = " ".join(str(text).split())
    return text[:1].lower() + text[1:] if text else type(exc).__name__


def check_file(path) -> str:
    """Return ``path`` as a str after the checks that need no FFmpeg; MediaError otherwise."""
    try:
        p = os.fspath(path)
    except TypeError:
        raise MediaError(f"{path!r} is not a file path") from None
    if not p:
        raise MediaError("no media file given (empty path)")
    if not os.path.exists(p):
        raise MediaError(f"{show(p)}: no such file")
    if os.path.isdir(p):
        raise MediaError(f"{show(p)} is a directory, not a media file")
    if not os.access(p, os.R_OK):
        raise MediaError(f"{show(p)}: permission denied")
    ensure_not_database(p, "read as media", MediaError)
    try:
        size = os.path.getsize(p)
    except OSError as exc:
        raise MediaError(f"{show(p)}: cannot read ({reason(exc)})") from None
    if size == 0:
        raise MediaError(f"{show(p)} is empty (0 bytes): not a media file")
    return p


def open_input(path) -> av.container.InputContainer:
    """Open a media file for reading; every failure is one MediaError naming the file."""
    p = check_file(path)
    try:
        container = av.open(p, "r", metadata_errors="ignore")
    except av.error.InvalidDataError:
        raise MediaError(f"{show(p)} is not a media file FFmpeg can read "
                         "(unknown format, or the file is truncated or corrupt)") from None
    except (av.error.FFmpegError, OSError, ValueError, RuntimeError) as exc:
        raise MediaError(f"{show(p)} cannot be opened as media: {reason(exc)}") from None
    if not container.streams.video and not container.streams.audio:
        fmt = getattr(getattr(container, "format", None), "name", None)
        container.close()
        raise MediaError(f"{show(p)} has no video or audio stream: not a media file AV Studio can use"
                         + (f" (FFmpeg read it as {fmt!r} and found nothing to decode)" if fmt else ""))
    return container


def video_stream(container):
    """The main video stream (cover art / attached pictures skipped), or None."""
    for s in container.streams.video:
        try:
            if s.disposition & av.stream.Disposition.attached_pic:
                continue
        except Exception:
            pass
        return s
    return None


def audio_stream(container):
    return container.streams.audio[0] if container.streams.audio else None


def stream_fps(stream) -> Optional[Fraction]:
    """Frame rate of a video stream: average rate, else the guessed or base rate."""
    for name in ("average_rate", "guessed_rate", "base_rate"):
        try:
            r = getattr(stream, name)
        except Exception:
            r = None
        if r and r > 0 and float(r) < 10000:
            return Fraction(r)
    return None


@contextmanager
def translate_errors(path, what: str = "decoding") -> Iterator[None]:
    """Turn PyAV errors raised inside the block into one MediaError."""
    try:
        yield
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, RuntimeError, MemoryError) as exc:
        raise MediaError(f"{show(path)}: error while {what}: {reason(exc)}") from None
