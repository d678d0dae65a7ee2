"""`avstudio train`: curriculum training / fine-tuning (single process or under torchrun), of the
clustering-alignment model (``--method hsa``, the default) or of AVIN (``--method avin``)."""

from __future__ import annotations

import argparse
import shlex
import sys


def _ints(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError("stages are source counts >= 1, e.g. 1,2,3")
    return vals


def _epochs(text: str):
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or comma-separated numbers, got {text!r}") from None
    if not vals or any(v < 0 for v in vals):
        raise argparse.ArgumentTypeError("epochs must be >= 0")
    return vals[0] if len(vals) == 1 else vals


def register(sub):
    p = sub.add_parser("train", help="train or fine-tune the model with the curriculum (C1, C2, ...)",
                       description="Train (or fine-tune with --init) the clustering-alignment model stage by "
                                   "stage, simple scenes first, then fit the source counter. Re-running the same "
                                   "command resumes an interrupted run. Works unchanged under torchrun.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", help="CSV with columns path,count (count may be empty)")
    src.add_argument("--library", help="an AV Studio clip library: train on its annotated clips")
    p.add_argument("--out", required=True, help="run folder (checkpoints, cards, the final model)")
    p.add_argument("--stages", type=_ints, default=None, help="source counts in order, e.g. 1,2 (default: all present)")
    p.add_argument("--init", default=None, help="MODEL to fine-tune (file or folder)")
    p.add_argument("--method", choices=["hsa", "avin"], default=None,
                   help="hsa: the clustering-alignment model (default); avin: the Induction Network, one "
                        "heatmap per frame (default with --init: the kind of the MODEL)")
    p.add_argument("--visual-trunk", choices=["conv", "resnet18"], default="conv",
                   help="avin: the visual trunk of a new model (conv: the stride-4 net, 28x28 maps from "
                        "112 px; resnet18: torchvision's layout, layer4 at stride 1)")
    p.add_argument("--visual-weights", default=None, metavar="FILE",
                   help="avin + resnet18: start the trunk from a torchvision-format ResNet-18 weights file "
                        "you have (e.g. resnet18-f37072fd.pth; read with weights_only=True, fc.* dropped)")
    p.add_argument("--visual-init", default=None, metavar="MODEL",
                   help="avin + conv trunk: start the trunk from a clustering model's visual encoder (e.g. "
                        "models/default), as the reference starts from a pretrained network")
    p.add_argument("--trunk-lr-scale", type=float, default=1.0,
                   help="avin: the visual trunk learns at lr x this (the reference: 0.1 for its pretrained trunk)")
    p.add_argument("--frame-size", type=int, default=None,
                   help="avin: frame size of a new model in pixels (default 112; the reference uses 224)")
    p.add_argument("--moments", type=int, default=None,
                   help="moments per clip in a batch (default: 2 for hsa, same-clip negatives; 1 for avin)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--epochs", type=_epochs, default=8,
                   help="epochs per stage: one number, or one per stage (e.g. 8,4,2; default 8)")
    p.add_argument("--max-minutes", type=float, default=None, help="time budget shared out over the stages")
    p.add_argument("--batch-clips", type=int, default=16, help="clips per step (x2 moments each)")
    p.add_argument("--clip-repeats", type=int, default=4, help="samples per clip per epoch")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--schedule", choices=["cosine", "constant"], default="cosine",
                   help="learning rate within each stage (cosine: down to lr/10)")
    p.add_argument("--alignment", choices=["source", "scene"], default="source",
                   help="source-level (clusters + matching; the method) or scene-level (ablation only)")
    p.add_argument("--stage-lr", type=float, default=1.0, metavar="F",
                   help="stage i starts at lr * F**i (default 1: every stage restarts at --lr)")
    p.add_argument("--replay", type=float, default=0.0, metavar="SHARE",
                   help="share of each later stage's steps spent on clips of the earlier stages "
                        "(with their k), against forgetting them (default 0)")
    p.add_argument("--no-curriculum", action="store_true",
                   help="ablation baseline: one stage over every level at once (same number of steps)")
    p.add_argument("--counter-epochs", type=int, default=6, help="epochs of counter fitting (0: skip)")
    p.add_argument("--val-data", default=None, help="a synth folder (other seeds) to track localization per epoch")
    p.add_argument("--arch", choices=["default", "small", "photo", "photo-small"], default="default",
                   help="architecture of a new model: default (the shapes world's), photo (photographs: "
                        "144 px, residual trunk, 7 stacked frames), small / photo-small (tests, quick "
                        "experiments)")
    p.add_argument("--arch-set", action="append", default=[], metavar="FIELD=VALUE",
                   help="change one field of the new model's architecture (repeatable), e.g. "
                        "--arch-set stack=1 --arch-set vis_channels=24,32,64,96 (ablations)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=0,
                   help="DataLoader worker processes decoding clips per step (default 0: every clip "
                        "decoded once up front and kept in memory; use workers for big data sets)")
    p.add_argument("--local-negatives", action="store_true",
                   help="under torchrun: contrast each rank's pairs with its own share of the batch only "
                        "(default: negatives gathered from every rank, as one process with the whole batch)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json-progress", action="store_true",
                   help="print one JSON progress event per line on stdout instead of progress bars "
                        "(the app reads them), and the result as one JSON line")
    return p


