"""Visually-guided sound separation: a U-Net over the mixture spectrogram, conditioned on a
visual vector (Sound-of-Pixels, Zhao et al. ECCV 2018; the separation part of Hu et al.,
IEEE TMM 2023).

Signal path (all tensors, Qt-free)::

    wave [B, N] --STFT (n_fft 1022, hop 256, 16 kHz)--> X [B, 512, T] complex
    |X| --warp (mel-spaced grid, 128 bins)--> log-magnitude [B, 1, 128, T]
        --U-Net--> K audio feature maps [B, K, 128, T]            (once per mixture)
    visual vector v [D] (unit; an aligned visual center or the feature at one pixel)
        --> per-bin head: sigmoid(w2 . relu(g * gamma(v) + beta(v)) + b(v))
            with g = W1 * features (a 1x1 conv, shared by every v)  -> mask [128, T]
        (or, head_hidden = 0, Sound-of-Pixels' sigmoid(w(v) . features + b(v)))
    mask --unwarp (linear interpolation to the 512 linear bins)--> M [B, 512, T]
    M * X (the mixture's phase) --iSTFT--> the source's waveform [B, N]

The U-Net runs once per mixture whatever the number of conditionings: separating k
clusters, or answering a click on a pixel, costs only the small per-bin head and an
inverse STFT (this is what makes "the sound of a pixel" interactive on a CPU). The
conditioning may change over time (one vector per STFT frame): a clip's clusters are
followed window by window.

The component registers itself as ``"sep"`` for :func:`avstudio.nets.checkpoint.load_model`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import SAMPLE_RATE


@dataclass
class SeparatorConfig:
    sample_rate: int = SAMPLE_RATE
    n_fft: int = 1022  # 512 linear bins, 64 ms window
    hop_length: int = 256  # 16 ms
    n_bins: int = 128  # warped (mel-spaced) frequency bins seen by the U-Net
    warp: str = "mel"  # "mel" (linear below ~700 Hz, log above), "log" (Sound-of-Pixels), "linear"
    channels: tuple[int, ...] = (16, 32, 48, 64, 96)  # U-Net widths, level 0 (full res) downwards
    feat_channels: int = 32  # K audio feature maps out of the U-Net
    head_hidden: int = 32  # per-bin hidden units of the conditioned head (0: SoP linear head)
    cond_dim: int = 64  # visual vector dimension (AVConfig.embed_dim)
    mask: str = "ratio"  # "ratio" (soft mask in 0..1) or "binary" (trained on dominant-source masks, SoP)
    norm: str = "batch"  # U-Net normalisation: "batch" or "group" (per example)
    conditioning: str = "attended"  # what a cluster's visual vector is: "attended" (see attend()) or "center"
    attend_tau: float = 0.05  # temperature of the attention of a sound over the visual positions
    chunk_seconds: float = 12.0  # inference: process long clips in chunks of about this length
    context_seconds: float = 1.0  # ... with this much context on each side

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SeparatorConfig:
        from .config import check_config

        check_config(cls, d)
        known = {f.name for f in fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        cfg = cls(**kw)
        cfg.check()
        return cfg

    def check(self) -> None:
        if self.warp not in ("mel", "log", "linear"):
            raise ValueError(f"unknown frequency warp {self.warp!r}")
        if self.conditioning not in ("attended", "center"):
            raise ValueError(f"unknown conditioning {self.conditioning!r}")
        if self.norm not in ("batch", "group"):
            raise ValueError(f"unknown normalisation {self.norm!r}")
        if self.mask not in ("ratio", "binary"):
            raise ValueError(f"unknown mask kind {self.mask!r}")
        if self.n_bins % (2 ** (len(self.channels) - 1)):
            raise ValueError(f"n_bins {self.n_bins} must be divisible by 2^{len(self.channels) - 1}")
        if self.n_fft < 16 or self.hop_length < 1:
            raise ValueError("bad STFT settings")

    @property
    def n_linear(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def time_multiple(self) -> int:
        return 2 ** (len(self.channels) - 1)


# -- conditioning ---------------------------------------------------------------------------

def attend(vis: torch.Tensor, audio_centers: torch.Tensor, tau: float = 0.05) -> torch.Tensor:
    """The visual vector of each sound: the visual features pooled where that sound is heard.

    vis [B, D, h, w] unit vectors (``AVModel.visual``), audio_centers [B, k, D] (the k sound
    clusters of the frame's audio window) -> unit vectors [B, k, D]: the mean of the visual
    features weighted by softmax over positions of cos(audio center, feature) / tau.
    Measured on held-out synthetic solos with the shipped AV model: the instrument class is
    read from this vector by nearest class mean 97 % of the time, from the aligned visual
    center (soft k-means over object and background) 70 % (docs/separation.md).
    """
    vf = vis.flatten(2)  # [B, D, N]
    cos = torch.einsum("bkd,bdn->bkn", audio_centers, vf)
    w = torch.softmax(cos / tau, dim=-1)
    return F.normalize(torch.einsum("bkn,bdn->bkd", w, vf), dim=-1)


def attention_maps(vis: torch.Tensor, audio_centers: torch.Tensor, tau: float = 0.05) -> torch.Tensor:
    """The weights :func:`attend` pools with: [B, k, h, w], each summing to 1."""
    B, D, h, w = vis.shape
    cos = torch.einsum("bkd,bdn->bkn", audio_centers, vis.flatten(2))
    return torch.softmax(cos / tau, dim=-1).reshape(B, -1, h, w)


# -- frequency warping ------------------------------------------------------------------------

def _hz_to_mel(f):
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * np.expm1(np.asarray(m, dtype=np.float64) / 1127.0)


def warp_positions(cfg: SeparatorConfig) -> np.ndarray:
    """Fractional linear-bin position of each warped bin: [n_bins], increasing, 0..n_linear-1."""
    L = cfg.n_linear
    top = L - 1
    if cfg.warp == "linear":
        return np.linspace(0.0, top, cfg.n_bins)
    if cfg.warp == "log":  # Sound-of-Pixels: log-spaced from bin 1 to the top
        return np.logspace(0.0, math.log10(top), cfg.n_bins) - 1.0 + 0.0 * top
    nyq = cfg.sample_rate / 2.0
    m = np.linspace(0.0, _hz_to_mel(nyq), cfg.n_bins)
    return _mel_to_hz(m) / nyq * top


def warp_matrices(cfg: SeparatorConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(W [n_bins, n_linear], U [n_linear, n_bins]).

    W warps a magnitude spectrogram: each warped bin is a triangular average over the linear
    bins around its position, as wide as the grid's spacing there (at least one bin, so
    it interpolates where the grid is finer than the STFT). U unwarps a mask: each linear
    bin linearly interpolates the two warped bins around it.
    """
    pos = warp_positions(cfg)
    L = cfg.n_linear
    lin = np.arange(L, dtype=np.float64)
    spacing = np.gradient(pos)
    W = np.zeros((cfg.n_bins, L))
    for i, (p, s) in enumerate(zip(pos, spacing, strict=True)):
        half = max(1.0, s)
        w = np.clip(1.0 - np.abs(lin - p) / half, 0.0, None)
        W[i] = w / w.sum()
    U = np.zeros((L, cfg.n_bins))
    j = np.clip(np.searchsorted(pos, lin, side="right") - 1, 0, cfg.n_bins - 2)
    frac = np.clip((lin - pos[j]) / np.maximum(pos[j + 1] - pos[j], 1e-9), 0.0, 1.0)
    U[np.arange(L), j] = 1.0 - frac
    U[np.arange(L), j + 1] += frac
    return torch.from_numpy(W).float(), torch.from_numpy(U).float()


# -- the U-Net --------------------------------------------------------------------------------

def _norm(kind: str, c: int) -> nn.Module:
    if kind == "group":  # per example: training and inference see the same statistics
        return nn.GroupNorm(min(8, c), c)
    return nn.BatchNorm2d(c)


def _block(cin: int, cout: int, stride: int = 1, act: str = "relu", norm: str = "batch") -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        _norm(norm, cout),
        nn.LeakyReLU(0.2, inplace=True) if act == "leaky" else nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """A light U-Net (one 3x3 conv per level, stride-2 downsampling, bilinear upsampling +
    skip concatenation), fully convolutional over time."""

    def __init__(self, channels: tuple[int, ...], out_channels: int, norm: str = "batch"):
        super().__init__()
        c = list(channels)
        self.inc = _block(1, c[0], norm=norm)
        self.downs = nn.ModuleList([_block(c[i], c[i + 1], stride=2, act="leaky", norm=norm)
                                    for i in range(len(c) - 1)])
        self.mid = _block(c[-1], c[-1], norm=norm)
        self.ups = nn.ModuleList([_block(c[i + 1] + c[i], c[i], norm=norm) for i in range(len(c) - 1)])
        self.out = nn.Conv2d(c[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for d in self.downs:
            skips.append(d(skips[-1]))
        y = self.mid(skips[-1])
        for i in range(len(self.ups) - 1, -1, -1):
            y = F.interpolate(y, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            y = self.ups[i](torch.cat([y, skips[i]], 1))
        return self.out(y)


class Separator(nn.Module):
    def __init__(self, cfg: SeparatorConfig | None = None):
        super().__init__()
        self.cfg = cfg or SeparatorConfig()
        self.cfg.check()
        c = self.cfg
        W, U = warp_matrices(c)
        self.register_buffer("warp_m", W, persistent=False)
        self.register_buffer("unwarp_m", U, persistent=False)
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)
        self.in_scale = nn.Parameter(torch.tensor([1.0 / 3.0]))
        self.unet = UNet(c.channels, c.feat_channels, c.norm)
        H = c.head_hidden
        if H > 0:
            self.head_in = nn.Conv2d(c.feat_channels, H, 1)
            self.film = nn.Linear(c.cond_dim, 2 * H)
            self.head_out = nn.Linear(c.cond_dim, H + 1)
        else:  # Sound-of-Pixels: mask = sigmoid(sum_k w_k(v) f_k + b(v))
            self.head_out = nn.Linear(c.cond_dim, c.feat_channels + 1)

    # -- spectrograms --------------------------------------------------------------------
    def stft(self, wave: torch.Tensor) -> torch.Tensor:
        """wave [B, N] -> complex [B, n_linear, T] (T = N // hop + 1)."""
        c = self.cfg
        return torch.stft(wave.float(), c.n_fft, c.hop_length, window=self.window, center=True,
                          return_complex=True)

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        c = self.cfg
        return torch.istft(spec, c.n_fft, c.hop_length, window=self.window, center=True, length=length)

    def warp(self, mag: torch.Tensor) -> torch.Tensor:
        """[..., n_linear, T] -> [..., n_bins, T]"""
        return torch.matmul(self.warp_m, mag)

    def unwarp(self, mask: torch.Tensor) -> torch.Tensor:
        """[..., n_bins, T] -> [..., n_linear, T]"""
        return torch.matmul(self.unwarp_m, mask)

    # -- network ---------------------------------------------------------------------------
    def features(self, mag_w: torch.Tensor) -> torch.Tensor:
        """Warped mixture magnitude [B, n_bins, T] -> head input [B, H or K, n_bins, T].

        The input is the log magnitude minus its mean over the whole input (so a gain on the
        mixture changes nothing); time is padded to a multiple of 2^levels and cut back.
        """
        T = mag_w.shape[-1]
        x = torch.log(mag_w + 1e-4)
        x = (x - x.mean(dim=(-2, -1), keepdim=True)) * self.in_scale
        m = self.cfg.time_multiple
        pad = (-T) % m
        x = x.unsqueeze(1)
        if pad:
            x = F.pad(x, (0, pad, 0, 0), mode="replicate")
        f = self.unet(x)[..., :T]
        if self.cfg.head_hidden > 0:
            f = self.head_in(f)
        return f

    def mask_logits(self, feats: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """feats [B, C, Fw, T]; cond [B, n, D] or per frame [B, n, T, D] -> logits [B, n, Fw, T]."""
        H = self.cfg.head_hidden
        per_frame = cond.dim() == 4
        if H > 0:
            gb = self.film(cond)  # [B, n, (T,) 2H]
            out = self.head_out(cond)  # [B, n, (T,) H+1]
            if per_frame:
                gamma = gb[..., :H].permute(0, 1, 3, 2).unsqueeze(3)  # [B, n, H, 1, T]
                beta = gb[..., H:].permute(0, 1, 3, 2).unsqueeze(3)
                w2 = out[..., :H].permute(0, 1, 3, 2).unsqueeze(3)
                b2 = out[..., H].unsqueeze(2)  # [B, n, 1, T]
            else:
                gamma = gb[..., :H, None, None]  # [B, n, H, 1, 1]
                beta = gb[..., H:, None, None]
                w2 = out[..., :H, None, None]
                b2 = out[..., H, None, None]  # [B, n, 1, 1]
            h = torch.relu(feats.unsqueeze(1) * (1.0 + gamma) + beta)  # [B, n, H, Fw, T]
            return (h * w2).sum(2) + b2
        out = self.head_out(cond)
        K = self.cfg.feat_channels
        if per_frame:
            w = out[..., :K].permute(0, 1, 3, 2)  # [B, n, K, T]
            return torch.einsum("bkft,bnkt->bnft", feats, w) + out[..., K].unsqueeze(2)
        return torch.einsum("bkft,bnk->bnft", feats, out[..., :K]) + out[..., K, None, None]

    def forward(self, mag_w: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Training forward: warped mixture magnitudes [B, Fw, T], cond [B, n, D] -> logits."""
        return self.mask_logits(self.features(mag_w), cond)

    # -- inference -------------------------------------------------------------------------
    @torch.no_grad()
    def separate(self, wave: torch.Tensor, cond: torch.Tensor, normalise: bool = True) -> torch.Tensor:
        """Separate ``n`` sources from one short mixture in one pass.

        wave [B, N]; cond [B, n, D] or [B, n, T, D] (T = N // hop + 1 STFT frames).
        Returns [B, n, N]. With ``normalise`` the n masks are scaled so that they never sum
        to more than 1 in a bin (the stems then partition the mixture; what is left is the
        residual no cluster claimed).
        """
        X = self.stft(wave)
        feats = self.features(self.warp(X.abs()))
        masks = torch.sigmoid(self.mask_logits(feats, cond.to(feats.dtype)))
        return self.apply_masks(X, masks, wave.shape[-1], normalise)

    def apply_masks(self, X: torch.Tensor, masks_w: torch.Tensor, length: int,
                    normalise: bool = True) -> torch.Tensor:
        """X [B, L, T] complex, masks_w [B, n, Fw, T] in 0..1 -> waves [B, n, length]."""
        M = self.unwarp(masks_w).clamp(0.0, 1.0)
        if normalise and M.shape[1] > 1:
            M = M / M.sum(1, keepdim=True).clamp_min(1.0)
        B, n = M.shape[:2]
        Y = M * X.unsqueeze(1)
        return self.istft(Y.reshape(B * n, *Y.shape[2:]), length).reshape(B, n, length)

    def frames_of(self, n_samples: int) -> int:
        return n_samples // self.cfg.hop_length + 1


__all__ = ["Separator", "SeparatorConfig", "UNet", "attend", "attention_maps", "warp_matrices", "warp_positions"]
