"""The desktop app, driven offscreen with pytest-qt (QT_QPA_PLATFORM=offscreen, see conftest).

Every test makes its own media (tests/helpers.py) and uses a tiny randomly initialised model
(:func:`make_tiny_model`), its own analysis cache and settings file, and no sound device.
Actions are triggered with ``QAction.trigger()`` (shortcuts need a window manager).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402
from PySide6.QtWidgets import QFileDialog  # noqa: E402

from helpers import GUI_WAIT, make_random_bytes, make_text, make_tiny_model, make_video, open_clip, open_window  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WAIT = GUI_WAIT


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("gui")
    return {
        "clip": str(make_video(d / "clip.mp4", 50, size=(96, 64), audio_kind="noise")),
        "long": str(make_video(d / "long.mp4", 160, size=(64, 48), audio_kind="sine")),
        "silent": str(make_video(d / "silent.mp4", 20, size=(64, 48), audio=False)),
        "bad": str(make_random_bytes(d / "bad.mp4")),
        "text": str(make_text(d / "notes.mp4")),
        "model": str(make_tiny_model(d / "model")),
        "model_nosep": str(make_tiny_model(d / "model_nosep", separator=False)),
    }


@pytest.fixture
def win(qtbot, assets, dialogs):
    w = open_window(qtbot, assets["model"])
    yield w
    w.shutdown()


def frame_index_of(w) -> int:
    from avstudio.gui.render import qimage_to_rgb
    from helpers import decode_index

    return decode_index(qimage_to_rgb(w.view.frame))


# ---------------------------------------------------------------- opening, analysis, cache

def test_open_shows_frames_with_overlays_and_caches(qtbot, win, assets):
    open_clip(qtbot, win, assets["clip"])
    assert win.player.k == 2 and win.player.heat.shape[:2] == (50, 2) and win.player.heat_done.all()
    assert frame_index_of(win) == 0
    win.viewer.refresh_overlay()
    assert win.view.overlay is not None  # the overlay follows the frame
    assert win.panel.rows.keys() >= {"mix", "c0", "c1"}
    # cached on disk per (clip, model): heatmaps of every frame
    cache = win.analysis.cache
    assert (cache.k_dir(2) / "heatmaps.npz").exists()
    data = cache.load(2)
    assert len(data) == 50 and data.heatmaps.shape == (50, 2, 8, 8)
    # the stems come from the separator, then the cache
    qtbot.waitUntil(lambda: win.player.stems is not None, timeout=WAIT)
    assert win.player.stems.shape[0] == 2
    assert cache.load_stems(2) is not None
    assert "Original mix" in win.panel.rows["mix"].label.text()


def test_reopen_is_served_from_the_cache(qtbot, assets, dialogs):
    w1 = open_window(qtbot, assets["model"])
    open_clip(qtbot, w1, assets["clip"])
    qtbot.waitUntil(lambda: w1.player.stems is not None, timeout=WAIT)
    w1.shutdown()
    w2 = open_window(qtbot, assets["model"])
    open_clip(qtbot, w2, assets["clip"])
    qtbot.waitUntil(lambda: w2.player.stems is not None, timeout=WAIT)
    assert w2.player.heat_done.all()
    assert w2.analysis.scheduler.frames_analysed == 0  # nothing recomputed
    assert w2.jobs["separate"].result["cached"]  # nor separated again
    w2.shutdown()


def test_analysis_starts_at_the_playhead_and_can_be_cancelled(qtbot, assets, dialogs):
    import threading

    w = open_window(qtbot, assets["model"], chunk=16)
    order = []
    gate = threading.Event()

    def first_chunk(d):  # in the analysis thread: it waits after its first chunk until cancelled
        order.append(int(d.frames.min()))
        gate.wait(WAIT / 1000)

    assert w.open_file(assets["long"])
    w.viewer.seek_frame(120)  # the user went there before any heatmap was ready
    w.analysis.scheduler.chunkReady.connect(first_chunk, Qt.ConnectionType.DirectConnection)
    qtbot.waitUntil(lambda: len(order) >= 1, timeout=WAIT)
    assert order[0] in (112, 120)  # the chunk holding the playhead came first
    w.action("cancel_analysis").trigger()
    gate.set()
    qtbot.waitUntil(lambda: w.player.analysis_state == "cancelled", timeout=WAIT)
    done = int(w.player.heat_done.sum())
    assert 0 < done < 160
    assert "cancelled" in w.panel.progress.format()
    # frames without heatmaps show without overlay, and say so
    missing = int(np.flatnonzero(~w.player.heat_done)[0])
    w.viewer.seek_frame(missing)
    qtbot.waitUntil(lambda: w.view.last_painted_index == missing, timeout=WAIT)
    assert w.view.overlay is None and w.view.badge
    # resume: finishes what is missing, keeps what was done
    w.action("resume_analysis").trigger()
    qtbot.waitUntil(lambda: w.player.analysis_state == "done", timeout=WAIT)
    assert w.player.heat_done.all()
    assert w.analysis.scheduler.frames_analysed <= 160 - done + 16
    w.shutdown()


def test_changing_the_number_of_clusters_reanalyses(qtbot, win, assets):
    open_clip(qtbot, win, assets["clip"])
    qtbot.waitUntil(lambda: win.player.stems is not None, timeout=WAIT)
    combo = win.panel.k_combo
    combo.setCurrentIndex(combo.findData(3))
    qtbot.waitUntil(lambda: win.player.analysis_state == "done" and win.player.k == 3, timeout=WAIT)
    assert win.player.heat.shape[1] == 3 and win.player.heat_done.all()
    assert {"c0", "c1", "c2"} <= set(win.panel.rows) and "c3" not in win.panel.rows
    qtbot.waitUntil(lambda: win.player.stems is not None, timeout=WAIT)
    assert win.player.stems.shape[0] == 3
    assert (win.analysis.cache.k_dir(2) / "heatmaps.npz").exists() and (win.analysis.cache.k_dir(3) / "heatmaps.npz").exists()


# ---------------------------------------------------------------- transport

def test_play_pause_seek_step_and_shuttle(qtbot, win, assets):
    open_clip(qtbot, win, assets["clip"], analysed=False)
    win.action("play").trigger()
    assert win.player.playing
    qtbot.waitUntil(lambda: win.viewer.current_frame >= 8, timeout=WAIT)
    # the video follows the (wall) clock of the silent output: it never runs ahead of it (how far
    # it may lag on a busy machine is a speed, measured by `avstudio bench`: playback late_ms)
    shown = win.viewer.current_frame
    assert shown <= win.player.index_at(win.viewer.clock())
    win.action("play").trigger()
    assert not win.player.playing
    stopped = win.player.position
    qtbot.wait(150)
    assert win.player.position == stopped
    win.viewer.seek_frame(30)
    qtbot.waitUntil(lambda: win.view.last_painted_index == 30, timeout=WAIT)
    assert frame_index_of(win) == 30  # exact frame
    assert win.transport.slider.value() == 30
    assert "frame 31 / 50" in win.transport.frame_label.text()
    win.action("step_forward").trigger()
    qtbot.waitUntil(lambda: win.view.last_painted_index == 31, timeout=WAIT)
    assert frame_index_of(win) == 31
    win.action("step_back").trigger()
    win.action("step_back").trigger()
    qtbot.waitUntil(lambda: win.view.last_painted_index == 29, timeout=WAIT)
    win.action("forward_1s").trigger()
    assert win.viewer.wanted_frame == 49  # clamped to the last frame (29 + 25 > 49)
    win.action("go_start").trigger()
    qtbot.waitUntil(lambda: win.view.last_painted_index == 0, timeout=WAIT)
    win.action("go_end").trigger()
    qtbot.waitUntil(lambda: win.view.last_painted_index == 49, timeout=WAIT)
    assert frame_index_of(win) == 49
    win.action("back_1s").trigger()
    assert win.viewer.wanted_frame == 24
    # J/K/L shuttle
    win.action("shuttle_forward").trigger()
    assert win.player.playing and win.player.speed == 1.0
    win.action("shuttle_forward").trigger()
    assert win.player.speed == 2.0
    win.action("pause").trigger()
    assert not win.player.playing
    win.action("shuttle_back").trigger()
    assert win.player.playing and win.player.speed == -1.0
    f0 = win.viewer.current_frame
    qtbot.waitUntil(lambda: win.viewer.current_frame < f0 - 2 or not win.player.playing, timeout=WAIT)
    win.action("pause").trigger()
    assert not win.player.playing and win.player.speed == 1.0
    # speed
    win.action("faster").trigger()
    assert win.player.speed == 1.25
    win.action("normal_speed").trigger()
    assert win.player.speed == 1.0
    # playing to the end stops there
    win.viewer.seek_frame(45)
    win.viewer.play()
    qtbot.waitUntil(lambda: not win.player.playing, timeout=WAIT)
    assert win.viewer.current_frame == 49


def test_timeline_click_seeks_and_shows_the_sound(qtbot, win, assets):
    open_clip(qtbot, win, assets["clip"], analysed=False)
    qtbot.waitUntil(lambda: win.player.audio_data is not None, timeout=WAIT)
    assert win.timeline.spec_img.image is not None
    win.timeline.seekRequested.emit(1.0)
    qtbot.waitUntil(lambda: win.view.last_painted_index == 25, timeout=WAIT)
    assert abs(win.timeline.playheads[0].value() - 1.0) < 1e-6


# ---------------------------------------------------------------- overlays, clusters, mixer

def test_toggle_clusters_opacity_threshold(qtbot, win, assets):
    open_clip(qtbot, win, assets["clip"])
    win.viewer.seek_frame(10)
    qtbot.waitUntil(lambda: win.view.last_painted_index == 10, timeout=WAIT)

    def alpha():
        from avstudio.gui.render import qimage_to_rgb  # noqa: F401

        ov = win.view.overlay.image if win.view.overlay else None
        if ov is None:
            return 0
        b = np.frombuffer(ov.constBits(), np.uint8, count=ov.sizeInBytes()).reshape(ov.height(), -1, 4)
        return int(b[..., 3].astype(np.int64).sum())

    a_both = alpha()
    assert a_both > 0
    win.action("toggle_cluster_1").trigger()
    assert win.overlay_settings.visible[0] is False
    assert not win.panel.rows["c0"].swatch.isChecked()  # the panel follows the key
    a_one = alpha()
    assert 0 < a_one < a_both
    win.action("toggle_cluster_2").trigger()
    assert win.view.overlay is None  # nothing visible
    win.action("toggle_cluster_1").trigger()
    win.action("toggle_cluster_2").trigger()
    win.action("toggle_overlays").trigger()
    assert win.view.overlay is None and not win.overlay_settings.enabled
    win.action("toggle_overlays").trigger()
    assert win.view.overlay is not None
    # opacity and threshold modes
    win.panel.opacity.setValue(20)
    a_low = alpha()
    win.panel.opacity.setValue(90)
    assert alpha() > a_low
    modes = []
    for _ in range(3):
        win.action("cycle_threshold").trigger()
        modes.append(win.overlay_settings.threshold_mode)
    assert set(modes) == {"fixed", "otsu", "meanstd"}
    assert win.panel.mode.currentData() == win.overlay_settings.threshold_mode
    win.overlay_settings.threshold_mode = "fixed"
    win.panel.sync_from_settings()
    win.panel.threshold.setValue(95)
    a_high = alpha()
    win.panel.threshold.setValue(5)
    assert alpha() > a_high


def test_solo_mute_volume_and_play_alone(qtbot, win, assets):
    open_clip(qtbot, win, assets["clip"])
    qtbot.waitUntil(lambda: win.player.stems is not None and win.player.audio_data is not None, timeout=WAIT)
    m = win.mixer
    assert m.audible() == ["mix"]  # stems start muted: the original plays
    win.panel.rows["c1"].solo.setChecked(True)
    assert m.audible() == ["c1"]
    # what the mixer renders is that stem (16 kHz, read at the output rate)
    out = m.render(0.5, 4800)
    t = 0.5 + np.arange(4800) / m.sample_rate
    ref = np.interp(t * win.player.stems_sr, np.arange(win.player.stems.shape[1]), win.player.stems[1])
    assert np.allclose(out, np.clip(ref, -1, 1), atol=1e-5)
    win.panel.rows["c1"].solo.setChecked(False)
    win.panel.rows["c0"].mute.setChecked(False)
    assert set(m.audible()) == {"mix", "c0"}
    win.panel.rows["c0"].volume.setValue(50)
    assert m.tracks["c0"].gain == pytest.approx(0.5)
    win.action("solo_cluster_1").trigger()
    assert m.audible() == ["c0"]
    win.action("unsolo").trigger()
    win.panel.rows["c0"].alone.click()  # play alone
    assert win.player.playing and m.audible() == ["c0"]
    win.viewer.pause()
    assert "sum of what is on" in win.panel.note.text()


def test_without_separator_only_the_mix(qtbot, assets, dialogs):
    w = open_window(qtbot, assets["model_nosep"])
    open_clip(qtbot, w, assets["clip"])
    qtbot.wait(200)
    assert w.player.stems is None
    assert "only the original mix" in w.panel.note.text()
    assert not w.panel.rows["c0"].solo.isEnabled()
    w.sound.hear_pixel(0.5, 0.5)
    assert w.view.marker == (0.5, 0.5)
    assert "no separator" in w.statusBar().currentMessage()
    w.shutdown()


def test_click_to_hear_a_pixel(qtbot, win, assets):
    open_clip(qtbot, win, assets["clip"])
    qtbot.waitUntil(lambda: win.player.audio_data is not None, timeout=WAIT)
    win.viewer.seek_frame(20)
    qtbot.waitUntil(lambda: win.view.last_painted_index == 20, timeout=WAIT)
    r = win.view.frame_rect()
    with qtbot.waitSignal(win.pixelReady, timeout=WAIT):
        qtbot.mouseClick(win.view, Qt.MouseButton.LeftButton,
                         pos=QPointF(r.x() + 0.25 * r.width(), r.y() + 0.5 * r.height()).toPoint())
    x, y = win.view.marker
    assert abs(x - 0.25) < 0.05 and abs(y - 0.5) < 0.05  # the clicked spot is marked
    assert "pixel" in win.mixer.tracks and win.mixer.audible() == ["pixel"]
    assert win.player.playing
    assert win.panel.rows["pixel"].label.text().startswith("Pixel")
    assert win.mixer.tracks["pixel"].sample_rate == 16000
    assert len(win.mixer.tracks["pixel"].data) == pytest.approx(2 * 16000, abs=400)
    win.viewer.pause()
    out = win.export("pixel", str(Path(win.analysis.cache.dir) / "px.wav"))
    assert Path(out).exists()
    win.action("clear_marker").trigger()
    assert win.view.marker is None and "pixel" not in win.mixer.tracks


# ---------------------------------------------------------------- export

def test_exports(qtbot, win, assets, tmp_path, monkeypatch):
    from avstudio.media import VideoReader, probe, read_wav

    open_clip(qtbot, win, assets["clip"])
    qtbot.waitUntil(lambda: win.player.stems is not None and win.player.audio_data is not None, timeout=WAIT)
    out = tmp_path / "burnt.mp4"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), "")))
    with qtbot.waitSignal(win.exportFinished, timeout=WAIT):
        win.action("export_video").trigger()
    info = probe(out)
    assert info.frame_count == 50 and info.has_audio and (info.width, info.height) == (96, 64)
    with VideoReader(out) as a, VideoReader(assets["clip"]) as b:
        diff = np.abs(a.frame(10).astype(int) - b.frame(10).astype(int)).mean()
    assert diff > 2  # the overlay is burnt in
    # stems
    folder = tmp_path / "stems"
    folder.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(folder)))
    win.action("export_stems").trigger()
    files = sorted(folder.glob("*.wav"))
    assert [f.name for f in files] == ["clip_sound1.wav", "clip_sound2.wav"]
    a, sr = read_wav(files[0])
    assert sr == 16000 and len(a) == win.player.stems.shape[1]
    # one stem from its row
    one = tmp_path / "one.wav"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(one), "")))
    win.panel.rows["c1"].export.click()
    assert one.exists()
    # heatmaps: the analysis contract layout
    hm = tmp_path / "hm.npz"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(hm), "")))
    win.action("export_heatmaps").trigger()
    with np.load(hm) as z:
        assert z["heatmaps"].shape == (50, 2, 8, 8) and z["heatmaps"].dtype == np.float32
        assert z["times"].shape == (50,) and z["times"].dtype == np.float64
        assert 0.0 <= z["heatmaps"].min() and z["heatmaps"].max() <= 1.0


def test_export_can_be_cancelled(qtbot, win, assets, tmp_path):
    open_clip(qtbot, win, assets["long"])
    out = tmp_path / "cancelled.mp4"
    job = win.export("video", str(out))
    job.cancel()
    qtbot.waitUntil(lambda: job.isFinished(), timeout=WAIT)
    assert job.state == "cancelled" and not out.exists()


# ---------------------------------------------------------------- errors, devices, files

def test_bad_files_show_a_dialog_and_the_app_keeps_running(qtbot, win, assets, dialogs, tmp_path):
    open_clip(qtbot, win, assets["clip"], analysed=False)
    for bad in (assets["bad"], assets["text"], str(tmp_path / "missing.mp4"), str(tmp_path)):
        dialogs.clear()
        assert win.open_file(bad) is False
        assert len(dialogs) == 1 and dialogs[0][0] == "critical"
        msg = dialogs[0][2]
        assert "\n" not in msg and "Traceback" not in msg and len(msg) < 300
    assert win.player.path == assets["clip"]  # the clip that was open stays open
    win.viewer.seek_frame(5)
    qtbot.waitUntil(lambda: win.view.last_painted_index == 5, timeout=WAIT)
    # an audio-only file is refused with a message too
    dialogs.clear()
    from helpers import make_audio_only

    assert win.open_file(str(make_audio_only(tmp_path / "a.wav"))) is False
    assert "no video" in dialogs[0][2]


def test_no_model_installed_opens_the_video_anyway(qtbot, assets, dialogs, tmp_path, monkeypatch):
    from avstudio.errors import CheckpointError
    from avstudio.nets import checkpoint

    def not_installed():
        raise CheckpointError("no model given and the default model (models/default) is not installed")

    monkeypatch.delenv("AVSTUDIO_MODEL", raising=False)
    monkeypatch.setattr(checkpoint, "default_model_path", not_installed)
    w = open_window(qtbot, None)
    assert w.player.bundle is None and w.player.model_error
    open_clip(qtbot, w, assets["clip"], analysed=False)
    assert "No model installed" in w.status_line.note.text()
    assert w.view.overlay is None
    w.viewer.play()
    qtbot.waitUntil(lambda: w.viewer.current_frame > 3, timeout=WAIT)
    w.shutdown()


def test_no_audio_device_plays_silently_and_says_so(qtbot, assets, dialogs, monkeypatch):
    from avstudio.media import audio_out

    monkeypatch.delenv("AVSTUDIO_NO_AUDIO", raising=False)
    monkeypatch.setattr(audio_out, "list_output_devices", lambda: [])
    w = open_window(qtbot, assets["model"], audio=True)
    assert isinstance(w.output, audio_out.SilentOutput)
    assert "playing silently" in w.status_line.note.text()  # said in the status bar, and it stays
    assert w.status_line.audio.text() == "silent"
    open_clip(qtbot, w, assets["clip"], analysed=False)
    w.viewer.play()
    qtbot.waitUntil(lambda: w.viewer.current_frame >= 5, timeout=WAIT)
    w.viewer.pause()
    w.shutdown()


def test_clip_without_sound(qtbot, win, assets):
    open_clip(qtbot, win, assets["silent"])
    assert "no sound" in win.panel.note.text()
    win.viewer.play()
    qtbot.waitUntil(lambda: not win.player.playing, timeout=WAIT)  # plays to the end on the wall clock
    assert win.viewer.current_frame == 19


def test_signals_queued_by_jobs_die_with_their_window(qtbot, assets, dialogs):
    """What a job's thread emits while its window closes is dropped with the window: every job
    signal goes to a method of the window, never to a lambda holding its widgets (a separation
    still reporting progress once reached a deleted label: "Internal C++ object already
    deleted", in the next test or for a user who closed the window mid-separation)."""
    import threading

    import shiboken6
    from PySide6.QtCore import QCoreApplication, QEvent

    from avstudio.gui.main_window import MainWindow
    from avstudio.progress import ProgressEvent

    w = MainWindow(model_path=assets["model"], audio=False, k=2)
    w.show()
    qtbot.waitUntil(lambda: not w.player.model_loading, timeout=WAIT)
    open_clip(qtbot, w, assets["clip"])
    qtbot.waitUntil(lambda: w.player.stems is not None, timeout=WAIT)
    jobs = list(w.jobs.values())
    assert {j.name for j in jobs} >= {"load-model", "load-audio", "separate"}

    def late():  # what a job's thread does: its signals are queued for the GUI thread
        for j in jobs:
            j.progress.emit(ProgressEvent(j.name, 1, 2))
            j.failed.emit("too late")

    th = threading.Thread(target=late)
    th.start()
    th.join()
    w.shutdown()
    w.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert not shiboken6.isValid(w)
    qtbot.wait(100)  # the queued signals would be delivered now (pytest-qt fails on an exception)
    assert not dialogs


def test_recent_files_and_drag_and_drop(qtbot, win, assets):
    assert win.open_file(assets["clip"])
    assert win.recent_files()[0] == str(Path(assets["clip"]).resolve())
    titles = [a.text() for a in win.recent.menu.actions()]
    assert "clip.mp4" in titles
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(assets["long"])])
    ev = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                    Qt.KeyboardModifier.NoModifier)
    win.dropEvent(ev)
    assert win.player.path == assets["long"]
    assert win.recent_files()[:2] == [str(Path(assets["long"]).resolve()), str(Path(assets["clip"]).resolve())]
    # the recent menu opens the file
    a = [a for a in win.recent.menu.actions() if a.text() == "clip.mp4"][0]
    a.trigger()
    assert win.player.path == str(Path(assets["clip"]).resolve())