def arch_overrides(items) -> dict:
    """``["stack=1", "vis_channels=24,32"]`` -> typed AVConfig fields (one clear error if wrong)."""
    from dataclasses import fields

    from ..errors import DataError
    from ..nets.config import AVConfig

    known = {f.name: f.default for f in fields(AVConfig)}
    out = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in known:
            raise DataError(f"--arch-set {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(sorted(known))}")
        want = known[key]
        try:
            if isinstance(want, bool):
                if val.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(val)
                v = val.lower() in ("true", "1", "yes")
            elif isinstance(want, int):
                v = int(val)
            elif isinstance(want, float):
                v = float(val)
            elif isinstance(want, tuple):
                v = tuple(int(x) for x in val.split(",") if x.strip())
            else:
                v = val
        except ValueError:
            raise DataError(f"--arch-set {item!r}: {val!r} is not a valid {type(want).__name__}") from None
        out[key] = v
    return out


def rows_from_args(args):
    from ..errors import DataError
    from ..train.trainer import Row

    if args.manifest:
        from ..data.lazy_manifest import is_lazy, open_manifest

        rows = open_manifest(args.manifest)  # a big manifest is indexed, not read into memory
        if not is_lazy(rows):
            rows = [Row(r.path, r.count) for r in rows]
        summary = {"manifest": args.manifest}
    else:
        from ..data.library import ClipLibrary

        with ClipLibrary(args.library, create=False) as lib:
            rows = [Row(r["path"], r["count"]) for r in lib.annotated_manifest_rows()
                    if r["count"] is not None]
        summary = {"library": args.library}
    if not len(rows):
        raise DataError("no clips to train on")
    counts = {}
    if getattr(rows, "lazy", False):
        counts = rows.count_summary()
    else:
        for r in rows:
            counts[str(r.count)] = counts.get(str(r.count), 0) + 1
    summary.update({"clips": len(rows), "clips_per_count": counts})
    return rows, summary


