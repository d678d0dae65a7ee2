"""A second model beside the window's model, without Qt: what it has said about the open clip
so far and how the two are shown.

The app shows a second model ("B") beside the window's own ("A"): side by side, or one pane
flipped between them. B's heatmaps arrive in chunks from its own background analysis, possibly
with another k (the clustering model's counter) or another map size (AVIN's maps are finer or
coarser). A :class:`HeatTrack` keeps those maps for every frame of the clip, says which frames
have one and what to show where there is none yet, so that a pane never shows another frame's
map or another model's. :class:`Comparison` holds model B, its track and the layout (side by
side, or flipped to A or B), and names each pane (:func:`model_title`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np


def model_kind_name(bundle: Any) -> str:
    kind = getattr(bundle, "kind", "")
    return {"hsa": "HSA", "avin": "AVIN"}.get(kind, "no localizer")


def model_title(bundle: Any, k: Optional[int] = None, label: str = "") -> str:
    """e.g. ``"A · default · HSA, 2 sound clusters"``, ``"B · avin · AVIN, one heatmap per frame"``."""
    parts = [label] if label else []
    parts.append(getattr(bundle, "name", "") or "model")
    kind = getattr(bundle, "kind", "")
    if kind == "avin":
        parts.append("AVIN, one heatmap per frame (no clusters)")
    elif kind == "hsa":
        parts.append("HSA" + (f", {k} sound cluster{'s' if k != 1 else ''}" if k else ""))
    else:
        parts.append("no localizer")
    return " · ".join(parts)


@dataclass
class HeatTrack:
    """Heatmaps ``[N, k, h, w]`` (float16, 0..1) of one model for the N frames of a clip."""

    frame_count: int
    k: Optional[int] = None
    heat: Optional[np.ndarray] = None
    done: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    state: str = "idle"  # idle, starting, running, done, failed, cancelled
    message: str = ""

    def __post_init__(self) -> None:
        self.frame_count = int(self.frame_count)
        if len(self.done) != self.frame_count:
            self.done = np.zeros(self.frame_count, bool)

    def reset(self, k: Optional[int] = None) -> None:
        """Forget every map (a new k, a new model, a fresh analysis)."""
        self.k = k
        self.heat = None
        self.done = np.zeros(self.frame_count, bool)

    def add(self, frames: Sequence[int], heatmaps: np.ndarray) -> list[int]:
        """Store maps ``[n, k, h, w]`` for frame indices ``frames``; returns the frames stored.

        A chunk with another k or map size than what is held replaces it (the analysis was
        restarted with other settings): maps of two settings are never mixed."""
        hm = np.asarray(heatmaps)
        fr = np.asarray(frames, np.int64)
        if hm.ndim != 4 or len(hm) != len(fr):
            raise ValueError(f"heatmaps must be [n, k, h, w] for n frames, got {hm.shape} for {len(fr)}")
        if self.heat is None or self.heat.shape[1:] != hm.shape[1:]:
            self.heat = np.zeros((self.frame_count,) + hm.shape[1:], np.float16)
            self.done = np.zeros(self.frame_count, bool)
            self.k = int(hm.shape[1])
        ok = (fr >= 0) & (fr < self.frame_count)
        self.heat[fr[ok]] = hm[ok].astype(np.float16)
        self.done[fr[ok]] = True
        return fr[ok].tolist()

    def has(self, index: int) -> bool:
        return self.heat is not None and 0 <= index < self.frame_count and bool(self.done[index])

    def heat_of(self, index: int) -> tuple[Optional[np.ndarray], str]:
        """Frame ``index``'s maps ``[k, h, w]`` and the badge shown instead when there are none
        (the signature of :meth:`avstudio.studio.player.Player.heat_of`)."""
        if self.has(index):
            return self.heat[index], ""
        return None, self.badge(index)

    def map_at(self, index: int) -> Optional[np.ndarray]:
        """Frame ``index``'s maps ``[k, h, w]`` as float32, or None if it has none yet."""
        return self.heat[index].astype(np.float32) if self.has(index) else None

    def badge(self, index: int) -> str:
        """What the pane says on a frame without a map (empty when it has one)."""
        if self.has(index):
            return ""
        if self.state in ("starting", "running"):
            return "heatmap pending…"
        if self.state == "failed":
            return "analysis failed" + (f": {self.message}" if self.message else "")
        if self.state == "cancelled":
            return "analysis cancelled"
        if self.state == "done" and self.k == 0:  # a clip without sound, or no source found
            return "no sound cluster: no heatmap"
        return "no heatmap for this frame" if self.state == "done" else ""

    @property
    def frames_done(self) -> int:
        return int(self.done.sum())


