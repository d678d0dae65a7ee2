"""The transport bar under the video: buttons, scrub bar, time/frame readout, speed."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QFontDatabase
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSlider, QStyle, QStyleOptionSlider, QToolButton, QWidget

from ..studio.player import SPEEDS


def fmt_time(t: float, fine: bool = True) -> str:
    t = max(0.0, float(t))
    m, s = divmod(t, 60.0)
    h, m = divmod(int(m), 60)
    if h:
        return f"{h}:{m:02d}:{s:06.3f}" if fine else f"{h}:{m:02d}:{int(s):02d}"
    return f"{m:02d}:{s:06.3f}" if fine else f"{m:02d}:{int(s):02d}"


class ScrubSlider(QSlider):
    """A slider that jumps to where it is clicked and reports drags as they happen."""

    scrubbed = Signal(int)

    def __init__(self, parent=None):
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setTracking(True)
        self.sliderMoved.connect(self.scrubbed)

    def _value_at(self, x: float) -> int:
        opt = QStyleOptionSlider()
        self.initStyleOption(opt)
        groove = self.style().subControlRect(QStyle.ComplexControl.CC_Slider, opt,
                                             QStyle.SubControl.SC_SliderGroove, self)
        handle = self.style().subControlRect(QStyle.ComplexControl.CC_Slider, opt,
                                             QStyle.SubControl.SC_SliderHandle, self)
        span = max(1, groove.width() - handle.width())
        pos = int(x - groove.x() - handle.width() / 2)
        return QStyle.sliderValueFromPosition(self.minimum(), self.maximum(), pos, span)

    def mousePressEvent(self, ev) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:
            opt = QStyleOptionSlider()
            self.initStyleOption(opt)
            handle = self.style().subControlRect(QStyle.ComplexControl.CC_Slider, opt,
                                                 QStyle.SubControl.SC_SliderHandle, self)
            if not handle.contains(ev.position().toPoint()):
                v = self._value_at(ev.position().x())
                self.setValue(v)
                self.scrubbed.emit(v)
        super().mousePressEvent(ev)

    def set_quietly(self, v: int) -> None:
        if self.isSliderDown():
            return
        self.blockSignals(True)
        self.setValue(v)
        self.blockSignals(False)


class TransportBar(QWidget):
    speedChosen = Signal(float)

    def __init__(self, actions: dict[str, QAction], parent=None):
        super().__init__(parent)
        self.setObjectName("transport")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        lay.setSpacing(4)
        self.buttons = {}
        for name in ("go_start", "step_back", "play", "step_forward", "go_end"):
            b = QToolButton()
            b.setDefaultAction(actions[name])
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.setAutoRaise(True)
            b.setObjectName("transportButton" if name != "play" else "playButton")
            lay.addWidget(b)
            self.buttons[name] = b
        self.slider = ScrubSlider()
        self.slider.setRange(0, 0)
        self.slider.setToolTip("Scrub: click or drag to move through the clip")
        self.slider.setMinimumWidth(120)
        lay.addWidget(self.slider, 1)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.time_label = QLabel("--:--.--- / --:--.---")
        self.time_label.setFont(mono)
        self.time_label.setObjectName("timeLabel")
        self.time_label.setToolTip("Time / duration")
        self.frame_label = QLabel("frame – / –")
        self.frame_label.setFont(mono)
        self.frame_label.setObjectName("frameLabel")
        lay.addWidget(self.time_label)
        lay.addWidget(self.frame_label)
        self.speed = QComboBox()
        self.speed.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for s in SPEEDS:
            self.speed.addItem(f"{s:g}×", s)
        self.speed.setCurrentIndex(SPEEDS.index(1.0))
        self.speed.setToolTip("Playback speed ([ and ] change it, = resets; J/K/L shuttle)")
        self.speed.activated.connect(lambda i: self.speedChosen.emit(float(self.speed.itemData(i))))
        lay.addWidget(self.speed)

    def clear(self) -> None:
        """No clip: no time, no frame."""
        self.time_label.setText("--:--.--- / --:--.---")
        self.frame_label.setText("frame – / –")
        self.slider.setRange(0, 0)

    def set_range(self, frames: int) -> None:
        self.slider.setRange(0, max(0, frames - 1))
        self.slider.setPageStep(max(1, frames // 20))

    def set_position(self, t: float, duration: float, frame: int, frames: int) -> None:
        self.time_label.setText(f"{fmt_time(t)} / {fmt_time(duration)}")
        self.frame_label.setText(f"frame {frame + 1:>{len(str(frames))}d} / {frames}")
        self.slider.set_quietly(frame)

    def set_speed(self, s: float) -> None:
        i = self.speed.findData(s)
        self.speed.blockSignals(True)
        if i < 0:
            # shuttle speeds (negative, 8x...) shown as a temporary entry
            label = f"{s:g}×"
            j = self.speed.findText(label)
            if j < 0:
                self.speed.addItem(label, s)
                j = self.speed.count() - 1
            i = j
        self.speed.setCurrentIndex(i)
        # drop temporary entries that are not selected
        for j in range(self.speed.count() - 1, -1, -1):
            if self.speed.itemData(j) not in SPEEDS and j != self.speed.currentIndex():
                self.speed.removeItem(j)
        self.speed.blockSignals(False)
