"""Test media makers (pure PyAV, independent of :mod:`avstudio.media`).

Every video frame paints its own index as a 4x4 grid of black/white blocks (16 bits,
most significant bit top-left), which survives lossy encoding: :func:`decode_index`
reads it back from a decoded RGB frame of any size. Audio is one of

* ``"sine"``    a 440 Hz sine, amplitude 0.5;
* ``"counter"`` a tone whose frequency steps every second: ``counter_freq(s)`` Hz in second
  ``s`` (robust to lossy codecs, lets a test tell *where* in the clip a chunk comes from);
* ``"noise"``   seeded white noise, amplitude 0.5 (for sample-exact checks with PCM);
* ``"silence"``.

Clips are tiny (64x64 by default) so tests stay fast. :func:`make_tiny_model` saves a randomly
initialised model small enough to analyse a clip in a blink. Containers are inferred from the
suffix; codecs default to what that container usually carries (mp4/mkv/mov: h264 + aac,
webm: vp9 + opus, avi: mpeg4 + pcm).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Optional

import av
import numpy as np

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only

GRID = 4  # 4x4 blocks -> 16 bits
SINE_HZ = 440.0

DEFAULT_CODECS = {
    ".mp4": ("libx264", "aac"),
    ".m4v": ("libx264", "aac"),
    ".mkv": ("libx264", "aac"),
    ".mov": ("libx264", "aac"),
    ".webm": ("libvpx-vp9", "libopus"),
    ".avi": ("mpeg4", "pcm_s16le"),
    ".mpg": ("mpeg1video", "mp2"),
    ".mpeg": ("mpeg2video", "mp2"),
    ".ts": ("libx264", "aac"),
    ".ogv": ("libvpx", "libopus"),
}
DEFAULT_AUDIO_ONLY = {
    ".wav": "pcm_s16le",
    ".mp3": "libmp3lame",
    ".m4a": "aac",
    ".aac": "aac",
    ".ogg": "libopus",
    ".opus": "libopus",
    ".flac": "flac",
    ".mka": "aac",
    ".mkv": "aac",
    ".mp4": "aac",
    ".mov": "pcm_s16le",
}


def has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
        return True
    except Exception:
        return False


def has_decoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "r")
        return True
    except Exception:
        return False


# ---------------------------------------------------------------- frames

def index_frame(index: int, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    """An RGB uint8 frame ``[h, w, 3]`` that shows ``index`` as a 4x4 binary block code.

    Bit 15 is the top-left block, reading left to right, top to bottom. A thin coloured
    bar at the top-left corner breaks symmetry (rotations are detectable).
    """
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    bw, bh = w // GRID, h // GRID
    for b in range(GRID * GRID):
        bit = (index >> (GRID * GRID - 1 - b)) & 1
        r, c = divmod(b, GRID)
        if bit:
            img[r * bh:(r + 1) * bh, c * bw:(c + 1) * bw] = 255
    return img


def decode_index(frame: np.ndarray) -> int:
    """Read back the index painted by :func:`index_frame` from a decoded RGB frame."""
    frame = np.asarray(frame)
    h, w = frame.shape[:2]
    grey = frame.astype(np.float32).mean(axis=2) if frame.ndim == 3 else frame.astype(np.float32)
    value = 0
    for b in range(GRID * GRID):
        r, c = divmod(b, GRID)
        y0, y1 = r * h / GRID, (r + 1) * h / GRID
        x0, x1 = c * w / GRID, (c + 1) * w / GRID
        # sample the inner half of the block: away from edges blurred by the codec
        my, mx = (y1 - y0) / 4, (x1 - x0) / 4
        cell = grey[int(y0 + my):max(int(y1 - my), int(y0 + my) + 1),
                    int(x0 + mx):max(int(x1 - mx), int(x0 + mx) + 1)]
        value = (value << 1) | int(cell.mean() > 127.5)
    return value


# ---------------------------------------------------------------- audio

def counter_freq(second: int) -> float:
    """Frequency (Hz) of the ``"counter"`` tone during second ``second``."""
    return 300.0 + 100.0 * (second % 30)


def audio_signal(kind: str, n: int, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Test audio as float32 ``[channels, n]`` (every channel the same signal, scaled)."""
    t = np.arange(n) / sr
    if kind == "sine":
        x = 0.5 * np.sin(2 * np.pi * SINE_HZ * t)
    elif kind == "counter":
        sec = np.floor(t).astype(np.int64)
        freq = 300.0 + 100.0 * (sec % 30)
        # continuous phase across the steps
        phase = 2 * np.pi * np.cumsum(freq) / sr
        x = 0.5 * np.sin(phase)
    elif kind == "noise":
        x = np.random.default_rng(seed).uniform(-0.5, 0.5, n)
    elif kind == "silence":
        x = np.zeros(n)
    else:
        raise ValueError(f"unknown audio kind {kind!r}")
    x = x.astype(np.float32)
    return np.stack([x * (1.0 - 0.25 * c) for c in range(channels)])


