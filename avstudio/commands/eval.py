"""`avstudio eval`: localization, separation and counting with baselines, as JSON.

Three sources of ground truth: a synthetic benchmark folder (``--data``), the box annotations
of a clip library (``--library``), or a public test set in the layout it is distributed in
(``--testset DIR --format vggss|flickr``). Several ``--model`` flags score every model (either
kind: the clustering model or AVIN) on the same frames; the table goes to stderr (and to
``--table FILE``). With ``--data`` the table is per level (C2+: per source and against the union
of the sounding objects, see docs/avin.md).
"""

from __future__ import annotations


def register(sub):
    p = sub.add_parser(
        "eval", help="evaluate a model: on a synth folder, a library's boxes or a VGG-SS/Flickr test set",
        description="Scores a model with the baselines, as JSON on stdout. --data: a held-out folder made by "
                    "`avstudio synth` (localization, separation, counting). --library: every frame with boxes "
                    "in a clip library (docs/boxes.md). --testset DIR --format vggss|flickr: a test set laid "
                    "out as distributed (frames/ID.jpg, audio/ID.wav, the box file). Give --model several times "
                    "to score several models (either kind) on the same frames; a table (--data: per level; "
                    "boxes: per clip and overall) is printed on stderr.")
    p.add_argument("--model", action="append", default=None,
                   help="MODEL file or folder (default: the shipped model); repeat to score several models "
                        "on the same frames")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="benchmark folder made by `avstudio synth` (other seeds)")
    src.add_argument("--library", metavar="LIB", help="clip library: score every frame that has boxes")
    src.add_argument("--testset", metavar="DIR", help="a VGG-SS or SoundNet-Flickr test set folder")
    p.add_argument("--format", choices=("vggss", "flickr"), help="the --testset's layout")
    p.add_argument("--boxes", metavar="FILE",
                   help="--testset: the box file (default: the folder's one .json for vggss, Annotations/ for flickr)")
    p.add_argument("--frames-per-clip", type=int, default=4, help="--data: frames scored per clip")
    p.add_argument("--max-clips", type=int, default=None, help="--data: at most this many clips")
    p.add_argument("--no-separation", action="store_true", help="--data: skip separation")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="also write the JSON to this file")
    p.add_argument("--table", default=None, help="also write the comparison table (Markdown) here (--data: "
                                                 "with two or more --model)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no table on stderr")
    return p


def run(args) -> int:
    import json
    import sys

    from ..errors import AVStudioError
    from ..nets.checkpoint import load_model
    from ..progress import tqdm_progress

    models = args.model or [None]
    if args.data is not None:
        if args.format or args.boxes:
            raise AVStudioError("--format and --boxes go with --testset")
        if args.table and len(models) < 2:
            raise AVStudioError("--table with --data needs two or more --model")
    if args.testset is not None and not args.format:
        raise AVStudioError("--testset needs --format vggss or --format flickr")
    if args.library is not None and (args.format or args.boxes):
        raise AVStudioError("--format and --boxes go with --testset (a library knows its boxes)")
    _check_source(args)
    bundles = [load_model(m, device=args.device) for m in models]
    progress = tqdm_progress(disable=args.quiet, leave=False)
    try:
        if args.data is not None and len(bundles) == 1:
            from ..analysis.evaluate import evaluate

            res = evaluate(bundles[0], args.data, frames_per_clip=args.frames_per_clip, max_clips=args.max_clips,
                           separation=not args.no_separation, progress=progress)
        elif args.data is not None:  # several models on the same samples, one table per level
            from ..analysis.evaluate import compare

            res = compare(bundles, args.data, frames_per_clip=args.frames_per_clip, max_clips=args.max_clips,
                          separation=not args.no_separation, progress=progress)
            for m, r in zip(models, res["models"], strict=True):
                r["path"] = m
        else:
            res = _boxes(args, bundles, models, progress)
    finally:
        progress.close()
    table = res.pop("table", None) if isinstance(res, dict) else None
    text = json.dumps(res, indent=2)
    if args.out:
        _write(args.out, text + "\n")
    if table is not None:
        if args.table:
            _write(args.table, table)
        if not args.quiet:
            print(table, file=sys.stderr)
    print(text)
    return 0


def _write(path: str, text: str) -> None:
    from ..errors import AVStudioError

    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise AVStudioError(f"cannot write {path}: {exc.strerror or exc}") from None


def _check_source(args) -> None:
    import os

    from ..errors import DataError

    if args.library is not None and not os.path.isfile(args.library):
        raise DataError(f"library {args.library} does not exist" if not os.path.exists(args.library)
                        else f"library {args.library} is not a file")
    if args.testset is not None and not os.path.isdir(args.testset):
        raise DataError(f"test set {args.testset} is not a folder")
    if args.boxes is not None and not os.path.exists(args.boxes):
        raise DataError(f"box file {args.boxes} does not exist")


def _boxes(args, bundles, models, progress) -> dict:
    import os

    from ..analysis.box_eval import evaluate_boxes, library_samples, testset_samples

    paths = [m for m in models]
    if args.library is not None:
        from ..data.library import ClipLibrary

        with ClipLibrary(args.library, create=False) as lib:
            return evaluate_boxes(bundles, lambda cfg: library_samples(lib, cfg, progress=progress),
                                  {"library": os.path.abspath(args.library)}, paths=paths, progress=progress)
    return evaluate_boxes(
        bundles, lambda cfg: testset_samples(args.testset, args.format, cfg, args.boxes, progress=progress),
        {"testset": os.path.abspath(args.testset), "format": args.format,
         "boxes": os.path.abspath(args.boxes) if args.boxes else None}, paths=paths, progress=progress)
