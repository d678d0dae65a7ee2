"""`avstudio library`: manage a clip library (SQLite) of clips and source-count annotations.

    avstudio library init LIB
    avstudio library import LIB PATH...          folders, manifest .csv files or media files
    avstudio library list LIB [--unannotated] [--stage C1] [--json]
    avstudio library annotate LIB CLIP_PATH_OR_ID COUNT [--unsure] [--who NAME]
    avstudio library export LIB OUT.csv|OUT.json [--all]
    avstudio library stats LIB [--json]
    avstudio library check LIB

See docs/library.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..errors import DataError

HELP = "manage a clip library: import clips and manifests, annotate source counts, export"


def register(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("library", help=HELP, description=HELP)
    lsub = p.add_subparsers(dest="library_command", metavar="ACTION")

    q = lsub.add_parser("init", help="create a library file (or migrate an existing one)")
    q.add_argument("lib", metavar="LIB", help="library file, e.g. clips.avlib")

    q = lsub.add_parser("import", help="add clips from folders, manifest CSVs or media files")
    q.add_argument("lib", metavar="LIB")
    q.add_argument("paths", metavar="PATH", nargs="+",
                   help="a folder (every file FFmpeg reads as a video; the others are listed as "
                        "skipped, with why), a manifest .csv (path,count), or a video file")
    q.add_argument("--no-recursive", dest="recursive", action="store_false",
                   help="only the top level of folders")
    q.add_argument("--who", default="manifest",
                   help="annotator recorded for manifest counts without a 'who' column "
                        "(default: manifest)")
    q.add_argument("--create", action="store_true", help="create LIB if it does not exist")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    q = lsub.add_parser("list", help="list clips")
    q.add_argument("lib", metavar="LIB")
    g = q.add_mutually_exclusive_group()
    g.add_argument("--unannotated", action="store_const", const="unannotated", dest="filter",
                   help="only clips without annotation")
    g.add_argument("--annotated", action="store_const", const="annotated", dest="filter",
                   help="only annotated clips")
    g.add_argument("--unsure", action="store_const", const="unsure", dest="filter",
                   help="only clips annotated as unsure")
    g.add_argument("--missing", action="store_const", const="missing", dest="filter",
                   help="only clips whose file is missing")
    g.add_argument("--disagree", action="store_const", const="disagree", dest="filter",
                   help="only clips whose annotation and prediction differ")
    q.add_argument("--stage", metavar="CN", help="only clips of this stage, e.g. C1 (none: no stage)")
    q.add_argument("--search", metavar="TEXT", help="only clips whose path contains TEXT")
    q.add_argument("--sort", default="path",
                   help="path, id, added, duration, count, rate, margin (the counter's least certain "
                        "first), stage, annotated_at "
                        "(prefix - to reverse; default path)")
    q.add_argument("--limit", type=int, help="at most this many clips")
    q.add_argument("--json", action="store_true", help="print JSON (a list of clips)")

    q = lsub.add_parser("annotate", help="set the source count of a clip")
    q.add_argument("lib", metavar="LIB")
    q.add_argument("clip", metavar="CLIP_PATH_OR_ID", help="clip id (see list) or file path")
    q.add_argument("count", metavar="COUNT",
                   help="number of audible sources 0..16 (0: none audible), '?' for "
                        "\"can't tell\", or 'clear' to remove the annotation")
    q.add_argument("--unsure", action="store_true", help="mark the count as unsure")
    q.add_argument("--who", help="annotator name (default: your user name)")

    q = lsub.add_parser("export", help="write a manifest CSV or a full JSON dump")
    q.add_argument("lib", metavar="LIB")
    q.add_argument("out", metavar="OUT", help="OUT.csv (manifest: path,count,...) or OUT.json")
    q.add_argument("--all", action="store_true",
                   help="CSV: every clip, not only annotated ones (count empty when unknown)")
    q.add_argument("--relative", action="store_true",
                   help="CSV: paths relative to the CSV's folder")

    q = lsub.add_parser("stats", help="how many clips, annotations, stages")
    q.add_argument("lib", metavar="LIB")
    q.add_argument("--json", action="store_true", help="print JSON")

    q = lsub.add_parser("refresh", help="flag clips whose file is gone; re-find moved files")
    q.add_argument("lib", metavar="LIB")
    q.add_argument("search", metavar="FOLDER", nargs="*",
                   help="folders to look in for moved files (matched by content hash)")

    q = lsub.add_parser("boxes", help="box annotations (where each sound is): import, export, list, set",
                        description="Box annotations: import or export them in the VGG-SS JSON, "
                                    "SoundNet-Flickr XML or AV Studio JSON layout, list or set them. "
                                    "See docs/boxes.md.")
    bsub = q.add_subparsers(dest="boxes_command", metavar="ACTION")
    b = bsub.add_parser("import", help="read a box file (VGG-SS .json, Flickr .xml or folder, AV Studio .json)")
    b.add_argument("lib", metavar="LIB")
    b.add_argument("file", metavar="FILE", help="box file, or a folder of SoundNet-Flickr .xml files")
    b.add_argument("--format", choices=("vggss", "flickr", "avstudio"),
                   help="the file's layout (default: recognised from its content)")
    b.add_argument("--who", help="annotator recorded for boxes that name none (default: your user name)")
    b.add_argument("--base", metavar="DIR",
                   help="AV Studio JSON: relative clip paths are relative to DIR (default: the file's folder)")
    b = bsub.add_parser("export", help="write the boxes (VGG-SS .json, Flickr folder, AV Studio .json)")
    b.add_argument("lib", metavar="LIB")
    b.add_argument("out", metavar="OUT", help="OUT.json, or a folder for SoundNet-Flickr .xml files")
    b.add_argument("--format", choices=("vggss", "flickr", "avstudio"),
                   help="layout (default: AV Studio JSON for .json, SoundNet-Flickr for a folder)")
    b.add_argument("--relative", action="store_true",
                   help="AV Studio JSON: clip paths relative to the JSON's folder")
    b.add_argument("--base", metavar="DIR", help="AV Studio JSON: clip paths relative to DIR")
    b = bsub.add_parser("list", help="annotated frames and their boxes")
    b.add_argument("lib", metavar="LIB")
    b.add_argument("clip", metavar="CLIP_PATH_OR_ID", nargs="?", help="one clip (default: every clip)")
    b.add_argument("--json", action="store_true", help="print JSON")
    b = bsub.add_parser("set", help="set the boxes of one frame of a clip (no --box: remove them)")
    b.add_argument("lib", metavar="LIB")
    b.add_argument("clip", metavar="CLIP_PATH_OR_ID")
    g = b.add_mutually_exclusive_group(required=True)
    g.add_argument("--frame", type=int, help="frame index (0-based)")
    g.add_argument("--time", type=float, help="time in seconds (the frame shown then)")
    b.add_argument("--box", dest="boxes", metavar="BOX", action="append", default=[],
                   help="x0,y0,x1,y1 in 0..1 of the frame, optionally :SOURCE and :LABEL "
                        "(e.g. 0.1,0.2,0.5,0.9:1:dog); repeat for several boxes")
    b.add_argument("--who", help="annotator name (default: your user name)")
    q.set_defaults(_boxes_parser=q)
    q = lsub.add_parser("check", help="SQLite's consistency checks of the library file")
    q.add_argument("lib", metavar="LIB")

    p.set_defaults(_library_parser=p)
    return p


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "library_command", None)
    if not action:
        args._library_parser.print_help(sys.stderr)
        return 2
    return {"init": _init, "import": _import, "list": _list, "annotate": _annotate,
            "export": _export, "stats": _stats, "refresh": _refresh, "boxes": _boxes,
            "check": _check}[action](args)


def _open(path: str, create: bool = False):
    from ..data.library import ClipLibrary

    return ClipLibrary(path, create=create)


def _init(args: argparse.Namespace) -> int:
    existed = os.path.exists(args.lib)
    with _open(args.lib, create=True) as lib:
        n = len(lib)
        what = "opened existing" if existed else "created"
        print(f"{what} library {lib.path} (schema v{lib.schema_version}, {n} clips)")
    return 0


def _import(args: argparse.Namespace) -> int:
    from ..data.library import ImportReport, summarize_skipped
    from ..progress import tqdm_progress

    # check every path before touching the library, so a typo changes nothing
    kinds = []
    for p in args.paths:
        if os.path.isdir(p):
            kinds.append("folder")
        elif os.path.isfile(p) and p.lower().endswith(".csv"):
            kinds.append("manifest")
        elif os.path.isfile(p):
            kinds.append("file")  # any file FFmpeg reads as a video
        elif not os.path.exists(p):
            raise DataError(f"{p} does not exist")
        else:
            raise DataError(f"{p} is neither a folder, a manifest .csv nor a file")
    progress = tqdm_progress(disable=args.quiet or not sys.stderr.isatty(), leave=False)
    total = ImportReport()
    try:
        with _open(args.lib, create=args.create) as lib:
            for p, kind in zip(args.paths, kinds, strict=True):
                if kind == "folder":
                    rep = lib.import_folder(p, recursive=args.recursive, progress=progress)
                elif kind == "manifest":
                    rep = lib.import_manifest(p, who=args.who, progress=progress)
                else:
                    rep = lib.import_files([p], progress=progress)
                    rep.failed.extend(rep.not_media)  # a file asked for by name that is no video
                    rep.not_media = []
                progress.close()
                total.merge(rep)
    finally:
        progress.close()
    for path, reason in total.failed:
        print(f"not imported: {path}: {reason}", file=sys.stderr)
    for line in summarize_skipped(total.not_media):
        print(f"skipped, not videos: {line}", file=sys.stderr)
    parts = [f"added {total.added}", f"already there {total.skipped}"]
    if total.relinked:
        parts.append(f"moved files re-found {total.relinked}")
    if total.annotated:
        parts.append(f"annotations {total.annotated}")
    parts.append(f"failed {len(total.failed)}")
    if total.not_media:
        parts.append(f"not videos {len(total.not_media)}")
    print(", ".join(parts))
    return 1 if total.failed else 0


def _fmt(x: Any, spec: str = "") -> str:
    if x is None:
        return "-"
    return format(x, spec) if spec else str(x)


def _list(args: argparse.Namespace) -> int:
    with _open(args.lib) as lib:
        rows = lib.clips(args.filter, order_by=args.sort, stage=args.stage, search=args.search,
                         limit=args.limit)
    if args.json:
        json.dump([r.to_dict() for r in rows], sys.stdout, indent=1)
        print()
        return 0
    print(f"{'id':>5} {'stage':>5} {'count':>5} {'pred':>4} {'rate':>5} {'dur':>6}  path")
    for r in rows:
        count = _fmt(r.count) if r.annotated else ""
        if r.annotated and r.count is None:
            count = "?"
        if r.unsure:
            count += "~"
        flag = "  [missing]" if r.missing else ""
        print(f"{r.id:>5} {_fmt(r.stage):>5} {count:>5} {_fmt(r.predicted_count):>4} "
              f"{_fmt(r.predicted_rate, '.2f'):>5} {_fmt(r.duration, '.1f'):>6}  {r.path}{flag}")
    print(f"{len(rows)} clips", file=sys.stderr)
    return 0


def _annotate(args: argparse.Namespace) -> int:
    from ..data.library import parse_count

    text = args.count.strip().lower()
    with _open(args.lib) as lib:
        clip = lib.resolve(args.clip)
        if text == "clear":
            lib.clear_annotation(clip.id, who=args.who)
        else:
            count = parse_count(args.count, "COUNT")
            lib.annotate(clip.id, count, unsure=args.unsure, who=args.who)
        row = lib.get(clip.id)
    if not row.annotated:
        print(f"clip {row.id} ({row.path}): annotation cleared")
    else:
        c = "?" if row.count is None else row.count
        print(f"clip {row.id} ({row.path}): count {c}{' (unsure)' if row.unsure else ''}"
              f" by {row.annotated_by}")
    return 0


def _export(args: argparse.Namespace) -> int:
    ext = os.path.splitext(args.out)[1].lower()
    if ext not in (".csv", ".json"):
        raise DataError(f"{args.out}: export to a .csv (manifest) or a .json file")
    with _open(args.lib) as lib:
        if ext == ".csv":
            n = lib.export_csv(args.out, annotated_only=not args.all, relative=args.relative)
        else:
            n = lib.export_json(args.out)
    print(f"wrote {n} clips to {args.out}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    with _open(args.lib) as lib:
        s = lib.stats()
    if args.json:
        print(json.dumps(s, indent=1))
        return 0
    print(f"library        {s['library']} (schema v{s['schema_version']})")
    print(f"clips          {s['clips']} ({s['hours']:.2f} h), missing files {s['missing']}")
    print(f"annotated      {s['annotated']} (unsure {s['unsure']}, can't tell {s['unknown']}), "
          f"unannotated {s['unannotated']}")
    print(f"predicted      {s['predicted']} (disagreeing with the annotation {s['disagree']})")
    print(f"runs           {s['runs']}")
    stages = ", ".join(f"{k}: {v}" for k, v in s["stages"].items()) or "-"
    print(f"stages         {stages}")
    print(f"boxes          {s['boxes']} on {s['box_frames']} frames of {s['box_clips']} clips")
    return 0


# ---------------------------------------------------------------- boxes


def _boxes(args: argparse.Namespace) -> int:
    action = getattr(args, "boxes_command", None)
    if not action:
        args._boxes_parser.print_help(sys.stderr)
        return 2
    return {"import": _boxes_import, "export": _boxes_export, "list": _boxes_list,
            "set": _boxes_set}[action](args)


def _boxes_import(args: argparse.Namespace) -> int:
    from ..data.box_formats import import_boxes

    if not os.path.exists(args.file):
        raise DataError(f"box file {args.file} does not exist")
    with _open(args.lib) as lib:
        rep = import_boxes(lib, args.file, fmt=args.format, who=args.who, base=args.base)
    for where, reason in rep.skipped:
        print(f"not imported: {where}: {reason}", file=sys.stderr)
    print(f"frames written {rep.frames}, unchanged {rep.unchanged}, boxes {rep.boxes}, "
          f"clips {rep.clips}, skipped {len(rep.skipped)}")
    return 1 if rep.skipped else 0


def _boxes_export(args: argparse.Namespace) -> int:
    from ..data.box_formats import export_boxes

    with _open(args.lib) as lib:
        fmt, n = export_boxes(lib, args.out, fmt=args.format, relative=args.relative, base=args.base)
    name = {"vggss": "VGG-SS JSON", "flickr": "SoundNet-Flickr XML", "avstudio": "AV Studio JSON"}[fmt]
    print(f"wrote {n} annotated frames to {args.out} ({name})")
    return 0


def _boxes_list(args: argparse.Namespace) -> int:
    with _open(args.lib) as lib:
        if args.clip:
            c = lib.resolve(args.clip)
            items = [(c, lib.box_frames(c.id))]
        else:
            frames = lib.all_box_frames()
            items = [(c, frames[c.id]) for c in lib.clips(order_by="path") if c.id in frames]
    if args.json:
        json.dump([{"clip_id": c.id, "path": c.path, "frames": [f.to_dict() for f in fr]}
                   for c, fr in items], sys.stdout, indent=1)
        print()
        return 0
    for c, frames in items:
        print(f"clip {c.id} ({c.path}): {len(frames)} annotated frames")
        for f in frames:
            bx = "  ".join(
                "[" + ", ".join(f"{v:.3f}" for v in b.as_list()) + "]"
                + (f" source {b.source}" if b.source else "") + (f" {b.label}" if b.label else "")
                for b in f.boxes)
            print(f"  frame {f.frame:>6} {f.time:8.3f} s  {f.map_rule:<9} {bx}")
    return 0


def _parse_box_arg(text: str, i: int):
    from ..data.boxes import make_box

    parts = text.split(":", 2)
    nums = parts[0].split(",")
    if len(nums) != 4:
        raise DataError(f"--box {text!r} is not x0,y0,x1,y1[:SOURCE[:LABEL]]")
    source = parts[1] if len(parts) > 1 and parts[1] else None
    label = parts[2] if len(parts) > 2 else None
    return make_box(*nums, source=source, label=label, what=f"--box {text}")


def _frame_and_time(clip: Any, frame: Any, time: Any) -> tuple[int, float]:
    """(frame index, seconds) as the app and the evaluation see them: from the file itself when
    it can be read (its video may start after the container's time 0), else from fps alone."""
    from ..errors import MediaError

    if time is not None and time < 0:
        raise DataError(f"--time {time} is negative")
    start, fps = 0.0, clip.fps
    try:
        from ..media.probe import probe

        info = probe(clip.path, check=False)
        start, fps = float(info.video_start or 0.0), info.fps or clip.fps
    except (MediaError, OSError):
        pass
    if not fps:
        return (int(frame) if frame is not None else 0), (float(time) if time is not None else 0.0)
    if frame is None:
        frame = max(0, int(round((float(time) - start) * float(fps))))
    return int(frame), start + int(frame) / float(fps)


def _boxes_set(args: argparse.Namespace) -> int:
    boxes = [_parse_box_arg(t, i + 1) for i, t in enumerate(args.boxes)]
    with _open(args.lib) as lib:
        c = lib.resolve(args.clip)
        frame, t = _frame_and_time(c, args.frame, args.time)
        lib.set_frame_boxes(c.id, frame, t, boxes, who=args.who)
    if boxes:
        print(f"clip {c.id} ({c.path}) frame {frame} ({t:.3f} s): {len(boxes)} boxes")
    else:
        print(f"clip {c.id} ({c.path}) frame {frame} ({t:.3f} s): boxes removed")
    return 0


def _refresh(args: argparse.Namespace) -> int:
    with _open(args.lib) as lib:
        rep = lib.refresh_missing(args.search or None)
    for old, new in rep.relinked:
        print(f"moved: {old} -> {new}")
    for path in rep.missing:
        print(f"missing: {path}")
    print(f"present {rep.present}, re-found {len(rep.relinked)}, missing {len(rep.missing)}")
    return 0


def _check(args: argparse.Namespace) -> int:
    with _open(args.lib) as lib:
        problems = lib.check()
    if not problems:
        print(f"library {lib.path}: ok (integrity and references checked)")
        return 0
    for line in problems:
        print(line)
    print(f"library {lib.path}: {len(problems)} problem(s) found", file=sys.stderr)
    return 1
