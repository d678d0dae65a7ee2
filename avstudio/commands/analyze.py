"""`avstudio analyze`: heatmaps per sound cluster (and stems) for a whole clip."""

from __future__ import annotations


def register(sub):
    p = sub.add_parser("analyze", help="heatmaps (and separated stems) for every frame of a video",
                       description="Writes DIR/heatmaps.npz (heatmaps [T,K,h,w] in 0..1, times [T]), "
                                   "DIR/stems/<k>.wav and DIR/summary.json. A clip with no audio track "
                                   "or a silent one has no sound cluster: K = 0, no stems, and a note "
                                   "in summary.json.")
    p.add_argument("video")
    p.add_argument("--model", default=None, help="MODEL file or folder (default: the shipped model)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--k", type=int, default=None,
                   help="number of sound clusters (default: the counter's estimate; a clip without "
                        "sound has none whatever is asked)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=32, help="frames per batch")
    p.add_argument("--no-stems", action="store_true", help="skip source separation")
    p.add_argument("--quiet", action="store_true")
    return p


def run(args) -> int:
    import json
    import sys

    from ..errors import AVStudioError
    from ..media._common import open_input

    # a missing, empty or unreadable video is refused before torch is imported and the model
    # loaded (seconds on a busy machine); analyze_clip's probe does the deeper checks
    open_input(args.video).close()

    from ..analysis.localize import analyze_clip
    from ..nets.checkpoint import load_model
    from ..progress import tqdm_progress

    if args.k is not None and not 1 <= args.k <= 6:
        raise AVStudioError("--k must be between 1 and 6")
    from pathlib import Path

    from ..analysis.npzstream import NpzStreamWriter

    bundle = load_model(args.model, device=args.device)
    progress = tqdm_progress(disable=args.quiet)
    try:
        # the per-frame maps stream to heatmaps.npz as they come: memory stays flat however
        # long the clip; nothing is left behind if the analysis fails or is interrupted
        with NpzStreamWriter(Path(args.out) / "heatmaps.npz", progress=progress) as sink:
            res = analyze_clip(bundle, args.video, k=args.k, batch=args.batch, progress=progress, sink=sink)
            extra = {}
            if bundle.separator is None and not args.no_stems and res.k > 0:
                # say it, rather than leave the user looking for stems that were never made
                extra = {"stems_note": "this model has no separator: no stems (a model with one, e.g. "
                                       "models/shapes, writes stems/<k>.wav)"}
            if bundle.separator is not None and not args.no_stems:
                from ..analysis.separate import write_stems

                extra = write_stems(bundle, args.video, res, args.out, progress=progress)
            out = res.save(args.out, extra_summary=extra)
    finally:
        progress.close()
    result = {"out": str(out), "k": res.k, "frames": int(len(res.times)), "timings": res.timings}
    if res.count_prediction is not None:
        result["count"] = res.count_prediction
    if res.note:
        result["note"] = res.note
        print(f"avstudio analyze: note: {res.note}", file=sys.stderr)
    if "stems_note" in extra:
        result["stems_note"] = extra["stems_note"]
        print(f"avstudio analyze: note: {extra['stems_note']}", file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0
