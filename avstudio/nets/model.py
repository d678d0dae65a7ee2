"""The clustering-alignment model (Hu et al., IEEE TMM 2023) and its scene-level ablation.

Pieces, each a small tensor-in/tensor-out function or module:

* :class:`VisualEncoder` — stride-4 conv net with replicate padding: a frame of
  ``frame_size`` px becomes a ``D x frame_size/4 x frame_size/4`` map of unit vectors
  (fine maps matter for small objects and replicate padding removes the border shortcut,
  docs/method.md, "the shortcut").
* :class:`AudioEncoder` — log-mel front end + conv net: ``D x f x t`` unit vectors, plus
  an energy weight per position so that silence does not pull cluster centers.
* soft k-means in channel space per modality (:mod:`avstudio.nets.kmeans`): k audio
  centers (sound sources), k + 1 visual centers (objects + background).
* structural alignment: the exact optimal matching between audio and visual centers;
  the scene similarity is the mean cosine of the matched pairs ("sound-source level"),
  plus a position term (each audio center to its best-matching position), versus the
  pooled-feature "scene level" variant kept for the ablation only.
* localization: the heatmap of sound j is the cosine of its audio center with every
  visual position, calibrated as exp((cos - max) / T) (1 at the best position, T picked on
  the validation split); the assignment mask of the aligned visual center and
  of an unaligned one (the paper's control) come with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchaudio

from .config import AVConfig
from .kmeans import best_matching, normalize, soft_kmeans


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, padding_mode="replicate", bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _Res(nn.Module):
    """Residual block: two 3x3 convs (replicate padding, batch norm), identity or 1x1 skip."""

    def __init__(self, cin: int, cout: int, dilation: int = 1):
        super().__init__()
        pad = dilation
        self.c1 = nn.Conv2d(cin, cout, 3, padding=pad, dilation=dilation, padding_mode="replicate", bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=pad, dilation=dilation, padding_mode="replicate", bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = nn.Identity() if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False),
                                                                   nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)), inplace=True)
        return F.relu(self.b2(self.c2(y)) + self.skip(x), inplace=True)


def stack_input(frames: torch.Tensor, stack: int) -> torch.Tensor:
    """The visual encoder's input from frames: uint8/float 0..255 ``[B, 3, H, W]`` (a still
    frame) or ``[B, F, 3, H, W]`` (a stack, F = ``stack``) -> float ``[B, 3 + stack - 1, H, W]``:
    the centre frame's RGB (-0.5..0.5) and the grey-level differences of consecutive frames
    (x4). A still frame given to a stacking model has no motion: its differences are zero."""
    if frames.dim() == 4:
        x = frames.float() * (1.0 / 255.0) - 0.5
        if stack <= 1:
            return x
        return torch.cat([x, x.new_zeros(x.shape[0], stack - 1, *x.shape[2:])], 1)
    B, Fn = frames.shape[:2]
    if Fn != stack:
        raise ValueError(f"the model stacks {stack} frames, got {Fn}")
    x = frames.float() * (1.0 / 255.0)
    centre = x[:, Fn // 2] - 0.5
    if Fn == 1:
        return centre
    grey = 0.299 * x[:, :, 0] + 0.587 * x[:, :, 1] + 0.114 * x[:, :, 2]  # [B, F, H, W]
    return torch.cat([centre, 4.0 * (grey[:, 1:] - grey[:, :-1])], 1)


class VisualEncoder(nn.Module):
    def __init__(self, cfg: AVConfig):
        super().__init__()
        self.arch = cfg.vis_arch
        self.stack = max(1, int(cfg.stack))
        cin = 3 + self.stack - 1
        chans = list(cfg.vis_channels)
        if self.arch == "res":
            w2, w4, w8, w8b = (chans + chans[-1:] * 4)[:4]
            self.stem = _conv(cin, w2, stride=2)  # /2
            self.s4 = nn.Sequential(_conv(w2, w4, stride=2), _Res(w4, w4))  # /4
            self.s8 = nn.Sequential(_conv(w4, w8, stride=2), _Res(w8, w8), _Res(w8, w8b, dilation=2))  # /8
            self.lat = nn.Conv2d(w8b, w4, 1)
            self.fuse = _conv(2 * w4, max(w4, cfg.embed_dim))
            self.proj = nn.Conv2d(max(w4, cfg.embed_dim), cfg.embed_dim, 1)
        elif self.arch == "plain":
            layers = []
            for i, c in enumerate(chans):
                layers.append(_conv(cin, c, stride=2 if i < 2 else 1))
                cin = c
            self.body = nn.Sequential(*layers)
            self.proj = nn.Conv2d(cin, cfg.embed_dim, 1)
        else:
            raise ValueError(f"unknown visual architecture {self.arch!r} (plain or res)")

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: uint8 or float (0..255), [B, 3, H, W] or a stack [B, F, 3, H, W]
        -> unit vectors [B, D, H/4, W/4]."""
        # channels-last runs the CPU (oneDNN) convolutions about a third faster
        x = stack_input(frames, self.stack).contiguous(memory_format=torch.channels_last)
        if self.arch == "res":
            f4 = self.s4(self.stem(x))
            f8 = self.lat(self.s8(f4))
            up = F.interpolate(f8, size=f4.shape[-2:], mode="bilinear", align_corners=False)
            y = self.proj(self.fuse(torch.cat([f4, up], 1)))
        else:
            y = self.proj(self.body(x))
        return normalize(y, dim=1).contiguous()


