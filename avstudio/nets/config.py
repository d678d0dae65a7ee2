"""Architecture configuration shared by the localizer, the counter and the separator.

A config is a plain dataclass that round-trips through JSON (it is written into every
model card), so a checkpoint can be rebuilt without unpickling anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

SAMPLE_RATE = 16000


def check_config(cls, d: Any) -> None:
    """Refuse a config whose values do not have the types of ``cls``'s fields (a model card is
    untrusted input): raises ValueError naming the field, what it holds and what it needs."""
    if not isinstance(d, dict):
        raise ValueError(f"the config must be a JSON object, not {type(d).__name__}")
    for f in fields(cls):
        if f.name not in d:
            continue
        v, want = d[f.name], f.default
        ok = True
        if isinstance(want, bool):
            ok = isinstance(v, bool)
        elif isinstance(want, int):
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif isinstance(want, float):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        elif isinstance(want, str):
            ok = isinstance(v, str)
        elif isinstance(want, tuple):
            ok = isinstance(v, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
        if not ok:
            need = ("a list of integers" if isinstance(want, tuple) else
                    {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[type(want)])
            raise ValueError(f"{f.name} is {v!r}, it must be {need}")


@dataclass
class AVConfig:
    # input
    sample_rate: int = SAMPLE_RATE
    frame_size: int = 112  # frames are resized to frame_size x frame_size
    audio_seconds: float = 1.0  # audio window centred on the frame
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64
    # visual encoder: stride-4 conv net with replicate padding (docs/method.md, "the shortcut")
    vis_channels: tuple[int, ...] = (32, 64, 64, 64, 64)
    # "plain": the stack of 3x3 convs above (stride 4); "res": a residual trunk down to stride 8
    # (a wider receptive field, for photographs) whose last stage is brought back to stride 4
    # and joined with the stride-4 features (vis_channels = widths at strides 2, 4, 8, 8)
    vis_arch: str = "plain"
    # frames per visual sample: 1 (a still frame) or an odd number of frames `stack_step_s`
    # apart, centred on the analysed moment; the encoder then sees the centre frame and the
    # grey-level differences of consecutive frames of the stack (motion, pulses), which lets
    # audio-visual synchrony, not only appearance, say which object sounds
    stack: int = 1
    stack_step_s: float = 0.06
    # analysis: maps per second of video (0: one per frame); a clip whose frame rate is higher
    # gets its maps every fps // map_rate frames, interpolated between (avstudio bench: speed)
    map_rate: float = 0.0
    # audio encoder
    aud_channels: tuple[int, ...] = (32, 64, 64, 64)
    embed_dim: int = 64
    # the audio encoder sees where in its window each spectrogram column is (a time channel)
    audio_time_channel: bool = False
    # soft k-means
    kmeans_iters: int = 4
    kmeans_beta: float = 30.0  # softmax(-beta * squared distance) on unit vectors
    visual_extra_clusters: int = 1  # visual clusters = k + this (background)
    # contrastive objective
    temperature: float = 0.07
    # each audio window's own frame's background as one more negative (the bottom half of the
    # frame's positions by similarity to the sound, softly masked): pushes the sound away from
    # everything but its object, as "hard" background negatives do in LVS and AVIN
    bg_negatives: bool = False
    # heatmap calibration: exp((cos - max cos) / heat_temperature), 1 at the best position;
    # picked on the validation split (seed 2), never on the test split
    heat_temperature: float = 0.3
    alignment: str = "source"  # "source" (clusters + matching) or "scene" (pooled, ablation only)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AVConfig:
        check_config(cls, d)
        known = {f.name for f in fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        return cls(**kw)

    @property
    def audio_samples(self) -> int:
        return int(round(self.audio_seconds * self.sample_rate))

    def stack_offsets_s(self) -> list[float]:
        """Times (s) of the stacked frames relative to the analysed moment (``[0.0]`` for 1)."""
        n = max(1, int(self.stack))
        return [(i - (n - 1) / 2) * float(self.stack_step_s) for i in range(n)]

    def stack_indices(self, centre: int, fps: float, n_frames: int) -> list[int]:
        """Frame indices of the stack around frame ``centre`` of a clip of ``n_frames`` frames
        at ``fps`` (clamped to the clip)."""
        hi = max(0, int(n_frames) - 1)
        return [min(max(int(round(centre + o * fps)), 0), hi) for o in self.stack_offsets_s()]


@dataclass
class CounterConfig:
    max_count: int = 8
    hidden: int = 64
    aud_channels: tuple[int, ...] = (16, 32, 64)
    cluster_feats: int = 0  # > 0: add soft k-means statistics for k = 1..this (new models use 5)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["aud_channels"] = list(self.aud_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CounterConfig:
        check_config(cls, d)
        known = {f.name for f in fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        return cls(**kw)


ARCHS = {
    "default": {},
    # a tiny network for tests and quick experiments (same code, fewer channels)
    "small": {"vis_channels": (8, 16, 16), "aud_channels": (8, 16, 16), "embed_dim": 16},
    # photographs: 144 px frames, a residual trunk (maps 36 x 36), 7 stacked frames, a time
    # channel for the audio encoder (docs/results.md, the photo world)
    "photo": {"frame_size": 144, "vis_arch": "res", "vis_channels": (32, 48, 96, 128), "stack": 7,
              "stack_step_s": 0.06, "aud_channels": (32, 64, 96, 96), "audio_time_channel": True,
              "heat_temperature": 0.5, "map_rate": 12.5},
    "photo-small": {"frame_size": 64, "vis_arch": "res", "vis_channels": (8, 8, 16, 16), "stack": 3,
                    "stack_step_s": 0.08, "aud_channels": (8, 16, 16), "audio_time_channel": True,
                    "embed_dim": 16},
}


def default_config(arch: str = "default", **overrides: Any) -> AVConfig:
    return AVConfig(**{**ARCHS[arch], **overrides})


__all__ = ["check_config", "AVConfig", "CounterConfig", "SAMPLE_RATE", "default_config", "field"]
