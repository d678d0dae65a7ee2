"""Qt painting shared by the video view, the burnt-in export and the screenshots.

QImage and QPainter on a QImage are safe in worker threads, so the export job paints its
frames with exactly the code the view uses.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPen

from ..studio.overlay import OverlaySettings, cluster_colour, cluster_maps, compose_overlay, contour_segments

#: outlines of very noisy maps are not drawn (they would hide the frame and cost time)
MAX_OUTLINE_SEGMENTS = 600
HALO_MAX_SEGMENTS = 250


@dataclass
class Overlay:
    """What is painted over one frame: the colour fill (a small image scaled onto the frame)
    and each cluster's outline at its threshold (line segments in 0..1 frame coordinates)."""

    image: Optional[QImage] = None
    outlines: list[tuple[np.ndarray, QColor]] = field(default_factory=list)  # ([M, 4], colour)
    _lines: Optional[tuple] = None  # (target rect key, [([QLineF], QColor)]) in device pixels
    _scaled: Optional[QImage] = None  # the fill already scaled to a target size (see prepare)

    def prepare(self, size: tuple[int, int]) -> None:
        """Scale the fill to ``size`` (w, h) now (any thread), so painting is a plain blend."""
        if self.image is not None and size[0] > 0 and size[1] > 0:
            self._scaled = self.image.scaled(int(size[0]), int(size[1]), Qt.AspectRatioMode.IgnoreAspectRatio,
                                             Qt.TransformationMode.SmoothTransformation)

    def __bool__(self) -> bool:
        return self.image is not None or bool(self.outlines)

    def lines(self, target: QRectF) -> list[tuple[list[QLineF], QColor]]:
        """The outlines as device-pixel line segments for ``target`` (cached for the last one).
        (drawLines is an order of magnitude faster than a path of many pieces.)"""
        key = (target.x(), target.y(), target.width(), target.height())
        if self._lines is None or self._lines[0] != key:
            out = []
            for seg, colour in self.outlines:
                if not len(seg):
                    continue
                X = seg.astype(np.float64)
                X[:, [0, 2]] = target.x() + X[:, [0, 2]] * target.width()
                X[:, [1, 3]] = target.y() + X[:, [1, 3]] * target.height()
                out.append(([QLineF(*r) for r in X.tolist()], colour))
            self._lines = (key, out)
        return self._lines[1]


class OverlayCache:
    """Thread-safe LRU of overlays keyed by (frame index, settings version); the frame
    server fills it ahead of the playhead, the view takes from it."""

    def __init__(self, size: int = 160):
        self.size = int(size)
        self._d: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._d

    def put(self, key, value) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def drop_frames(self, frames) -> None:
        frames = set(int(f) for f in frames)
        with self._lock:
            for key in [k for k in self._d if k[0] in frames]:
                del self._d[key]

    def clear(self) -> None:
        with self._lock:
            self._d.clear()

    def __len__(self) -> int:
        return len(self._d)

    def overlay(self, heat_of, settings: OverlaySettings, index: int) -> tuple[Optional[Overlay], str]:
        """Frame ``index``'s overlay (composed now unless it is here) and the badge shown instead
        when there is none; ``heat_of(index) -> (heat [k, h, w] or None, badge)``."""
        heat, badge = heat_of(index)
        if heat is None:
            return None, badge
        if not settings.enabled:
            return None, ""
        key = (index, settings.version)
        got = self.get(key)
        if got is None:
            got = make_overlay(heat.astype(np.float32), settings) or False
            self.put(key, got)
        return (got if got is not False else None), ""

    def warm(self, heat_of, settings: OverlaySettings, index: int, size: Optional[tuple[int, int]]) -> None:
        """Compose frame ``index``'s overlay ahead of time, scaled to ``size`` (any thread: the
        frame server calls it after decoding a frame)."""
        key = (index, settings.version)
        if not settings.enabled or key in self:
            return
        try:
            heat, _badge = heat_of(index)
            if heat is None:
                return
            ov = make_overlay(heat.astype(np.float32), settings)
            if ov and size is not None:
                ov.prepare(size)
            self.put(key, ov or False)
        except Exception:  # the clip or the settings changed under us: composed again when shown
            pass