def dominant_freq(x: np.ndarray, sr: int) -> float:
    """Frequency (Hz) of the strongest FFT bin of a mono signal."""
    x = np.asarray(x, np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


def _pick_audio_format(codec_name: str) -> Optional[str]:
    codec = av.codec.Codec(codec_name, "w")
    fmts = [f.name for f in (codec.audio_formats or [])]
    for pref in ("fltp", "flt", "s16p", "s16", "s32p", "s32"):
        if pref in fmts:
            return pref
    return fmts[0] if fmts else None


class _AudioFeed:
    """Encode ``data`` [C, N] into ``stream`` piece by piece (so it can interleave with video)."""

    def __init__(self, container, codec: str, data: np.ndarray, sr: int):
        self.c = container
        self.data = data
        self.sr = sr
        channels = data.shape[0]
        layout = {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")
        self.layout = layout
        self.stream = container.add_stream(codec, rate=sr, layout=layout)
        fmt = _pick_audio_format(codec)
        if fmt:
            self.stream.codec_context.format = fmt
        self.pos = 0
        self.resampler = None

    def _encode(self, frames) -> None:
        for f in frames:
            for packet in self.stream.encode(f):
                self.c.mux(packet)

    def feed_until(self, n: int) -> None:
        if self.resampler is None:
            cc = self.stream.codec_context
            self.resampler = av.AudioResampler(format=cc.format.name, layout=cc.layout.name,
                                               rate=cc.sample_rate)
        n = min(n, self.data.shape[1])
        while self.pos < n:
            part = self.data[:, self.pos:min(n, self.pos + 1024)]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(part, np.float32),
                                               format="fltp", layout=self.layout)
            frame.sample_rate = self.sr
            frame.pts = self.pos
            frame.time_base = Fraction(1, self.sr)
            self._encode(self.resampler.resample(frame))
            self.pos += part.shape[1]

    def finish(self) -> None:
        self.feed_until(self.data.shape[1])
        if self.resampler is not None:
            self._encode(self.resampler.resample(None))
        for packet in self.stream.encode(None):
            self.c.mux(packet)


# ---------------------------------------------------------------- makers

def make_video(path, n_frames: int, size: tuple[int, int] = (64, 64), fps: float = 25,
               gop: Optional[int] = None, bframes: int = 0, codec: Optional[str] = None,
               audio: bool = True, sr: int = 16000, audio_kind: str = "sine",
               audio_codec: Optional[str] = None, audio_channels: int = 1,
               audio_seconds: Optional[float] = None, rotation: int = 0,
               faststart: bool = False, crf: int = 18, pts_offset: int = 0) -> Path:
    """Write a clip whose frame ``i`` shows ``i`` (see :func:`index_frame`). Returns the path.

    ``rotation`` sets a display matrix: the stored picture is rotated that many degrees
    *counter-clockwise* for display (PyAV's convention). ``faststart`` moves the mp4/mov index
    to the front (so a truncated file still opens). ``pts_offset`` starts the video's
    timestamps that many frames late (a stream whose first pts is not 0). Audio lasts as long as the video unless
    ``audio_seconds`` says otherwise.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    vdef, adef = DEFAULT_CODECS.get(suffix, ("libx264", "aac"))
    codec = codec or vdef
    audio_codec = audio_codec or adef
    rate = Fraction(fps).limit_denominator(1001)
    options = {"movflags": "+faststart"} if faststart and suffix in (".mp4", ".mov", ".m4v") else {}
    with av.open(str(path), "w", options=options) as c:
        vs = c.add_stream(codec, rate=rate)
        vs.width, vs.height = size
        vs.pix_fmt = "yuv420p"
        opts = {}
        if codec in ("libx264", "libx265"):
            opts.update({"crf": str(crf), "preset": "ultrafast" if not bframes else "veryfast",
                         "sc_threshold": "0"})
            if codec == "libx265":
                opts["x265-params"] = "log-level=none"
        elif codec in ("libvpx-vp9", "libvpx"):
            opts.update({"crf": "20", "b": "0", "deadline": "realtime", "cpu-used": "8",
                         "lag-in-frames": "0"})
        elif codec == "mpeg4":
            opts.update({"qscale": "2"})
        elif codec == "libsvtav1":
            opts.update({"preset": "8", "crf": "10"})  # presets >= 10 garble tiny clips
        vs.options = opts
        if gop is not None:
            vs.codec_context.gop_size = int(gop)
            if codec == "libx264":
                vs.options = {**opts, "keyint_min": str(int(gop))}
        vs.codec_context.max_b_frames = int(bframes)
        if rotation:
            vs.set_display_rotation(rotation)
        feed = None
        if audio:
            secs = n_frames / float(rate) if audio_seconds is None else audio_seconds
            data = audio_signal(audio_kind, int(round(secs * sr)), sr, audio_channels)
            feed = _AudioFeed(c, audio_codec, data, sr)

        tb = Fraction(1, 1) / rate
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(index_frame(i, size), format="rgb24")
            frame.pts = i + pts_offset
            frame.time_base = tb
            for packet in vs.encode(frame):
                c.mux(packet)
            if feed is not None:  # interleave: audio up to the end of this frame
                feed.feed_until(int(round((i + 1) / float(rate) * sr)))
        for packet in vs.encode(None):
            c.mux(packet)
        if feed is not None:
            feed.finish()
    return path


def make_audio_only(path, seconds: float = 2.0, sr: int = 16000, kind: str = "sine",
                    codec: Optional[str] = None, channels: int = 1) -> Path:
    """An audio-only file (wav, mp3, m4a, ogg/opus, flac, mka, ...). Returns the path."""
    path = Path(path)
    codec = codec or DEFAULT_AUDIO_ONLY.get(path.suffix.lower(), "aac")
    data = audio_signal(kind, int(round(seconds * sr)), sr, channels)
    with av.open(str(path), "w") as c:
        _AudioFeed(c, codec, data, sr).finish()
    return path


def make_truncated(src, dst, fraction: float = 0.5) -> Path:
    """Copy the first ``fraction`` of the bytes of ``src`` to ``dst``."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


def make_corrupt(src, dst, start_fraction: float = 0.5, seed: int = 0) -> Path:
    """Copy ``src`` with every byte after ``start_fraction`` replaced by random bytes."""
    data = bytearray(Path(src).read_bytes())
    cut = int(len(data) * start_fraction)
    data[cut:] = np.random.default_rng(seed).integers(0, 256, len(data) - cut, dtype=np.uint8).tobytes()
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def make_random_bytes(path, n: int = 20000, seed: int = 0) -> Path:
    """A file of random bytes (not a media file) with whatever suffix ``path`` has."""
    Path(path).write_bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
    return Path(path)


def make_empty(path) -> Path:
    """A zero-length file."""
    Path(path).write_bytes(b"")
    return Path(path)


def make_text(path, text: str = "hello, I am not a video\n" * 50) -> Path:
    Path(path).write_text(text)
    return Path(path)


def rss_bytes() -> int:
    """Resident set size of this process (Linux), 0 when unknown."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def frame_indices(frames: Sequence[np.ndarray]) -> list[int]:
    return [decode_index(f) for f in frames]


def record_dialogs(monkeypatch) -> list:
    """Make QMessageBox's static dialogs (critical, warning, information, question) record
    ``(kind, title, text)`` in the returned list and answer Ok instead of showing."""
    from PySide6.QtWidgets import QMessageBox

    seen: list = []

    def rec(kind):
        def f(parent, title, text, *a, **k):
            seen.append((kind, title, text))
            return QMessageBox.StandardButton.Ok
        return staticmethod(f)

    for kind in ("critical", "warning", "information", "question"):
        monkeypatch.setattr(QMessageBox, kind, rec(kind))
    return seen


def isolate_gui(qapp, tmp_path, monkeypatch) -> None:
    """An app test's own analysis cache and settings file, no sound device, and the guard
    against PySide6 6.12.0's refcount bug."""
    from avstudio.gui.qtcompat import install_none_guard

    install_none_guard(qapp)
    monkeypatch.setenv("AVSTUDIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AVSTUDIO_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("AVSTUDIO_NO_AUDIO", "1")


GUI_WAIT = 30000  # ms: how long an app test waits for a window, a clip or its analysis (the machine is shared)


def open_window(qtbot, model, **kw):
    """The app's main window on ``model``, shown at 900x700, without sound and with 2 clusters
    unless ``kw`` says otherwise; returns once the model is loaded."""
    from avstudio.gui.main_window import MainWindow

    kw.setdefault("audio", False)
    kw.setdefault("k", 2)
    w = MainWindow(model_path=model, **kw)
    qtbot.addWidget(w)
    w.resize(900, 700)
    w.show()
    qtbot.waitUntil(lambda: not w.player.model_loading, timeout=GUI_WAIT)
    return w


def open_bare_window(qtbot):
    """The app's main window without a model (library and fine-tune work), shown at 1200x800."""
    from avstudio.gui.main_window import MainWindow

    w = MainWindow(audio=False, load_model=False)
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    return w


def open_clip(qtbot, w, path, analysed: bool = True) -> None:
    """Open ``path`` in window ``w`` and wait for its first frame on screen (and, when
    ``analysed``, for the analysis to finish)."""
    assert w.open_file(path)
    qtbot.waitUntil(lambda: w.view.last_painted_index == 0, timeout=GUI_WAIT)
    if analysed:
        qtbot.waitUntil(lambda: w.player.analysis_state == "done", timeout=GUI_WAIT)


# ---------------------------------------------------------------- models

def make_tiny_model(folder, separator: bool = True, counter: bool = False, seed: int = 0) -> Path:
    """A randomly initialised model small enough to analyse a clip in a blink (8x8 heatmaps),
    saved with ``save_tensors`` and a card like the trainer's."""
    import torch

    from avstudio.nets.checkpoint import component_tensors, save_tensors
    from avstudio.nets.config import AVConfig, CounterConfig
    from avstudio.nets.model import AVModel

    torch.manual_seed(seed)
    folder = Path(folder)
    cfg = AVConfig(frame_size=32, vis_channels=(8, 8, 8), aud_channels=(8, 8), embed_dim=16)
    av = AVModel(cfg)
    tensors = component_tensors("av", av)
    comps = {"av": {"class": "AVModel", "config": cfg.to_dict()}}
    if counter:
        from avstudio.nets.counter import Counter

        ccfg = CounterConfig(hidden=8, aud_channels=(4, 8))
        tensors.update(component_tensors("counter", Counter(ccfg, cfg)))
        comps["counter"] = {"class": "Counter", "config": ccfg.to_dict()}
    if separator:
        from avstudio.nets.separator import Separator, SeparatorConfig

        scfg = SeparatorConfig(channels=(4, 8), feat_channels=4, head_hidden=4, cond_dim=16, n_bins=64)
        tensors.update(component_tensors("sep", Separator(scfg)))
        comps["sep"] = {"class": "Separator", "config": scfg.to_dict()}
    card = {"kind": "avstudio-localizer", "components": comps, "stages": [], "data": {},
            "command": "tests/helpers.py make_tiny_model", "created": "test"}
    save_tensors(folder / "model.safetensors", tensors, card)
    return folder


def make_tiny_avin(folder, seed: int = 0) -> Path:
    """A randomly initialised AVIN (conv trunk, 8 x 8 maps from 32 px frames) with its card."""
    import torch

    from avstudio.nets.avin import AVINConfig, AVINModel
    from avstudio.nets.checkpoint import component_tensors, save_tensors

    torch.manual_seed(seed)
    cfg = AVINConfig(frame_size=32, vis_channels=(8, 8, 8), aud_channels=(8, 8), embed_dim=16, audio_hidden=8)
    m = AVINModel(cfg)
    card = {"kind": "avstudio-avin", "method": "avin",
            "components": {"avin": {"class": "AVINModel", "config": cfg.to_dict()}},
            "command": "tests/helpers.py make_tiny_avin", "created": "test"}
    save_tensors(Path(folder) / "avin.safetensors", component_tensors("avin", m), card)
    return Path(folder) / "avin.safetensors"
