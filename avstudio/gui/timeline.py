"""Under the video: waveform, spectrogram and per-cluster activity on one time axis (pyqtgraph).

Click or drag (left button) anywhere to seek; the wheel zooms time, right-drag pans; the
view follows the playhead while playing. The "focus" lane plots, per frame and in each sound
cluster's colour, how focused its heatmap is (peak minus median: 0 for a flat map, 1 for a
single hot spot), over a strip that shows which frames are analysed (teal) or pending.
"""

from __future__ import annotations

import sys
from typing import Optional

import numpy as np


def _import_pyqtgraph():
    """pyqtgraph, without its optional CUDA interop probe (RawImageWidget tries
    ``cuda.bindings.runtime``, ~0.1 s of start-up when torch's CUDA packages are installed; the
    app does not use that widget). The probe is blocked only during this import."""
    if "pyqtgraph" in sys.modules:
        return sys.modules["pyqtgraph"]
    key = "cuda.bindings.runtime"
    blocked = key not in sys.modules
    if blocked:
        sys.modules[key] = None  # makes "from cuda.bindings import runtime" raise ImportError
    try:
        import pyqtgraph
    finally:
        if blocked and sys.modules.get(key, 0) is None:
            del sys.modules[key]
    return pyqtgraph


pg = _import_pyqtgraph()
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QGraphicsItem, QGraphicsView, QVBoxLayout, QWidget

from . import style

AXIS_WIDTH = 56


class SeekViewBox(pg.ViewBox):
    """Left click/drag seeks; the wheel zooms time only; right drag pans time."""

    def __init__(self, timeline: TimelineWidget, **kw):
        super().__init__(**kw)
        self.timeline = timeline
        self.setMouseEnabled(x=True, y=False)
        self.setMenuEnabled(False)

    def mouseClickEvent(self, ev):
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self.timeline._seek_from_scene(ev.scenePos(), self)
        else:
            ev.ignore()

    def mouseDragEvent(self, ev, axis=None):
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self.timeline._seek_from_scene(ev.scenePos(), self)
        elif ev.button() in (Qt.MouseButton.RightButton, Qt.MouseButton.MiddleButton):
            ev.accept()
            d = self.mapToView(ev.lastScenePos()) - self.mapToView(ev.scenePos()) \
                if hasattr(ev, "lastScenePos") else None
            if d is not None:
                self.translateBy(x=d.x())
        else:
            ev.ignore()


