"""Audio: decode any file's audio as mono float32 at a chosen rate; WAV in and out.

Time 0 is the container's start, the same clock as the ``time`` of video frames from
:class:`~avstudio.media.VideoReader`, so ``read_audio(p, sr, t0, t1)`` is the sound of the
frames shown between ``t0`` and ``t1``.
"""

from __future__ import annotations

import math
import os
import struct
import wave
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Optional

import av
import numpy as np

from ..dbguard import ensure_not_database
from ..errors import MediaError
from ._common import audio_stream, check_file, open_input, reason, show

_AV_ERRORS = (av.error.FFmpegError, ValueError, RuntimeError, OSError, MemoryError)
#: seek this much before ``start`` and drop what comes before it (decoders need a run-in)
PREROLL_SECONDS = 0.25
MAX_CONSECUTIVE_DECODE_ERRORS = 25


def _check_range(path, start: Optional[float], end: Optional[float]) -> tuple[float, Optional[float]]:
    s = 0.0 if start is None else float(start)
    if not np.isfinite(s) or s < 0:
        raise ValueError(f"start must be a time >= 0 in seconds, got {start!r}")
    if end is not None:
        e = float(end)
        if not np.isfinite(e) or e < s:
            raise ValueError(f"end must be a time >= start ({s}), got {end!r}")
        return s, e
    return s, None


def _resampled(container, stream, sr: int, path, state: dict) -> Iterator[tuple[Optional[float], np.ndarray]]:
    """Yield ``(time_of_first_sample or None, mono float32 samples)`` in order, flushed at the end.

    ``state['stop']`` is set to the reason when demuxing/decoding failed before the end;
    ``state['others_end']`` to where the file's other streams end (seconds on the same clock;
    None without any): a track that ends before them is short, not cut.
    """
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
    tb = stream.time_base
    origin = container.start_time / av.time_base if container.start_time is not None else 0.0
    first = True
    errors = 0
    demux = container.demux()  # every stream: where the others end tells short from cut

    def out(frames, t):
        nonlocal first
        arrays = [f.to_ndarray().reshape(-1) for f in frames if f.samples]
        if not arrays:
            return None
        data = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        t_out = t if first else None
        first = False
        return t_out, data.astype(np.float32, copy=False)

    while True:
        try:
            packet = next(demux)
        except StopIteration:
            break
        except _AV_ERRORS as exc:
            state["stop"] = reason(exc)
            break
        if packet.stream.index != stream.index:
            if packet.pts is not None and packet.time_base is not None:
                end = float(Fraction(packet.pts + (packet.duration or 0)) * packet.time_base) - origin
                state["others_end"] = max(end, state.get("others_end") or end)
            continue
        try:
            frames = packet.decode()
        except _AV_ERRORS as exc:
            errors += 1
            if errors >= MAX_CONSECUTIVE_DECODE_ERRORS:
                state["stop"] = reason(exc)
                break
            continue
        for frame in frames:
            errors = 0
            t = None
            if frame.pts is not None:
                t = float(Fraction(frame.pts) * tb) - origin
            if first and t is not None and frame.sample_rate:
                # start on a sample that lies on the output grid (n / sr), so the resampler's
                # output lines up with a decode from the start of the file to the sample
                in_rate = int(frame.sample_rate)
                period = in_rate // math.gcd(in_rate, sr)
                k0 = int(round(t * in_rate))
                drop = (-k0) % period
                if drop >= frame.samples:
                    continue
                if drop:
                    frame = _drop_samples(frame, drop)
                t = (k0 + drop) / in_rate
            try:
                res = resampler.resample(frame)
            except ValueError:
                # the input format changed mid-stream: flush and start a new resampler
                tail = resampler.resample(None)
                got = out(tail, None)
                if got is not None:
                    yield got
                resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
                res = resampler.resample(frame)
            got = out(res, t)
            if got is not None:
                yield got
    try:
        got = out(resampler.resample(None), None)
    except _AV_ERRORS:
        got = None
    if got is not None:
        yield got


