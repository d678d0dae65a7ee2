"""The Qt-free record of one model's heatmaps over a clip (the app's second pane uses it)."""

import numpy as np
import pytest

from avstudio.studio.compare import HeatTrack, model_title


def test_heat_track_keeps_each_frames_maps_and_never_mixes_settings():
    t = HeatTrack(10, state="running")
    assert t.map_at(3) is None and t.badge(3) == "heatmap pending…"
    maps = np.random.default_rng(0).random((3, 1, 4, 4)).astype(np.float32)
    assert t.add([2, 3, 12], maps) == [2, 3]  # a frame past the clip's end is dropped
    assert t.k == 1 and t.frames_done == 2 and t.badge(3) == ""
    assert np.allclose(t.map_at(3), maps[1], atol=1e-3) and t.map_at(4) is None
    # another k (the analysis restarted with other settings): the old maps are gone
    t.add([5], np.ones((1, 2, 4, 4), np.float32))
    assert t.k == 2 and t.frames_done == 1 and t.map_at(3) is None and t.map_at(5).shape == (2, 4, 4)
    t.state = "done"
    assert t.badge(3) == "no heatmap for this frame"
    t.state, t.message = "failed", "decode error"
    assert t.badge(3) == "analysis failed: decode error"
    with pytest.raises(ValueError):
        t.add([1, 2], np.ones((1, 1, 4, 4)))


def test_model_titles_name_the_kind():
    class B:
        def __init__(self, name, kind):
            self.name, self.kind = name, kind

    assert model_title(B("default", "hsa"), 2, "A") == "A · default · HSA, 2 sound clusters"
    assert model_title(B("avin", "avin"), 1, "B") == "B · avin · AVIN, one heatmap per frame (no clusters)"
    assert model_title(B("x", "hsa"), 1) == "x · HSA, 1 sound cluster"


def test_comparison_layout_flip_and_titles_without_qt():
    from avstudio.studio.compare import Comparison

    class B:
        def __init__(self, name, kind, localizer=True):
            self.name, self.kind = name, kind
            self.localizer = object() if localizer else None

    a = B("default", "hsa")
    c = Comparison()
    assert not c.active and c.titles(a, 2) == ("", "") and not c.flip()  # nothing to flip to
    c.begin_loading("models/avin")
    assert c.active and c.titles(a, 2) == ("A · default · HSA, 2 sound clusters", "B · loading model…")
    assert c.loaded(B("avin", "avin")) is None and c.second_pane and not c.flipped_to_b
    c.new_track(10).add([0], np.zeros((1, 1, 4, 4), np.float32))
    assert c.titles(a, 2)[1] == "B · avin · AVIN, one heatmap per frame (no clusters)"
    # \ : one pane showing B, then A, then B; Ctrl+\ : side by side again
    assert c.flip() and c.flipped_to_b and not c.second_pane
    assert c.titles(a, 2) == ("B · avin · AVIN, one heatmap per frame (no clusters)   (\\ flips A/B)", "")
    assert c.flip() and not c.flipped_to_b and c.titles(a, 2)[0].startswith("A · default")
    assert c.flip() and c.flipped_to_b
    c.set_side_by_side(True)
    assert c.second_pane and not c.flipped_to_b
    # a model with no localizer cannot be compared; closing forgets B
    assert "no localizer" in c.loaded(B("sep", "", localizer=False)) and c.bundle is None
    c.close()
    assert not c.active and c.track is None


def test_an_avin_model_is_analysed_with_one_map_whatever_k_was_asked():
    import math

    from avstudio.analysis.sound import NO_AUDIO, SoundCheck
    from avstudio.studio.planner import decide_k

    class B:
        kind = "avin"

    sound = SoundCheck(True, -12.0, 0.5, 0.1)
    assert decide_k(3, None, B(), "clip.mp4", sound) == (1, "one heatmap per frame (AVIN has no sound clusters: k = 1)")
    # ... and none on a clip without sound (no map of a sound that is not there)
    assert decide_k(3, None, B(), "clip.mp4", NO_AUDIO)[0] == 0
    assert decide_k(None, None, B(), "clip.mp4", SoundCheck(True, -math.inf, 0.0, 2.0))[0] == 0