class HzAxis(pg.AxisItem):
    """Left axis of the mel spectrogram: mel-bin positions labelled in Hz."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.centres: Optional[np.ndarray] = None

    def tickValues(self, minVal, maxVal, size):
        if self.centres is None or len(self.centres) < 2:
            return []
        wanted = [100, 500, 1000, 2000, 4000, 8000, 16000] if size > 110 else [500, 2000, 8000]
        pos = [float(np.interp(f, self.centres, np.arange(len(self.centres)))) + 0.5
               for f in wanted if self.centres[0] <= f <= self.centres[-1]]
        return [(1.0, pos)]

    def tickStrings(self, values, scale, spacing):
        if self.centres is None:
            return super().tickStrings(values, scale, spacing)
        out = []
        for v in values:
            f = float(np.interp(v - 0.5, np.arange(len(self.centres)), self.centres))
            out.append(f"{f / 1000:.0f}k" if f >= 1000 else f"{f:.0f}")
        return out


class TimeAxis(pg.AxisItem):
    def tickStrings(self, values, scale, spacing):
        out = []
        for v in values:
            v = max(0.0, v)
            m, s = divmod(v, 60)
            out.append(f"{int(m)}:{s:0{4 if spacing < 1 else 2}.{1 if spacing < 1 else 0}f}")
        return out


class TimelineWidget(QWidget):
    seekRequested = Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        pg.setConfigOptions(antialias=False, background=style.BG_PLOT, foreground=style.FG_DIM)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        # moving the playhead repaints thin strips, not the whole view
        self.glw.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.glw.ci.setSpacing(0)
        self.glw.ci.layout.setContentsMargins(2, 2, 8, 2)
        lay.addWidget(self.glw)
        self.duration = 1.0
        self.follow = True
        self.spec_levels: Optional[tuple[float, float]] = None  # dB drawn as the first/last colour

        # waveform
        self.wave_vb = SeekViewBox(self)
        self.wave = self.glw.addPlot(row=0, col=0, viewBox=self.wave_vb)
        self._style_plot(self.wave, "Wave", show_x=False)
        self.wave.setYRange(-1, 1, padding=0.05)
        self.wave.getAxis("left").setTicks([[(-1.0, "-1"), (0.0, "0"), (1.0, "1")]])
        self._wave_hi = pg.PlotDataItem(pen=pg.mkPen(style.WAVE, width=1))
        self._wave_lo = pg.PlotDataItem(pen=pg.mkPen(style.WAVE, width=1))
        self._wave_fill = pg.FillBetweenItem(self._wave_lo, self._wave_hi, brush=pg.mkBrush(style.WAVE_FILL))
        for it in (self._wave_fill, self._wave_lo, self._wave_hi):
            self.wave.addItem(it)
            it.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)

        # spectrogram
        self.spec_vb = SeekViewBox(self)
        self.hz_axis = HzAxis("left")
        self.spec = self.glw.addPlot(row=1, col=0, viewBox=self.spec_vb, axisItems={"left": self.hz_axis})
        self._style_plot(self.spec, "Hz", show_x=False)
        self.spec_img = pg.ImageItem()
        self.spec_img.setColorMap(pg.colormap.get("inferno"))
        self.spec_img.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.spec.addItem(self.spec_img)

        # cluster activity + analysis coverage
        self.act_vb = SeekViewBox(self)
        self.act = self.glw.addPlot(row=2, col=0, viewBox=self.act_vb,
                                    axisItems={"bottom": TimeAxis("bottom")})
        self._style_plot(self.act, "Focus", show_x=True)
        self.act.setYRange(-0.12, 1.0, padding=0.02)
        self.act.getAxis("left").setTicks([[(0.0, "0"), (0.5, ".5"), (1.0, "1")]])
        self.cov_img = pg.ImageItem()
        self.act.addItem(self.cov_img)
        self.act_curves: list[pg.PlotDataItem] = []

        for p in (self.wave, self.spec):
            p.setXLink(self.act)
        self.glw.ci.layout.setRowStretchFactor(0, 2)
        self.glw.ci.layout.setRowStretchFactor(1, 5)
        self.glw.ci.layout.setRowStretchFactor(2, 2)

        self.playheads = []
        for p in (self.wave, self.spec, self.act):
            line = pg.InfiniteLine(pos=0, angle=90, movable=False, pen=pg.mkPen(style.PLAYHEAD, width=1.5))
            line.setZValue(100)
            p.addItem(line, ignoreBounds=True)
            self.playheads.append(line)
        # frames with boxes (the box tool): marks along the top of the activity lane
        self.box_marks = pg.ScatterPlotItem(symbol="t", size=9, pen=pg.mkPen((20, 20, 20), width=1),
                                            brush=pg.mkBrush(style.BOX_MARK))
        self.box_marks.setZValue(90)
        self.act.addItem(self.box_marks, ignoreBounds=True)
        self.message = pg.TextItem("", color=style.FG_DIM, anchor=(0.5, 0.5))
        self.spec.addItem(self.message, ignoreBounds=True)
        self.set_duration(1.0)

    def _style_plot(self, p: pg.PlotItem, label: str, show_x: bool) -> None:
        p.hideButtons()
        p.setMenuEnabled(False)
        p.showAxis("bottom", show_x)
        ax = p.getAxis("left")
        ax.setWidth(AXIS_WIDTH)
        ax.setLabel(label)
        ax.setStyle(tickLength=-4)
        ax.enableAutoSIPrefix(False)
        p.getAxis("bottom").setStyle(tickLength=-4)
        p.setClipToView(True)

    # -- data ------------------------------------------------------------------------------
    def set_duration(self, seconds: float) -> None:
        self.duration = max(1e-3, float(seconds))
        for vb in (self.wave_vb, self.spec_vb, self.act_vb):
            vb.setLimits(xMin=0, xMax=self.duration, minXRange=min(0.2, self.duration))
        self.act.setXRange(0, self.duration, padding=0)

    def clear(self) -> None:
        self._wave_hi.setData([], [])
        self._wave_lo.setData([], [])
        self.spec_img.clear()
        self.hz_axis.centres = None
        self.cov_img.clear()
        for c in self.act_curves:
            self.act.removeItem(c)
        self.act_curves = []
        self.box_marks.setData([], [])
        self.set_message("")

    def set_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setPos(self.duration / 2, 64)

    def set_audio(self, data: Optional[dict]) -> None:
        """Draw the clip's sound (``avstudio.studio.display.load_clip_sound``): the waveform and the
        spectrogram on its fixed dB scale (silence is the floor colour, never stretched). A clip
        without an audio track, or a silent one, also says so over the spectrogram."""
        sound = (data or {}).get("sound")
        if not data or "spec" not in data:
            self._wave_hi.setData([], [])
            self._wave_lo.setData([], [])
            self.spec_img.clear()
            self.spec.setYRange(0, 128, padding=0)  # where the message sits (the mel bins' range)
            self.set_message("this clip has no sound (no audio track)")
            return
        self.set_message("")
        t = data["env_t"]
        self._wave_hi.setData(t, data["env_hi"])
        self._wave_lo.setData(t, data["env_lo"])
        spec = data["spec"]  # [n_mels, T]
        self.spec_levels = tuple(data["spec_levels"])
        self.spec_img.setImage(spec.T, autoLevels=False, levels=self.spec_levels)
        hop = data["spec_hop_s"]
        self.spec_img.setRect(QRectF(data.get("spec_t0", 0.0), 0, spec.shape[1] * hop, spec.shape[0]))
        self.hz_axis.centres = np.asarray(data["mel_hz"])
        self.spec.setYRange(0, spec.shape[0], padding=0)
        self.hz_axis.picture = None
        self.hz_axis.update()
        if sound is not None and not sound.sound:
            self.set_message(f"this clip is silent ({sound.level_text()})")

    def set_activity(self, times: np.ndarray, values: np.ndarray, colours: list[tuple[int, int, int]],
                     visible: Optional[list[bool]] = None) -> None:
        """values: [T, k] peak heat per frame (NaN: not analysed)."""
        k = values.shape[1] if values.ndim == 2 else 0
        while len(self.act_curves) > k:
            self.act.removeItem(self.act_curves.pop())
        while len(self.act_curves) < k:
            c = pg.PlotDataItem(connect="finite")
            self.act.addItem(c)
            self.act_curves.append(c)
        for j, c in enumerate(self.act_curves):
            c.setPen(pg.mkPen(QColor(*colours[j % len(colours)]), width=1.6))
            c.setData(times, values[:, j], connect="finite")
            c.setVisible(visible is None or j >= len(visible) or visible[j])

    def set_coverage(self, done: np.ndarray) -> None:
        """A strip under the activity curves: analysed frames teal, pending dark."""
        if done is None or len(done) == 0:
            self.cov_img.clear()
            return
        n = len(done)
        step = max(1, n // 4000)
        d = done[: (n // step) * step].reshape(-1, step).mean(1) if step > 1 else done.astype(float)
        on = np.array(style.COVER_DONE, np.float32)
        off = np.array(style.COVER_TODO, np.float32)
        rgba = np.zeros((len(d), 2, 4), np.uint8)  # (an image 1 pixel high does not render)
        rgba[:] = (off[None] * (1 - d[:, None]) + on[None] * d[:, None]).astype(np.uint8)[:, None]
        self.cov_img.setImage(rgba, autoLevels=False)
        self.cov_img.setRect(QRectF(0, -0.11, self.duration, 0.08))

    def set_box_marks(self, times) -> None:
        """Mark these times (seconds on the timeline's axis): the frames that have boxes."""
        t = np.asarray(list(times), dtype=float)
        self.box_marks.setData(t, np.full(len(t), 0.94))

    def box_mark_times(self) -> list[float]:
        x, _y = self.box_marks.getData()
        return [float(v) for v in (x if x is not None else [])]

    # -- playhead --------------------------------------------------------------------------
    def set_playhead(self, t: float, playing: bool = False) -> None:
        for line in self.playheads:
            line.setPos(t)
        if playing and self.follow:
            lo, hi = self.act_vb.viewRange()[0]
            span = hi - lo
            if span < self.duration * 0.999 and not (lo <= t <= hi - 0.05 * span):
                new_lo = min(max(0.0, t - 0.1 * span), max(0.0, self.duration - span))
                self.act.setXRange(new_lo, new_lo + span, padding=0)

    def zoom(self, factor: float, center: Optional[float] = None) -> None:
        lo, hi = self.act_vb.viewRange()[0]
        c = center if center is not None else (lo + hi) / 2
        span = min(self.duration, max(0.2, (hi - lo) / factor))
        a = min(max(0.0, c - span / 2), max(0.0, self.duration - span))
        self.act.setXRange(a, a + span, padding=0)

    def zoom_fit(self) -> None:
        self.act.setXRange(0, self.duration, padding=0)

    def _seek_from_scene(self, scene_pos, vb) -> None:
        t = float(vb.mapSceneToView(scene_pos).x())
        self.seekRequested.emit(min(max(0.0, t), self.duration))
