"""torchrun / DistributedDataParallel plumbing (a no-op in a single process).

What lives here (see docs/distributed.md):

* joining the process group torchrun set up (:func:`init`; NCCL on GPUs, gloo on CPUs) and
  the small collectives the trainer needs (:func:`barrier`, :func:`all_reduce_mean`,
  :func:`broadcast_flag`, :func:`batch_sizes`, :func:`merge_dicts`);
* the curriculum-aware distributed sampling: every rank draws the same global batch of clip
  indices for a step (seeded by run seed, stage and epoch), and takes its own contiguous share
  of it (:func:`rank_bounds`, :func:`rank_batches`, :class:`RankBatchSampler`), so that all
  ranks are in the same stage with the same k and the union of the ranks' batches is exactly
  the single-process batch;
* the DataLoader path (:class:`WorkerBatches`): clips decoded in worker processes, a clip that
  fails to decode replaced by another one and reported back (never a crash);
* batch-norm synchronisation (:func:`sync_batchnorm`): ``torch.nn.SyncBatchNorm`` on GPUs, and
  :class:`GlobalBatchNorm` on CPUs, where torch's SyncBatchNorm refuses to run (torch 2.11:
  "SyncBatchNorm expected input tensor to be on GPU").
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn


@dataclass
class DistInfo:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistInfo:
    return DistInfo(int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")),
                    int(os.environ.get("LOCAL_RANK", "0")))


def init(device: str) -> DistInfo:
    """Join the process group torchrun set up (NCCL on GPUs, gloo on CPUs)."""
    info = from_env()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def active(info: DistInfo) -> bool:
    return info.enabled and dist.is_initialized()


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier(info: DistInfo) -> None:
    if active(info):
        dist.barrier()


def all_reduce_mean(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if active(info):
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= info.world_size
    return x


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """Rank 0's decision (e.g. 'time budget spent') for every rank."""
    if not active(info):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_comm_device())
    dist.broadcast(t, 0)
    return bool(t.item() > 0.5)


def batch_sizes(n: int, info: DistInfo) -> list[int]:
    """Every rank's local batch size (rank order). A step runs only when none is 0."""
    if not active(info):
        return [int(n)]
    t = torch.tensor([int(n)], dtype=torch.int64, device=_comm_device())
    out = [torch.zeros_like(t) for _ in range(info.world_size)]
    dist.all_gather(out, t)
    return [int(x.item()) for x in out]


def merge_dicts(d: dict, info: DistInfo) -> dict:
    """The union of every rank's dict (e.g. the clips each rank failed to decode)."""
    if not active(info):
        return dict(d)
    parts: list[Any] = [None] * info.world_size
    dist.all_gather_object(parts, dict(d))
    out: dict = {}
    for p in parts:
        out.update(p or {})
    return out


def check_same(value: Any, info: DistInfo, what: str) -> None:
    """Raise DataError on every rank unless every rank holds the same ``value`` (a collective).

    E.g. the resume point read from the run folder: a node that does not see the folder rank 0
    writes would otherwise start elsewhere and hang the job at its first mismatched collective.
    """
    if not active(info):
        return
    parts: list[Any] = [None] * info.world_size
    dist.all_gather_object(parts, value)
    bad = [r for r, v in enumerate(parts) if v != parts[0]]
    if bad:
        from ..errors import DataError

        raise DataError(f"rank {bad[0]} sees another {what} than rank 0 ({parts[bad[0]]!r} vs {parts[0]!r}); "
                        "every node must see the same run folder and clips (a shared filesystem)")


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host`` (for MASTER_PORT / --rdzv-endpoint in tests)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# -- curriculum-aware distributed sampling ----------------------------------------------------


def global_batch(batch_clips: int, world_size: int) -> int:
    """Clips per step over all ranks: ``batch_clips``, raised to one clip per rank if smaller."""
    return max(int(batch_clips), int(world_size), 1)


