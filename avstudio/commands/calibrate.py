"""`avstudio calibrate MODEL --val-data DIR`: choose the heatmap temperature on validation clips.

A heatmap is ``exp((cos - max cos) / T)`` over the frame (1 at the best position); the region
the metrics (and the app's outline) call "the sound" is where the min-max normalised map
reaches 0.5, so T decides how far around its peak a sound spreads. T is chosen on a
validation split (never on the test split): the value with the best mean cIoU@0.5 over the
levels asked for. ``--write`` stores it in the model's JSON card (the weights are unchanged).
"""

from __future__ import annotations

import argparse
import json


def _floats(text: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers") from None
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError("temperatures must be > 0")
    return vals


def _ints(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of whole numbers") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError("levels are source counts >= 1")
    return vals


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("calibrate", help="choose the heatmap temperature on validation clips",
                       description=__doc__.split("\n\n", 1)[1])
    p.add_argument("model", metavar="MODEL", help="a model file or folder (its localizer is calibrated)")
    p.add_argument("--val-data", required=True, help="a synth folder of validation clips (not the test split)")
    p.add_argument("--levels", type=_ints, default=None, help="source counts to score (default: all present)")
    p.add_argument("--temperatures", type=_floats, default=[0.1, 0.2, 0.3, 0.5, 0.8, 1.5],
                   help="candidates (default 0.1,0.2,0.3,0.5,0.8,1.5)")
    p.add_argument("--frames", type=int, default=2, help="moments per clip (default 2)")
    p.add_argument("--max-clips", type=int, default=60, help="clips per level (default 60)")
    p.add_argument("--write", action="store_true", help="store the chosen temperature in the model's card")
    p.add_argument("--threads", type=int, default=None)
    return p


def run(args) -> int:
    import torch

    from ..analysis import metrics as M
    from ..analysis.evaluate import load_samples, localization_scores
    from ..data.manifest import find_manifest, read_manifest
    from ..errors import DataError
    from ..nets.checkpoint import load_model
    from ..nets.files import card_path, load_tensors, model_files

    if args.threads:
        torch.set_num_threads(args.threads)
    bundle = load_model(args.model)
    if bundle.av is None:
        raise DataError(f"{args.model}: holds no clustering-alignment localizer to calibrate")
    av = bundle.av.eval()
    levels = args.levels or sorted({r.count for r in read_manifest(find_manifest(args.val_data))
                                    if r.count and r.count >= 1})
    samples = []
    for lv in levels:
        samples += load_samples(args.val_data, av.cfg, args.frames, levels=[lv], max_clips=args.max_clips)
    if not samples:
        raise DataError(f"{args.val_data}: no clip of levels {levels} to calibrate on")
    table = {}
    before = av.cfg.heat_temperature
    for T in args.temperatures:
        av.cfg.heat_temperature = float(T)
        r = localization_scores(av, samples, baselines=False)
        table[T] = {lv: r[lv]["model"][M.PRIMARY]["ciou@0.5"] for lv in r}
    av.cfg.heat_temperature = before
    score = {T: sum(v.values()) / max(1, len(v)) for T, v in table.items()}
    best = max(score, key=lambda T: (score[T], -abs(T - before)))
    lv_names = sorted({lv for v in table.values() for lv in v})
    print(f"cIoU@0.5 on {args.val_data} ({len(samples)} samples), binarised at {M.PRIMARY}:")
    print("T       " + "  ".join(f"{lv:>6s}" for lv in lv_names) + "    mean")
    for T in args.temperatures:
        mark = "  <- best" if T == best else ("  (current)" if T == before else "")
        print(f"{T:<7g} " + "  ".join(f"{table[T].get(lv, float('nan')):6.3f}" for lv in lv_names)
              + f"  {score[T]:6.3f}{mark}")
    if args.write:
        target = None
        for f in model_files(args.model):
            _, card = load_tensors(f)
            if "av" in card.get("components", {}):
                target = f
                break
        if target is None:
            raise DataError(f"{args.model}: no file with a localizer card to write")
        cp = card_path(target)
        card = json.loads(cp.read_text(encoding="utf-8"))
        card["components"]["av"]["config"]["heat_temperature"] = float(best)
        card["calibration"] = {"heat_temperature": float(best), "val_data": str(args.val_data),
                               "levels": levels, "samples": len(samples),
                               "ciou@0.5": {str(T): v for T, v in table.items()}}
        tmp = cp.with_name(cp.name + ".tmp")
        tmp.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        tmp.replace(cp)
        print(f"wrote heat_temperature {best:g} into {cp}")
    return 0