def test_keyboard_help_lists_every_shortcut(qtbot, win):
    from avstudio.gui.keys import markdown_table, shortcut_rows

    win.action("keyboard").trigger()
    table = win.keys_dialog.table
    keys = {table.item(r, 2).text() for r in range(table.rowCount())}
    for k in ("Space", "K", "J", "L", "Home", "End", "Shift+Right"):
        assert any(k in s.split(", ") for s in keys), k
    rows = shortcut_rows(win)
    assert len(rows) == table.rowCount() > 30
    # every player action with a shortcut is documented in docs/gui.md
    doc = (ROOT / "docs" / "gui.md").read_text()
    assert markdown_table(win, only=win.player_action_names).strip() in doc
    win.keys_dialog.close()


def test_every_action_triggers_without_a_clip(qtbot, win, dialogs, monkeypatch):
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: ("", "")))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: ("", "")))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: ""))
    skip = {"quit", "fullscreen", "load_model", "about", "open_demo"}
    for _group, acts in win.action_groups():
        for a in acts:
            if a.objectName() not in skip:
                a.trigger()
    assert win.isVisible()


# ---------------------------------------------------------------- Qt-free pieces

def test_mixer_clock_follows_blocks_speed_and_seeks():
    from avstudio.studio.mixer import Mixer

    m = Mixer(1000)
    m.set_track("a", np.arange(10000, dtype=np.float32) / 10000, 1000)
    m.seek(2.0)
    m.sync_output(0)
    assert m.media_time(0) == 2.0  # nothing heard yet: the start position
    m(100)
    assert m.media_time(50) == pytest.approx(2.05)
    m.set_speed(2.0)
    m(100)
    assert m.media_time(150) == pytest.approx(2.1 + 2 * 0.05)
    m.seek(5.0)
    assert m.media_time(199) == 5.0  # old audio still in the device: report the target
    m(100)
    assert m.media_time(250) == pytest.approx(5.0 + 2 * 0.05)
    m.set_speed(-1.0)
    y = m(10)
    assert y[0] > y[-1]  # backwards
    # solo / mute
    m.set_track("b", np.ones(5000, np.float32) * 0.25, 1000)
    assert set(m.audible()) == {"a", "b"}
    m.set_state("b", solo=True)
    assert m.audible() == ["b"]
    assert np.allclose(m.render(1.0, 10), 0.25)
    m.set_state("b", solo=False, mute=True)
    assert m.audible() == ["a"]
    mix = m.mixdown(0.0, 2.0, 1000)
    assert len(mix) == 2000 and mix[1000] == pytest.approx(0.1)


