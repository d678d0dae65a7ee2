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