def rank_bounds(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """This rank's contiguous share [a, b) of a global batch of n (sizes differ by at most 1)."""
    base, extra = divmod(int(n), int(world_size))
    a = rank * base + min(rank, extra)
    return a, a + base + (1 if rank < extra else 0)


def step_order(pool: Sequence[int] | np.ndarray, steps: int, batch: int, seed: int, stage_key: int,
               epoch: int) -> np.ndarray:
    """The global clip indices of every step of an epoch: int array [steps, batch].

    Concatenated random permutations of ``pool`` (the usable clip indices), seeded by
    (seed, stage, epoch) only: identical on every rank and for any number of ranks.
    """
    pool = np.asarray(pool, dtype=np.int64)
    if len(pool) == 0:
        return np.zeros((steps, 0), dtype=np.int64)
    rng = np.random.default_rng([int(seed), int(stage_key), int(epoch)])
    reps = math.ceil(steps * batch / len(pool)) + 1
    order = np.concatenate([pool[rng.permutation(len(pool))] for _ in range(reps)])
    return order[:steps * batch].reshape(steps, batch)


def rank_batches(pool, steps: int, batch_clips: int, seed: int, stage_key: int, epoch: int,
                 info: DistInfo) -> Iterator[np.ndarray]:
    """This rank's clip indices for each step of the epoch (see :func:`step_order`)."""
    G = global_batch(batch_clips, info.world_size)
    a, b = rank_bounds(G, info.world_size, info.rank)
    for chunk in step_order(pool, steps, G, seed, stage_key, epoch):
        yield chunk[a:b]


class RankBatchSampler(torch.utils.data.Sampler):
    """A DataLoader batch sampler yielding this rank's ``(clip index, epoch)`` pairs per step.

    The epoch travels with the index because persistent workers hold their own copy of the
    dataset (``set_epoch`` in the main process would not reach them).
    """

    def __init__(self, n: int, batch_clips: int, seed: int, stage_key: int, info: DistInfo):
        self.n, self.batch_clips, self.seed, self.stage_key, self.info = n, batch_clips, seed, stage_key, info
        self.epoch, self.steps = 0, 0

    def set_epoch(self, epoch: int, steps: int) -> None:
        self.epoch, self.steps = int(epoch), int(steps)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for mine in rank_batches(np.arange(self.n), self.steps, self.batch_clips, self.seed,
                                 self.stage_key, self.epoch, self.info):
            yield [(int(i), self.epoch) for i in mine]


class _LoaderItems(torch.utils.data.Dataset):
    """Worker-side view of a ClipWindows: item ``(i, epoch)``; a clip that fails to decode is
    replaced by another (deterministic) one and reported in ``_failed``."""

    def __init__(self, ds, seed: int, tries: int = 8):
        self.ds, self.seed, self.tries = ds, seed, tries

    def __getstate__(self):  # for spawn/forkserver workers: no lock, an empty clip cache
        import copy

        ds = copy.copy(self.ds)
        ds.__dict__ = {k: v for k, v in ds.__dict__.items() if k != "_lock"}
        if hasattr(ds, "_cache"):
            ds._cache, ds._cached = type(ds._cache)(), 0
        return {"ds": ds, "seed": self.seed, "tries": self.tries}

    def __setstate__(self, state):
        import threading

        self.__dict__.update(state)
        if not hasattr(self.ds, "_lock"):
            self.ds._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key):
        i, epoch = key
        self.ds.set_epoch(epoch)
        failed: dict[str, str] = {}
        j = i
        for t in range(self.tries + 1):
            item = self.ds[j]
            if item is not None:
                item["_failed"] = failed
                return item
            path = self.ds.paths[j]
            failed[str(path)] = self.ds.failures.get(path, "could not be decoded")
            j = int(np.random.default_rng([self.seed, epoch, i, t + 1]).integers(len(self.ds)))
        return {"_failed": failed}


