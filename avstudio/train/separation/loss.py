"""The mix-and-separate loss (:func:`separation_loss`: on the waveforms, or on the masks)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...nets.separator import Separator

SNR_TAU = 1e-3  # soft threshold of the SNR loss: errors 30 dB below the mixture no longer count


def separation_loss(model: Separator, mix: torch.Tensor, sources: torch.Tensor, cond: torch.Tensor,
                    loss: str = "mask"):
    """Mix-and-separate loss; returns (loss, logits).

    ``"mask"``: on the warped grid, as Sound-of-Pixels (ratio mask: weighted L1 to the ideal
    ratio mask; binary: weighted BCE to the dominant-source mask; weight log(1 + |X|)).
    ``"snr"``: on the waveforms the inference path gives (unwarped, normalised masks, mixture
    phase, inverse STFT): mean of 10 log10(|s - s^|^2 + tau |x|^2) over sources (the soft
    threshold tau keeps silent references from dominating; MixIT's formulation).
    """
    B, n, N = sources.shape
    X = model.stft(mix)
    mag_w = model.warp(X.abs())  # [B, Fw, T]
    logits = model(mag_w, cond)
    if loss == "snr":
        est = model.apply_masks(X, torch.sigmoid(logits), N, normalise=True)
        err = (sources - est).pow(2).sum(-1)
        ref = mix.pow(2).sum(-1, keepdim=True)
        return (10.0 * torch.log10(err + SNR_TAU * ref + 1e-8)).mean() - (10.0 * torch.log10(ref + 1e-8)).mean(), logits
    S_w = model.warp(model.stft(sources.reshape(B * n, N)).abs()).reshape(B, n, *mag_w.shape[1:])
    weight = torch.log1p(mag_w).clamp(1e-3, 10.0).unsqueeze(1)
    if model.cfg.mask == "binary":
        target = (S_w >= S_w.amax(1, keepdim=True)).float()
        loss = F.binary_cross_entropy_with_logits(logits, target, weight=weight.expand_as(logits))
    else:
        target = (S_w / mag_w.unsqueeze(1).clamp_min(1e-8)).clamp(0.0, 1.0)
        loss = (weight * (torch.sigmoid(logits) - target).abs()).mean()
    return loss, logits
