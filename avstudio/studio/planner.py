"""What the app analyses next, and how a chunk's results are put in place (Qt-free).

* :class:`ChunkPlanner` — chunk by chunk, from the playhead onwards, then from the start; a
  seek re-prioritises (the chunk in flight is dropped when it is far from the new playhead).
  Thread-safe: the GUI thread moves the playhead while the analysis thread asks for work.
* :func:`fill_slots` — every frame slot of a chunk gets the heatmaps of the frame shown there
  (a variable-frame-rate clip has slots without a frame of their own).
* :func:`order_clusters` — cluster identity across chunks: each chunk's clusters are put in the
  order of the clip's reference audio centers, so a colour means the same sound everywhere.
* :func:`decide_k` — how many sound clusters: none without sound; chosen, cached, or the
  model's counter.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:  # (torch and scipy are imported when the analysis runs, not at start-up)
    from ..analysis.cache import AnalysisCache, HeatmapData
    from ..analysis.sound import SoundCheck
    from ..nets.checkpoint import ModelBundle


class ChunkPlanner:
    """The frames of a clip still to analyse, in the order the user needs them."""

    def __init__(self, frame_count: int, chunk: int = 64, playhead: int = 0):
        self.frame_count = int(frame_count)
        self.chunk = int(chunk)
        self.done = np.zeros(self.frame_count, bool)
        self._playhead = int(playhead)
        self._current: Optional[tuple[int, int]] = None
        self._lock = threading.Lock()

    def set_playhead(self, frame: int, jump: bool = True) -> bool:
        """Analyse from ``frame`` on. Returns True when the chunk in flight should be dropped:
        after a jump (a seek) far from it; while playing (``jump=False``) it is finished first."""
        with self._lock:
            self._playhead = int(frame)
            cur = self._current
        if cur is None or not jump:
            return False
        a, b = cur
        return not (a <= frame < b + self.chunk)

    def chunks(self) -> list[tuple[int, int]]:
        n = self.frame_count
        return [(a, min(n, a + self.chunk)) for a in range(0, n, self.chunk)]

    def next_chunk(self) -> Optional[tuple[int, int]]:
        """The next frames to analyse, ``(start, stop)``: the first chunk from the playhead's
        onwards (then from the clip's start) with frames missing, from its first missing frame
        (a cancelled chunk restarts where it stopped). None: everything is done."""
        with self._lock:
            ph = max(0, min(self._playhead, self.frame_count - 1))
        chunks = self.chunks()
        first = ph // self.chunk
        for a, b in chunks[first:] + chunks[:first]:
            missing = np.flatnonzero(~self.done[a:b])
            if len(missing):
                return a + int(missing[0]), b
        return None

    def begin(self, a: int, b: int) -> None:
        with self._lock:
            self._current = (a, b)

    def end(self) -> None:
        with self._lock:
            self._current = None

    def mark(self, frames) -> None:
        """These frames are analysed (indices outside the clip are ignored)."""
        fr = np.asarray(frames, np.int64)
        self.done[fr[(fr >= 0) & (fr < self.frame_count)]] = True

    def mark_range(self, a: int, b: int) -> None:
        """Frames ``a..b-1`` are settled (those the decoder could not produce are not retried)."""
        self.done[max(0, a):min(self.frame_count, b)] = True

    @property
    def n_done(self) -> int:
        return int(self.done.sum())


def fill_slots(data: HeatmapData, start: int, stop: int) -> HeatmapData:
    """Give every frame slot in ``[start, stop)`` the heatmaps of the frame shown there.

    Frame indices are time slots at the stream's average rate (``VideoReader``): in a
    variable-frame-rate clip some slots have no frame of their own and show the frame before
    them (the reader's ``frame(i)`` does so). Those slots get that frame's heatmaps (a slot
    before the chunk's first decoded frame gets the first one); a constant-rate clip is
    returned as it is."""
    fr = np.asarray(data.frames, np.int64)
    if len(fr) == 0 or stop <= start:
        return data
    slots = np.arange(start, stop, dtype=np.int64)
    if len(fr) == len(slots) and np.array_equal(fr, slots):
        return data
    src = np.clip(np.searchsorted(fr, slots, side="right") - 1, 0, len(fr) - 1)
    # keep decoded frames outside the range too (there should be none)
    extra = np.flatnonzero((fr < start) | (fr >= stop))
    order = np.concatenate([src, extra])
    frames = np.concatenate([slots, fr[extra]])
    srt = np.argsort(frames, kind="stable")
    return data.select(order[srt], frames[srt])


def order_clusters(data: HeatmapData, ref: Optional[np.ndarray]) -> tuple[Optional[np.ndarray], bool]:
    """Permute ``data``'s clusters in place to match the reference audio centers ``ref`` [k, D].

    Returns ``(reference, new)``: with no reference yet, this chunk's mean centers become it
    (``new`` True: the caller keeps it with the clip's cache)."""
    if data.audio_centers is None or data.k <= 1:
        if ref is None and data.audio_centers is not None:
            return _unit(data.audio_centers.mean(0)), True
        return ref, False
    mean = _unit(np.asarray(data.audio_centers, np.float64).mean(0))  # [k, D]
    if ref is None:
        return mean.astype(np.float32), True
    from scipy.optimize import linear_sum_assignment

    sim = ref @ mean.T  # [k_ref, k_chunk]
    _, perm = linear_sum_assignment(-sim)
    if not np.array_equal(perm, np.arange(data.k)):
        for name in ("heatmaps", "aligned", "visual_vectors", "audio_centers"):
            a = getattr(data, name)
            if a is not None:
                setattr(data, name, a[:, perm])
    return ref, False


def decide_k(k_request: Optional[int], cache: AnalysisCache, bundle: ModelBundle, path: str,
             sound: SoundCheck) -> tuple[int, str]:
    """How many sound clusters to analyse with, and why (said in the panel). A clip without
    sound (``sound``: :func:`avstudio.analysis.sound.check_sound`) has none, whatever is asked
    (an AVIN model too: there is no sound to make its map of)."""
    if not sound.sound:
        return 0, sound.note()
    if getattr(bundle, "kind", "") == "avin":
        return 1, "one heatmap per frame (AVIN has no sound clusters: k = 1)"
    if k_request is not None:
        return int(k_request), "chosen in the panel"
    got = cache.auto_k()
    if got is not None and "confidence" not in got:  # made before counts could be 0: redone
        rate = got.get("rate")
        return int(got["k"]), f"the counter found {got['k']} " + (
            f"(rate {rate:.2f}, cached)" if rate is not None else "(cached)")
    if bundle.counter is not None:
        from ..analysis.localize import estimate_count

        est = estimate_count(bundle, path, sound=sound)
        k = int(min(6, est.count))
        cache.save_auto_k(k, est.rate)
        return k, f"the counter found {est.text()}"
    return 1, "this model has no source counter (choose how many in the panel)"


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)