def test_overlay_thresholds_and_compositing():
    from avstudio.studio.overlay import OverlaySettings, compose_overlay, otsu_threshold, upsample

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.2, 0.03, 500), rng.normal(0.8, 0.03, 500)])
    assert 0.3 < otsu_threshold(x) < 0.7
    m = np.zeros((4, 4), np.float32)
    m[1, 1] = 1
    up = upsample(m, 4)
    assert up.shape == (16, 16) and up.max() <= 1 and up[5, 5] > 0.5
    heat = np.zeros((2, 8, 8), np.float32)
    heat[0, 1:3, 1:3] = 1.0
    heat[1, 5:7, 5:7] = 1.0
    s = OverlaySettings(threshold_mode="fixed", threshold=0.5, contour=False)
    ov = compose_overlay(heat, s)
    assert ov.shape == (32, 32, 4)
    a = ov[..., 3]
    assert a[6, 6] > 0 and a[22, 22] > 0 and a[16, 2] == 0
    # cluster 0 is orange (R > B), cluster 1 sky blue (B > R); BGRA byte order
    assert ov[6, 6, 2] > ov[6, 6, 0] and ov[22, 22, 0] > ov[22, 22, 2]
    s.visible = [False, True]
    ov2 = compose_overlay(heat, s)
    assert ov2[6, 6, 3] == 0 and ov2[22, 22, 3] > 0
    s.enabled = False
    assert compose_overlay(heat, s) is None


