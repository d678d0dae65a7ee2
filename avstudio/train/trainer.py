"""The curriculum trainer of the clustering-alignment model and its source counter, and of AVIN.

Clips are graded by their number of sound sources (from the manifest; predicted by the
counter of ``init`` where a count is missing). Stages C1, C2, ... run in order, k set to
the stage's count, each starting from the previous one's weights. Then the counter is
fitted (Poisson regression) on every labelled clip with the encoders frozen.

A run folder holds::

    run.json                  settings, data summary, command, status
    checkpoint.safetensors    model + optimizer after the last finished epoch (+ .json)
    stages/C<k>.safetensors   the model at the end of each stage (+ .json card)
    model.safetensors         the final model (+ model.json, its card)
    history.jsonl             one line per epoch: stage, epoch, loss, acc, val metrics, time

``method="avin"`` trains the Induction Network (:mod:`avstudio.nets.avin`) with the same data,
stages, batches, progress, checkpoints, resume and torchrun support; it has no clusters (the
stage's k is not used) and no counter.

A model fine-tuned from one with a separator keeps that separator, unchanged, in its stage and
final model files (their card names where it came from): fine-tuning never takes away the
stems and the sound of a pixel.

Running the same command again resumes after the last finished epoch (at most one epoch
is lost to Ctrl-C or kill -9); a finished run is reported and left as it is. Progress goes
to a plain callback (CLI: tqdm, GUI: Qt signals). Under torchrun the same code trains
with DistributedDataParallel; rank 0 alone writes files.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..analysis.localize import estimate_count
from ..data.clips import ClipWindows, augment_frames, collate_windows
from ..data.lazy_manifest import count_values, is_lazy, labelled_rows, present_counts, rows_with_count
from ..errors import Cancelled, CheckpointError, DataError
from ..nets.avin import AVINConfig, AVINModel, load_resnet18_weights
from ..nets.checkpoint import component_tensors, load_model, save_tensors
from ..nets.config import AVConfig, CounterConfig
from ..nets.counter import Counter, rate_to_count
from ..nets.model import AVModel
from ..progress import ProgressFn, emit
from . import distributed as D
from .gather import GatheredAVIN, GatheredContrastive
from .resume import finished_run, load_checkpoint, trim_history

METHODS = ("hsa", "avin")


@dataclass
class TrainConfig:
    stages: Optional[list[int]] = None  # None: every count present in the data (>= 1)
    epochs: Any = 8  # per stage: an int, or a list with one number per stage
    batch_clips: int = 16  # clips per step; each gives `moments` pairs
    moments: int = 2  # moments per clip in a batch (same-clip negatives)
    clip_repeats: int = 4  # samples drawn per clip per epoch
    lr: float = 1e-3
    weight_decay: float = 1e-4
    pos_weight: float = 0.5
    alignment: str = "source"  # "scene" only for the ablation
    counter_epochs: int = 6
    max_minutes: Optional[float] = None  # time budget shared out over the stages
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 0  # > 0: clips decoded in DataLoader workers (else all decoded once, in memory)
    gather_negatives: bool = True  # under DDP: InfoNCE negatives from the global batch (gather.py)
    augment: bool = True
    threads: Optional[int] = None
    curriculum: bool = True  # False: one "mixed" stage over all clips (the ablation baseline)
    schedule: str = "cosine"  # learning rate within a stage: "cosine" (down to lr/10) or "constant"
    # later stages: each starts at lr * stage_lr ** (stage index) (1.0: every stage restarts at lr)
    stage_lr: float = 1.0
    # later stages: this share of the steps trains on clips of the earlier stages (each such
    # step on one earlier level, with that level's k): replay, against forgetting them
    replay: float = 0.0
    method: str = "hsa"  # "hsa": the clustering-alignment model; "avin": the Induction Network
    visual_weights: Optional[str] = None  # avin + resnet18 trunk: a torchvision-format ResNet-18 file
    visual_init: Optional[str] = None  # avin + conv trunk: start it from this clustering model's visual encoder
    trunk_lr_scale: float = 1.0  # avin: the visual trunk's learning rate = lr x this (the reference: 0.1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Row:
    path: str
    count: Optional[int]


@dataclass
class TrainResult:
    run_dir: Path
    model_path: Path
    history: list[dict[str, Any]]
    resumed: bool = False
    already_done: bool = False
    skipped_clips: dict[str, str] = field(default_factory=dict)


def _opt_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for name, val in st.items():
            t = val if torch.is_tensor(val) else torch.tensor(val)
            tensors[f"opt.{pid}.{name}"] = t
    return tensors, {"param_groups": sd["param_groups"]}


def _load_opt(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        if not key.startswith("opt."):
            continue
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = t
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def set_lr(opt: torch.optim.Optimizer, tcfg: TrainConfig, progress: float, stage_index: int = 0) -> None:
    """The stage's learning rate at ``progress`` (0..1): cosine from its start down to a tenth of
    it, or constant; stage i starts at ``lr * stage_lr ** i``."""
    lr = tcfg.lr * float(tcfg.stage_lr) ** max(0, int(stage_index))
    if tcfg.schedule == "cosine":
        lr = lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0))))
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


def grade_rows(rows: Sequence[Row], init_bundle=None, cfg: AVConfig | None = None,
               progress: ProgressFn | None = None) -> list[Row]:
    """Fill in missing counts with the counter's predictions (clear error if impossible)."""
    if is_lazy(rows) and rows.n_unknown == 0:
        return rows  # a big manifest stays lazy
    unknown = [r for r in rows if r.count is None]
    if not unknown:
        return list(rows)
    if init_bundle is None or init_bundle.counter is None:
        raise DataError(f"{len(unknown)} clip(s) have no source count (e.g. {unknown[0].path}) and "
                        "there is no counter to predict it: label them, or pass --init with a model "
                        "that has a counter")
    out = []
    for i, r in enumerate(rows):
        if r.count is None:
            r = Row(r.path, estimate_count(init_bundle, r.path).count)
        out.append(r)
        emit(progress, "grading", i + 1, len(rows))
    return out


