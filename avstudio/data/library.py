"""The clip library: a SQLite file of clips, source-count annotations, predictions and runs.

Qt-free. The GUI (annotation view, run browser), the trainer and the ``avstudio library``
CLI all go through :class:`ClipLibrary`; see ``docs/library.md`` for the schema and the CLI.

Durability
----------
* A library is one SQLite file (plus its ``-wal``/``-shm`` companions while open), in WAL
  journal mode with foreign keys on and a busy timeout, so a second process (the CLI while the
  GUI is open, a trainer writing run metrics) waits for the lock instead of failing.
* Every write is one explicit ``BEGIN IMMEDIATE ... COMMIT`` transaction (:meth:`ClipLibrary._write`).
  We do not rely on ``with conn:`` and the sqlite3 module's implicit transactions: those are not
  opened before DDL, so a migration would not be atomic, and a deferred transaction that upgrades
  from read to write can fail with "database is locked" without waiting. ``BEGIN IMMEDIATE`` takes
  the write lock up front (waiting up to the busy timeout) and the whole block commits or rolls
  back as one.
* ``PRAGMA synchronous=FULL``. In WAL mode NORMAL is already safe against a killed *process*
  (the case the tests check), but it can lose the last commits on a power cut or OS crash.
  Annotations are human work done one click at a time (a few writes per second at most) and
  imports commit in batches, so the extra fsync per commit costs nothing a user notices, and
  FULL makes "it said saved" mean saved even across a power loss.
* Imports commit every ``batch_size`` files (or every couple of seconds), so killing an import
  keeps every batch committed before the kill; re-running it skips what is already there.
* The database file and its ``-wal``/``-shm`` are never opened by anything but SQLite in a
  process that has the library open: closing any descriptor of a file drops all the process's
  POSIX locks on it, and another process would then delete the WAL under our connections.
  :mod:`avstudio.dbguard` records the open libraries; every other file opener asks it first.

Content hash
------------
``content_hash`` is a fast fingerprint used to re-find moved files, not a cryptographic
identity of the whole file: ``sha256(first 1 MiB || last 1 MiB || size as 8-byte big-endian)``;
a file of 2 MiB or less is hashed whole (once) followed by its size. Reading at most 2 MiB per
file keeps imports of long videos fast. See :func:`content_hash`.
"""

from __future__ import annotations

import csv
import getpass
import hashlib
import json
import math
import operator
import os
import secrets
import sqlite3
import threading
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

from .. import dbguard
from ..dbguard import database_of, ensure_not_database, refusal
from ..errors import AVStudioError, DataError, MediaError
from ..progress import CancelToken, ProgressFn, check_cancel, emit
from .library_boxes import MIGRATION_V3, BoxStore
from .stamps import default_who as _default_who
from .stamps import now_iso

PathLike = Union[str, "os.PathLike[str]"]

#: Media files picked up by :meth:`ClipLibrary.import_folder` (lower-case, compared case-insensitively).
MEDIA_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v")

#: Counts an annotation or prediction may hold (0 = no source audible).
MIN_COUNT, MAX_COUNT = 0, 16

#: ``PRAGMA application_id`` of a library file ("AVST"), so we never adopt someone else's database.
APPLICATION_ID = 0x41565354

HASH_CHUNK = 1 << 20  # 1 MiB

BUSY_TIMEOUT_S = 10.0

# ---------------------------------------------------------------- schema

# Each migration takes the schema from version i to i + 1 (index 0 builds v1 on an empty file).
# Append only: never edit a migration that has shipped; add a new one instead.
MIGRATIONS: list[str] = [
    # v1: clips, annotations (with history), predictions.
    """
    CREATE TABLE clips (
        id           INTEGER PRIMARY KEY,
        path         TEXT NOT NULL UNIQUE,
        content_hash TEXT,
        size         INTEGER,
        duration     REAL,
        width        INTEGER,
        height       INTEGER,
        fps          REAL,
        has_audio    INTEGER NOT NULL DEFAULT 0 CHECK (has_audio IN (0, 1)),
        added_at     TEXT NOT NULL
    );
    CREATE INDEX clips_hash ON clips(content_hash);
    CREATE TABLE annotations (
        id           INTEGER PRIMARY KEY,
        clip_id      INTEGER NOT NULL REFERENCES clips(id) ON DELETE CASCADE,
        count        INTEGER CHECK (count IS NULL OR (count BETWEEN 0 AND 16)),
        unsure       INTEGER NOT NULL DEFAULT 0 CHECK (unsure IN (0, 1)),
        who          TEXT NOT NULL,
        created_at   TEXT NOT NULL
    );
    CREATE INDEX annotations_clip ON annotations(clip_id, id);
    CREATE TABLE predictions (
        id           INTEGER PRIMARY KEY,
        clip_id      INTEGER NOT NULL REFERENCES clips(id) ON DELETE CASCADE,
        model        TEXT NOT NULL,
        count        INTEGER NOT NULL CHECK (count BETWEEN 0 AND 16),
        confidence   REAL CHECK (confidence IS NULL OR (confidence BETWEEN 0 AND 1)),
        created_at   TEXT NOT NULL
    );
    CREATE INDEX predictions_clip ON predictions(clip_id, id);
    """,
    # v2: missing-file tracking, cleared annotations (undo of an annotation), training runs.
    """
    ALTER TABLE clips ADD COLUMN missing INTEGER NOT NULL DEFAULT 0 CHECK (missing IN (0, 1));
    ALTER TABLE clips ADD COLUMN last_seen TEXT;
    UPDATE clips SET last_seen = added_at;
    ALTER TABLE annotations ADD COLUMN cleared INTEGER NOT NULL DEFAULT 0 CHECK (cleared IN (0, 1));
    CREATE TABLE runs (
        id           INTEGER PRIMARY KEY,
        name         TEXT NOT NULL,
        config       TEXT NOT NULL DEFAULT '{}',
        stages       TEXT NOT NULL DEFAULT '[]',
        status       TEXT NOT NULL DEFAULT 'created',
        created_at   TEXT NOT NULL,
        started_at   TEXT,
        ended_at     TEXT,
        model_path   TEXT,
        metrics      TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE run_checkpoints (
        id           INTEGER PRIMARY KEY,
        run_id       INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        stage        TEXT NOT NULL,
        epoch        INTEGER,
        path         TEXT NOT NULL,
        metrics      TEXT NOT NULL DEFAULT '{}',
        created_at   TEXT NOT NULL
    );
    CREATE INDEX run_checkpoints_run ON run_checkpoints(run_id, id);
    """,
    # v3: box annotations (where each sound is), with their history (library_boxes.py).
    MIGRATION_V3,
]

