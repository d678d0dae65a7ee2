"""Clip datasets for training: decoded frames + audio windows around them.

One dataset class serves single-process training (clips decoded once and kept in memory)
and DataLoader workers / torchrun (decoding inside the workers, lazily, a bounded cache per
worker). A clip that fails to decode is skipped and counted, never crashes a run.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

import numpy as np
import torch

from ..errors import AVStudioError, MediaError
from ..media import VideoReader, read_audio


class ClipFormat(Protocol):
    """What a clip is decoded to: the model's input sizes (``avstudio.nets.config.AVConfig`` is
    one; the data layer needs only these, not the networks)."""

    frame_size: int  # frames are resized to frame_size x frame_size
    sample_rate: int  # audio rate
    audio_seconds: float  # the audio window around a frame

    stack: int  # frames per visual sample (1: a still frame)

    @property
    def audio_samples(self) -> int: ...

    def stack_indices(self, centre: int, fps: float, n_frames: int) -> list[int]: ...


class JpegFrames:
    """A clip's frames kept as JPEG bytes (about a tenth of the memory of raw frames: thousands
    of clips fit in memory), decoded on access. Indexing like a uint8 array [T, 3, S, S]:
    ``frames[j]`` -> [3, S, S], ``frames[[i, j, ...]]`` -> [n, 3, S, S]."""

    def __init__(self, frames_hw3, quality: int = 92):
        import cv2

        self._jpg: list[bytes] = []
        shape = None
        for rgb in frames_hw3:
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise ValueError("JPEG encoding failed")
            self._jpg.append(buf.tobytes())
            shape = rgb.shape
        self.shape = (len(self._jpg), 3, shape[0], shape[1]) if shape is not None else (0, 3, 0, 0)

    def __len__(self) -> int:
        return len(self._jpg)

    def _one(self, j: int) -> np.ndarray:
        import cv2

        bgr = cv2.imdecode(np.frombuffer(self._jpg[int(j)], np.uint8), cv2.IMREAD_COLOR)
        return np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1))

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            return self._one(int(idx))
        return np.stack([self._one(int(j)) for j in idx])

    @property
    def nbytes(self) -> int:
        return sum(len(b) for b in self._jpg)


@dataclass
class DecodedClip:
    path: str
    frames: "np.ndarray | JpegFrames"  # uint8 [T, 3, S, S] (or the same as JPEG bytes)
    audio: np.ndarray  # float32 [N] at cfg.sample_rate
    fps: float
    count: Optional[int]

    @property
    def duration(self) -> float:
        return len(self.frames) / self.fps

    @property
    def nbytes(self) -> int:
        return self.frames.nbytes + self.audio.nbytes


def decode_clip(path: str, cfg: ClipFormat, count: Optional[int] = None, max_seconds: float | None = None,
                jpeg: bool = False) -> DecodedClip:
    """Decode a whole clip at the model's frame size and sample rate (raises MediaError).
    ``jpeg``: keep the frames as JPEG bytes (:class:`JpegFrames`) instead of raw arrays."""
    S = cfg.frame_size
    frames = []
    with VideoReader(path) as vr:
        fps = float(vr.info.fps or 25.0)
        stop = None if max_seconds is None else int(max_seconds * fps)
        for _, _, rgb in vr.frames(0, stop, size=(S, S)):
            frames.append(rgb if jpeg else np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    if not frames:
        raise MediaError(f"{path}: no video frames could be decoded")
    end = len(frames) / fps
    audio = read_audio(path, cfg.sample_rate, 0.0, end).astype(np.float32)
    return DecodedClip(path, JpegFrames(frames) if jpeg else np.stack(frames), audio, fps, count)


def audio_window(audio: np.ndarray, center_s: float, cfg: ClipFormat) -> np.ndarray:
    """The ``cfg.audio_seconds`` window centred on ``center_s`` (zero-padded at the clip edges)."""
    n = cfg.audio_samples
    start = int(round(center_s * cfg.sample_rate)) - n // 2
    out = np.zeros(n, dtype=np.float32)
    a, b = max(start, 0), min(start + n, len(audio))
    if b > a:
        out[a - start:b - start] = audio[a:b]
    return out


def stack_frames(frames: np.ndarray, centres, fps: float, cfg: ClipFormat) -> np.ndarray:
    """The model's visual input at frames ``centres`` of a decoded clip ``frames`` [T, 3, S, S]:
    ``[len(centres), 3, S, S]`` for a still-frame model, ``[len(centres), F, 3, S, S]`` for a
    model that stacks F frames (``cfg.stack``; clamped at the clip's ends)."""
    if cfg.stack <= 1:
        return np.stack([frames[int(j)] for j in centres])
    return np.stack([frames[list(cfg.stack_indices(int(j), fps, len(frames)))] for j in centres])


def pick_moments(n_frames: int, fps: float, m: int, rng: np.random.Generator, min_gap_s: float = 1.0) -> list[int]:
    """m distinct frame indices, at least ``min_gap_s`` apart when the clip allows it."""
    if m <= 1 or n_frames <= 1:
        return [int(rng.integers(n_frames))] * max(m, 1)
    gap = int(min(min_gap_s * fps, (n_frames - 1) / (m - 1)))
    span = n_frames - 1 - gap * (m - 1)
    base = np.sort(rng.integers(0, span + 1, size=m))
    return [int(base[i] + i * gap) for i in range(m)]


class ClipWindows(torch.utils.data.Dataset):
    """Item i: ``moments`` (frame, audio window) pairs from clip i at random moments.

    Returns a dict with ``frames`` uint8 [m, 3, S, S], ``wave`` float32 [m, samples],
    ``count`` (int, -1 unknown), ``index``; or None when the clip cannot be decoded (the
    collate function drops it and the failure is counted in ``failures``).
    """

    def __init__(self, rows: Sequence, cfg: ClipFormat, moments: int = 2, seed: int = 0,
                 cache_bytes: int = 4 << 30, max_seconds: float | None = None,
                 shared: Optional[dict] = None, jpeg: Optional[bool] = None):
        self.paths = [r.path for r in rows]
        self.counts = [r.count for r in rows]
        self.cfg = cfg
        self.moments = moments
        self.seed = seed
        self.epoch = 0
        self.cache_bytes = cache_bytes
        self.max_seconds = max_seconds
        self._cache: OrderedDict[int, DecodedClip] = OrderedDict()
        self._cached = 0
        self._lock = threading.Lock()
        self.failures: dict[str, str] = {}
        # decoded clips shared between datasets of one process (e.g. the curriculum stages
        # and the counter's dataset), keyed by path, so nothing is decoded twice
        self.shared = shared
        # frames kept as JPEG when raw frames of every clip would not fit comfortably (a clip of
        # 4 s at 25 fps and 144 px is 6 MB raw, ~0.6 MB as JPEG)
        if jpeg is None:
            jpeg = len(self.paths) * 100 * 3 * cfg.frame_size ** 2 > (3 << 30)
        self.jpeg = bool(jpeg)

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def clip(self, i: int) -> Optional[DecodedClip]:
        with self._lock:
            if i in self._cache:
                self._cache.move_to_end(i)
                return self._cache[i]
        path = self.paths[i]
        if path in self.failures:
            return None
        if self.shared is not None and path in self.shared:
            c = self.shared[path]
            with self._lock:
                self._cache[i] = c
            return c
        try:
            c = decode_clip(path, self.cfg, self.counts[i], self.max_seconds, jpeg=self.jpeg)
        except AVStudioError as exc:
            self.failures[path] = str(exc)
            return None
        if self.shared is not None:
            self.shared[path] = c
        with self._lock:
            self._cache[i] = c
            self._cached += c.nbytes
            while self._cached > self.cache_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cached -= old.nbytes
        return c

    def __getitem__(self, i: int):
        c = self.clip(i)
        if c is None:
            return None
        rng = np.random.default_rng([self.seed, self.epoch, i])
        idx = pick_moments(len(c.frames), c.fps, self.moments, rng)
        frames = stack_frames(c.frames, idx, c.fps, self.cfg)
        wave = np.stack([audio_window(c.audio, j / c.fps, self.cfg) for j in idx])
        count = -1 if c.count is None else int(c.count)
        return {"frames": torch.from_numpy(frames), "wave": torch.from_numpy(wave),
                "count": count, "index": i}


def collate_windows(items):
    """Stack items, dropping clips that failed to decode. Returns None for an empty batch."""
    items = [it for it in items if it is not None]
    if not items:
        return None
    return {
        "frames": torch.cat([it["frames"] for it in items]),  # [B*m, 3, S, S]
        "wave": torch.cat([it["wave"] for it in items]),  # [B*m, samples]
        "count": torch.tensor([it["count"] for it in items for _ in range(len(it["frames"]))]),
        "clip": torch.tensor([it["index"] for it in items for _ in range(len(it["frames"]))]),
    }


def augment_frames(frames: torch.Tensor, gen: torch.Generator, min_scale: float = 0.7) -> torch.Tensor:
    """Random shifted crops (scale min_scale..1) and horizontal flips, on a batch [B,3,S,S]."""
    import torch.nn.functional as F

    if frames.dim() == 5:  # stacks: the same crop and flip for every frame of a stack
        B, Fn, C, H, W = frames.shape
        return augment_frames(frames.reshape(B, Fn * C, H, W), gen, min_scale).reshape(B, Fn, C, H, W)
    B = frames.shape[0]
    x = frames.float()
    s = min_scale + (1 - min_scale) * torch.rand(B, generator=gen)
    tx = (1 - s) * (2 * torch.rand(B, generator=gen) - 1)
    ty = (1 - s) * (2 * torch.rand(B, generator=gen) - 1)
    flip = torch.where(torch.rand(B, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = s * flip
    theta[:, 0, 2] = tx
    theta[:, 1, 1] = s
    theta[:, 1, 2] = ty
    theta = theta.to(frames.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
