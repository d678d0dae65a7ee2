"""Metrics, computed as the field computes them (docs/method.md). One module for all.

Localization (the formula shared by the EZ-VSL and LVS evaluation code): upsample the
heatmap to the frame, min-max normalise it to 0..1, binarise it to P, and with the ground
truth map G: ``cIoU = sum(P*G) / (sum(G) + sum(P*(G==0)))``. cIoU@0.5 is the share of
samples whose cIoU reaches 0.5; AUC is the area under that success rate as the threshold
sweeps 0, 0.05, ..., 1. Two binarisations: at the median pixel (Flickr/VGG-SS code) and at
0.5 of the normalised map (AVIN; our primary). NSA is the share of pixels outside G left
negative, so a heatmap that floods the frame cannot look good.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

THRESHOLDS = np.linspace(0.0, 1.0, 21)
BINARISATIONS = ("0.5", "median")
PRIMARY = "0.5"


def resize_map(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map to (H, W) (align_corners=False, like the field's code)."""
    import torch
    import torch.nn.functional as F

    H, W = size
    if m.shape == (H, W):
        return m.astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(H, W), mode="bilinear", align_corners=False)[0, 0].numpy()


def normalise(m: np.ndarray) -> np.ndarray:
    lo, hi = float(m.min()), float(m.max())
    if hi - lo <= 1e-6 * max(1.0, abs(hi)):
        return np.ones_like(m, dtype=np.float32)  # a flat map says "everywhere"
    return ((m - lo) / (hi - lo)).astype(np.float32)


# A normalised map often has a plateau (a saturated or padded region: a quarter of the pixels
# within 1e-7 of each other is common) and the median can fall on it; which side of ``>=`` each
# plateau pixel lands on is then decided by float noise (the thread count, the batch size),
# enough to move a frame's median-binarised NSA from 0.25 to 0.38. Values within MEDIAN_TIE of the
# median count as the median: the whole plateau is in, whatever the last bits.
MEDIAN_TIE = 1e-5


def binarise(m01: np.ndarray, how: str) -> np.ndarray:
    if how == "median":
        return m01 >= np.median(m01) - MEDIAN_TIE
    if how == "0.5":
        return m01 >= 0.5
    raise ValueError(f"unknown binarisation {how!r}")


def ciou(pred: np.ndarray, gt: np.ndarray) -> float:
    """``sum(P*G) / (sum(G) + sum(P*(G==0)))``; G may weigh pixels (a consensus map: 0.5 or 1)."""
    p = pred.astype(bool)
    if gt.dtype != bool and not np.isin(gt, (0, 1)).all():
        g = gt.astype(np.float64)
        denom = g.sum() + (p & (g == 0)).sum()
        return float((g * p).sum() / denom) if denom > 0 else 0.0
    g = gt.astype(bool)
    denom = g.sum() + (p & ~g).sum()
    return float((p & g).sum() / denom) if denom > 0 else 0.0


def nsa(pred: np.ndarray, gt: np.ndarray) -> float:
    """The share of the pixels outside the ground truth (G == 0) that ``pred`` leaves negative."""
    neg = gt == 0
    n = neg.sum()
    return float((~pred.astype(bool) & neg).sum() / n) if n > 0 else 1.0


def score_heatmap(heat: np.ndarray, gt: np.ndarray) -> dict[str, dict[str, float]]:
    """cIoU and NSA of one heatmap (any size) against one mask, under both binarisations."""
    m = normalise(resize_map(heat, gt.shape))
    out = {}
    for how in BINARISATIONS:
        p = binarise(m, how)
        out[how] = {"ciou": ciou(p, gt), "nsa": nsa(p, gt)}
    return out


def success_auc(cious: Sequence[float]) -> tuple[float, float]:
    """(cIoU@0.5, AUC of the success rate over thresholds 0..1 step 0.05)."""
    c = np.asarray(cious, dtype=np.float64)
    if c.size == 0:
        return float("nan"), float("nan")
    rates = np.array([(c >= t).mean() for t in THRESHOLDS])
    auc = float(np.sum(0.5 * (rates[1:] + rates[:-1]) * np.diff(THRESHOLDS)))
    return float((c >= 0.5).mean()), auc


def summarise(scores: Iterable[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    scores = list(scores)
    out = {}
    for how in BINARISATIONS:
        cs = [s[how]["ciou"] for s in scores]
        ns = [s[how]["nsa"] for s in scores]
        at5, auc = success_auc(cs)
        out[how] = {"ciou@0.5": at5, "auc": auc, "mean_ciou": float(np.mean(cs)) if cs else float("nan"),
                    "nsa": float(np.mean(ns)) if ns else float("nan"), "n": len(cs)}
    return out


def center_prior(shape: tuple[int, int], sigma: float = 0.25) -> np.ndarray:
    H, W = shape
    y = (np.arange(H) + 0.5) / H - 0.5
    x = (np.arange(W) + 0.5) / W - 0.5
    return np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma ** 2)).astype(np.float32)


def motion_prior(stack: np.ndarray, blur: float = 0.028) -> np.ndarray:
    """A baseline that looks only at motion: the mean absolute grey-level change between
    consecutive frames of a stack (uint8 [F, 3, H, W]), blurred by ``blur`` of the frame's
    width. Where something moves, pulses or flickers, whether it sounds or not."""
    import cv2

    x = stack.astype(np.float32).mean(axis=1) / 255.0  # [F, H, W]
    e = np.abs(np.diff(x, axis=0)).mean(axis=0)
    return cv2.GaussianBlur(e, (0, 0), max(0.5, blur * e.shape[1])).astype(np.float32)


# -- separation --------------------------------------------------------------------------------

def bss_eval(reference: np.ndarray, estimate: np.ndarray) -> dict[str, np.ndarray]:
    """SDR, SIR, SAR per source with ``bss_eval_sources`` semantics (mir_eval, maintained).

    reference, estimate: [S, N]. Returns arrays [S] in dB and the permutation mir_eval found
    (we pass compute_permutation=False: estimate i is meant for reference i).
    """
    import warnings

    import mir_eval

    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sdr, sir, sar, _ = mir_eval.separation.bss_eval_sources(ref, est, compute_permutation=False)
    return {"sdr": sdr, "sir": sir, "sar": sar}


def is_silent(x: np.ndarray, eps: float = 1e-5) -> bool:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2))) < eps


# -- counting ------------------------------------------------------------------------------------

def counting_summary(true: Sequence[int], pred: Sequence[int]) -> dict:
    t = np.asarray(true)
    p = np.asarray(pred)
    if t.size == 0:
        return {"accuracy": float("nan"), "n": 0}
    vals, freq = np.unique(t, return_counts=True)
    majority = int(vals[np.argmax(freq)])
    per = {f"C{int(v)}": float((p[t == v] == v).mean()) for v in vals}
    labels = sorted(set(t.tolist()) | set(p.tolist()))
    conf = {f"C{a}": {str(b): int(((t == a) & (p == b)).sum()) for b in labels} for a in vals.tolist()}
    return {"accuracy": float((t == p).mean()), "majority_baseline": float((t == majority).mean()),
            "majority_class": majority, "per_level": per, "confusion": conf,
            "mean_abs_error": float(np.abs(t - p).mean()), "n": int(t.size)}
