"""Tests of the media layer (avstudio.media): decoding, exact seeking, audio, writing, errors."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from avstudio.errors import MediaError
from avstudio.media import (
    FrameIndexError,
    MediaInfo,
    Mp4Writer,
    SilentOutput,
    VideoReader,
    audio_out,
    iter_audio,
    probe,
    read_audio,
    read_wav,
    write_mp4,
    write_wav,
)
from avstudio.media.video import _Cursor
from helpers import (
    audio_signal,
    counter_freq,
    decode_index,
    dominant_freq,
    has_encoder,
    index_frame,
    make_audio_only,
    make_corrupt,
    make_empty,
    make_random_bytes,
    make_text,
    make_truncated,
    make_video,
)

ROOT = Path(__file__).resolve().parents[2]
SR = 16000


def indices(frames) -> list[int]:
    return [decode_index(f) for f in frames]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A folder for this module's clips."""
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def clip(media):
    """mp4, 50 frames 64x64 @ 25 fps, 440 Hz sine (aac)."""
    return make_video(media / "clip.mp4", 50)


# ---------------------------------------------------------------- round trip

def test_write_mp4_round_trip(media):
    n, fps = 60, 25
    audio = audio_signal("sine", int(n / fps * SR), SR)[0]
    frames = (index_frame(i, (96, 64)) for i in range(n))  # a generator: streamed
    out = write_mp4(media / "rt.mp4", frames, fps, audio=audio, sample_rate=SR)
    assert out == media / "rt.mp4"

    info = probe(out)
    assert isinstance(info, MediaInfo)
    assert (info.width, info.height) == (96, 64)
    assert info.fps == pytest.approx(25.0)
    assert info.frame_count == n and info.frame_count_exact
    assert info.duration == pytest.approx(n / fps, abs=1e-3)
    assert info.has_video and info.has_audio
    assert info.audio_rate == SR and info.audio_channels == 1
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert info.container == "mp4" and info.rotation == 0
    d = info.to_dict()
    json.dumps(d)
    for key in ("duration", "fps", "frame_count", "width", "height", "audio_rate",
                "audio_channels", "has_audio", "frame_count_exact", "rotation", "video_codec"):
        assert key in d

    with VideoReader(out) as vr:
        got = list(vr.frames())
    assert [i for i, _, _ in got] == list(range(n))
    assert indices(f for _, _, f in got) == list(range(n))
    assert [t for _, t, _ in got] == pytest.approx([i / fps for i in range(n)], abs=1e-6)
    assert got[0][2].shape == (64, 96, 3) and got[0][2].dtype == np.uint8

    a = read_audio(out, SR)
    assert a.dtype == np.float32 and a.ndim == 1
    assert len(a) == len(audio)
    assert dominant_freq(a, SR) == pytest.approx(440, abs=3)
    # aligned (no shift) and faithful: correlation with the source
    core = slice(2000, len(a) - 2000)
    assert np.corrcoef(a[core], audio[core])[0, 1] > 0.99


def test_write_mp4_odd_size_is_padded(media):
    out = write_mp4(media / "odd.mp4", [index_frame(i, (65, 47)) for i in range(5)], 10)
    info = probe(out)
    assert (info.width, info.height) == (66, 48)
    with VideoReader(out) as vr:
        f = vr.frame(3)
    assert decode_index(f[:47, :65]) == 3


