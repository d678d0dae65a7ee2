"""Exports run by jobs: the video with its overlays burnt in, stems, heatmaps."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Optional

import numpy as np

from ..progress import check_cancel, emit
from .overlay import OverlaySettings


def export_video_fn(path: str, out: str, heat: Optional[np.ndarray], done: Optional[np.ndarray],
                    settings: OverlaySettings, audio: Optional[np.ndarray], sample_rate: int,
                    marker: Optional[tuple[float, float]] = None, progress=None, cancel=None) -> str:
    """Write ``out`` (mp4): every frame of ``path`` with its overlay, and ``audio`` (the mix heard).

    ``heat`` [N, k, h, w] and ``done`` [N] are snapshots; frames without heatmaps are written
    without overlay. Raises Cancelled (the partial file removed) when ``cancel`` is set.
    """
    from ..media import Mp4Writer, VideoReader
    from .render import burn_in, make_overlay

    settings = copy.deepcopy(settings)
    with VideoReader(path) as vr:
        n = vr.frame_count
        fps = vr.fps
        writer = Mp4Writer(out, fps, sample_rate=sample_rate, audio=audio is not None)
        try:
            apos = 0
            for i, (idx, _t, rgb) in enumerate(vr.frames()):
                check_cancel(cancel, "export")
                ov = None
                if heat is not None and done is not None and 0 <= idx < len(done) and done[idx]:
                    ov = make_overlay(heat[idx].astype(np.float32), settings)
                writer.add_frame(burn_in(rgb, ov, marker))
                if audio is not None:
                    nxt = min(len(audio), int(round((i + 1) * sample_rate / fps)))
                    if nxt > apos:
                        writer.add_audio(audio[apos:nxt])
                        apos = nxt
                if i % 5 == 0:
                    emit(progress, "export", i + 1, n, f"frame {i + 1}/{n}")
            if audio is not None and apos < len(audio):
                writer.add_audio(audio[apos:])
            writer.close()
        except BaseException:
            writer.abort()
            raise
    emit(progress, "export", n, n, "done")
    return out


def stem_filename(video: str, j: int) -> str:
    return f"{Path(video).stem}_sound{j + 1}.wav"


def export_stems_fn(video: str, stems: np.ndarray, sample_rate: int, folder: str,
                    only: Optional[int] = None, progress=None, cancel=None) -> list[str]:
    from ..media import write_wav

    folder = os.fspath(folder)
    out = []
    js = [only] if only is not None else list(range(stems.shape[0]))
    for n, j in enumerate(js):
        check_cancel(cancel, "export")
        p = Path(folder) / stem_filename(video, j)
        write_wav(p, stems[j], sample_rate)
        out.append(str(p))
        emit(progress, "export", n + 1, len(js))
    return out
