"""The main window: video + overlays, transport, timeline, cluster panel, menus and actions.

Threads (none of them ever blocks the GUI): the frame server decodes at display size and
ahead of the playhead; the analysis scheduler computes heatmaps from the playhead onwards;
one-shot jobs load the model, the clip's sound, separate the sources, answer pixel clicks
and export. The audio output's clock drives the video while playing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

import numpy as np
from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QIcon
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressDialog,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from ..assets import demo_clip
from ..errors import AVStudioError
from . import style
from .clusters import ClusterPanel
from .frames import FrameCache, FrameServer, ProxyBuilder, ProxyStore, proxy_size
from .jobs import (
    AnalysisScheduler,
    Job,
    load_audio_fn,
    load_model_fn,
    pixel_sound_fn,
    separate_fn,
    separation_available,
    stop_all_jobs,
)
from .mixer import Mixer
from .overlay import THRESHOLD_MODES, OverlaySettings, cluster_colour, heat_at
from .render import OverlayCache, make_overlay
from .timeline import TimelineWidget
from .transport import SPEEDS, TransportBar
from .video_view import VideoView

APP_NAME = "AV Studio"
OUTPUT_RATE = 48000
MAX_RECENT = 10
VIDEO_FILTER = ("Videos (*.mp4 *.m4v *.mov *.mkv *.webm *.avi *.mpg *.mpeg *.ts *.flv *.wmv);;"
                "All files (*)")
SHUTTLE = [1.0, 2.0, 4.0, 8.0]


class MainWindow(QMainWindow):
    clipOpened = Signal(str)
    modelReady = Signal()
    analysisFinished = Signal()
    stemsReady = Signal()
    pixelReady = Signal()
    exportFinished = Signal(str)
    playbackStopped = Signal(float)  # media time where playback stopped

    def __init__(self, model_path=None, audio: bool = True, load_model: bool = True,
                 settings_path: Optional[str] = None, chunk: int = 64, frame_cache_mb: int = 512,
                 cache_root: Optional[str] = None, k: Optional[int] = None, defer_model: bool = False):
        super().__init__()
        from .qtcompat import install_none_guard

        install_none_guard()  # PySide6 6.12 reference leaks (see qtcompat); idempotent
        self.setWindowTitle(APP_NAME)
        self.setWindowIcon(style.app_icon())
        self.setAcceptDrops(True)
        self.resize(1440, 900)
        self.model_path = model_path
        self.chunk = chunk
        self.cache_root = cache_root
        if settings_path is None:
            settings_path = os.environ.get("AVSTUDIO_SETTINGS")
        self.qsettings = (QSettings(settings_path, QSettings.Format.IniFormat) if settings_path
                          else QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                                         "avstudio", "avstudio"))

        # -- clip state
        self.path: Optional[str] = None
        self.info = None
        self.frame_count = 0
        self.fps = 25.0
        self.video_start = 0.0
        self.duration = 0.0
        self.position = 0.0
        self.current_frame = -1
        self.wanted_frame = -1
        self.playing = False
        self.speed = 1.0
        self.base_speed = 1.0
        self.direction = 1
        # analysis state
        self.bundle = None
        self.model_error: Optional[str] = None
        self.model_loading = False
        self.cache = None
        self.scheduler: Optional[AnalysisScheduler] = None
        self.k: Optional[int] = None
        self.k_request: Optional[int] = k
        self.heat: Optional[np.ndarray] = None  # [N, k, h, w] float16
        self.heat_done: Optional[np.ndarray] = None  # [N] bool
        self.activity: Optional[np.ndarray] = None  # [N, k] float32, NaN = pending
        self.analysis_state = "idle"
        self.stems: Optional[np.ndarray] = None
        self.stems_sr = 16000
        self.residual: Optional[np.ndarray] = None
        self.audio_data: Optional[dict] = None
        self.pixel: Optional[dict] = None  # {"x","y","t","audio","sr","offset"}
        self.marker: Optional[tuple[float, float]] = None
        self.jobs: dict[str, Job] = {}
        self.last_error: Optional[str] = None
        self._overlay_lru = OverlayCache()  # (frame, settings version) -> Overlay or False
        self._overlay_size: Optional[tuple[int, int]] = None  # frame rect on screen (px)
        self._activity_dirty = False
        self._closing = False

        # -- audio
        from ..media.audio_out import open_output

        self.mixer = Mixer(OUTPUT_RATE)
        self.output = open_output(OUTPUT_RATE, channels=1, enabled=audio, source=self.mixer)

        # -- frames
        self.frame_cache = FrameCache(frame_cache_mb * 1024 * 1024)
        self.frame_server: Optional[FrameServer] = None
        self.display_size: Optional[tuple[int, int]] = None
        self.proxies = ProxyStore()
        self.proxy_builder: Optional[ProxyBuilder] = None
        self.use_proxies = True

        # -- widgets
        self.overlay_settings = OverlaySettings()
        self.view = VideoView()
        self._make_actions()
        self.transport = TransportBar(self.actions_by_name)
        central = QWidget()
        v = QVBoxLayout(central)
        v.setContentsMargins(0, 0, 0, 0)
        v.setSpacing(0)
        v.addWidget(self.view, 1)
        v.addWidget(self.transport)
        self.setCentralWidget(central)

        self.timeline = TimelineWidget()
        self.timeline_dock = QDockWidget("Timeline: waveform · spectrogram · cluster activity", self)
        self.timeline_dock.setObjectName("timelineDock")
        self.timeline_dock.setWidget(self.timeline)
        self.timeline_dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable |
                                       QDockWidget.DockWidgetFeature.DockWidgetFloatable |
                                       QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.timeline_dock)

        self.panel = ClusterPanel(self.overlay_settings)
        if k is not None:
            self.panel.k_combo.blockSignals(True)
            self.panel.k_combo.setCurrentIndex(max(0, self.panel.k_combo.findData(k)))
            self.panel.k_combo.blockSignals(False)
        self.panel_dock = QDockWidget("Sound clusters", self)
        self.panel_dock.setObjectName("clusterDock")
        self.panel_dock.setWidget(self.panel)
        self.panel_dock.setFeatures(self.timeline_dock.features())
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.panel_dock)
        self.resizeDocks([self.timeline_dock], [300], Qt.Orientation.Vertical)
        self.resizeDocks([self.panel_dock], [360], Qt.Orientation.Horizontal)
        self._make_menus()

        # -- status bar
        self.audio_label = QLabel()
        self.audio_label.setObjectName("statusAudio")
        self.model_label = QLabel()
        self.model_label.setObjectName("statusModel")
        self.audio_icon = QLabel()
        # persistent notes (no sound device, no model) under the temporary messages
        self.status_note = QLabel()
        self.status_note.setObjectName("statusNote")
        self.statusBar().addWidget(self.status_note, 1)
        self.statusBar().addPermanentWidget(self.model_label)
        self.statusBar().addPermanentWidget(self.audio_icon)
        self.statusBar().addPermanentWidget(self.audio_label)
        self._update_audio_label()

        # -- wiring
        self.view.pixelClicked.connect(self.hear_pixel)
        self.view.hovered.connect(self._on_hover)
        self.view.displaySizeChanged.connect(self._on_display_size)
        self.transport.slider.scrubbed.connect(self.seek_frame)
        self.transport.speedChosen.connect(self.set_speed)
        self.timeline.seekRequested.connect(lambda t: self.seek(t + self.video_start))
        self.panel.overlayChanged.connect(self._on_overlay_changed)
        self.panel.trackChanged.connect(self._on_track_changed)
        self.panel.playAlone.connect(self.play_alone)
        self.panel.exportTrack.connect(self.export_track)
        self.panel.kChanged.connect(self.set_k)
        self.panel.cancelRequested.connect(self.cancel_analysis)
        self.panel.restartRequested.connect(self.resume_analysis)

        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(15)
        self.timer.timeout.connect(self._tick)
        self._resize_timer = QTimer(self)
        self._resize_timer.setSingleShot(True)
        self._resize_timer.setInterval(150)
        self._resize_timer.timeout.connect(self._apply_display_size)
        self._activity_timer = QTimer(self)
        self._activity_timer.setInterval(250)
        self._activity_timer.timeout.connect(self._flush_activity)
        self._activity_timer.start()

        self._refresh_recent_menu()
        self._update_sources_note()
        self._update_model_label()
        self._restore_window_state()
        from .library_panel import install_library_panels

        install_library_panels(self)  # the clip library and fine-tuning (library_panel.py)
        from .box_tool import install_box_tool

        install_box_tool(self)  # boxes around what makes the sound, and the model's scores (box_tool.py)
        # start-up: with ``defer_model`` the first frame comes first; loading the model
        # (importing torch takes seconds of CPU, holding the GIL) and building proxies start
        # once a frame is painted (or after a moment anyway).
        self._background_started = False
        self._want_model = bool(load_model)
        self._first_paint_hooked = bool(defer_model)
        if defer_model:  # a clip is about to open: its first frame comes first
            self.view.painted.connect(self._on_first_paint)
            QTimer.singleShot(1500, self._start_background)
        else:
            QTimer.singleShot(0, self._start_background)
        if load_model:
            self.model_loading = True
            self._update_model_label()
        else:
            self.model_error = "no model loaded (--no-model)"
            self._update_model_label()
            self._update_status_note()

    # ======================================================================== actions / menus
    def _act(self, name: str, text: str, slot, keys=(), tip: str = "", icon: Optional[QIcon] = None,
             checkable: bool = False) -> QAction:
        from .keys import make_action

        a = make_action(self, name, text, slot, keys, tip, icon, checkable)
        self.actions_by_name[name] = a
        return a

    def _make_actions(self) -> None:
        sp = self.style().standardIcon
        P = QStyle.StandardPixmap
        self.actions_by_name: dict[str, QAction] = {}
        A = self._act
        self._groups: list[tuple[str, list[QAction]]] = []
        file_acts = [
            A("open", "&Open video…", self.open_dialog, ["Ctrl+O"], "Open a video", sp(P.SP_DialogOpenButton)),
            A("open_demo", "Open the &demo clip", self.open_demo, [], "Open the bundled demo clip"),
            A("export_video", "&Export video with overlays…", self.export_video, ["Ctrl+E"],
              "Write an mp4 with the heatmaps burnt in and the mix you hear"),
            A("export_stems", "Export &stems (WAV)…", self.export_stems, ["Ctrl+Shift+E"],
              "Write one WAV file per sound cluster"),
            A("export_heatmaps", "Export &heatmaps (npz)…", self.export_heatmaps, ["Ctrl+Shift+H"],
              "Write heatmaps [T, K, h, w] and times [T] as .npz"),
            A("quit", "&Quit", self.close, ["Ctrl+Q"], "Quit"),
        ]
        play = [
            A("play", "&Play / pause", self.toggle_play, ["Space"], "Play or pause", style.icon("play")),
            A("pause", "Pause (shuttle stop)", self.shuttle_stop, ["K"], "Pause"),
            A("shuttle_forward", "Shuttle forward (faster each press)", self.shuttle_forward, ["L"],
              "Play forwards; press again to go faster"),
            A("shuttle_back", "Shuttle backward (faster each press)", self.shuttle_back, ["J"],
              "Play backwards; press again to go faster"),
            A("step_forward", "Next frame", lambda: self.step(1), [".", "Right"], "Next frame",
              style.icon("step_forward")),
            A("step_back", "Previous frame", lambda: self.step(-1), [",", "Left"], "Previous frame",
              style.icon("step_back")),
            A("forward_1s", "Forward 1 s", lambda: self.skip(1.0), ["Shift+Right"], "Forward one second"),
            A("back_1s", "Back 1 s", lambda: self.skip(-1.0), ["Shift+Left"], "Back one second"),
            A("forward_10s", "Forward 10 s", lambda: self.skip(10.0), ["PgDown", "Ctrl+Shift+Right"],
              "Forward ten seconds"),
            A("back_10s", "Back 10 s", lambda: self.skip(-10.0), ["PgUp", "Ctrl+Shift+Left"],
              "Back ten seconds"),
            A("go_start", "Go to start", lambda: self.seek(self.video_start), ["Home"], "Go to the first frame",
              style.icon("go_start")),
            A("go_end", "Go to end", self.go_end, ["End"], "Go to the last frame", style.icon("go_end")),
            A("slower", "Slower", lambda: self.change_speed(-1), ["["], "Slower playback"),
            A("faster", "Faster", lambda: self.change_speed(1), ["]"], "Faster playback"),
            A("normal_speed", "Normal speed", lambda: self.set_speed(1.0), ["="], "Normal speed (1×)"),
            A("mute_all", "Mute output", self.toggle_master_mute, ["M"], "Mute or unmute the sound",
              checkable=True),
        ]
        view = [
            A("toggle_overlays", "Show &overlays", self.toggle_overlays, ["O"],
              "Show or hide every heatmap overlay", checkable=True),
            A("cycle_threshold", "Cycle threshold mode", self.cycle_threshold, ["T"],
              "Fixed / Otsu / mean + std"),
            A("opacity_up", "More opaque overlays", lambda: self.change_opacity(0.1), ["Shift+O"],
              "Increase overlay opacity"),
            A("opacity_down", "More transparent overlays", lambda: self.change_opacity(-0.1), ["Alt+O"],
              "Decrease overlay opacity"),
            A("clear_marker", "Clear the clicked spot", self.clear_marker, ["Esc"],
              "Remove the marker and stop the pixel's sound"),
            A("zoom_in", "Zoom timeline in", lambda: self.timeline.zoom(2.0, self.position), ["Ctrl+="],
              "Zoom the timeline in around the playhead"),
            A("zoom_out", "Zoom timeline out", lambda: self.timeline.zoom(0.5, self.position), ["Ctrl+-"],
              "Zoom the timeline out"),
            A("zoom_fit", "Whole clip in timeline", self.timeline_fit, ["Ctrl+0"], "Show the whole clip"),
            A("fullscreen", "Full screen", self.toggle_fullscreen, ["F11"], "Full screen"),
        ]
        self.actions_by_name["toggle_overlays"].blockSignals(True)
        self.actions_by_name["toggle_overlays"].setChecked(True)
        self.actions_by_name["toggle_overlays"].blockSignals(False)
        clusters = []
        for j in range(6):
            clusters.append(A(f"toggle_cluster_{j + 1}", f"Show/hide sound {j + 1}",
                              lambda j=j: self.toggle_cluster(j), [str(j + 1)],
                              f"Show or hide the heatmap of sound {j + 1}"))
        for j in range(6):
            clusters.append(A(f"solo_cluster_{j + 1}", f"Solo sound {j + 1}",
                              lambda j=j: self.toggle_solo(f"c{j}"), [f"Ctrl+{j + 1}"],
                              f"Solo the separated sound {j + 1}"))
        clusters.append(A("solo_mix", "Solo the original mix", lambda: self.toggle_solo("mix"), ["Ctrl+9"],
                          "Solo the original mix"))
        clusters.append(A("unsolo", "Clear solos", self.clear_solos, ["Ctrl+Shift+0"], "Un-solo every track"))
        analysis = [
            A("load_model", "Load &model…", self.load_model_dialog, ["Ctrl+M"], "Load a model file or folder"),
            A("cancel_analysis", "&Cancel analysis", self.cancel_analysis, ["Ctrl+."],
              "Stop the analysis (what is done is kept)"),
            A("resume_analysis", "&Resume analysis", self.resume_analysis, ["Ctrl+R"],
              "Resume (or restart) the analysis"),
            A("clear_cache", "Forget cached results for this clip", self.clear_clip_cache, [],
              "Delete this clip's cached heatmaps and stems and analyse again"),
        ]
        helpm = [
            A("keyboard", "&Keyboard shortcuts", self.show_keys, ["F1", "?"], "List every shortcut"),
            A("about", "&About AV Studio", self.show_about, [], "About"),
        ]
        self._groups = [("File", file_acts), ("Playback", play), ("View", view),
                        ("Clusters", clusters), ("Analysis", analysis), ("Help", helpm)]
        # the player's own actions (panels installed later add theirs to the groups)
        self.player_action_names = {a.objectName() for _g, acts in self._groups for a in acts}

    def action_groups(self) -> list[tuple[str, list[QAction]]]:
        return self._groups

    def action(self, name: str) -> QAction:
        return self.actions_by_name[name]

    def _make_menus(self) -> None:
        mb = self.menuBar()
        for title, acts in self._groups:
            m = mb.addMenu("&" + title)
            for a in acts:
                m.addAction(a)
                if title == "File" and a.objectName() == "open_demo":
                    self.recent_menu = m.addMenu("Open &recent")
                    m.addSeparator()
                if a.objectName() in ("export_heatmaps", "mute_all", "opacity_down", "solo_cluster_6",
                                      "toggle_cluster_6", "zoom_fit", "resume_analysis"):
                    m.addSeparator()
            if title == "View":
                m.addSeparator()
                m.addAction(self.timeline_dock.toggleViewAction())
                m.addAction(self.panel_dock.toggleViewAction())

    def _on_first_paint(self, index: int) -> None:
        if index >= 0:
            QTimer.singleShot(0, self._start_background)

    def _start_background(self) -> None:
        if self._background_started or self._closing:
            return
        self._background_started = True
        if self._first_paint_hooked:
            self._first_paint_hooked = False
            self.view.painted.disconnect(self._on_first_paint)
        if self._want_model:
            self.load_model(self.model_path)
        self._start_proxies()

    def _start_proxies(self) -> None:
        if (not self.use_proxies or self.path is None or self.proxy_builder is not None
                or not self._background_started):
            return
        self.proxy_builder = ProxyBuilder(self.path, self.frame_count,
                                          proxy_size(self.info.width, self.info.height), self.proxies)
        self.proxy_builder.start()

    # ======================================================================== model
    def load_model(self, model_path=None) -> None:
        self.model_path = model_path
        self.model_loading = True
        self.model_error = None
        self._update_model_label()
        job = Job("load-model", load_model_fn, model_path)
        job.done.connect(self._on_model_loaded)
        job.failed.connect(self._on_model_failed)
        self._start_job("model", job)

    def _on_model_loaded(self, bundle) -> None:
        self.model_loading = False
        self.bundle = bundle
        self.model_error = None
        self._update_model_label()
        self._update_sources_note()
        self._update_status_note()
        self.statusBar().showMessage(f"Model {bundle.name} loaded", 4000)
        self.modelReady.emit()
        if self.path is not None:
            self.start_analysis()

    def _on_model_failed(self, msg: str) -> None:
        self.model_loading = False
        self.bundle = None
        self.model_error = msg
        self._update_model_label()
        self._update_sources_note()
        if "default model" in msg and "not installed" in msg:
            text = "No model installed (models/default): showing the video without heatmaps"
        else:
            text = f"No model: {msg}"
        self.statusBar().showMessage(text, 8000)
        self.panel.status.setText(text)
        self._update_status_note()
        self.modelReady.emit()

    def _update_model_label(self) -> None:
        if self.model_loading:
            t = "loading model…"
        elif self.bundle is not None:
            t = f"model: {self.bundle.name}"
        else:
            t = "no model"
        self.model_label.setText(t)
        if self.bundle is not None:
            parts = [self.bundle.name]
            comps = [c for c, m in (("localizer", self.bundle.av), ("counter", self.bundle.counter),
                                    ("separator", self.bundle.separator)) if m is not None]
            parts.append(" + ".join(comps))
            self.panel.model_label.setText(" · ".join(parts))
            self.panel.model_label.setToolTip("\n".join(f"{c}: {p}" for c, p in self.bundle.paths.items()))
        else:
            self.panel.model_label.setText(t if self.model_loading else (self.model_error or "no model"))

    def load_model_dialog(self) -> None:
        p, _ = QFileDialog.getOpenFileName(self, "Load model (.safetensors, with its .json card)", "",
                                           "Models (*.safetensors);;All files (*)")
        if p:
            self._stop_analysis()
            self._forget_results()
            self.bundle = None
            self.load_model(p)

    # ======================================================================== opening
    def open_dialog(self) -> None:
        start = self.qsettings.value("last_dir", "")
        p, _ = QFileDialog.getOpenFileName(self, "Open video", str(start or ""), VIDEO_FILTER)
        if p:
            self.open_file(p)

    def open_demo(self) -> None:
        p = demo_clip()
        if not p.exists():
            self.error("The demo clip (resources/demo.mp4) is not installed")
            return
        self.open_file(str(p))

    def error(self, msg: str, title: str = "AV Studio") -> None:
        self.last_error = msg
        self.statusBar().showMessage(msg, 8000)
        QMessageBox.critical(self, title, msg)

    def open_file(self, path: str) -> bool:
        """Open a clip; a bad file shows a dialog and leaves the current clip as it was."""
        from ..media import probe

        path = os.fspath(path)
        try:
            info = probe(path, check=False)
            if not info.has_video:
                raise AVStudioError(f"{path!r} has no video stream (AV Studio needs a video)")
            if info.frame_count <= 0:
                raise AVStudioError(f"{path!r}: no video frames")
        except AVStudioError as exc:
            self.error(str(exc), "Cannot open this file")
            return False
        self._close_clip()
        if info.problem:
            QMessageBox.warning(self, "Damaged file", f"{info.problem}. Showing what can be decoded.")
        self.path = path
        self.info = info
        self.frame_count = int(info.frame_count)
        self.fps = float(info.fps or 25.0)
        self.video_start = float(info.video_start)
        self.duration = max(float(info.duration), self.frame_count / self.fps)
        self.position = self.video_start
        self.current_frame = -1
        self.setWindowTitle(f"{Path(path).name} — {APP_NAME}")
        self.view.set_source_size(info.width, info.height)
        self.transport.set_range(self.frame_count)
        self.timeline.clear()
        self.timeline.set_duration(self.duration)
        self.timeline.set_coverage(np.zeros(self.frame_count, bool))
        self.display_size = self.view.display_size()
        self.frame_server = FrameServer(path, self.frame_count, self.display_size, self.frame_cache,
                                        after_decode=self._warm_overlay)
        self.frame_server.frameReady.connect(self._on_frame_ready)
        self.frame_server.failed.connect(self._show_message)
        self.frame_server.start()
        self.show_frame(0)
        self._start_proxies()
        self._add_recent(path)
        self.qsettings.setValue("last_dir", str(Path(path).resolve().parent))
        # sound
        self.mixer.clear()
        if info.has_audio:
            job = Job("load-audio", load_audio_fn, path, OUTPUT_RATE)
            job.done.connect(self._on_audio_loaded)
            job.failed.connect(self._on_audio_failed)
            self._start_job("audio", job)
        else:
            self.timeline.set_audio(None)
        self._update_sources_note()
        self.panel.set_clusters(0)
        if self.bundle is not None:
            self.start_analysis()
        elif self.model_error:
            self.panel.status.setText("No model: the video is shown without heatmaps")
        self.clipOpened.emit(path)
        return True

    def _stop_frame_workers(self) -> None:
        """Stop the clip's frame server and proxy builder threads (closing a clip, quitting)."""
        if self.frame_server is not None:
            self.frame_server.stop()
            self.frame_server = None
        if self.proxy_builder is not None:
            self.proxy_builder.stop()
            self.proxy_builder = None

    def _close_clip(self) -> None:
        self.pause()
        self._stop_analysis()
        for name in ("audio", "separate", "pixel", "export"):
            j = self.jobs.pop(name, None)
            if j is not None:
                j.cancel()
                j.wait(5000)
        self._stop_frame_workers()
        self.proxies.clear()
        self.frame_cache.clear()
        self._overlay_lru.clear()
        self.path = None
        self.info = None
        self.heat = self.heat_done = self.activity = None
        self.k = None
        self.stems = None
        self.residual = None
        self.audio_data = None
        self.pixel = None
        self.marker = None
        self.cache = None
        self.mixer.clear()
        self.view.clear()

    # -- recent files ------------------------------------------------------------------------
    def recent_files(self) -> list[str]:
        v = self.qsettings.value("recent", [])
        if isinstance(v, str):
            v = [v]
        return [str(x) for x in (v or [])]

    def _add_recent(self, path: str) -> None:
        p = str(Path(path).resolve())
        r = [x for x in self.recent_files() if x != p]
        r.insert(0, p)
        self.qsettings.setValue("recent", r[:MAX_RECENT])
        self.qsettings.sync()
        self._refresh_recent_menu()

    def _refresh_recent_menu(self) -> None:
        if not hasattr(self, "recent_menu"):
            return
        self.recent_menu.clear()
        files = self.recent_files()
        for p in files:
            a = self.recent_menu.addAction(Path(p).name)
            a.setToolTip(p)
            a.setStatusTip(p)
            a.triggered.connect(lambda _c=False, p=p: self.open_file(p))
        if not files:
            a = self.recent_menu.addAction("(none)")
            a.setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            a = self.recent_menu.addAction("Clear the list")
            a.triggered.connect(lambda: (self.qsettings.setValue("recent", []), self._refresh_recent_menu()))

    # -- drag and drop -----------------------------------------------------------------------
    def dragEnterEvent(self, ev) -> None:
        if ev.mimeData().hasUrls() and any(u.isLocalFile() for u in ev.mimeData().urls()):
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:
        for u in ev.mimeData().urls():
            if u.isLocalFile():
                self.open_file(u.toLocalFile())
                ev.acceptProposedAction()
                return

    # ======================================================================== frames
    def index_at(self, t: float) -> int:
        i = int(np.floor((t - self.video_start) * self.fps + 1e-6))
        return max(0, min(self.frame_count - 1, i))

    def time_of(self, index: int) -> float:
        return self.video_start + index / self.fps

    def show_frame(self, index: int) -> None:
        if self.frame_server is None:
            return
        index = max(0, min(self.frame_count - 1, int(index)))
        self.wanted_frame = index
        img = self.frame_cache.get(index)
        if img is not None:
            self._display(index, img)
            self.frame_server.set_playhead(index, self.direction)
        else:
            self.frame_server.request(index, self.direction)
            if index != self.current_frame or self.view.frame_is_proxy:
                proxy = self.proxies.get(index)
                if proxy is not None:  # at once, at proxy resolution; the exact frame follows
                    self._display(index, proxy, proxy=True)

    def _on_frame_ready(self, index: int, img, generation: int) -> None:
        if index == self.wanted_frame:
            self._display(index, img)

    def _display(self, index: int, img, proxy: bool = False) -> None:
        self.current_frame = index
        ov, badge = self._overlay_for(index)
        self.view.set_frame(img, index, ov, badge, proxy=proxy)

    def _overlay_for(self, index: int):
        if self.heat is None or self.heat_done is None or index >= len(self.heat_done):
            pending = self.bundle is not None and self.analysis_state in ("running", "starting")
            return None, ("heatmap pending…" if pending else "")
        if not self.heat_done[index]:
            pending = self.analysis_state in ("running", "starting")
            return None, ("heatmap pending…" if pending else "no heatmap for this frame")
        if not self.overlay_settings.enabled:
            return None, ""
        key = (index, self.overlay_settings.version)
        got = self._overlay_lru.get(key)
        if got is None:
            got = make_overlay(self.heat[index].astype(np.float32), self.overlay_settings) or False
            self._overlay_lru.put(key, got)
        return (got if got is not False else None), ""

    def _warm_overlay(self, index: int) -> None:
        """Compose frame ``index``'s overlay ahead of time (called from the frame server)."""
        heat, done, s = self.heat, self.heat_done, self.overlay_settings
        if heat is None or done is None or not s.enabled or not (0 <= index < len(done)) or not done[index]:
            return
        key = (index, s.version)
        if key in self._overlay_lru:
            return
        try:
            ov = make_overlay(heat[index].astype(np.float32), s)
            if ov and self._overlay_size is not None:
                ov.prepare(self._overlay_size)
            self._overlay_lru.put(key, ov or False)
        except Exception:  # settings changed under us: it is composed again when shown
            pass

    def refresh_overlay(self) -> None:
        if self.current_frame >= 0:
            ov, badge = self._overlay_for(self.current_frame)
            self.view.set_overlay(ov, badge)

    def _on_display_size(self, w: int, h: int) -> None:
        r = self.view.frame_rect()
        self._overlay_size = (round(r.width()), round(r.height()))
        if self.frame_server is None:
            return
        self._resize_timer.start()

    def _apply_display_size(self) -> None:
        if self.frame_server is None:
            return
        size = self.view.display_size()
        if size != self.display_size:
            self.display_size = size
            self.frame_server.set_size(size)
            self.show_frame(self.wanted_frame if self.wanted_frame >= 0 else 0)

    # ======================================================================== transport
    def clock(self) -> float:
        """Media time being heard now (the audio clock; wall time on a silent output)."""
        out = self.output
        heard = out.position_samples - out.latency * out.sample_rate
        return self.mixer.media_time(heard)

    def toggle_play(self) -> None:
        if self.playing:
            self.pause()
        else:
            self.play()

    def play(self, speed: Optional[float] = None) -> None:
        if self.path is None:
            return
        if speed is not None:
            self.speed = float(speed)
        self.direction = 1 if self.speed >= 0 else -1
        end = self.video_start + self.duration
        if self.speed > 0 and self.position >= end - 0.5 / self.fps:
            self.position = self.video_start
        if self.speed < 0 and self.position <= self.video_start + 0.5 / self.fps:
            self.position = end - 1.0 / self.fps
        self.mixer.seek(self.position)
        self.mixer.set_speed(self.speed)
        self.mixer.sync_output(self.output.position_samples)
        self.mixer.playing = True
        if self.frame_server is not None:
            self.frame_server.playing = True
        self.output.start()
        self.playing = True
        self.timer.start()
        self._update_play_action()
        self.transport.set_speed(self.speed)

    def pause(self) -> None:
        if not self.playing:
            return
        t = self.clock()
        self.output.stop()
        self.timer.stop()
        self.playing = False
        self.mixer.playing = False
        if self.frame_server is not None:
            self.frame_server.playing = False
        self.position = min(max(self.video_start, t), self.video_start + self.duration)
        self.mixer.seek(self.position)
        self._update_play_action()
        self._sync_ui(self.position)
        self.show_frame(self.index_at(self.position))
        self.playbackStopped.emit(t)

    def _update_play_action(self) -> None:
        a = self.action("play")
        a.setIcon(style.icon("pause" if self.playing else "play"))
        a.setToolTip(("Pause" if self.playing else "Play") + " (Space)")

    def _tick(self) -> None:
        if not self.playing:
            return
        t = self.clock()
        end = self.video_start + self.duration
        if self.speed > 0 and t >= end:
            self.position = end - 0.5 / self.fps
            self.pause()
            return
        if self.speed < 0 and t <= self.video_start:
            self.position = self.video_start
            self.pause()
            return
        self.position = t
        idx = self.index_at(t)
        if idx != self.wanted_frame:
            self.show_frame(idx)
            self._sync_ui(t)
            if self.scheduler is not None:
                self.scheduler.set_playhead(idx, jump=False)

    def _sync_ui(self, t: float) -> None:
        idx = self.index_at(t)
        self.transport.set_position(t - self.video_start, self.duration, idx, self.frame_count)
        self.timeline.set_playhead(t - self.video_start, self.playing)

    def seek(self, t: float) -> None:
        """Go to media time ``t`` (seconds from the clip's start); playback goes on from there."""
        if self.path is None:
            return
        t = min(max(self.video_start, t), self.video_start + self.duration - 0.5 / self.fps)
        self.position = t
        if self.playing:
            self.mixer.seek(t)
        idx = self.index_at(t)
        self.show_frame(idx)
        self._sync_ui(t)
        if self.scheduler is not None:
            self.scheduler.set_playhead(idx)

    def seek_frame(self, index: int) -> None:
        index = max(0, min(self.frame_count - 1, int(index)))
        self.seek(self.time_of(index) + 1e-6)

    def step(self, n: int) -> None:
        if self.path is None:
            return
        if self.playing:
            self.pause()
        base = self.wanted_frame if self.wanted_frame >= 0 else self.index_at(self.position)
        self.seek_frame(base + n)

    def skip(self, seconds: float) -> None:
        self.seek(self.position + seconds)

    def go_end(self) -> None:
        if self.path is None:
            return
        if self.playing:
            self.pause()
        self.seek_frame(self.frame_count - 1)

    def set_speed(self, s: float) -> None:
        self.speed = float(s)
        self.base_speed = abs(self.speed) if self.speed else 1.0
        self.direction = 1 if self.speed >= 0 else -1
        self.mixer.set_speed(self.speed)
        self.transport.set_speed(self.speed)
        self.statusBar().showMessage(f"Speed {self.speed:g}×", 2000)

    def change_speed(self, d: int) -> None:
        cur = abs(self.speed)
        i = min(range(len(SPEEDS)), key=lambda j: abs(SPEEDS[j] - cur))
        i = max(0, min(len(SPEEDS) - 1, i + d))
        self.set_speed(SPEEDS[i] * (1 if self.speed >= 0 else -1))

    def shuttle_forward(self) -> None:
        if self.playing and self.speed > 0:
            nxt = [s for s in SHUTTLE if s > self.speed + 1e-9]
            self.set_speed(nxt[0] if nxt else SHUTTLE[-1])
        else:
            self.set_speed(1.0)
            self.play()

    def shuttle_back(self) -> None:
        if self.playing and self.speed < 0:
            nxt = [s for s in SHUTTLE if s > -self.speed + 1e-9]
            self.set_speed(-(nxt[0] if nxt else SHUTTLE[-1]))
        else:
            if self.playing:
                self.pause()
            self.set_speed(-1.0)
            self.play()

    def shuttle_stop(self) -> None:
        self.pause()
        if self.speed < 0 or self.speed > 4:
            self.set_speed(1.0)

    def toggle_master_mute(self, on: bool) -> None:
        self.mixer.master_mute = bool(on)
        self._update_audio_label()

    # ======================================================================== analysis
    def start_analysis(self, k: Optional[int] = None, fresh: bool = False) -> None:
        """Analyse the open clip in the background (cached results first)."""
        if self.path is None or self.bundle is None:
            return
        if self.bundle.av is None:
            self.panel.status.setText("This model has no localizer: no heatmaps")
            return
        from ..analysis.cache import AnalysisCache

        self._stop_analysis()
        if k is not None:
            self.k_request = k
        try:
            self.cache = AnalysisCache(self.path, self.bundle.model_id, root=self.cache_root)
        except OSError as exc:
            self.error(f"Cannot use the analysis cache: {exc}")
            return
        if fresh:
            self.cache.clear()
        sch = AnalysisScheduler(self.bundle, self.path, self.frame_count, self.fps,
                                bool(self.info.has_audio), self.cache, k=self.k_request,
                                chunk=self.chunk, playhead=max(0, self.wanted_frame))
        sch.kDecided.connect(self._on_k_decided)
        sch.chunkReady.connect(self._on_chunk)
        sch.progress.connect(self._on_analysis_progress)
        sch.finishedAll.connect(self._on_analysis_done)
        sch.failed.connect(self._on_analysis_failed)
        sch.cancelled.connect(self._on_analysis_cancelled)
        self.scheduler = sch
        self.analysis_state = "starting"
        self.panel.set_progress(0, 1, "starting…")
        self.panel.status.setText("Analysing from the playhead onwards")
        sch.start()
        self.refresh_overlay()

    def _stop_analysis(self) -> None:
        sch = self.scheduler
        self.scheduler = None
        if sch is not None:
            for sig in (sch.kDecided, sch.chunkReady, sch.progress, sch.finishedAll, sch.failed, sch.cancelled):
                try:
                    sig.disconnect()
                except (RuntimeError, TypeError):
                    pass
            sch.stop()
        j = self.jobs.pop("separate", None)
        if j is not None:
            j.cancel()
            j.wait(5000)
        self.analysis_state = "idle"

    def cancel_analysis(self) -> None:
        sch = self.scheduler
        if sch is not None and sch.isRunning():
            sch.cancel()
            self.panel.status.setText("Cancelling…")
        j = self.jobs.get("separate")
        if j is not None:
            j.cancel()

    def resume_analysis(self) -> None:
        if self.scheduler is not None and self.scheduler.isRunning():
            return
        self.start_analysis()

    def _forget_results(self) -> None:
        """Drop the heatmaps and stems shown (another k, another model, a fresh analysis)."""
        self.heat = self.heat_done = self.activity = None
        self.k = None
        self.stems = None
        self.residual = None
        for name in list(self.mixer.tracks):
            if name.startswith("c") or name == "res":
                self.mixer.remove_track(name)
        self._overlay_lru.clear()
        self.timeline.set_activity(np.zeros(0), np.zeros((0, 0)), [])
        self.timeline.set_coverage(np.zeros(max(1, self.frame_count), bool))
        self.refresh_overlay()

    def set_k(self, k) -> None:
        self.k_request = k
        if self.path is not None and self.bundle is not None:
            self._stop_analysis()
            self._forget_results()
            self.start_analysis(k)

    def clear_clip_cache(self) -> None:
        if self.cache is None:
            return
        self._stop_analysis()
        self._forget_results()
        self.start_analysis(fresh=True)

    def _on_k_decided(self, k: int, how: str) -> None:
        if self.sender() is not self.scheduler:
            return
        self.analysis_state = "running"
        if k != self.k or self.heat is None:
            self.k = k
            self.heat = None
            self.heat_done = np.zeros(self.frame_count, bool)
            self.activity = np.full((self.frame_count, k), np.nan, np.float32)
            self._overlay_lru.clear()
        self.panel.set_clusters(k, stems=self.stems is not None, pixel=self._pixel_label(),
                                residual=self.residual is not None)
        self.panel.status.setText(f"{k} sound cluster{'s' if k > 1 else ''}: {how}")
        self._update_sources_note()

    def _on_chunk(self, data) -> None:
        if self.sender() is not self.scheduler or self.k is None:
            return
        hm = data.heatmaps
        if self.heat is None or self.heat.shape[1:] != hm.shape[1:]:
            self.heat = np.zeros((self.frame_count,) + hm.shape[1:], np.float16)
            self.heat_done = np.zeros(self.frame_count, bool)
        fr = np.asarray(data.frames)
        ok = (fr >= 0) & (fr < self.frame_count)
        fr = fr[ok]
        self.heat[fr] = hm[ok].astype(np.float16)
        self.heat_done[fr] = True
        flat = hm[ok].reshape(len(fr), hm.shape[1], -1).astype(np.float32)
        # how focused each cluster's map is: its peak above its median (0: flat, 1: one hot spot)
        self.activity[fr] = flat.max(-1) - np.median(flat, axis=-1)
        self._overlay_lru.drop_frames(fr.tolist())
        self._activity_dirty = True
        if self.current_frame in set(fr.tolist()):
            self.refresh_overlay()

    def _flush_activity(self) -> None:
        if not self._activity_dirty or self.activity is None:
            return
        self._activity_dirty = False
        times = (np.arange(self.frame_count) + 0.5) / self.fps
        k = self.activity.shape[1]
        self.timeline.set_activity(times, self.activity, [cluster_colour(j) for j in range(k)],
                                   self.overlay_settings.visible)
        self.timeline.set_coverage(self.heat_done)

    def _on_analysis_progress(self, done: int, total: int, msg: str) -> None:
        if self.sender() is not self.scheduler:
            return
        self.panel.set_progress(done, total, f"{done}/{total} frames" + (f" · {msg}" if msg else ""))

    def _on_analysis_done(self) -> None:
        if self.sender() is not self.scheduler:
            return
        self.analysis_state = "done"
        self._flush_activity()
        self.panel.set_progress(1, 1, "analysed")
        self.statusBar().showMessage("Analysis complete (cached for next time)", 4000)
        self.refresh_overlay()
        self.analysisFinished.emit()
        self._start_separation()

    def _on_analysis_failed(self, msg: str) -> None:
        if self.sender() is not self.scheduler:
            return
        self.analysis_state = "failed"
        self.panel.set_progress(0, 1, "failed")
        self.panel.status.setText(msg)
        self.refresh_overlay()
        # a damaged file is found by decoding it: say so once, in a dialog (the frames and
        # heatmaps decoded so far stay); a file already said to be damaged when it was opened
        # gets the status line only
        if self.info is not None and self.info.problem:
            self.statusBar().showMessage(f"Analysis stopped at the damage: {msg}", 10000)
        else:
            self.error(f"Analysis failed: {msg}", "Analysis failed")

    def _on_analysis_cancelled(self) -> None:
        if self.sender() is not self.scheduler:
            return
        self.analysis_state = "cancelled"
        done = int(self.heat_done.sum()) if self.heat_done is not None else 0
        self.panel.set_progress(done, self.frame_count, f"cancelled at {done}/{self.frame_count}")
        self.panel.status.setText("Analysis cancelled; finished frames are kept (Ctrl+R resumes)")
        self.statusBar().showMessage("Analysis cancelled", 4000)
        self.refresh_overlay()

    # -- separation --------------------------------------------------------------------------
    def _start_separation(self) -> None:
        if self.stems is not None or self.k is None or self.cache is None:
            return
        if not separation_available(self.bundle) or self.info is None or not self.info.has_audio:
            self._update_sources_note()
            return
        job = Job("separate", separate_fn, self.bundle, self.path, self.cache, self.k, self.fps, nice=5)
        job.done.connect(self._on_stems)
        job.failed.connect(self._on_separation_failed)
        job.progress.connect(self._on_separation_progress)
        self.panel.note.setText("Separating sources…")
        self._start_job("separate", job)

    def _on_separation_progress(self, ev) -> None:
        if self.sender() is self.jobs.get("separate"):
            self.panel.note.setText(f"Separating sources… {int(100 * (ev.fraction or 0))}%")

    def _on_separation_failed(self, msg: str) -> None:
        if self.sender() is self.jobs.get("separate"):
            self.panel.note.setText(f"Separation failed: {msg}")
            self.statusBar().showMessage(f"Separation failed: {msg}", 10000)

    def _on_stems(self, res: dict) -> None:
        if self.sender() is not self.jobs.get("separate"):
            return
        self._set_stems(res["stems"], res["sr"], res.get("residual"))
        self.statusBar().showMessage("Sources separated" + (" (cached)" if res.get("cached") else ""), 4000)

    def _set_stems(self, stems: np.ndarray, sr: int, residual: Optional[np.ndarray] = None) -> None:
        self.stems = np.asarray(stems, np.float32)
        self.stems_sr = int(sr)
        self.residual = residual
        self.panel.set_clusters(self.k or self.stems.shape[0], stems=True, pixel=self._pixel_label(),
                                residual=residual is not None)
        states = self.panel.track_states()
        for j in range(self.stems.shape[0]):
            st = states.get(f"c{j}", {"mute": True, "solo": False, "gain": 1.0})
            self.mixer.set_track(f"c{j}", self.stems[j], self.stems_sr, **st)
        if residual is not None:
            self.mixer.set_track("res", residual, self.stems_sr, **states.get("res", {"mute": True}))
        self._update_sources_note()
        self.stemsReady.emit()

    def _update_sources_note(self) -> None:
        if self.path is not None and self.info is not None and not self.info.has_audio:
            t = "This clip has no sound."
        elif self.bundle is None:
            t = ("No model: only the original mix can be heard." if not self.model_loading
                 else "Loading the model…")
        elif self.bundle.separator is None:
            t = "This model has no separator: only the original mix can be heard."
        elif not separation_available(self.bundle):
            t = "Separation is not available in this installation: only the original mix."
        elif self.stems is None:
            t = "Sources are separated when the analysis is complete."
        else:
            t = ("Solo (S) or unmute (M) a sound to hear it; the mix heard is the sum of what is on. "
                 "Click the frame to hear a pixel.")
        self.panel.note.setText(t)

    # -- audio -------------------------------------------------------------------------------
    def _show_message(self, msg: str) -> None:
        self.statusBar().showMessage(msg, 8000)

    def _on_audio_failed(self, msg: str) -> None:
        self.statusBar().showMessage(f"Cannot load the sound: {msg}", 8000)

    def _on_audio_loaded(self, data) -> None:
        if self.sender() is not self.jobs.get("audio"):
            return
        self.audio_data = data
        self.timeline.set_audio(data)
        if data:
            st = self.panel.track_states().get("mix", {"mute": False, "solo": False, "gain": 1.0})
            self.mixer.set_track("mix", data["mix"], data["sr"], mute=st["mute"], solo=st["solo"],
                                 gain=st["gain"])

    def _on_track_changed(self, name: str, state: dict) -> None:
        self.mixer.set_state(name, **state)

    def toggle_solo(self, name: str) -> None:
        row = self.panel.rows.get(name)
        if row is None or not row.solo.isEnabled():
            return
        self.panel.set_track(name, solo=not row.solo.isChecked())

    def clear_solos(self) -> None:
        for name, row in self.panel.rows.items():
            if row.solo.isChecked():
                self.panel.set_track(name, solo=False)

    def play_alone(self, name: str) -> None:
        """Hear one track alone from the playhead (the other solos are cleared)."""
        for n in self.panel.rows:
            if n != name and self.panel.rows[n].solo.isChecked():
                self.panel.set_track(n, solo=False)
        self.panel.set_track(name, solo=True, mute=False)
        if not self.playing:
            self.play()

    def _update_audio_label(self) -> None:
        out = self.output
        silent = not getattr(out, "available", False)
        if silent:
            txt, ic = "silent", "silent"
        elif self.mixer.master_mute:
            txt, ic = "muted", "silent"
        else:
            txt, ic = getattr(out, "device_name", "sound"), "sound"
        self.audio_icon.setPixmap(style.icon(ic).pixmap(16, 16))
        self.audio_label.setText(txt)
        self.audio_label.setToolTip(out.status)
        self.audio_icon.setToolTip(out.status)
        self._update_status_note()

    def _update_status_note(self) -> None:
        notes = []
        if not getattr(self.output, "available", False):
            notes.append(self.output.status)
        if self.bundle is None and not self.model_loading and self.model_error:
            if "not installed" in self.model_error:
                notes.append("No model installed (models/default): showing the video without heatmaps")
            else:
                notes.append(f"No model: {self.model_error}")
        self.status_note.setText("   ·   ".join(notes))
        self.status_note.setToolTip("\n".join(notes))

    # ======================================================================== pixels
    def _pixel_label(self) -> Optional[str]:
        if self.pixel is None or "audio" not in self.pixel:
            return None
        return f"Pixel ({self.pixel['x']:.2f}, {self.pixel['y']:.2f})"

    def hear_pixel(self, x: float, y: float) -> None:
        """Click on the frame: mark the spot and play the sound of that pixel."""
        if self.path is None:
            return
        self.marker = (x, y)
        self.view.set_marker(self.marker)
        t = self.index_at(self.position)
        t = self.time_of(t)
        if self.heat is not None and self.heat_done is not None and self.heat_done[self.index_at(t)]:
            vals = heat_at(self.heat[self.index_at(t)], x, y, self.overlay_settings.normalize)
            self.panel.probe_label.setText("Clicked: " + "  ".join(
                f"S{j + 1} {v:.2f}" for j, v in enumerate(vals)))
        if self.bundle is None or self.bundle.separator is None or not separation_available(self.bundle):
            why = ("no model is loaded" if self.bundle is None else "this model has no separator")
            self.statusBar().showMessage(f"Cannot play the sound of a pixel: {why}", 6000)
            return
        old = self.jobs.pop("pixel", None)
        if old is not None:
            old.cancel()
        self.pixel = {"x": x, "y": y, "t": t}
        job = Job("pixel", pixel_sound_fn, self.bundle, self.path, t, x, y)
        job.done.connect(self._on_pixel_sound)
        job.failed.connect(self._on_pixel_failed)
        self.statusBar().showMessage(f"Separating the sound at ({x:.2f}, {y:.2f})…", 4000)
        self._start_job("pixel", job)

    def _on_pixel_failed(self, msg: str) -> None:
        self.statusBar().showMessage(f"Pixel sound failed: {msg}", 8000)

    def _on_pixel_sound(self, res: dict) -> None:
        if self.sender() is not self.jobs.get("pixel") or self.pixel is None:
            return
        self.pixel.update(res)
        self.mixer.set_track("pixel", res["audio"], res["sr"], offset=res["offset"])
        self.panel.set_clusters(self.k or 0, stems=self.stems is not None, pixel=self._pixel_label(),
                                residual=self.residual is not None)
        st = self.panel.track_states().get("pixel", {})
        self.mixer.set_state("pixel", **st)
        self.play_alone("pixel")
        self.statusBar().showMessage(f"Playing the sound of the pixel at ({self.pixel['x']:.2f}, "
                                     f"{self.pixel['y']:.2f}) from the playhead (Esc stops)", 6000)
        self.pixelReady.emit()

    def clear_marker(self) -> None:
        self.marker = None
        self.view.set_marker(None)
        if self.pixel is not None:
            self.pixel = None
            self.mixer.remove_track("pixel")
            self.panel.set_clusters(self.k or 0, stems=self.stems is not None, pixel=None,
                                    residual=self.residual is not None)
            self.clear_solos()

    def _on_hover(self, x: float, y: float) -> None:
        if x < 0 or self.heat is None or self.current_frame < 0 or not self.heat_done[self.current_frame]:
            if x < 0:
                self.panel.probe_label.setText("")
            return
        vals = heat_at(self.heat[self.current_frame], x, y, self.overlay_settings.normalize)
        self.panel.probe_label.setText(f"({x:.2f}, {y:.2f})  " + "  ".join(
            f"S{j + 1} {v:.2f}" for j, v in enumerate(vals)))

    # ======================================================================== overlay settings
    def _on_overlay_changed(self) -> None:
        self.action("toggle_overlays").blockSignals(True)
        self.action("toggle_overlays").setChecked(self.overlay_settings.enabled)
        self.action("toggle_overlays").blockSignals(False)
        self._overlay_lru.clear()
        self.refresh_overlay()
        self._activity_dirty = True

    def _settings_changed(self) -> None:
        self.overlay_settings.version += 1
        self.panel.sync_from_settings()
        self._on_overlay_changed()

    def toggle_overlays(self, on: bool) -> None:
        self.overlay_settings.enabled = bool(on)
        self._settings_changed()

    def toggle_cluster(self, j: int) -> None:
        s = self.overlay_settings
        while len(s.visible) <= j:
            s.visible.append(True)
        s.visible[j] = not s.visible[j]
        self._settings_changed()

    def cycle_threshold(self) -> None:
        modes = list(THRESHOLD_MODES)
        s = self.overlay_settings
        s.threshold_mode = modes[(modes.index(s.threshold_mode) + 1) % len(modes)]
        self._settings_changed()
        self.statusBar().showMessage(f"Threshold: {THRESHOLD_MODES[s.threshold_mode]}", 2000)

    def change_opacity(self, d: float) -> None:
        s = self.overlay_settings
        s.opacity = float(np.clip(s.opacity + d, 0.0, 1.0))
        self._settings_changed()

    def timeline_fit(self) -> None:
        self.timeline.zoom_fit()

    def toggle_fullscreen(self) -> None:
        self.showNormal() if self.isFullScreen() else self.showFullScreen()

    # ======================================================================== export
    def _ask_save(self, title: str, name: str, filt: str) -> Optional[str]:
        start = str(Path(str(self.qsettings.value("export_dir", "") or Path.home())) / name)
        p, _ = QFileDialog.getSaveFileName(self, title, start, filt)
        if p:
            self.qsettings.setValue("export_dir", str(Path(p).parent))
        return p or None

    def export_video(self, out: Optional[str] = None) -> Optional[Job]:
        if self.path is None:
            self.error("Open a video first")
            return None
        if out is None:
            out = self._ask_save("Export video with overlays", Path(self.path).stem + "_overlay.mp4",
                                 "MP4 video (*.mp4)")
            if not out:
                return None
        if self.heat_done is not None and not self.heat_done.all():
            missing = int((~self.heat_done).sum())
            self.statusBar().showMessage(f"{missing} frames have no heatmap yet: they are exported without overlay", 6000)
        audio = None
        if self.audio_data:
            audio = self.mixer.mixdown(self.video_start, self.duration, self.audio_data["sr"])
        from .export import export_video_fn

        heat = self.heat.copy() if self.heat is not None else None
        done = self.heat_done.copy() if self.heat_done is not None else None
        job = Job("export", export_video_fn, self.path, out, heat, done, self.overlay_settings, audio,
                  self.audio_data["sr"] if self.audio_data else OUTPUT_RATE, self.marker)
        self._run_with_progress(job, f"Exporting {Path(out).name}…")
        return job

    def _run_with_progress(self, job: Job, label: str) -> None:
        dlg = QProgressDialog(label, "Cancel", 0, 100, self)
        dlg.setWindowTitle("Export")
        dlg.setWindowModality(Qt.WindowModality.WindowModal)
        dlg.setMinimumDuration(300)
        dlg.setAutoClose(True)
        dlg.canceled.connect(job.cancel)
        job.progress.connect(self._on_export_progress)
        job.done.connect(self._on_export_done)
        job.failed.connect(self._on_export_failed)
        job.cancelled.connect(self._on_export_cancelled)
        job.dialog = dlg  # closed when this job ends, whichever export runs then
        self.export_dialog = dlg
        self._start_job("export", job)

    def _on_export_progress(self, ev) -> None:
        dlg = getattr(self.sender(), "dialog", None)
        if dlg is not None:
            dlg.setValue(int(100 * (ev.fraction or 0)))

    def _finish_export(self, msg: str) -> None:
        dlg = getattr(self.sender(), "dialog", None)
        if dlg is not None:
            dlg.reset()
            dlg.deleteLater()
        self.statusBar().showMessage(msg, 8000)

    def _on_export_done(self, result) -> None:
        self._finish_export(f"Exported {result}")
        self.exportFinished.emit(str(result))

    def _on_export_failed(self, msg: str) -> None:
        self._finish_export(f"Export failed: {msg}")
        self.error(msg, "Export failed")

    def _on_export_cancelled(self) -> None:
        self._finish_export("Export cancelled")

    def export_stems(self, folder: Optional[str] = None, only: Optional[int] = None) -> list[str]:
        if self.stems is None:
            why = ("this model has no separator" if self.bundle is not None and self.bundle.separator is None
                   else "the sources are not separated yet")
            self.error(f"No stems to export: {why}")
            return []
        from .export import export_stems_fn, stem_filename

        if folder is None:
            if only is not None:
                p = self._ask_save(f"Export sound {only + 1}", stem_filename(self.path, only), "WAV (*.wav)")
                if not p:
                    return []
                from ..media import write_wav

                write_wav(p, self.stems[only], self.stems_sr)
                self.statusBar().showMessage(f"Exported {p}", 6000)
                return [p]
            folder = QFileDialog.getExistingDirectory(self, "Export stems to folder",
                                                      str(self.qsettings.value("export_dir", "") or ""))
            if not folder:
                return []
        try:
            out = export_stems_fn(self.path, self.stems, self.stems_sr, folder, only=only)
        except AVStudioError as exc:
            self.error(str(exc), "Export failed")
            return []
        self.statusBar().showMessage(f"Exported {len(out)} stem(s) to {folder}", 6000)
        return out

    def export_track(self, name: str) -> Optional[str]:
        if name.startswith("c"):
            got = self.export_stems(only=int(name[1:]))
            return got[0] if got else None
        if name == "res":
            return self.export_residual()
        if name == "pixel":
            return self.export_pixel_sound()
        return None

    def export_residual(self, out: Optional[str] = None) -> Optional[str]:
        if self.residual is None:
            return None
        if out is None:
            out = self._ask_save("Export the residual", Path(self.path).stem + "_residual.wav", "WAV (*.wav)")
            if not out:
                return None
        from ..media import write_wav

        write_wav(out, self.residual, self.stems_sr)
        self.statusBar().showMessage(f"Exported {out}", 6000)
        return out

    def export_pixel_sound(self, out: Optional[str] = None) -> Optional[str]:
        if self.pixel is None or "audio" not in self.pixel:
            return None
        if out is None:
            out = self._ask_save("Export the pixel's sound", Path(self.path).stem + "_pixel.wav", "WAV (*.wav)")
            if not out:
                return None
        from ..media import write_wav

        write_wav(out, self.pixel["audio"], self.pixel["sr"])
        return out

    def export_heatmaps(self, out: Optional[str] = None) -> Optional[str]:
        if self.heat is None or self.heat_done is None or not self.heat_done.any():
            self.error("No heatmaps to export yet")
            return None
        if out is None:
            out = self._ask_save("Export heatmaps", Path(self.path).stem + "_heatmaps.npz", "NumPy (*.npz)")
            if not out:
                return None
        from ..analysis.cache import HeatmapData

        fr = np.flatnonzero(self.heat_done)
        data = HeatmapData(k=int(self.heat.shape[1]), frames=fr, times=np.array([self.time_of(i) for i in fr]),
                           heatmaps=self.heat[fr].astype(np.float32))
        try:
            data.to_npz(out)
        except OSError as exc:
            self.error(f"Cannot write {out}: {exc}", "Export failed")
            return None
        if len(fr) < self.frame_count:
            self.statusBar().showMessage(f"Exported {len(fr)} of {self.frame_count} frames (analysis not complete)", 6000)
        else:
            self.statusBar().showMessage(f"Exported {out}", 6000)
        return out

    # ======================================================================== help
    def show_keys(self) -> None:
        from .keys import KeyboardDialog

        self.keys_dialog = KeyboardDialog(self)
        self.keys_dialog.show()

    def show_about(self) -> None:
        from .. import __version__

        QMessageBox.about(self, "About AV Studio",
                          f"<b>AV Studio {__version__}</b><p>See and hear what a self-supervised "
                          "audiovisual model learned: a heatmap per sound source, each source "
                          "separated, the sound of any pixel.</p>")

    # ======================================================================== jobs / closing
    def _start_job(self, name: str, job: Job) -> None:
        old = self.jobs.get(name)
        if old is not None and old.isRunning():
            old.cancel()
        self.jobs[name] = job
        job.start()

    def wait_idle(self, timeout_ms: int = 30000) -> None:  # test helper
        deadline = time.time() + timeout_ms / 1000
        for j in list(self.jobs.values()):
            j.wait(max(0, int((deadline - time.time()) * 1000)))

    def shutdown(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.timer.stop()
        self._activity_timer.stop()
        try:
            self.output.close()
        except Exception:
            pass
        self._stop_analysis()
        self._stop_frame_workers()
        for j in list(self.jobs.values()):
            j.cancel()
        for j in list(self.jobs.values()):
            j.wait(15000)
        stop_all_jobs()
        self.qsettings.sync()

    def _restore_window_state(self) -> None:
        geo = self.qsettings.value("window/geometry")
        state = self.qsettings.value("window/state")
        try:
            if geo is not None:
                self.restoreGeometry(geo)
            if state is not None:
                self.restoreState(state)
        except TypeError:
            pass
        s = self.overlay_settings
        v = self.qsettings.value
        try:
            s.opacity = float(v("overlay/opacity", s.opacity))
            s.threshold = float(v("overlay/threshold", s.threshold))
            mode = str(v("overlay/mode", s.threshold_mode))
            s.threshold_mode = mode if mode in THRESHOLD_MODES else s.threshold_mode
            s.normalize = str(v("overlay/normalize", s.normalize)).lower() in ("true", "1")
            s.contour = str(v("overlay/outline", s.contour)).lower() in ("true", "1")
        except (TypeError, ValueError):
            pass
        self.panel.sync_from_settings()

    def _save_window_state(self) -> None:
        self.qsettings.setValue("window/geometry", self.saveGeometry())
        self.qsettings.setValue("window/state", self.saveState())
        s = self.overlay_settings
        for key, val in (("opacity", s.opacity), ("threshold", s.threshold), ("mode", s.threshold_mode),
                         ("normalize", s.normalize), ("outline", s.contour)):
            self.qsettings.setValue(f"overlay/{key}", val)

    def closeEvent(self, ev) -> None:
        if not self._closing:
            self._save_window_state()
        self.shutdown()
        super().closeEvent(ev)
