"""Heatmap overlays: colour, threshold and blend the per-cluster maps of one frame.

The numpy part (:func:`compose_overlay`) turns ``[k, h, w]`` heatmaps into one small
premultiplied ARGB image (the maps upsampled 4x with a separable bilinear filter, then
thresholded so that the edges stay smooth); Qt then scales that image to the frame with
its bilinear filter while painting. That keeps the cost per frame well under a
millisecond whatever the video's size.

Thresholds (per cluster, per frame, on the map after optional min-max normalisation):

* ``fixed``   the slider's value;
* ``otsu``    Otsu's threshold of the map (AVIN picks thresholds adaptively);
* ``meanstd`` mean + one standard deviation of the map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

# Okabe-Ito: colour-blind safe, readable on video
PALETTE: list[tuple[int, int, int]] = [
    (230, 159, 0),    # orange
    (86, 180, 233),   # sky blue
    (0, 158, 115),    # bluish green
    (240, 228, 66),   # yellow
    (204, 121, 167),  # reddish purple
    (213, 94, 0),     # vermillion
    (0, 114, 178),    # blue
]
PIXEL_COLOUR = (255, 255, 255)

THRESHOLD_MODES = {"fixed": "Fixed", "otsu": "Adaptive (Otsu)", "meanstd": "Adaptive (mean + std)"}


def cluster_colour(j: int) -> tuple[int, int, int]:
    return PALETTE[j % len(PALETTE)]


@dataclass
class OverlaySettings:
    enabled: bool = True
    opacity: float = 0.6  # 0..1
    threshold_mode: str = "otsu"  # fixed | otsu | meanstd
    threshold: float = 0.5  # for "fixed" (on the normalised map when normalize)
    normalize: bool = True  # min-max normalise each map per frame (as the metrics do)
    contour: bool = True  # draw the threshold's outline
    upsample: int = 4
    visible: list[bool] = field(default_factory=lambda: [True] * 8)
    version: int = 0  # bumped on every change (overlay cache key)

    def cluster_visible(self, j: int) -> bool:
        return j >= len(self.visible) or self.visible[j]

    def key(self) -> tuple:
        return (self.enabled, round(self.opacity, 3), self.threshold_mode, round(self.threshold, 3),
                self.normalize, self.contour, self.upsample, tuple(self.visible))

    def toggle_cluster(self, j: int) -> None:
        """Show or hide cluster ``j``'s heatmap."""
        while len(self.visible) <= j:
            self.visible.append(True)
        self.visible[j] = not self.visible[j]

    def next_threshold_mode(self) -> str:
        """Cycle fixed -> Otsu -> mean + std; returns the new mode."""
        modes = list(THRESHOLD_MODES)
        self.threshold_mode = modes[(modes.index(self.threshold_mode) + 1) % len(modes)]
        return self.threshold_mode

    def saved(self) -> dict[str, object]:
        """What the app keeps between sessions (settings keys -> values)."""
        return {"overlay/opacity": self.opacity, "overlay/threshold": self.threshold,
                "overlay/mode": self.threshold_mode, "overlay/normalize": self.normalize,
                "overlay/outline": self.contour}

    def restore(self, value) -> None:
        """Take back what :meth:`saved` kept; ``value(key, default)`` reads the settings (values
        that do not parse are left as they are)."""
        try:
            self.opacity = float(value("overlay/opacity", self.opacity))
            self.threshold = float(value("overlay/threshold", self.threshold))
            mode = str(value("overlay/mode", self.threshold_mode))
            self.threshold_mode = mode if mode in THRESHOLD_MODES else self.threshold_mode
            self.normalize = str(value("overlay/normalize", self.normalize)).lower() in ("true", "1")
            self.contour = str(value("overlay/outline", self.contour)).lower() in ("true", "1")
        except (TypeError, ValueError):
            pass


