"""The open clip's state without Qt (:class:`avstudio.studio.player.Player`): what the window
asks it, on real clips and a real (tiny, randomly initialised) model."""

from __future__ import annotations

import numpy as np
import pytest

from avstudio.analysis.cache import HeatmapData
from avstudio.errors import AVStudioError
from avstudio.media.audio_out import SilentOutput
from avstudio.studio.player import NO_MODEL_INSTALLED, SHUTTLE, SPEEDS, Player
from helpers import make_audio_only, make_text, make_video


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("player")
    return {"clip": make_video(d / "clip.mp4", 50, size=(64, 48), fps=25),
            "silent": make_video(d / "silent.mp4", 10, size=(64, 48), audio=False),
            "wav": make_audio_only(d / "sound.wav"), "text": make_text(d / "notes.mp4")}


def opened(path, **kw) -> Player:
    p = Player(**kw)
    p.open(path, Player.probe(path))
    return p


def test_open_gives_the_clips_facts_and_frame_times(clips):
    p = opened(clips["clip"])
    assert p.is_open and p.has_audio and p.frame_count == 50 and p.fps == 25.0
    assert p.duration == pytest.approx(2.0, abs=0.05) and p.position == p.video_start
    for i in (0, 1, 24, 49):
        assert p.index_at(p.time_of(i) + 1e-6) == i
    assert p.index_at(-5.0) == 0 and p.index_at(1e6) == 49  # clamped to the clip
    assert p.seek_time(1e6) == pytest.approx(p.end - 0.5 / p.fps) and p.seek_time(-1) == p.video_start
    assert p.frame_index(99) == 49 and p.frame_index(-3) == 0
    p.close()
    assert not p.is_open and p.heat is None and p.frame_count == 0


@pytest.mark.parametrize("name, words", [("wav", "no video stream"), ("text", "")])
def test_files_without_video_are_refused_in_one_line(clips, name, words):
    with pytest.raises(AVStudioError) as e:
        Player.probe(clips[name])
    msg = str(e.value)
    assert "\n" not in msg and words in msg


def test_playback_wraps_at_the_ends_and_stops_there(clips):
    p = opened(clips["clip"])
    p.position = p.end  # at the end: playing forwards starts over
    assert p.start_playing(1.0) == p.video_start and p.playing and p.direction == 1
    assert p.follow(1.0) is None and p.position == 1.0
    stop = p.follow(p.end + 0.3)  # the clock went past the end
    assert stop == pytest.approx(p.end - 0.5 / p.fps)
    assert p.stop_playing(stop) == stop and not p.playing
    p.position = p.video_start  # at the start: playing backwards starts from the end
    assert p.start_playing(-1.0) == pytest.approx(p.end - 1.0 / p.fps) and p.direction == -1
    assert p.follow(-1.0) == p.video_start
    assert p.stop_playing(99.0) == p.end  # stops inside the clip


def test_speed_keys():
    p = Player()
    assert p.nearer_speed(+1) == SPEEDS[SPEEDS.index(1.0) + 1]
    p.set_speed(SPEEDS[-1])
    assert p.nearer_speed(+1) == SPEEDS[-1]  # the fastest stays the fastest
    p.set_speed(-2.0)
    assert p.nearer_speed(-1) == -1.5 and p.base_speed == 2.0 and p.direction == -1
    # J/L: 1x that way, then faster on each press while going that way
    p.set_speed(1.0)
    assert p.shuttle_speed(1) == 1.0  # not playing yet
    p.playing = True
    got = []
    for _ in range(len(SHUTTLE) + 1):
        p.set_speed(p.shuttle_speed(1))
        got.append(p.speed)
    assert got == [2.0, 4.0, 8.0, 8.0, 8.0]
    assert p.shuttle_speed(-1) == -1.0  # the other way: 1x backwards
    assert p.speed_after_stop() == 1.0  # K after 8x: back to 1x
    p.set_speed(2.0)
    assert p.speed_after_stop() is None


def chunk(frames, k=2, h=4, w=4, value=0.5) -> HeatmapData:
    frames = np.asarray(frames, np.int64)
    hm = np.full((len(frames), k, h, w), 0.1, np.float32)
    hm[:, :, 0, 0] = value  # one hot spot per map
    return HeatmapData(k=k, frames=frames, times=frames / 25.0, heatmaps=hm)


def test_chunks_fill_the_heatmaps_and_say_what_is_missing(clips):
    p = opened(clips["clip"])
    assert p.heat_of(3) == (None, "")  # no model, nothing analysed: nothing to say
    assert p.begin_k(2) and p.analysing
    filled = p.add_chunk(chunk([0, 1, 2, 3, 60, -1]))  # frames outside the clip are dropped
    assert filled.tolist() == [0, 1, 2, 3] and p.frames_done == 4
    assert p.begin_k(2) is False and p.frames_done == 4  # the same k again: what is shown stays
    heat, badge = p.heat_of(2)
    assert heat.shape == (2, 4, 4) and badge == ""
    assert p.heat_of(10) == (None, "heatmap pending…")
    p.analysis_state = "cancelled"
    assert p.heat_of(10) == (None, "no heatmap for this frame")
    assert p.activity[2].tolist() == pytest.approx([0.4, 0.4], abs=1e-3)  # peak above median
    assert np.isnan(p.activity[10]).all()
    assert p.heat_values(2, 0.0, 0.0, normalize=False) == pytest.approx([0.5, 0.5], abs=1e-2)
    assert p.heat_values(10, 0.0, 0.0, normalize=False) is None
    data = p.heatmap_export()
    assert data.frames.tolist() == [0, 1, 2, 3] and data.heatmaps.dtype == np.float32
    assert data.times == pytest.approx([p.time_of(i) for i in range(4)])
    p.forget_results()
    assert p.heat is None and p.k is None and p.analysis_state == "cancelled" and p.heatmap_export() is None
    assert p.begin_k(3) and p.activity.shape == (50, 3)


