"""The sound of a pixel: the separator conditioned on the visual feature at one pixel of one
frame (:class:`PixelSounder`, :func:`pixel_sound`). The sounder keeps the decoded audio and the
U-Net's features of the clip, so a click costs one frame through the visual encoder, the small
per-bin head and an inverse STFT.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import AVStudioError, MediaError
from ...media import VideoReader, probe
from ..sound import NO_AUDIO, sound_of_samples
from .stems import (
    ClipSpectra,
    cluster_vectors,
    read_clip_audio,
    require_separator,
    separate_tracks,
    tracks_from_analysis,
)


class PixelSounder:
    """Answers "what does this pixel sound like?" for one clip, fast enough for a click.

    Holds the clip's decoded audio, the U-Net features of its chunks (computed on the first
    request) and the visual map of the last frame asked for. ``sound(t, x, y)`` conditions
    the separator on the visual feature at (x, y) (0..1 of the frame) of the frame at ``t``.
    """

    def __init__(self, bundle, video_path=None, audio: Optional[np.ndarray] = None, max_cached: int = 3):
        self.bundle = bundle
        self.sep = require_separator(bundle)
        self.sr = self.sep.cfg.sample_rate
        self.path = None if video_path is None else str(video_path)
        if audio is None:
            if video_path is None:
                raise ValueError("PixelSounder needs a video path or audio")
            audio = read_clip_audio(video_path, self.sr)
            snd = sound_of_samples(audio, self.sr) if probe(video_path, check=False).has_audio else NO_AUDIO
            if not snd.sound:  # a pixel of a clip without sound has no sound to play
                raise AVStudioError(f"{Path(str(video_path)).name}: {snd.note()}")
        self.spectra = ClipSpectra(self.sep, audio, max_cached=max_cached)
        self._reader = None
        self._vis_key = None
        self._vis = None

    @property
    def duration(self) -> float:
        return self.spectra.N / self.sr

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @torch.no_grad()
    def visual_map(self, time_s: float) -> torch.Tensor:
        """The AV model's visual features [D, h, w] of the frame shown at ``time_s``."""
        av = self.bundle.av
        if av is None:
            raise AVStudioError(f"{self.bundle.name}: this model has no visual encoder")
        if self.path is None:
            raise AVStudioError("this sounder has no video to take a frame from")
        if self._reader is None:
            self._reader = VideoReader(self.path)
        idx = max(0, self._reader.index_at(float(time_s)))
        if self._reader.info.frame_count_exact:
            idx = min(idx, self._reader.frame_count - 1)
        if self._vis_key != idx:
            S = av.cfg.frame_size
            n = self._reader.frame_count
            fps = float(self._reader.info.fps or 25.0)
            # a model that stacks frames gets the frames around this one (as in analysis)
            where = av.cfg.stack_indices(idx, fps, max(n, idx + 1))
            got = {j: self._reader.frame(j, size=(S, S)).transpose(2, 0, 1) for j in sorted(set(where))}
            arr = got[where[0]] if av.cfg.stack <= 1 else np.stack([got[j] for j in where])
            dev = next(av.parameters()).device
            fr = torch.from_numpy(np.ascontiguousarray(arr))[None].to(dev)
            self._vis = av.visual(fr)[0]
            self._vis_key = idx
        return self._vis

    @staticmethod
    def vector_at(vis: torch.Tensor, x: float, y: float) -> np.ndarray:
        """Bilinear sample of a feature map [D, h, w] at (x, y) in 0..1 -> unit vector [D]."""
        g = torch.tensor([[[[2.0 * float(np.clip(x, 0, 1)) - 1.0, 2.0 * float(np.clip(y, 0, 1)) - 1.0]]]],
                         dtype=vis.dtype, device=vis.device)
        v = F.grid_sample(vis[None], g, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0, 0]
        return F.normalize(v, dim=0).cpu().numpy()

    def window(self, time_s: float, seconds: Optional[float]) -> tuple[int, int]:
        """Sample range [a, a + n) of a ``seconds`` window centred on ``time_s`` (kept inside the
        clip when the clip is long enough); the whole clip when ``seconds`` is None."""
        N = self.spectra.N
        if seconds is None:
            return 0, N
        n = max(1, int(round(float(seconds) * self.sr)))
        a = int(round(float(time_s) * self.sr)) - n // 2
        a = max(0, min(a, N - n))
        return a, a + n

    def sound_of_vector(self, vector: np.ndarray, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
        """The sound the separator gives for one visual vector [D], samples [start, stop)."""
        v = np.asarray(vector, np.float32).reshape(1, 1, -1)
        stop = self.spectra.N if stop is None else stop
        a, b = max(0, start), min(self.spectra.N, stop)
        out = np.zeros(stop - start, np.float32)
        if b > a:
            got = self.spectra.render(lambda ft: np.broadcast_to(v, (1, len(ft), v.shape[-1])), 1, a, b,
                                      normalise=False)[0]
            out[a - start:b - start] = got
        return out

    def sound(self, time_s: float, x: float, y: float, seconds: Optional[float] = None) -> np.ndarray:
        """float32 audio at 16 kHz: the whole clip (``seconds`` None) or ``round(seconds*16000)``
        samples around ``time_s`` (zeros past the clip's end when it is shorter)."""
        vec = self.vector_at(self.visual_map(time_s), x, y)
        a, b = self.window(time_s, seconds)
        return self.sound_of_vector(vec, a, b)

    def clusters(self, visual_vectors: np.ndarray, times: Optional[np.ndarray] = None) -> np.ndarray:
        """Per-cluster stems [k, N] (as :func:`separate_clip`), reusing the cached features."""
        tracks = tracks_from_analysis(visual_vectors, times)
        return separate_tracks(self.bundle, self.spectra.audio, tracks, spectra=self.spectra)

    def clusters_of(self, analysis) -> np.ndarray:
        """Per-cluster stems [k, N] of an analysed clip (GUI per-cluster playback): the
        vectors from :func:`cluster_vectors`, the features from this sounder's cache."""
        if self.path is None:
            raise AVStudioError("this sounder has no video to take the clusters' frames from")
        t, v = cluster_vectors(self.bundle, self.path, analysis)
        return self.clusters(v, t)


_SOUNDERS: OrderedDict[tuple, PixelSounder] = OrderedDict()


def pixel_sound(bundle, video_path, time_s: float, x: float, y: float,
                seconds: Optional[float] = None) -> np.ndarray:
    """The sound of pixel (x, y) (0..1 of the frame) of the frame at ``time_s``: float32 at
    16 kHz, the whole clip or ``seconds`` around ``time_s``. Keeps the last two clips' sounders."""
    p = Path(video_path)
    try:
        st = p.stat()
    except OSError:
        raise MediaError(f"{video_path}: no such file") from None
    key = (id(bundle), id(bundle.separator), str(p.resolve()), st.st_mtime_ns, st.st_size)
    sp = _SOUNDERS.get(key)
    if sp is None:
        sp = PixelSounder(bundle, video_path)
        _SOUNDERS[key] = sp
        while len(_SOUNDERS) > 2:
            _, old = _SOUNDERS.popitem(last=False)
            old.close()
    else:
        _SOUNDERS.move_to_end(key)
    return sp.sound(time_s, x, y, seconds)
