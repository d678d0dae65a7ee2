"""Box files in the field's two layouts and our own, read and written (Qt-free).

* **VGG-SS JSON** (VGG-Sound Source): a list of ``{"file": ID, "bbox": [[x0, y0, x1, y1], ...]}``
  with coordinates in 0..1 of the frame (the ``class`` key, when present, is the label); the
  ground truth is the union of the boxes. We add ``frame`` and ``time`` keys on export (readers
  of the original set ignore unknown keys); an entry without them means the clip's middle frame,
  the frame the set's annotators saw.
* **SoundNet-Flickr XML**: one ``ID.xml`` per sample; every ``<bbox>`` element holds, after one
  leading element, ``xmin ymin xmax ymax`` in pixels of the 256 x 256 frame; several annotators'
  boxes are summed into a consensus map (``map_rule="consensus"``). The evaluation code of the
  field reads the four numbers by position (it skips the first child), so we read the children
  by name when they are named ``xmin``... and by position otherwise, and write
  ``<annotator>``, ``<xmin>``, ``<ymin>``, ``<xmax>``, ``<ymax>`` in that order.
* **AV Studio JSON** (``{"format": "avstudio-boxes", "version": 1, "clips": [...]}``): every
  annotated frame with its exact index and time, map rule, annotator and date, and each box's
  source and label; clip paths absolute or relative to a base folder.

Every reader checks the whole file before anything is written: a file that is none of these,
a box outside the frame or without area, a frame past its clip's end raise :class:`DataError`
with one sentence naming the file, the entry and the value, and the library is left as it was.
"""

from __future__ import annotations

import json
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..dbguard import ensure_not_database
from ..errors import DataError
from .boxes import Box, BoxFrame, box_from_dict, check_rule, make_box

FORMATS = ("vggss", "flickr", "avstudio")
FLICKR_SIZE = 256  # SoundNet-Flickr boxes are pixels of a 256 x 256 frame
AVSTUDIO_FORMAT = "avstudio-boxes"
AVSTUDIO_VERSION = 1

_FRAME_SUFFIX = re.compile(r"^(.*)_f(\d{6})$")


@dataclass
class BoxRecord:
    """One annotated frame as a box file holds it (before it is matched to a library clip)."""

    key: str  # file id (VGG-SS / Flickr) or the clip's path (AV Studio JSON)
    boxes: list[Box]
    map_rule: str = "union"
    frame: Optional[int] = None  # None: the clip's middle frame
    time: Optional[float] = None
    who: Optional[str] = None
    where: str = ""  # for messages: "labels.json entry 3"
    path: Optional[str] = None  # AV Studio JSON: the clip's file, as written
    content_hash: Optional[str] = None


@dataclass
class BoxImportReport:
    frames: int = 0  # frames written (new revisions)
    unchanged: int = 0  # frames that already held these boxes
    boxes: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (entry, reason)
    clips: int = 0


# ---------------------------------------------------------------- detection