def collate_reporting(items):
    """collate_windows + the clips that failed to decode (``batch["failed"]``: path -> reason).

    Returns ``{"failed": {...}}`` without ``frames`` when no clip of the batch could be decoded.
    """
    from ..data.clips import collate_windows

    failed: dict[str, str] = {}
    good = []
    for it in items:
        failed.update(it.pop("_failed", {}) or {})
        if "frames" in it:
            good.append(it)
    batch = collate_windows(good) or {}
    batch["failed"] = failed
    return batch


def _worker_context():
    """fork where there is one (Linux): workers start at once, without importing torch again
    (the default under a spawned parent or from Python 3.14 is spawn/forkserver)."""
    import multiprocessing as mp
    import sys

    if sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods():
        return mp.get_context("fork")
    return None


def _worker_init(_):
    torch.set_num_threads(1)


class WorkerBatches:
    """Batches of one stage decoded in DataLoader worker processes (persistent over epochs)."""

    def __init__(self, ds, batch_clips: int, seed: int, stage_key: int, info: DistInfo,
                 num_workers: int, pin_memory: bool = False, prefetch_factor: int = 2):
        self.ds = ds
        self.sampler = RankBatchSampler(len(ds), batch_clips, seed, stage_key, info)
        self.loader = torch.utils.data.DataLoader(
            _LoaderItems(ds, seed * 7919 + stage_key), batch_sampler=self.sampler,
            num_workers=num_workers, collate_fn=collate_reporting, persistent_workers=True,
            pin_memory=pin_memory, prefetch_factor=prefetch_factor, worker_init_fn=_worker_init,
            multiprocessing_context=_worker_context())

    def __len__(self) -> int:
        return len(self.ds)

    def batches(self, epoch: int, steps: int):
        self.sampler.set_epoch(epoch, steps)
        yield from self.loader

    def close(self) -> None:
        it = getattr(self.loader, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        self.loader._iterator = None


# -- batch-norm synchronisation -----------------------------------------------------------------


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the global batch of all ranks, for CPUs (gloo).

    torch.nn.SyncBatchNorm runs on GPUs only; this does the same with an autograd-aware
    all_reduce of per-channel sums (float64, so E[x^2] - E[x]^2 loses nothing) and is plain
    batch norm outside training or outside a process group. Same parameters and buffers as
    BatchNorm{1,2,3}d, so state dicts load either way.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        self._check_input_dim(x)
        C = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        xd = x.double()
        local = torch.cat([xd.sum(dims), (xd * xd).sum(dims),
                           xd.new_full((1,), float(x.numel() // max(C, 1)))])
        tot = all_reduce(local)  # SUM over ranks, gradient flows back to every rank
        N = tot[-1]
        mean = tot[:C] / N
        var = (tot[C:2 * C] / N - mean * mean).clamp_min(0.0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                unbiased = var * (N / (N - 1).clamp_min(1.0))
                self.running_mean.mul_(1 - m).add_(mean.to(self.running_mean.dtype), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
        shape = [1, C] + [1] * (x.dim() - 2)
        inv = torch.rsqrt(var + self.eps).to(x.dtype).view(shape)
        y = (x - mean.to(x.dtype).view(shape)) * inv
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def _convert_global_bn(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
            module, (GlobalBatchNorm, nn.SyncBatchNorm)):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                out.weight = module.weight
                out.bias = module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.training = module.training
    for name, child in module.named_children():
        out.add_module(name, _convert_global_bn(child))
    return out


def sync_batchnorm(model: nn.Module, device: torch.device | str) -> nn.Module:
    """Batch norm over the global batch under DDP: SyncBatchNorm on GPUs, GlobalBatchNorm on CPUs.

    The module tree is changed in place (the top module is returned, the same object when
    it is not itself a batch norm); parameter and buffer names are unchanged.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert_global_bn(model)


__all__ = ["DistInfo", "from_env", "init", "barrier", "all_reduce_mean", "broadcast_flag", "batch_sizes",
           "merge_dicts", "check_same", "cleanup", "free_port", "global_batch", "rank_bounds", "step_order",
           "rank_batches", "RankBatchSampler", "WorkerBatches", "collate_reporting", "GlobalBatchNorm",
           "sync_batchnorm"]
