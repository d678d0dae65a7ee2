"""`avstudio eval`: localization, separation and counting with baselines, as JSON."""

from __future__ import annotations


def register(sub):
    p = sub.add_parser("eval", help="evaluate a model on a held-out synth folder (JSON with baselines)")
    p.add_argument("--model", default=None, help="MODEL file or folder (default: the shipped model)")
    p.add_argument("--data", required=True, help="benchmark folder made by `avstudio synth` (other seeds)")
    p.add_argument("--frames-per-clip", type=int, default=4)
    p.add_argument("--max-clips", type=int, default=None)
    p.add_argument("--no-separation", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="also write the JSON to this file")
    p.add_argument("--quiet", action="store_true")
    return p


def run(args) -> int:
    import json

    from ..analysis.evaluate import evaluate
    from ..nets.checkpoint import load_model
    from ..progress import tqdm_progress

    bundle = load_model(args.model, device=args.device)
    progress = tqdm_progress(disable=args.quiet, leave=False)
    try:
        res = evaluate(bundle, args.data, frames_per_clip=args.frames_per_clip, max_clips=args.max_clips,
                       separation=not args.no_separation, progress=progress)
    finally:
        progress.close()
    text = json.dumps(res, indent=2)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    print(text)
    return 0
