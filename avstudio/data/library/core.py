"""The clip library: :class:`ClipLibrary`, its clip queries and summaries (the rest comes from its
mixins: imports, annotations, export, runs, boxes)."""

from __future__ import annotations

import os
from typing import Any, Optional, Union

from ...errors import DataError
from ..library_boxes import BoxStore
from .annotations import AnnotationMixin
from .export import ExportMixin
from .imports import ImportMixin
from .rows import (
    _CLIP_FROM,
    _CLIP_SELECT,
    _FILTERS,
    _ORDERS,
    _STAGE_COUNT,
    ClipRow,
    PathLike,
    _abspath,
    _parse_stage,
    _row_to_clip,
)
from .runs import RunMixin
from .store import LibraryError, LibraryStore


class ClipLibrary(ImportMixin, AnnotationMixin, ExportMixin, RunMixin, LibraryStore, BoxStore):
    """A clip library file. ``with ClipLibrary(path) as lib: ...`` or ``open()``/``close()``.

    ``create=False`` refuses to create a new file (``DataError`` if ``path`` does not exist).
    One object may be shared between threads (calls are serialised by a lock); a worker may
    also open its own ``ClipLibrary`` on the same file: WAL lets readers and one writer work
    side by side, and writers wait up to ``timeout`` seconds for each other.
    """

    def clips(self, filter: Optional[str] = None, order_by: str = "path", *,
              stage: Optional[str] = None, search: Optional[str] = None,
              limit: Optional[int] = None) -> list[ClipRow]:
        """Clips with their current annotation and latest prediction.

        ``filter``: None/"all", "annotated", "unannotated", "unsure", "unknown" (annotated as
        "can't tell"), "missing", "present", "predicted", "unpredicted", "disagree".
        ``stage``: only clips whose derived stage is this ("C2"; "none" for no stage).
        ``search``: substring of the path (case-insensitive). ``order_by``: "path", "id",
        "added", "duration", "count", "rate", "margin" (how far the counter's rate is from the
        boundary between two counts: the least certain first; "confidence" is its old name),
        "stage", "annotated_at"; a leading "-" sorts descending. Unknown values are used as SQL nowhere: they raise DataError.
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

    def find_file(self, path: PathLike) -> Optional[ClipRow]:
        """The clip whose file ``path`` is: by its path, else the same file under another name
        (a symlink, a folder linked elsewhere: what the app's File › Open may give). None if no
        clip of the library is that file."""
        row = self.find(path)
        if row is not None:
            return row
        p = os.fspath(path)
        try:
            size = os.stat(p).st_size
        except OSError:
            return None
        row = self.find(os.path.realpath(p))
        if row is not None:
            return row
        with self._lock:
            cands = self.conn.execute("SELECT id, path FROM clips WHERE size = ? ORDER BY id", (size,)).fetchall()
        for c in cands:
            try:
                if os.path.samefile(c["path"], p):
                    return self.get(int(c["id"]))
            except OSError:
                continue
        return None

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


def open_library(path: PathLike, create: bool = False) -> ClipLibrary:
    """Open an existing library (``create=False``: DataError if it does not exist)."""
    return ClipLibrary(path, create=create)
