"""The open clip and what the app knows about it, without Qt: :class:`Player`.

The window is wiring between widgets and this object: it opens a clip here, moves the playhead
here, hands the analysis' chunks, the stems and the pixel's sound to it, and asks it what to show
(the heatmap of a frame or why there is none, the notes under the panels, the speed after a key).
The tests drive it without a window.

Times are media times in seconds (a clip's first frame is at ``video_start``); frame indices
are time slots at the stream's average rate (see :class:`avstudio.media.VideoReader`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..analysis.cache import HeatmapData
from ..analysis.sound import NO_AUDIO, no_sound_reason
from ..errors import AVStudioError
from ..media import probe
from .tasks import separation_available

SPEEDS = [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 4.0]  # the speed menu; [ and ] step through it
SHUTTLE = [1.0, 2.0, 4.0, 8.0]
NO_MODEL_INSTALLED = "No model installed (models/default): showing the video without heatmaps"


class Player:
    """One clip at a time: its facts, the playhead and speed, the model, the analysis' results
    (heatmaps, cluster activity, stems), the clicked pixel."""

    def __init__(self, k: Optional[int] = None):
        self.k_request = k  # the number of sound clusters asked for (None: the counter decides)
        # the model (app-wide; the analysis of the open clip uses it)
        self.bundle: Any = None
        self.model_error: Optional[str] = None
        self.model_loading = False
        self._reset_clip()

    def _reset_clip(self) -> None:
        self.path: Optional[str] = None
        self.info = None
        self.frame_count = 0
        self.fps = 25.0
        self.video_start = 0.0
        self.duration = 0.0
        self.position = 0.0
        self.playing = False
        self.speed = 1.0
        self.base_speed = 1.0
        self.direction = 1
        self.audio_data: Optional[dict] = None
        # what the clip's audio holds (avstudio.analysis.sound.SoundCheck; None: not known yet)
        self.sound = None
        self.marker: Optional[tuple[float, float]] = None
        self._reset_results()

    def _reset_results(self) -> None:
        self.k: Optional[int] = None
        self.heat: Optional[np.ndarray] = None  # [N, k, h, w] float16
        self.heat_done: Optional[np.ndarray] = None  # [N] bool
        self.activity: Optional[np.ndarray] = None  # [N, k] float32, NaN = pending
        self.analysis_state = "idle"  # idle | starting | running | done | failed | cancelled
        self.stems: Optional[np.ndarray] = None
        self.stems_sr = 16000
        self.residual: Optional[np.ndarray] = None
        self.pixel: Optional[dict] = None  # {"x", "y", "t", then "audio", "sr", "offset"}

    # ======================================================================== the clip
    @staticmethod
    def probe(path) -> Any:
        """The clip's facts; a file the app cannot show raises AVStudioError (one line)."""
        path = os.fspath(path)
        info = probe(path, check=False)
        if not info.has_video:
            raise AVStudioError(f"{path!r} has no video stream (AV Studio needs a video)")
        if info.frame_count <= 0:
            raise AVStudioError(f"{path!r}: no video frames")
        return info

    def open(self, path, info) -> None:
        """Make ``path`` (probed: ``info``) the open clip; everything of the previous one goes."""
        self._reset_clip()
        self.path = os.fspath(path)
        self.info = info
        self.frame_count = int(info.frame_count)
        self.fps = float(info.fps or 25.0)
        self.video_start = float(info.video_start)
        self.duration = max(float(info.duration), self.frame_count / self.fps)
        self.position = self.video_start
        self.sound = None if info.has_audio else NO_AUDIO  # a track: measured when it loads

    def close(self) -> None:
        self._reset_clip()

    @property
    def is_open(self) -> bool:
        return self.path is not None

    def set_sound(self, sound) -> None:
        """What the clip's track holds, once measured (the sound loader or the analysis)."""
        self.sound = sound

    @property
    def no_sound(self) -> Optional[str]:
        """Why nothing that needs sound works on this clip ("this clip is silent", "this clip
        has no sound (no audio track)"); None when it has sound or that is not known yet."""
        return no_sound_reason(self.sound) if self.path is not None else None

    @property
    def has_audio(self) -> bool:
        return self.info is not None and bool(self.info.has_audio)

    @property
    def end(self) -> float:
        return self.video_start + self.duration

    @property
    def stem(self) -> str:
        return Path(self.path).stem if self.path else "clip"

    def index_at(self, t: float) -> int:
        i = int(np.floor((t - self.video_start) * self.fps + 1e-6))
        return max(0, min(self.frame_count - 1, i))

    def time_of(self, index: int) -> float:
        return self.video_start + index / self.fps

    def frame_index(self, index: int) -> int:
        return max(0, min(self.frame_count - 1, int(index)))

    def seek_time(self, t: float) -> float:
        """Where a seek to ``t`` lands (inside the clip, on its last frame at most)."""
        return min(max(self.video_start, t), self.end - 0.5 / self.fps)

    # ======================================================================== playback
    def start_playing(self, speed: Optional[float] = None) -> float:
        """Playback starts (at ``speed`` if given); at an end it starts over from the other one.
        Returns the media time it starts from."""
        if speed is not None:
            self.speed = float(speed)
        self.direction = 1 if self.speed >= 0 else -1
        if self.speed > 0 and self.position >= self.end - 0.5 / self.fps:
            self.position = self.video_start
        if self.speed < 0 and self.position <= self.video_start + 0.5 / self.fps:
            self.position = self.end - 1.0 / self.fps
        self.playing = True
        return self.position

    def stop_playing(self, heard: float) -> float:
        """Playback stops where it was heard (inside the clip); returns that time."""
        self.playing = False
        self.position = min(max(self.video_start, heard), self.end)
        return self.position

    def follow(self, t: float) -> Optional[float]:
        """The clock says ``t`` while playing: the playhead follows it. At an end of the clip,
        returns where playback stops (the caller pauses there); else None."""
        if self.speed > 0 and t >= self.end:
            self.position = self.end - 0.5 / self.fps
            return self.position
        if self.speed < 0 and t <= self.video_start:
            self.position = self.video_start
            return self.position
        self.position = t
        return None

    def set_speed(self, s: float) -> float:
        self.speed = float(s)
        self.base_speed = abs(self.speed) if self.speed else 1.0
        self.direction = 1 if self.speed >= 0 else -1
        return self.speed

    def nearer_speed(self, d: int) -> float:
        """The speed one step slower (``d`` -1) or faster (+1) in :data:`SPEEDS`, same direction."""
        cur = abs(self.speed)
        i = min(range(len(SPEEDS)), key=lambda j: abs(SPEEDS[j] - cur))
        i = max(0, min(len(SPEEDS) - 1, i + d))
        return SPEEDS[i] * (1 if self.speed >= 0 else -1)

    def shuttle_speed(self, direction: int) -> float:
        """J / L: the next shuttle speed in ``direction`` (faster when already going that way,
        else 1x that way)."""
        if self.playing and self.speed * direction > 0:
            nxt = [s for s in SHUTTLE if s > abs(self.speed) + 1e-9]
            return direction * (nxt[0] if nxt else SHUTTLE[-1])
        return float(direction)

    def speed_after_stop(self) -> Optional[float]:
        """K: pausing resets a backward or very fast shuttle to 1x (None: the speed stays)."""
        return 1.0 if self.speed < 0 or self.speed > 4 else None

    # ======================================================================== the analysis
    def begin_k(self, k: int) -> bool:
        """The analysis decided on ``k`` clusters. Returns True when the results shown so far were
        for another k (they are dropped)."""
        self.analysis_state = "running"
        if k == self.k and self.heat is not None:
            return False
        self.k = int(k)
        self.heat = None
        # no sound cluster (a clip without sound): every frame is analysed, with nothing on it
        self.heat_done = np.full(self.frame_count, self.k == 0, bool)
        self.activity = np.full((self.frame_count, k), np.nan, np.float32)
        return True

    def add_chunk(self, data: HeatmapData) -> np.ndarray:
        """Put a chunk's heatmaps in place; returns the frames it filled."""
        hm = data.heatmaps
        if self.heat is None or self.heat.shape[1:] != hm.shape[1:]:
            self.heat = np.zeros((self.frame_count,) + hm.shape[1:], np.float16)
            self.heat_done = np.zeros(self.frame_count, bool)
        if self.activity is None or self.activity.shape[1] != hm.shape[1]:
            self.activity = np.full((self.frame_count, hm.shape[1]), np.nan, np.float32)
        fr = np.asarray(data.frames)
        ok = (fr >= 0) & (fr < self.frame_count)
        fr = fr[ok]
        self.heat[fr] = hm[ok].astype(np.float16)
        self.heat_done[fr] = True
        flat = hm[ok].reshape(len(fr), hm.shape[1], -1).astype(np.float32)
        # how focused each cluster's map is: its peak above its median (0: flat, 1: one hot spot)
        self.activity[fr] = flat.max(-1) - np.median(flat, axis=-1)
        return fr

    def forget_results(self) -> None:
        """Drop the heatmaps and stems (another k, another model, a fresh analysis)."""
        state = self.analysis_state
        self._reset_results()
        self.analysis_state = state

    @property
    def analysing(self) -> bool:
        return self.analysis_state in ("running", "starting")

    @property
    def frames_done(self) -> int:
        return int(self.heat_done.sum()) if self.heat_done is not None else 0

    def heat_of(self, index: int) -> tuple[Optional[np.ndarray], str]:
        """The heatmaps of frame ``index`` ([k, h, w]) and the badge shown instead when there are
        none ("heatmap pending…", "no heatmap for this frame", "this clip is silent: no heatmap"
        or "")."""
        if self.no_sound is not None:
            return None, f"{self.no_sound}: no heatmap"
        if self.heat is None or self.heat_done is None or not 0 <= index < len(self.heat_done):
            return None, ("heatmap pending…" if self.bundle is not None and self.analysing else "")
        if not self.heat_done[index]:
            return None, ("heatmap pending…" if self.analysing else "no heatmap for this frame")
        return self.heat[index], ""

    def activity_times(self) -> np.ndarray:
        """The time of each frame's activity value (its middle), from the clip's start."""
        return (np.arange(self.frame_count) + 0.5) / self.fps

    def set_stems(self, stems: np.ndarray, sr: int, residual: Optional[np.ndarray] = None) -> None:
        self.stems = np.asarray(stems, np.float32)
        self.stems_sr = int(sr)
        self.residual = residual

    @property
    def n_clusters(self) -> int:
        """How many clusters the panel lists."""
        if self.k:
            return self.k
        return 0 if self.stems is None else int(self.stems.shape[0])

    # ======================================================================== the pixel
    def click(self, x: float, y: float) -> float:
        """A click on the frame at (x, y) (0..1): it is marked; returns the time of the frame
        shown (the pixel's sound is separated from that frame)."""
        self.marker = (x, y)
        return self.time_of(self.index_at(self.position))

    def heat_values(self, index: int, x: float, y: float, normalize: bool) -> Optional[list[float]]:
        """Each cluster's heat at (x, y) of frame ``index`` (None: no heatmap there)."""
        from .overlay import heat_at

        heat, _badge = self.heat_of(index)
        return None if heat is None else heat_at(heat, x, y, normalize)

    def pixel_label(self) -> Optional[str]:
        if self.pixel is None or "audio" not in self.pixel:
            return None
        return f"Pixel ({self.pixel['x']:.2f}, {self.pixel['y']:.2f})"

    def clear_pixel(self) -> bool:
        """Forget the clicked spot; returns True when a pixel's sound was there."""
        self.marker = None
        had = self.pixel is not None
        self.pixel = None
        return had

    # ======================================================================== what the app says
    def model_status(self) -> str:
        """The status bar's model label."""
        if self.model_loading:
            return "loading model…"
        return f"model: {self.bundle.name}" if self.bundle is not None else "no model"

    def model_summary(self) -> tuple[str, str]:
        """The cluster panel's model line and its tooltip."""
        b = self.bundle
        if b is None:
            return ("loading model…" if self.model_loading else (self.model_error or "no model")), ""
        loc = {"hsa": "localizer (HSA)", "avin": "localizer (AVIN: one heatmap per frame)"}.get(b.kind, "localizer")
        comps = [c for c, m in ((loc, b.localizer), ("counter", b.counter), ("separator", b.separator))
                 if m is not None]
        tip = [f"{c}: {p}" for c, p in b.paths.items()]
        kept = b.card("sep").get("separator", {}) if b.separator is not None else {}
        if kept.get("kept_from"):
            tip.append(f"the separator is the one of the model fine-tuned from ({kept['kept_from']}), unchanged")
        return " · ".join([b.name, " + ".join(comps)]), "\n".join(tip)

    def no_model_text(self) -> str:
        msg = self.model_error or ""
        if "default model" in msg and "not installed" in msg:
            return NO_MODEL_INSTALLED
        return f"No model: {msg}"

    def status_notes(self, output) -> list[str]:
        """The persistent notes of the status bar (no sound device, no model)."""
        notes = []
        if not getattr(output, "available", False):
            notes.append(output.status)
        if self.bundle is None and not self.model_loading and self.model_error:
            notes.append(NO_MODEL_INSTALLED if "not installed" in self.model_error
                         else f"No model: {self.model_error}")
        return notes

    def sources_note(self) -> str:
        """The note under the cluster panel: what can be heard, and why not more."""
        why = self.no_sound
        if why is not None:
            return f"{why[0].upper()}{why[1:]}: no sound to localise, count or separate."
        if self.k == 0:
            return "No sound source was found: nothing to separate (choose a number of clusters to look anyway)."
        if self.bundle is None:
            return "No model: only the original mix can be heard." if not self.model_loading else "Loading the model…"
        if self.bundle.separator is None:
            return "This model has no separator: only the original mix can be heard."
        if not separation_available(self.bundle):
            return "Separation is not available in this installation: only the original mix."
        if self.stems is None:
            return "Sources are separated when the analysis is complete."
        return ("Solo (S) or unmute (M) a sound to hear it; the mix heard is the sum of what is on. "
                "Click the frame to hear a pixel.")

    def k_note(self, k: int, how: str) -> str:
        if k == 0:
            return f"No sound cluster: {how}"
        if self.bundle is not None and self.bundle.kind == "avin":
            return f"AVIN: {how}"
        return f"{k} sound cluster{'s' if k > 1 else ''}: {how}"

    def k_choice(self) -> tuple[bool, str]:
        """Whether the panel's number of clusters can be chosen (for this model, on this clip),
        and its tooltip."""
        if self.no_sound is not None:
            return False, f"Not available: {self.no_sound}"
        if self.bundle is not None and self.bundle.kind == "avin":
            return False, "AVIN gives one heatmap per frame: it has no sound clusters (k = 1)"
        return True, "How many sound sources to look for (Auto: the model's counter decides)"

    def pixel_unavailable(self) -> Optional[str]:
        """Why the sound of a pixel cannot be played (None: it can)."""
        if self.no_sound is not None:
            return f"Cannot play the sound of a pixel: {self.no_sound}"
        if separation_available(self.bundle):
            return None
        why = "no model is loaded" if self.bundle is None else "this model has no separator"
        return f"Cannot play the sound of a pixel: {why}"

    # ======================================================================== exports
    def heatmap_export(self) -> Optional[HeatmapData]:
        """The analysed frames' heatmaps in the analysis contract's layout (None: none yet, or a
        clip without sound)."""
        if self.no_sound is not None or self.heat is None or self.heat_done is None or not self.heat_done.any():
            return None
        fr = np.flatnonzero(self.heat_done)
        return HeatmapData(k=int(self.heat.shape[1]), frames=fr, times=np.array([self.time_of(i) for i in fr]),
                           heatmaps=self.heat[fr].astype(np.float32))

    def no_stems_reason(self) -> str:
        if self.no_sound is not None:
            return self.no_sound
        if self.k == 0:
            return "no sound source was found"
        if self.bundle is not None and self.bundle.separator is None:
            return "this model has no separator"
        return "the sources are not separated yet"