def otsu_threshold(x: np.ndarray, bins: int = 64) -> float:
    """Otsu's threshold of the values of ``x`` (between-class variance maximised)."""
    v = np.asarray(x, np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if not np.isfinite(lo) or hi - lo < 1e-9:
        return hi
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    p = hist.astype(np.float64) / max(1, hist.sum())
    centers = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(p)
    m = np.cumsum(p * centers)
    mt = m[-1]
    w1 = 1.0 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mt * w0 - m) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1.0
    best = between.max()
    # an empty gap between the classes is a plateau: take its middle
    idx = np.flatnonzero(between >= best - 1e-12 * max(1.0, abs(best)))
    return float(0.5 * (edges[idx[0] + 1] + edges[idx[-1] + 1]))


def threshold_of(m: np.ndarray, mode: str, fixed: float) -> float:
    if mode == "otsu":
        return otsu_threshold(m)
    if mode == "meanstd":
        return float(m.mean() + m.std())
    return float(fixed)


@lru_cache(maxsize=32)
def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] bilinear (half-pixel centred, edge-clamped) interpolation weights."""
    pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0, n_in - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    f = pos - i0
    R = np.zeros((n_out, n_in), np.float32)
    R[np.arange(n_out), i0] += 1 - f
    R[np.arange(n_out), i1] += f
    return R


def upsample(m: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear upsampling of a 2-D map by an integer factor (separable, two matmuls)."""
    h, w = m.shape
    if factor <= 1:
        return m.astype(np.float32)
    return _interp_matrix(h, h * factor) @ m.astype(np.float32) @ _interp_matrix(w, w * factor).T


def normalise_map(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float32)
    lo, hi = float(m.min()), float(m.max())
    if hi - lo < 1e-6:
        return np.zeros_like(m)
    return (m - lo) / (hi - lo)


def cluster_maps(heat: np.ndarray, settings: OverlaySettings) -> list[tuple[int, np.ndarray, float]]:
    """``(j, map, threshold)`` of every visible cluster: the map normalised as the settings say
    and its threshold for this frame."""
    if not settings.enabled or heat is None:
        return []
    heat = np.asarray(heat, np.float32)
    out = []
    for j in range(heat.shape[0]):
        if not settings.cluster_visible(j):
            continue
        m = normalise_map(heat[j]) if settings.normalize else np.clip(heat[j], 0, 1)
        thr = float(np.clip(threshold_of(m, settings.threshold_mode, settings.threshold), 0.0, 0.999))
        out.append((j, m, thr))
    return out


def compose_overlay(heat: np.ndarray, settings: OverlaySettings,
                    colours: list[tuple[int, int, int]] | None = None,
                    maps: list[tuple[int, np.ndarray, float]] | None = None) -> np.ndarray | None:
    """Blend the visible clusters' maps of one frame into premultiplied BGRA uint8 ``[H, W, 4]``
    (the byte order of ``QImage.Format_ARGB32_Premultiplied`` on little-endian machines):
    where a map is above its threshold, the cluster's colour, more opaque where the map is
    higher. Outlines are drawn as vector paths by the painter (see render.paint_overlay).

    ``heat``: ``[k, h, w]`` in 0..1. Returns None when nothing is visible.
    """
    if maps is None:
        maps = cluster_maps(heat, settings)
    if not maps:
        return None
    h, w = maps[0][1].shape
    f = max(1, int(settings.upsample))
    H, W = h * f, w * f
    acc = np.zeros((H, W, 4), np.float32)  # premultiplied RGBA, 0..1
    op = float(np.clip(settings.opacity, 0.0, 1.0))
    # cluster 0 drawn last (on top)
    for j, m, thr in reversed(maps):
        up = upsample(m, f)
        ramp = np.clip((up - thr) / max(1e-3, 1.0 - thr), 0.0, 1.0)
        a = np.where(up >= thr, op * (0.3 + 0.7 * ramp), 0.0).astype(np.float32)
        c = np.array(colours[j] if colours else cluster_colour(j), np.float32) / 255.0
        # "over": dst = src + dst * (1 - src_alpha)
        acc *= (1.0 - a)[..., None]
        acc[..., :3] += a[..., None] * c
        acc[..., 3] += a
    out = np.empty((H, W, 4), np.uint8)
    out[..., 0] = np.clip(acc[..., 2] * 255 + 0.5, 0, 255)  # B
    out[..., 1] = np.clip(acc[..., 1] * 255 + 0.5, 0, 255)  # G
    out[..., 2] = np.clip(acc[..., 0] * 255 + 0.5, 0, 255)  # R
    out[..., 3] = np.clip(acc[..., 3] * 255 + 0.5, 0, 255)  # A
    return out


