"""The SQLite files this process has open, which nothing else in the process may open.

SQLite coordinates processes with POSIX advisory locks, and POSIX drops *every* lock a process
holds on a file as soon as the process closes *any* descriptor of that file. So if any code in
a process with a library open (the app, with the library panel, the fine-tune panel and its
run record) calls ``open(library_path)`` and closes it again - to read the header, hash it,
probe it as a video, copy it - the process silently loses its locks. The next process to close
its connection then believes it is the last one, checkpoints and deletes the ``-wal`` and
``-shm`` files under our feet, and our connection goes on writing to deleted files: "database
disk image is malformed". (SQLite's "How To Corrupt An SQLite Database File", section 2.2.)

:class:`avstudio.data.library.ClipLibrary` registers each database it opens here, and every
place that opens user-named files (the media layer, content hashes, imports, exports, written
outputs) asks :func:`database_of` first and refuses those files with one clear sentence.
Only ``stat()`` is used here: it takes no descriptor.

Qt-free and dependency-free: the media layer imports it without importing the library.
"""

from __future__ import annotations

import os
import threading
from typing import Optional

#: The files SQLite keeps beside a database (``-journal`` only outside WAL mode).
COMPANIONS = ("", "-wal", "-shm", "-journal")

_lock = threading.Lock()
_open: dict[str, int] = {}  # absolute path of the database file -> open connections


def _norm(path) -> str:
    return os.path.normpath(os.path.abspath(os.path.expanduser(os.fspath(path))))


def register(path) -> None:
    """A connection to the database at ``path`` was opened in this process."""
    p = _norm(path)
    with _lock:
        _open[p] = _open.get(p, 0) + 1


def unregister(path) -> None:
    """A connection registered with :func:`register` was closed."""
    p = _norm(path)
    with _lock:
        n = _open.get(p, 0) - 1
        if n > 0:
            _open[p] = n
        else:
            _open.pop(p, None)


def open_databases() -> list[str]:
    with _lock:
        return sorted(_open)


def database_of(path) -> Optional[str]:
    """The open database that ``path`` is (or is a ``-wal``/``-shm``/``-journal`` file of), or None.

    Compared by name and, for files that exist, by device and inode (a hard link, a symlink
    or another spelling of the path is the same file). Never opens anything.
    """
    try:
        p = _norm(path)
    except TypeError:
        return None
    dbs = open_databases()
    if not dbs:
        return None
    try:
        st = os.stat(p)
        key = (st.st_dev, st.st_ino)
    except OSError:
        key = None
    for db in dbs:
        for suffix in COMPANIONS:
            q = db + suffix
            if q == p:
                return db
            if key is None:
                continue
            try:
                sq = os.stat(q)
            except OSError:
                continue
            if (sq.st_dev, sq.st_ino) == key:
                return db
    return None


def refusal(path, doing: str = "open") -> Optional[str]:
    """One sentence saying why ``path`` must not be opened here (``doing``: "read as media",
    "overwrite"...), or None if it may be."""
    db = database_of(path)
    if db is None:
        return None
    p = os.fspath(path)
    what = "the clip library" if _norm(p) == db else f"a working file of the clip library {db}"
    return f"cannot {doing} {p!r}: it is {what} open in this AV Studio"


__all__ = ["COMPANIONS", "database_of", "ensure_not_database", "open_databases", "refusal", "register", "unregister"]


def ensure_not_database(path, doing: str, error: type[Exception]) -> None:
    """Raise ``error(sentence)`` if ``path`` is an open database of this process (see :func:`refusal`)."""
    why = refusal(path, doing)
    if why is not None:
        raise error(why)
