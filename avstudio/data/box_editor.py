"""The box tool's state and edits for one clip (Qt-free; the app draws it and forwards input).

The GUI gives pointer events in normalised frame coordinates (0..1 from the frame's left and
top edges) with the size of a few screen pixels in those units (``tol``), and keys; this class
decides what they do and writes every finished edit to the clip library as one revision of the
frame's boxes (:meth:`avstudio.data.library.ClipLibrary.set_frame_boxes`). Each edit returns a
:class:`BoxEdit` (the revision before and after), which the app's undo stack replays with
:meth:`BoxEditor.restore`.

Pointer gestures (left button):

* press on a handle of the selected box (corners, edge midpoints) and drag: resize it;
* press inside a box: select it (the smallest box under the pointer) and drag to move it;
* press elsewhere and drag: draw a new box (shorter than ``tol`` in both directions: just a
  click, which clears the selection).

Boxes never leave the frame: drawing and resizing clip to it, moving stops at its edges.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Optional

from .boxes import Box, BoxFrame, MAX_SOURCE, hit_test

HANDLES = ("tl", "t", "tr", "r", "br", "b", "bl", "l")


@dataclass(frozen=True)
class BoxEdit:
    """One finished edit: undo restores ``before``, redo ``after`` (revision ids; None: no boxes)."""

    clip_id: int
    frame: int
    before: Optional[int]
    after: Optional[int]
    text: str


@dataclass
class _Drag:
    kind: str  # "draw", "move", "resize"
    x: float
    y: float
    index: Optional[int] = None  # the box moved or resized
    handle: Optional[str] = None
    original: Optional[Box] = None
    moved: bool = False


def handle_points(b: Box) -> dict[str, tuple[float, float]]:
    mx, my = (b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2
    return {"tl": (b.x0, b.y0), "t": (mx, b.y0), "tr": (b.x1, b.y0), "r": (b.x1, my),
            "br": (b.x1, b.y1), "b": (mx, b.y1), "bl": (b.x0, b.y1), "l": (b.x0, my)}


def _clip01(v: float) -> float:
    return min(1.0, max(0.0, v))


class BoxEditor:
    """Box editing on one clip of a library. ``time_of(frame)`` gives a frame's time (seconds)."""

    def __init__(self, lib: Any, clip_id: int, fps: float, frame_count: int, video_start: float = 0.0,
                 who: Optional[str] = None):
        self.lib = lib
        self.clip_id = int(clip_id)
        self.fps = float(fps) if fps else 25.0
        self.frame_count = int(frame_count)
        self.video_start = float(video_start)
        self.who = who
        self.frame = 0
        self.selected: Optional[int] = None
        self._drag: Optional[_Drag] = None
        self._preview: Optional[list[Box]] = None
        self.frames: dict[int, BoxFrame] = {}
        self.reload()

    # ------------------------------------------------------------ state

    def reload(self, frame: Optional[int] = None) -> None:
        """Read the clip's boxes (all frames, or one frame) back from the library."""
        if frame is None:
            self.frames = {f.frame: f for f in self.lib.box_frames(self.clip_id)}
        else:
            f = self.lib.frame_boxes(self.clip_id, int(frame))
            if f is None:
                self.frames.pop(int(frame), None)
            else:
                self.frames[int(frame)] = f
        if self.selected is not None and self.selected >= len(self.boxes()):
            self.selected = None

    def time_of(self, frame: int) -> float:
        return self.video_start + int(frame) / self.fps

    def set_frame(self, frame: int) -> None:
        """The frame the player shows (a new frame drops the selection and any drag)."""
        frame = int(frame)
        if frame != self.frame:
            self.frame = frame
            self.selected = None
            self._drag = None
            self._preview = None

    def boxes(self, frame: Optional[int] = None) -> list[Box]:
        """The boxes of a frame (the shown frame: as they look during a drag)."""
        if (frame is None or frame == self.frame) and self._preview is not None:
            return list(self._preview)
        f = self.frames.get(self.frame if frame is None else int(frame))
        return list(f.boxes) if f is not None else []

    def annotated_frames(self) -> list[int]:
        return sorted(self.frames)

    def next_frame(self, after: Optional[int] = None) -> Optional[int]:
        fr = self.annotated_frames()
        i = bisect.bisect_right(fr, self.frame if after is None else after)
        return fr[i] if i < len(fr) else None

    def prev_frame(self, before: Optional[int] = None) -> Optional[int]:
        fr = self.annotated_frames()
        i = bisect.bisect_left(fr, self.frame if before is None else before)
        return fr[i - 1] if i > 0 else None

    def nearby(self, frame: Optional[int] = None, window_s: float = 0.5) -> Optional[BoxFrame]:
        """The annotated frame nearest ``frame`` within ``window_s`` seconds (itself first): the
        boxes the player shows, faded, while scrubbing near an annotated frame."""
        f = self.frame if frame is None else int(frame)
        if f in self.frames:
            return self.frames[f]
        reach = max(1, int(round(window_s * self.fps)))
        best = None
        for g in self.annotated_frames():
            d = abs(g - f)
            if d <= reach and (best is None or d < abs(best - f)):
                best = g
        return self.frames[best] if best is not None else None

    @property
    def dragging(self) -> bool:
        return self._drag is not None

    # ------------------------------------------------------------ hit testing

    def hit(self, x: float, y: float,
            tol: tuple[float, float] = (0.01, 0.01)) -> Optional[tuple[str, int, Optional[str]]]:
        """``("handle", index, name)`` on a handle of the selected box, ``("box", index, None)``
        inside a box (the smallest), else None."""
        bx = self.boxes()
        tx, ty = tol
        if self.selected is not None and self.selected < len(bx):
            for name, (hx, hy) in handle_points(bx[self.selected]).items():
                if abs(x - hx) <= tx and abs(y - hy) <= ty:
                    return ("handle", self.selected, name)
        i = hit_test(bx, x, y)
        return ("box", i, None) if i is not None else None

    # ------------------------------------------------------------ pointer

    def press(self, x: float, y: float, tol: tuple[float, float] = (0.01, 0.01)) -> None:
        x, y = _clip01(x), _clip01(y)
        h = self.hit(x, y, tol)
        self._tol = tol
        if h is not None and h[0] == "handle":
            self._drag = _Drag("resize", x, y, h[1], h[2], self.boxes()[h[1]])
        elif h is not None:
            self.selected = h[1]
            self._drag = _Drag("move", x, y, h[1], None, self.boxes()[h[1]])
        else:
            self.selected = None
            self._drag = _Drag("draw", x, y)
        self._preview = None

    def move(self, x: float, y: float) -> None:
        d = self._drag
        if d is None:
            return
        x, y = _clip01(x), _clip01(y)
        tx, ty = getattr(self, "_tol", (0.01, 0.01))
        if not d.moved and abs(x - d.x) <= tx and abs(y - d.y) <= ty:
            return  # not a drag yet
        d.moved = True
        bx = list(self.frames[self.frame].boxes) if self.frame in self.frames else []
        if d.kind == "draw":
            nb = Box(min(d.x, x), min(d.y, y), max(d.x, x), max(d.y, y))
            self._preview = bx + [nb]
        elif d.kind == "move":
            o = d.original
            dx = min(max(x - d.x, -o.x0), 1.0 - o.x1)
            dy = min(max(y - d.y, -o.y0), 1.0 - o.y1)
            bx[d.index] = o.replace(x0=o.x0 + dx, x1=o.x1 + dx, y0=o.y0 + dy, y1=o.y1 + dy)
            self._preview = bx
        else:
            o = d.original
            x0, y0, x1, y1 = o.x0, o.y0, o.x1, o.y1
            if "l" in d.handle:
                x0 = x
            if "r" in d.handle:
                x1 = x
            if d.handle.startswith("t"):
                y0 = y
            if d.handle.startswith("b"):
                y1 = y
            bx[d.index] = o.replace(x0=min(x0, x1), x1=max(x0, x1), y0=min(y0, y1), y1=max(y0, y1))
            self._preview = bx

    def release(self, x: float, y: float) -> Optional[BoxEdit]:
        """End the gesture; a drawn, moved or resized box is saved. Returns the edit (None:
        nothing changed, e.g. a click that only selected)."""
        d = self._drag
        if d is None:
            return None
        self.move(x, y)
        preview, self._drag, self._preview = self._preview, None, None
        if not d.moved or preview is None:
            return None
        tx, ty = getattr(self, "_tol", (0.01, 0.01))
        i = len(preview) - 1 if d.kind == "draw" else d.index
        b = preview[i]
        if b.x1 - b.x0 <= tx and b.y1 - b.y0 <= ty:
            return None  # too small to be a box: a click
        if b.x1 - b.x0 <= 0 or b.y1 - b.y0 <= 0:
            return None
        what = {"draw": "draw a box", "move": "move a box", "resize": "resize a box"}[d.kind]
        edit = self._save(preview, what)
        self.selected = i
        return edit

    def cancel(self) -> None:
        """Drop the gesture in progress (Escape)."""
        self._drag = None
        self._preview = None

    # ------------------------------------------------------------ keys

    def delete_selected(self) -> Optional[BoxEdit]:
        bx = self.boxes()
        if self.selected is None or self.selected >= len(bx):
            return None
        del bx[self.selected]
        self.selected = None
        return self._save(bx, "delete a box")

    def tie_source(self, source: int) -> Optional[BoxEdit]:
        """Tie the selected box to a source (1..16); the same number again unties it."""
        bx = self.boxes()
        if self.selected is None or self.selected >= len(bx):
            return None
        s = int(source)
        if not 1 <= s <= MAX_SOURCE:
            return None
        b = bx[self.selected]
        new = None if b.source == s else s
        bx[self.selected] = b.replace(source=new)
        keep = self.selected
        edit = self._save(bx, f"box → source {s}" if new else "untie a box")
        self.selected = keep
        return edit

    def set_label(self, label: Optional[str]) -> Optional[BoxEdit]:
        bx = self.boxes()
        if self.selected is None or self.selected >= len(bx):
            return None
        text = (label or "").strip() or None
        if bx[self.selected].label == text:
            return None
        bx[self.selected] = bx[self.selected].replace(label=text)
        keep = self.selected
        edit = self._save(bx, "label a box")
        self.selected = keep
        return edit

    def select_next(self) -> Optional[int]:
        n = len(self.boxes())
        if not n:
            self.selected = None
        else:
            self.selected = 0 if self.selected is None else (self.selected + 1) % n
        return self.selected

    # ------------------------------------------------------------ writes

    def _save(self, boxes: list[Box], text: str) -> Optional[BoxEdit]:
        cur = self.frames.get(self.frame)
        before = cur.revision_id if cur is not None else None
        after = self.lib.set_frame_boxes(self.clip_id, self.frame, self.time_of(self.frame), boxes, who=self.who)
        self.reload(self.frame)
        if after == before:
            return None
        n = len(boxes)
        return BoxEdit(self.clip_id, self.frame, before, after, f"{text} (frame {self.frame}, {n} boxes)")

    def restore(self, frame: int, revision_id: Optional[int]) -> None:
        """Undo/redo: make a revision of a frame current again (None: the frame had no boxes)."""
        self.lib.restore_boxes(self.clip_id, int(frame), revision_id, who=self.who)
        if int(frame) == self.frame:
            self.selected = None
            self._drag = None
            self._preview = None
        self.reload(int(frame))


__all__ = ["BoxEditor", "BoxEdit", "HANDLES", "handle_points"]
