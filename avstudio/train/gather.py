"""Contrastive negatives from the whole global batch under DDP.

Without gathering, each rank's InfoNCE only sees the pairs of its own share of the batch
(B/N negatives per row instead of B): large-batch contrastive training then silently trains
with small batches. Here every rank all-gathers the encoder outputs of all ranks **with
gradient** (``torch.distributed.nn.functional.all_gather``, whose backward sends each rank
the gradient of its own rows) and scores

* its own audio windows against every frame of the global batch (rows of the B x B matrix),
* every audio window against its own frames (columns),

with the model's own scoring (:meth:`AVModel.center_similarity`, which
:meth:`AVModel.pair_similarity` uses in one process, so the score is exactly the same).
What is gathered, in one collective per step: each sample's audio centers ``[k, D]``, visual
centers ``[k+1, D]`` (soft k-means runs once, on the rank that owns the sample) and visual
feature map ``[D, h, w]`` (the position term scores audio centers against every position).
The scene-level ablation gathers the audio and visual maps instead. The local loss is scaled so
that DDP's gradient averaging yields the gradient of the global-batch loss: with batch norm
synchronised too (:func:`avstudio.train.distributed.sync_batchnorm`), one step of N ranks x
B/N equals one single-process step of batch B up to float rounding (tests/train/test_distributed.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_gather_rows(x: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Every rank's ``x`` (``sizes[r]`` rows on rank r) concatenated in rank order, with gradient.

    Rows are padded to the largest share for the collective and trimmed afterwards, so the
    ranks' batches may differ in size (a clip that failed to decode).
    """
    from torch.distributed.nn.functional import all_gather

    m = max(sizes)
    if x.shape[0] < m:
        x = torch.cat([x, x.new_zeros((m - x.shape[0],) + tuple(x.shape[1:]))])
    parts = all_gather(x.contiguous())
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])


def gathered_contrastive_loss(model, frames: torch.Tensor, wave: torch.Tensor, k: int,
                              alignment: Optional[str] = None, pos_weight: float = 0.5,
                              sizes: Optional[Sequence[int]] = None):
    """(loss, accuracy) of this rank's share with negatives from every rank.

    ``sizes``: every rank's local batch size (``distributed.batch_sizes``), exchanged here
    when not given. Outside a process group this is ``model.contrastive_loss``. The returned
    loss is ``world_size x`` this rank's part of the global loss (so that DDP's averaging of
    gradients gives the gradient of the global loss); the mean of it over ranks is the global
    loss. Accuracy: the share of this rank's audio windows whose best frame, among all the
    frames of the global batch, is their own.
    """
    if not _distributed():
        return model.contrastive_loss(frames, wave, k, alignment, pos_weight)
    W, r = dist.get_world_size(), dist.get_rank()
    if sizes is None:
        t = torch.tensor([frames.shape[0]], dtype=torch.int64,
                         device=frames.device if dist.get_backend() == "nccl" else "cpu")
        out = [torch.zeros_like(t) for _ in range(W)]
        dist.all_gather(out, t)
        sizes = [int(x.item()) for x in out]
    sizes = [int(s) for s in sizes]
    b, G, off = sizes[r], sum(sizes), sum(sizes[:r])
    if frames.shape[0] != b:
        raise ValueError(f"rank {r}: batch of {frames.shape[0]} pairs but sizes say {b}")
    vis = model.visual(frames)
    aud, w = model.audio(wave)
    if (alignment or model.cfg.alignment) == "scene":  # the ablation: gather the maps themselves
        nv, na = vis[0].numel(), aud[0].numel()
        flat = all_gather_rows(torch.cat([vis.flatten(1), aud.flatten(1), w.to(vis.dtype)], 1), sizes)
        vis_all = flat[:, :nv].reshape((G,) + tuple(vis.shape[1:]))
        aud_all = flat[:, nv:nv + na].reshape((G,) + tuple(aud.shape[1:]))
        w_all = flat[:, nv + na:].to(w.dtype)
        rows = model.pair_similarity(vis_all, aud, w, k, alignment, pos_weight)  # [b, G]
        cols = model.pair_similarity(vis, aud_all, w_all, k, alignment, pos_weight)  # [G, b]
    else:
        # soft k-means once, on this rank's maps; one collective carries every rank's audio
        # centers, visual centers and visual maps (the position term needs the maps)
        A, _ = model.audio_centers(aud, w, k)  # [b, k, D]
        V, _ = model.visual_centers(vis, k)  # [b, Kv, D]
        na, nv = A[0].numel(), V[0].numel()
        flat = all_gather_rows(torch.cat([A.flatten(1), V.flatten(1), vis.flatten(1)], 1), sizes)
        A_all = flat[:, :na].reshape((G,) + tuple(A.shape[1:]))
        V_all = flat[:, na:na + nv].reshape((G,) + tuple(V.shape[1:]))
        vis_all = flat[:, na + nv:].reshape((G,) + tuple(vis.shape[1:]))
        rows = model.center_similarity(A, V_all, vis_all, pos_weight)  # [b, G]: own audio, all frames
        cols = model.center_similarity(A_all, V, vis, pos_weight)  # [G, b]: all audio, own frames
    T = model.cfg.temperature
    target = torch.arange(off, off + b, device=rows.device)
    arows = rows
    if getattr(model.cfg, "bg_negatives", False) and (alignment or model.cfg.alignment) != "scene":
        # the own frame's background as one more negative (local: own audio, own frame)
        arows = torch.cat([rows, model.background_score(A, vis)[:, None]], 1)
    la = F.cross_entropy(arows / T, target, reduction="sum")
    lv = F.cross_entropy(cols.t() / T, target, reduction="sum")
    loss = (0.5 * W / G) * (la + lv)
    acc = (rows.argmax(1) == target).float().mean()
    return loss, acc