def test_stems_and_the_pixel(clips):
    p = opened(clips["clip"])
    assert p.n_clusters == 0 and p.pixel_label() is None
    p.begin_k(2)
    p.set_stems(np.zeros((2, 160), np.float32), 16000, residual=np.zeros(160, np.float32))
    assert p.n_clusters == 2 and p.stems.dtype == np.float32 and p.stems_sr == 16000
    p.position = p.time_of(7) + 0.01
    assert p.click(0.25, 0.5) == pytest.approx(p.time_of(7)) and p.marker == (0.25, 0.5)
    p.pixel = {"x": 0.25, "y": 0.5, "t": p.time_of(7)}
    assert p.pixel_label() is None  # not separated yet
    p.pixel.update({"audio": np.zeros(10, np.float32), "sr": 16000, "offset": 0.0})
    assert p.pixel_label() == "Pixel (0.25, 0.50)"
    assert p.clear_pixel() and p.marker is None and not p.clear_pixel()


def tiny_bundle(separator: bool):
    from avstudio.nets.checkpoint import ModelBundle
    from avstudio.nets.config import AVConfig
    from avstudio.nets.model import AVModel
    from avstudio.nets.separator import Separator, SeparatorConfig

    cfg = AVConfig(frame_size=32, vis_channels=(8, 8, 8), aud_channels=(8, 8), embed_dim=16)
    sep = Separator(SeparatorConfig(channels=(4, 8), feat_channels=4, head_hidden=4, cond_dim=16, n_bins=64))
    return ModelBundle(av=AVModel(cfg), separator=sep if separator else None, name="tiny",
                       paths={"av": "/models/tiny.safetensors"})


def test_what_the_panels_and_the_status_bar_say(clips):
    p = opened(clips["clip"])
    p.model_loading = True
    assert p.model_status() == "loading model…" and p.sources_note() == "Loading the model…"
    p.model_loading, p.model_error = False, "no model given and the default model (models/default) is not installed"
    assert p.no_model_text() == NO_MODEL_INSTALLED
    out = SilentOutput(16000)
    assert p.status_notes(out) == [out.status, NO_MODEL_INSTALLED]
    assert p.sources_note() == "No model: only the original mix can be heard."
    assert p.pixel_unavailable() == "Cannot play the sound of a pixel: no model is loaded"
    p.bundle, p.model_error = tiny_bundle(separator=False), None
    assert p.model_status() == "model: tiny" and p.model_summary() == ("tiny · localizer (HSA)",
                                                                        "av: /models/tiny.safetensors")
    assert p.sources_note() == "This model has no separator: only the original mix can be heard."
    assert p.pixel_unavailable() == "Cannot play the sound of a pixel: this model has no separator"
    assert p.no_stems_reason() == "this model has no separator"
    p.bundle = tiny_bundle(separator=True)
    assert p.sources_note() == "Sources are separated when the analysis is complete." and p.pixel_unavailable() is None
    p.set_stems(np.zeros((1, 10), np.float32), 16000)
    assert p.sources_note().startswith("Solo (S) or unmute (M)")
    assert p.k_note(1, "chosen") == "1 sound cluster: chosen" and p.k_note(3, "x") == "3 sound clusters: x"
    silent = opened(clips["silent"])
    silent.bundle = p.bundle
    none = "this clip has no sound (no audio track)"
    assert not silent.has_audio and silent.no_sound == none
    assert silent.sources_note() == "This clip has no sound (no audio track): no sound to localise, count or separate."
    assert silent.heat_of(0) == (None, f"{none}: no heatmap")
    assert silent.pixel_unavailable() == f"Cannot play the sound of a pixel: {none}"
    assert silent.no_stems_reason() == none and silent.heatmap_export() is None
    assert silent.begin_k(0) and silent.heat_done.all() and silent.k_note(0, none) == f"No sound cluster: {none}"


def test_a_track_measured_silent_says_so(clips):
    import math

    from avstudio.analysis.sound import SoundCheck

    p = opened(clips["clip"])
    assert p.has_audio and p.sound is None and p.no_sound is None  # not measured yet: nothing said
    p.set_sound(SoundCheck(True, -math.inf, 0.0, 2.0))
    assert p.no_sound == "this clip is silent" and p.heat_of(3) == (None, "this clip is silent: no heatmap")
    assert p.sources_note().startswith("This clip is silent: ")
    p.set_sound(SoundCheck(True, -12.0, 0.5, 0.1))
    assert p.no_sound is None and p.heat_of(3) == (None, "")


def test_an_avin_model_has_one_map_and_the_player_says_so(clips):
    from avstudio.nets.avin import AVINModel, avin_config
    from avstudio.nets.checkpoint import ModelBundle

    p = opened(clips["clip"])
    p.bundle = ModelBundle(avin=AVINModel(avin_config("small")), name="avin", paths={"avin": "/models/avin.safetensors"})
    assert p.model_summary()[0] == "avin · localizer (AVIN: one heatmap per frame)"
    assert p.k_choice() == (False, "AVIN gives one heatmap per frame: it has no sound clusters (k = 1)")
    assert p.k_note(1, "one heatmap per frame") == "AVIN: one heatmap per frame"
    assert p.sources_note() == "This model has no separator: only the original mix can be heard."