def test_mp4writer_errors(media):
    with pytest.raises(MediaError, match="odd"):
        w = Mp4Writer(media / "odd2.mp4", 25, pad_odd=False)
        w.add_frame(np.zeros((47, 64, 3), np.uint8))
    w = Mp4Writer(media / "mixed.mp4", 25)
    w.add_frame(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(MediaError, match="first frame was 64x48"):
        w.add_frame(np.zeros((32, 32, 3), np.uint8))
    w.abort()
    assert not (media / "mixed.mp4").exists()
    with pytest.raises(MediaError, match="no video frames"):
        Mp4Writer(media / "empty_out.mp4", 25).close()
    with pytest.raises(MediaError, match="does not exist"):
        write_mp4(media / "no" / "such" / "dir.mp4", [np.zeros((8, 8, 3), np.uint8)], 25)
    with pytest.raises(MediaError, match="uint8"):
        write_mp4(media / "float.mp4", [np.zeros((8, 8, 3), np.float32)], 25)


def test_mp4writer_incremental_audio_before_and_after_frames(media):
    sine = audio_signal("sine", SR * 2, SR)[0]
    with Mp4Writer(media / "inc.mp4", 20, sample_rate=SR) as w:
        w.add_audio(sine[:5000])  # before the first frame: buffered, enables the audio track
        for i in range(40):
            w.add_frame(index_frame(i))
            if i == 10:
                w.add_audio(sine[5000:20000])
        w.add_audio(sine[20000:])
    info = probe(media / "inc.mp4")
    assert info.frame_count == 40 and info.has_audio and info.fps == 20
    a = read_audio(media / "inc.mp4", SR)
    assert len(a) == len(sine)
    assert np.corrcoef(a[2000:-2000], sine[2000:-2000])[0, 1] > 0.99


def test_write_mp4_stereo_audio(media):
    st = audio_signal("sine", SR, SR, channels=2)
    out = write_mp4(media / "stereo.mp4", [index_frame(i) for i in range(10)], 10, audio=st,
                    sample_rate=SR)
    info = probe(out)
    assert info.audio_channels == 2
    mono = read_audio(out, SR)  # downmixed
    assert dominant_freq(mono, SR) == pytest.approx(440, abs=3)


# ---------------------------------------------------------------- exact seeking

SEEK_CASES = {
    "long-gop": dict(gop=250),
    "bframes": dict(gop=30, bframes=2),
    "long-gop+bframes": dict(gop=250, bframes=2),
}


@pytest.fixture(scope="module", params=[(k, s) for k in SEEK_CASES for s in (".mp4", ".mkv")],
                ids=lambda p: f"{p[0]}{p[1]}")
def seek_clip(request, media):
    kind, suffix = request.param
    return make_video(media / f"seek_{kind}{suffix}", 120, audio=False, **SEEK_CASES[kind])


def test_random_access_is_exact(seek_clip):
    with VideoReader(seek_clip) as vr:
        assert vr.frame_count == 120
        sequential = [f for _, _, f in vr.frames()]
        assert indices(sequential) == list(range(120))
        order = list(range(120))
        random.Random(1).shuffle(order)
        for i in order[:60]:
            f = vr.frame(i)
            assert decode_index(f) == i, f"frame({i})"
            assert np.array_equal(f, sequential[i]), f"frame({i}) differs from sequential decoding"
        for i in (119, 0, 118, 1, 60, 59):  # the ends and backwards steps
            assert np.array_equal(vr.frame(i), sequential[i])


def test_frame_at_time(seek_clip):
    with VideoReader(seek_clip) as vr:
        for t in (0.0, 0.019, 0.04, 1.0, 1.999, 2.5, 4.76):
            assert decode_index(vr.frame_at(t)) == math.floor(t * 25 + 1e-9)
        assert decode_index(vr.frame_at(100.0)) == 119  # clamped to the clip
        assert decode_index(vr.frame_at(-1.0)) == 0


def test_frames_range(seek_clip):
    with VideoReader(seek_clip) as vr:
        got = list(vr.frames(start=70, stop=80))
        assert [i for i, _, _ in got] == list(range(70, 80))
        assert indices(f for _, _, f in got) == list(range(70, 80))
        assert got[0][1] == pytest.approx(70 / 25)
        assert [i for i, _, _ in vr.frames(start=115)] == list(range(115, 120))
        assert [i for i, _, _ in vr.frames(start=10, stop=20, step=5)] == [10, 15]


def test_stepping_forward_does_not_seek(media, monkeypatch):
    path = make_video(media / "step.mp4", 100, gop=250, audio=False)
    seeks = []
    orig = _Cursor.seek_pts

    def counting(self, pts):
        seeks.append(pts)
        return orig(self, pts)

    monkeypatch.setattr(_Cursor, "seek_pts", counting)
    with VideoReader(path, cache_mb=0) as vr:
        for i in range(0, 60):  # playback / frame stepping
            assert decode_index(vr.frame(i)) == i
        assert len(seeks) <= 1
        before = len(seeks)
        assert decode_index(vr.frame(70)) == 70  # a jump ahead within the GOP: still no seek
        assert decode_index(vr.frame(70)) == 70  # the same frame again
        assert len(seeks) == before
        assert decode_index(vr.frame(20)) == 20  # backwards needs a seek
        assert len(seeks) == before + 1
        assert vr.position == 20
    seeks.clear()
    with VideoReader(path) as vr:  # with the frame cache, stepping back costs no seek either
        assert decode_index(vr.frame(80)) == 80
        n = len(seeks)
        for i in range(79, 40, -1):
            assert decode_index(vr.frame(i)) == i
        assert len(seeks) == n


@pytest.mark.parametrize("audio", [False, True])
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_first_pts_not_zero(media, suffix, audio):
    """Video timestamps start 10 frames late; index 0 is the first frame all the same."""
    path = make_video(media / f"late_{int(audio)}{suffix}", 40, pts_offset=10, audio=audio)
    info = probe(path)
    assert info.frame_count == 40
    # with audio from 0 the video starts 0.4 s into the clip, else it defines time 0
    assert info.video_start == pytest.approx(0.4 if audio else 0.0, abs=1e-3)
    with VideoReader(path) as vr:
        got = list(vr.frames())
        assert [i for i, _, _ in got] == list(range(40))
        assert indices(f for _, _, f in got) == list(range(40))
        assert got[5][1] == pytest.approx(info.video_start + 5 / 25)
        for i in (33, 2, 17):
            assert decode_index(vr.frame(i)) == i
        assert decode_index(vr.frame_at(info.video_start + 1.0)) == 25


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm"])
def test_frame_count_estimate_for_big_files(media, monkeypatch, suffix):
    """Files too big to demux in full: count from the container index, else duration x fps."""
    probe_mod = sys.modules["avstudio.media.probe"]  # the module (the package exports the function)

    path = make_video(media / f"est{suffix}", 50, audio=suffix != ".mp4")
    monkeypatch.setattr(probe_mod, "COUNT_PACKETS_MAX_BYTES", 0)
    info = probe(path)
    assert info.frame_count_exact is (suffix == ".mp4")  # mp4 has the count in its index
    assert abs(info.frame_count - 50) <= 1
    with VideoReader(path) as vr:
        assert [i for i, _, _ in vr.frames()] == list(range(50))
        assert decode_index(vr.frame(37)) == 37


def test_resize_and_out_of_range(clip):
    with VideoReader(clip, size=(32, 24)) as vr:
        f = vr.frame(7)
        assert f.shape == (24, 32, 3)
        assert decode_index(f) == 7
        assert vr.frame(7, size=(16, 16)).shape == (16, 16, 3)
        assert next(iter(vr.frames(size=(48, 40))))[2].shape == (40, 48, 3)
        with pytest.raises(FrameIndexError):
            vr.frame(50)
        with pytest.raises(MediaError):
            vr.frame(-1)


def test_rotation_from_display_matrix(media):
    path = make_video(media / "rot.mp4", 10, size=(64, 32), rotation=90, audio=False)
    info = probe(path)
    assert info.rotation == 90
    assert (info.width, info.height) == (32, 64)
    assert (info.coded_width, info.coded_height) == (64, 32)
    with VideoReader(path) as vr:
        f = vr.frame(4)
        assert f.shape == (64, 32, 3)
        # displayed = stored picture turned 90 degrees counter-clockwise
        assert decode_index(np.rot90(f, k=-1)) == 4
        assert vr.frame(4, size=(16, 32)).shape == (32, 16, 3)


# ---------------------------------------------------------------- containers and codecs

FORMATS = [
    ("mkv", "libx264", "aac"),
    ("webm", "libvpx-vp9", "libopus"),
    ("mov", "libx264", "pcm_s16le"),
    ("avi", "mpeg4", "libmp3lame"),
    ("mkv", "libx265", "flac"),
    ("mp4", "libx265", "aac"),
    ("mkv", "libsvtav1", "libopus"),
    ("mkv", "mpeg4", "libmp3lame"),
]


@pytest.mark.parametrize("suffix,vcodec,acodec", FORMATS, ids=lambda x: str(x))
def test_containers_and_codecs(media, suffix, vcodec, acodec):
    for enc in (vcodec, acodec):
        if not has_encoder(enc):
            pytest.skip(f"encoder {enc} not in this PyAV wheel")
    path = make_video(media / f"fmt_{vcodec}_{acodec}.{suffix}", 40, codec=vcodec,
                      audio_codec=acodec)
    info = probe(path)
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (64, 64)
    assert info.fps == pytest.approx(25)
    assert abs(info.frame_count - 40) <= 2  # avi + mp3 can hold padding frames
    assert info.duration == pytest.approx(1.6, abs=0.1)
    with VideoReader(path) as vr:
        seq = [(i, f) for i, _, f in vr.frames()]
        shown = indices(f for _, f in seq)
        assert shown == list(range(40))
        for i, f in random.Random(2).sample(seq, 8):
            assert np.array_equal(vr.frame(i), f)
    a = read_audio(path, SR)
    assert abs(len(a) - 1.6 * SR) < 0.1 * SR
    assert dominant_freq(a, SR) == pytest.approx(440, abs=4)


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".m4a", ".ogg", ".flac"])
def test_audio_only_files(media, suffix):
    codec = {".mp3": "libmp3lame", ".ogg": "libopus"}.get(suffix)
    if codec and not has_encoder(codec):
        pytest.skip(f"encoder {codec} not available")
    path = make_audio_only(media / f"tone{suffix}", seconds=1.5, sr=SR)
    info = probe(path)
    assert info.has_audio and not info.has_video
    assert info.duration == pytest.approx(1.5, abs=0.1)
    a = read_audio(path, SR)
    assert abs(len(a) - 1.5 * SR) < 0.06 * SR
    assert dominant_freq(a, SR) == pytest.approx(440, abs=3)
    with pytest.raises(MediaError, match="no video stream"):
        VideoReader(path)