def detect_format(path: str | os.PathLike) -> str:
    """``"vggss"``, ``"flickr"`` or ``"avstudio"`` from a file's (or folder's) content."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"box file {p} does not exist")
    if p.is_dir():
        if any(f.suffix.lower() == ".xml" for f in p.iterdir()):
            return "flickr"
        raise DataError(f"{p} is a folder without SoundNet-Flickr .xml box files")
    if p.suffix.lower() == ".xml":
        return "flickr"
    data = _load_json(p)
    if isinstance(data, dict) and data.get("format") == AVSTUDIO_FORMAT:
        return "avstudio"
    if isinstance(data, list) and all(isinstance(e, dict) and "bbox" in e for e in data[:50]):
        return "vggss"
    raise DataError(f"{p} is not a box file AV Studio reads (VGG-SS JSON: a list of "
                    f"{{file, bbox}}; SoundNet-Flickr: .xml files; AV Studio: \"format\": "
                    f"\"{AVSTUDIO_FORMAT}\")")


def _load_json(p: Path) -> Any:
    ensure_not_database(p, "read as a box file", DataError)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{p} is not a box file AV Studio reads (not UTF-8 text)") from None
    except OSError as exc:
        raise DataError(f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DataError(f"{p} is not a box file AV Studio reads (not JSON: {exc})") from None


def _opt_int(v: Any, what: str) -> Optional[int]:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise DataError(f"{what}: {v!r} is not a frame index") from None
    if not f.is_integer() or f < 0:
        raise DataError(f"{what}: {v!r} is not a frame index (0, 1, 2, ...)")
    return int(f)


def _opt_time(v: Any, what: str) -> Optional[float]:
    if v is None:
        return None
    try:
        t = float(v)
    except (TypeError, ValueError):
        raise DataError(f"{what}: {v!r} is not a time in seconds") from None
    if not math.isfinite(t) or t < 0:
        raise DataError(f"{what}: {v!r} is not a time in seconds")
    return t


# ---------------------------------------------------------------- readers


def read_vggss(path: str | os.PathLike) -> list[BoxRecord]:
    p = Path(path)
    data = _load_json(p)
    if not isinstance(data, list):
        raise DataError(f"{p} is not a VGG-SS box file (it must be a JSON list of {{file, bbox}})")
    out = []
    for i, e in enumerate(data):
        where = f"{p.name} entry {i + 1}"
        if not isinstance(e, dict) or "file" not in e or "bbox" not in e:
            raise DataError(f"{where} is not {{\"file\": ..., \"bbox\": [[x0, y0, x1, y1], ...]}}")
        bb = e["bbox"]
        if not isinstance(bb, list) or not bb:
            raise DataError(f"{where} ({e['file']}): bbox must be a non-empty list of [x0, y0, x1, y1]")
        label = e.get("class")
        boxes = []
        for j, b in enumerate(bb):
            what = f"{where} ({e['file']}) box {j + 1}"
            if not isinstance(b, (list, tuple)) or len(b) != 4:
                raise DataError(f"{what} must be [x0, y0, x1, y1] in 0..1")
            boxes.append(make_box(*b, label=label, what=what))
        out.append(BoxRecord(key=str(e["file"]), boxes=boxes, map_rule="union",
                             frame=_opt_int(e.get("frame"), where), time=_opt_time(e.get("time"), where),
                             where=where))
    return out


def _flickr_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.suffix.lower() == ".xml" and f.is_file())
        if not files:
            raise DataError(f"{path} holds no SoundNet-Flickr .xml box files")
        return files
    return [path]


def _flickr_box(el: ET.Element, what: str) -> Box:
    kids = list(el)
    named = {c.tag.lower(): c for c in kids}
    ann = None
    if all(k in named for k in ("xmin", "ymin", "xmax", "ymax")):
        vals = [(named[k].text or "").strip() for k in ("xmin", "ymin", "xmax", "ymax")]
        rest = [c for c in kids if c.tag.lower() not in ("xmin", "ymin", "xmax", "ymax")]
        if rest and rest[0].text and rest[0].text.strip():
            ann = rest[0].text.strip()
    elif len(kids) == 5:  # the field's layout: one leading element, then the four numbers
        vals = [(c.text or "").strip() for c in kids[1:]]
        if kids[0].text and kids[0].text.strip():
            ann = kids[0].text.strip()
    elif len(kids) == 4:
        vals = [(c.text or "").strip() for c in kids]
    else:
        raise DataError(f"{what} has {len(kids)} elements; expected xmin, ymin, xmax, ymax")
    return make_box(*vals, annotator=ann, what=what, scale=FLICKR_SIZE)


def read_flickr(path: str | os.PathLike) -> list[BoxRecord]:
    out = []
    for f in _flickr_files(Path(path)):
        ensure_not_database(f, "read as a box file", DataError)
        try:
            root = ET.parse(f).getroot()
        except ET.ParseError as exc:
            raise DataError(f"{f} is not a SoundNet-Flickr box file (not XML: {exc})") from None
        except OSError as exc:
            raise DataError(f"cannot read {f}: {exc.strerror or exc}") from None
        bxs = [e for e in root.iter() if e.tag.lower() == "bbox"]
        if not bxs:
            raise DataError(f"{f} is not a SoundNet-Flickr box file (no <bbox> element)")
        boxes = [_flickr_box(b, f"{f.name} box {j + 1}") for j, b in enumerate(bxs)]
        frame_el, time_el = root.find("frame"), root.find("time")
        out.append(BoxRecord(
            key=f.stem, boxes=boxes, map_rule="consensus", where=f.name,
            frame=_opt_int(frame_el.text if frame_el is not None else None, f.name),
            time=_opt_time(time_el.text if time_el is not None else None, f.name)))
    return out


def read_avstudio(path: str | os.PathLike) -> list[BoxRecord]:
    p = Path(path)
    data = _load_json(p)
    if not isinstance(data, dict) or data.get("format") != AVSTUDIO_FORMAT:
        raise DataError(f"{p} is not an AV Studio box file (no \"format\": \"{AVSTUDIO_FORMAT}\")")
    version = data.get("version", 1)
    if not isinstance(version, int) or version > AVSTUDIO_VERSION:
        raise DataError(f"{p} is an AV Studio box file of version {version!r}, newer than this "
                        f"AV Studio reads ({AVSTUDIO_VERSION}); update AV Studio to read it")
    clips = data.get("clips")
    if not isinstance(clips, list):
        raise DataError(f"{p}: \"clips\" must be a list")
    out = []
    for i, c in enumerate(clips):
        cw = f"{p.name} clip {i + 1}"
        if not isinstance(c, dict) or not isinstance(c.get("path"), str) or not c["path"]:
            raise DataError(f"{cw} has no \"path\"")
        frames = c.get("frames", [])
        if not isinstance(frames, list):
            raise DataError(f"{cw} ({c['path']}): \"frames\" must be a list")
        for j, fr in enumerate(frames):
            where = f"{cw} ({c['path']}) frame entry {j + 1}"
            if not isinstance(fr, dict) or not isinstance(fr.get("boxes"), list):
                raise DataError(f"{where} must be {{\"frame\", \"time\", \"boxes\": [...]}}")
            if "frame" not in fr or "time" not in fr:
                raise DataError(f"{where} needs both \"frame\" and \"time\"")
            boxes = [box_from_dict(b, f"{where} box {k + 1}") for k, b in enumerate(fr["boxes"])]
            out.append(BoxRecord(
                key=c["path"], path=c["path"], content_hash=c.get("content_hash"), boxes=boxes,
                map_rule=check_rule(fr.get("map_rule", "union")),
                frame=_opt_int(fr["frame"], where), time=_opt_time(fr["time"], where),
                who=fr.get("who") or None, where=where))
    return out


def read_box_file(path: str | os.PathLike, fmt: Optional[str] = None) -> tuple[str, list[BoxRecord]]:
    """``(format, records)`` of a box file or folder (``fmt`` None: detected)."""
    fmt = detect_format(path) if fmt is None else _check_format(fmt)
    p = Path(path)
    if not p.exists():
        raise DataError(f"box file {p} does not exist")
    try:
        reader = {"vggss": read_vggss, "flickr": read_flickr, "avstudio": read_avstudio}[fmt]
        return fmt, reader(p)
    except RecursionError:
        raise DataError(f"{p} is nested too deeply to be a box file") from None


def _check_format(fmt: str) -> str:
    f = str(fmt).strip().lower()
    if f not in FORMATS:
        raise DataError(f"unknown box format {fmt!r} (one of: {', '.join(FORMATS)})")
    return f


# ---------------------------------------------------------------- import into a library


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def middle_frame(duration: Optional[float], fps: Optional[float]) -> tuple[int, float]:
    """The middle frame of a clip (index, time): what a set with one frame per clip shows."""
    if not duration or not fps:
        return 0, 0.0
    n = max(1, int(round(float(duration) * float(fps))))
    f = n // 2
    return f, f / float(fps)


def _keep_known(current: Optional[BoxFrame], incoming: list[Box], tol: float) -> list[Box]:
    """VGG-SS and Flickr files carry no sources (Flickr: pixels of 256): an incoming box in the
    place of a box the frame already has is that box, with its source, label and exact place."""
    if current is None:
        return incoming
    out = []
    pool = list(current.boxes)
    for b in incoming:
        match = next((c for c in pool
                      if all(abs(u - v) <= tol for u, v in zip(c.as_list(), b.as_list(), strict=True))), None)
        if match is not None:
            pool.remove(match)
            out.append(match)
        else:
            out.append(b)
    return out


def import_boxes(lib: Any, path: str | os.PathLike, fmt: Optional[str] = None,
                 who: Optional[str] = None, base: Optional[str | os.PathLike] = None) -> BoxImportReport:
    """Put the boxes of a box file into a library (one transaction: all or nothing).

    Entries are matched to the library's clips: AV Studio JSON by path (absolute, or relative
    to ``base``, default the file's folder), then by content fingerprint, then by file name;
    VGG-SS and Flickr by file id = the clip's file name without extension (a ``_fNNNNNN``
    suffix names the frame). Entries without a clip are reported in ``skipped``; a bad box or a
    frame past its clip's end refuses the whole file (nothing written).
    """
    fmt, records = read_box_file(path, fmt)
    src = Path(path)
    base_dir = Path(base) if base is not None else (src if src.is_dir() else src.parent)
    clips = lib.clips()
    by_path = {c.path: c for c in clips}
    by_hash: dict[str, list] = {}
    by_stem: dict[str, list] = {}
    for c in clips:
        if c.content_hash:
            by_hash.setdefault(c.content_hash, []).append(c)
        by_stem.setdefault(_stem(c.path), []).append(c)
    report = BoxImportReport()
    items = []
    for rec in records:
        clip, frame = None, rec.frame
        if fmt == "avstudio":
            p = rec.path or rec.key
            full = os.path.normpath(os.path.abspath(os.path.join(base_dir, os.path.expanduser(p))))
            clip = by_path.get(full)
            if clip is None and rec.content_hash and len(by_hash.get(rec.content_hash, [])) == 1:
                clip = by_hash[rec.content_hash][0]
            if clip is None and len(by_stem.get(_stem(p), [])) == 1:
                clip = by_stem[_stem(p)][0]
        else:
            cands = by_stem.get(rec.key, [])
            m = _FRAME_SUFFIX.match(rec.key)
            if not cands and m:
                cands = by_stem.get(m.group(1), [])
                if frame is None:
                    frame = int(m.group(2))
            if len(cands) > 1:
                report.skipped.append((rec.where, f"{len(cands)} clips in the library are named {rec.key}"))
                continue
            clip = cands[0] if cands else None
        if clip is None:
            report.skipped.append((rec.where, f"no clip {rec.key} in the library"))
            continue
        if frame is None:
            frame, t = middle_frame(clip.duration, clip.fps)
            if rec.time is not None:
                t = rec.time
                if clip.fps:
                    frame = int(round(t * float(clip.fps)))
        else:
            t = rec.time if rec.time is not None else (frame / float(clip.fps) if clip.fps else 0.0)
        boxes = rec.boxes
        if fmt != "avstudio":
            boxes = _keep_known(lib.frame_boxes(clip.id, frame), boxes, 0.5 / FLICKR_SIZE if fmt == "flickr" else 1e-9)
        items.append((clip.id, frame, t, boxes, rec.map_rule, rec.who or who, rec.where))
    written, same = lib.set_many_frame_boxes(items, who=who)
    report.frames, report.unchanged = written, same
    report.boxes = sum(len(i[3]) for i in items)
    report.clips = len({i[0] for i in items})
    return report


# ---------------------------------------------------------------- export


def _frames_by_clip(lib: Any) -> list[tuple[Any, list[BoxFrame]]]:
    frames = lib.all_box_frames()
    out = []
    for c in lib.clips(order_by="path"):
        if c.id in frames:
            out.append((c, frames[c.id]))
    return out


def _keys(items: list[tuple[Any, list[BoxFrame]]]) -> list[tuple[Any, BoxFrame, str]]:
    """A file id per annotated frame: the clip's file name, ``_fNNNNNN`` added when the clip has
    several annotated frames (the field's loaders index boxes by this id)."""
    out = []
    for c, frames in items:
        stem = _stem(c.path)
        for f in frames:
            out.append((c, f, stem if len(frames) == 1 else f"{stem}_f{f.frame:06d}"))
    return out


def export_vggss(lib: Any, out: str | os.PathLike) -> int:
    from .library.rows import _atomic_write_text

    rows = []
    for _c, f, key in _keys(_frames_by_clip(lib)):
        e: dict[str, Any] = {"file": key, "bbox": [b.as_list() for b in f.boxes],
                             "frame": f.frame, "time": f.time}
        labels = sorted({b.label for b in f.boxes if b.label})
        if labels:
            e["class"] = ", ".join(labels)
        rows.append(e)
    _atomic_write_text(os.path.abspath(out), lambda fh: json.dump(rows, fh, indent=1))
    return len(rows)


def _px(v: float) -> int:
    return int(round(v * FLICKR_SIZE))


def export_flickr(lib: Any, out: str | os.PathLike) -> int:
    """One ``ID.xml`` per annotated frame into the folder ``out`` (created if needed)."""
    from .library.rows import _atomic_write_text

    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder} is a file; SoundNet-Flickr boxes are written into a folder (one .xml per frame)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create folder {folder}: {exc.strerror or exc}") from None
    n = 0
    for _c, f, key in _keys(_frames_by_clip(lib)):
        root = ET.Element("annotation")
        ET.SubElement(root, "filename").text = f"{key}.jpg"
        ET.SubElement(root, "frame").text = str(f.frame)
        ET.SubElement(root, "time").text = repr(float(f.time))
        obj = ET.SubElement(root, "object")
        for b in f.boxes:
            x0, y0, x1, y1 = (_px(v) for v in b.as_list())
            x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)  # a box keeps an area at 1/256
            el = ET.SubElement(obj, "bbox")
            ET.SubElement(el, "annotator").text = b.annotator or "1"
            for tag, v in (("xmin", x0), ("ymin", y0), ("xmax", x1), ("ymax", y1)):
                ET.SubElement(el, tag).text = str(v)
        ET.indent(root)
        text = ET.tostring(root, encoding="unicode") + "\n"
        _atomic_write_text(str((folder / f"{key}.xml").resolve()), lambda fh, t=text: fh.write(t))
        n += 1
    return n


