"""The source counter over a library's clips: each clip's predicted number of sources and the
counter's rate, stored in the library as it goes (:func:`predict_counts`)."""

from __future__ import annotations

import torch

from ..errors import AVStudioError
from ..progress import check_cancel, emit
from .localize import estimate_count


def predict_counts(lib, bundle, clip_ids: list[int], model_name: str, batch: int = 8,
                   progress=None, cancel=None) -> dict:
    """The counter's count and rate for each clip, stored in the library as it goes (a clip
    without sound: 0, with no rate; see :func:`avstudio.analysis.localize.estimate_count`)."""
    torch.set_num_threads(1)
    done, failed, buf = 0, [], []

    def flush():
        if buf:
            lib.set_predictions(list(buf), model_name)
            emit(progress, "predict", done, len(clip_ids), "", clip_ids=[b[0] for b in buf])
            buf.clear()

    emit(progress, "predict", 0, len(clip_ids))
    try:
        for cid in clip_ids:
            check_cancel(cancel, "prediction")
            clip = lib.get(cid)
            try:
                est = estimate_count(bundle, clip.path)
            except AVStudioError as exc:
                failed.append((clip.path, str(exc)))
                continue
            finally:
                done += 1
            buf.append((cid, int(max(0, min(16, est.count))), est.rate))
            if len(buf) >= batch:
                flush()
            else:
                emit(progress, "predict", done, len(clip_ids))
    finally:
        flush()  # what is predicted is kept, also when cancelled
    return {"predicted": done - len(failed), "failed": failed}