def test_cache_chunks_merge_consolidate_and_content_hash(tmp_path, assets):
    import shutil

    from avstudio.analysis.cache import AnalysisCache, HeatmapData, clip_hash

    copy = tmp_path / "renamed.mp4"
    shutil.copy(assets["clip"], copy)
    assert clip_hash(copy) == clip_hash(assets["clip"])  # content, not name
    assert clip_hash(copy) != clip_hash(assets["long"])
    c = AnalysisCache(assets["clip"], "m1", root=tmp_path / "c")
    assert c.load(2) is None

    def chunk(a, b):
        n = b - a
        return HeatmapData(k=2, frames=np.arange(a, b), times=np.arange(a, b) / 25.0,
                           heatmaps=np.full((n, 2, 4, 4), a / 100, np.float32),
                           visual_vectors=np.ones((n, 2, 3), np.float32))
    c.save_chunk(chunk(16, 32))
    c.save_chunk(chunk(0, 16))
    d = c.load(2)
    assert list(d.frames) == list(range(32)) and d.heatmaps[20, 0, 0, 0] == pytest.approx(0.16, abs=1e-3)
    c.consolidate(2)
    assert not (c.k_dir(2) / "chunks").exists()
    assert len(AnalysisCache(copy, "m1", root=tmp_path / "c").load(2)) == 32
    assert AnalysisCache(assets["clip"], "m2", root=tmp_path / "c").load(2) is None  # other model
    c.save_stems(2, np.zeros((2, 100), np.float32), 16000)
    st, sr = c.load_stems(2)
    assert st.shape == (2, 100) and sr == 16000
    (c.k_dir(2) / "heatmaps.npz").write_bytes(b"garbage")
    assert c.load(2) is None  # a corrupt entry is ignored (recomputed)