class LogMel(nn.Module):
    def __init__(self, cfg: AVConfig):
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length,
            hop_length=cfg.hop_length, n_mels=cfg.n_mels, power=2.0, center=True,
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """wave [B, S] -> power mel [B, 1, n_mels, T]."""
        return self.mel(wave.float()).unsqueeze(1)


class AudioEncoder(nn.Module):
    def __init__(self, cfg: AVConfig):
        super().__init__()
        self.logmel = LogMel(cfg)
        self.norm = nn.BatchNorm2d(1)
        self.time_channel = bool(cfg.audio_time_channel)
        chans = list(cfg.aud_channels)
        layers = []
        cin = 2 if self.time_channel else 1
        for i, c in enumerate(chans):
            layers.append(_conv(cin, c, stride=2 if i < 2 else 1))
            cin = c
        self.body = nn.Sequential(*layers)
        self.proj = nn.Conv2d(cin, cfg.embed_dim, 1)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """wave [B, S] -> (unit vectors [B, D, f, t], position weights [B, f*t] in 0..1)."""
        power = self.logmel(wave)
        x = self.norm(torch.log(power + 1e-8))
        if self.time_channel:  # -1 at the window's start .. 1 at its end
            t = torch.linspace(-1.0, 1.0, x.shape[-1], device=x.device, dtype=x.dtype)
            x = torch.cat([x, t.expand(x.shape[0], 1, x.shape[2], -1)], 1)
        feats = normalize(self.proj(self.body(x)), dim=1)
        e = F.adaptive_avg_pool2d(power, feats.shape[-2:]).flatten(1)  # [B, f*t]
        db = 10.0 * torch.log10(e + 1e-10)
        w = (1.0 + (db - db.amax(1, keepdim=True)) / 60.0).clamp(0.0, 1.0)
        silent = db.amax(1, keepdim=True) < -90.0  # digital silence: uniform weights
        w = torch.where(silent, torch.ones_like(w), w)
        return feats, w


@dataclass
class Localization:
    heatmaps: torch.Tensor  # [B, k, h, w] in 0..1: audio center vs every position (calibrated)
    aligned: torch.Tensor  # [B, k, h, w]: assignment mask of the aligned visual center
    unaligned: torch.Tensor  # [B, h, w]: mask of a visual center aligned with no sound
    audio_centers: torch.Tensor  # [B, k, D]
    visual_centers: torch.Tensor  # [B, K_v, D]
    match: torch.Tensor  # [B, k] index of the visual center aligned with each sound


