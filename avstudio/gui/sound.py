"""What the user hears, for the main window: the clip's sound (loaded in the background, drawn
in the timeline), the mixer's tracks (the mix, each separated source, the residual, a pixel's
sound) with their solo / mute / gain, and "the sound of a pixel" (a click on the frame)."""

from __future__ import annotations

from PySide6.QtCore import QObject

from ..studio import tasks
from .jobs import Job


class Sound(QObject):
    """A child of the main window."""

    def __init__(self, win):
        super().__init__(win)
        self.win, self.player = win, win.player
        self.panel, self.view, self.timeline, self.mixer = win.panel, win.view, win.timeline, win.mixer
        self.view.pixelClicked.connect(self.hear_pixel)
        self.view.hovered.connect(self._on_hover)
        self.panel.trackChanged.connect(self._on_track_changed)
        self.panel.playAlone.connect(self.play_alone)

    # ======================================================================== the clip's sound
    def open_clip(self) -> None:
        """Load the player's (new) clip's sound in the background (for playback and the timeline)."""
        from ..studio.display import load_clip_sound

        self.mixer.clear()
        if self.player.has_audio:
            self.win.start_job("audio", Job("load-audio", load_clip_sound, self.player.path, self.win.OUTPUT_RATE),
                               done=self._on_audio_loaded, failed=self._on_audio_failed)
        else:
            self.timeline.set_audio(None)

    def _on_audio_failed(self, msg: str) -> None:
        self.win.status_line.message(f"Cannot load the sound: {msg}", 8000)

    def _on_audio_loaded(self, data) -> None:
        if self.sender() is not self.win.jobs.get("audio"):
            return
        self.player.audio_data = data
        self.timeline.set_audio(data)
        if data and data.get("sound") is not None:
            self.player.set_sound(data["sound"])
            self.win.apply_sound()
        if data and "mix" in data:
            st = self.panel.track_states().get("mix", {"mute": False, "solo": False, "gain": 1.0})
            self.mixer.set_track("mix", data["mix"], data["sr"], mute=st["mute"], solo=st["solo"], gain=st["gain"])

    def _on_track_changed(self, name: str, state: dict) -> None:
        self.mixer.set_state(name, **state)

    def toggle_solo(self, name: str) -> None:
        row = self.panel.rows.get(name)
        if row is not None and row.solo.isEnabled():
            self.panel.set_track(name, solo=not row.solo.isChecked())

    def clear_solos(self) -> None:
        for name, row in self.panel.rows.items():
            if row.solo.isChecked():
                self.panel.set_track(name, solo=False)

    def play_alone(self, name: str) -> None:
        """Hear one track alone from the playhead (the other solos are cleared)."""
        for n, row in self.panel.rows.items():
            if n != name and row.solo.isChecked():
                self.panel.set_track(n, solo=False)
        self.panel.set_track(name, solo=True, mute=False)
        if not self.player.playing:
            self.win.viewer.play()

    def toggle_master_mute(self, on: bool) -> None:
        self.mixer.master_mute = bool(on)
        self.win.update_notes()

    # ======================================================================== pixels
    def hear_pixel(self, x: float, y: float) -> None:
        """Click on the frame: mark the spot and play the sound of that pixel."""
        p = self.player
        if p.path is None:
            return
        t = p.click(x, y)
        self.view.set_marker(p.marker)
        vals = p.heat_values(p.index_at(t), x, y, self.win.overlay_settings.normalize)
        if vals is not None:
            self.panel.probe_label.setText("Clicked: " + "  ".join(f"S{j + 1} {v:.2f}" for j, v in enumerate(vals)))
        why = p.pixel_unavailable()
        if why:
            self.win.status_line.message(why, 6000)
            return
        old = self.win.jobs.pop("pixel", None)
        if old is not None:
            old.cancel()
        p.pixel = {"x": x, "y": y, "t": t}
        self.win.status_line.message(f"Separating the sound at ({x:.2f}, {y:.2f})…", 4000)
        self.win.start_job("pixel", Job("pixel", tasks.pixel_sound, p.bundle, p.path, t, x, y),
                           done=self._on_pixel_sound, failed=self._on_pixel_failed)

    def _on_pixel_failed(self, msg: str) -> None:
        self.win.status_line.message(f"Pixel sound failed: {msg}", 8000)

    def _on_pixel_sound(self, res: dict) -> None:
        p = self.player
        if self.sender() is not self.win.jobs.get("pixel") or p.pixel is None:
            return
        p.pixel.update(res)
        self.mixer.set_track("pixel", res["audio"], res["sr"], offset=res["offset"])
        self.win.analysis.update_clusters()
        self.mixer.set_state("pixel", **self.panel.track_states().get("pixel", {}))
        self.play_alone("pixel")
        self.win.status_line.message(f"Playing the sound of the pixel at ({p.pixel['x']:.2f}, {p.pixel['y']:.2f}) "
                                     "from the playhead (Esc stops)", 6000)
        self.win.pixelReady.emit()

    def clear_marker(self) -> None:
        self.view.set_marker(None)
        if self.player.clear_pixel():
            self.mixer.remove_track("pixel")
            self.win.analysis.update_clusters()
            self.clear_solos()

    def _on_hover(self, x: float, y: float) -> None:
        if x < 0:
            self.panel.probe_label.setText("")
            return
        vals = self.player.heat_values(self.win.viewer.current_frame, x, y, self.win.overlay_settings.normalize)
        if vals is not None:
            self.panel.probe_label.setText(f"({x:.2f}, {y:.2f})  " + "  ".join(
                f"S{j + 1} {v:.2f}" for j, v in enumerate(vals)))