def _drop_samples(frame: av.AudioFrame, n: int) -> av.AudioFrame:
    """A copy of ``frame`` without its first ``n`` samples."""
    arr = frame.to_ndarray()
    channels = frame.layout.nb_channels if hasattr(frame.layout, "nb_channels") else len(frame.layout.channels)
    if frame.format.is_planar:
        arr = arr[:, n:]
    else:
        arr = arr[:, n * channels:]
    out = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=frame.format.name,
                                     layout=frame.layout.name)
    out.sample_rate = frame.sample_rate
    return out


def iter_audio(path, sr: int = 16000, chunk_seconds: float = 1.0, start: Optional[float] = None,
               end: Optional[float] = None) -> Iterator[np.ndarray]:
    """Stream a file's audio as mono float32 chunks of ``chunk_seconds`` at ``sr`` Hz.

    Samples ``round(start*sr)`` up to ``round(end*sr)`` (exclusive) of the container clock;
    every chunk has ``round(chunk_seconds*sr)`` samples except the last. With ``end`` the total
    is exactly ``round((end-start)*sr)`` samples (zeros after the end of a shorter stream).
    Memory stays flat however long the file. Raises :class:`MediaError` for a missing or bad
    file, a file without audio, or (after yielding what decodes) a truncated or corrupt one.
    """
    sr = int(sr)
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    chunk_n = max(1, int(round(float(chunk_seconds) * sr)))
    s, e = _check_range(path, start, end)
    p = check_file(path)
    container = open_input(p)
    try:
        stream = audio_stream(container)
        if stream is None:
            raise MediaError(f"{show(p)} has no audio stream")
        yield from _iter_audio(container, stream, p, sr, chunk_n, s, e)
    finally:
        container.close()


def _iter_audio(container, stream, p, sr, chunk_n, s, e):
    start_n = int(round(s * sr))
    end_n = int(round(e * sr)) if e is not None else None
    tb = stream.time_base
    origin = container.start_time / av.time_base if container.start_time is not None else 0.0
    # the header's idea of where the audio ends (to trim encoder padding and spot truncation)
    header_end = None
    own_end = False  # the header states this stream's own end (not only the whole file's)
    if stream.duration and stream.start_time is not None:
        header_end = float(Fraction(stream.start_time + stream.duration) * tb) - origin
        own_end = True
    elif container.duration:
        header_end = container.duration / av.time_base
    if s > PREROLL_SECONDS:
        target = int((s + origin - PREROLL_SECONDS) / tb)
        try:
            container.seek(target, stream=stream, backward=True, any_frame=False)
        except _AV_ERRORS:
            try:
                container.seek(0)
            except _AV_ERRORS:
                pass
    state: dict = {}
    pos: Optional[int] = None  # absolute sample index (at sr) of the next decoded sample
    emitted = 0  # samples handed out so far (from start_n on)
    buf: list[np.ndarray] = []
    buffered = 0
    want = None if end_n is None else end_n - start_n
    done = False

    def take(data: np.ndarray):
        """Add samples that start at absolute index ``pos``; yield full chunks."""
        nonlocal buffered
        if data.size:
            buf.append(data)
            buffered += data.size
        while buffered >= chunk_n:
            joined = np.concatenate(buf) if len(buf) > 1 else buf[0]
            yield joined[:chunk_n]
            rest = joined[chunk_n:]
            buf.clear()
            if rest.size:
                buf.append(rest)
            buffered = rest.size

    for t, data in _resampled(container, stream, sr, p, state):
        if pos is None:
            pos = int(round(t * sr)) if t is not None else start_n
            if pos > start_n:  # the audio starts after the asked start: silence before it
                gap = pos - start_n if want is None else min(pos - start_n, want)
                for chunk in take(np.zeros(gap, np.float32)):
                    emitted += chunk.size
                    yield chunk
        lo = max(0, start_n - pos)
        hi = data.size if end_n is None else max(0, min(data.size, end_n - pos))
        pos += data.size
        if hi > lo:
            for chunk in take(data[lo:hi]):
                emitted += chunk.size
                yield chunk
        if end_n is not None and pos >= end_n:
            done = True
            break
    if pos is None and state.get("stop"):
        raise MediaError(f"{show(p)}: no audio could be decoded ({state['stop']}): "
                         "file is truncated or corrupt")
    reached = (pos if pos is not None else start_n) / sr
    tail = np.concatenate(buf) if len(buf) > 1 else (buf[0] if buf else np.zeros(0, np.float32))
    if not done:
        stopped = state.get("stop")
        expected_end = header_end if header_end is not None else reached
        if e is not None:
            expected_end = min(expected_end, e)
        margin = max(0.5, 0.1 * expected_end)
        cut = reached < expected_end - margin
        if cut and not stopped and not own_end:
            # the file's duration is its longest stream's (Matroska, WebM and AVI state no
            # other): a sound track that simply ends before the video is short, not cut; a
            # cut file stops every stream early
            others = state.get("others_end")
            cut = others is None or others < expected_end - margin
        if stopped or cut:
            if tail.size:
                yield tail
            why = f" ({stopped})" if stopped else ""
            raise MediaError(f"{show(p)}: stopped decoding audio at {reached:.2f} s of "
                             f"~{(header_end or expected_end):.2f} s: file is truncated or corrupt{why}")
    if want is None:
        # drop encoder padding past the end the header states (AAC adds up to a frame)
        if header_end is not None and pos is not None:
            extra = pos - int(round(header_end * sr))
            if 0 < extra <= int(0.2 * sr):
                tail = tail[: max(0, tail.size - extra)]
        if tail.size:
            yield tail
        return
    missing = want - emitted - tail.size
    if missing > 0:
        tail = np.concatenate([tail, np.zeros(missing, np.float32)])
    elif missing < 0:
        tail = tail[: tail.size + missing]
    while tail.size:
        yield tail[:chunk_n]
        tail = tail[chunk_n:]


