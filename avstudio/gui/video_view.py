"""The video with its heatmap overlays: paints the current frame, the overlay, the clicked spot."""

from __future__ import annotations

import time
from typing import Optional

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from .render import fit_rect, paint_boxes, paint_marker, paint_overlay


class VideoView(QWidget):
    """Shows one frame (aspect ratio kept) with an overlay image scaled onto it.

    Signals: ``pixelClicked(x, y)`` and ``hovered(x, y)`` in normalised frame coordinates
    (0..1; hovered gets -1, -1 when the pointer leaves the frame), ``displaySizeChanged(w, h)``
    (device pixels of the frame's rectangle: the size frames are decoded at).
    """

    pixelClicked = Signal(float, float)
    hovered = Signal(float, float)
    # the box tool (box_mode on): left-button press / drag / release in normalised frame
    # coordinates (not clipped: a drag may leave the frame), and a double-click
    boxPressed = Signal(float, float)
    boxMoved = Signal(float, float)
    boxReleased = Signal(float, float)
    boxDoubleClicked = Signal(float, float)
    displaySizeChanged = Signal(int, int)
    painted = Signal(int)  # frame index just painted

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(240, 160)
        self.setMouseTracking(True)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.frame: Optional[QImage] = None
        self.frame_index = -1
        self.frame_is_proxy = False  # a small stand-in until the exact full-size frame is decoded
        self.source_size = QSize(16, 9)  # the video's display size
        self.overlay = None  # render.Overlay
        self.marker: Optional[tuple[float, float]] = None
        self.badge = ""  # small text bottom-left (e.g. "heatmap pending")
        self.placeholder = "Open a video (Ctrl+O) or drop one here"
        self.background = QColor(14, 16, 20)
        self.paint_count = 0
        self.last_paint_time = 0.0
        self.last_painted_index = -1
        self.last_painted_proxy = False
        self.box_mode = False  # the box tool: the left button draws and edits boxes
        self.box_layer = None  # box_tool.BoxLayer: boxes painted over the frame (None: none)
        self._box_drag = False

    # -- state -----------------------------------------------------------------------------
    def set_source_size(self, w: int, h: int) -> None:
        self.source_size = QSize(max(1, w), max(1, h))
        self._emit_display_size()
        self.update()

    def set_frame(self, img: Optional[QImage], index: int, overlay=None,
                  badge: str = "", proxy: bool = False) -> None:
        self.frame = img
        self.frame_index = index
        self.frame_is_proxy = proxy
        self.overlay = overlay
        self.badge = badge
        self.update()

    def set_overlay(self, overlay, badge: str = "") -> None:
        self.overlay = overlay
        self.badge = badge
        self.update()

    def set_marker(self, xy: Optional[tuple[float, float]]) -> None:
        self.marker = xy
        self.update()

    def clear(self) -> None:
        self.frame = None
        self.frame_index = -1
        self.overlay = None
        self.marker = None
        self.badge = ""
        self.update()

    # -- geometry --------------------------------------------------------------------------
    def frame_rect(self) -> QRectF:
        return fit_rect(self.source_size, QRectF(self.rect()))

    def display_size(self) -> tuple[int, int]:
        """Device pixels of the frame rectangle (never more than the video's own size)."""
        r = self.frame_rect()
        dpr = self.devicePixelRatioF()
        w = min(self.source_size.width(), int(round(r.width() * dpr)))
        h = min(self.source_size.height(), int(round(r.height() * dpr)))
        return max(2, w - w % 2), max(2, h - h % 2)

    def _emit_display_size(self) -> None:
        w, h = self.display_size()
        self.displaySizeChanged.emit(w, h)

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        self._emit_display_size()

    def sizeHint(self) -> QSize:
        return QSize(800, 450)

    def set_box_layer(self, layer) -> None:
        self.box_layer = layer
        self.update()

    def set_box_mode(self, on: bool) -> None:
        self.box_mode = bool(on)
        self._box_drag = False
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.update()

    def pixel_tolerance(self, px: float = 6.0) -> tuple[float, float]:
        """``px`` screen pixels in normalised frame units (x, y): how near a handle must be."""
        r = self.frame_rect()
        return (px / max(1.0, r.width()), px / max(1.0, r.height()))

    def _norm_unclipped(self, pos: QPointF) -> tuple[float, float]:
        r = self.frame_rect()
        return ((pos.x() - r.x()) / max(1.0, r.width()), (pos.y() - r.y()) / max(1.0, r.height()))

    def _near_frame(self, pos: QPointF, margin_px: float = 12.0) -> Optional[tuple[float, float]]:
        """Normalised coordinates of a point on the frame or within ``margin_px`` of it (clipped
        to the frame): a box can be started from just outside an edge to touch it."""
        r = self.frame_rect()
        if r.width() <= 0 or not r.adjusted(-margin_px, -margin_px, margin_px, margin_px).contains(pos):
            return None
        x, y = self._norm_unclipped(pos)
        return (min(1.0, max(0.0, x)), min(1.0, max(0.0, y)))

    def _to_norm(self, pos: QPointF) -> Optional[tuple[float, float]]:
        r = self.frame_rect()
        if r.width() <= 0 or not r.contains(pos):
            return None
        return ((pos.x() - r.x()) / r.width(), (pos.y() - r.y()) / r.height())

    # -- events ----------------------------------------------------------------------------
    def mousePressEvent(self, ev) -> None:
        if self.box_mode and ev.button() == Qt.MouseButton.LeftButton and self.frame is not None:
            xy = self._near_frame(ev.position())
            if xy is not None:
                self._box_drag = True
                self.boxPressed.emit(*xy)
                return
        if ev.button() == Qt.MouseButton.LeftButton and self.frame is not None:
            xy = self._to_norm(ev.position())
            if xy is not None:
                self.pixelClicked.emit(*xy)
                return
        super().mousePressEvent(ev)

    def mouseReleaseEvent(self, ev) -> None:
        if self._box_drag and ev.button() == Qt.MouseButton.LeftButton:
            self._box_drag = False
            self.boxReleased.emit(*self._norm_unclipped(ev.position()))
            return
        super().mouseReleaseEvent(ev)

    def mouseDoubleClickEvent(self, ev) -> None:
        if self.box_mode and ev.button() == Qt.MouseButton.LeftButton and self.frame is not None:
            xy = self._near_frame(ev.position())
            if xy is not None:
                self.boxDoubleClicked.emit(*xy)
                return
        super().mouseDoubleClickEvent(ev)

    def mouseMoveEvent(self, ev) -> None:
        if self._box_drag:
            self.boxMoved.emit(*self._norm_unclipped(ev.position()))
        xy = self._to_norm(ev.position()) if self.frame is not None else None
        self.hovered.emit(*(xy if xy is not None else (-1.0, -1.0)))
        super().mouseMoveEvent(ev)

    def leaveEvent(self, ev) -> None:
        self.hovered.emit(-1.0, -1.0)
        super().leaveEvent(ev)

    def paintEvent(self, ev) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), self.background)
        if self.frame is None:
            p.setPen(QColor(150, 156, 168))
            f = QFont(self.font())
            f.setPointSizeF(f.pointSizeF() * 1.2)
            p.setFont(f)
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.placeholder)
            p.end()
            return
        r = self.frame_rect()
        if self.frame.width() != int(r.width()) or self.frame.height() != int(r.height()):
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        p.drawImage(r, self.frame)
        paint_overlay(p, r, self.overlay)
        if self.box_layer is not None:
            paint_boxes(p, r, self.box_layer)
        if self.marker is not None:
            paint_marker(p, r, self.marker)
        if self.badge:
            p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            fm = p.fontMetrics()
            tw = fm.horizontalAdvance(self.badge) + 14
            th = fm.height() + 6
            box = QRectF(r.x() + 8, r.bottom() - th - 8, tw, th)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(0, 0, 0, 150))
            p.drawRoundedRect(box, 4, 4)
            p.setPen(QPen(QColor(235, 235, 235)))
            p.drawText(box, Qt.AlignmentFlag.AlignCenter, self.badge)
        p.end()
        self.paint_count += 1
        self.last_paint_time = time.perf_counter()
        self.last_painted_index = self.frame_index
        self.last_painted_proxy = self.frame_is_proxy
        self.painted.emit(self.frame_index)