def make_overlay(heat: Optional[np.ndarray], settings: OverlaySettings) -> Optional[Overlay]:
    """The overlay of one frame's heatmaps ``[k, h, w]`` (None when nothing is visible)."""
    if heat is None:
        return None
    maps = cluster_maps(np.asarray(heat, np.float32), settings)
    if not maps:
        return None
    arr = compose_overlay(heat, settings, maps=maps)
    ov = Overlay(image=bgra_to_qimage(arr) if arr is not None else None)
    if settings.contour:
        for j, m, thr in maps:
            ov.outlines.append((contour_segments(m, thr), QColor(*cluster_colour(j))))
    return ov


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """An RGB uint8 ``[H, W, 3]`` array as a QImage in the fastest format to paint (RGB32)."""
    a = np.ascontiguousarray(rgb)
    h, w = a.shape[:2]
    img = QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return img.convertToFormat(QImage.Format.Format_RGB32)  # a deep copy: ``a`` may go


def bgra_to_qimage(bgra: np.ndarray) -> QImage:
    """A premultiplied BGRA uint8 ``[H, W, 4]`` array (see overlay.compose_overlay) as a QImage."""
    a = np.ascontiguousarray(bgra)
    h, w = a.shape[:2]
    return QImage(a.data, w, h, 4 * w, QImage.Format.Format_ARGB32_Premultiplied).copy()


def qimage_to_rgb(img: QImage) -> np.ndarray:
    img = img.convertToFormat(QImage.Format.Format_RGB888)
    w, h = img.width(), img.height()
    bpl = img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), np.uint8, count=bpl * h).reshape(h, bpl)
    return buf[:, : 3 * w].reshape(h, w, 3).copy()


def fit_rect(content: QSize, area: QRectF) -> QRectF:
    """The largest rectangle of ``content``'s aspect ratio centred in ``area``."""
    cw, ch = max(1, content.width()), max(1, content.height())
    s = min(area.width() / cw, area.height() / ch)
    w, h = cw * s, ch * s
    return QRectF(area.x() + (area.width() - w) / 2, area.y() + (area.height() - h) / 2, w, h)


def paint_overlay(p: QPainter, target: QRectF, overlay: Optional[Overlay], scale: float = 1.0) -> None:
    if not overlay:
        return
    sc = overlay._scaled
    if sc is not None and sc.width() == round(target.width()) and sc.height() == round(target.height()):
        p.drawImage(target.topLeft(), sc)  # scaled ahead of time: a plain blend
    elif overlay.image is not None and not overlay.image.isNull():
        p.save()
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        p.drawImage(target, overlay.image)
        p.restore()
    lines = overlay.lines(target) if overlay.outlines else []
    n = sum(len(ls) for ls, _c in lines)
    if 0 < n <= MAX_OUTLINE_SEGMENTS:
        p.save()
        p.setClipRect(target)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        if n <= HALO_MAX_SEGMENTS:  # a dark halo keeps thin outlines readable on any frame
            halo = QPen(QColor(0, 0, 0, 110), 4.0 * scale)
            halo.setCapStyle(Qt.PenCapStyle.RoundCap)
            p.setPen(halo)
            for ls, _c in lines:
                p.drawLines(ls)
        for ls, c in lines:
            pen = QPen(c, 2.0 * scale)
            pen.setCapStyle(Qt.PenCapStyle.RoundCap)
            p.setPen(pen)
            p.drawLines(ls)
        p.restore()


def paint_marker(p: QPainter, target: QRectF, xy: tuple[float, float], colour=(255, 255, 255),
                 scale: float = 1.0) -> None:
    """The clicked spot: a ring with a cross, readable on any background."""
    x = target.x() + xy[0] * target.width()
    y = target.y() + xy[1] * target.height()
    r = 9.0 * scale
    c = QPointF(x, y)
    p.save()
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.setPen(QPen(QColor(0, 0, 0, 170), 4.0 * scale))
    p.drawEllipse(c, r, r)
    p.setPen(QPen(QColor(*colour), 2.0 * scale))
    p.drawEllipse(c, r, r)
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        a = QPointF(x + dx * (r + 3 * scale), y + dy * (r + 3 * scale))
        b = QPointF(x + dx * (r + 9 * scale), y + dy * (r + 9 * scale))
        p.setPen(QPen(QColor(0, 0, 0, 170), 4.0 * scale))
        p.drawLine(a, b)
        p.setPen(QPen(QColor(*colour), 2.0 * scale))
        p.drawLine(a, b)
    p.restore()


