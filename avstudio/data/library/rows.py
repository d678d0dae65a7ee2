"""What a library holds, as Python values: the rows (clips, annotations, predictions, runs,
checkpoints, import reports) and the helpers that make and check them."""

from __future__ import annotations

import hashlib
import json
import math
import operator
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Union

from ...dbguard import ensure_not_database
from ...errors import DataError

PathLike = Union[str, "os.PathLike[str]"]

#: Video file extensions (lower-case, compared case-insensitively). A folder import gives every
#: other file to FFmpeg too (see :meth:`ClipLibrary.import_folder`): these only decide whether a
#: file FFmpeg cannot read is a damaged video (``failed``) or simply not one (``not_media``).
MEDIA_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpeg", ".mpg", ".mpe", ".m1v",
                    ".m2v", ".ts", ".m2ts", ".mts", ".ogv", ".flv", ".wmv", ".asf", ".3gp", ".3g2", ".vob",
                    ".dv", ".mxf", ".nut", ".y4m", ".rm", ".rmvb", ".f4v", ".qt", ".divx", ".mjpeg", ".mj2")

#: Files a folder import does not even give to FFmpeg: text, data, archives, subtitles, models
#: and libraries (listed as skipped, with their kind).
NOT_MEDIA_EXTENSIONS = (".json", ".csv", ".tsv", ".txt", ".md", ".rst", ".xml", ".html", ".htm", ".pdf",
                        ".py", ".log", ".npz", ".npy", ".safetensors", ".pt", ".pth", ".avlib", ".sqlite",
                        ".db", ".yaml", ".yml", ".ini", ".cfg", ".toml", ".zip", ".gz", ".tar", ".bz2",
                        ".xz", ".7z", ".srt", ".vtt", ".ass", ".sub", ".nfo", ".sh", ".exe", ".so")

#: Counts an annotation or prediction may hold (0 = no source audible).
MIN_COUNT, MAX_COUNT = 0, 16

HASH_CHUNK = 1 << 20  # 1 MiB

@dataclass
class ClipRow:
    """One clip with its current annotation and latest prediction (what lists and views show)."""

    id: int
    path: str
    duration: Optional[float]
    width: Optional[int]
    height: Optional[int]
    count: Optional[int]  # current annotation's count; None: not annotated or "unknown"
    unsure: bool
    annotated_by: Optional[str]
    predicted_count: Optional[int]
    predicted_confidence: Optional[float]  # only on predictions made before v4 (see predicted_rate)
    missing: bool
    stage: Optional[str]  # "C{count}" from the annotation, else from the prediction, else None
    annotated: bool = False  # has a current (not cleared) annotation, even one with count None
    annotated_at: Optional[str] = None
    predicted_by: Optional[str] = None  # model of the latest prediction
    fps: Optional[float] = None
    has_audio: bool = False
    content_hash: Optional[str] = None
    added_at: Optional[str] = None
    last_seen: Optional[str] = None
    #: the counter's rate of the latest prediction: its estimate of the expected number of
    #: sources; the predicted count is the rate rounded (None: made before rates were stored)
    predicted_rate: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

@dataclass
class Annotation:
    """One row of a clip's annotation history (oldest first in :meth:`ClipLibrary.annotation_history`)."""

    id: int
    clip_id: int
    count: Optional[int]
    unsure: bool
    who: str
    when: str
    cleared: bool  # True: this row removed the annotation (the clip became unannotated)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

@dataclass
class Prediction:
    id: int
    clip_id: int
    model: str
    count: int
    confidence: Optional[float]
    when: str
    rate: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

@dataclass
class CheckpointRow:
    id: int
    run_id: int
    stage: str
    epoch: Optional[int]
    path: str
    metrics: dict[str, Any]
    when: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

