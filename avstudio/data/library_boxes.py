"""The clip library's box annotations (schema v3): :class:`BoxStore`, mixed into ClipLibrary.

Storage: every change of a frame's boxes is one row of ``box_revisions`` (clip, frame index,
time, map rule, who, when) with its boxes in ``boxes``; a frame's current boxes are those of
its newest revision, and a revision without boxes means "this frame's boxes were removed".
Nothing is ever updated or deleted, so the whole history stays (as for source counts), and
undo/redo write a new revision that copies an earlier one (:meth:`BoxStore.restore_boxes`).
Each change is one ``BEGIN IMMEDIATE ... COMMIT`` transaction (``ClipLibrary._write``).
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any, Iterable, Optional, Sequence

from ..errors import DataError
from .boxes import Box, BoxFrame, check_rule, make_box
from .stamps import default_who as _default_who
from .stamps import now_iso

#: Appended to ``MIGRATIONS`` as the step from schema v2 to v3.
MIGRATION_V3 = """
CREATE TABLE box_revisions (
    id           INTEGER PRIMARY KEY,
    clip_id      INTEGER NOT NULL REFERENCES clips(id) ON DELETE CASCADE,
    frame        INTEGER NOT NULL CHECK (frame >= 0),
    time         REAL NOT NULL CHECK (time >= 0),
    map_rule     TEXT NOT NULL DEFAULT 'union' CHECK (map_rule IN ('union', 'consensus')),
    who          TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX box_revisions_frame ON box_revisions(clip_id, frame, id);
CREATE TABLE boxes (
    id           INTEGER PRIMARY KEY,
    revision_id  INTEGER NOT NULL REFERENCES box_revisions(id) ON DELETE CASCADE,
    x0           REAL NOT NULL,
    y0           REAL NOT NULL,
    x1           REAL NOT NULL,
    y1           REAL NOT NULL,
    source       INTEGER CHECK (source IS NULL OR (source BETWEEN 1 AND 16)),
    label        TEXT,
    annotator    TEXT,
    CHECK (x0 >= 0 AND y0 >= 0 AND x1 <= 1 AND y1 <= 1 AND x0 < x1 AND y0 < y1)
);
CREATE INDEX boxes_revision ON boxes(revision_id, id)
"""

# the newest revision of every (clip, frame)
_CURRENT = """
SELECT r.* FROM box_revisions r
WHERE r.id = (SELECT MAX(id) FROM box_revisions q WHERE q.clip_id = r.clip_id AND q.frame = r.frame)
"""

#: how far past the clip's last frame a time may be (one frame at most) before it is refused
_END_SLACK_FRAMES = 1.0


def _boxes_of(conn: sqlite3.Connection, revision_ids: Sequence[int]) -> dict[int, list[Box]]:
    out: dict[int, list[Box]] = {int(i): [] for i in revision_ids}
    ids = list(out)
    for j in range(0, len(ids), 500):
        chunk = ids[j:j + 500]
        for r in conn.execute(
                f"SELECT * FROM boxes WHERE revision_id IN ({','.join('?' * len(chunk))}) "
                f"ORDER BY revision_id, id", chunk):
            out[int(r["revision_id"])].append(
                Box(r["x0"], r["y0"], r["x1"], r["y1"], r["source"], r["label"], r["annotator"]))
    return out


def _frame(r: sqlite3.Row, boxes: list[Box]) -> BoxFrame:
    return BoxFrame(clip_id=int(r["clip_id"]), frame=int(r["frame"]), time=float(r["time"]),
                    boxes=boxes, map_rule=r["map_rule"], who=r["who"], when=r["created_at"],
                    revision_id=int(r["id"]))


class BoxStore:
    """Box annotations of a clip library (methods of ``ClipLibrary``; see docs/library.md)."""

    # provided by ClipLibrary
    path: str
    _lock: Any

    def _write(self):  # pragma: no cover - ClipLibrary's
        raise NotImplementedError

    def _read(self):  # pragma: no cover - ClipLibrary's
        raise NotImplementedError

    # ------------------------------------------------------------ checks

    def _clip_for_boxes(self, conn: sqlite3.Connection, clip_id: Any) -> sqlite3.Row:
        try:
            cid = int(clip_id)
        except (TypeError, ValueError):
            raise DataError(f"{clip_id!r} is not a clip id") from None
        r = conn.execute("SELECT id, path, duration, fps FROM clips WHERE id = ?", (cid,)).fetchone()
        if r is None:
            raise DataError(f"no clip with id {clip_id} in library {self.path}")
        return r

    @staticmethod
    def check_frame(clip: Any, frame: Any, time: Any) -> tuple[int, float]:
        """``(frame, time)`` checked against a clip row (``duration``, ``fps``, ``path``).

        Refuses negative or non-integer frame indices and a frame past the clip's end (more
        than one frame after its duration), with one sentence naming the clip.
        """
        path = clip["path"]
        try:
            f = float(frame)
            if not f.is_integer() or f < 0:
                raise ValueError
            fi = int(f)
        except (TypeError, ValueError):
            raise DataError(f"frame {frame!r} of {path} is not a frame index (0, 1, 2, ...)") from None
        try:
            t = float(time)
            if not math.isfinite(t) or t < 0:
                raise ValueError
        except (TypeError, ValueError):
            raise DataError(f"time {time!r} of frame {fi} of {path} is not a time in seconds") from None
        dur, fps = clip["duration"], clip["fps"]
        if dur is not None and fps:
            slack = _END_SLACK_FRAMES / float(fps)
            last = max(0, int(math.ceil(float(dur) * float(fps) - 1e-6)) - 1)
            if t > float(dur) + slack or fi > last + 1:
                raise DataError(f"frame {fi} at {t:.2f} s is past the end of {path} "
                                f"({float(dur):.2f} s, {last + 1} frames)")
        elif dur is not None and t > float(dur) + 0.1:
            raise DataError(f"time {t:.2f} s is past the end of {path} ({float(dur):.2f} s)")
        return fi, t

    # ------------------------------------------------------------ writes

    def _insert_revision(self, conn: sqlite3.Connection, clip_id: int, frame: int, time: float,
                         rule: str, boxes: Sequence[Box], who: str) -> int:
        cur = conn.execute(
            "INSERT INTO box_revisions (clip_id, frame, time, map_rule, who, created_at) "
            "VALUES (?,?,?,?,?,?)", (clip_id, frame, time, rule, who, now_iso()))
        rid = int(cur.lastrowid)
        conn.executemany(
            "INSERT INTO boxes (revision_id, x0, y0, x1, y1, source, label, annotator) "
            "VALUES (?,?,?,?,?,?,?,?)",
            [(rid, b.x0, b.y0, b.x1, b.y1, b.source, b.label, b.annotator) for b in boxes])
        return rid

    @staticmethod
    def _checked_boxes(boxes: Iterable[Any]) -> list[Box]:
        out = []
        for i, b in enumerate(boxes):
            what = f"box {i + 1}"
            if isinstance(b, Box):
                b = make_box(b.x0, b.y0, b.x1, b.y1, b.source, b.label, b.annotator, what=what)
            elif isinstance(b, dict):
                from .boxes import box_from_dict

                b = box_from_dict(b, what)
            elif isinstance(b, (list, tuple)):
                b = make_box(*b, what=what) if len(b) == 4 else None
                if b is None:
                    raise DataError(f"{what} must be [x0, y0, x1, y1]")
            else:
                raise DataError(f"{what} is not a box")
            out.append(b)
        return out

    @staticmethod
    def _same(a: Sequence[Box], b: Sequence[Box]) -> bool:
        return list(a) == list(b)

    def set_frame_boxes(self, clip_id: int, frame: int, time: float, boxes: Iterable[Any],
                        who: Optional[str] = None, map_rule: Optional[str] = None) -> Optional[int]:
        """Make ``boxes`` the boxes of this frame of the clip (a new revision; [] removes them).

        ``map_rule``: None keeps the frame's rule (``"union"`` for a new frame). Returns the
        revision id now current; writes nothing (and returns the current id, or None for a
        frame without boxes) when the frame already holds exactly these boxes.
        """
        bx = self._checked_boxes(boxes)
        who = (who or _default_who()).strip() or _default_who()
        with self._write() as conn:
            clip = self._clip_for_boxes(conn, clip_id)
            fi, t = self.check_frame(clip, frame, time)
            cur = conn.execute("SELECT * FROM box_revisions WHERE clip_id = ? AND frame = ? "
                               "ORDER BY id DESC LIMIT 1", (int(clip["id"]), fi)).fetchone()
            rule = check_rule(map_rule) if map_rule is not None else (
                cur["map_rule"] if cur is not None else "union")
            if cur is not None:
                old = _boxes_of(conn, [cur["id"]])[int(cur["id"])]
                if self._same(old, bx) and cur["map_rule"] == rule:
                    return int(cur["id"]) if old else None
            elif not bx:
                return None
            return self._insert_revision(conn, int(clip["id"]), fi, t, rule, bx, who)

    def set_many_frame_boxes(self, items: Iterable[Sequence[Any]],
                             who: Optional[str] = None) -> tuple[int, int]:
        """Set the boxes of many frames in one transaction (an import: all or nothing).

        ``items``: ``(clip_id, frame, time, boxes, map_rule, who, where)`` tuples (``who`` None:
        the ``who`` argument; ``where`` names the entry in messages). A frame past its clip's
        end raises :class:`DataError` naming the entry and nothing is written. Returns
        ``(frames written, frames that already held these boxes)``.
        """
        default_who = (who or _default_who()).strip() or _default_who()
        prepared = []
        for clip_id, frame, time, boxes, rule, w, where in items:
            prepared.append((clip_id, frame, time, self._checked_boxes(boxes), check_rule(rule),
                             (w or default_who).strip() or default_who, where))
        written = same = 0
        with self._write() as conn:
            for clip_id, frame, time, bx, rule, w, where in prepared:
                clip = self._clip_for_boxes(conn, clip_id)
                try:
                    fi, t = self.check_frame(clip, frame, time)
                except DataError as exc:
                    raise DataError(f"{where}: {exc}" if where else str(exc)) from None
                cur = conn.execute("SELECT * FROM box_revisions WHERE clip_id = ? AND frame = ? "
                                   "ORDER BY id DESC LIMIT 1", (int(clip["id"]), fi)).fetchone()
                if cur is not None and cur["map_rule"] == rule and \
                        _boxes_of(conn, [cur["id"]])[int(cur["id"])] == bx:
                    same += 1
                    continue
                if cur is None and not bx:
                    same += 1
                    continue
                self._insert_revision(conn, int(clip["id"]), fi, t, rule, bx, w)
                written += 1
        return written, same

    def clear_frame_boxes(self, clip_id: int, frame: int, who: Optional[str] = None) -> Optional[int]:
        """Remove every box of this frame (a revision without boxes). None: it had none."""
        cur = self.frame_boxes(clip_id, frame)
        if cur is None:
            return None
        return self.set_frame_boxes(clip_id, frame, cur.time, [], who=who)

    def restore_boxes(self, clip_id: int, frame: int, revision_id: Optional[int],
                      who: Optional[str] = None) -> Optional[BoxFrame]:
        """Make an earlier revision of this frame current again, as a new revision (undo/redo).

        ``revision_id`` None: the frame had no boxes (they are removed). An undo stack keeps,
        per action, the revision that was current before it and calls this. Restoring what is
        already current writes nothing. Returns the frame's boxes now (None: no boxes).
        """
        who = (who or _default_who()).strip() or _default_who()
        with self._write() as conn:
            clip = self._clip_for_boxes(conn, clip_id)
            cid = int(clip["id"])
            cur = conn.execute("SELECT * FROM box_revisions WHERE clip_id = ? AND frame = ? "
                               "ORDER BY id DESC LIMIT 1", (cid, int(frame))).fetchone()
            if revision_id is None:
                if cur is None:
                    return None
                if _boxes_of(conn, [cur["id"]])[int(cur["id"])]:
                    self._insert_revision(conn, cid, int(frame), float(cur["time"]), cur["map_rule"],
                                          [], who)
                return None
            target = conn.execute("SELECT * FROM box_revisions WHERE id = ? AND clip_id = ? AND frame = ?",
                                  (int(revision_id), cid, int(frame))).fetchone()
            if target is None:
                raise DataError(f"frame {frame} of clip {cid} has no box revision {revision_id}")
            tb = _boxes_of(conn, [target["id"]])[int(target["id"])]
            if cur is not None:
                cb = _boxes_of(conn, [cur["id"]])[int(cur["id"])]
                if cb == tb and cur["map_rule"] == target["map_rule"]:
                    return _frame(cur, cb) if cb else None
            rid = self._insert_revision(conn, cid, int(frame), float(target["time"]),
                                        target["map_rule"], tb, who)
            row = conn.execute("SELECT * FROM box_revisions WHERE id = ?", (rid,)).fetchone()
            return _frame(row, tb) if tb else None

    # ------------------------------------------------------------ reads

    def frame_boxes(self, clip_id: int, frame: int) -> Optional[BoxFrame]:
        """The current boxes of one frame, or None when it has none."""
        with self._read() as conn:
            r = conn.execute("SELECT * FROM box_revisions WHERE clip_id = ? AND frame = ? "
                             "ORDER BY id DESC LIMIT 1", (int(clip_id), int(frame))).fetchone()
            if r is None:
                return None
            b = _boxes_of(conn, [r["id"]])[int(r["id"])]
        return _frame(r, b) if b else None

    def box_frames(self, clip_id: int) -> list[BoxFrame]:
        """The clip's annotated frames (current boxes, at least one), in frame order."""
        with self._read() as conn:
            rows = conn.execute(f"{_CURRENT} AND r.clip_id = ? ORDER BY r.frame",
                                (int(clip_id),)).fetchall()
            boxes = _boxes_of(conn, [r["id"] for r in rows])
        return [_frame(r, boxes[int(r["id"])]) for r in rows if boxes[int(r["id"])]]

    def all_box_frames(self) -> dict[int, list[BoxFrame]]:
        """``{clip_id: annotated frames}`` for every clip with at least one annotated frame."""
        with self._read() as conn:
            rows = conn.execute(f"{_CURRENT} ORDER BY r.clip_id, r.frame").fetchall()
            boxes = _boxes_of(conn, [r["id"] for r in rows])
        out: dict[int, list[BoxFrame]] = {}
        for r in rows:
            b = boxes[int(r["id"])]
            if b:
                out.setdefault(int(r["clip_id"]), []).append(_frame(r, b))
        return out

    def box_history(self, clip_id: int, frame: Optional[int] = None) -> list[BoxFrame]:
        """Every revision of the clip's boxes (of one frame, if given), oldest first; a
        revision with no boxes removed them."""
        sql = "SELECT * FROM box_revisions WHERE clip_id = ?"
        params: list[Any] = [int(clip_id)]
        if frame is not None:
            sql += " AND frame = ?"
            params.append(int(frame))
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY id", params).fetchall()
            boxes = _boxes_of(conn, [r["id"] for r in rows])
        return [_frame(r, boxes[int(r["id"])]) for r in rows]

    def box_stats(self) -> dict[str, int]:
        """``{"box_clips", "box_frames", "boxes", "box_revisions"}`` (current boxes)."""
        frames = self.all_box_frames()
        with self._read() as conn:
            revs = int(conn.execute("SELECT COUNT(*) FROM box_revisions").fetchone()[0])
        return {"box_clips": len(frames), "box_frames": sum(len(v) for v in frames.values()),
                "boxes": sum(len(f.boxes) for v in frames.values() for f in v), "box_revisions": revs}


__all__ = ["BoxStore", "MIGRATION_V3"]
