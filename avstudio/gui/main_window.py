"""The main window: the player's widgets (video + overlays, transport, timeline, cluster panel,
status bar, the library docks) wired to the open clip's Qt-free state
(:class:`avstudio.studio.player.Player`) and to the action table (:mod:`avstudio.studio.actions`).

Three children of the window do the work, each for one concern: :class:`~.viewer.Viewer` (the
frames on screen, playback on the audio clock, seeking, overlays), :class:`~.analysis_view.
AnalysisView` (heatmaps from the playhead onwards, then the stems) and :class:`~.sound.Sound`
(the clip's sound, the mixer's tracks, the sound of a pixel); :class:`~.export.Exporter` writes
the exports. None of their threads ever blocks the GUI: the frame server decodes ahead of the
playhead, the analysis scheduler computes heatmaps, one-shot jobs load the model and the
sound, separate the sources, answer pixel clicks and export. Their signals go to methods of
these QObjects, deleted with the window: a signal still queued then is dropped.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

import numpy as np
from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ..assets import demo_clip
from ..data.library import MEDIA_EXTENSIONS
from ..errors import AVStudioError
from ..studio import tasks
from ..studio.actions import MENUS, all_actions, player_action_names
from ..studio.mixer import Mixer
from ..studio.overlay import OverlaySettings
from ..studio.player import Player
from . import keys, style
from .analysis_view import AnalysisView
from .clusters import ClusterPanel
from .compare import ComparePane
from .export import Exporter
from .jobs import Job, stop_all_jobs
from .recent import RecentFiles
from .sound import Sound
from .status import StatusLine
from .timeline import TimelineWidget
from .transport import TransportBar
from .video_view import VideoView
from .viewer import Viewer

APP_NAME = "AV Studio"
# the same video names as the library's imports (one list)
VIDEO_FILTER = f"Videos ({' '.join('*' + e for e in MEDIA_EXTENSIONS)});;All files (*)"


def _dock(win, title: str, name: str, widget: QWidget, area) -> QDockWidget:
    d = QDockWidget(title, win)
    d.setObjectName(name)
    d.setWidget(widget)
    d.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                  | QDockWidget.DockWidgetFeature.DockWidgetClosable)
    win.addDockWidget(area, d)
    return d


class MainWindow(QMainWindow):
    clipOpened = Signal(str)
    modelReady = Signal()
    analysisFinished = Signal()
    stemsReady = Signal()
    pixelReady = Signal()
    exportFinished = Signal(str)
    playbackStopped = Signal(float)  # media time where playback stopped
    OUTPUT_RATE = 48000

    def __init__(self, model_path=None, audio: bool = True, load_model: bool = True,
                 settings_path: Optional[str] = None, chunk: int = 64, frame_cache_mb: int = 512,
                 cache_root: Optional[str] = None, k: Optional[int] = None, defer_model: bool = False):
        super().__init__()
        from ..media.audio_out import open_output
        from .box_tool import install_box_tool
        from .library_panel import install_library_panels
        from .qtcompat import install_none_guard

        install_none_guard()  # PySide6 6.12 reference leaks (see qtcompat); idempotent
        self.setWindowTitle(APP_NAME)
        self.setWindowIcon(style.app_icon())
        self.setAcceptDrops(True)
        self.resize(1440, 900)
        self.model_path, self.chunk, self.cache_root = model_path, chunk, cache_root
        settings_path = settings_path or os.environ.get("AVSTUDIO_SETTINGS")
        self.qsettings = (QSettings(settings_path, QSettings.Format.IniFormat) if settings_path
                          else QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "avstudio", "avstudio"))
        self.player = Player(k)  # the open clip's state (Qt-free)
        self.jobs: dict[str, Job] = {}
        self.last_error: Optional[str] = None
        self._base_tips: dict[str, str] = {}  # actions' own tooltips (a reason may be added)
        self._closing = self.background_started = False
        self.mixer = Mixer(self.OUTPUT_RATE)
        self.output = open_output(self.OUTPUT_RATE, channels=1, enabled=audio, source=self.mixer)

        # -- widgets
        self.overlay_settings = OverlaySettings()
        self.actions_by_name = keys.build_actions(self, all_actions())
        self.player_action_names = player_action_names()
        self.view = VideoView()
        self.compare = ComparePane(self)  # a second model ("B") beside the first (compare.py)
        self.transport = TransportBar(self.actions_by_name)
        central = QWidget()
        v = QVBoxLayout(central)
        v.setContentsMargins(0, 0, 0, 0)
        v.setSpacing(0)
        panes = QHBoxLayout()
        panes.setContentsMargins(0, 0, 0, 0)
        panes.setSpacing(2)
        for title, view in ((self.compare.title_a, self.view), (self.compare.title_b, self.compare.view)):
            # each pane in its own widget: B's is hidden whole when there is no second pane (a
            # stretched layout of hidden widgets still took half the width)
            pane = QWidget()
            col = QVBoxLayout(pane)
            col.setContentsMargins(0, 0, 0, 0)
            col.setSpacing(0)
            col.addWidget(title)
            col.addWidget(view, 1)
            panes.addWidget(pane, 1)
        self.compare.pane_b = pane
        pane.setVisible(False)
        v.addLayout(panes, 1)
        v.addWidget(self.transport)
        self.setCentralWidget(central)
        self.timeline = TimelineWidget()
        self.timeline_dock = _dock(self, "Timeline: waveform · spectrogram · cluster activity", "timelineDock",
                                   self.timeline, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.panel = ClusterPanel(self.overlay_settings)
        if k is not None:
            self.panel.k_combo.blockSignals(True)
            self.panel.k_combo.setCurrentIndex(max(0, self.panel.k_combo.findData(k)))
            self.panel.k_combo.blockSignals(False)
        # in a scroll area: when the dock is short (a small screen, the fine-tune panel open) the
        # panel scrolls instead of squashing its rows into each other
        self.panel_scroll = QScrollArea()
        self.panel_scroll.setWidgetResizable(True)
        self.panel_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.panel_scroll.setWidget(self.panel)
        self.panel_dock = _dock(self, "Sound clusters", "clusterDock", self.panel_scroll,
                                Qt.DockWidgetArea.RightDockWidgetArea)
        self.resizeDocks([self.timeline_dock], [300], Qt.Orientation.Vertical)
        self.resizeDocks([self.panel_dock], [360], Qt.Orientation.Horizontal)
        self.status_line = StatusLine(self)
        # what the user sees, the analysis, what the user hears; the exports; recent files
        self.viewer = Viewer(self, frame_cache_mb)
        self.analysis = AnalysisView(self)
        self.sound = Sound(self)
        self.exporter = Exporter(self)
        self.recent = RecentFiles(self)
        install_library_panels(self)  # the clip library and fine-tuning docks (library_panel.py)
        install_box_tool(self)  # boxes around what makes the sound, and the model's scores (box_tool.py)
        keys.connect_actions(self.actions_by_name, all_actions(),
                             {"window": self, "viewer": self.viewer, "analysis": self.analysis, "sound": self.sound,
                              "compare": self.compare,
                              "library": self.library_panel, "annotation": self.library_panel.annotator,
                              "boxes": self.box_tool})
        self.menus = keys.build_menus(self, self.actions_by_name, self.recent.menu)
        self.menus["View"].addSeparator()
        for d in (self.timeline_dock, self.panel_dock, self.library_dock, self.finetune_dock, self.box_tool.dock):
            self.menus["View"].addAction(d.toggleViewAction())
        self.library_menu = self.menus["Library"]

        self.panel.exportTrack.connect(self.export_track)
        self._update_model_label()
        self._restore_window_state()
        # start-up: with ``defer_model`` the first frame comes first; loading the model
        # (importing torch takes seconds of CPU, holding the GIL) and building proxies start
        # once a frame is painted (or after a moment anyway).
        self._want_model = bool(load_model)
        self._first_paint_hooked = bool(defer_model)
        if defer_model:  # a clip is about to open: its first frame comes first
            self.view.painted.connect(self._on_first_paint)
        QTimer.singleShot(1500 if defer_model else 0, self._start_background)
        self.player.model_loading = bool(load_model)
        if not load_model:
            self.player.model_error = "no model loaded (--no-model)"
        self._update_model_label()

    def action(self, name: str):
        return self.actions_by_name[name]

    def action_groups(self) -> list[tuple[str, list]]:
        """(menu, its actions) in menu order: what Help › Keyboard lists."""
        return [(m.title, [self.actions_by_name[a.name] for a in m.actions]) for m in MENUS]

    def _on_first_paint(self, index: int) -> None:
        if index >= 0:
            QTimer.singleShot(0, self._start_background)

    def _start_background(self) -> None:
        if self.background_started or self._closing:
            return
        self.background_started = True
        if self._first_paint_hooked:
            self._first_paint_hooked = False
            self.view.painted.disconnect(self._on_first_paint)
        if self._want_model:
            self.load_model(self.model_path)
        self.viewer.start_proxies()

    # ======================================================================== model
    def load_model(self, model_path=None) -> None:
        self.model_path = model_path
        self.player.model_loading, self.player.model_error = True, None
        self._update_model_label()
        self.start_job("model", Job("load-model", tasks.load_model, model_path),
                       done=self._on_model_loaded, failed=self._on_model_failed)

    def _on_model_loaded(self, bundle) -> None:
        p = self.player
        p.model_loading, p.bundle, p.model_error = False, bundle, None
        self._update_model_label()
        self._update_k_choice()
        self.compare.update_layout()
        self.status_line.message(f"Model {bundle.name} loaded", 4000)
        self.modelReady.emit()
        if p.path is not None:
            self.analysis.start()

    def _on_model_failed(self, msg: str) -> None:
        p = self.player
        p.model_loading, p.bundle, p.model_error = False, None, msg
        self._update_model_label()
        self.status_line.message(p.no_model_text(), 8000)
        self.panel.status.setText(p.no_model_text())
        self.modelReady.emit()

    def use_model(self, model_path: str) -> None:
        """Analyse with another model (what was shown for the old one goes)."""
        self.analysis.stop()
        self.analysis.forget_results()
        self.player.bundle = None
        self.load_model(model_path)

    def _update_model_label(self) -> None:
        self.status_line.model.setText(self.player.model_status())
        text, tip = self.player.model_summary()
        self.panel.model_label.setText(text)
        self.panel.model_label.setToolTip(tip)
        self.status_line.model.setToolTip(tip)
        self.update_notes()

    def update_notes(self) -> None:
        """The notes that follow the model, the clip and the sound device: under the cluster
        panel (what can be heard) and in the status bar."""
        self.panel.note.setText(self.player.sources_note())
        self.status_line.set_audio(self.output, self.mixer.master_mute)
        self.status_line.set_notes(self.player.status_notes(self.output))

    def _update_k_choice(self) -> None:
        enabled, tip = self.player.k_choice()
        self.panel.k_combo.setEnabled(enabled)
        self.panel.k_combo.setToolTip(tip)

    def apply_sound(self) -> None:
        """Say what a clip without sound cannot have, on every control that needs sound (the
        number of clusters, the heatmap settings, the exports, a click on the frame, the mix of a
        clip with no track), with the reason on hover."""
        why = self.player.no_sound
        self.panel.set_no_sound(why)
        self._update_k_choice()
        self.view.setToolTip("" if why is None else
                             f"Clicking the frame plays the sound of that spot: not available, {why}")
        for name in ("export_stems", "export_heatmaps"):
            a = self.action(name)
            base = self._base_tips.setdefault(name, a.toolTip())
            a.setEnabled(why is None)
            a.setToolTip(base if why is None else f"{base}: not available, {why}")
        self.update_notes()

    def show_message(self, msg: str) -> None:
        self.status_line.message(msg, 8000)

    def compare_model_dialog(self) -> None:
        p, _ = QFileDialog.getOpenFileName(self, "Second model B (.safetensors, with its .json card)", "",
                                           "Models (*.safetensors);;All files (*)")
        if p:
            self.open_compare_model(p)

    def open_compare_model(self, path) -> None:
        """Show a second model ("B") beside the window's model ("A") on the same frames."""
        self.compare.open_model(path)

    def load_model_dialog(self) -> None:
        p, _ = QFileDialog.getOpenFileName(self, "Load model (.safetensors, with its .json card)", "",
                                           "Models (*.safetensors);;All files (*)")
        if p:
            self.use_model(p)

    # ======================================================================== opening
    def open_dialog(self) -> None:
        p, _ = QFileDialog.getOpenFileName(self, "Open video", str(self.qsettings.value("last_dir", "") or ""),
                                           VIDEO_FILTER)
        if p:
            self.open_file(p)

    def open_demo(self) -> None:
        if not demo_clip().exists():
            self.error("The demo clip (resources/demo.mp4) is not installed")
            return
        self.open_file(str(demo_clip()))

    def error(self, msg: str, title: str = "AV Studio") -> None:
        self.last_error = msg
        self.status_line.message(msg, 8000)
        QMessageBox.critical(self, title, msg)

    def open_file(self, path: str) -> bool:
        """Open a clip; a bad file shows a dialog and leaves the current clip as it was."""
        path = os.fspath(path)
        try:
            info = Player.probe(path)
        except AVStudioError as exc:
            self.error(str(exc), "Cannot open this file")
            return False
        self._close_clip()
        if info.problem:
            QMessageBox.warning(self, "Damaged file", f"{info.problem}. Showing what can be decoded.")
        p = self.player
        p.open(path, info)
        self.setWindowTitle(f"{Path(path).name} — {APP_NAME}")
        self.timeline.clear()
        self.timeline.set_duration(p.duration)
        self.timeline.set_coverage(np.zeros(p.frame_count, bool))
        self.viewer.open_clip()
        self.recent.add(path)
        self.qsettings.setValue("last_dir", str(Path(path).resolve().parent))
        self.sound.open_clip()
        self.panel.set_clusters(0)
        self.apply_sound()
        if p.bundle is not None:
            self.analysis.start()
        elif p.model_error:
            self.panel.status.setText("No model: the video is shown without heatmaps")
        self.compare.clip_opened()  # model B, if one is open
        self.clipOpened.emit(path)
        return True

    def _close_clip(self) -> None:
        self.viewer.pause()
        self.analysis.stop()
        for name in ("audio", "separate", "pixel", "export"):
            j = self.jobs.pop(name, None)
            if j is not None:
                j.cancel()
                j.wait(5000)
        self.viewer.close_clip()
        self.compare.clip_closed()
        self.player.close()
        self.analysis.cache = None
        self.mixer.clear()

    def recent_files(self) -> list[str]:
        return self.recent.files()

    def dragEnterEvent(self, ev) -> None:
        if ev.mimeData().hasUrls() and any(u.isLocalFile() for u in ev.mimeData().urls()):
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:
        for u in ev.mimeData().urls():
            if u.isLocalFile():
                self.open_file(u.toLocalFile())
                ev.acceptProposedAction()
                return

    # ======================================================================== export, help
    def export(self, kind: str, out: Optional[str] = None, only: Optional[int] = None):
        """File › Export… (see :class:`avstudio.gui.export.Exporter`)."""
        return self.exporter.export(kind, out, only)

    def export_track(self, name: str):
        """A cluster panel row's export button: ``c<j>``, ``res`` or ``pixel``."""
        if name.startswith("c"):
            return self.export("sound", only=int(name[1:]))
        return self.export({"res": "residual", "pixel": "pixel"}[name]) if name in ("res", "pixel") else None

    def show_keys(self) -> None:
        self.keys_dialog = keys.KeyboardDialog(self)
        self.keys_dialog.show()

    def show_reading(self) -> None:
        """Help › Reading the heatmaps (the text of docs/gui.md's section of that name)."""
        from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser

        from .help_text import READING_HEATMAPS

        dlg = QDialog(self)
        dlg.setWindowTitle("Reading the heatmaps")
        v = QVBoxLayout(dlg)
        text = QTextBrowser()
        text.setMarkdown(READING_HEATMAPS)
        v.addWidget(text)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        bb.rejected.connect(dlg.close)
        v.addWidget(bb)
        dlg.resize(620, 520)
        self.reading_dialog, self.reading_text = dlg, text
        dlg.show()

    def show_about(self) -> None:
        from .. import __version__

        QMessageBox.about(self, "About AV Studio", f"<b>AV Studio {__version__}</b><p>See and hear what a "
                          "self-supervised audiovisual model learned: a heatmap per sound source, each source "
                          "separated, the sound of any pixel.</p>")

    def show_finetune(self) -> None:
        self.finetune_dock.show()
        self.finetune_dock.raise_()

    # ======================================================================== jobs / closing
    def start_job(self, name: str, job: Job, done=None, failed=None, progress=None) -> Job:
        """Run ``job`` as this window's ``name`` job (the one it replaces is cancelled); its
        signals go to the given methods (of this window or of its viewer, analysis, sound:
        QObjects deleted with it, so a signal still queued then is dropped)."""
        for sig, slot in ((job.done, done), (job.failed, failed), (job.progress, progress)):
            if slot is not None:
                sig.connect(slot)
        old = self.jobs.get(name)
        if old is not None and old.isRunning():
            old.cancel()
        self.jobs[name] = job
        job.start()
        return job

    def wait_idle(self, timeout_ms: int = 30000) -> None:  # test helper
        deadline = time.time() + timeout_ms / 1000
        for j in list(self.jobs.values()):
            j.wait(max(0, int((deadline - time.time()) * 1000)))

    def shutdown(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.viewer.timer.stop()
        try:
            self.output.close()
        except Exception:
            pass
        self.analysis.close()
        self.compare.stop()
        self.viewer.stop_workers()
        for j in list(self.jobs.values()):
            j.cancel()
        for j in list(self.jobs.values()):
            j.wait(15000)
        stop_all_jobs()
        self.qsettings.sync()

    def _restore_window_state(self) -> None:
        try:
            for key, fn in (("window/geometry", self.restoreGeometry), ("window/state", self.restoreState)):
                if self.qsettings.value(key) is not None:
                    fn(self.qsettings.value(key))
        except TypeError:
            pass
        self.overlay_settings.restore(self.qsettings.value)
        self.panel.sync_from_settings()

    def closeEvent(self, ev) -> None:
        if not self._closing:
            self.qsettings.setValue("window/geometry", self.saveGeometry())
            self.qsettings.setValue("window/state", self.saveState())
            for key, val in self.overlay_settings.saved().items():
                self.qsettings.setValue(key, val)
        self.shutdown()
        super().closeEvent(ev)
