"""The separator's trainer (:class:`SeparatorTrainer`): stages, checkpoints, resume, the model
folder it leaves."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ...errors import Cancelled, CheckpointError, DataError
from ...nets.checkpoint import card_path, component_tensors, load_model, save_tensors
from ...nets.files import file_sha256, weights_sha256
from ...nets.separator import Separator, SeparatorConfig
from ...progress import ProgressFn, emit
from ..resume import finished_run, load_checkpoint, trim_history
from ..trainer import _load_opt, _opt_tensors
from .config import SepTrainConfig
from .data import ManifestSource, PreparedClip, RawClip, SynthSource, make_batch, prepare_clip
from .loss import separation_loss
from .metric import validate


@dataclass
class SepTrainResult:
    run_dir: Path
    model_path: Path
    history: list[dict[str, Any]]
    resumed: bool = False
    already_done: bool = False
    skipped_clips: dict[str, str] = field(default_factory=dict)


class SeparatorTrainer:
    def __init__(self, av_model: str, run_dir: str | os.PathLike, tcfg: SepTrainConfig,
                 sep_cfg: Optional[SeparatorConfig] = None, rows=None, progress: ProgressFn | None = None,
                 cancel=None, command: Optional[str] = None, sep_overrides: Optional[dict] = None):
        if (tcfg.synth_seed is None) == (rows is None):
            raise DataError("give either manifest rows or a synthetic seed to train the separator on")
        self.tcfg = tcfg
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.cancel = cancel
        self.command = command or " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])
        dev = tcfg.device
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise DataError("--device cuda was asked for but no CUDA device is available")
        self.device = torch.device(dev)
        if tcfg.threads:
            torch.set_num_threads(tcfg.threads)
        self.av_model = str(av_model)
        bundle = load_model(av_model, device=dev)
        if bundle.av is None:
            raise CheckpointError(f"{av_model}: holds no clustering-alignment model (the separator is "
                                  "trained in its visual space)")
        self.av = bundle.av.eval()
        for p in self.av.parameters():
            p.requires_grad_(False)
        self.av_path = bundle.paths["av"]
        self.av_sha = file_sha256(self.av_path)
        self.av_weights_sha = weights_sha256(self.av)
        self.sep_cfg = sep_cfg or SeparatorConfig(**{"cond_dim": self.av.cfg.embed_dim, **(sep_overrides or {})})
        self.sep_cfg.check()
        if self.sep_cfg.cond_dim != self.av.cfg.embed_dim:
            raise DataError(f"the separator's conditioning has {self.sep_cfg.cond_dim} dimensions, the AV "
                            f"model's visual vectors {self.av.cfg.embed_dim}")
        torch.manual_seed(tcfg.seed)
        self.model = Separator(self.sep_cfg).to(self.device)
        self.synth = None
        self.manifest = None
        if tcfg.synth_seed is not None:
            self.synth = SynthSource(tcfg.synth_seed, self.av.cfg, self.sep_cfg.sample_rate, tcfg.synth)
            self.data_summary = {"source": "synth (rendered on the fly)", **self.synth.describe()}
        else:
            self.manifest = ManifestSource(rows, self.av.cfg, self.sep_cfg.sample_rate)
            counts: dict[str, int] = {}
            for r in rows:
                counts[str(r.count)] = counts.get(str(r.count), 0) + 1
            self.data_summary = {"source": "manifest", "manifest": tcfg.manifest, "clips": len(rows),
                                 "clips_per_count": counts}
        self.history: list[dict[str, Any]] = []
        self._prepared: dict[int, list[PreparedClip]] = {}
        self._val: dict[int, list] = {}

    # -- files ------------------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoint.safetensors"

    def _card(self, stages_done: list[dict], extra: Optional[dict] = None) -> dict[str, Any]:
        card = {
            "kind": "avstudio-separator",
            "components": {"sep": {"class": "Separator", "config": self.sep_cfg.to_dict()}},
            "av_model": {"path": str(self.av_path), "sha256": self.av_sha, "weights_sha256": self.av_weights_sha,
                         "embed_dim": self.av.cfg.embed_dim, "frame_size": self.av.cfg.frame_size},
            "training": self.tcfg.to_dict(),
            "recipe": self.recipe(),
            "stages": stages_done,
            "data": self.data_summary,
            "command": self.command,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "torch": torch.__version__,
        }
        if extra:
            card.update(extra)
        return card

    def recipe(self) -> str:
        c2 = ("mixtures of a duet and a solo clip, alternating with mixtures of two solo clips"
              if self.tcfg.later_stages == "mixed" else "mixtures of two duets")
        what = ("attended visual vector (visual features pooled where the cluster's sound is heard)"
                if self.sep_cfg.conditioning == "attended" else "aligned visual center")
        return (f"mix-and-separate, loss {self.tcfg.loss}: C1 = mixtures of two solo clips, each recovered "
                f"from its {what} (k=1); C2 = {c2}, each duet's 2 stems recovered from "
                f"its 2 clusters' vectors (k=2), put in stem order by sight; {self.tcfg.pixel_prob:.0%} of "
                "the conditionings are the visual feature at a pixel of the object instead")

    def _write_run_json(self, status: str, extra: Optional[dict] = None) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        info = {"status": status, "training": self.tcfg.to_dict(), "separator": self.sep_cfg.to_dict(),
                "av_model": {"path": str(self.av_path), "sha256": self.av_sha,
                             "weights_sha256": self.av_weights_sha},
                "data": self.data_summary, "command": self.command}
        if extra:
            info.update(extra)
        tmp = self.run_dir / "run.json.tmp"
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, self.run_dir / "run.json")

    def _log(self, entry: dict[str, Any]) -> None:
        self.history.append(entry)
        with open(self.run_dir / "history.jsonl", "a") as fh:
            fh.write(json.dumps(entry) + "\n")

    def _compatible(self, old: dict[str, Any]) -> bool:
        keep = ("stages", "epochs", "steps", "batch", "pool", "seed", "synth_seed", "manifest",
                "segment_frames", "pixel_prob", "lr", "loss", "later_stages")
        a, b = old.get("training", {}), self.tcfg.to_dict()
        oa = old.get("av_model", {})
        same_av = (oa.get("weights_sha256") == self.av_weights_sha if oa.get("weights_sha256")
                   else oa.get("sha256") == self.av_sha)
        return all(a.get(x) == b.get(x) for x in keep) and old.get("separator") == self.sep_cfg.to_dict() and same_av

    # -- data --------------------------------------------------------------------------------
    def _check_cancel(self, what: str) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"separator training cancelled {what}; the last finished epoch is saved")

    def _prepare(self, raw: RawClip, n_pixels: int, rng) -> PreparedClip:
        return prepare_clip(self.av, raw, self.device, n_pixels, rng, self.sep_cfg.conditioning,
                            self.sep_cfg.attend_tau)

    def _manifest_pool(self, k: int) -> list[PreparedClip]:
        """Manifest clips of count k, decoded and prepared once (the AV model is frozen)."""
        if k not in self._prepared:
            idx = [i for i, r in enumerate(self.manifest.rows) if r.count == k]
            out = []
            for n, i in enumerate(idx):
                self._check_cancel("while decoding clips")
                rng = np.random.default_rng([self.tcfg.seed, 77, i])
                raw = self.manifest.raw(i, self.tcfg.frames_per_clip, rng)
                if raw is not None and raw.stems.shape[0] == k:
                    out.append(self._prepare(raw, self.tcfg.pixels_per_source, rng))
                elif raw is not None:
                    self.manifest.failures[raw.name] = f"{raw.stems.shape[0]} stems but count {k}"
                emit(self.progress, f"decode:C{k}", n + 1, len(idx))
            self._prepared[k] = out
        return self._prepared[k]

    def _pool(self, k: int, si: int, epoch: int, size: Optional[int] = None, offset: int = 0) -> list[PreparedClip]:
        size = self.tcfg.pool if size is None else size
        if self.synth is None:
            allc = self._manifest_pool(k)
            n_val = self._n_val_manifest(len(allc))
            train = allc[n_val:]
            if len(train) < 2:
                raise DataError(f"stage C{k} needs at least 2 usable clips with {k} source(s) "
                                f"(the manifest gives {len(allc)})")
            rng = np.random.default_rng([self.tcfg.seed, k, epoch, 5] + ([offset] if offset else []))
            pick = rng.choice(len(train), size=min(size, len(train)), replace=False)
            return [train[int(i)] for i in pick]
        out = []
        # clip indices far above those of any `avstudio synth` folder (0, 1, 2, ...), so the
        # training clips never coincide with a benchmark made with the same seed
        base = 10_000_000 * k + offset + epoch * size
        for j in range(size):
            self._check_cancel("while rendering clips")
            rng = np.random.default_rng([self.tcfg.seed, k, epoch, j] + ([offset] if offset else []))
            raw = self.synth.raw(base + j, k, self.tcfg.frames_per_clip, rng)
            out.append(self._prepare(raw, self.tcfg.pixels_per_source, rng))
            emit(self.progress, f"render:C{k}", j + 1, size, f"epoch {epoch + 1}")
        return out

    @staticmethod
    def _n_val_manifest(n: int) -> int:
        return min(2 * 12, n // 5) if n >= 10 else 0

    def _val_pairs(self, k: int):
        if k in self._val:
            return self._val[k]
        pairs = []
        if self.synth is not None:
            clips = []
            for j in range(2 * self.tcfg.val_mixtures):
                rng = np.random.default_rng([self.tcfg.seed, k, 99, j])
                raw = self.synth.raw(9_000_000 + 1000 * k + j, k, self.tcfg.frames_per_clip, rng)
                clips.append(self._prepare(raw, 1, rng))
                emit(self.progress, f"render:val:C{k}", j + 1, 2 * self.tcfg.val_mixtures)
            pairs = [(clips[2 * i], clips[2 * i + 1]) for i in range(self.tcfg.val_mixtures)]
        else:
            allc = self._manifest_pool(k)
            n_val = self._n_val_manifest(len(allc))
            pairs = [(allc[2 * i], allc[2 * i + 1]) for i in range(n_val // 2)]
        self._val[k] = pairs
        return pairs

    # -- main ---------------------------------------------------------------------------------
    def run(self) -> SepTrainResult:
        t = self.tcfg
        final = self.run_dir / "separator.safetensors"
        resumed = False
        start_stage, start_epoch = 0, 0
        elapsed_before = 0.0
        stages_done: list[dict] = []
        opt_state = None
        hist = finished_run(self.run_dir, self._compatible, final)
        if hist is not None:
            emit(self.progress, "train-separator", 1, 1, "already finished")
            return SepTrainResult(self.run_dir, final, hist, already_done=True)
        if self.ckpt_path.exists():
            tensors, card, ck = load_checkpoint(self.ckpt_path, {"sep.": self.model})
            start_stage, start_epoch = ck["stage_index"], ck["epoch"] + 1
            elapsed_before = float(ck.get("elapsed_s", 0.0))
            stages_done = card.get("stages", [])
            opt_state = (tensors, ck["optimizer"])
            resumed = True
            mark = (ck["stage_index"], ck["epoch"])
            self.history = trim_history(self.run_dir, lambda e: (e["stage_index"], e["epoch"]) <= mark)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_run_json("running")
        t0 = time.time() - elapsed_before
        budget = None if t.max_minutes is None else t.max_minutes * 60.0
        for si in range(start_stage, len(t.stages)):
            k = t.stages[si]
            ep0 = start_epoch if si == start_stage else 0
            if si != start_stage:
                opt_state = None
            deadline = None if budget is None else t0 + budget * (si + 1) / len(t.stages)
            info = self._train_stage(si, k, ep0, opt_state, stages_done, t0, deadline)
            stages_done = [s for s in stages_done if s["stage_index"] != si] + [info]
            save_tensors(self.run_dir / "stages" / f"C{k}.safetensors", component_tensors("sep", self.model),
                         self._card(stages_done))
        metrics = {s["stage"]: s.get("val", {}) for s in stages_done}
        card = self._card(stages_done, {"metrics": {"validation_si_sdr": metrics}, "history": self.history,
                                        "train_seconds": time.time() - t0})
        save_tensors(final, component_tensors("sep", self.model), card)
        self._write_model_folder(final)
        skipped = dict(self.manifest.failures) if self.manifest is not None else {}
        self._write_run_json("done", {"model": str(final), "model_folder": str(self.run_dir / "model"),
                                      "skipped_clips": skipped})
        return SepTrainResult(self.run_dir, final, self.history, resumed=resumed, skipped_clips=skipped)

    def _write_model_folder(self, sep_file: Path) -> None:
        """RUN/model: the AV model's file + the separator, a MODEL folder load_model reads whole."""
        out = self.run_dir / "model"
        out.mkdir(parents=True, exist_ok=True)
        src = Path(self.av_path)
        for p in (src, card_path(src)):
            dst = out / p.name
            if dst.name.startswith("separator"):
                dst = out / ("localizer" + p.suffix)
            shutil.copyfile(p, dst)
        for p in (sep_file, card_path(sep_file)):
            shutil.copyfile(p, out / p.name)

    def _train_stage(self, si: int, k: int, ep0: int, opt_state, stages_done, t0: float,
                     deadline: Optional[float]) -> dict:
        t = self.tcfg
        model = self.model
        opt = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        if opt_state is not None:
            _load_opt(opt, *opt_state)
        hop = model.cfg.hop_length
        seg = (t.segment_frames - 1) * hop
        task = f"train:C{k}"
        total = t.steps * t.epochs
        last: dict[str, Any] = {"loss": float("nan")}
        epochs_run = ep0
        val_pairs = self._val_pairs(k) if t.val_mixtures > 0 else []
        for epoch in range(ep0, t.epochs):
            if deadline is not None and time.time() > deadline:
                break
            torch.manual_seed(t.seed * 1000003 + k * 1009 + epoch)
            solos = None
            if k > 1 and t.later_stages == "mixed":
                # half the pool of count k, half solos (other clips than stage C1's): steps
                # alternate between a count-k clip mixed with a solo and two solos
                pool = self._pool(k, si, epoch, size=max(2, t.pool // 2))
                solos = self._pool(1, si, epoch, size=max(2, t.pool // 2), offset=5_000_000)
            else:
                pool = self._pool(k, si, epoch)
            rng = np.random.default_rng([t.seed, k, epoch, 1])
            model.train()
            sl, n = 0.0, 0
            for s in range(t.steps):
                self._check_cancel(f"in stage C{k}, epoch {epoch + 1}")
                if deadline is not None and n > 0 and time.time() > deadline:
                    break
                if solos is None:
                    mix, src, cond = make_batch(pool, rng, t.batch, seg, t.gain_db, t.pixel_prob)
                elif s % 2 == 0:
                    mix, src, cond = make_batch(pool, rng, t.batch, seg, t.gain_db, t.pixel_prob, solos)
                else:
                    mix, src, cond = make_batch(solos, rng, t.batch, seg, t.gain_db, t.pixel_prob)
                loss, _ = separation_loss(model, mix.to(self.device), src.to(self.device), cond.to(self.device),
                                          t.loss)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                opt.step()
                sl += float(loss.detach())
                n += 1
                emit(self.progress, task, epoch * t.steps + s + 1, total, f"epoch {epoch + 1}/{t.epochs}",
                     loss=sl / n, epoch=epoch + 1, stage=f"C{k}")
            last = {"loss": sl / max(n, 1)}
            entry = {"stage": f"C{k}", "k": k, "stage_index": si, "epoch": epoch, "steps": n,
                     "time_s": time.time() - t0, **last}
            if val_pairs:
                entry["val"] = validate(model, val_pairs, self.device)
            self._log(entry)
            emit(self.progress, task, (epoch + 1) * t.steps, total, f"epoch {epoch + 1}/{t.epochs}",
                 epoch_done=epoch + 1, **last, **({"val_si_sdr": entry["val"].get("si_sdr")}
                                                  if entry.get("val") else {}))
            info = {"k": k, "stage": f"C{k}", "stage_index": si, "epochs": epoch + 1, **last,
                    "val": entry.get("val", {})}
            done = [x for x in stages_done if x["stage_index"] != si] + [info]
            tensors = component_tensors("sep", model)
            ot, ometa = _opt_tensors(opt)
            tensors.update(ot)
            save_tensors(self.ckpt_path, tensors, self._card(done, {"checkpoint": {
                "stage_index": si, "epoch": epoch, "elapsed_s": time.time() - t0, "optimizer": ometa}}))
            epochs_run = epoch + 1
        if epochs_run == ep0 and ep0 > 0:
            prev = [x for x in stages_done if x["stage_index"] == si]
            if prev:
                return prev[0]
        val = [e.get("val", {}) for e in self.history if e["stage_index"] == si]
        return {"k": k, "stage": f"C{k}", "stage_index": si, "epochs": epochs_run, **last,
                "val": val[-1] if val else {}}
