"""The validation metric: SI-SDR of held-out mixtures' separated sources (:func:`validate`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ...nets.kmeans import normalize
from ...nets.separator import Separator
from .data import PreparedClip


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    ref = ref.astype(np.float64) - ref.mean()
    est = est.astype(np.float64) - est.mean()
    a = np.dot(est, ref) / max(np.dot(ref, ref), 1e-12)
    t = a * ref
    e = est - t
    return float(10 * np.log10(max(np.dot(t, t), 1e-12) / max(np.dot(e, e), 1e-12)))


@torch.no_grad()
def validate(model: Separator, pairs: Sequence[tuple[PreparedClip, PreparedClip]], device) -> dict:
    """Mean SI-SDR (dB) of the separated sources of held-out mixtures, and of the mixture."""
    model.eval()
    est_s, mix_s = [], []
    for a, b in pairs:
        N = min(len(a.audio), len(b.audio))
        mix = a.audio[:N] + b.audio[:N]
        refs = np.concatenate([a.stems[:, :N], b.stems[:, :N]])
        cond = np.concatenate([normalize(torch.from_numpy(a.vectors).mean(0)).numpy(),
                               normalize(torch.from_numpy(b.vectors).mean(0)).numpy()])
        est = model.separate(torch.from_numpy(mix)[None].to(device),
                             torch.from_numpy(cond)[None].to(device)).cpu().numpy()[0]
        for s in range(len(refs)):
            if np.sqrt(np.mean(refs[s] ** 2)) < 1e-5:
                continue
            est_s.append(si_sdr(refs[s], est[s]))
            mix_s.append(si_sdr(refs[s], mix))
    if not est_s:
        return {}
    return {"si_sdr": float(np.mean(est_s)), "si_sdr_mix": float(np.mean(mix_s)),
            "si_sdr_improvement": float(np.mean(est_s) - np.mean(mix_s)), "n": len(est_s)}