def export_avstudio(lib: Any, out: str | os.PathLike, relative: bool = False,
                    base: Optional[str | os.PathLike] = None) -> int:
    """Our own JSON: every clip with boxes, its frames (index, time, rule, who, when, boxes)."""
    from .library.rows import _atomic_write_text
    from .stamps import now_iso

    out_abs = os.path.abspath(out)
    rel_to = os.path.abspath(base) if base is not None else (os.path.dirname(out_abs) if relative else None)
    clips = []
    n = 0
    for c, frames in _frames_by_clip(lib):
        clips.append({
            "path": os.path.relpath(c.path, rel_to) if rel_to else c.path,
            "content_hash": c.content_hash, "duration": c.duration, "fps": c.fps,
            "width": c.width, "height": c.height,
            "frames": [{"frame": f.frame, "time": f.time, "map_rule": f.map_rule, "who": f.who,
                        "when": f.when, "boxes": [b.to_dict() for b in f.boxes]} for f in frames]})
        n += len(frames)
    data = {"format": AVSTUDIO_FORMAT, "version": AVSTUDIO_VERSION, "library": lib.path,
            "exported_at": now_iso(), "clips": clips}
    _atomic_write_text(out_abs, lambda fh: json.dump(data, fh, indent=1))
    return n


def export_boxes(lib: Any, out: str | os.PathLike, fmt: Optional[str] = None, relative: bool = False,
                 base: Optional[str | os.PathLike] = None) -> tuple[str, int]:
    """Write the library's boxes; ``fmt`` None: from the name (``.xml``-less folder or
    ``flickr/``: Flickr; ``.json``: AV Studio unless ``fmt="vggss"``). Returns (format, frames)."""
    if fmt is None:
        fmt = "avstudio" if str(out).lower().endswith(".json") else "flickr"
    fmt = _check_format(fmt)
    if fmt == "vggss":
        return fmt, export_vggss(lib, out)
    if fmt == "flickr":
        return fmt, export_flickr(lib, out)
    return fmt, export_avstudio(lib, out, relative=relative, base=base)


__all__ = ["FORMATS", "BoxRecord", "BoxImportReport", "detect_format", "read_vggss", "read_flickr",
           "read_avstudio", "read_box_file", "import_boxes", "export_boxes", "export_vggss",
           "export_flickr", "export_avstudio", "middle_frame", "FLICKR_SIZE"]