def run(args) -> int:
    import json

    from ..errors import AVStudioError, DataError
    from ..progress import tqdm_progress
    from ..train import distributed as D
    from ..train.trainer import TrainConfig, Trainer

    rows, summary = rows_from_args(args)

    method = args.method
    if method is None and args.init:
        from ..nets.checkpoint import load_model

        method = "avin" if load_model(args.init).kind == "avin" else "hsa"
    method = method or "hsa"
    if method != "avin" and (args.visual_trunk != "conv" or args.frame_size is not None):
        raise AVStudioError("--visual-trunk and --frame-size are for --method avin")
    if args.visual_weights and args.visual_trunk != "resnet18":
        raise AVStudioError("--visual-weights initialises a ResNet-18 trunk: add --visual-trunk resnet18")
    if args.frame_size is not None and not 32 <= args.frame_size <= 1024:
        raise AVStudioError("--frame-size must be between 32 and 1024")
    moments = args.moments if args.moments is not None else (1 if method == "avin" else 2)
    if moments < 1:
        raise AVStudioError("--moments must be >= 1")
    if args.trunk_lr_scale != 1.0 and method != "avin":
        raise AVStudioError("--trunk-lr-scale is for --method avin")
    if not args.trunk_lr_scale > 0:
        raise AVStudioError("--trunk-lr-scale must be > 0")
    if args.visual_init and (method != "avin" or args.visual_trunk != "conv" or args.visual_weights):
        raise AVStudioError("--visual-init is for --method avin with the conv trunk (and without --visual-weights)")
    tcfg = TrainConfig(method=method, visual_weights=args.visual_weights, visual_init=args.visual_init,
                       moments=moments, trunk_lr_scale=args.trunk_lr_scale, stages=args.stages, epochs=args.epochs, batch_clips=args.batch_clips,
                       clip_repeats=args.clip_repeats, lr=args.lr, seed=args.seed,
                       alignment=args.alignment, counter_epochs=args.counter_epochs,
                       max_minutes=args.max_minutes, device=args.device, threads=args.threads,
                       curriculum=not args.no_curriculum, num_workers=args.workers,
                       stage_lr=args.stage_lr, replay=args.replay,
                       gather_negatives=not args.local_negatives)
    info = D.from_env()
    if getattr(args, "json_progress", False) and info.is_main:
        from ..train.job import JsonLinesProgress

        progress = JsonLinesProgress(sys.stdout)
    else:
        progress = tqdm_progress(disable=args.quiet or not info.is_main or getattr(args, "json_progress", False))
    val_fn = None
    if args.val_data:
        from ..analysis.evaluate import make_val_fn

        val_fn = make_val_fn(args.val_data)  # samples read with the trained model's input settings
    command = "avstudio " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else None
    from ..nets.config import default_config

    overrides = arch_overrides(args.arch_set)
    objective = None
    if method == "avin":
        from ..nets.avin import AVIN_ARCHS, avin_config

        if args.arch not in AVIN_ARCHS:
            raise AVStudioError(f"--arch {args.arch} is a clustering-model architecture; AVIN has "
                                f"{' and '.join(AVIN_ARCHS)}")
        if overrides:
            raise AVStudioError("--arch-set is for the clustering model (AVIN: --visual-trunk, --frame-size)")
        extra = {"frame_size": args.frame_size} if args.frame_size else {}
        model_cfg = None if args.init else avin_config(args.arch, visual_trunk=args.visual_trunk, **extra)
    else:
        if args.init and overrides:
            allowed = {"bg_negatives", "temperature", "heat_temperature"}
            bad = sorted(set(overrides) - allowed)
            if bad:
                raise DataError(f"--arch-set {bad[0]} cannot change a model given with --init (only "
                                f"{', '.join(sorted(allowed))}: how it is trained, not its architecture)")
            objective = overrides
        model_cfg = None if args.init else default_config(args.arch, alignment=args.alignment, **overrides)
    trainer = Trainer(rows, args.out, tcfg, model_cfg=model_cfg, init=args.init, progress=progress, val_fn=val_fn,
                      command=command, data_summary=summary, objective=objective)
    try:
        res = trainer.run()
    finally:
        progress.close()
        D.cleanup(info)
    if info.is_main:
        last = res.history[-1] if res.history else {}
        print(json.dumps({"model": str(res.model_path), "resumed": res.resumed,
                          "already_done": res.already_done, "skipped_clips": len(res.skipped_clips),
                          "last_epoch": last}, indent=None if getattr(args, "json_progress", False) else 2),
              flush=True)
    return 0