class AVModel(nn.Module):
    """Audio-visual clustering-alignment model; the same weights serve any k."""

    def __init__(self, cfg: AVConfig | None = None):
        super().__init__()
        self.cfg = cfg or AVConfig()
        self.visual = VisualEncoder(self.cfg)
        self.audio = AudioEncoder(self.cfg)

    # -- clustering ---------------------------------------------------------------------
    def audio_centers(self, feats: torch.Tensor, weights: torch.Tensor, k: int):
        x = feats.flatten(2).transpose(1, 2)  # [B, N, D]
        c, a = soft_kmeans(x, k, self.cfg.kmeans_iters, self.cfg.kmeans_beta, weights=weights)
        return normalize(c), a

    def visual_centers(self, feats: torch.Tensor, k: int):
        x = feats.flatten(2).transpose(1, 2)
        c, a = soft_kmeans(x, k + self.cfg.visual_extra_clusters, self.cfg.kmeans_iters,
                           self.cfg.kmeans_beta)
        return normalize(c), a

    # -- similarities ---------------------------------------------------------------------
    def pair_similarity(self, vis: torch.Tensor, aud: torch.Tensor, aud_w: torch.Tensor, k: int,
                        alignment: str | None = None, pos_weight: float = 0.5) -> torch.Tensor:
        """Similarity of every audio clip i with every frame j: [B_audio, B_frames]."""
        alignment = alignment or self.cfg.alignment
        if alignment == "scene":
            a = normalize((aud.flatten(2) * aud_w.unsqueeze(1)).sum(-1))  # [B, D]
            v = normalize(vis.flatten(2).mean(-1))
            return a @ v.t()
        A, _ = self.audio_centers(aud, aud_w, k)  # [Ba, k, D]
        V, _ = self.visual_centers(vis, k)  # [Bv, Kv, D]
        return self.center_similarity(A, V, vis, pos_weight)

    def center_similarity(self, A: torch.Tensor, V: torch.Tensor, vis: torch.Tensor,
                          pos_weight: float = 0.5) -> torch.Tensor:
        """The source-level score from the clusters: audio centers A [Ba, k, D], visual centers
        V [Bv, Kv, D] and visual maps vis [Bv, D, h, w] -> [Ba, Bv] (the gathered DDP loss,
        avstudio/train/gather.py, calls it with centers from every rank)."""
        sim = torch.einsum("ikd,jmd->ijkm", A, V)
        center_score, _ = best_matching(sim)  # [Ba, Bv]
        if pos_weight <= 0:
            return center_score
        pos = torch.einsum("ikd,jdn->ijkn", A, vis.flatten(2))  # [Ba, Bv, k, N]
        tau = 0.05
        n = pos.shape[-1]
        # a soft maximum over positions (logsumexp at temperature tau); the constant
        # tau*log(N)/2 keeps the score on the cosine scale of the center term
        soft_max = tau * torch.logsumexp(pos / tau, dim=-1) - 0.5 * tau * math.log(n)
        pos_score = soft_max.mean(-1)
        return (1.0 - pos_weight) * center_score + pos_weight * pos_score

    def background_score(self, A: torch.Tensor, vis: torch.Tensor, share: float = 0.5,
                         sharpness: float = 0.03) -> torch.Tensor:
        """How similar each sound is to the background of its own frame: for audio centers A
        [B, k, D] and their frames' maps vis [B, D, h, w], the mean cosine over the positions in
        the bottom ``share`` by similarity (a soft mask around that quantile) -> [B]."""
        cos = torch.einsum("bkd,bdn->bkn", A, vis.flatten(2))  # [B, k, N]
        thr = torch.quantile(cos.detach(), share, dim=-1, keepdim=True)
        m = 1.0 - torch.sigmoid((cos - thr) / sharpness)
        return ((m * cos).sum(-1) / m.sum(-1).clamp_min(1e-6)).mean(-1)

    def contrastive_loss(self, frames: torch.Tensor, wave: torch.Tensor, k: int,
                         alignment: str | None = None, pos_weight: float = 0.5):
        """InfoNCE over a batch of matched (frame, audio window) pairs, both directions.

        Rows of the batch that come from the same clip at other moments are negatives too
        (only audio-visual synchrony tells them apart). Returns (loss, accuracy): accuracy
        is the share of audio windows whose best-scoring frame is their own.
        """
        vis = self.visual(frames)
        aud, w = self.audio(wave)
        sim = self.pair_similarity(vis, aud, w, k, alignment, pos_weight)
        logits = sim / self.cfg.temperature
        target = torch.arange(sim.shape[0], device=sim.device)
        rows = logits
        if self.cfg.bg_negatives and (alignment or self.cfg.alignment) != "scene":
            A, _ = self.audio_centers(aud, w, k)
            bg = self.background_score(A, vis) / self.cfg.temperature
            rows = torch.cat([logits, bg[:, None]], 1)  # the own frame's background: one more negative
        loss = 0.5 * (F.cross_entropy(rows, target) + F.cross_entropy(logits.t(), target))
        acc = (logits.argmax(1) == target).float().mean()
        return loss, acc

    def forward(self, frames: torch.Tensor, wave: torch.Tensor, k: int, alignment: str | None = None,
                pos_weight: float = 0.5):
        """Training forward (so DistributedDataParallel sees it): (loss, accuracy)."""
        return self.contrastive_loss(frames, wave, k, alignment, pos_weight)

    # -- localization -----------------------------------------------------------------------
    @torch.no_grad()
    def localize_features(self, vis: torch.Tensor, aud: torch.Tensor, aud_w: torch.Tensor,
                          k: int, audio_centers: torch.Tensor | None = None) -> Localization:
        B, D, h, w = vis.shape
        if audio_centers is None:
            A, _ = self.audio_centers(aud, aud_w, k)
        else:
            A = audio_centers
        V, assign = self.visual_centers(vis, k)  # assign [B, N, Kv]
        sim = torch.einsum("bkd,bmd->bkm", A, V)
        _, match = best_matching(sim)  # [B, k]
        cos = torch.einsum("bkd,bdn->bkn", A, vis.flatten(2))
        heat = torch.exp((cos - cos.amax(-1, keepdim=True)) / self.cfg.heat_temperature).reshape(B, k, h, w)
        amap = assign.transpose(1, 2).reshape(B, -1, h, w)  # [B, Kv, h, w]
        aligned = torch.gather(amap, 1, match[:, :, None, None].expand(B, k, h, w))
        Kv = amap.shape[1]
        used = torch.zeros(B, Kv, dtype=torch.bool, device=vis.device)
        used.scatter_(1, match, True)
        # the unaligned control: the visual center aligned with no sound that is most
        # similar to the sounds (the "best wrong answer", so the control is not a straw man)
        best_sim = sim.max(1).values.masked_fill(used, -9.0)
        un = best_sim.argmax(1)
        unaligned = amap[torch.arange(B), un]
        return Localization(heat, aligned, unaligned, A, V, match)

    @torch.no_grad()
    def localize(self, frames: torch.Tensor, wave: torch.Tensor, k: int) -> Localization:
        vis = self.visual(frames)
        aud, w = self.audio(wave)
        return self.localize_features(vis, aud, w, k)

    @torch.no_grad()
    def audio_embedding(self, wave: torch.Tensor) -> torch.Tensor:
        """One unit vector per audio window (the k = 1 center): [B, D]."""
        aud, w = self.audio(wave)
        A, _ = self.audio_centers(aud, w, 1)
        return A[:, 0]
