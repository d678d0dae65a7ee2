"""Box ground truth: where the sound comes from, as the field keeps it (Qt-free, no I/O).

A *box* is an axis-aligned rectangle in normalised frame coordinates (0..1 from the left and
top edges; ``x0 < x1``, ``y0 < y1``), optionally tied to a sound source (1..k: "this box is
source 2") and with a free label. The boxes of one annotated frame make its ground-truth map,
by one of the two rules the public test sets use:

* ``union`` (VGG-Sound Source, and boxes drawn in AV Studio): every pixel inside any box is 1;
* ``consensus`` (SoundNet-Flickr, whose boxes come from several annotators): every box adds 1,
  the sum is halved and clipped at 1, so a pixel marked by one annotator weighs 0.5 and one
  marked by two or more weighs 1.

Maps are rendered on a ``size`` grid (224 x 224 like the field's evaluation code) with the
field's rounding: a box covers rows ``int(y0 * H) .. int(y1 * H) - 1`` and columns
``int(x0 * W) .. int(x1 * W) - 1``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from ..errors import DataError

#: Ground-truth map rules (see the module docstring).
MAP_RULES = ("union", "consensus")

#: Sources a box may be tied to (the library's source counts go up to 16).
MAX_SOURCE = 16

#: How far outside the frame a coordinate may stray (annotation tools round) before a box is
#: refused as "outside the frame"; within it, coordinates are clipped to 0..1.
FRAME_TOLERANCE = 0.02

#: The field's evaluation grid.
GT_SIZE = (224, 224)


@dataclass(frozen=True)
class Box:
    """One box: normalised coordinates, optional source (1..16), label and annotator."""

    x0: float
    y0: float
    x1: float
    y1: float
    source: Optional[int] = None
    label: Optional[str] = None
    annotator: Optional[str] = None  # who drew it, when a frame has several (SoundNet-Flickr)

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return self.width * self.height

    def contains(self, x: float, y: float) -> bool:
        return self.x0 <= x <= self.x1 and self.y0 <= y <= self.y1

    def replace(self, **kw: Any) -> "Box":
        d = asdict(self)
        d.update(kw)
        return Box(**d)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1}
        if self.source is not None:
            d["source"] = self.source
        if self.label:
            d["label"] = self.label
        if self.annotator:
            d["annotator"] = self.annotator
        return d

    def as_list(self) -> list[float]:
        return [self.x0, self.y0, self.x1, self.y1]


@dataclass
class BoxFrame:
    """The boxes of one annotated frame of a clip (one revision of that frame's history)."""

    clip_id: int
    frame: int  # exact frame index (0-based, decode order of presentation)
    time: float  # seconds of that frame
    boxes: list[Box] = field(default_factory=list)
    map_rule: str = "union"
    who: Optional[str] = None
    when: Optional[str] = None
    revision_id: Optional[int] = None  # the library row; None for boxes not stored yet

    @property
    def cleared(self) -> bool:
        return not self.boxes

    def gt_map(self, size: tuple[int, int] = GT_SIZE) -> np.ndarray:
        return gt_map(self.boxes, self.map_rule, size)

    def to_dict(self) -> dict[str, Any]:
        return {"frame": self.frame, "time": self.time, "map_rule": self.map_rule,
                "boxes": [b.to_dict() for b in self.boxes], "who": self.who, "when": self.when,
                "revision_id": self.revision_id}


def _num(v: Any, what: str) -> float:
    if isinstance(v, bool):
        raise DataError(f"{what}: {v!r} is not a number")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise DataError(f"{what}: {v!r} is not a number") from None
    if not math.isfinite(x):
        raise DataError(f"{what}: {v!r} is not a finite number")
    return x


def check_source(source: Any, what: str = "source") -> Optional[int]:
    if source is None or source == "":
        return None
    if isinstance(source, bool):
        raise DataError(f"{what} {source!r} is not a source number 1..{MAX_SOURCE}")
    try:
        s = float(source)
    except (TypeError, ValueError):
        raise DataError(f"{what} {source!r} is not a source number 1..{MAX_SOURCE}") from None
    if not s.is_integer() or not 1 <= s <= MAX_SOURCE:
        raise DataError(f"{what} {source!r} is not a source number 1..{MAX_SOURCE}")
    return int(s)


def make_box(x0: Any, y0: Any, x1: Any, y1: Any, source: Any = None, label: Any = None,
             annotator: Any = None, what: str = "box", scale: float = 1.0) -> Box:
    """A checked :class:`Box` from raw numbers (``scale``: divide by it, e.g. 256 for pixels).

    Coordinates a little outside the frame (``FRAME_TOLERANCE`` of its size) are clipped to
    it; a box further outside, reversed or without area raises :class:`DataError` naming
    ``what`` and the values, so no bad box reaches the library.
    """
    vals = [_num(v, what) / scale for v in (x0, y0, x1, y1)]
    shown = ", ".join(f"{v * scale:g}" for v in vals)
    unit = f" of {scale:g}" if scale != 1.0 else ""
    lo, hi = -FRAME_TOLERANCE, 1.0 + FRAME_TOLERANCE
    if any(v < lo or v > hi for v in vals):
        raise DataError(f"{what} [{shown}] is outside the frame (coordinates must be 0..{scale:g}{unit})")
    a, b, c, d = (min(1.0, max(0.0, v)) for v in vals)
    if c <= a or d <= b:
        raise DataError(f"{what} [{shown}] has no area (it needs x0 < x1 and y0 < y1)")
    lab = None if label is None else str(label).strip() or None
    ann = None if annotator is None else str(annotator).strip() or None
    return Box(a, b, c, d, check_source(source, f"{what}: source"), lab, ann)


def box_from_dict(d: Any, what: str = "box") -> Box:
    """A box from ``{"x0", "y0", "x1", "y1", "source"?, "label"?, "annotator"?}`` or a
    4-list ``[x0, y0, x1, y1]``."""
    if isinstance(d, (list, tuple)):
        if len(d) != 4:
            raise DataError(f"{what} must be [x0, y0, x1, y1], got {len(d)} numbers")
        return make_box(*d, what=what)
    if not isinstance(d, dict):
        raise DataError(f"{what} must be an object with x0, y0, x1, y1 (got {type(d).__name__})")
    missing = [k for k in ("x0", "y0", "x1", "y1") if k not in d]
    if missing:
        raise DataError(f"{what} has no {', '.join(missing)}")
    return make_box(d["x0"], d["y0"], d["x1"], d["y1"], d.get("source"), d.get("label"),
                    d.get("annotator"), what=what)


def check_rule(rule: Any) -> str:
    r = str(rule or "union").strip().lower()
    if r not in MAP_RULES:
        raise DataError(f"unknown ground-truth map rule {rule!r} (one of: {', '.join(MAP_RULES)})")
    return r


def box_slices(box: Box, size: tuple[int, int]) -> tuple[slice, slice]:
    H, W = size
    return slice(int(box.y0 * H), int(box.y1 * H)), slice(int(box.x0 * W), int(box.x1 * W))


def gt_map(boxes: Sequence[Box], rule: str = "union", size: tuple[int, int] = GT_SIZE) -> np.ndarray:
    """The ground-truth map of these boxes (float32 [H, W] in 0..1) under ``rule``."""
    rule = check_rule(rule)
    m = np.zeros(size, np.float32)
    for b in boxes:
        ys, xs = box_slices(b, size)
        m[ys, xs] += 1.0
    if rule == "consensus":
        m = np.minimum(m / 2.0, 1.0)
    else:
        m = (m > 0).astype(np.float32)
    return m


def source_boxes(boxes: Iterable[Box], source: Optional[int]) -> list[Box]:
    """The boxes tied to ``source`` (None: the boxes tied to no source)."""
    return [b for b in boxes if b.source == source]


def hit_test(boxes: Sequence[Box], x: float, y: float) -> Optional[int]:
    """Index of the smallest box containing (x, y), or None (the one a click selects)."""
    best, area = None, math.inf
    for i, b in enumerate(boxes):
        if b.contains(x, y) and b.area < area:
            best, area = i, b.area
    return best


__all__ = ["Box", "BoxFrame", "MAP_RULES", "MAX_SOURCE", "GT_SIZE", "FRAME_TOLERANCE", "make_box",
           "box_from_dict", "check_rule", "check_source", "gt_map", "box_slices", "source_boxes",
           "hit_test"]