def _trunk_from_clustering_model(avin: AVINModel, path: str) -> dict:
    """Start AVIN's conv trunk from a clustering model's visual encoder (the same layers), the
    way the reference starts from an ImageNet network: a visual trunk trained elsewhere."""
    b = load_model(path)
    if b.av is None:
        raise CheckpointError(f"{path}: --visual-init needs a clustering-alignment model (its visual encoder)")
    if avin.cfg.visual_trunk != "conv":
        raise DataError("--visual-init starts the conv trunk: it does not apply to --visual-trunk resnet18")
    src, dst = b.av.visual.body, avin.visual_trunk.body
    if tuple(b.av.cfg.vis_channels) != tuple(avin.cfg.vis_channels) or b.av.cfg.frame_size != avin.cfg.frame_size:
        raise DataError(f"{path}: its visual encoder (channels {list(b.av.cfg.vis_channels)}, frames "
                        f"{b.av.cfg.frame_size} px) does not match this AVIN's trunk (channels "
                        f"{list(avin.cfg.vis_channels)}, frames {avin.cfg.frame_size} px)")
    dst.load_state_dict(src.state_dict(), strict=True)
    return {"model": str(path), "from": "the clustering model's visual encoder (av.visual.body)",
            "tensors": len(src.state_dict())}


