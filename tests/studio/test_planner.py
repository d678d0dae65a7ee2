"""What the app analyses next and how chunks are put in place (avstudio.studio.planner)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from avstudio.analysis.cache import HeatmapData
from avstudio.studio.planner import ChunkPlanner, fill_slots, order_clusters


def test_chunks_come_from_the_playhead_onwards_then_from_the_start():
    plan = ChunkPlanner(100, chunk=32, playhead=70)
    order = []
    while (nxt := plan.next_chunk()) is not None:
        order.append(nxt)
        plan.mark_range(*nxt)
    assert order == [(64, 96), (96, 100), (0, 32), (32, 64)]
    assert plan.n_done == 100


def test_a_chunk_restarts_where_it_stopped():
    plan = ChunkPlanner(64, chunk=32)
    plan.mark(np.arange(0, 10))
    assert plan.next_chunk() == (10, 32)
    plan.mark([-4, 200])  # frames outside the clip are ignored
    assert plan.n_done == 10


@pytest.mark.parametrize("frame, jump, dropped", [(40, True, False), (70, True, False), (5, True, True),
                                                   (5, False, False), (130, True, True)])
def test_a_seek_far_from_the_chunk_in_flight_drops_it(frame, jump, dropped):
    plan = ChunkPlanner(200, chunk=32)
    plan.begin(32, 64)
    assert plan.set_playhead(frame, jump) is dropped
    plan.end()
    assert plan.set_playhead(frame, jump) is False  # nothing in flight


def test_the_planner_is_safe_across_threads():
    plan = ChunkPlanner(5000, chunk=16)
    stop = threading.Event()

    def seek():
        i = 0
        while not stop.is_set():
            plan.set_playhead(i % 5000)
            i += 37

    th = threading.Thread(target=seek)
    th.start()
    try:
        while (nxt := plan.next_chunk()) is not None:
            plan.begin(*nxt)
            plan.mark_range(*nxt)
            plan.end()
    finally:
        stop.set()
        th.join()
    assert plan.n_done == 5000


def _data(frames, k=2, centers=None) -> HeatmapData:
    frames = np.asarray(frames, np.int64)
    hm = np.stack([np.full((k, 2, 2), float(f), np.float32) for f in frames])
    return HeatmapData(k=k, frames=frames, times=frames / 10.0, heatmaps=hm, audio_centers=centers)


def test_slots_without_a_frame_of_their_own_get_the_frame_shown_there():
    got = fill_slots(_data([10, 13, 14]), 10, 16)  # a variable-frame-rate clip: slots 11, 12, 15 have none
    assert got.frames.tolist() == [10, 11, 12, 13, 14, 15]
    assert got.heatmaps[:, 0, 0, 0].tolist() == [10, 10, 10, 13, 14, 14]
    same = _data([0, 1, 2])
    assert fill_slots(same, 0, 3) is same  # a constant-rate chunk is returned as it is


def test_clusters_keep_their_identity_across_chunks():
    ref_centers = np.zeros((3, 2, 4), np.float32)  # [frames, k, D]: cluster 0 on axis 0, 1 on axis 1
    ref_centers[:, 0, 0] = ref_centers[:, 1, 1] = 1.0
    first = _data([0, 1, 2], centers=ref_centers)
    ref, new = order_clusters(first, None)
    assert new and ref.shape == (2, 4)
    swapped = _data([3, 4, 5], centers=ref_centers[:, ::-1].copy())
    swapped.heatmaps[:, 1] += 100.0  # the chunk's second cluster is the reference's first
    ref2, new2 = order_clusters(swapped, ref)
    assert not new2 and ref2 is ref
    assert (swapped.heatmaps[:, 0] >= 100).all() and (swapped.audio_centers[:, 0, 0] == 1).all()