# marching squares: for each of the 16 corner cases, the cell edges joined by a segment
# (edges: 0 top, 1 right, 2 bottom, 3 left; corners a=top-left, b=top-right, c=bottom-right,
# d=bottom-left; bit set when the corner is >= the level). Saddles (5, 10) pick by the centre.
_SEGMENTS = {1: [(3, 0)], 2: [(0, 1)], 3: [(3, 1)], 4: [(1, 2)], 6: [(0, 2)], 7: [(3, 2)],
             8: [(2, 3)], 9: [(0, 2)], 11: [(1, 2)], 12: [(1, 3)], 13: [(0, 1)], 14: [(3, 0)]}


def contour_segments(m: np.ndarray, level: float) -> np.ndarray:
    """The iso-line of a map [h, w] at ``level`` as line segments ``[M, 4]`` (x0, y0, x1, y1)
    in 0..1 frame coordinates (sample (r, c) at ((c + 0.5) / w, (r + 0.5) / h)), linearly
    interpolated along cell edges as the fill's bilinear upsampling is. Vectorised."""
    m = np.asarray(m, np.float64)
    h, w = m.shape
    if h < 2 or w < 2:
        return np.zeros((0, 4), np.float32)
    a, b, c, d = m[:-1, :-1], m[:-1, 1:], m[1:, 1:], m[1:, :-1]
    case = ((a >= level) * 1 + (b >= level) * 2 + (c >= level) * 4 + (d >= level) * 8).astype(np.int8)
    rows, cols = np.mgrid[0:h - 1, 0:w - 1].astype(np.float64)

    def frac(p, q):
        den = q - p
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(np.abs(den) > 1e-12, (level - p) / den, 0.5)
        return np.clip(t, 0.0, 1.0)

    # the crossing point on each edge of every cell: [4, H-1, W-1, 2] as (x, y) in samples
    ex = np.stack([cols + frac(a, b), cols + 1.0, cols + frac(d, c), cols])
    ey = np.stack([rows, rows + frac(b, c), rows + 1.0, rows + frac(a, d)])
    segs = []
    centre = (a + b + c + d) / 4.0 >= level
    for k, pairs in list(_SEGMENTS.items()) + [(5, None), (10, None)]:
        sel = case == k
        if not sel.any():
            continue
        if pairs is None:  # saddles
            if k == 5:  # a and c above
                on = [[(3, 2), (1, 0)], [(3, 0), (1, 2)]]
            else:  # b and d above
                on = [[(0, 3), (2, 1)], [(0, 1), (2, 3)]]
            for joined, pp in ((True, on[0]), (False, on[1])):
                s2 = sel & (centre == joined)
                for e0, e1 in pp:
                    segs.append(np.stack([ex[e0][s2], ey[e0][s2], ex[e1][s2], ey[e1][s2]], 1))
            continue
        for e0, e1 in pairs:
            segs.append(np.stack([ex[e0][sel], ey[e0][sel], ex[e1][sel], ey[e1][sel]], 1))
    if not segs:
        return np.zeros((0, 4), np.float32)
    out = np.concatenate(segs)
    out[:, [0, 2]] = (out[:, [0, 2]] + 0.5) / w
    out[:, [1, 3]] = (out[:, [1, 3]] + 0.5) / h
    return out.astype(np.float32)


def heat_at(heat: np.ndarray, x: float, y: float, normalize: bool = True) -> list[float]:
    """Per-cluster value of the (normalised) maps at normalised frame position (x, y)."""
    heat = np.asarray(heat, np.float32)
    k, h, w = heat.shape
    i = int(np.clip(y * h, 0, h - 1))
    jx = int(np.clip(x * w, 0, w - 1))
    vals = []
    for j in range(k):
        m = normalise_map(heat[j]) if normalize else heat[j]
        vals.append(float(m[i, jx]))
    return vals
