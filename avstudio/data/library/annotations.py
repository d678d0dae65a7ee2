"""Source-count annotations (with their history, never deleted) and the counter's predictions."""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterable
from typing import Any, Optional

from ...errors import DataError
from ..stamps import default_who as _default_who
from ..stamps import now_iso
from .rows import (
    _ANNOTATED,
    _CLIP_SELECT,
    _NEXT_CONF,
    _NEXT_GROUP,
    Annotation,
    ClipRow,
    PathLike,
    Prediction,
    _check_count,
    _row_to_annotation,
    _row_to_clip,
    _row_to_prediction,
)


class AnnotationMixin:
    """ClipLibrary's annotations and predictions (a mixin of :class:`LibraryStore`)."""

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

    def set_prediction(self, clip_id: int, count: int, rate: Optional[float], model: PathLike) -> int:
        """Record what a counter predicted for a clip (latest prediction wins): the count and the
        counter's rate (None: the count did not come from a rate, e.g. a clip without sound).
        Returns its id."""
        return self._insert_predictions([(clip_id, count, rate)], model)[0]

    def set_predictions(self, items: Iterable[tuple[int, int, Optional[float]]],
                        model: PathLike) -> int:
        """Many predictions ``(clip_id, count, rate)`` in one transaction. Returns how many."""
        return len(self._insert_predictions(items, model))

    def _insert_predictions(self, items: Iterable[tuple[int, int, Optional[float]]],
                            model: PathLike) -> list[int]:
        rows = []
        for clip_id, count, rate in items:
            c = _check_count(count, "predicted count", allow_none=False)
            lam = None if rate is None else float(rate)
            if lam is not None and not (math.isfinite(lam) and lam >= 0.0):
                raise DataError(f"counter rate {rate!r} is not a number >= 0")
            rows.append((int(clip_id), os.fspath(model), c, lam))
        stamp = now_iso()
        ids = []
        with self._write() as conn:
            for cid, m, c, lam in rows:
                self._require_clip(conn, cid)
                cur = conn.execute("INSERT INTO predictions (clip_id, model, count, rate, created_at)"
                                   " VALUES (?,?,?,?,?)", (cid, m, c, lam, stamp))
                ids.append(int(cur.lastrowid))
        return ids

    def predictions(self, clip_id: int) -> list[Prediction]:
        with self._lock:
            rows = self.conn.execute("SELECT * FROM predictions WHERE clip_id = ? ORDER BY id",
                                     (int(clip_id),)).fetchall()
        return [_row_to_prediction(r) for r in rows]

    def next_unannotated(self, after_clip_id: Optional[int] = None,
                         include_missing: bool = False) -> Optional[ClipRow]:
        """The next clip to annotate: unannotated, file present, most uncertain first.

        Order: clips with a prediction by ascending margin (how far the counter's rate is from
        the boundary between two counts: the least certain first), then clips without one, then
        by path, then id. ``after_clip_id`` continues after that clip's place in this order (it may have just been annotated); None when none is left
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
