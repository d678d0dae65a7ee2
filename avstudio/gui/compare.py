"""A second model beside the first, for the main window: its own background analysis, its own
pane, the same frame.

The window's model is "A"; :class:`ComparePane` loads model "B" (either kind: the clustering
model or AVIN), analyses the open clip with it in the background (its own cache entry and
scheduler, from the playhead onwards, like A's), and shows its heatmaps

* **side by side**: a second video pane right of the first, painted with the same decoded frame
  in the same call as the first (:meth:`Viewer._display <avstudio.gui.viewer.Viewer._display>`
  calls :meth:`display`), so the two panes never show different moments while playing,
  scrubbing or stepping; or
* **A/B flip**: one pane; a key (``\\``) flips it between model A's and model B's heatmaps.

Each pane names its model above it. The state (model B, its heatmaps, the layout) is the
Qt-free :class:`~avstudio.studio.compare.Comparison`.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QLabel, QSizePolicy

from ..studio import tasks
from ..studio.compare import Comparison
from .jobs import AnalysisScheduler, Job
from .render import OverlayCache
from .video_view import VideoView


def pane_title_label(object_name: str) -> QLabel:
    lab = QLabel("")
    lab.setObjectName(object_name)
    lab.setAlignment(Qt.AlignmentFlag.AlignCenter)
    lab.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
    lab.setStyleSheet("QLabel { padding: 3px 8px; font-weight: 600; background: #1d2129; color: #e6e6e6; }")
    lab.setVisible(False)
    return lab


class ComparePane(QObject):
    """Model B of the window. ``modelReady`` fires when B is loaded or failed to load;
    ``analysisFinished`` when B's analysis of the open clip is complete."""

    modelReady = Signal()
    analysisFinished = Signal()

    def __init__(self, win):
        super().__init__(win)
        self.win = win
        self.state = Comparison()
        self.cache = None
        self.scheduler: AnalysisScheduler | None = None
        self._overlays = OverlayCache()
        self.view = VideoView()
        self.view.setObjectName("videoViewB")
        self.view.placeholder = "Model B"
        self.view.setVisible(False)
        self.title_a = pane_title_label("paneTitleA")
        self.title_b = pane_title_label("paneTitleB")
        self.pane_b = None  # B's pane (title + view), set by the window that lays them out

    # -- state, as the window and the tests see it ------------------------------------------
    @property
    def bundle(self):
        return self.state.bundle

    @property
    def track(self):
        return self.state.track

    @property
    def loading(self) -> bool:
        return self.state.loading

    @property
    def error(self):
        return self.state.error

    @property
    def active(self) -> bool:
        return self.state.active

    # -- model B ------------------------------------------------------------------------------
    def open_model(self, path: str) -> None:
        self.stop()
        self.state.begin_loading(path)
        self._overlays.clear()
        self.win.start_job("model-b", Job("load-model-b", tasks.load_model, self.state.model_path),
                           done=self._on_loaded, failed=self._on_failed)
        self.update_layout()

    def _on_loaded(self, bundle) -> None:
        if not self.state.loading:
            return  # closed meanwhile
        why = self.state.loaded(bundle)
        if why is not None:
            self._on_failed(why)
            return
        self.win.status_line.message(f"Model B: {bundle.name} loaded", 4000)
        self.start()
        self.update_layout()
        self.modelReady.emit()

    def _on_failed(self, msg: str) -> None:
        self.state.failed(msg)
        self.update_layout()
        self.win.error(f"Cannot open the second model: {msg}", "Second model")
        self.modelReady.emit()

    def close_model(self) -> None:
        """Analysis › Close the second model."""
        self.stop()
        self.state.close()
        self._overlays.clear()
        self.view.clear()
        self.update_layout()
        self.win.viewer.redisplay()

    # -- its analysis of the open clip ----------------------------------------------------------
    def start(self) -> None:
        """Analyse the window's open clip with model B (cached results first)."""
        from ..analysis.cache import AnalysisCache

        self.stop()
        p = self.win.player
        if self.state.bundle is None or p.path is None:
            return
        try:
            self.cache = AnalysisCache(p.path, self.state.bundle.model_id, root=self.win.cache_root)
        except OSError as exc:
            self.win.error(f"Cannot use the analysis cache for model B: {exc}")
            return
        self.state.new_track(p.frame_count)
        self._overlays.clear()
        sch = AnalysisScheduler(self.state.bundle, p.path, p.frame_count, p.fps, p.has_audio, self.cache, k=None,
                                chunk=self.win.chunk, playhead=max(0, self.win.viewer.wanted_frame))
        sch.kDecided.connect(self._on_k)
        sch.chunkReady.connect(self._on_chunk)
        sch.finishedAll.connect(self._on_done)
        sch.failed.connect(self._on_analysis_failed)
        sch.cancelled.connect(self._on_cancelled)
        self.scheduler = sch
        sch.start()
        self.refresh()

    def stop(self) -> None:
        sch, self.scheduler = self.scheduler, None
        if sch is not None:
            for sig in (sch.kDecided, sch.chunkReady, sch.finishedAll, sch.failed, sch.cancelled):
                try:
                    sig.disconnect()
                except (RuntimeError, TypeError):
                    pass
            sch.stop()

    def clip_opened(self) -> None:
        p = self.win.player
        self.view.set_source_size(p.info.width, p.info.height)
        self.update_layout()
        self.start()

    def clip_closed(self) -> None:
        self.stop()
        self.state.track = None
        self.cache = None
        self._overlays.clear()
        self.view.clear()

    def set_playhead(self, index: int, jump: bool = True) -> None:
        if self.scheduler is not None:
            self.scheduler.set_playhead(index, jump=jump)

    def _on_k(self, k: int, how: str) -> None:
        t = self.state.track
        if self.sender() is not self.scheduler or t is None:
            return
        t.state = "running"
        if t.k != k:
            t.reset(k)
            self._overlays.clear()
        self.update_layout()

    def _on_chunk(self, data) -> None:
        t = self.state.track
        if self.sender() is not self.scheduler or t is None:
            return
        frames = t.add(data.frames, data.heatmaps)
        self._overlays.drop_frames(frames)
        if self.win.viewer.current_frame in set(frames):
            self.win.viewer.refresh_overlay()

    def _end(self, state: str, msg: str = "") -> None:
        t = self.state.track
        if self.sender() is not self.scheduler or t is None:
            return
        t.state, t.message = state, msg
        self.win.viewer.refresh_overlay()

    def _on_done(self) -> None:
        self._end("done")
        if self.state.track is not None and self.state.track.state == "done":
            self.analysisFinished.emit()

    def _on_analysis_failed(self, msg: str) -> None:
        self._end("failed", msg)
        self.win.status_line.message(f"Model B: analysis failed: {msg}", 8000)

    def _on_cancelled(self) -> None:
        self._end("cancelled")

    # -- painting (called by the window's viewer) -----------------------------------------------
    def heat_of(self, index: int):
        t = self.state.track
        if t is None:
            return None, ("loading model B…" if self.state.loading else "")
        return t.heat_of(index)

    def overlay_for(self, index: int):
        """B's overlay and badge for frame ``index``."""
        return self._overlays.overlay(self.heat_of, self.win.overlay_settings, index)

    def warm(self, index: int, size) -> None:
        """Compose B's overlay of frame ``index`` ahead of time (from the frame server's thread)."""
        if self.state.track is not None:
            self._overlays.warm(self.state.track.heat_of, self.win.overlay_settings, index, size)

    def settings_changed(self) -> None:
        self._overlays.clear()

    @property
    def flipped_to_b(self) -> bool:
        return self.state.flipped_to_b

    def display(self, index: int, img, proxy: bool = False) -> None:
        """Paint B's pane with the frame the first pane is painted with (side by side)."""
        if self.state.second_pane:
            ov, badge = self.overlay_for(index)
            self.view.set_frame(img, index, ov, badge, proxy=proxy)

    def refresh(self) -> None:
        cur = self.win.viewer.current_frame
        if self.state.second_pane and cur >= 0:
            self.view.set_overlay(*self.overlay_for(cur))

    # -- layout ---------------------------------------------------------------------------------
    def set_side_by_side(self, on: bool) -> None:
        """Analysis › Models side by side (checkable)."""
        self.state.set_side_by_side(on)
        self.update_layout()
        self.win.viewer.redisplay()

    def flip(self) -> None:
        """Analysis › Flip A/B."""
        if not self.state.flip():
            self.win.status_line.message("No second model to flip to (Analysis › Open a second model beside…)",
                                         4000)
            return
        self.update_layout()
        self.win.viewer.redisplay()

    def update_layout(self) -> None:
        st, p = self.state, self.win.player
        self.view.setVisible(st.second_pane)
        if self.pane_b is not None:
            self.pane_b.setVisible(st.second_pane)
        a, b = st.titles(p.bundle, p.k, p.model_loading)
        self.title_a.setText(a)
        self.title_b.setText(b)
        self.title_a.setVisible(st.active)
        self.title_b.setVisible(st.second_pane)
        act = self.win.actions_by_name.get("compare_side_by_side")
        if act is not None and act.isChecked() != st.side_by_side:
            act.blockSignals(True)
            act.setChecked(st.side_by_side)
            act.blockSignals(False)


__all__ = ["ComparePane"]