# ---------------------------------------------------------------- processes

def test_main_benchmark_startup_prints_and_exits(assets, tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", AVSTUDIO_NO_AUDIO="1",
               AVSTUDIO_CACHE=str(tmp_path / "c"), AVSTUDIO_SETTINGS=str(tmp_path / "s.ini"))
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), assets["clip"], "--no-model",
                        "--benchmark-startup"], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    line = [x for x in r.stdout.splitlines() if x.startswith("startup to first frame:")]
    assert line and float(line[0].split(":")[1].split()[0]) > 0


def test_gui_bench_runs(assets, qapp):
    from avstudio.gui.bench import run_gui_bench

    res = run_gui_bench(assets["clip"], model=assets["model"], scrubs=8, render_frames=20,
                        play_seconds=0.5, startup=False)
    for key in ("render_fps", "scrub_ms_p50", "scrub_ms_p95", "playback", "overlay_ms_p50"):
        assert res[key] is not None, key
    assert res["heatmaps"] == "model" and res["k"] == 2


def test_variable_frame_rate_slots_get_the_heatmaps_of_the_frame_shown_there():
    """Frame indices are time slots at the average rate: a slot without a frame of its own shows
    the frame before it, and gets that frame's heatmaps."""
    from avstudio.analysis.cache import HeatmapData
    from avstudio.gui.jobs import fill_slots

    hm = np.stack([np.full((2, 4, 4), v, np.float32) for v in (0.1, 0.2, 0.3)])
    d = HeatmapData(k=2, frames=np.array([10, 12, 13]), times=np.array([0.4, 0.5, 0.52]), heatmaps=hm,
                    audio_centers=np.zeros((3, 2, 8), np.float32))
    f = fill_slots(d, 9, 15)
    assert f.frames.tolist() == [9, 10, 11, 12, 13, 14]
    assert [float(x[0, 0, 0]) for x in f.heatmaps] == pytest.approx([0.1, 0.1, 0.1, 0.2, 0.3, 0.3])
    assert f.times.tolist() == [0.4, 0.4, 0.4, 0.5, 0.52, 0.52]
    assert f.audio_centers.shape == (6, 2, 8)
    same = HeatmapData(k=2, frames=np.array([3, 4, 5]), times=np.zeros(3), heatmaps=hm)
    assert fill_slots(same, 3, 6) is same  # a constant-rate chunk is left as it is


def test_cache_keeps_the_separators_conditioning(tmp_path, assets):
    """The attended vectors travel through chunks and consolidation, so the app's stems need
    no second pass over the frames."""
    from avstudio.analysis.cache import AnalysisCache, HeatmapData

    c = AnalysisCache(assets["clip"], "m", root=tmp_path)
    att = np.random.default_rng(0).random((6, 2, 8)).astype(np.float32)
    for a in (0, 3):
        c.save_chunk(HeatmapData(k=2, frames=np.arange(a, a + 3), times=np.arange(a, a + 3) / 25.0,
                                 heatmaps=np.zeros((3, 2, 4, 4), np.float32), attended_vectors=att[a:a + 3]))
    assert np.array_equal(c.load(2).attended_vectors, att)
    c.consolidate(2)
    assert np.array_equal(c.load(2).attended_vectors, att)
