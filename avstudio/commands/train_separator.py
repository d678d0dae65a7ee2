"""`avstudio train-separator`: mix-and-separate training of the visually-guided separator."""

from __future__ import annotations

import argparse
import shlex
import sys


def _ints(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v < 1 or v > 4 for v in vals):
        raise argparse.ArgumentTypeError("stages are source counts 1..4, e.g. 1,2")
    return vals


def register(sub):
    p = sub.add_parser(
        "train-separator", help="train the visually-guided separator (mix-and-separate, solos then duets)",
        description="Train the separator in the visual space of a frozen AV model (--av-model): mixtures of "
                    "two clips, each source recovered from its own aligned visual vector; stage C1 mixes two "
                    "solo clips, C2 two duets (k = 2). Writes RUN_DIR/separator.safetensors (+ .json card) "
                    "and RUN_DIR/model/ (the AV model + the separator: a complete MODEL folder). Re-running "
                    "the same command resumes an interrupted run.")
    p.add_argument("--av-model", required=True, help="MODEL (file or folder) whose visual vectors condition the separator")
    p.add_argument("--out", required=True, help="run folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", help="CSV with path,count (stems from the synthetic sidecars)")
    src.add_argument("--synth-seed", type=int, help="render synthetic clips on the fly with this seed")
    p.add_argument("--stages", type=_ints, default=[1, 2], help="source counts in order (default 1,2)")
    p.add_argument("--epochs", type=int, default=20, help="epochs per stage (default 20)")
    p.add_argument("--steps", type=int, default=60, help="optimizer steps per epoch (default 60)")
    p.add_argument("--batch", type=int, default=8, help="mixtures per step (default 8)")
    p.add_argument("--pool", type=int, default=32, help="clips per epoch (default 32)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--mask", choices=["ratio", "binary"], default="ratio", help="mask kind (default ratio)")
    p.add_argument("--loss", choices=["snr", "mask"], default="snr",
                   help="snr: on the separated waveforms (default); mask: Sound-of-Pixels' loss on the mask")
    p.add_argument("--later-stages", choices=["same", "mixed"], default="same",
                   help="stages k > 1: mix two clips of count k (same, default) or alternate a count-k clip "
                        "+ a solo with two solos (mixed)")
    p.add_argument("--head", type=int, default=None, help="hidden units of the conditioned head (0: linear head)")
    p.add_argument("--max-minutes", type=float, default=None, help="time budget shared out over the stages")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--val-mixtures", type=int, default=12, help="held-out mixtures scored after each epoch")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def run(args) -> int:
    import json

    from ..errors import AVStudioError
    from ..progress import tqdm_progress
    from ..train.separation import SeparatorTrainer, SepTrainConfig

    for name in ("epochs", "steps", "batch"):
        if getattr(args, name) < 1:
            raise AVStudioError(f"--{name} must be at least 1")
    if args.pool < 2:
        raise AVStudioError("--pool must be at least 2 (a mixture needs two clips)")
    rows = None
    if args.manifest:
        from ..data.manifest import read_manifest

        rows = read_manifest(args.manifest)
    tcfg = SepTrainConfig(stages=list(args.stages), epochs=args.epochs, steps=args.steps, batch=args.batch,
                          pool=args.pool, lr=args.lr, max_minutes=args.max_minutes, seed=args.seed,
                          device=args.device, threads=args.threads, val_mixtures=args.val_mixtures,
                          synth_seed=args.synth_seed, manifest=args.manifest, loss=args.loss,
                          later_stages=args.later_stages)
    command = "avstudio " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else None
    progress = tqdm_progress(disable=args.quiet)
    try:
        trainer = SeparatorTrainer(args.av_model, args.out, tcfg, rows=rows, progress=progress,
                                   command=command, sep_overrides={"mask": args.mask, **(
                                       {} if args.head is None else {"head_hidden": args.head})})
        res = trainer.run()
    finally:
        progress.close()
    last = res.history[-1] if res.history else {}
    print(json.dumps({"separator": str(res.model_path), "model_folder": str(res.run_dir / "model"),
                      "resumed": res.resumed, "already_done": res.already_done,
                      "skipped_clips": len(res.skipped_clips), "last_epoch": last}, indent=2))
    return 0


__all__ = ["register", "run"]
