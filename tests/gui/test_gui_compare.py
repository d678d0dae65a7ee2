"""Two models in the app: model B (AVIN here) beside model A, on the same frame while scrubbing
and playing; A/B flip; an AVIN model as the window's own model (k = 1, and the app says so)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from helpers import GUI_WAIT, make_tiny_avin, make_tiny_model, make_video, open_clip, open_window  # noqa: E402

WAIT = GUI_WAIT


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("compare")
    return {"clip": str(make_video(d / "clip.mp4", 50, size=(96, 64), audio_kind="noise")),
            "hsa": str(make_tiny_model(d / "hsa", separator=False)),
            "avin": str(make_tiny_avin(d))}


def open_both(qtbot, media):
    w = open_window(qtbot, media["hsa"])
    w.open_compare_model(media["avin"])
    qtbot.waitUntil(lambda: w.compare.bundle is not None, timeout=WAIT)
    open_clip(qtbot, w, media["clip"])
    qtbot.waitUntil(lambda: w.compare.track is not None and w.compare.track.state == "done", timeout=WAIT)
    return w


def test_side_by_side_panes_show_the_same_frame_with_their_own_models_maps(qtbot, media, dialogs):
    from avstudio.analysis.localize import analyze_clip
    from avstudio.nets.checkpoint import load_model

    w = open_both(qtbot, media)
    c = w.compare
    assert c.view.isVisible() and c.title_a.isVisible() and c.title_b.isVisible()
    assert c.title_a.text() == "A · hsa · HSA, 2 sound clusters"
    assert c.title_b.text() == "B · avin · AVIN, one heatmap per frame (no clusters)"
    assert c.track.k == 1 and c.track.done.all() and c.track.heat.shape == (50, 1, 8, 8)
    # B's maps are AVIN's own (what `avstudio analyze` gives for that model), never A's
    ref = analyze_clip(load_model(media["avin"]), media["clip"])
    assert np.allclose(c.track.heat.astype(np.float32), ref.heatmaps, atol=2e-3)
    assert w.player.heat.shape[1] == 2  # A keeps its 2 clusters
    # scrubbing: after every seek both panes hold the frame the window shows, each with an overlay
    for i in (7, 31, 2, 49, 0):
        w.viewer.seek_frame(i)
        qtbot.waitUntil(lambda i=i: w.view.last_painted_index == i and c.view.last_painted_index == i,
                        timeout=WAIT)
        assert w.view.frame is c.view.frame  # the same decoded image
        assert w.view.overlay is not None and c.view.overlay is not None
        assert c.view.overlay is c.overlay_for(i)[0]
    # playing: whenever pane A paints frame n, pane B holds frame n too
    seen = []
    w.view.painted.connect(lambda n: seen.append((n, c.view.frame_index)))
    w.viewer.play()
    qtbot.waitUntil(lambda: len(seen) >= 10 or not w.player.playing, timeout=WAIT)
    w.viewer.pause()
    assert len(seen) >= 5 and all(a == b for a, b in seen), seen
    assert not dialogs
    w.shutdown()


def test_flip_one_pane_between_a_and_b(qtbot, media, dialogs):
    w = open_both(qtbot, media)
    c = w.compare
    w.viewer.seek_frame(10)
    qtbot.waitUntil(lambda: w.view.last_painted_index == 10, timeout=WAIT)

    def a_overlay_of(i):
        return w.viewer._overlays.overlay(w.player.heat_of, w.overlay_settings, i)[0]

    a_overlay = a_overlay_of(10)
    w.action("flip_ab").trigger()  # from side by side: one pane, showing B
    assert not c.view.isVisible() and not w.action("compare_side_by_side").isChecked()
    assert c.title_a.text().startswith("B · avin · AVIN")
    assert w.view.overlay is c.overlay_for(10)[0] and w.view.overlay is not a_overlay
    w.action("flip_ab").trigger()
    assert c.title_a.text().startswith("A · hsa · HSA")
    assert w.view.overlay is a_overlay
    w.viewer.seek_frame(20)  # flipped to B, scrubbing follows too
    w.action("flip_ab").trigger()
    qtbot.waitUntil(lambda: w.view.last_painted_index == 20, timeout=WAIT)
    assert w.view.overlay is c.overlay_for(20)[0]
    w.action("compare_side_by_side").trigger()  # back to two panes
    assert c.view.isVisible() and c.view.frame_index == 20 and w.view.overlay is a_overlay_of(20)
    w.action("close_compare").trigger()
    assert not c.view.isVisible() and not c.title_a.isVisible() and not c.active
    w.action("flip_ab").trigger()  # nothing to flip to: says so, changes nothing
    assert "No second model" in w.statusBar().currentMessage()
    w.shutdown()


def test_a_second_model_that_cannot_load_is_one_dialog(qtbot, media, dialogs, tmp_path):
    w = open_window(qtbot, media["hsa"])
    open_clip(qtbot, w, media["clip"])
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(pickle.dumps({"w": [1, 2, 3]}))
    bad.with_suffix(".json").write_text('{"format": "avstudio-model", "components": {"avin": {}}}')
    w.open_compare_model(str(bad))
    qtbot.waitUntil(lambda: not w.compare.loading, timeout=WAIT)
    assert len(dialogs) == 1 and "pickle" in dialogs[0][2] and "second model" in dialogs[0][2].lower()
    assert not w.compare.active and not w.compare.view.isVisible()
    assert w.player.heat_done.all()  # model A's work is untouched
    w.shutdown()


def test_avin_as_the_windows_model_has_one_map_and_says_so(qtbot, media, dialogs):
    w = open_window(qtbot, media["avin"], k=None)
    assert not w.panel.k_combo.isEnabled() and "k = 1" in w.panel.k_combo.toolTip()
    assert "AVIN" in w.panel.model_label.text()
    open_clip(qtbot, w, media["clip"])
    assert w.player.k == 1 and w.player.heat.shape == (50, 1, 8, 8) and w.player.heat_done.all()
    assert "AVIN" in w.panel.status.text() and "one heatmap per frame" in w.panel.status.text()
    assert not dialogs
    w.shutdown()


def test_one_model_gets_the_whole_width_and_a_second_model_half(qtbot, media, dialogs):
    """Without a second model the video takes the window's whole central width (B's hidden
    pane once kept half of it, blank); with B open the two panes share it."""
    w = open_window(qtbot, media["hsa"])
    open_clip(qtbot, w, media["clip"])
    central = w.centralWidget().width()
    qtbot.waitUntil(lambda: w.view.width() >= central - 4, timeout=WAIT)
    w.open_compare_model(media["avin"])
    qtbot.waitUntil(lambda: w.compare.bundle is not None and w.compare.view.isVisible(), timeout=WAIT)
    qtbot.waitUntil(lambda: abs(w.view.width() - w.compare.view.width()) <= 4
                    and w.view.width() < 0.6 * central, timeout=WAIT)