# ---------------------------------------------------------------- audio

@pytest.fixture(scope="module")
def noise_clips(media):
    """Lossless noise: in mkv (pcm 16 kHz, with video) and a 44.1 kHz wav."""
    return [make_video(media / "noise.mkv", 100, audio_codec="pcm_s16le", audio_kind="noise"),
            make_audio_only(media / "noise44.wav", seconds=4.0, sr=44100, kind="noise")]


@pytest.mark.parametrize("sr", [16000, 22050, 44100])
def test_read_audio_exact_ranges(noise_clips, sr):
    for path in noise_clips:
        full = read_audio(path, sr)
        assert len(full) == round(4.0 * sr)
        for start, end in [(0.5, 1.5), (1.2345, 3.0), (0.0, 0.1), (2.75, None), (3.9, 3.9)]:
            part = read_audio(path, sr, start, end)
            a = round(start * sr)
            b = round(end * sr) if end is not None else len(full)
            assert len(part) == b - a, (path.name, start, end)
            np.testing.assert_allclose(part, full[a:b], atol=1e-6, err_msg=f"{path.name} {start}-{end}")


def test_read_audio_matches_source_and_pads_at_end(noise_clips):
    path = noise_clips[0]
    src = audio_signal("noise", 4 * SR, SR)[0]
    got = read_audio(path, SR)
    np.testing.assert_allclose(got, src, atol=1.0 / 32000)
    # past the end of the stream: the length asked for, zeros after the end
    tail = read_audio(path, SR, 3.5, 4.5)
    assert len(tail) == SR
    np.testing.assert_allclose(tail[: SR // 2], src[-SR // 2:], atol=1.0 / 32000)
    assert not tail[SR // 2:].any()


def test_iter_audio_chunks_and_counter_tone(media):
    path = make_video(media / "counter.mp4", 125, audio_kind="counter")  # 5 s
    chunks = list(iter_audio(path, SR, chunk_seconds=1.0))
    assert [len(c) for c in chunks] == [SR] * 5
    for s, c in enumerate(chunks):  # each chunk is the right second of the clip
        assert dominant_freq(c[1000:-1000], SR) == pytest.approx(counter_freq(s), abs=5)
    part = list(iter_audio(path, SR, chunk_seconds=0.3, start=2.0, end=3.0))
    assert [len(c) for c in part] == [4800, 4800, 4800, 1600]
    assert dominant_freq(np.concatenate(part)[1000:-1000], SR) == pytest.approx(counter_freq(2), abs=5)
    assert len(read_audio(path, 8000, 1.0, 2.5)) == 12000


def test_audio_bad_ranges(clip):
    with pytest.raises(ValueError):
        read_audio(clip, SR, start=-1)
    with pytest.raises(ValueError):
        read_audio(clip, SR, start=2, end=1)


def test_wav_round_trip(media):
    x = audio_signal("noise", 12345, SR)[0]
    write_wav(media / "a.wav", x, SR)
    y, sr = read_wav(media / "a.wav")
    assert sr == SR and y.dtype == np.float32 and y.shape == x.shape
    assert np.abs(y - x).max() < 1.0 / 32767 + 1e-6
    write_wav(media / "f.wav", x, 22050, float32=True)
    y, sr = read_wav(media / "f.wav")
    assert sr == 22050 and np.array_equal(y, x)
    st = audio_signal("sine", 1000, SR, channels=2)
    write_wav(media / "st.wav", st, SR)
    y, _ = read_wav(media / "st.wav")
    assert y.shape == (2, 1000)
    y, _ = read_wav(media / "st.wav", mono=True)
    assert y.shape == (1000,)
    # FFmpeg reads our WAVs too, and we read FFmpeg's
    assert len(read_audio(media / "f.wav", 22050)) == len(x)
    ff = make_audio_only(media / "ff.wav", seconds=0.5, sr=SR, kind="noise")
    y, sr = read_wav(ff)
    np.testing.assert_allclose(y, audio_signal("noise", SR // 2, SR)[0], atol=1.0 / 32000)
    with pytest.raises(MediaError):
        read_wav(media / "missing.wav")


# ---------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def bad_files(media):
    good = make_video(media / "src.mkv", 100)
    fs = make_video(media / "src_fs.mp4", 100, faststart=True)
    return {
        "missing": (media / "does_not_exist.mp4", "no such file"),
        "directory": (media, "is a directory"),
        "random bytes": (make_random_bytes(media / "random.mp4"), "not a media file"),
        "text": (make_text(media / "notes.mkv"), "not a media file"),
        "zero length": (make_empty(media / "empty.mp4"), "empty"),
        "truncated mp4 (no index)": (make_truncated(make_video(media / "src.mp4", 50),
                                                    media / "trunc.mp4", 0.5), "not a media file"),
        "truncated mkv": (make_truncated(good, media / "trunc.mkv", 0.6), "truncated or corrupt"),
        "truncated faststart mp4": (make_truncated(fs, media / "trunc_fs.mp4", 0.6),
                                    "truncated or corrupt"),
    }


BAD = ["missing", "directory", "random bytes", "text", "zero length", "truncated mp4 (no index)",
       "truncated mkv", "truncated faststart mp4"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_raises_one_media_error(bad_files, kind):
    path, words = bad_files[kind]
    for call in (lambda: probe(path), lambda: read_audio(path), lambda: VideoReader(path).frame(80),
                 lambda: list(VideoReader(path).frames()), lambda: list(iter_audio(path))):
        with pytest.raises(MediaError) as ei:
            call()
        msg = str(ei.value)
        assert os.fspath(path) in msg or Path(path).name in msg
        assert words in msg
        assert "\n" not in msg


@pytest.mark.parametrize("name,fraction", [("trunc_stream.mkv", 0.6), ("trunc_stream.mp4", 0.6),
                                           ("trunc_stream.webm", 0.5)])
def test_truncated_stream_yields_then_raises(media, name, fraction):
    src = make_video(media / f"src_{name}", 100, faststart=True)
    bad = make_truncated(src, media / name, fraction)
    info = probe(bad, check=False)
    assert info.problem and "truncated" in info.problem
    with VideoReader(bad) as vr:
        got = []
        with pytest.raises(MediaError, match=r"stopped decoding at \d+\.\d\d s \(frame \d+ of ~100\)"):
            for i, _t, f in vr.frames():
                got.append((i, decode_index(f)))
        assert 20 < len(got) < 100
        assert all(i == j for i, j in got)  # what decodes is right
        assert decode_index(vr.frame(10)) == 10  # and random access before the cut works
        with pytest.raises(MediaError, match="truncated or corrupt"):
            vr.frame(95)
    chunks = []
    with pytest.raises(MediaError, match="stopped decoding audio"):
        for c in iter_audio(bad, SR):
            chunks.append(c)
    assert len(chunks) >= 1


def test_corrupt_data_stops_with_media_error(media):
    src = make_video(media / "src_corrupt.mp4", 100, faststart=True)
    bad = make_corrupt(src, media / "corrupt.mp4", 0.6)
    with VideoReader(bad) as vr:
        n = 0
        with pytest.raises(MediaError, match="truncated or corrupt"):
            for _ in vr.frames():
                n += 1
        assert 20 < n < 100
    with pytest.raises(MediaError, match="corrupt"):
        read_audio(bad, SR)


def test_missing_streams(media, clip):
    silent = make_video(media / "silent.mp4", 10, audio=False)
    with pytest.raises(MediaError, match="no audio stream"):
        read_audio(silent)
    with pytest.raises(MediaError, match="no audio stream"):
        next(iter_audio(silent))
    assert probe(silent).has_audio is False
    assert probe(silent).audio_rate is None


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "avstudio", *args], capture_output=True, text=True,
                          cwd=str(ROOT), env=env, timeout=120)


def test_cli_info_prints_json(clip):
    r = _cli("info", str(clip))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["frame_count"] == 50 and d["fps"] == 25 and d["width"] == 64 and d["height"] == 64
    assert d["has_audio"] is True and d["audio_rate"] == SR and d["audio_channels"] == 1
    assert d["duration"] == pytest.approx(2.0)


@pytest.mark.parametrize("kind", BAD)
def test_cli_info_bad_inputs_one_line(bad_files, kind):
    path, words = bad_files[kind]
    r = _cli("info", str(path))
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr and words in lines[0], r.stderr
    assert r.stdout == ""


# ---------------------------------------------------------------- memory

@pytest.fixture(scope="module")
def long_clip(media):
    """60 s of 64x64 video at 25 fps with audio: long-ish, cheap."""
    return make_video(media / "long.mkv", 1500, gop=250)


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_streaming_memory_is_flat(long_clip):
    def frames(stop):
        def run():
            with VideoReader(long_clip) as vr:
                for _i, _, f in vr.frames(stop=stop):
                    assert f.shape == (64, 64, 3)
        return run

    def audio(end):
        def run():
            for c in iter_audio(long_clip, SR, chunk_seconds=1.0, end=end):
                assert len(c) <= SR
        return run

    short_v, long_v = _peak(frames(150)), _peak(frames(None))
    short_a, long_a = _peak(audio(6.0)), _peak(audio(None))
    # 1500 frames of 12 KB would be 18 MB, 60 s of audio 3.8 MB: nothing is accumulated
    assert long_v < short_v + 1_000_000, (short_v, long_v)
    assert long_a < short_a + 500_000, (short_a, long_a)
    assert long_a < 2_000_000


# ---------------------------------------------------------------- audio output

def test_audio_output_without_device_is_silent_with_status(monkeypatch):
    monkeypatch.delenv("AVSTUDIO_NO_AUDIO", raising=False)
    if audio_out.list_output_devices():
        pytest.skip("this machine has an audio output device")
    out = audio_out.open_output(SR)
    assert isinstance(out, SilentOutput) and not out.available
    assert "playing silently" in out.status
    out.close()


def test_audio_output_fallbacks(monkeypatch):
    monkeypatch.delenv("AVSTUDIO_NO_AUDIO", raising=False)
    out = audio_out.open_output(SR, enabled=False)
    assert isinstance(out, SilentOutput) and out.status == "Audio disabled (--no-audio)"

    def no_portaudio():
        raise OSError("PortAudio library not found")

    monkeypatch.setattr(audio_out, "_import_sounddevice", no_portaudio)
    out = audio_out.open_output(SR)
    assert isinstance(out, SilentOutput) and "PortAudio" in out.status
    assert audio_out.list_output_devices() == []

    monkeypatch.setenv("AVSTUDIO_NO_AUDIO", "1")
    assert audio_out.open_output(SR).status == "Audio disabled (--no-audio)"


def test_silent_output_clock_follows_wall_time():
    pulled = []
    out = SilentOutput(SR, source=lambda n: pulled.append(n) or np.zeros(n, np.float32))
    assert out.position_samples == 0 and not out.active
    t0 = time.monotonic()
    out.start()
    time.sleep(0.3)
    pos = out.position_seconds
    elapsed = time.monotonic() - t0
    assert 0.3 - 1 / SR <= pos <= elapsed  # the wall clock, exactly
    deadline = time.monotonic() + 30
    while not pulled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pulled  # the source is consumed while playing
    out.stop()
    frozen = out.position_samples
    time.sleep(0.05)
    assert out.position_samples == frozen
    assert sum(pulled) <= frozen  # and never ahead of the clock
    out.reset(SR * 10)
    assert out.position_seconds == pytest.approx(10.0)
    out.start()
    time.sleep(0.05)
    assert out.position_seconds > 10.0
    out.close()
    assert not out.active and out.latency == 0.0


def test_sounddevice_output_pulls_from_source():
    """SoundDeviceOutput against a stand-in for the sounddevice module."""

    class FakeStream:
        def __init__(self, **kw):
            self.kw, self.active, self.latency, self.device = kw, False, 0.02, 0

        def start(self):
            self.active = True

        def stop(self):
            self.active = False

        def close(self):
            self.closed = True

    class FakeSD:
        OutputStream = FakeStream

        @staticmethod
        def query_devices(i=None):
            return {"name": "Fake Card", "max_output_channels": 2}

    src_pos = [0]

    def source(n):
        x = np.arange(src_pos[0], src_pos[0] + n, dtype=np.float32)
        src_pos[0] += n
        return x[: n - 3]  # short: padded with silence

    out = audio_out.SoundDeviceOutput(SR, channels=2, source=source, _sd=FakeSD)
    assert out.available and "Fake Card" in out.status and out.latency == pytest.approx(0.02)
    out.start()
    buf = np.ones((8, 2), np.float32)
    out._stream.kw["callback"](buf, 8, None, None)
    assert out.position_samples == 8
    assert np.array_equal(buf[:5, 0], np.arange(5)) and np.array_equal(buf[:5, 1], np.arange(5))
    assert not buf[5:].any()
    out.set_source(lambda n: 1 / 0)  # a failing source plays silence, the error is kept
    out._stream.kw["callback"](buf, 8, None, None)
    assert not buf.any() and isinstance(out.error, ZeroDivisionError)
    assert out.position_samples == 16
    out.close()


@pytest.mark.parametrize("ext", [".mkv", ".webm", ".avi"])
def test_a_sound_track_shorter_than_the_video_is_not_called_truncated(media, ext):
    """Matroska, WebM and AVI headers state only the file's duration (its longest stream's): a
    sound track that ends before the video is read whole, never "truncated or corrupt" (a
    Debian file, planetblupi's play105.mkv, has a sound track 0.95 s shorter than its video:
    the app called it damaged and its analysis failed). A file cut short still says so."""
    p = make_video(media / f"short_sound{ext}", 100, audio_seconds=1.0)
    a = read_audio(p, SR)
    assert abs(len(a) / SR - 1.0) < 0.05 and np.abs(a[: SR // 2]).max() > 0.1
    win = read_audio(p, SR, start=0.5, end=3.5)  # a window past the sound's end: zeros there
    assert len(win) == 3 * SR and not np.any(win[int(0.7 * SR):])
    assert sum(len(c) for c in iter_audio(p, SR)) == len(a)
    cut = make_truncated(p, media / f"short_sound_cut{ext}", 0.6)
    with pytest.raises(MediaError, match="truncated or corrupt"):
        read_audio(cut, SR)
