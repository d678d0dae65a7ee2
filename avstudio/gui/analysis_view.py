"""The open clip's analysis, for the main window: the scheduler that computes heatmaps from the
playhead onwards (cached per clip and model), its chunks put in place in the player's state
and shown (overlays, the timeline's activity and coverage, the cluster panel's progress), then
the separation of the sources into stems."""

from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QObject, QTimer

from ..studio import tasks
from ..studio.overlay import cluster_colour
from .jobs import AnalysisScheduler, Job


class AnalysisView(QObject):
    """A child of the main window; ``cache`` and ``scheduler`` belong to the open clip."""

    def __init__(self, win):
        super().__init__(win)
        self.win, self.player, self.viewer = win, win.player, win.viewer
        self.panel, self.timeline, self.mixer = win.panel, win.timeline, win.mixer
        self.overlay_settings = win.overlay_settings
        self.cache = None  # the open clip's AnalysisCache
        self.scheduler: Optional[AnalysisScheduler] = None
        self._activity_dirty = False
        self._activity_timer = QTimer(self)
        self._activity_timer.setInterval(250)
        self._activity_timer.timeout.connect(self._flush_activity)
        self._activity_timer.start()
        self.panel.kChanged.connect(self.set_k)
        self.panel.cancelRequested.connect(self.cancel)
        self.panel.restartRequested.connect(self.resume)

    def activity_changed(self) -> None:
        """Redraw the timeline's activity at its next refresh (settings changed)."""
        self._activity_dirty = True

    def close(self) -> None:
        self.stop()
        self._activity_timer.stop()

    def start(self, k: Optional[int] = None, fresh: bool = False) -> None:
        """Analyse the open clip in the background (cached results first)."""
        from ..analysis.cache import AnalysisCache

        p = self.player
        if p.path is None or p.bundle is None:
            return
        if p.bundle.localizer is None:
            self.panel.status.setText("This model has no localizer: no heatmaps")
            return
        self.stop()
        if k is not None:
            p.k_request = k
        try:
            self.cache = AnalysisCache(p.path, p.bundle.model_id, root=self.win.cache_root)
        except OSError as exc:
            self.win.error(f"Cannot use the analysis cache: {exc}")
            return
        if fresh:
            self.cache.clear()
        sch = AnalysisScheduler(p.bundle, p.path, p.frame_count, p.fps, p.has_audio, self.cache, k=p.k_request,
                                chunk=self.win.chunk, playhead=max(0, self.viewer.wanted_frame))
        sch.soundChecked.connect(self._on_sound_checked)
        sch.kDecided.connect(self._on_k_decided)
        sch.chunkReady.connect(self._on_chunk)
        sch.progress.connect(self._on_analysis_progress)
        sch.finishedAll.connect(self._on_analysis_done)
        sch.failed.connect(self._on_analysis_failed)
        sch.cancelled.connect(self._on_analysis_cancelled)
        self.scheduler = sch
        p.analysis_state = "starting"
        self.panel.set_progress(0, 1, "starting…")
        self.panel.status.setText("Analysing from the playhead onwards")
        sch.start()
        self.viewer.refresh_overlay()

    def stop(self) -> None:
        sch, self.scheduler = self.scheduler, None
        if sch is not None:
            for sig in (sch.soundChecked, sch.kDecided, sch.chunkReady, sch.progress, sch.finishedAll, sch.failed,
                        sch.cancelled):
                try:
                    sig.disconnect()
                except (RuntimeError, TypeError):
                    pass
            sch.stop()
        j = self.win.jobs.pop("separate", None)
        if j is not None:
            j.cancel()
            j.wait(5000)
        self.player.analysis_state = "idle"

    def cancel(self) -> None:
        if self.scheduler is not None and self.scheduler.isRunning():
            self.scheduler.cancel()
            self.panel.status.setText("Cancelling…")
        if self.win.jobs.get("separate") is not None:
            self.win.jobs["separate"].cancel()

    def resume(self) -> None:
        if self.scheduler is None or not self.scheduler.isRunning():
            self.start()

    def forget_results(self) -> None:
        """Drop the heatmaps and stems shown (another k, another model, a fresh analysis)."""
        self.player.forget_results()
        for name in list(self.mixer.tracks):
            if name.startswith("c") or name == "res":
                self.mixer.remove_track(name)
        self.viewer._overlays.clear()
        self.timeline.set_activity(np.zeros(0), np.zeros((0, 0)), [])
        self.timeline.set_coverage(np.zeros(max(1, self.player.frame_count), bool))
        self.viewer.refresh_overlay()

    def set_k(self, k) -> None:
        self.player.k_request = k
        if self.player.path is not None and self.player.bundle is not None:
            self.stop()
            self.forget_results()
            self.start(k)

    def clear_clip_cache(self) -> None:
        if self.cache is not None:
            self.stop()
            self.forget_results()
            self.start(fresh=True)

    def _on_sound_checked(self, sound) -> None:
        if self.sender() is self.scheduler:
            self.player.set_sound(sound)
            self.win.apply_sound()

    def _on_k_decided(self, k: int, how: str) -> None:
        if self.sender() is not self.scheduler:
            return
        if self.player.begin_k(k):
            self.viewer._overlays.clear()
        self.update_clusters()
        self.panel.status.setText(self.player.k_note(k, how))
        if k == 0:  # nothing to localise: every frame is settled, with no overlay
            self.timeline.set_coverage(self.player.heat_done)
            self.viewer.refresh_overlay()
        self.win.update_notes()
        self.win.compare.update_layout()  # A's title says its k

    def _on_chunk(self, data) -> None:
        if self.sender() is not self.scheduler or self.player.k is None:
            return
        fr = self.player.add_chunk(data)
        self.viewer._overlays.drop_frames(fr.tolist())
        self._activity_dirty = True
        if self.viewer.current_frame in set(fr.tolist()):
            self.viewer.refresh_overlay()

    def _flush_activity(self) -> None:
        p = self.player
        if not self._activity_dirty or p.activity is None:
            return
        self._activity_dirty = False
        self.timeline.set_activity(p.activity_times(), p.activity,
                                   [cluster_colour(j) for j in range(p.activity.shape[1])], self.overlay_settings.visible)
        self.timeline.set_coverage(p.heat_done)

    def _on_analysis_progress(self, done: int, total: int, msg: str) -> None:
        if self.sender() is self.scheduler:
            self.panel.set_progress(done, total, f"{done}/{total} frames" + (f" · {msg}" if msg else ""))

    def _on_analysis_done(self) -> None:
        if self.sender() is not self.scheduler:
            return
        self.player.analysis_state = "done"
        self._flush_activity()
        self.panel.set_progress(1, 1, "analysed")
        self.win.status_line.message("Analysis complete (cached for next time)", 4000)
        self.viewer.refresh_overlay()
        self.win.analysisFinished.emit()
        self.start_separation()

    def _on_analysis_failed(self, msg: str) -> None:
        if self.sender() is not self.scheduler:
            return
        self.player.analysis_state = "failed"
        self.panel.set_progress(0, 1, "failed")
        self.panel.status.setText(msg)
        self.viewer.refresh_overlay()
        # a damaged file is found by decoding it: say so once, in a dialog (the frames and heatmaps
        # decoded so far stay); a file already said to be damaged when opened gets the status line
        if self.player.info is not None and self.player.info.problem:
            self.win.status_line.message(f"Analysis stopped at the damage: {msg}", 10000)
        else:
            self.win.error(f"Analysis failed: {msg}", "Analysis failed")

    def _on_analysis_cancelled(self) -> None:
        if self.sender() is not self.scheduler:
            return
        p = self.player
        p.analysis_state = "cancelled"
        self.panel.set_progress(p.frames_done, p.frame_count, f"cancelled at {p.frames_done}/{p.frame_count}")
        self.panel.status.setText("Analysis cancelled; finished frames are kept (Ctrl+R resumes)")
        self.win.status_line.message("Analysis cancelled", 4000)
        self.viewer.refresh_overlay()

    # -- separation ---------------------------------------------------------------------------
    def start_separation(self) -> None:
        p = self.player
        if p.stems is not None or not p.k or self.cache is None:  # k = 0: nothing to separate
            self.win.update_notes()
            return
        if not tasks.separation_available(p.bundle) or not p.has_audio:
            self.win.update_notes()
            return
        self.panel.note.setText("Separating sources…")
        self.win.start_job("separate", Job("separate", tasks.separate_stems, p.bundle, p.path, self.cache, p.k, nice=5),
                       done=self._on_stems, failed=self._on_separation_failed, progress=self._on_separation_progress)

    def _on_separation_progress(self, ev) -> None:
        if self.sender() is self.win.jobs.get("separate"):
            self.panel.note.setText(f"Separating sources… {int(100 * (ev.fraction or 0))}%")

    def _on_separation_failed(self, msg: str) -> None:
        if self.sender() is self.win.jobs.get("separate"):
            self.panel.note.setText(f"Separation failed: {msg}")
            self.win.status_line.message(f"Separation failed: {msg}", 10000)

    def _on_stems(self, res: dict) -> None:
        if self.sender() is not self.win.jobs.get("separate"):
            return
        self._set_stems(res["stems"], res["sr"], res.get("residual"))
        self.win.status_line.message("Sources separated" + (" (cached)" if res.get("cached") else ""), 4000)

    def _set_stems(self, stems: np.ndarray, sr: int, residual: Optional[np.ndarray] = None) -> None:
        p = self.player
        p.set_stems(stems, sr, residual)
        self.update_clusters()
        states = self.panel.track_states()
        for j in range(p.stems.shape[0]):
            self.mixer.set_track(f"c{j}", p.stems[j], p.stems_sr, **states.get(f"c{j}", {"mute": True, "solo": False,
                                                                                         "gain": 1.0}))
        if residual is not None:
            self.mixer.set_track("res", residual, p.stems_sr, **states.get("res", {"mute": True}))
        self.win.update_notes()
        self.win.stemsReady.emit()

    def update_clusters(self) -> None:
        p = self.player
        self.panel.set_clusters(p.n_clusters, stems=p.stems is not None, pixel=p.pixel_label(),
                                residual=p.residual is not None)
