"""Clips without sound in the app: no heatmap, no count, nothing to separate or click, each
disabled control saying why; the spectrogram on a fixed dB scale. Real widgets, offscreen."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from avstudio.studio.display import SPEC_FLOOR_DB, SPEC_TOP_DB  # noqa: E402
from helpers import GUI_WAIT, make_tiny_model, make_video, open_clip, open_window  # noqa: E402

WAIT = GUI_WAIT


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("gui sound")
    return {
        "none": str(make_video(d / "no_audio.mp4", 20, size=(64, 48), audio=False)),
        "silent": str(make_video(d / "zeros.mp4", 20, size=(64, 48), audio_kind="silence")),
        "silent_mp3": str(make_video(d / "zeros_mp3.mkv", 20, size=(64, 48), audio_kind="silence",
                                     audio_codec="libmp3lame")),
        "sound": str(make_video(d / "sound.mp4", 20, size=(64, 48), audio_kind="counter")),
        "model": str(make_tiny_model(d / "model", counter=True)),
    }


@pytest.fixture
def window(qtbot, media, dialogs):
    w = open_window(qtbot, media["model"], k=2)  # two clusters asked: a clip without sound has none
    yield w, dialogs
    w.shutdown()


def wait_sound_known(qtbot, w):
    qtbot.waitUntil(lambda: w.player.sound is not None and w.player.analysis_state == "done", timeout=WAIT)
    if w.player.has_audio:
        qtbot.waitUntil(lambda: w.player.audio_data is not None, timeout=WAIT)


@pytest.mark.parametrize("name,words", [("none", "has no sound"), ("silent", "is silent"),
                                        ("silent_mp3", "is silent")])
def test_a_clip_without_sound_shows_nothing_that_is_not_there(qtbot, window, media, name, words):
    w, seen = window
    open_clip(qtbot, w, media[name])
    wait_sound_known(qtbot, w)
    assert w.player.k == 0 and w.player.heat is None and w.player.heat_done.all()
    assert set(w.panel.rows) == {"mix"}  # no "Sound 1", nothing to solo or export
    assert w.player.heat_of(0) == (None, f"this clip {words}" + (" (no audio track)" if name == "none" else "")
                                 + ": no heatmap")  # nothing drawn over the frame, and why
    assert w.panel.status.text().startswith(f"No sound cluster: this clip {words}")
    assert f"This clip {words}" in w.panel.note.text()
    assert "counter" not in w.panel.status.text()  # never "this model has no source counter"
    # the controls that need sound are disabled and say why on hover
    assert not w.panel.k_combo.isEnabled() and words in w.panel.k_combo.toolTip()
    assert not w.panel.heat_box.isEnabled() and words in w.panel.heat_box.toolTip()
    for a in ("export_stems", "export_heatmaps"):
        assert not w.action(a).isEnabled() and words in w.action(a).toolTip()
    assert words in w.view.toolTip()
    if name == "none":
        mix = w.panel.rows["mix"]
        assert not mix.solo.isEnabled() and words in mix.solo.toolTip()
    # the timeline says it, and draws silence as silence
    assert words in w.timeline.message.toPlainText()
    if name != "none":
        assert w.timeline.spec_levels == (SPEC_FLOOR_DB, SPEC_TOP_DB)
        img = w.timeline.spec_img.image
        assert img is not None and float(np.max(img)) <= SPEC_FLOOR_DB + 1.0
    # a click on the frame says why nothing plays (and starts nothing)
    w.sound.hear_pixel(0.5, 0.5)
    assert "pixel" not in w.jobs
    assert w.statusBar().currentMessage() == f"Cannot play the sound of a pixel: this clip {words}" + (
        " (no audio track)" if name == "none" else "")
    assert not [s for s in seen if s[0] == "critical"], seen


def test_sound_comes_back_with_a_clip_that_has_some(qtbot, window, media):
    w, _seen = window
    open_clip(qtbot, w, media["silent"])
    wait_sound_known(qtbot, w)
    assert not w.panel.k_combo.isEnabled()
    open_clip(qtbot, w, media["sound"])
    wait_sound_known(qtbot, w)
    assert w.player.sound.sound and w.player.k == 2 and w.player.heat is not None
    assert w.panel.k_combo.isEnabled() and "Not available" not in w.panel.k_combo.toolTip()
    assert w.panel.heat_box.isEnabled()
    assert {"c0", "c1"} <= set(w.panel.rows)
    assert w.action("export_heatmaps").isEnabled()
    assert "not available" not in w.action("export_heatmaps").toolTip()
    assert w.timeline.message.toPlainText() == ""
    assert w.timeline.spec_levels == (SPEC_FLOOR_DB, SPEC_TOP_DB)  # the same scale for every clip
    assert w.view.toolTip() == ""


def test_the_counter_says_zero_for_silence_and_the_panel_shows_the_rate(qtbot, window, media):
    w, _seen = window
    w.analysis.set_k(None)  # Auto: the counter decides
    open_clip(qtbot, w, media["silent"])
    wait_sound_known(qtbot, w)
    assert w.player.k == 0 and "is silent" in w.panel.status.text()
    open_clip(qtbot, w, media["sound"])
    wait_sound_known(qtbot, w)
    text = w.panel.status.text()
    assert "the counter found" in text and "(rate " in text and "confidence" not in text
