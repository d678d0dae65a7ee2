"""The streaming .npz writer behind `avstudio analyze` (flat memory however long the clip)."""

from __future__ import annotations

import numpy as np
import pytest

from avstudio.analysis.npzstream import NpzStreamWriter


def test_streamed_arrays_read_back_exactly_with_np_load(tmp_path):
    rng = np.random.default_rng(0)
    h = rng.random((101, 2, 7, 7)).astype(np.float32)
    u = rng.random((101, 7, 7)).astype(np.float32)
    with NpzStreamWriter(tmp_path / "out" / "heatmaps.npz") as w:
        for i in range(0, 101, 32):
            w.append("heatmaps", h[i:i + 32])
            w.append("unaligned", u[i:i + 32])
        assert w.shape("heatmaps") == (101, 2, 7, 7) and w.nbytes_streamed() == h.nbytes + u.nbytes
        w.finish({"times": np.arange(101) / 25.0, "frames": np.arange(101)})
    z = np.load(tmp_path / "out" / "heatmaps.npz")  # allow_pickle is False by default
    assert sorted(z.files) == ["frames", "heatmaps", "times", "unaligned"]
    assert np.array_equal(z["heatmaps"], h) and np.array_equal(z["unaligned"], u)
    assert z["times"].dtype == np.float64 and z["frames"].tolist() == list(range(101))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["heatmaps.npz"]


def test_a_failed_analysis_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError):
        with NpzStreamWriter(tmp_path / "heatmaps.npz") as w:
            w.append("heatmaps", np.zeros((4, 2, 3, 3), np.float32))
            raise RuntimeError("decoding failed")
    assert list(tmp_path.iterdir()) == []
    with NpzStreamWriter(tmp_path / "heatmaps.npz") as w:  # left without finish(): nothing either
        w.append("heatmaps", np.zeros((4, 2, 3, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_rows_of_another_shape_are_refused(tmp_path):
    with NpzStreamWriter(tmp_path / "h.npz") as w:
        w.append("heatmaps", np.zeros((2, 2, 3, 3)))
        with pytest.raises(ValueError):
            w.append("heatmaps", np.zeros((2, 3, 3, 3)))


def test_analysis_streamed_matches_the_one_kept_in_memory(tmp_path):
    """analyze_clip(sink=...) then save() writes the same file as the in-memory path (up to the
    float16 the in-memory path keeps while it runs), and keeps no per-frame maps."""
    from avstudio.analysis.localize import analyze_clip
    from avstudio.nets.checkpoint import load_model
    from helpers import make_tiny_model, make_video

    clip = make_video(tmp_path / "c.mp4", 40, size=(64, 48), audio_kind="noise")
    bundle = load_model(make_tiny_model(tmp_path / "m"))
    mem = analyze_clip(bundle, str(clip), k=2)
    mem.save(tmp_path / "a")
    with NpzStreamWriter(tmp_path / "b" / "heatmaps.npz") as sink:
        st = analyze_clip(bundle, str(clip), k=2, sink=sink, batch=16)
        assert st.heatmaps is None and st.aligned is None and st.unaligned is None
        st.save(tmp_path / "b")
    a, b = np.load(tmp_path / "a" / "heatmaps.npz"), np.load(tmp_path / "b" / "heatmaps.npz")
    assert sorted(a.files) == sorted(b.files)
    for n in a.files:
        assert a[n].shape == b[n].shape and a[n].dtype == b[n].dtype, n
        assert np.allclose(a[n], b[n], atol=1e-3), n


@pytest.mark.parametrize("capacity", [1, 40, 101, 500])
def test_per_frame_rows_fill_one_array_in_place(capacity):
    """The analysis keeps its small per-frame outputs in one array sized from the clip's frame
    count (grown by half when a file holds more frames than its header says), never as a list of
    batches plus their concatenation (which held every output twice at the end of a long clip)."""
    from avstudio.analysis.localize import _Rows

    rng = np.random.default_rng(1)
    parts = [rng.random((n, 2, 3)).astype(np.float16) for n in (32, 32, 32, 5)]
    r = _Rows(capacity)
    assert len(r) == 0 and r.array().shape == (0,)
    for p in parts:
        r.append(p)
    out = r.array()
    assert len(r) == 101 and out.dtype == np.float32
    assert np.array_equal(out, np.concatenate(parts).astype(np.float32))
    # a view of the buffer, not a copy; the buffer was allocated once when the capacity fits
    assert out.base is r.buf and (capacity < 101 or len(r.buf) == capacity)
