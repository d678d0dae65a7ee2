"""The library file as SQLite holds it: one connection per :class:`~avstudio.data.library.ClipLibrary`,
WAL journal, ``BEGIN IMMEDIATE`` write transactions, migrations, and damaged files named in
one :class:`LibraryError` sentence (see the package's docstring for why)."""

from __future__ import annotations

import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

from ... import dbguard
from ...dbguard import database_of, refusal
from ...errors import DataError
from . import schema
from .rows import PathLike, _abspath

BUSY_TIMEOUT_S = 10.0

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

    def execute(self, sql: str, parameters: Any = ()) -> _Cursor:  # type: ignore[override]
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


class LibraryStore:
    """Opening, closing and transactions of a library file (the base of ClipLibrary)."""

    def __init__(self, path: PathLike, create: bool = True, timeout: float = BUSY_TIMEOUT_S,
                 open_now: bool = True):
        self.path = path if os.fspath(path) == ":memory:" else _abspath(path)
        self.create = create
        self.timeout = float(timeout)
        self._conn: Optional[sqlite3.Connection] = None
        self._lock = threading.RLock()
        if open_now:
            self.open()

    def open(self) -> LibraryStore:
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
        if app_id not in (0, schema.APPLICATION_ID):
            raise DataError(f"{self.path} is not an AV Studio library (application id {app_id:#x})")
        if version > schema.SCHEMA_VERSION:
            raise DataError(
                f"library {self.path} has schema version {version}, newer than this AV Studio "
                f"understands ({schema.SCHEMA_VERSION}); update AV Studio to open it")
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

    def __enter__(self) -> LibraryStore:
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
                conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
            for v in range(version, schema.SCHEMA_VERSION):
                # executescript() would COMMIT first; run the statements one by one instead
                for stmt in schema.split_sql(schema.MIGRATIONS[v]):
                    conn.execute(stmt)
                conn.execute(f"PRAGMA user_version = {v + 1}")
            if version < schema.SCHEMA_VERSION:
                bad = conn.execute("PRAGMA foreign_key_check").fetchall()
                if bad:
                    raise DataError(f"library {self.path}: broken references after migration")