def read_audio(path, sr: int = 16000, start: Optional[float] = None,
               end: Optional[float] = None) -> np.ndarray:
    """A file's audio as one mono float32 array at ``sr`` Hz (see :func:`iter_audio`)."""
    chunks = list(iter_audio(path, sr=sr, chunk_seconds=30.0, start=start, end=end))
    if not chunks:
        return np.zeros(0, np.float32)
    return np.concatenate(chunks) if len(chunks) > 1 else np.ascontiguousarray(chunks[0])


# ---------------------------------------------------------------- WAV

def _as_channels_first(audio) -> np.ndarray:
    a = np.asarray(audio)
    if a.ndim == 1:
        return a[None, :]
    if a.ndim == 2:
        if a.shape[0] > 16 and a.shape[1] <= 16:  # [N, C] given: accept it
            a = a.T
        return a
    raise ValueError(f"audio must be [N] or [channels, N], got shape {a.shape}")


def write_wav(path, audio, sample_rate: int, float32: bool = False) -> Path:
    """Write ``audio`` (float in -1..1, ``[N]`` or ``[channels, N]``) as a WAV file.

    16-bit PCM by default (clipped to -1..1); ``float32=True`` writes IEEE float samples.
    """
    p = Path(os.fspath(path))
    sample_rate = int(sample_rate)
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    a = _as_channels_first(audio)
    if a.dtype.kind not in "fiu":
        raise ValueError(f"audio must be numeric, got {a.dtype}")
    if a.dtype.kind in "iu":
        a = a.astype(np.float32) / (np.iinfo(a.dtype).max + 1.0)
    channels = a.shape[0]
    inter = np.ascontiguousarray(a.T)  # [N, C]
    if p.parent and not p.parent.exists():
        raise MediaError(f"cannot write {show(p)}: the folder {show(p.parent)} does not exist")
    ensure_not_database(p, "write over", MediaError)
    try:
        if float32:
            data = inter.astype("<f4").tobytes()
            fmt = struct.pack("<HHIIHH", 3, channels, sample_rate, sample_rate * channels * 4,
                              channels * 4, 32)
            fact = struct.pack("<4sII", b"fact", 4, inter.shape[0])
            body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + fact + \
                b"data" + struct.pack("<I", len(data)) + data
            with open(p, "wb") as fh:
                fh.write(b"RIFF" + struct.pack("<I", len(body)) + body)
        else:
            x = np.clip(np.nan_to_num(inter.astype(np.float64)), -1.0, 1.0)
            pcm = np.round(x * 32767.0).astype("<i2")
            with wave.open(str(p), "wb") as w:
                w.setnchannels(channels)
                w.setsampwidth(2)
                w.setframerate(sample_rate)
                w.writeframes(pcm.tobytes())
    except OSError as exc:
        raise MediaError(f"cannot write {show(p)}: {reason(exc)}") from None
    return p


