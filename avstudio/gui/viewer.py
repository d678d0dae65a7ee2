"""What the user sees and how time moves, for the main window: the frames on screen with their
overlays (decoded ahead by the frame server, proxies at once while scrubbing), playback on the
audio clock, seeking, stepping, speed and shuttle, and the overlay settings (what every view
draws). The open clip's facts and the playhead live in the window's Qt-free
:class:`~avstudio.studio.player.Player`."""

from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer

from ..studio.overlay import THRESHOLD_MODES
from . import style
from .frames import FrameCache, FrameServer, ProxyBuilder, ProxyStore, proxy_size
from .render import OverlayCache


class Viewer(QObject):
    """A child of the main window (its widgets: ``view``, ``transport``, ``timeline``)."""

    def __init__(self, win, frame_cache_mb: int = 512):
        super().__init__(win)
        self.win, self.player = win, win.player
        self.view, self.transport, self.timeline, self.panel = win.view, win.transport, win.timeline, win.panel
        self.mixer, self.output, self.overlay_settings = win.mixer, win.output, win.overlay_settings
        self.current_frame = self.wanted_frame = -1  # the frame shown, the frame asked for
        self.frame_cache = FrameCache(frame_cache_mb * 1024 * 1024)
        self.frame_server: Optional[FrameServer] = None
        self.proxy_builder: Optional[ProxyBuilder] = None
        self.display_size: Optional[tuple[int, int]] = None
        self.proxies = ProxyStore()
        self.use_proxies = True
        self._overlays = OverlayCache()  # (frame, settings version) -> Overlay or False
        self._overlay_size: Optional[tuple[int, int]] = None  # frame rect on screen (px)
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(15)
        self.timer.timeout.connect(self._tick)
        self._resize_timer = QTimer(self)
        self._resize_timer.setSingleShot(True)
        self._resize_timer.setInterval(150)
        self._resize_timer.timeout.connect(self._apply_display_size)
        self.view.displaySizeChanged.connect(self._on_display_size)
        self.transport.slider.scrubbed.connect(self.seek_frame)
        self.transport.speedChosen.connect(self.set_speed)
        self.timeline.seekRequested.connect(self._on_timeline_seek)
        self.panel.overlayChanged.connect(self._on_overlay_changed)

    # ======================================================================== the clip's frames
    def open_clip(self) -> None:
        """Show the player's (new) clip: its frame server, its first frame."""
        p = self.player
        self.current_frame = -1
        self.view.set_source_size(p.info.width, p.info.height)
        self.transport.set_range(p.frame_count)
        self.display_size = self.view.display_size()
        self.frame_server = FrameServer(p.path, p.frame_count, self.display_size, self.frame_cache,
                                        after_decode=self._warm_overlay)
        self.frame_server.frameReady.connect(self._on_frame_ready)
        self.frame_server.failed.connect(self.win.show_message)
        self.frame_server.start()
        self.show_frame(0)
        self._sync_ui(p.position)  # this clip's time, duration and frame count at once
        self.start_proxies()

    def start_proxies(self) -> None:
        p = self.player
        if (not self.use_proxies or p.path is None or self.proxy_builder is not None
                or not self.win.background_started):
            return
        self.proxy_builder = ProxyBuilder(p.path, p.frame_count, proxy_size(p.info.width, p.info.height), self.proxies)
        self.proxy_builder.start()

    def stop_workers(self) -> None:
        """Stop the clip's frame server and proxy builder threads (closing a clip, quitting)."""
        for w in (self.frame_server, self.proxy_builder):
            if w is not None:
                w.stop()
        self.frame_server = self.proxy_builder = None

    def close_clip(self) -> None:
        self.pause()
        self.stop_workers()
        self.proxies.clear()
        self.frame_cache.clear()
        self._overlays.clear()
        self.view.clear()
        self.transport.clear()

    def show_frame(self, index: int) -> None:
        if self.frame_server is None:
            return
        index = self.player.frame_index(index)
        self.wanted_frame = index
        img = self.frame_cache.get(index)
        if img is not None:
            self._display(index, img)
            self.frame_server.set_playhead(index, self.player.direction)
            return
        self.frame_server.request(index, self.player.direction)
        if index != self.current_frame or self.view.frame_is_proxy:
            proxy = self.proxies.get(index)
            if proxy is not None:  # at once, at proxy resolution; the exact frame follows
                self._display(index, proxy, proxy=True)

    def _on_frame_ready(self, index: int, img, generation: int) -> None:
        if index == self.wanted_frame:
            self._display(index, img)

    def _overlay_of(self, index: int):
        """The first pane's overlay and badge: model A's, or model B's when flipped to it."""
        if self.win.compare.flipped_to_b:
            return self.win.compare.overlay_for(index)
        return self._overlays.overlay(self.player.heat_of, self.overlay_settings, index)

    def _display(self, index: int, img, proxy: bool = False) -> None:
        self.current_frame = index
        ov, badge = self._overlay_of(index)
        self.view.set_frame(img, index, ov, badge, proxy=proxy)
        self.win.compare.display(index, img, proxy)  # model B's pane: the same frame, in the same call

    def redisplay(self) -> None:
        """Paint the frame shown again (which model a pane shows, or the panes, changed)."""
        if self.current_frame >= 0 and self.view.frame is not None:
            self._display(self.current_frame, self.view.frame, self.view.frame_is_proxy)

    def _warm_overlay(self, index: int) -> None:
        """Compose frame ``index``'s overlays ahead of time (called from the frame server)."""
        self._overlays.warm(self.player.heat_of, self.overlay_settings, index, self._overlay_size)
        self.win.compare.warm(index, self._overlay_size)

    def refresh_overlay(self) -> None:
        if self.current_frame >= 0:
            self.view.set_overlay(*self._overlay_of(self.current_frame))
            self.win.compare.refresh()

    def _on_display_size(self, w: int, h: int) -> None:
        r = self.view.frame_rect()
        self._overlay_size = (round(r.width()), round(r.height()))
        if self.frame_server is not None:
            self._resize_timer.start()

    def _apply_display_size(self) -> None:
        size = self.view.display_size()
        if self.frame_server is not None and size != self.display_size:
            self.display_size = size
            self.frame_server.set_size(size)
            self.show_frame(max(0, self.wanted_frame))

    # ======================================================================== transport
    def clock(self) -> float:
        """Media time being heard now (the audio clock; wall time on a silent output)."""
        out = self.output
        return self.mixer.media_time(out.position_samples - out.latency * out.sample_rate)

    def toggle_play(self) -> None:
        self.pause() if self.player.playing else self.play()

    def play(self, speed: Optional[float] = None) -> None:
        p = self.player
        if p.path is None:
            return
        self.mixer.seek(p.start_playing(speed))
        self.mixer.set_speed(p.speed)
        self.mixer.sync_output(self.output.position_samples)
        self.mixer.playing = True
        if self.frame_server is not None:
            self.frame_server.playing = True
        self.output.start()
        self.timer.start()
        self._update_play_action()
        self.transport.set_speed(p.speed)

    def pause(self) -> None:
        if not self.player.playing:
            return
        t = self.clock()
        self.output.stop()
        self.timer.stop()
        self.mixer.playing = False
        if self.frame_server is not None:
            self.frame_server.playing = False
        pos = self.player.stop_playing(t)
        self.mixer.seek(pos)
        self._update_play_action()
        self._sync_ui(pos)
        self.show_frame(self.player.index_at(pos))
        self.win.playbackStopped.emit(t)

    def _update_play_action(self) -> None:
        a = self.win.action("play")
        a.setIcon(style.icon("pause" if self.player.playing else "play"))
        a.setToolTip(("Pause" if self.player.playing else "Play") + " (Space)")

    def _tick(self) -> None:
        if not self.player.playing:
            return
        if self.player.follow(self.clock()) is not None:
            self.pause()
            return
        idx = self.player.index_at(self.player.position)
        if idx != self.wanted_frame:
            self.show_frame(idx)
            self._sync_ui(self.player.position)
            if self.win.analysis.scheduler is not None:
                self.win.analysis.scheduler.set_playhead(idx, jump=False)
            self.win.compare.set_playhead(idx, jump=False)

    def _sync_ui(self, t: float) -> None:
        p = self.player
        self.transport.set_position(t - p.video_start, p.duration, p.index_at(t), p.frame_count)
        self.timeline.set_playhead(t - p.video_start, p.playing)

    def seek(self, t: float) -> None:
        """Go to media time ``t`` (seconds from the clip's start); playback goes on from there."""
        p = self.player
        if p.path is None:
            return
        t = p.position = p.seek_time(t)
        if p.playing:
            self.mixer.seek(t)
        self.show_frame(p.index_at(t))
        self._sync_ui(t)
        if self.win.analysis.scheduler is not None:
            self.win.analysis.scheduler.set_playhead(p.index_at(t))
        self.win.compare.set_playhead(p.index_at(t))

    def seek_frame(self, index: int) -> None:
        self.seek(self.player.time_of(self.player.frame_index(index)) + 1e-6)

    def _on_timeline_seek(self, t: float) -> None:
        self.seek(t + self.player.video_start)

    def step(self, n: int) -> None:
        if self.player.path is None:
            return
        self.pause()
        self.seek_frame((self.wanted_frame if self.wanted_frame >= 0 else self.player.index_at(self.player.position)) + n)

    def skip(self, seconds: float) -> None:
        self.seek(self.player.position + seconds)

    def go_start(self) -> None:
        self.seek(self.player.video_start)

    def go_end(self) -> None:
        if self.player.path is not None:
            self.pause()
            self.seek_frame(self.player.frame_count - 1)

    def set_speed(self, s: float) -> None:
        self.mixer.set_speed(self.player.set_speed(s))
        self.transport.set_speed(self.player.speed)
        self.win.status_line.message(f"Speed {self.player.speed:g}×", 2000)

    def change_speed(self, d: int) -> None:
        self.set_speed(self.player.nearer_speed(d))

    def shuttle(self, direction: int) -> None:
        """L / J: play forwards / backwards, faster on each press."""
        going = self.player.playing and self.player.speed * direction > 0
        s = self.player.shuttle_speed(direction)
        if not going and direction < 0:
            self.pause()
        self.set_speed(s)
        if not going:
            self.play()

    def shuttle_stop(self) -> None:
        self.pause()
        s = self.player.speed_after_stop()
        if s is not None:
            self.set_speed(s)

    # ======================================================================== overlay settings
    def _on_overlay_changed(self) -> None:
        a = self.win.action("toggle_overlays")
        a.blockSignals(True)
        a.setChecked(self.overlay_settings.enabled)
        a.blockSignals(False)
        self._overlays.clear()
        self.win.compare.settings_changed()
        self.refresh_overlay()
        self.win.analysis.activity_changed()

    def _settings_changed(self) -> None:
        self.overlay_settings.version += 1
        self.panel.sync_from_settings()
        self._on_overlay_changed()

    def toggle_overlays(self, on: bool) -> None:
        self.overlay_settings.enabled = bool(on)
        self._settings_changed()

    def toggle_cluster(self, j: int) -> None:
        self.overlay_settings.toggle_cluster(j)
        self._settings_changed()

    def cycle_threshold(self) -> None:
        mode = self.overlay_settings.next_threshold_mode()
        self._settings_changed()
        self.win.status_line.message(f"Threshold: {THRESHOLD_MODES[mode]}", 2000)

    def change_opacity(self, d: float) -> None:
        self.overlay_settings.opacity = float(np.clip(self.overlay_settings.opacity + d, 0.0, 1.0))
        self._settings_changed()

    def zoom_timeline(self, factor: float) -> None:
        self.timeline.zoom(factor, self.player.position)

    def timeline_fit(self) -> None:
        self.timeline.zoom_fit()

    def toggle_fullscreen(self) -> None:
        self.win.showNormal() if self.win.isFullScreen() else self.win.showFullScreen()
