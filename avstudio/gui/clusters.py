"""The side panel: analysis status, heatmap display settings and the source mixer.

One row per audio track: the original mix, one per sound cluster (its colour, overlay
on/off, solo, mute, volume, play alone, export stem) and, after a click on the frame, the
sound of that pixel. The panel only holds widget state and emits signals; the main window
applies them to the mixer and the overlay.
"""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..studio.overlay import THRESHOLD_MODES, OverlaySettings, cluster_colour
from . import style
from .help_text import LEGEND


def _no_focus(w: QWidget) -> QWidget:
    w.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys stay with the player shortcuts
    return w


def _slider(lo: int, hi: int, value: int, tip: str) -> QSlider:
    s = QSlider(Qt.Orientation.Horizontal)
    s.setRange(lo, hi)
    s.setValue(value)
    s.setToolTip(tip)
    _no_focus(s)
    return s


class Swatch(QToolButton):
    """A cluster's colour; checkable: its overlay on or off."""

    def __init__(self, colour: tuple[int, int, int], parent=None):
        super().__init__(parent)
        self.colour = QColor(*colour)
        self.setCheckable(True)
        self.setChecked(True)
        self.setFixedSize(18, 18)
        _no_focus(self)
        self.toggled.connect(self._restyle)
        self._restyle(True)

    def _restyle(self, on: bool) -> None:
        c = self.colour.name()
        if on:
            self.setStyleSheet(f"QToolButton {{ background: {c}; border: 1px solid #0c0d10; border-radius: 4px; }}")
        else:
            self.setStyleSheet(f"QToolButton {{ background: transparent; border: 2px solid {c}; border-radius: 4px; }}")


class TrackRow:
    """Widgets of one track in the grid."""

    def __init__(self, panel: ClusterPanel, name: str, label: str, colour: Optional[tuple[int, int, int]],
                 cluster: Optional[int], exportable: bool):
        self.name, self.cluster = name, cluster
        self.swatch: Optional[Swatch] = Swatch(colour) if colour is not None else None
        if self.swatch is not None:
            self.swatch.setToolTip(f"Show or hide the heatmap of {label} (key {cluster + 1})"
                                   if cluster is not None else "Show or hide the marker")
        self.label = QLabel(label)
        self.label.setObjectName("trackLabel")
        self.solo = _no_focus(QToolButton())
        self.solo.setText("S")
        self.solo.setObjectName("soloButton")
        self.solo.setCheckable(True)
        self.solo.setToolTip(f"Solo: hear only {label} (and other soloed tracks)")
        self.mute = _no_focus(QToolButton())
        self.mute.setText("M")
        self.mute.setObjectName("muteButton")
        self.mute.setCheckable(True)
        self.mute.setToolTip(f"Mute {label}")
        self.volume = _slider(0, 150, 100, f"Volume of {label} (%)")
        self.volume.setMinimumWidth(70)
        self.alone = _no_focus(QToolButton())
        self.alone.setIcon(style.icon("play_small"))
        self.alone.setToolTip(f"Play {label} alone from the playhead")
        self.export = _no_focus(QToolButton())
        self.export.setIcon(style.icon("export"))
        self.export.setToolTip(f"Export {label} as a WAV file")
        self.export.setVisible(exportable)
        self.muted_before_solo = False  # the mute a solo took off (put back when it ends)
        self.widgets = [w for w in (self.swatch, self.label, self.solo, self.mute, self.volume,
                                    self.alone, self.export) if w is not None]

    def state(self) -> dict:
        return {"solo": self.solo.isChecked(), "mute": self.mute.isChecked(),
                "gain": self.volume.value() / 100.0}

    def set_enabled(self, on: bool) -> None:
        for w in (self.solo, self.mute, self.volume, self.alone, self.export):
            w.setEnabled(on)