@dataclass
class RunRow:
    id: int
    name: str
    config: dict[str, Any]
    stages: list[Any]
    status: str
    created_at: str
    started_at: Optional[str]
    ended_at: Optional[str]
    model_path: Optional[str]
    metrics: dict[str, Any]
    checkpoints: list[CheckpointRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

@dataclass
class ImportReport:
    """What an import did. ``failed`` holds ``(path, reason)`` for every file or row not imported."""

    added: int = 0
    skipped: int = 0  # already in the library (same path)
    failed: list[tuple[str, str]] = field(default_factory=list)
    annotated: int = 0  # annotations written (manifest imports)
    relinked: int = 0  # files recognised (by content hash) as a missing clip that moved here
    #: files a folder import looked at that are not videos ``(path, why)``: skipped, not an error
    #: (a still image, audio only, a text file, something FFmpeg cannot read with no video name)
    not_media: list[tuple[str, str]] = field(default_factory=list)

    def merge(self, other: ImportReport) -> ImportReport:
        self.added += other.added
        self.skipped += other.skipped
        self.failed.extend(other.failed)
        self.annotated += other.annotated
        self.relinked += other.relinked
        self.not_media.extend(other.not_media)
        return self

@dataclass
class RefreshReport:
    """What :meth:`ClipLibrary.refresh_missing` found."""

    present: int = 0
    missing: list[str] = field(default_factory=list)  # paths now flagged missing
    relinked: list[tuple[str, str]] = field(default_factory=list)  # (old path, new path)

def content_hash(path: PathLike, size: Optional[int] = None) -> str:
    """Fast fingerprint of a file: sha256 of its first and last MiB and its size (hex).

    ``sha256(first 1 MiB || last 1 MiB || size.to_bytes(8, "big"))``; a file of at most
    2 MiB contributes its whole content once. Two files with the same fingerprint are taken
    to be the same clip when re-finding moved files.
    """
    h = hashlib.sha256()
    ensure_not_database(path, "hash", DataError)
    with open(path, "rb") as fh:
        if size is None:
            size = os.fstat(fh.fileno()).st_size
        if size <= 2 * HASH_CHUNK:
            h.update(fh.read())
        else:
            h.update(fh.read(HASH_CHUNK))
            fh.seek(size - HASH_CHUNK)
            h.update(fh.read(HASH_CHUNK))
    h.update(int(size).to_bytes(8, "big"))
    return h.hexdigest()

def is_media_file(path: PathLike) -> bool:
    """Does the name say video (:data:`MEDIA_EXTENSIONS`)?"""
    return os.path.splitext(str(path))[1].lower() in MEDIA_EXTENSIONS

def summarize_skipped(items: Sequence[tuple[str, str]], examples: int = 3) -> list[str]:
    """One line per reason for the files an import skipped, most frequent first:
    ``"12 files: not a video (a .json file): a.json, b.json, c.json, …"``."""
    by: dict[str, list[str]] = {}
    for path, why in items:
        by.setdefault(why, []).append(os.path.basename(path))
    out = []
    for why, names in sorted(by.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        shown = ", ".join(names[:examples]) + (", …" if len(names) > examples else "")
        out.append(f"{len(names)} file{'s' if len(names) != 1 else ''}: {why}: {shown}")
    return out

def stage_name(count: Optional[int]) -> Optional[str]:
    return None if count is None else f"C{int(count)}"

def _abspath(path: PathLike) -> str:
    return os.path.normpath(os.path.abspath(os.path.expanduser(os.fspath(path))))

def _clean_json(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats become None, tuples lists, unknown objects strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean_json(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if hasattr(obj, "item"):  # numpy / torch scalars
        try:
            return _clean_json(obj.item())
        except Exception:
            pass
    return str(obj)

def _dumps(obj: Any) -> str:
    return json.dumps(_clean_json(obj), allow_nan=False, sort_keys=True)

def _loads(text: Optional[str], default: Any) -> Any:
    if text is None or text == "":
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default

def _check_count(count: Any, what: str = "count", allow_none: bool = True) -> Optional[int]:
    if count is None:
        if allow_none:
            return None
        raise DataError(f"{what} is required (an integer {MIN_COUNT}..{MAX_COUNT})")
    try:
        if isinstance(count, bool):
            raise TypeError
        c = operator.index(count)
    except TypeError:
        raise DataError(f"{what} {count!r} is not an integer {MIN_COUNT}..{MAX_COUNT}") from None
    if not MIN_COUNT <= c <= MAX_COUNT:
        raise DataError(f"{what} {c} is out of range {MIN_COUNT}..{MAX_COUNT}")
    return c

def parse_count(text: Optional[str], what: str = "count") -> Optional[int]:
    """Parse a count from text: empty (or ``?``/``unknown``) is None, else an integer 0..16."""
    if text is None:
        return None
    t = str(text).strip()
    if t == "" or t.lower() in ("?", "unknown", "nan", "none", "null"):
        return None
    try:
        value = float(t)
    except ValueError:
        raise DataError(f"{what} {t!r} is not an integer {MIN_COUNT}..{MAX_COUNT}") from None
    if not value.is_integer():
        raise DataError(f"{what} {t!r} is not an integer {MIN_COUNT}..{MAX_COUNT}")
    return _check_count(int(value), what)

def _parse_bool(text: Any) -> bool:
    if isinstance(text, bool):
        return text
    return str(text or "").strip().lower() in ("1", "true", "yes", "y", "t", "x")

def _probe(path: str):
    """Media metadata via :func:`avstudio.media.probe` (imported lazily: PyAV is heavy)."""
    from ... import media

    fn = getattr(media, "probe", None)
    if fn is None or not callable(fn):  # `avstudio.media.probe` the submodule, not re-exported
        from ...media.probe import probe as fn
    return fn(path)

def _atomic_write_text(path: str, write: Callable[[Any], None]) -> None:
    """Write a text file through a temporary file in the same folder, then rename over ``path``."""
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise DataError(f"cannot write {path}: folder {folder} does not exist")
    ensure_not_database(path, "write over", DataError)
    # os.open with 0o666 lets the umask decide the permissions (mkstemp would give 0600)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise

# The current annotation / latest prediction of each clip: the row with the highest id.
_CLIP_SELECT = """
SELECT c.id, c.path, c.duration, c.width, c.height, c.fps, c.has_audio, c.content_hash,
       c.added_at, c.last_seen, c.missing,
       a.count AS a_count, a.unsure AS a_unsure, a.who AS a_who, a.created_at AS a_when,
       a.cleared AS a_cleared, a.id AS a_id,
       p.count AS p_count, p.confidence AS p_conf, p.model AS p_model, p.rate AS p_rate
"""


_CLIP_FROM = """
FROM clips c
LEFT JOIN annotations a ON a.id = (SELECT MAX(id) FROM annotations WHERE clip_id = c.id)
LEFT JOIN predictions p ON p.id = (SELECT MAX(id) FROM predictions WHERE clip_id = c.id)
"""
_CLIP_SELECT = _CLIP_SELECT + _CLIP_FROM


# SQL for "has a current annotation" / derived stage, on the aliases of _CLIP_SELECT.
_ANNOTATED = "(a.id IS NOT NULL AND a.cleared = 0)"

_STAGE_COUNT = f"(CASE WHEN {_ANNOTATED} AND a.count IS NOT NULL THEN a.count ELSE p.count END)"

_FILTERS = {
    None: "1",
    "all": "1",
    "annotated": _ANNOTATED,
    "unannotated": f"NOT {_ANNOTATED}",
    "unsure": f"{_ANNOTATED} AND a.unsure = 1",
    "unknown": f"{_ANNOTATED} AND a.count IS NULL",  # annotated as "can't tell"
    "missing": "c.missing = 1",
    "present": "c.missing = 0",
    "predicted": "p.id IS NOT NULL",
    "unpredicted": "p.id IS NULL",
    # annotation and prediction disagree (both known)
    "disagree": f"{_ANNOTATED} AND a.count IS NOT NULL AND p.id IS NOT NULL AND a.count != p.count",
}

# How far the latest prediction's rate is from the boundary between two counts: 0 right on it
# (the least certain), 0.5 on a whole number. Predictions made before v4 have a confidence
# c = 1 - 2 |rate - count| instead, which is the same margin doubled.
_MARGIN = "COALESCE(0.5 - ABS(p.rate - ROUND(p.rate)), p.confidence / 2.0)"

_ORDERS = {
    "path": "c.path",
    "id": "c.id",
    "added": "c.added_at",
    "duration": "c.duration",
    "count": f"(CASE WHEN {_ANNOTATED} THEN a.count END)",
    "rate": "p.rate",
    "margin": _MARGIN,
    "confidence": _MARGIN,  # the name before v4
    "stage": _STAGE_COUNT,
    "annotated_at": f"(CASE WHEN {_ANNOTATED} THEN a.created_at END)",
}

# next_unannotated order: smallest margin first, then predicted without a margin and
# unpredicted clips; then path, then id.
_NEXT_GROUP = f"(CASE WHEN {_MARGIN} IS NOT NULL THEN 0 ELSE 1 END)"

_NEXT_CONF = f"COALESCE({_MARGIN}, 0.0)"

def _row_to_clip(r: sqlite3.Row) -> ClipRow:
    annotated = r["a_id"] is not None and not r["a_cleared"]
    count = r["a_count"] if annotated else None
    stage = stage_name(count if count is not None else r["p_count"])
    return ClipRow(
        id=r["id"], path=r["path"], duration=r["duration"], width=r["width"], height=r["height"],
        count=count, unsure=bool(r["a_unsure"]) if annotated else False,
        annotated_by=r["a_who"] if annotated else None,
        predicted_count=r["p_count"], predicted_confidence=r["p_conf"], predicted_rate=r["p_rate"],
        missing=bool(r["missing"]), stage=stage, annotated=annotated,
        annotated_at=r["a_when"] if annotated else None, predicted_by=r["p_model"],
        fps=r["fps"], has_audio=bool(r["has_audio"]), content_hash=r["content_hash"],
        added_at=r["added_at"], last_seen=r["last_seen"],
    )

def _row_to_prediction(r: sqlite3.Row) -> Prediction:
    return Prediction(r["id"], r["clip_id"], r["model"], r["count"], r["confidence"], r["created_at"],
                      r["rate"])

def _row_to_annotation(r: sqlite3.Row) -> Annotation:
    return Annotation(r["id"], r["clip_id"], r["count"], bool(r["unsure"]), r["who"],
                      r["created_at"], bool(r["cleared"]))

def _parse_stage(text: str) -> int:
    t = text.strip().upper()
    if t.startswith("C"):
        t = t[1:]
    try:
        return _check_count(int(t), "stage")  # type: ignore[return-value]
    except ValueError:
        raise DataError(f"stage {text!r} is not C0..C{MAX_COUNT}") from None

def _still_image(info: Any) -> bool:
    """A picture FFmpeg reads as a one-frame video (PNG, JPEG...): not a clip."""
    container = str(getattr(info, "container", "") or "")
    return container == "image2" or container.endswith("_pipe")

def _not_media_reason(why: str) -> str:
    """The reason a file with no video name was not imported, without the file name FFmpeg's
    message repeats."""
    if why.startswith("no video stream"):
        return "audio only: no video stream"
    if "not a media file FFmpeg can read" in why:
        return "not a media file FFmpeg can read"
    if "has no video or audio stream" in why:
        return "FFmpeg finds no video or audio stream in it"
    return why

def _iter_files(root: str, recursive: bool) -> Iterator[str]:
    """Every regular file under ``root`` in a stable order (hidden folders and files skipped)."""
    if not recursive:
        try:
            names = sorted(os.listdir(root))
        except OSError as exc:
            raise DataError(f"cannot list folder {root}: {exc.strerror or exc}") from None
        for n in names:
            p = os.path.join(root, n)
            if not n.startswith(".") and os.path.isfile(p):
                yield p
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for n in sorted(filenames):
            p = os.path.join(dirpath, n)
            if not n.startswith(".") and os.path.isfile(p):
                yield p

def _iter_media(root: str, recursive: bool) -> Iterator[str]:
    """Media files under ``root`` in a stable order (hidden folders and files skipped)."""
    if not recursive:
        try:
            names = sorted(os.listdir(root))
        except OSError as exc:
            raise DataError(f"cannot list folder {root}: {exc.strerror or exc}") from None
        for n in names:
            p = os.path.join(root, n)
            if not n.startswith(".") and is_media_file(n) and os.path.isfile(p):
                yield p
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for n in sorted(filenames):
            if not n.startswith(".") and is_media_file(n):
                yield os.path.join(dirpath, n)

def _num(x: Any) -> Optional[float]:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None

def _int(x: Any) -> Optional[int]:
    try:
        return int(x)
    except (TypeError, ValueError):
        return None