class GatheredContrastive(nn.Module):
    """Wraps an AVModel so that DistributedDataParallel(…) computes the gathered loss.

    ``forward(frames, wave, k, alignment, pos_weight, sizes)`` -> (loss, accuracy); the
    parameters are the wrapped model's (DDP averages their gradients as usual).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, frames, wave, k: int, alignment: Optional[str] = None, pos_weight: float = 0.5,
                sizes: Optional[Sequence[int]] = None):
        return gathered_contrastive_loss(self.model, frames, wave, k, alignment, pos_weight, sizes)


def gathered_avin_loss(model, frames: torch.Tensor, wave: torch.Tensor,
                       sizes: Optional[Sequence[int]] = None):
    """AVIN's (loss, accuracy) for this rank's share of the global batch, as one process with the
    whole batch would compute it.

    Two collectives per step, both with gradient: every rank's induction vectors and audio
    embeddings (``[D]`` + ``[D]`` per sample: this rank's maps are scored against every induction
    vector, and its induction vectors against every audio window), then every rank's rows of the
    pooled scores ``SP``, ``SN`` (the visual loss's other direction needs whole columns). The
    loss is scaled as :func:`gathered_contrastive_loss`'s (``world_size / G`` x this rank's
    sums), so DDP's averaging of gradients gives the gradient of the global-batch loss.
    """
    if not _distributed():
        return model(frames, wave)
    W, r = dist.get_world_size(), dist.get_rank()
    if sizes is None:
        t = torch.tensor([frames.shape[0]], dtype=torch.int64,
                         device=frames.device if dist.get_backend() == "nccl" else "cpu")
        out = [torch.zeros_like(t) for _ in range(W)]
        dist.all_gather(out, t)
        sizes = [int(x.item()) for x in out]
    sizes = [int(s) for s in sizes]
    b, G, off = sizes[r], sum(sizes), sum(sizes[:r])
    if frames.shape[0] != b:
        raise ValueError(f"rank {r}: batch of {frames.shape[0]} pairs but sizes say {b}")
    fv = model.visual_map(frames)
    fa = model.audio_embedding(wave)
    parts = model.objective(fv, fa, gather=lambda x: all_gather_rows(x, sizes), offset=off)
    loss = (W / G) * (parts["visual"] + parts["alignment"])
    return loss, parts["acc"]


class GatheredAVIN(nn.Module):
    """Wraps an AVINModel so that DistributedDataParallel(…) computes the gathered AVIN loss;
    the same call as :class:`GatheredContrastive` (``k``, ``alignment`` and ``pos_weight`` are
    the clustering model's and ignored)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, frames, wave, k: int = 1, alignment: Optional[str] = None, pos_weight: float = 0.5,
                sizes: Optional[Sequence[int]] = None):
        return gathered_avin_loss(self.model, frames, wave, sizes)


__all__ = ["all_gather_rows", "gathered_contrastive_loss", "GatheredContrastive", "gathered_avin_loss",
           "GatheredAVIN"]