def _parse_wav(p: str):
    """(float32 [C, N], sr) for PCM / float WAV files, or None to let FFmpeg decode it."""
    with open(p, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None
        if head[:4] == b"RIFX":
            return None
        fmt = None
        while True:
            ch = fh.read(8)
            if len(ch) < 8:
                return None
            cid, size = ch[:4], struct.unpack("<I", ch[4:])[0]
            if cid == b"fmt ":
                fmt = fh.read(size)
                if size % 2:
                    fh.read(1)
            elif cid == b"data":
                if fmt is None or len(fmt) < 16:
                    return None
                tag, channels, sr, _, block, bits = struct.unpack("<HHIIHH", fmt[:16])
                if tag == 0xFFFE and len(fmt) >= 26:
                    tag = struct.unpack("<H", fmt[24:26])[0]
                raw = fh.read(size)
                if channels <= 0 or sr <= 0 or block <= 0:
                    return None
                n = len(raw) // block
                raw = raw[: n * block]
                if tag == 1 and bits == 16:
                    x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
                elif tag == 1 and bits == 8:
                    x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
                elif tag == 1 and bits == 32:
                    x = (np.frombuffer(raw, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
                elif tag == 1 and bits == 24:
                    b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
                    v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
                    v = np.where(v >= 1 << 23, v - (1 << 24), v)
                    x = v.astype(np.float32) / float(1 << 23)
                elif tag == 3 and bits == 32:
                    x = np.frombuffer(raw, "<f4").astype(np.float32)
                elif tag == 3 and bits == 64:
                    x = np.frombuffer(raw, "<f8").astype(np.float32)
                else:
                    return None
                return np.ascontiguousarray(x.reshape(-1, channels).T), int(sr)
            else:
                fh.seek(size + (size % 2), 1)


def read_wav(path, mono: bool = False) -> tuple[np.ndarray, int]:
    """Read a WAV file: ``(audio float32, sample_rate)``.

    ``audio`` is ``[N]`` for a mono file (or with ``mono=True``: channels averaged), else
    ``[channels, N]``. Samples keep the file's rate. Non-PCM WAVs are decoded by FFmpeg.
    """
    p = check_file(path)
    try:
        parsed = _parse_wav(p)
    except (OSError, struct.error, ValueError):
        parsed = None
    if parsed is None:
        parsed = _decode_native(p)
    a, sr = parsed
    if mono or a.shape[0] == 1:
        a = a.mean(axis=0).astype(np.float32) if a.shape[0] > 1 else a[0]
    return a, sr


def _decode_native(p: str) -> tuple[np.ndarray, int]:
    """Any audio file at its own rate and channels, float32 [C, N] (via FFmpeg)."""
    container = open_input(p)
    try:
        stream = audio_stream(container)
        if stream is None:
            raise MediaError(f"{show(p)} has no audio stream")
        sr = int(stream.codec_context.sample_rate)
        channels = int(stream.codec_context.channels or 1)
        parts = []
        resampler = av.AudioResampler(format="fltp", layout=stream.codec_context.layout, rate=sr)
        try:
            for frame in container.decode(stream):
                for f in resampler.resample(frame):
                    parts.append(f.to_ndarray())
            for f in resampler.resample(None):
                parts.append(f.to_ndarray())
        except _AV_ERRORS as exc:
            raise MediaError(f"{show(p)}: cannot decode audio: {reason(exc)}") from None
        a = np.concatenate(parts, axis=1) if parts else np.zeros((channels, 0), np.float32)
        return a.astype(np.float32, copy=False), sr
    finally:
        container.close()