class Trainer:
    def __init__(self, rows: Sequence[Row], run_dir: str | os.PathLike, tcfg: TrainConfig,
                 model_cfg: AVConfig | None = None, init: Optional[str] = None,
                 progress: ProgressFn | None = None, cancel=None,
                 val_fn: Optional[Callable[[AVModel, int], dict[str, float]]] = None,
                 command: Optional[str] = None, data_summary: Optional[dict] = None,
                 objective: Optional[dict] = None):
        self.rows = rows if is_lazy(rows) else list(rows)
        self.run_dir = Path(run_dir)
        self.tcfg = tcfg
        self.init = init
        self.progress = progress
        self.cancel = cancel
        self.val_fn = val_fn
        self.command = command or " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])
        self.data_summary = data_summary or {}
        self.dist = D.init(tcfg.device)
        dev = tcfg.device
        if dev.startswith("cuda") and self.dist.enabled:
            dev = f"cuda:{self.dist.local_rank}"
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise DataError("--device cuda was asked for but no CUDA device is available")
        self.device = torch.device(dev)
        if tcfg.threads:
            torch.set_num_threads(tcfg.threads)
        torch.manual_seed(tcfg.seed)
        if tcfg.method not in METHODS:
            raise DataError(f"unknown method {tcfg.method!r} (one of {', '.join(METHODS)})")
        self.avin = tcfg.method == "avin"
        self.init_bundle = None
        self.visual_init: Optional[dict] = None
        if init:
            self.init_bundle = load_model(init)
            if self.avin and self.init_bundle.avin is None:
                raise CheckpointError(f"{init}: holds no AVIN model to fine-tune"
                                      + (" (it is a clustering-alignment model)" if self.init_bundle.av is not None else ""))
            if not self.avin and self.init_bundle.av is None:
                raise CheckpointError(f"{init}: holds no clustering-alignment model to fine-tune"
                                      + (" (it is an AVIN model: train it with --method avin)"
                                         if self.init_bundle.avin is not None else ""))
            model_cfg = (self.init_bundle.avin if self.avin else self.init_bundle.av).cfg
            if objective and not self.avin:  # a fine-tune may change how it is trained, never the architecture
                from dataclasses import replace

                model_cfg = replace(model_cfg, **objective)
        self.counter = None
        if self.avin:
            self.model_cfg = model_cfg or AVINConfig()
            if not isinstance(self.model_cfg, AVINConfig):
                raise DataError("--method avin needs an AVIN configuration")
            self.model = AVINModel(self.model_cfg)
            if self.init_bundle is not None:
                self.model.load_state_dict(self.init_bundle.avin.state_dict())
            elif tcfg.visual_weights:
                if self.model_cfg.visual_trunk != "resnet18":
                    raise DataError("--visual-weights initialises a ResNet-18 trunk: add --visual-trunk resnet18")
                self.visual_init = load_resnet18_weights(self.model.visual_trunk, tcfg.visual_weights)
            elif tcfg.visual_init:
                self.visual_init = _trunk_from_clustering_model(self.model, tcfg.visual_init)
            self.model = self.model.to(self.device)
        else:
            if tcfg.visual_weights or tcfg.visual_init:
                raise DataError("--visual-weights and --visual-init are for --method avin")
            self.model_cfg = model_cfg or AVConfig(alignment=tcfg.alignment)
            self.model = AVModel(self.model_cfg).to(self.device)
            self.counter = Counter(CounterConfig(cluster_feats=5), self.model_cfg).to(self.device)
            if self.init_bundle is not None:
                self.model.load_state_dict(self.init_bundle.av.state_dict())
                if self.init_bundle.counter is not None:
                    self.counter = self.init_bundle.counter.to(self.device)
        # the separator of the model fine-tuned from travels with it, unchanged (it is not trained
        # here): the model a fine-tune leaves keeps stems and click-to-hear
        self.kept_separator = None
        if not self.avin and self.init_bundle is not None and self.init_bundle.separator is not None:
            self.kept_separator = self.init_bundle.separator.to("cpu")
        self.history: list[dict[str, Any]] = []
        self._mixed_levels: list[int] = []
        self.skipped: dict[str, str] = {}

    # -- files --------------------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoint.safetensors"

    def _card(self, stages_done: list[dict], extra: Optional[dict] = None,
              with_separator: bool = False) -> dict[str, Any]:
        if self.avin:
            kind = "avstudio-avin"
            comps = {"avin": {"class": "AVINModel", "config": self.model_cfg.to_dict()}}
        else:
            kind = "avstudio-localizer"
            comps = {"av": {"class": "AVModel", "config": self.model_cfg.to_dict()},
                     "counter": {"class": "Counter", "config": self.counter.cfg.to_dict()}}
        card = {
            "kind": kind,
            "method": self.tcfg.method,
            "components": comps,
            "training": self.tcfg.to_dict(),
            "stages": stages_done,
            "data": self.data_summary,
            "init": self.init,
            "command": self.command,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "torch": torch.__version__,
        }
        if self.visual_init:
            card["visual_init"] = self.visual_init
        if extra:
            card.update(extra)
        if with_separator and self.kept_separator is not None:
            src = self.init_bundle.card("sep")
            card["components"]["sep"] = {"class": "Separator", "config": self.kept_separator.cfg.to_dict()}
            card["separator"] = {
                "kept_from": self.init_bundle.paths.get("sep"), "trained_here": False,
                "note": "the separator of the model this one was fine-tuned from, unchanged: it was trained "
                        "on that model's visual vectors (av_model), which fine-tuning moved a little"}
            if src.get("av_model"):
                card["av_model"] = src["av_model"]  # what avstudio.analysis.separate.av_match checks
        return card

    def _model_tensors(self, with_separator: bool = False) -> dict[str, torch.Tensor]:
        if self.avin:
            return component_tensors("avin", self.model)
        t = component_tensors("av", self.model)
        t.update(component_tensors("counter", self.counter))
        if with_separator and self.kept_separator is not None:
            t.update(component_tensors("sep", self.kept_separator))
        return t

    def _modules(self) -> dict[str, torch.nn.Module]:
        """The run's modules by their key prefix in the checkpoint."""
        return {"avin.": self.model} if self.avin else {"av.": self.model, "counter.": self.counter}

    def _save_checkpoint(self, opt, stage_index: int, epoch: int, phase: str, stages_done, elapsed: float):
        if not self.dist.is_main:
            D.barrier(self.dist)  # rank 0 is writing it
            return
        tensors = self._model_tensors()
        ot, ometa = _opt_tensors(opt)
        tensors.update(ot)
        card = self._card(stages_done, {"checkpoint": {"phase": phase, "stage_index": stage_index,
                                                       "epoch": epoch, "elapsed_s": elapsed,
                                                       "optimizer": ometa}})
        save_tensors(self.ckpt_path, tensors, card)
        D.barrier(self.dist)

    def _write_run_json(self, status: str, extra: Optional[dict] = None) -> None:
        if not self.dist.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        info = {"status": status, "training": self.tcfg.to_dict(), "model": self.model_cfg.to_dict(),
                "data": self.data_summary, "init": self.init, "command": self.command,
                "n_clips": len(self.rows)}
        if extra:
            info.update(extra)
        tmp = self.run_dir / "run.json.tmp"
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, self.run_dir / "run.json")

    def _log(self, entry: dict[str, Any]) -> None:
        self.history.append(entry)
        if self.dist.is_main:
            with open(self.run_dir / "history.jsonl", "a") as fh:
                fh.write(json.dumps(entry) + "\n")

    def _compatible(self, old: dict[str, Any]) -> bool:
        keep = ("stages", "epochs", "batch_clips", "moments", "alignment", "seed", "counter_epochs", "curriculum",
                "stage_lr", "replay", "method", "trunk_lr_scale")
        a, b = old.get("training", {}), self.tcfg.to_dict()
        # settings added later: a run without them used these
        later = {"stage_lr": 1.0, "replay": 0.0, "method": "hsa", "trunk_lr_scale": 1.0}
        return all(a.get(k, later.get(k)) == b.get(k) for k in keep) and old.get("n_clips") == len(self.rows)

    # -- main -----------------------------------------------------------------------------------
    def stage_epochs(self, si: int) -> int:
        e = self.tcfg.epochs
        if isinstance(e, (list, tuple)):
            if self._mixed_levels:  # the no-curriculum baseline: the mean over the levels
                return max(1, round(sum(e) / len(e)))
            return int(e[min(si, len(e) - 1)])
        return int(e)

    def stage_counts(self) -> list[int]:
        present = present_counts(self.rows)
        if self.tcfg.stages:
            missing = [s for s in self.tcfg.stages if s not in present]
            if missing:
                raise DataError(f"no clips with {missing[0]} source(s) for stage C{missing[0]} "
                                f"(the data has counts {present})")
            return list(self.tcfg.stages)
        if not present:
            raise DataError("no clip has a source count >= 1: nothing to train on")
        return present

    def run(self) -> TrainResult:
        self.rows = grade_rows(self.rows, self.init_bundle, self.model_cfg, self.progress)
        stages = self.stage_counts()
        if self.tcfg.stages is None:
            self.tcfg.stages = stages
        if not self.tcfg.curriculum:
            # no curriculum: one stage ("mixed", k = 0 here) over the clips of every level,
            # each batch drawn from one level (k is that level), with as many steps and
            # epochs as the whole curriculum would have had
            self._mixed_levels = stages
            stages = [0]
        final = self.run_dir / "model.safetensors"
        resumed = False
        start_stage, start_epoch, phase = 0, 0, "stages"
        elapsed_before = 0.0
        stages_done: list[dict] = []
        opt_state = None
        hist = finished_run(self.run_dir, self._compatible, final)
        if hist is not None:
            emit(self.progress, "train", 1, 1, "already finished")
            return TrainResult(self.run_dir, final, hist, already_done=True)
        if self.ckpt_path.exists():
            tensors, card, ck = load_checkpoint(self.ckpt_path, self._modules())
            phase = ck["phase"]
            start_stage, start_epoch = ck["stage_index"], ck["epoch"] + 1
            elapsed_before = float(ck.get("elapsed_s", 0.0))
            stages_done = card.get("stages", [])
            opt_state = (tensors, ck["optimizer"])
            resumed = True
            if self.dist.is_main:
                # drop entries of the epoch that was interrupted after its log line
                order = {"stages": 0, "counter": 1}
                mark = (order[phase], ck["stage_index"], ck["epoch"])
                self.history = trim_history(
                    self.run_dir, lambda e: (order[e["phase"]], e["stage_index"], e["epoch"]) <= mark)
        # every rank has read the run folder (and resumes at the same point) before rank 0 rewrites it
        D.check_same([phase, start_stage, start_epoch, len(self.rows)], self.dist, "resume point or clip count")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_run_json("running", {"stages": stages})
        t0 = time.time() - elapsed_before
        budget = None if self.tcfg.max_minutes is None else self.tcfg.max_minutes * 60.0

        if phase == "stages":
            for si in range(start_stage, len(stages)):
                k = stages[si]
                ep0 = start_epoch if si == start_stage else 0
                if si != start_stage:
                    opt_state = None
                stage_deadline = None
                if budget is not None:
                    # stage si may run until its cumulative share of the budget is spent (so
                    # time an earlier stage left unused goes to the later ones); the counter
                    # gets a quarter of a stage's share
                    units = len(stages) + (0.25 if self.tcfg.counter_epochs > 0 and not self.avin else 0.0)
                    stage_deadline = t0 + budget * (si + 1) / units
                info = self._train_stage(si, k, ep0, opt_state, stages_done, t0, stage_deadline)
                stages_done = [s for s in stages_done if s["k"] != k] + [info]
                if self.dist.is_main:
                    save_tensors(self.run_dir / "stages" / f"{info['stage']}.safetensors",
                                 self._model_tensors(with_separator=True),
                                 self._card(stages_done, with_separator=True))
            start_epoch, opt_state = 0, None
        counter_info = self._train_counter(start_epoch if phase == "counter" else 0,
                                           opt_state if phase == "counter" else None,
                                           stages_done, t0, None if budget is None else t0 + budget)
        if self.dist.is_main:
            card = self._card(stages_done, {"counter_training": counter_info,
                                            "history": self.history,
                                            "train_seconds": time.time() - t0}, with_separator=True)
            save_tensors(final, self._model_tensors(with_separator=True), card)
        self._write_run_json("done", {"stages": stages, "model": str(final),
                                      "skipped_clips": self.skipped, "skipped_count": len(self.skipped)})
        D.barrier(self.dist)
        return TrainResult(self.run_dir, final, self.history, resumed=resumed, skipped_clips=self.skipped)

    # -- stages ---------------------------------------------------------------------------------
    def _loader(self, rows: list[Row], epoch: int, seed_offset: int):
        kw = dict(moments=self.tcfg.moments, seed=self.tcfg.seed + seed_offset)
        make = getattr(rows, "windows", None)  # a lazy manifest view: paths read on demand
        if make:
            return make(self.model_cfg, **kw)
        if not hasattr(self, "_decoded"):
            self._decoded: dict = {}  # path -> decoded clip, shared by the stages and the counter
        return ClipWindows(rows, self.model_cfg, shared=self._decoded, **kw)

    def _batches(self, ds: ClipWindows, epoch: int, steps: int, stage_key: int):
        """Deterministic batches of clip indices: each step's global batch (the same on every rank,
        seeded by seed, stage and epoch) split into contiguous per-rank shares (distributed.py)."""
        if isinstance(ds, D.WorkerBatches):  # decoded in DataLoader workers
            yield from ds.batches(epoch, steps)
            return
        ds.set_epoch(epoch)
        pool = np.arange(len(ds))
        if ds.failures:  # decoded up front: draw from the clips that decoded
            pool = np.array([i for i in range(len(ds)) if ds.paths[i] not in ds.failures], dtype=np.int64)
        for mine in D.rank_batches(pool, steps, self.tcfg.batch_clips, self.tcfg.seed, stage_key, epoch,
                                   self.dist):
            yield collate_windows([ds[int(i)] for i in mine])

    def _cached_dataset(self, rows: list[Row], key: int) -> ClipWindows:
        if self.tcfg.num_workers > 0 and not (key == 0 and getattr(self, "_mixed_levels", None)):
            # decode in DataLoader workers, lazily, per step (the mixed baseline stays in memory)
            ds = self._loader(rows, 0, key)
            ds.cache_bytes = min(ds.cache_bytes, 512 << 20)  # per worker, bounded
            ds.shared = None  # no unbounded keep-everything cache in the workers
            return D.WorkerBatches(ds, self.tcfg.batch_clips, self.tcfg.seed, key, self.dist,
                                   self.tcfg.num_workers, pin_memory=self.device.type == "cuda")
        if not hasattr(self, "_datasets"):
            self._datasets: dict[int, ClipWindows] = {}
        if key not in self._datasets:
            ds = self._loader(rows, 0, key)
            # decode every clip once up front, with progress (training then reads memory)
            for i in range(len(ds)):
                if self.cancel is not None and self.cancel.is_set():
                    raise Cancelled("training cancelled while decoding clips")
                ds.clip(i)
                emit(self.progress, f"decode:C{key}" if 0 < key < 100 else "decode", i + 1, len(ds))
            self.skipped.update(ds.failures)
            if len(ds.failures) == len(ds):
                raise DataError(f"none of the {len(ds)} clips could be decoded "
                                f"(first: {next(iter(ds.failures.values()))})")
            self._datasets[key] = ds
        return self._datasets[key]

    def _mixed_batches(self, ds: ClipWindows, rows: list[Row], epoch: int, steps: int):
        """Batches for the no-curriculum baseline: each from one level, levels interleaved."""
        ds.set_epoch(epoch)
        rng = np.random.default_rng([self.tcfg.seed, 0, epoch])
        groups = {k: np.array([i for i, r in enumerate(rows) if r.count == k]) for k in self._mixed_levels}
        sizes = np.array([len(g) for g in groups.values()], dtype=float)
        keys = list(groups)
        orders = {k: np.concatenate([rng.permutation(groups[k]) for _ in range(steps * self.tcfg.batch_clips
                                                                                // max(1, len(groups[k])) + 2)])
                  for k in keys}
        pos = {k: 0 for k in keys}
        W, R = self.dist.world_size, self.dist.rank
        for _ in range(steps):
            k = keys[int(rng.choice(len(keys), p=sizes / sizes.sum()))]
            chunk = orders[k][pos[k]:pos[k] + self.tcfg.batch_clips]
            pos[k] += self.tcfg.batch_clips
            a, b = D.rank_bounds(len(chunk), W, R)  # contiguous share (none dropped)
            mine = chunk[a:b]
            yield collate_windows([ds[int(i)] for i in mine]), k

    def _replay_levels(self, k: int) -> list[int]:
        """The simpler levels a stage of k sources replays: those of the data below k (the
        earlier stages of a curriculum, also when it continues a model trained on them)."""
        return [lv for lv in present_counts(self.rows) if 1 <= lv < k]

    def _with_replay(self, batches, si: int, epoch: int, steps: int):
        """``steps`` batches: the stage's own, with a share ``replay`` of the steps replaced by a
        batch of one simpler level's clips (with that level's k), drawn the same way on every rank."""
        if self.tcfg.num_workers > 0:
            raise DataError("replay of earlier stages needs the clips decoded in memory (no --workers)")
        earlier = self._replay_levels(int(self.tcfg.stages[si]))
        rng = np.random.default_rng([self.tcfg.seed, 7331, si, epoch])
        own = iter(batches)
        for s in range(steps):
            if rng.random() < self.tcfg.replay:
                kp = int(earlier[int(rng.integers(len(earlier)))])
                ds_p = self._cached_dataset(rows_with_count(self.rows, kp), kp)
                yield next(iter(self._batches(ds_p, 10_000 + epoch * steps + s, 1, kp))), kp
            else:
                try:
                    yield next(own)
                except StopIteration:
                    return

    def _train_stage(self, si: int, k: int, ep0: int, opt_state, stages_done, t0: float,
                     deadline: Optional[float]) -> dict:
        mixed = k == 0
        rows = [r for r in self.rows if r.count in self._mixed_levels] if mixed else rows_with_count(self.rows, k)
        gather = self.dist.enabled and self.tcfg.gather_negatives
        if self.dist.enabled:  # batch norm over the global batch (SyncBatchNorm / GlobalBatchNorm)
            self.model = D.sync_batchnorm(self.model, self.device)
        model = self.model
        ddp = model
        if self.dist.enabled:
            wrap = GatheredAVIN if self.avin else GatheredContrastive
            ddp = torch.nn.parallel.DistributedDataParallel(
                wrap(model) if gather else model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None)
        params: Any = model.parameters()
        if self.avin and self.tcfg.trunk_lr_scale != 1.0:  # the trunk slower than the heads
            trunk = list(model.visual_trunk.parameters())
            ids = {id(p) for p in trunk}
            params = [{"params": trunk, "lr_scale": float(self.tcfg.trunk_lr_scale)},
                      {"params": [p for p in model.parameters() if id(p) not in ids], "lr_scale": 1.0}]
        opt = torch.optim.Adam(params, lr=self.tcfg.lr, weight_decay=self.tcfg.weight_decay)
        if opt_state is not None:
            _load_opt(opt, *opt_state)
        steps = max(1, math.ceil(len(rows) * self.tcfg.clip_repeats / self.tcfg.batch_clips))
        epochs = self.stage_epochs(si) * (len(self._mixed_levels) if mixed else 1)
        if mixed:  # as many steps as the curriculum: each level's clips seen as often
            steps = max(1, math.ceil(steps / len(self._mixed_levels)))
        # a stage with no epoch left to run (``--epochs 0`` to refit the counter only, or resumed
        # after its last epoch) does not decode its clips
        ds = self._cached_dataset(rows, k) if ep0 < epochs else None
        total = steps * epochs
        task = "train:mixed" if mixed else f"train:C{k}"
        last = {"loss": float("nan"), "acc": float("nan")}
        epochs_run = ep0
        stage_name = "mixed" if mixed else f"C{k}"
        for epoch in range(ep0, epochs):
            if deadline is not None and D.broadcast_flag(time.time() > deadline, self.dist):
                break
            model.train()
            gen = torch.Generator().manual_seed(self.tcfg.seed * 1000003 + k * 1009 + epoch)
            sum_loss = sum_acc = 0.0
            n = 0
            batches = self._mixed_batches(ds, rows, epoch, steps) if mixed else \
                ((b, k) for b in self._batches(ds, epoch, steps, k))
            if not mixed and self.tcfg.replay > 0 and self._replay_levels(k):
                batches = self._with_replay(batches, si, epoch, steps)
            for s, (batch, bk) in enumerate(batches):
                if self.cancel is not None and self.cancel.is_set():
                    raise Cancelled(f"training cancelled in stage {stage_name}, epoch {epoch + 1}; "
                                    "the last finished epoch is saved")
                if batch is not None:
                    self.skipped.update(batch.pop("failed", None) or {})
                b = 0 if batch is None or "frames" not in batch else int(batch["frames"].shape[0])
                sizes = D.batch_sizes(b, self.dist)
                if min(sizes) == 0:  # a rank has nothing to train on: every rank skips the step
                    continue
                frames = batch["frames"]
                if self.tcfg.augment:
                    frames = augment_frames(frames, gen)
                frames = frames.to(self.device, non_blocking=True)
                wave = batch["wave"].to(self.device, non_blocking=True)
                # gains drawn for the global batch, this rank's slice (one process: the same draws)
                off = sum(sizes[:self.dist.rank])
                gain = torch.exp(0.3 * torch.randn(sum(sizes), 1, generator=gen))[off:off + b].to(self.device)
                extra = {"sizes": sizes} if gather else {}
                loss, acc = ddp(frames, wave * gain, bk, self.tcfg.alignment, self.tcfg.pos_weight, **extra)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                set_lr(opt, self.tcfg, (epoch * steps + s) / max(1, total), 0 if mixed else si)
                opt.step()
                sum_loss += float(loss.detach())
                sum_acc += float(acc)
                n += 1
                emit(self.progress, task, epoch * steps + s + 1, total, f"epoch {epoch + 1}/{epochs}",
                     loss=sum_loss / n, acc=sum_acc / n, epoch=epoch + 1, stage=stage_name,
                     skipped=len(self.skipped))
            stats = torch.tensor([sum_loss / max(n, 1), sum_acc / max(n, 1)])
            stats = D.all_reduce_mean(stats.to(self.device) if self.device.type == "cuda" else stats, self.dist).cpu()
            last = {"loss": float(stats[0]), "acc": float(stats[1])}
            self.skipped = D.merge_dicts(self.skipped, self.dist)  # every rank's undecodable clips
            if n == 0:
                raise DataError(f"stage {stage_name}: no clip could be decoded in epoch {epoch + 1} "
                                f"({len(self.skipped)} skipped, e.g. {next(iter(self.skipped), '?')})")
            entry = {"phase": "stages", "stage": stage_name, "k": k, "stage_index": si, "epoch": epoch,
                     "steps": n, "time_s": time.time() - t0, "skipped": len(self.skipped), **last}
            if self.val_fn is not None and self.dist.is_main:
                model.eval()
                entry["val"] = self.val_fn(model, k) if not mixed else \
                    {f"C{lv}": self.val_fn(model, lv) for lv in self._mixed_levels}
                if not mixed and self._replay_levels(k):
                    # the simpler levels too: a later stage must not undo what they learnt
                    entry["val_simpler"] = {f"C{lv}": self.val_fn(model, lv) for lv in self._replay_levels(k)}
            self._log(entry)
            emit(self.progress, task, (epoch + 1) * steps, total, f"epoch {epoch + 1}/{epochs}",
                 epoch_done=epoch + 1, **last, **({"val": entry["val"]} if "val" in entry else {}))
            info = {"k": k, "stage": stage_name, "clips": len(rows), "epochs": epoch + 1, **last}
            done = [s for s in stages_done if s["k"] != k] + [info]
            self._save_checkpoint(opt, si, epoch, "stages", done, time.time() - t0)
            epochs_run = epoch + 1
        if isinstance(ds, D.WorkerBatches):
            ds.close()
        if epochs_run == ep0 and ep0 > 0:  # resumed after the stage's last epoch
            prev = [s for s in stages_done if s["k"] == k]
            if prev:
                return prev[0]
        return {"k": k, "stage": stage_name, "clips": len(rows), "epochs": epochs_run, **last}

    def _train_counter(self, ep0: int, opt_state, stages_done, t0: float, deadline) -> dict:
        if self.counter is None:  # AVIN has no counter
            return {"epochs": 0}
        rows = labelled_rows(self.rows)
        if not len(rows) or self.tcfg.counter_epochs <= 0:
            return {"epochs": 0}
        counts = count_values(rows)
        ds = self._cached_dataset(rows, 1000)  # all labelled clips
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        params = [p for p in self.counter.parameters()]
        opt = torch.optim.Adam(params, lr=self.tcfg.lr)
        if opt_state is not None:
            _load_opt(opt, *opt_state)
        steps = max(1, math.ceil(len(rows) * self.tcfg.clip_repeats / self.tcfg.batch_clips))
        total = steps * self.tcfg.counter_epochs
        last = {"loss": float("nan"), "acc": float("nan")}
        counter = self.counter
        cddp = counter
        for epoch in range(ep0, self.tcfg.counter_epochs):
            if deadline is not None and epoch > 0 and D.broadcast_flag(time.time() > deadline, self.dist):
                break
            counter.train()
            gen = torch.Generator().manual_seed(self.tcfg.seed * 7919 + epoch)
            sl = sa = 0.0
            n = 0
            for s, batch in enumerate(self._batches(ds, epoch, steps, 1000)):
                if self.cancel is not None and self.cancel.is_set():
                    raise Cancelled("training cancelled while fitting the counter")
                if batch is not None:
                    self.skipped.update(batch.pop("failed", None) or {})
                b = 0 if batch is None or "frames" not in batch else int(batch["frames"].shape[0])
                if min(D.batch_sizes(b, self.dist)) == 0:  # every rank skips the step together
                    continue
                frames = batch["frames"].to(self.device)
                wave = batch["wave"].to(self.device)
                gain = torch.exp(0.3 * torch.randn(wave.shape[0], 1, generator=gen)).to(self.device)
                y = batch["count"].to(self.device)
                lr = cddp.log_rate(wave * gain, self.model, frames)
                loss = torch.nn.functional.poisson_nll_loss(lr, y.float(), log_input=True)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if self.dist.enabled:
                    for p in params:
                        if p.grad is not None:
                            torch.distributed.all_reduce(p.grad)
                            p.grad /= self.dist.world_size
                opt.step()
                acc = (torch.round(lr.exp()).clamp(0, 16) == y).float().mean()
                sl += float(loss.detach())
                sa += float(acc)
                n += 1
                emit(self.progress, "train:counter", epoch * steps + s + 1, total,
                     f"epoch {epoch + 1}/{self.tcfg.counter_epochs}", loss=sl / n, acc=sa / n)
            last = {"loss": sl / max(n, 1), "acc": sa / max(n, 1)}
            self.skipped = D.merge_dicts(self.skipped, self.dist)
            self._log({"phase": "counter", "stage": "counter", "k": 0, "stage_index": len(stages_done),
                       "epoch": epoch, "steps": n, "time_s": time.time() - t0, **last})
            self._save_checkpoint(opt, len(stages_done), epoch, "counter", stages_done, time.time() - t0)
        for p in self.model.parameters():
            p.requires_grad_(True)
        counter.eval()
        if isinstance(ds, D.WorkerBatches):
            ds.close()
        return {"epochs": self.tcfg.counter_epochs, "counts": counts, **last}


__all__ = ["TrainConfig", "Trainer", "Row", "TrainResult", "rate_to_count"]