#: The schema version this code writes (``PRAGMA user_version``).
SCHEMA_VERSION = len(MIGRATIONS)

RUN_STATUSES = ("created", "running", "finished", "failed", "cancelled")
_TERMINAL = {"finished", "failed", "cancelled"}


# ---------------------------------------------------------------- rows


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
    predicted_confidence: Optional[float]
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

    def merge(self, other: "ImportReport") -> "ImportReport":
        self.added += other.added
        self.skipped += other.skipped
        self.failed.extend(other.failed)
        self.annotated += other.annotated
        self.relinked += other.relinked
        return self


@dataclass
class RefreshReport:
    """What :meth:`ClipLibrary.refresh_missing` found."""

    present: int = 0
    missing: list[str] = field(default_factory=list)  # paths now flagged missing
    relinked: list[tuple[str, str]] = field(default_factory=list)  # (old path, new path)


# ---------------------------------------------------------------- helpers


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
    return os.path.splitext(str(path))[1].lower() in MEDIA_EXTENSIONS


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
    from .. import media

    fn = getattr(media, "probe", None)
    if fn is None or not callable(fn):  # `avstudio.media.probe` the submodule, not re-exported
        from ..media.probe import probe as fn
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
       p.count AS p_count, p.confidence AS p_conf, p.model AS p_model
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

_ORDERS = {
    "path": "c.path",
    "id": "c.id",
    "added": "c.added_at",
    "duration": "c.duration",
    "count": f"(CASE WHEN {_ANNOTATED} THEN a.count END)",
    "confidence": "p.confidence",
    "stage": _STAGE_COUNT,
    "annotated_at": f"(CASE WHEN {_ANNOTATED} THEN a.created_at END)",
}

# next_unannotated order: lowest confidence first, then predicted without confidence and
# unpredicted clips; then path, then id.
_NEXT_GROUP = "(CASE WHEN p.confidence IS NOT NULL THEN 0 ELSE 1 END)"
_NEXT_CONF = "COALESCE(p.confidence, 0.0)"


def _row_to_clip(r: sqlite3.Row) -> ClipRow:
    annotated = r["a_id"] is not None and not r["a_cleared"]
    count = r["a_count"] if annotated else None
    stage = stage_name(count if count is not None else r["p_count"])
    return ClipRow(
        id=r["id"], path=r["path"], duration=r["duration"], width=r["width"], height=r["height"],
        count=count, unsure=bool(r["a_unsure"]) if annotated else False,
        annotated_by=r["a_who"] if annotated else None,
        predicted_count=r["p_count"], predicted_confidence=r["p_conf"],
        missing=bool(r["missing"]), stage=stage, annotated=annotated,
        annotated_at=r["a_when"] if annotated else None, predicted_by=r["p_model"],
        fps=r["fps"], has_audio=bool(r["has_audio"]), content_hash=r["content_hash"],
        added_at=r["added_at"], last_seen=r["last_seen"],
    )


# ---------------------------------------------------------------- the library

# SQLite's primary result codes we turn into sentences.
SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26


class LibraryError(DataError):
    """A library file SQLite reports as damaged or not a database; ``code``: SQLite's result code."""

    def __init__(self, message: str, code: Optional[int] = None):
        super().__init__(message)
        self.code = code


def _translate(exc: sqlite3.DatabaseError, where: str) -> BaseException:
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    if primary not in (SQLITE_CORRUPT, SQLITE_NOTADB):
        return exc
    where = where or "file"
    return LibraryError(f"library {where} is damaged ({exc}); check it with "
                        f"avstudio library check {where}", primary)


class _Cursor(sqlite3.Cursor):
    """A cursor whose "malformed" / "not a database" errors are one :class:`LibraryError`."""

    def _where(self) -> str:
        return getattr(self.connection, "library_path", "")

    def execute(self, sql: str, parameters: Any = ()) -> "_Cursor":  # type: ignore[override]
        try:
            return super().execute(sql, parameters)
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, self._where()) from None

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, self._where()) from None

    def fetchall(self) -> list:
        try:
            return super().fetchall()
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, self._where()) from None

    def fetchmany(self, size: int = 1) -> list:
        try:
            return super().fetchmany(size)
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, self._where()) from None

    def __next__(self) -> Any:
        try:
            return super().__next__()
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, self._where()) from None


class _Connection(sqlite3.Connection):
    """A connection whose damaged-file errors are one :class:`LibraryError` sentence naming the
    library (the GUI and the CLI show it: no traceback, no retry loop printing it forever)."""

    library_path = ""

    def execute(self, sql: str, parameters: Any = ()) -> sqlite3.Cursor:  # type: ignore[override]
        cur = _Cursor(self)
        cur.row_factory = self.row_factory  # what Connection.cursor() would have copied
        return cur.execute(sql, parameters)


