"""The app's one-shot work, run in background threads by the GUI (Qt-free; each takes the core's
``progress`` / ``cancel`` keywords): load a model, separate an analysed clip's sources, the sound
of one pixel, write stems. Torch is imported inside them, in their threads (start-up stays fast).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from ..errors import AVStudioError
from ..media import probe, read_audio, write_wav
from ..progress import check_cancel, emit

if TYPE_CHECKING:
    from ..analysis.cache import AnalysisCache
    from ..nets.checkpoint import ModelBundle


def load_model(model_path, progress=None, cancel=None) -> ModelBundle:
    """Load a MODEL (None: the shipped default). Imports torch (seconds, in this thread)."""
    import torch

    from ..nets.checkpoint import load_model as load

    torch.set_num_threads(1)
    bundle = load(model_path)
    _ = bundle.model_id  # the cache key (a stat of the files): now, not on the GUI thread
    return bundle


def separation_available(bundle: Optional[ModelBundle]) -> bool:
    return bundle is not None and bundle.separator is not None


def separation_rate(bundle: ModelBundle) -> int:
    """The sample rate of the bundle's separator (the analysis rate without one)."""
    if bundle.separator is not None:
        return int(bundle.separator.cfg.sample_rate)
    from ..nets.config import SAMPLE_RATE

    return SAMPLE_RATE


def separate_stems(bundle: ModelBundle, path: str, cache: AnalysisCache, k: int, progress=None,
                   cancel=None) -> dict:
    """Stems ``[k, N]`` (and the residual no cluster claimed) at the separator's rate for the
    clip: from the cache, else :func:`avstudio.analysis.separate.separate_analysis` (each cluster
    conditioned on the visual features where its sound is heard, as the separator was trained)."""
    from ..analysis.separate import separate_analysis

    sr = separation_rate(bundle)
    info = probe(path, check=False)
    if info.has_audio:
        audio = read_audio(path, sr)
    else:
        audio = np.zeros(int(round(info.duration * sr)), np.float32)
    check_cancel(cancel, "separation")
    got = cache.load_stems(k)
    if got is not None and got[1] == sr:
        stems = got[0]
        cached = True
    else:
        data = cache.load(k)
        if data is None or data.visual_vectors is None:
            raise AVStudioError("no heatmaps to separate with yet")
        stems = separate_analysis(bundle, path, data, audio=audio, progress=progress, cancel=cancel)
        stems = np.asarray(stems, np.float32)
        check_cancel(cancel, "separation")
        cache.save_stems(k, stems, sr)
        cached = False
    n = min(len(audio), stems.shape[1])
    residual = audio[:n] - stems[:, :n].sum(0)
    return {"stems": stems, "sr": sr, "residual": residual.astype(np.float32), "cached": cached}


def pixel_sound(bundle: ModelBundle, path: str, time_s: float, x: float, y: float, progress=None,
                cancel=None) -> dict:
    """The sound of one pixel (normalised x, y in 0..1 of the frame) of the frame at ``time_s``,
    over the whole clip: {"audio": float32 [N], "sr": rate, "offset": 0.0}."""
    from ..analysis.separate import pixel_sound as sound_of

    audio = sound_of(bundle, path, time_s, x, y)
    return {"audio": np.asarray(audio, np.float32).reshape(-1), "sr": separation_rate(bundle), "offset": 0.0}


def stem_filename(video: str, j: int) -> str:
    """``clip_sound2.wav`` for the second sound of ``clip.mp4``."""
    return f"{Path(video).stem}_sound{j + 1}.wav"


def export_stems(video: str, stems: np.ndarray, sample_rate: int, folder: str, only: Optional[int] = None,
                 progress=None, cancel=None) -> list[str]:
    """One WAV per sound cluster (``only``: just that one) in ``folder``; returns the paths."""
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