@dataclass
class BoxLayer:
    """Boxes painted over a frame by the box tool: ``items`` are ``(Box, (r, g, b), selected)``;
    ``ghost``: the boxes of a nearby annotated frame (dashed, faint), ``caption`` under them."""

    items: list = field(default_factory=list)
    ghost: bool = False
    caption: str = ""
    handles: bool = True  # draw the selected box's handles (the tool is on)
    region: Optional[np.ndarray] = None  # [M, 4] segments: the border of the scored (binarised) heatmap


BOX_HANDLE_PX = 4.0


def paint_boxes(p: QPainter, target: QRectF, layer: BoxLayer) -> None:
    """The box tool's boxes: a dark halo under a coloured outline (readable on any frame), the
    source number and label in a tag, the selected box thicker with its eight handles."""
    p.save()
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    font = QFont(p.font())
    font.setBold(True)
    p.setFont(font)
    fm = p.fontMetrics()
    if layer.region is not None and len(layer.region):
        X = layer.region.astype(np.float64)
        X[:, [0, 2]] = target.x() + X[:, [0, 2]] * target.width()
        X[:, [1, 3]] = target.y() + X[:, [1, 3]] * target.height()
        lines = [QLineF(*r) for r in X.tolist()]
        p.setPen(QPen(QColor(0, 0, 0, 160), 3.5))
        p.drawLines(lines)
        dash = QPen(QColor(255, 255, 255, 230), 1.6)
        dash.setStyle(Qt.PenStyle.DotLine)
        p.setPen(dash)
        p.drawLines(lines)
    for box, colour, selected in layer.items:
        r = QRectF(target.x() + box.x0 * target.width(), target.y() + box.y0 * target.height(),
                   box.width * target.width(), box.height * target.height())
        c = QColor(*colour)
        if layer.ghost:
            c.setAlpha(150)
        width = 3.0 if selected and not layer.ghost else 2.0
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(QColor(0, 0, 0, 110 if layer.ghost else 170), width + 2.0))
        p.drawRect(r)
        pen = QPen(c, width)
        if layer.ghost:
            pen.setStyle(Qt.PenStyle.DashLine)
        p.setPen(pen)
        p.drawRect(r)
        tag = " ".join(t for t in (str(box.source) if box.source else "", box.label or "") if t)
        if tag and not layer.ghost:
            tw, th = fm.horizontalAdvance(tag) + 8, fm.height() + 2
            tr = QRectF(r.x(), max(target.y(), r.y() - th), tw, th)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QBrush(c))
            p.drawRect(tr)
            p.setPen(QPen(QColor(0, 0, 0)))
            p.drawText(tr, Qt.AlignmentFlag.AlignCenter, tag)
        if selected and layer.handles and not layer.ghost:
            h = BOX_HANDLE_PX
            p.setPen(QPen(QColor(0, 0, 0), 1.0))
            p.setBrush(QBrush(QColor(255, 255, 255)))
            xs = (r.left(), r.center().x(), r.right())
            ys = (r.top(), r.center().y(), r.bottom())
            for i, x in enumerate(xs):
                for j, y in enumerate(ys):
                    if i == 1 and j == 1:
                        continue
                    p.drawRect(QRectF(x - h, y - h, 2 * h, 2 * h))
    if layer.caption and layer.items:
        box = layer.items[0][0]
        x = target.x() + box.x0 * target.width()
        y = target.y() + box.y1 * target.height() + 2
        tw, th = fm.horizontalAdvance(layer.caption) + 10, fm.height() + 4
        tr = QRectF(x, min(y, target.bottom() - th), tw, th)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 150))
        p.drawRoundedRect(tr, 3, 3)
        p.setPen(QPen(QColor(230, 230, 230)))
        p.drawText(tr, Qt.AlignmentFlag.AlignCenter, layer.caption)
    p.restore()


def burn_in(rgb: np.ndarray, overlay: Optional[Overlay], marker: Optional[tuple[float, float]] = None) -> np.ndarray:
    """``rgb`` with the overlay and the marker painted in, as the view paints them (export)."""
    if not overlay and marker is None:
        return rgb
    img = rgb_to_qimage(rgb)
    p = QPainter(img)
    target = QRectF(0, 0, img.width(), img.height())
    scale = max(1.0, img.height() / 480.0)
    if overlay:
        paint_overlay(p, target, overlay, scale)
    if marker is not None:
        paint_marker(p, target, marker, scale=scale)
    p.end()
    return qimage_to_rgb(img)
