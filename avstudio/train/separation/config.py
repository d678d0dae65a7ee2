"""The separator's training settings (:class:`SepTrainConfig`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional


@dataclass
class SepTrainConfig:
    stages: list[int] = field(default_factory=lambda: [1, 2])
    epochs: int = 20  # per stage
    steps: int = 60  # optimizer steps per epoch
    batch: int = 8  # mixtures per step
    pool: int = 32  # clips per epoch (rendered fresh each epoch for synth data)
    frames_per_clip: int = 4  # frames per clip whose visual vectors are used
    pixels_per_source: int = 16  # pixel features kept per source and frame
    segment_frames: int = 128  # STFT frames per training segment (128 x 256 hop = 2.03 s)
    lr: float = 1e-3
    weight_decay: float = 0.0
    pixel_prob: float = 0.25  # share of conditionings that use a pixel feature, not a center
    gain_db: float = 5.0  # each clip's gain in a mixture: uniform +-gain_db
    loss: str = "snr"  # "snr" (on the waveforms) or "mask" (Sound-of-Pixels: L1 / BCE on the mask)
    later_stages: str = "same"  # stages k > 1: "same" (two clips of count k) or "mixed" (with solos)
    val_mixtures: int = 12  # held-out mixtures per stage (other seeds) scored after each epoch
    max_minutes: Optional[float] = None
    seed: int = 0
    device: str = "cpu"
    threads: Optional[int] = None
    synth_seed: Optional[int] = None
    synth: dict = field(default_factory=dict)  # SynthConfig overrides for on-the-fly clips
    manifest: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
