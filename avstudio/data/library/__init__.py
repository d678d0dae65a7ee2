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

The package: :mod:`.schema` (migrations), :mod:`.store` (the SQLite file: connection,
transactions, damaged files), :mod:`.rows` (the rows and their helpers), and the parts of
:class:`ClipLibrary`: :mod:`.core` (clip queries, summaries), :mod:`.imports`,
:mod:`.annotations` (and predictions), :mod:`.export`, :mod:`.runs`; its boxes are in
:mod:`avstudio.data.library_boxes`.
"""

from .core import ClipLibrary, open_library
from .rows import (
                   MAX_COUNT,
                   MEDIA_EXTENSIONS,
                   MIN_COUNT,
                   NOT_MEDIA_EXTENSIONS,
                   Annotation,
                   CheckpointRow,
                   ClipRow,
                   ImportReport,
                   Prediction,
                   RefreshReport,
                   RunRow,
                   content_hash,
                   is_media_file,
                   parse_count,
                   stage_name,
                   summarize_skipped,
)
from .schema import APPLICATION_ID, MIGRATIONS, RUN_STATUSES, SCHEMA_VERSION
from .store import BUSY_TIMEOUT_S, LibraryError

__all__ = ["APPLICATION_ID", "BUSY_TIMEOUT_S", "MAX_COUNT", "MEDIA_EXTENSIONS", "MIGRATIONS", "MIN_COUNT",
           "NOT_MEDIA_EXTENSIONS", "RUN_STATUSES", "SCHEMA_VERSION", "Annotation", "CheckpointRow", "ClipLibrary", "ClipRow",
           "ImportReport", "LibraryError", "Prediction", "RefreshReport", "RunRow", "content_hash",
           "is_media_file", "open_library", "parse_count", "stage_name", "summarize_skipped"]
