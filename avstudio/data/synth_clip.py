"""A synthetic clip in memory (:class:`SynthClip`, what :func:`avstudio.data.synth.render_clip`
and the photo world's renderer return) and the ``WIDTHxHEIGHT`` size parser they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np

from ..errors import DataError


def parse_size(text: Union[str, int, Sequence[int]]) -> tuple[int, int]:
    """``"320x240"`` / ``320`` / ``(320, 240)`` -> (width, height)."""
    if isinstance(text, (int, np.integer)):
        return int(text), int(text)
    if isinstance(text, str):
        parts = text.lower().replace("*", "x").split("x")
        try:
            vals = [int(p) for p in parts]
        except ValueError:
            raise DataError(f"size '{text}' is not WIDTHxHEIGHT (e.g. 224x224)") from None
        if len(vals) == 1:
            vals = vals * 2
        if len(vals) != 2:
            raise DataError(f"size '{text}' is not WIDTHxHEIGHT (e.g. 224x224)")
        return vals[0], vals[1]
    w, h = text
    return int(w), int(h)


@dataclass
class SynthClip:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    audio: np.ndarray  # float32 [N]: the mixture = stems.sum(0) + noise
    stems: np.ndarray  # float32 [S, N]: clean sound of each sounding object (stem order)
    noise: np.ndarray  # float32 [N]: off-screen noise (zeros if none)
    masks: np.ndarray  # bool [T, O, H, W]: visible pixels of each object
    boxes: np.ndarray  # float32 [T, O, 4]: x0, y0, x1, y1 (x1, y1 exclusive) of each silhouette
    sounding: np.ndarray  # bool [O]
    objects: list[dict]  # per object: id, class_id, class_name, sounding, stem_index, onsets...
    meta: dict  # the JSON sidecar
    background: Optional[np.ndarray] = None  # uint8 [H, W, 3]: the frame without objects
    loudness: Optional[np.ndarray] = None  # float32 [S, T]: each stem's loudness at each frame, 0..1

    @property
    def fps(self) -> float:
        return float(self.meta["fps"])

    @property
    def sample_rate(self) -> int:
        return int(self.meta["sample_rate"])

    @property
    def count(self) -> int:
        return int(self.meta["count"])

    @property
    def times(self) -> np.ndarray:
        """Time (s) each frame shows: ``k / fps``."""
        return np.arange(len(self.frames)) / self.fps