class Comparison:
    """Model B and how the window shows it beside model A (the window's own)."""

    def __init__(self):
        self.bundle: Any = None
        self.model_path: Optional[str] = None
        self.loading = False
        self.error: Optional[str] = None
        self.track: Optional[HeatTrack] = None
        self.side_by_side = True
        self.showing_b = False  # one pane (flip mode): it shows B

    @property
    def active(self) -> bool:
        """A second model is loaded or loading: the window compares."""
        return self.bundle is not None or self.loading

    def begin_loading(self, path: str) -> None:
        self.close()
        self.model_path = str(path)
        self.loading = True

    def loaded(self, bundle: Any) -> Optional[str]:
        """Model B is loaded; returns why it cannot be compared (None: it can)."""
        self.loading = False
        if getattr(bundle, "localizer", None) is None:
            self.bundle = self.track = None
            self.error = f"{bundle.name}: this model has no localizer (no heatmaps to compare)"
            return self.error
        self.bundle, self.error = bundle, None
        return None

    def failed(self, msg: str) -> None:
        self.loading, self.bundle, self.error = False, None, msg

    def close(self) -> None:
        self.bundle = self.track = None
        self.loading, self.error, self.showing_b = False, None, False

    def new_track(self, frame_count: int) -> HeatTrack:
        self.track = HeatTrack(frame_count, state="starting")
        return self.track

    @property
    def flipped_to_b(self) -> bool:
        """The one pane (A/B flip mode) shows model B."""
        return self.active and not self.side_by_side and self.showing_b

    @property
    def second_pane(self) -> bool:
        """B has a pane of its own (side by side)."""
        return self.active and self.side_by_side

    def set_side_by_side(self, on: bool) -> None:
        self.side_by_side = bool(on)
        if on:
            self.showing_b = False

    def flip(self) -> bool:
        """A/B flip: one pane, showing the other model than before (from side by side: B).
        Returns False when there is no second model to flip to."""
        if not self.active:
            return False
        if self.side_by_side:
            self.side_by_side, self.showing_b = False, True
        else:
            self.showing_b = not self.showing_b
        return True

    def title(self, which: str, bundle_a: Any = None, k_a: Optional[int] = None, loading_a: bool = False) -> str:
        """The title over pane ``which`` ("A" or "B")."""
        if which == "A":
            if bundle_a is None:
                return "A · " + ("loading model…" if loading_a else "no model")
            return model_title(bundle_a, k_a, "A")
        if self.bundle is None:
            return "B · " + ("loading model…" if self.loading else (self.error or "no model"))
        return model_title(self.bundle, self.track.k if self.track is not None else None, "B")

    def titles(self, bundle_a: Any = None, k_a: Optional[int] = None, loading_a: bool = False) -> tuple[str, str]:
        """(the first pane's title, the second pane's) as shown now; empty when not comparing."""
        if not self.active:
            return "", ""
        if self.side_by_side:
            return self.title("A", bundle_a, k_a, loading_a), self.title("B")
        which = "B" if self.showing_b else "A"
        return f"{self.title(which, bundle_a, k_a, loading_a)}   (\\ flips A/B)", ""


__all__ = ["Comparison", "HeatTrack", "model_kind_name", "model_title"]