class ClipLibrary(BoxStore):
    """A clip library file. ``with ClipLibrary(path) as lib: ...`` or ``open()``/``close()``.

    ``create=False`` refuses to create a new file (``DataError`` if ``path`` does not exist).
    One object may be shared between threads (calls are serialised by a lock); a worker may
    also open its own ``ClipLibrary`` on the same file: WAL lets readers and one writer work
    side by side, and writers wait up to ``timeout`` seconds for each other.
    """

    def __init__(self, path: PathLike, create: bool = True, timeout: float = BUSY_TIMEOUT_S,
                 open_now: bool = True):
        self.path = path if os.fspath(path) == ":memory:" else _abspath(path)
        self.create = create
        self.timeout = float(timeout)
        self._conn: Optional[sqlite3.Connection] = None
        self._lock = threading.RLock()
        if open_now:
            self.open()

    # ------------------------------------------------------------ open / close

    def open(self) -> "ClipLibrary":
        """Open (creating and migrating as needed). Idempotent."""
        with self._lock:
            if self._conn is not None:
                return self
            path = self.path
            if path != ":memory:":
                if os.path.isdir(path):
                    raise DataError(f"library {path} is a folder, not a library file")
                exists = os.path.exists(path)
                if not exists and not self.create:
                    raise DataError(f"library {path} does not exist "
                                    f"(create it with: avstudio library init {path})")
                folder = os.path.dirname(path)
                if not exists and not os.path.isdir(folder):
                    raise DataError(f"cannot create library {path}: folder {folder} does not exist")
                if database_of(path) not in (None, path):
                    raise DataError(refusal(path, "open as a library"))
                # The file is never open()ed here (not even to read its header): closing any
                # descriptor of a SQLite file drops every lock this process holds on it (see
                # avstudio/dbguard.py). SQLite itself says whether the file is a database.
            target = path
            if path != ":memory:":
                target = "file:" + urllib.parse.quote(path) + ("?mode=rwc" if self.create else "?mode=rw")
            try:
                conn = sqlite3.connect(target, timeout=self.timeout, isolation_level=None,
                                       check_same_thread=False, uri=path != ":memory:",
                                       factory=_Connection)
            except sqlite3.Error as exc:
                raise DataError(f"cannot open library {path}: {exc}") from None
            conn.library_path = path
            try:
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                self._check_identity(conn)  # before changing anything in the file
                conn.execute("PRAGMA foreign_keys = ON")
                if path != ":memory:":
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    if str(mode).lower() != "wal":
                        raise DataError(f"library {path}: cannot use WAL journal mode "
                                        f"(got {mode}); is it on a network or read-only drive?")
                conn.execute("PRAGMA synchronous = FULL")
                self._conn = conn
                self._migrate()
            except sqlite3.DatabaseError as exc:
                conn.close()
                self._conn = None
                raise DataError(f"cannot open library {path}: {exc}") from None
            except BaseException:
                conn.close()
                self._conn = None
                raise
            if path != ":memory:":
                dbguard.register(path)
            return self

    def _check_identity(self, conn: sqlite3.Connection) -> None:
        """Refuse files that are not ours, or written by a newer AV Studio."""
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        except LibraryError as exc:
            if exc.code == SQLITE_NOTADB:
                raise DataError(f"{self.path} is not an AV Studio library (not a SQLite file)") from None
            raise
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        if app_id not in (0, APPLICATION_ID):
            raise DataError(f"{self.path} is not an AV Studio library (application id {app_id:#x})")
        if version > SCHEMA_VERSION:
            raise DataError(
                f"library {self.path} has schema version {version}, newer than this AV Studio "
                f"understands ({SCHEMA_VERSION}); update AV Studio to open it")
        if version == 0:
            tables = conn.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            if tables:
                raise DataError(f"{self.path} is a SQLite database but not an AV Studio library")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                # the last connection to close checkpoints the WAL into the main file itself
                self._conn.close()
                self._conn = None
                if self.path != ":memory:":
                    dbguard.unregister(self.path)

    def __enter__(self) -> "ClipLibrary":
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise DataError(f"library {self.path} is closed")
        return self._conn

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: ``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error)."""
        with self._lock:
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise DataError(f"library {self.path} is busy or read-only: {exc}") from None
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several SELECTs."""
        with self._lock:
            conn = self.conn
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def _migrate(self) -> None:
        conn = self.conn
        with self._write():
            # checked again inside the write lock: another process may have migrated meanwhile
            self._check_identity(conn)
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
            if app_id == 0:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            for v in range(version, SCHEMA_VERSION):
                # executescript() would COMMIT first; run the statements one by one instead
                for stmt in _split_sql(MIGRATIONS[v]):
                    conn.execute(stmt)
                conn.execute(f"PRAGMA user_version = {v + 1}")
            if version < SCHEMA_VERSION:
                bad = conn.execute("PRAGMA foreign_key_check").fetchall()
                if bad:
                    raise DataError(f"library {self.path}: broken references after migration")

    # ------------------------------------------------------------ clips

    def clips(self, filter: Optional[str] = None, order_by: str = "path", *,
              stage: Optional[str] = None, search: Optional[str] = None,
              limit: Optional[int] = None) -> list[ClipRow]:
        """Clips with their current annotation and latest prediction.

        ``filter``: None/"all", "annotated", "unannotated", "unsure", "unknown" (annotated as
        "can't tell"), "missing", "present", "predicted", "unpredicted", "disagree".
        ``stage``: only clips whose derived stage is this ("C2"; "none" for no stage).
        ``search``: substring of the path (case-insensitive). ``order_by``: "path", "id",
        "added", "duration", "count", "confidence", "stage", "annotated_at"; a leading "-"
        sorts descending. Unknown values are used as SQL nowhere: they raise DataError.
        """
        if filter not in _FILTERS:
            raise DataError(f"unknown clip filter {filter!r} (one of: "
                            f"{', '.join(k for k in _FILTERS if k)})")
        desc = order_by.startswith("-")
        key = order_by[1:] if desc else order_by
        if key not in _ORDERS:
            raise DataError(f"unknown clip order {order_by!r} (one of: {', '.join(_ORDERS)})")
        where = [_FILTERS[filter]]
        params: list[Any] = []
        if stage is not None:
            s = str(stage).strip()
            if s.lower() in ("none", "unknown", ""):
                where.append(f"{_STAGE_COUNT} IS NULL")
            else:
                where.append(f"{_STAGE_COUNT} = ?")
                params.append(_parse_stage(s))
        if search:
            where.append("instr(lower(c.path), lower(?)) > 0")
            params.append(str(search))
        direction = "DESC" if desc else "ASC"
        order = (f"{_ORDERS[key]} IS NULL, {_ORDERS[key]} {direction}, c.path ASC, c.id ASC")
        sql = f"{_CLIP_SELECT} WHERE {' AND '.join(where)} ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._lock:
            return [_row_to_clip(r) for r in self.conn.execute(sql, params)]

    def get(self, clip_id: int) -> ClipRow:
        """The clip with this id (DataError if there is none)."""
        with self._lock:
            r = self.conn.execute(f"{_CLIP_SELECT} WHERE c.id = ?", (int(clip_id),)).fetchone()
        if r is None:
            raise DataError(f"no clip with id {clip_id} in library {self.path}")
        return _row_to_clip(r)

    def find(self, path: PathLike) -> Optional[ClipRow]:
        """The clip stored under this path (made absolute), or None."""
        with self._lock:
            r = self.conn.execute(f"{_CLIP_SELECT} WHERE c.path = ?", (_abspath(path),)).fetchone()
        return None if r is None else _row_to_clip(r)

    def resolve(self, ref: Union[int, str, PathLike]) -> ClipRow:
        """A clip from an id or a path (what the CLI's ``CLIP_PATH_OR_ID`` accepts)."""
        if isinstance(ref, int) and not isinstance(ref, bool):
            return self.get(ref)
        text = os.fspath(ref)
        row = self.find(text)
        if row is None and text.strip().isdigit():
            with self._lock:
                exists = self.conn.execute("SELECT 1 FROM clips WHERE id = ?",
                                           (int(text),)).fetchone()
            if exists:
                return self.get(int(text))
        if row is None:
            raise DataError(f"no clip {text} in library {self.path} (give a clip id or its path)")
        return row

    def __len__(self) -> int:
        with self._lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM clips").fetchone()[0])

    # ------------------------------------------------------------ import

    def import_folder(self, folder: PathLike, recursive: bool = True,
                      progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
                      batch_size: int = 50) -> ImportReport:
        """Add every media file (:data:`MEDIA_EXTENSIONS`) under ``folder``.

        Files already in the library are skipped; files that cannot be probed are reported
        in ``failed`` and the import goes on. Commits every ``batch_size`` files, so a killed
        or cancelled import keeps what it committed (cancel raises :class:`Cancelled` after
        committing the files done so far).
        """
        root = _abspath(folder)
        if not os.path.exists(root):
            raise DataError(f"folder {root} does not exist")
        if not os.path.isdir(root):
            raise DataError(f"{root} is not a folder")
        files = list(_iter_media(root, recursive))
        return self.import_files(files, progress=progress, cancel=cancel, batch_size=batch_size)

    def import_files(self, paths: Iterable[PathLike], progress: Optional[ProgressFn] = None,
                     cancel: Optional[CancelToken] = None, batch_size: int = 50,
                     task: str = "import") -> ImportReport:
        """Add these media files (any extension; :meth:`import_folder` filters by extension)."""
        files = [_abspath(p) for p in paths]
        report = ImportReport()
        pending: list[tuple] = []
        last_commit = time.monotonic()
        total = len(files)
        emit(progress, task, 0, total)
        try:
            for i, path in enumerate(files):
                check_cancel(cancel, "import")
                outcome = self._prepare_file(path)
                if isinstance(outcome, str):
                    if outcome == "skipped":
                        report.skipped += 1
                    else:
                        report.failed.append((path, outcome))
                else:
                    pending.append(outcome)
                if pending and (len(pending) >= batch_size or time.monotonic() - last_commit > 2.0):
                    batch, pending = pending, []
                    self._commit_files(batch, report)
                    last_commit = time.monotonic()
                emit(progress, task, i + 1, total, os.path.basename(path),
                     added=report.added + len(pending), failed=len(report.failed))
        finally:
            if pending:  # done, cancelled or interrupted: keep what was probed
                batch, pending = pending, []
                self._commit_files(batch, report)
        return report

    def _prepare_file(self, path: str) -> Union[str, tuple]:
        """Probe and hash a file outside any transaction. Returns a row tuple or a reason string."""
        with self._lock:
            known = self.conn.execute("SELECT id, missing FROM clips WHERE path = ?",
                                      (path,)).fetchone()
        if known is not None:
            if known["missing"] and os.path.isfile(path):
                with self._write() as conn:
                    conn.execute("UPDATE clips SET missing = 0, last_seen = ? WHERE id = ?",
                                 (now_iso(), known["id"]))
            return "skipped"
        if not os.path.isfile(path):
            return "file not found"
        try:
            info = _probe(path)
        except MediaError as exc:
            return str(exc)
        except AVStudioError as exc:
            return str(exc)
        except Exception as exc:  # a decoder hiccup on one file must not stop the import
            return f"cannot read media: {type(exc).__name__}: {exc}"
        if getattr(info, "has_video", True) is False:
            return "no video stream (the library holds audiovisual clips)"
        try:
            size = os.path.getsize(path)
            digest = content_hash(path, size)
        except OSError as exc:
            return f"cannot read file: {exc.strerror or exc}"
        except DataError as exc:
            return str(exc)
        return (path, digest, size, _num(getattr(info, "duration", None)),
                _int(getattr(info, "width", None)), _int(getattr(info, "height", None)),
                _num(getattr(info, "fps", None)), 1 if getattr(info, "has_audio", False) else 0)

    def _commit_files(self, rows: Sequence[tuple], report: ImportReport) -> None:
        stamp = now_iso()
        with self._write() as conn:
            for (path, digest, size, duration, width, height, fps, has_audio) in rows:
                if conn.execute("SELECT 1 FROM clips WHERE path = ?", (path,)).fetchone():
                    report.skipped += 1  # added meanwhile by another process
                    continue
                moved = self._moved_clip(conn, digest, size)
                if moved is not None:
                    conn.execute("UPDATE clips SET path = ?, missing = 0, last_seen = ? WHERE id = ?",
                                 (path, stamp, moved))
                    report.relinked += 1
                    continue
                conn.execute(
                    "INSERT INTO clips (path, content_hash, size, duration, width, height, fps,"
                    " has_audio, added_at, last_seen, missing) VALUES (?,?,?,?,?,?,?,?,?,?,0)",
                    (path, digest, size, duration, width, height, fps, has_audio, stamp, stamp))
                report.added += 1

    @staticmethod
    def _moved_clip(conn: sqlite3.Connection, digest: str, size: int) -> Optional[int]:
        """A clip with this fingerprint whose file is gone: the file we hold is that clip, moved."""
        for r in conn.execute("SELECT id, path FROM clips WHERE content_hash = ? AND size = ?"
                              " ORDER BY missing DESC, id", (digest, size)):
            if not os.path.exists(r["path"]):
                return int(r["id"])
        return None

    def import_manifest(self, csv_path: PathLike, who: str = "manifest",
                        progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
                        batch_size: int = 50) -> ImportReport:
        """Import a manifest CSV (header with at least ``path,count``).

        Relative paths are relative to the manifest's folder. New files are probed and added
        like :meth:`import_files`; every row with a count (0..16) becomes an annotation (unless
        the clip's current annotation already says the same). An empty count means unknown: the
        clip is imported without annotation. Optional columns: ``unsure`` (1/true/yes) and
        ``who`` (the annotator; ``who`` here is used where that column is absent or empty).
        Rows that cannot be used (bad count, file missing, not media) go to ``failed`` with
        their line number.
        """
        mpath = _abspath(csv_path)
        if not os.path.isfile(mpath):
            raise DataError(f"manifest {mpath} does not exist")
        ensure_not_database(mpath, "read as a manifest", DataError)
        base = os.path.dirname(mpath)
        try:
            with open(mpath, "r", encoding="utf-8-sig", newline="") as fh:
                reader = csv.DictReader(fh)
                header = [h.strip().lower() for h in (reader.fieldnames or [])]
                if not header:
                    raise DataError(f"manifest {mpath} is empty (expected a header with path,count)")
                for col in ("path", "count"):
                    if col not in header:
                        raise DataError(f"manifest {mpath} has no '{col}' column "
                                        f"(header: {','.join(header)})")
                reader.fieldnames = header
                rows = [(reader.line_num, {k: (v or "") for k, v in r.items() if k is not None})
                        for r in reader]
        except UnicodeDecodeError:
            raise DataError(f"manifest {mpath} is not UTF-8 text") from None
        except csv.Error as exc:
            raise DataError(f"manifest {mpath} is not a valid CSV: {exc}") from None
        except OSError as exc:
            raise DataError(f"cannot read manifest {mpath}: {exc.strerror or exc}") from None

        report = ImportReport()
        entries: list[tuple[str, Optional[int], bool, str]] = []
        for line, r in rows:
            raw = r.get("path", "").strip()
            if not raw:
                report.failed.append((f"{mpath}:{line}", "empty path"))
                continue
            path = raw if os.path.isabs(os.path.expanduser(raw)) else os.path.join(base, raw)
            path = _abspath(path)
            try:
                count = parse_count(r.get("count"), "count")
            except DataError as exc:
                report.failed.append((path, f"line {line}: {exc}"))
                continue
            entries.append((path, count, _parse_bool(r.get("unsure")),
                            (r.get("who") or "").strip() or who))

        # add the clips (probing) first, then write the annotations in batches
        files = list(dict.fromkeys(p for p, *_ in entries))
        sub = self.import_files(files, progress=progress, cancel=cancel, batch_size=batch_size,
                                task="import")
        report.merge(sub)
        bad = {p for p, _ in sub.failed}
        todo = [e for e in entries if e[0] not in bad and e[1] is not None]
        for start in range(0, len(todo), max(1, batch_size)):
            check_cancel(cancel, "import")
            with self._write() as conn:
                for path, count, unsure, by in todo[start:start + batch_size]:
                    row = conn.execute("SELECT id FROM clips WHERE path = ?", (path,)).fetchone()
                    if row is None:  # moved meanwhile: relinked under another path
                        report.failed.append((path, "not in the library after import"))
                        continue
                    cur = self._current_annotation(conn, row["id"])
                    if (cur is not None and not cur["cleared"] and cur["count"] == count
                            and bool(cur["unsure"]) == unsure):
                        continue
                    self._insert_annotation(conn, row["id"], count, unsure, by)
                    report.annotated += 1
        return report

    # ------------------------------------------------------------ annotations

    @staticmethod
    def _current_annotation(conn: sqlite3.Connection, clip_id: int) -> Optional[sqlite3.Row]:
        return conn.execute("SELECT * FROM annotations WHERE clip_id = ? ORDER BY id DESC LIMIT 1",
                            (clip_id,)).fetchone()

    @staticmethod
    def _insert_annotation(conn: sqlite3.Connection, clip_id: int, count: Optional[int],
                           unsure: bool, who: str, cleared: bool = False) -> int:
        cur = conn.execute(
            "INSERT INTO annotations (clip_id, count, unsure, who, created_at, cleared)"
            " VALUES (?,?,?,?,?,?)",
            (clip_id, count, 1 if unsure else 0, who, now_iso(), 1 if cleared else 0))
        return int(cur.lastrowid)

    def _require_clip(self, conn: sqlite3.Connection, clip_id: Any) -> int:
        try:
            cid = int(clip_id)
        except (TypeError, ValueError):
            raise DataError(f"clip id {clip_id!r} is not an integer") from None
        if conn.execute("SELECT 1 FROM clips WHERE id = ?", (cid,)).fetchone() is None:
            raise DataError(f"no clip with id {clip_id} in library {self.path}")
        return cid

    def annotate(self, clip_id: int, count: Optional[int], unsure: bool = False,
                 who: Optional[str] = None) -> int:
        """Record a source count for a clip (a new history row; it becomes the current one).

        ``count`` is 0..16 (0: no source audible) or None ("looked, can't tell": the clip counts
        as annotated but gives training no count). Returns the annotation id; when it returns,
        the annotation is committed.
        """
        c = _check_count(count)
        who = (who or _default_who()).strip() or _default_who()
        with self._write() as conn:
            cid = self._require_clip(conn, clip_id)
            return self._insert_annotation(conn, cid, c, bool(unsure), who)

    def clear_annotation(self, clip_id: int, who: Optional[str] = None) -> Optional[int]:
        """Make the clip unannotated again (history keeps a "cleared" row). Returns its id,
        or None when the clip had no current annotation (nothing written)."""
        who = (who or _default_who()).strip() or _default_who()
        with self._write() as conn:
            cid = self._require_clip(conn, clip_id)
            cur = self._current_annotation(conn, cid)
            if cur is None or cur["cleared"]:
                return None
            return self._insert_annotation(conn, cid, None, False, who, cleared=True)

    def restore_annotation(self, clip_id: int, annotation_id: Optional[int],
                           who: Optional[str] = None) -> Optional[Annotation]:
        """Make an earlier state current again, as a new history row (for undo/redo).

        ``annotation_id``: a row of this clip's history whose count/unsure become current
        again; None (or a "cleared" row) makes the clip unannotated. An undo stack in the GUI
        keeps, per action, the annotation id that was current before it (``None`` if none)
        and calls this. Returns the annotation now current (None: unannotated). Nothing is
        ever deleted, and restoring the state that is already current writes nothing.
        """
        who = (who or _default_who()).strip() or _default_who()
        with self._write() as conn:
            cid = self._require_clip(conn, clip_id)
            cur = self._current_annotation(conn, cid)
            target = None
            if annotation_id is not None:
                target = conn.execute("SELECT * FROM annotations WHERE id = ? AND clip_id = ?",
                                      (int(annotation_id), cid)).fetchone()
                if target is None:
                    raise DataError(f"clip {cid} has no annotation {annotation_id}")
            if target is None or target["cleared"]:
                if cur is not None and not cur["cleared"]:
                    self._insert_annotation(conn, cid, None, False, who, cleared=True)
                return None
            if (cur is not None and not cur["cleared"] and cur["count"] == target["count"]
                    and cur["unsure"] == target["unsure"]):
                aid = int(cur["id"])
            else:
                aid = self._insert_annotation(conn, cid, target["count"], bool(target["unsure"]), who)
        return self._annotation(aid)

    def _annotation(self, ann_id: int) -> Annotation:
        with self._lock:
            r = self.conn.execute("SELECT * FROM annotations WHERE id = ?", (ann_id,)).fetchone()
        return _row_to_annotation(r)

    def annotation_history(self, clip_id: int) -> list[Annotation]:
        """Every annotation row of the clip, oldest first; the last one is the current state."""
        with self._lock:
            self._require_clip(self.conn, clip_id)
            rows = self.conn.execute("SELECT * FROM annotations WHERE clip_id = ? ORDER BY id",
                                     (int(clip_id),)).fetchall()
        return [_row_to_annotation(r) for r in rows]

    def set_prediction(self, clip_id: int, count: int, confidence: Optional[float],
                       model: PathLike) -> int:
        """Record what a counter predicted for a clip (latest prediction wins). Returns its id."""
        c = _check_count(count, "predicted count", allow_none=False)
        conf = None if confidence is None else float(confidence)
        if conf is not None and not (0.0 <= conf <= 1.0):
            raise DataError(f"confidence {confidence!r} is not in 0..1")
        with self._write() as conn:
            cid = self._require_clip(conn, clip_id)
            cur = conn.execute(
                "INSERT INTO predictions (clip_id, model, count, confidence, created_at)"
                " VALUES (?,?,?,?,?)", (cid, os.fspath(model), c, conf, now_iso()))
            return int(cur.lastrowid)

    def set_predictions(self, items: Iterable[tuple[int, int, Optional[float]]],
                        model: PathLike) -> int:
        """Many predictions ``(clip_id, count, confidence)`` in one transaction. Returns how many."""
        rows = []
        for clip_id, count, confidence in items:
            c = _check_count(count, "predicted count", allow_none=False)
            conf = None if confidence is None else float(confidence)
            if conf is not None and not (0.0 <= conf <= 1.0):
                raise DataError(f"confidence {confidence!r} is not in 0..1")
            rows.append((int(clip_id), os.fspath(model), c, conf))
        stamp = now_iso()
        with self._write() as conn:
            for cid, m, c, conf in rows:
                self._require_clip(conn, cid)
                conn.execute("INSERT INTO predictions (clip_id, model, count, confidence, created_at)"
                             " VALUES (?,?,?,?,?)", (cid, m, c, conf, stamp))
        return len(rows)

    def predictions(self, clip_id: int) -> list[Prediction]:
        with self._lock:
            rows = self.conn.execute("SELECT * FROM predictions WHERE clip_id = ? ORDER BY id",
                                     (int(clip_id),)).fetchall()
        return [Prediction(r["id"], r["clip_id"], r["model"], r["count"], r["confidence"],
                           r["created_at"]) for r in rows]

    def next_unannotated(self, after_clip_id: Optional[int] = None,
                         include_missing: bool = False) -> Optional[ClipRow]:
        """The next clip to annotate: unannotated, file present, most uncertain first.

        Order: clips with a prediction by ascending confidence, then clips without one (or
        without a confidence), then by path, then id. ``after_clip_id`` continues after that
        clip's place in this order (it may have just been annotated); None when none is left
        after it (call again without ``after_clip_id`` to wrap around).
        """
        where = [f"NOT {_ANNOTATED}"]
        if not include_missing:
            where.append("c.missing = 0")
        params: list[Any] = []
        with self._lock:
            if after_clip_id is not None:
                ref = self.conn.execute(
                    f"SELECT {_NEXT_GROUP} AS g, {_NEXT_CONF} AS cf, c.path AS path, c.id AS id"
                    f" FROM clips c LEFT JOIN predictions p ON p.id ="
                    f" (SELECT MAX(id) FROM predictions WHERE clip_id = c.id) WHERE c.id = ?",
                    (int(after_clip_id),)).fetchone()
                if ref is None:
                    raise DataError(f"no clip with id {after_clip_id} in library {self.path}")
                where.append(f"({_NEXT_GROUP}, {_NEXT_CONF}, c.path, c.id) > (?, ?, ?, ?)")
                params += [ref["g"], ref["cf"], ref["path"], ref["id"]]
            sql = (f"{_CLIP_SELECT} WHERE {' AND '.join(where)} "
                   f"ORDER BY {_NEXT_GROUP}, {_NEXT_CONF}, c.path, c.id LIMIT 1")
            r = self.conn.execute(sql, params).fetchone()
        return None if r is None else _row_to_clip(r)

    # ------------------------------------------------------------ missing files

    def refresh_missing(self, search_in: Union[None, PathLike, Sequence[PathLike]] = None,
                        recursive: bool = True, progress: Optional[ProgressFn] = None,
                        cancel: Optional[CancelToken] = None) -> RefreshReport:
        """Flag clips whose file is gone; re-find moved files by content hash.

        A clip whose file exists is marked present (``last_seen`` updated). A clip whose file
        is gone is looked for among the media files under ``search_in`` (a folder or a list of
        folders) by size and content hash; if found, its path is updated (annotations follow),
        otherwise it is flagged ``missing``. Rows are never deleted.
        """
        with self._lock:
            rows = self.conn.execute(
                "SELECT id, path, content_hash, size, missing FROM clips ORDER BY id").fetchall()
        gone = [r for r in rows if not os.path.isfile(r["path"])]
        gone_ids = {g["id"] for g in gone}
        present = [r["id"] for r in rows if r["id"] not in gone_ids]
        report = RefreshReport(present=len(present))

        # candidate files (by size) under the search folders, not already some clip's path
        candidates: dict[int, list[str]] = {}
        if gone and search_in is not None:
            folders = [search_in] if isinstance(search_in, (str, os.PathLike)) else list(search_in)
            known = {r["path"] for r in rows}
            for folder in folders:
                root = _abspath(folder)
                if not os.path.isdir(root):
                    raise DataError(f"folder {root} does not exist")
                for f in _iter_media(root, recursive):
                    if f in known:
                        continue
                    try:
                        candidates.setdefault(os.path.getsize(f), []).append(f)
                    except OSError:
                        continue
        hashes: dict[str, str] = {}
        moves: list[tuple[int, str, str]] = []
        flagged: list[tuple[int, str]] = []
        taken: set[str] = set()
        for i, r in enumerate(gone):
            check_cancel(cancel, "refresh")
            new = None
            for f in candidates.get(r["size"], []) if r["size"] is not None else []:
                if f in taken:
                    continue
                if f not in hashes:
                    try:
                        hashes[f] = content_hash(f)
                    except (OSError, DataError):
                        continue
                if hashes[f] == r["content_hash"]:
                    new = f
                    break
            if new is not None:
                taken.add(new)
                moves.append((r["id"], r["path"], new))
            else:
                flagged.append((r["id"], r["path"]))
            emit(progress, "refresh", i + 1, len(gone), os.path.basename(r["path"]))

        stamp = now_iso()
        with self._write() as conn:
            for j in range(0, len(present), 500):
                chunk = present[j:j + 500]
                conn.execute(f"UPDATE clips SET missing = 0, last_seen = ? WHERE id IN "
                             f"({','.join('?' * len(chunk))})", [stamp, *chunk])
            for cid, old, new in moves:
                if conn.execute("SELECT 1 FROM clips WHERE path = ?", (new,)).fetchone():
                    flagged.append((cid, old))  # imported meanwhile under the new path
                    continue
                conn.execute("UPDATE clips SET path = ?, missing = 0, last_seen = ? WHERE id = ?",
                             (new, stamp, cid))
                report.relinked.append((old, new))
            for cid, _old in flagged:
                conn.execute("UPDATE clips SET missing = 1 WHERE id = ?", (cid,))
        report.missing = [old for _cid, old in flagged]
        return report

    # ------------------------------------------------------------ export

    def _export_rows(self, annotated_only: bool) -> list[ClipRow]:
        return self.clips("annotated" if annotated_only else None, order_by="path")

    def export_csv(self, path: PathLike, annotated_only: bool = True,
                   relative: bool = False) -> int:
        """Write a manifest: ``path,count,unsure,who,when,predicted_count``. Returns rows written.

        ``count`` is empty for "unknown" (and, with ``annotated_only=False``, for unannotated
        clips). Paths are absolute unless ``relative`` (then relative to the CSV's folder).
        The file is written to a temporary name and renamed, so it is never half-written.
        """
        out = _abspath(path)
        rows = self._export_rows(annotated_only)
        base = os.path.dirname(out)

        def write(fh: Any) -> None:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["path", "count", "unsure", "who", "when", "predicted_count"])
            for c in rows:
                p = os.path.relpath(c.path, base) if relative else c.path
                w.writerow([p, "" if c.count is None else c.count,
                            1 if c.unsure else 0 if c.annotated else "",
                            c.annotated_by or "", c.annotated_at or "",
                            "" if c.predicted_count is None else c.predicted_count])

        _atomic_write_text(out, write)
        return len(rows)

    def export_json(self, path: PathLike) -> int:
        """Write everything (clips with annotation history and predictions, runs) as JSON."""
        out = _abspath(path)
        data = self.to_dict()
        _atomic_write_text(out, lambda fh: json.dump(data, fh, indent=1, allow_nan=False))
        return len(data["clips"])

    def to_dict(self) -> dict[str, Any]:
        with self._read() as conn:
            clips = [_row_to_clip(r) for r in conn.execute(f"{_CLIP_SELECT} ORDER BY c.path, c.id")]
            hist: dict[int, list[dict]] = {}
            for r in conn.execute("SELECT * FROM annotations ORDER BY id"):
                hist.setdefault(r["clip_id"], []).append(_row_to_annotation(r).to_dict())
            preds: dict[int, list[dict]] = {}
            for r in conn.execute("SELECT * FROM predictions ORDER BY id"):
                preds.setdefault(r["clip_id"], []).append(
                    Prediction(r["id"], r["clip_id"], r["model"], r["count"], r["confidence"],
                               r["created_at"]).to_dict())
            runs = [r.to_dict() for r in self._runs(conn)]
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        boxes: dict[int, list[dict]] = {}
        for c in clips:
            hist_boxes = self.box_history(c.id)
            if hist_boxes:
                boxes[c.id] = [f.to_dict() for f in hist_boxes]
        out = []
        for c in clips:
            d = c.to_dict()
            d["annotation_history"] = hist.get(c.id, [])
            d["predictions"] = preds.get(c.id, [])
            d["box_history"] = boxes.get(c.id, [])
            out.append(d)
        return {"format": "avstudio-library", "schema_version": version,
                "library": self.path, "exported_at": now_iso(), "clips": _clean_json(out),
                "runs": _clean_json(runs)}

    # ------------------------------------------------------------ summaries / training

    def stage_summary(self, include_missing: bool = True) -> dict[str, int]:
        """Number of clips per derived stage ("C0".."C16"; "unknown" for no stage)."""
        where = "1" if include_missing else "c.missing = 0"
        with self._lock:
            rows = self.conn.execute(
                f"SELECT {_STAGE_COUNT} AS s, COUNT(*) AS n {_CLIP_FROM} WHERE {where} "
                f"GROUP BY s ORDER BY s IS NULL, s").fetchall()
        return {("unknown" if r["s"] is None else f"C{r['s']}"): int(r["n"]) for r in rows}

    def stats(self) -> dict[str, Any]:
        """Counts for ``avstudio library stats`` and the GUI's status bar."""
        with self._read() as conn:
            q = lambda f: int(conn.execute(  # noqa: E731
                f"SELECT COUNT(*) FROM ({_CLIP_SELECT} WHERE {_FILTERS[f]})").fetchone()[0])
            out = {
                "library": self.path,
                "schema_version": int(conn.execute("PRAGMA user_version").fetchone()[0]),
                "clips": q("all"), "annotated": q("annotated"), "unannotated": q("unannotated"),
                "unsure": q("unsure"), "unknown": q("unknown"), "missing": q("missing"),
                "predicted": q("predicted"), "disagree": q("disagree"),
                "annotation_rows": int(conn.execute("SELECT COUNT(*) FROM annotations").fetchone()[0]),
                "runs": int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]),
            }
            seconds = float(conn.execute("SELECT COALESCE(SUM(duration), 0) FROM clips").fetchone()[0])
            out["hours"] = round(seconds / 3600.0, 3)
            out["seconds"] = round(seconds, 3)
        out["stages"] = self.stage_summary()
        out.update(self.box_stats())
        return out

    def check(self) -> list[str]:
        """SQLite's own consistency checks of the file (``PRAGMA integrity_check`` and
        ``foreign_key_check``): an empty list when the library is sound, else one line per problem."""
        problems: list[str] = []
        with self._lock:
            try:
                rows = [r[0] for r in self.conn.execute("PRAGMA integrity_check").fetchall()]
            except LibraryError as exc:
                return [str(exc)]
            if rows != ["ok"]:
                problems += [str(r) for r in rows]
            for r in self.conn.execute("PRAGMA foreign_key_check").fetchall():
                problems.append(f"table {r[0]} row {r[1]} refers to a missing row of {r[2]}")
        return problems

    def annotated_manifest_rows(self, include_unsure: bool = True,
                                include_missing: bool = False) -> list[dict[str, Any]]:
        """Training rows: ``{"path", "count", "unsure", "who", "clip_id", "duration"}``.

        Only clips with a current annotation that has a count (0..16); clips whose file is
        missing are left out unless ``include_missing``. Paths are absolute, so the rows work
        as a manifest from anywhere.
        """
        out = []
        for c in self.clips("annotated", order_by="path"):
            if c.count is None or (c.missing and not include_missing):
                continue
            if c.unsure and not include_unsure:
                continue
            out.append({"path": c.path, "count": c.count, "unsure": c.unsure,
                        "who": c.annotated_by, "clip_id": c.id, "duration": c.duration})
        return out

    # ------------------------------------------------------------ runs

    def add_run(self, name: str, config: Optional[dict[str, Any]] = None,
                stages: Optional[Sequence[Any]] = None, status: str = "created") -> int:
        """Record a training run. Returns its id."""
        if not str(name).strip():
            raise DataError("a run needs a name")
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO runs (name, config, stages, status, created_at) VALUES (?,?,?,?,?)",
                (str(name), _dumps(config or {}), _dumps(list(stages or [])), str(status), now_iso()))
            return int(cur.lastrowid)

    def update_run(self, run_id: int, status: Optional[str] = None,
                   metrics: Optional[dict[str, Any]] = None, model_path: Optional[PathLike] = None,
                   stages: Optional[Sequence[Any]] = None, merge_metrics: bool = True) -> None:
        """Update a run. ``status="running"`` stamps ``started_at`` (first time), a final status
        (finished/failed/cancelled) stamps ``ended_at``. ``metrics`` are merged into the stored
        ones unless ``merge_metrics=False``."""
        with self._write() as conn:
            r = conn.execute("SELECT * FROM runs WHERE id = ?", (int(run_id),)).fetchone()
            if r is None:
                raise DataError(f"no run with id {run_id} in library {self.path}")
            sets: dict[str, Any] = {}
            stamp = now_iso()
            if status is not None:
                sets["status"] = str(status)
                if status == "running" and r["started_at"] is None:
                    sets["started_at"] = stamp
                if status in _TERMINAL:
                    sets["ended_at"] = stamp
                    if r["started_at"] is None:
                        sets["started_at"] = stamp
            if metrics is not None:
                m = _loads(r["metrics"], {}) if merge_metrics else {}
                m.update(_clean_json(metrics))
                sets["metrics"] = _dumps(m)
            if model_path is not None:
                sets["model_path"] = os.fspath(model_path)
            if stages is not None:
                sets["stages"] = _dumps(list(stages))
            if sets:
                conn.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",
                             [*sets.values(), int(run_id)])

    def add_checkpoint(self, run_id: int, stage: Any, epoch: Optional[int], path: PathLike,
                       metrics: Optional[dict[str, Any]] = None) -> int:
        """Record a checkpoint a run saved (``stage`` e.g. "C2" or 2). Returns its id."""
        st = stage_name(stage) if isinstance(stage, int) and not isinstance(stage, bool) else str(stage)
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE id = ?", (int(run_id),)).fetchone() is None:
                raise DataError(f"no run with id {run_id} in library {self.path}")
            cur = conn.execute(
                "INSERT INTO run_checkpoints (run_id, stage, epoch, path, metrics, created_at)"
                " VALUES (?,?,?,?,?,?)",
                (int(run_id), st, None if epoch is None else int(epoch), os.fspath(path),
                 _dumps(metrics or {}), now_iso()))
            return int(cur.lastrowid)

    def runs(self) -> list[RunRow]:
        """All runs, oldest first, each with its checkpoints."""
        with self._read() as conn:
            return self._runs(conn)

    def run(self, run_id: int) -> RunRow:
        for r in self.runs():
            if r.id == int(run_id):
                return r
        raise DataError(f"no run with id {run_id} in library {self.path}")

    @staticmethod
    def _runs(conn: sqlite3.Connection) -> list[RunRow]:
        cps: dict[int, list[CheckpointRow]] = {}
        for r in conn.execute("SELECT * FROM run_checkpoints ORDER BY id"):
            cps.setdefault(r["run_id"], []).append(CheckpointRow(
                r["id"], r["run_id"], r["stage"], r["epoch"], r["path"], _loads(r["metrics"], {}),
                r["created_at"]))
        return [RunRow(r["id"], r["name"], _loads(r["config"], {}), _loads(r["stages"], []),
                       r["status"], r["created_at"], r["started_at"], r["ended_at"],
                       r["model_path"], _loads(r["metrics"], {}), cps.get(r["id"], []))
                for r in conn.execute("SELECT * FROM runs ORDER BY id")]


# ---------------------------------------------------------------- module helpers


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


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (ours contain no ';' inside literals or triggers)."""
    return [s.strip() for s in script.split(";") if s.strip()]


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


def open_library(path: PathLike, create: bool = False) -> ClipLibrary:
    """Open an existing library (``create=False``: DataError if it does not exist)."""
    return ClipLibrary(path, create=create)


__all__ = [
    "ClipLibrary", "ClipRow", "Annotation", "Prediction", "RunRow", "CheckpointRow",
    "ImportReport", "RefreshReport", "SCHEMA_VERSION", "MIGRATIONS", "MEDIA_EXTENSIONS",
    "content_hash", "parse_count", "open_library",
]