class ClusterPanel(QWidget):
    overlayChanged = Signal()
    trackChanged = Signal(str, dict)  # name, {"solo", "mute", "gain"}
    playAlone = Signal(str)
    exportTrack = Signal(str)  # c<j>, res or pixel
    kChanged = Signal(object)  # int or None (auto)
    cancelRequested = Signal()
    restartRequested = Signal()

    def __init__(self, settings: OverlaySettings, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.setMinimumWidth(300)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(8, 8, 8, 8)
        outer.setSpacing(10)

        # -- analysis ------------------------------------------------------------------------
        box = QGroupBox("Analysis")
        g = QGridLayout(box)
        g.setContentsMargins(8, 8, 8, 8)
        g.setVerticalSpacing(6)
        self.model_label = QLabel("no model")
        self.model_label.setObjectName("modelLabel")
        self.model_label.setWordWrap(True)
        g.addWidget(QLabel("Model"), 0, 0)
        g.addWidget(self.model_label, 0, 1, 1, 2)
        g.addWidget(QLabel("Sound clusters"), 1, 0)
        self.k_combo = _no_focus(QComboBox())
        self.k_combo.addItem("Auto (counter)", None)
        for k in range(1, 7):
            self.k_combo.addItem(str(k), k)
        self.k_combo.setToolTip("How many sound sources to look for (Auto: the model's counter decides)")
        self.k_combo.currentIndexChanged.connect(lambda _i: self.kChanged.emit(self.k_combo.currentData()))
        g.addWidget(self.k_combo, 1, 1, 1, 2)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("idle")
        self.cancel_btn = _no_focus(QToolButton())
        self.cancel_btn.setIcon(style.icon("cancel"))
        self.cancel_btn.setToolTip("Cancel the analysis (what is done is kept)")
        self.cancel_btn.clicked.connect(self.cancelRequested)
        self.restart_btn = _no_focus(QToolButton())
        self.restart_btn.setIcon(style.icon("resume"))
        self.restart_btn.setToolTip("Resume the analysis")
        self.restart_btn.clicked.connect(self.restartRequested)
        g.setColumnStretch(1, 1)
        row = QHBoxLayout()
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_btn)
        row.addWidget(self.restart_btn)
        g.addLayout(row, 2, 0, 1, 3)
        self.status = QLabel("")
        self.status.setObjectName("dimLabel")
        self.status.setWordWrap(True)
        g.addWidget(self.status, 3, 0, 1, 3)
        outer.addWidget(box)

        # -- heatmaps ------------------------------------------------------------------------
        box = QGroupBox("Heatmaps")
        self.heat_box = box
        g = QGridLayout(box)
        g.setContentsMargins(8, 8, 8, 8)
        g.setVerticalSpacing(6)
        self.show_overlay = _no_focus(QCheckBox("Show overlays"))
        self.show_overlay.setChecked(settings.enabled)
        self.show_overlay.setToolTip("Show the heatmap of every visible cluster on the video (O)")
        self.show_overlay.toggled.connect(self._on_overlay_ui)
        self.outline = _no_focus(QCheckBox("Outline"))
        self.outline.setChecked(settings.contour)
        self.outline.setToolTip("Draw the outline of each thresholded region")
        self.outline.toggled.connect(self._on_overlay_ui)
        g.addWidget(self.show_overlay, 0, 0, 1, 2)
        g.addWidget(self.outline, 0, 2)
        g.addWidget(QLabel("Opacity"), 1, 0)
        self.opacity = _slider(0, 100, int(settings.opacity * 100), "Overlay opacity")
        self.opacity.valueChanged.connect(self._on_overlay_ui)
        self.opacity_val = QLabel(f"{int(settings.opacity * 100)}%")
        self.opacity_val.setMinimumWidth(36)
        g.addWidget(self.opacity, 1, 1)
        g.addWidget(self.opacity_val, 1, 2)
        g.addWidget(QLabel("Threshold"), 2, 0)
        self.mode = _no_focus(QComboBox())
        for key, label in THRESHOLD_MODES.items():
            self.mode.addItem(label, key)
        self.mode.setCurrentIndex(list(THRESHOLD_MODES).index(settings.threshold_mode))
        self.mode.setToolTip("Fixed: the slider's value. Adaptive: per frame and cluster, "
                             "Otsu's threshold or mean + std of the map (T cycles)")
        self.mode.currentIndexChanged.connect(self._on_overlay_ui)
        g.addWidget(self.mode, 2, 1, 1, 2)
        self.threshold = _slider(0, 99, int(settings.threshold * 100), "Fixed threshold (on the normalised map)")
        self.threshold.valueChanged.connect(self._on_overlay_ui)
        self.threshold_val = QLabel(f"{settings.threshold:.2f}")
        g.addWidget(QLabel(""), 3, 0)
        g.addWidget(self.threshold, 3, 1)
        g.addWidget(self.threshold_val, 3, 2)
        self.normalize = _no_focus(QCheckBox("Normalise each map per frame (min-max)"))
        self.normalize.setChecked(settings.normalize)
        self.normalize.toggled.connect(self._on_overlay_ui)
        g.addWidget(self.normalize, 4, 0, 1, 3)
        self.probe_label = QLabel("")
        self.probe_label.setObjectName("dimLabel")
        g.addWidget(self.probe_label, 5, 0, 1, 3)
        self.legend = QLabel(LEGEND)  # what the fill and the outline mean
        self.legend.setObjectName("dimLabel")
        self.legend.setWordWrap(True)
        g.addWidget(self.legend, 6, 0, 1, 3)
        outer.addWidget(box)
        self._sync_threshold_enabled()

        # -- sources -------------------------------------------------------------------------
        box = QGroupBox("Sources")
        v = QVBoxLayout(box)
        v.setContentsMargins(8, 8, 8, 8)
        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(4)
        self.grid.setVerticalSpacing(5)
        self.grid.setColumnStretch(1, 1)
        self.grid.setColumnStretch(4, 1)
        v.addLayout(self.grid)
        self.note = QLabel("")
        self.note.setObjectName("dimLabel")
        self.note.setWordWrap(True)
        v.addWidget(self.note)
        outer.addWidget(box)
        outer.addStretch(1)

        self.rows: dict[str, TrackRow] = {}
        self._order: list[str] = []
        self.no_sound: Optional[str] = None  # why the clip has nothing to localise (None: it has)
        self.set_clusters(0)

    # -- overlay settings ------------------------------------------------------------------
    def _sync_threshold_enabled(self) -> None:
        fixed = self.mode.currentData() == "fixed"
        self.threshold.setEnabled(fixed)
        self.threshold_val.setEnabled(fixed)

    def _on_overlay_ui(self, *_a) -> None:
        s = self.settings
        s.enabled = self.show_overlay.isChecked()
        s.contour = self.outline.isChecked()
        s.opacity = self.opacity.value() / 100.0
        s.threshold_mode = self.mode.currentData()
        s.threshold = self.threshold.value() / 100.0
        s.normalize = self.normalize.isChecked()
        for row in self.rows.values():
            if row.cluster is not None and row.swatch is not None:
                while len(s.visible) <= row.cluster:
                    s.visible.append(True)
                s.visible[row.cluster] = row.swatch.isChecked()
        s.version += 1
        self.opacity_val.setText(f"{self.opacity.value()}%")
        self.threshold_val.setText(f"{s.threshold:.2f}")
        self._sync_threshold_enabled()
        self.overlayChanged.emit()

    def sync_from_settings(self) -> None:
        """Update the widgets after the settings were changed elsewhere (keys)."""
        s = self.settings
        widgets = [self.show_overlay, self.outline, self.opacity, self.mode, self.threshold, self.normalize]
        for w in widgets:
            w.blockSignals(True)
        self.show_overlay.setChecked(s.enabled)
        self.outline.setChecked(s.contour)
        self.opacity.setValue(int(round(s.opacity * 100)))
        self.mode.setCurrentIndex(max(0, self.mode.findData(s.threshold_mode)))
        self.threshold.setValue(int(round(s.threshold * 100)))
        self.normalize.setChecked(s.normalize)
        for w in widgets:
            w.blockSignals(False)
        for row in self.rows.values():
            if row.cluster is not None and row.swatch is not None:
                row.swatch.blockSignals(True)
                row.swatch.setChecked(s.cluster_visible(row.cluster))
                row.swatch._restyle(row.swatch.isChecked())
                row.swatch.blockSignals(False)
        self.opacity_val.setText(f"{self.opacity.value()}%")
        self.threshold_val.setText(f"{s.threshold:.2f}")
        self._sync_threshold_enabled()

    # -- tracks ----------------------------------------------------------------------------
    def _add_row(self, name: str, label: str, colour, cluster, exportable: bool) -> TrackRow:
        row = TrackRow(self, name, label, colour, cluster, exportable)
        r = len(self._order)
        if row.swatch is not None:
            self.grid.addWidget(row.swatch, r, 0)
            if cluster is not None:
                row.swatch.toggled.connect(self._on_overlay_ui)
        self.grid.addWidget(row.label, r, 1)
        self.grid.addWidget(row.solo, r, 2)
        self.grid.addWidget(row.mute, r, 3)
        self.grid.addWidget(row.volume, r, 4)
        self.grid.addWidget(row.alone, r, 5)
        self.grid.addWidget(row.export, r, 6)
        row.solo.toggled.connect(lambda on, n=name: self._on_solo(n, on))
        row.mute.toggled.connect(lambda on, n=name: self._on_mute(n, on))
        row.volume.valueChanged.connect(lambda _v, n=name: self._emit_track(n))
        row.alone.clicked.connect(lambda _c=False, n=name: self.playAlone.emit(n))
        row.export.clicked.connect(lambda _c=False, n=name: self.exportTrack.emit(n))
        self.rows[name] = row
        self._order.append(name)
        return row

    def _remove_all_rows(self) -> None:
        for row in self.rows.values():
            for w in row.widgets:
                self.grid.removeWidget(w)
                w.hide()
                w.setParent(None)
                w.deleteLater()
        self.rows.clear()
        self._order.clear()

    def _on_solo(self, name: str, on: bool) -> None:
        """A soloed track is heard, so it is not shown muted: solo takes its mute off, and
        un-soloing puts back the mute it took off (a muted stem auditioned with S is muted
        again after it)."""
        row = self.rows.get(name)
        if row is not None:
            if on and row.mute.isChecked():
                row.muted_before_solo = True
                self._set_quietly(row.mute, False)
            elif not on and row.muted_before_solo:
                row.muted_before_solo = False
                self._set_quietly(row.mute, True)
        self._emit_track(name)

    def _on_mute(self, name: str, on: bool) -> None:
        """A muted track is not heard, so it is not soloed either (mute clears its solo)."""
        row = self.rows.get(name)
        if row is not None:
            row.muted_before_solo = False
            if on and row.solo.isChecked():
                self._set_quietly(row.solo, False)
        self._emit_track(name)

    @staticmethod
    def _set_quietly(button, on: bool) -> None:
        button.blockSignals(True)
        button.setChecked(on)
        button.blockSignals(False)

    def _emit_track(self, name: str) -> None:
        row = self.rows.get(name)
        if row is not None:
            self.trackChanged.emit(name, row.state())

    def set_clusters(self, k: int, stems: bool = False, pixel: Optional[str] = None,
                     residual: bool = False) -> None:
        """Rebuild the rows: the mix, ``k`` clusters (audio controls when ``stems``), the
        residual (what no cluster claimed), the sound of a clicked pixel."""
        old = {n: r.state() for n, r in self.rows.items()}
        self._remove_all_rows()
        self._add_row("mix", "Original mix", None, None, False)
        for j in range(k):
            row = self._add_row(f"c{j}", f"Sound {j + 1}", cluster_colour(j), j, True)
            row.swatch.blockSignals(True)
            row.swatch.setChecked(self.settings.cluster_visible(j))
            row.swatch._restyle(row.swatch.isChecked())
            row.swatch.blockSignals(False)
            row.set_enabled(stems)
            if f"c{j}" not in old:
                row.mute.blockSignals(True)
                row.mute.setChecked(True)  # stems start muted: the original plays
                row.mute.blockSignals(False)
        if residual:
            row = self._add_row("res", "Residual", (110, 116, 128), None, True)
            row.label.setToolTip("What no cluster claimed: the mix minus every stem")
            row.swatch.setEnabled(False)
            if "res" not in old:
                row.mute.blockSignals(True)
                row.mute.setChecked(True)
                row.mute.blockSignals(False)
        if pixel is not None:
            self._add_row("pixel", pixel, (255, 255, 255), None, True)
        for n, st in old.items():
            r = self.rows.get(n)
            if r is None:
                continue
            for w, v in ((r.solo, st["solo"]), (r.mute, st["mute"])):
                w.blockSignals(True)
                w.setChecked(v)
                w.blockSignals(False)
            r.volume.blockSignals(True)
            r.volume.setValue(int(round(st["gain"] * 100)))
            r.volume.blockSignals(False)
        if self.rows.get("pixel") and self.rows["pixel"].swatch is not None:
            self.rows["pixel"].swatch.setEnabled(False)
            self.rows["pixel"].swatch.setToolTip("The clicked spot (Esc clears it)")
        self._apply_no_sound()

    def set_no_sound(self, why: Optional[str]) -> None:
        """A clip without sound (``why``: "this clip is silent", ...): no heatmap to tune and a
        missing audio track cannot be played; each says why on hover (the number of clusters:
        the window, from :meth:`avstudio.studio.player.Player.k_choice`)."""
        self.no_sound = why
        self.heat_box.setEnabled(why is None)  # no heatmap to show or tune
        self.heat_box.setToolTip("" if why is None else f"No heatmap: {why}")
        self._apply_no_sound()

    def _apply_no_sound(self) -> None:
        row = self.rows.get("mix")
        if row is None:
            return
        no_track = self.no_sound is not None and "no audio track" in self.no_sound
        row.set_enabled(not no_track)
        if no_track:  # the rows are rebuilt with their own tooltips by set_clusters
            for w in (row.label, row.solo, row.mute, row.volume, row.alone):
                w.setToolTip(f"Not available: {self.no_sound}")

    def track_states(self) -> dict[str, dict]:
        return {n: r.state() for n, r in self.rows.items()}

    def set_track(self, name: str, **state) -> None:
        """Change a row's solo/mute/gain from code (keys, play alone); emits trackChanged."""
        row = self.rows.get(name)
        if row is None:
            return
        if "solo" in state:
            row.solo.setChecked(bool(state["solo"]))
        if "mute" in state:
            row.mute.setChecked(bool(state["mute"]))
        if "gain" in state:
            row.volume.setValue(int(round(float(state["gain"]) * 100)))
        self._emit_track(name)

    # -- status ----------------------------------------------------------------------------
    def set_progress(self, done: int, total: int, text: str = "") -> None:
        total = max(1, total)
        self.progress.setValue(int(round(100 * done / total)))
        self.progress.setFormat(text or f"{done}/{total} frames (%p%)")
