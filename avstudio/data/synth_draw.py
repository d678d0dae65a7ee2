"""Drawing for the synthetic benchmark: shapes, textures, sprites, backgrounds and motion.

Everything is vectorised numpy: a shape is an ``inside(u, v)`` test on unit coordinates
(the object's radius is 1, v points down), a sprite is one object rendered once per pulse
level (2x2 supersampled coverage -> alpha) and pasted into frames; a pixel belongs to an
object's mask when that object's alpha there is >= 0.5 and no object above it covers it.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Optional, Sequence

import numpy as np

Array = np.ndarray

# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------


def _ngon(n: int, rot: float) -> Callable[[Array, Array], Array]:
    """Regular n-gon with circumradius 1; ``rot`` = angle (deg) of the first edge normal."""
    th = np.deg2rad(rot) + 2 * np.pi * np.arange(n) / n
    c, s = np.cos(th), np.sin(th)
    lim = math.cos(math.pi / n)

    def inside(u, v):
        out = np.ones(np.broadcast(u, v).shape, bool)
        for ck, sk in zip(c, s):
            out &= (u * ck + v * sk) <= lim
        return out

    return inside


def _star(points: int = 5, inner: float = 0.45) -> Callable[[Array, Array], Array]:
    sector = 2 * np.pi / points
    half = sector / 2
    p1 = np.array([1.0, 0.0])
    p2 = np.array([inner * math.cos(half), inner * math.sin(half)])

    def inside(u, v):
        r = np.hypot(u, v)
        a = np.arctan2(v, u) + np.pi / 2  # tip up (v is down)
        a = np.mod(a, sector)
        a = np.abs(np.where(a > half, a - sector, a))
        x, y = r * np.cos(a), r * np.sin(a)
        # inside if on the origin side of the edge p1 -> p2
        cross = (p2[0] - p1[0]) * (y - p1[1]) - (p2[1] - p1[1]) * (x - p1[0])
        return (cross >= 0) | (r <= inner * 0.999)

    return inside


def _heart(u, v):
    x = u * 1.12
    y = -v * 1.12 + 0.12
    return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0


def _crescent(u, v):
    return (u * u + v * v <= 1.0) & ((u - 0.42) ** 2 + (v + 0.22) ** 2 >= 0.72 ** 2)


def _chevron(u, v):
    base = -0.75 + 1.05 * np.abs(u)
    return (v >= base) & (v <= base + 0.62) & (np.abs(u) <= 0.95)


SHAPES: dict[str, Callable[[Array, Array], Array]] = {
    "circle": lambda u, v: u * u + v * v <= 1.0,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.8,
    "ellipse": lambda u, v: (u / 0.66) ** 2 + v * v <= 1.0,
    "capsule": lambda u, v: u * u + np.maximum(np.abs(v) - 0.6, 0.0) ** 2 <= 0.4 ** 2,
    "hexagon": _ngon(6, 0.0),
    "pentagon": _ngon(5, 90.0),
    "triangle": _ngon(3, 90.0),
    "diamond": lambda u, v: np.abs(u) / 0.72 + np.abs(v) <= 1.0,
    "ring": lambda u, v: (u * u + v * v <= 1.0) & (u * u + v * v >= 0.56 ** 2),
    "star": _star(5, 0.45),
    "cross": lambda u, v: ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95)),
    "heart": _heart,
    "crescent": _crescent,
    "chevron": _chevron,
}


@lru_cache(maxsize=None)
def shape_stats(shape: str) -> tuple[float, float, float]:
    """(area in unit coordinates, circumradius, collision radius) of a shape."""
    g = np.linspace(-1.3, 1.3, 521)
    u, v = np.meshgrid(g, g)
    ins = SHAPES[shape](u, v)
    cell = (g[1] - g[0]) ** 2
    area = float(ins.sum() * cell)
    rc = float(np.hypot(u[ins], v[ins]).max())
    r_eff = math.sqrt(area / math.pi)
    return area, rc, 0.5 * (r_eff + rc)


# --------------------------------------------------------------------------------------------
# Looks and sprites
# --------------------------------------------------------------------------------------------

TEXTURES = ("solid", "stripes", "checks", "dots", "gradient")


@dataclass
class Look:
    shape: str
    texture: str
    color: tuple[float, float, float]
    color2: tuple[float, float, float]
    angle: float  # degrees, orientation of the shape
    tex_angle: float  # degrees
    tex_period: float  # object radii
    tex_phase: tuple[float, float]  # in periods


def jitter_color(rgb: Sequence[float], rng: np.random.Generator, amount: float = 1.0) -> tuple[float, float, float]:
    """A shade of ``rgb``: small hue shift, saturation and value scaled."""
    h, s, v = colorsys.rgb_to_hsv(*rgb)
    h = (h + rng.uniform(-0.02, 0.02) * amount) % 1.0
    s = float(np.clip(s * (1 + rng.uniform(-0.15, 0.1) * amount), 0, 1))
    v = float(np.clip(v * (1 + rng.uniform(-0.15, 0.12) * amount), 0, 1))
    return tuple(float(x) for x in colorsys.hsv_to_rgb(h, s, v))  # type: ignore[return-value]


def _texture(look: Look, u: Array, v: Array) -> Array:
    """Share (0..1) of the second colour at unit coordinates (u, v)."""
    tex = look.texture
    if tex == "solid":
        return np.zeros(u.shape, np.float32)
    a = np.deg2rad(look.tex_angle)
    p = max(look.tex_period, 0.1)
    if tex == "stripes":
        w = (u * np.cos(a) + v * np.sin(a)) / p + look.tex_phase[0]
        return np.clip(0.5 + 2.5 * np.sin(2 * np.pi * w), 0, 1).astype(np.float32)
    if tex == "checks":
        ca, sa = np.cos(a * 0.25), np.sin(a * 0.25)
        x = (u * ca + v * sa) / p + look.tex_phase[0]
        y = (-u * sa + v * ca) / p + look.tex_phase[1]
        return ((np.floor(x) + np.floor(y)) % 2).astype(np.float32)
    if tex == "dots":
        x = u / p + look.tex_phase[0]
        y = v / p + look.tex_phase[1]
        d = np.hypot(x - np.round(x), y - np.round(y))
        return np.clip((0.3 - d) * 12 + 0.5, 0, 1).astype(np.float32)
    if tex == "gradient":
        w = u * np.cos(a) + v * np.sin(a)
        return np.clip(0.5 + 0.5 * w + 0.3 * (look.tex_phase[0] - 0.5), 0, 1).astype(np.float32)
    raise ValueError(f"unknown texture {tex}")


@dataclass
class Sprite:
    half: int  # sprite is (2*half+1)^2, centred on the object's centre pixel
    alpha: Array  # float32 [h, w] coverage 0..1
    rgb: Array  # float32 [h, w, 3] premultiplied by nothing: the object's colour
    solid: Array  # bool [h, w]: alpha >= 0.5 (the pixels the object owns when on top)


def render_sprite(look: Look, radius: float, scale: float = 1.0) -> Sprite:
    """One object, drawn at ``radius`` pixels (times ``scale``), anti-aliased."""
    inside = SHAPES[look.shape]
    _, rc, _ = shape_stats(look.shape)
    R = max(radius * scale, 0.5)
    half = int(math.ceil(R * rc)) + 1
    d = np.arange(-half, half + 1, dtype=np.float32)
    a = np.deg2rad(look.angle)
    ca, sa = math.cos(a), math.sin(a)
    cover = np.zeros((d.size, d.size), np.float32)
    for oy in (-0.25, 0.25):
        y = (d + oy)[:, None]
        for ox in (-0.25, 0.25):
            x = (d + ox)[None, :]
            u = (x * ca + y * sa) / R
            v = (-x * sa + y * ca) / R
            cover += inside(u, v)
    cover *= 0.25
    x = d[None, :]
    y = d[:, None]
    u = (x * ca + y * sa) / R
    v = (-x * sa + y * ca) / R
    t = _texture(look, u, v)[..., None]
    c1 = np.asarray(look.color, np.float32)
    c2 = np.asarray(look.color2, np.float32)
    rgb = c1 * (1 - t) + c2 * t
    shade = 1.0 + 0.12 * np.clip(-(0.5 * x + 0.8 * y) / R, -1.2, 1.2)  # light from the top left
    rgb = np.clip(rgb * shade[..., None], 0, 1).astype(np.float32)
    return Sprite(half, cover, rgb, cover >= 0.5)


# --------------------------------------------------------------------------------------------
# Backgrounds
# --------------------------------------------------------------------------------------------

BACKGROUND_KINDS = ("linear", "radial", "corners", "clouds", "pattern")


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> Array:
    """Value noise in 0..1: a coarse random grid upsampled with smoothstep interpolation."""
    gh = max(2, int(round(cells * h / max(h, w))) + 1)
    gw = max(2, int(round(cells * w / max(h, w))) + 1)
    g = rng.random((gh, gw)).astype(np.float32)
    ys = np.linspace(0, gh - 1, h, dtype=np.float32)
    xs = np.linspace(0, gw - 1, w, dtype=np.float32)
    y0 = np.minimum(ys.astype(int), gh - 2)
    x0 = np.minimum(xs.astype(int), gw - 2)
    fy = ys - y0
    fx = xs - x0
    fy = fy * fy * (3 - 2 * fy)
    fx = fx * fx * (3 - 2 * fx)
    top = g[y0][:, x0] * (1 - fx) + g[y0][:, x0 + 1] * fx
    bot = g[y0 + 1][:, x0] * (1 - fx) + g[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy)[:, None] + bot * fy[:, None]


def _bg_color(rng: np.random.Generator) -> Array:
    h = rng.random()
    s = rng.uniform(0.05, 0.5)
    v = rng.uniform(0.22, 0.9)
    return np.asarray(colorsys.hsv_to_rgb(h, s, v), np.float32)


def make_background(rng: np.random.Generator, width: int, height: int,
                    avoid: Sequence[Sequence[float]] = (), min_dist: float = 0.3,
                    kind: Optional[str] = None) -> tuple[Array, dict]:
    """A clip background float32 [H, W, 3] in 0..1 and a description of it.

    Colours are muted and kept at least ``min_dist`` (RGB distance) from every colour in
    ``avoid`` (the colours of all objects of the clip, sounding or not), so objects stay
    visible without the background saying which one sounds.
    """
    if kind is None:
        kind = str(rng.choice(BACKGROUND_KINDS, p=[0.25, 0.2, 0.2, 0.15, 0.2]))
    av = np.asarray(avoid, np.float32).reshape(-1, 3)

    def color() -> Array:
        c = _bg_color(rng)
        for _ in range(40):
            if av.size == 0 or np.min(np.linalg.norm(av - c, axis=1)) >= min_dist:
                break
            c = _bg_color(rng)
        return c

    H, W = height, width
    yy = (np.arange(H, dtype=np.float32)[:, None] + 0.5) / H
    xx = (np.arange(W, dtype=np.float32)[None, :] + 0.5) / W
    c0, c1 = color(), color()
    info: dict = {"kind": kind}
    if kind in ("linear", "pattern"):
        a = rng.uniform(0, 2 * np.pi)
        w = (xx - 0.5) * np.cos(a) + (yy - 0.5) * np.sin(a)
        w = (w - w.min()) / max(float(w.max() - w.min()), 1e-6)
        img = c0 * (1 - w[..., None]) + c1 * w[..., None]
        info["angle"] = round(float(np.rad2deg(a)), 3)
    elif kind == "radial":
        cx, cy = rng.uniform(0.1, 0.9, size=2)
        r = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        r = np.clip(r / max(float(r.max()), 1e-6), 0, 1)
        img = c0 * (1 - r[..., None]) + c1 * r[..., None]
    elif kind == "corners":
        c2, c3 = color(), color()
        top = c0 * (1 - xx[..., None]) + c1 * xx[..., None]
        bot = c2 * (1 - xx[..., None]) + c3 * xx[..., None]
        img = top * (1 - yy[..., None]) + bot * yy[..., None]
    elif kind == "clouds":
        n = 0.65 * _smooth_noise(rng, H, W, int(rng.integers(2, 5))) + 0.35 * _smooth_noise(rng, H, W, int(rng.integers(6, 12)))
        img = c0 * (1 - n[..., None]) + c1 * n[..., None]
    else:
        raise ValueError(f"unknown background kind {kind}")
    img = img.astype(np.float32)
    if kind == "pattern":
        pat = str(rng.choice(["stripes", "checks", "dots", "waves"]))
        period = float(rng.uniform(0.04, 0.15)) * max(W, H)
        amp = float(rng.uniform(0.04, 0.08))
        a = rng.uniform(0, np.pi)
        X = np.arange(W, dtype=np.float32)[None, :]
        Y = np.arange(H, dtype=np.float32)[:, None]
        s = (X * np.cos(a) + Y * np.sin(a)) / period
        if pat == "stripes":
            p = np.sign(np.sin(2 * np.pi * s))
        elif pat == "checks":
            t = (-X * np.sin(a) + Y * np.cos(a)) / period
            p = ((np.floor(s) + np.floor(t)) % 2) * 2 - 1
        elif pat == "dots":
            t = (-X * np.sin(a) + Y * np.cos(a)) / period
            p = (np.hypot(s - np.round(s), t - np.round(t)) < 0.25) * 2.0 - 1
        else:
            t = (-X * np.sin(a) + Y * np.cos(a)) / period
            p = np.sin(2 * np.pi * (s + 0.3 * np.sin(2 * np.pi * t / 3)))
        img = img + amp * p[..., None].astype(np.float32)
        info.update(pattern=pat, period=round(period, 3), contrast=round(amp, 4))
    else:
        # low-contrast blotches everywhere else
        amp = float(rng.uniform(0.02, 0.06))
        img = img + amp * (_smooth_noise(rng, H, W, int(rng.integers(4, 10)))[..., None] - 0.5) * 2
    img = img + rng.normal(0, 0.008, size=img.shape).astype(np.float32)  # film grain
    info["colors"] = [[round(float(x), 4) for x in c] for c in (c0, c1)]
    return np.clip(img, 0, 1).astype(np.float32), info


# --------------------------------------------------------------------------------------------
# Motion
# --------------------------------------------------------------------------------------------


def place_and_move(rng: np.random.Generator, width: int, height: int, n_frames: int, fps: float,
                   margins: Sequence[float], radii: Sequence[float], speed: tuple[float, float] = (0.05, 0.2),
                   substeps: int = 2) -> Array:
    """Centres float64 [T, O, 2] (x, y): smooth wandering, bouncing off the frame and each other.

    ``margins``: distance each centre keeps from the frame edges (the shape's extent).
    ``radii``: collision radii; pairs are pushed apart when closer than the sum of theirs,
    which keeps overlap limited.
    """
    O = len(margins)
    m = np.array([[min(mi, width / 2 - 0.5), min(mi, height / 2 - 0.5)] for mi in margins], np.float64).reshape(O, 2)
    r = np.asarray(radii, np.float64)
    lo = m
    hi = np.array([width, height], np.float64) - m
    pos = np.zeros((O, 2))
    for i in range(O):  # rejection sampling of a non-overlapping start
        best, best_gap = None, -np.inf
        for _ in range(200):
            p = lo[i] + rng.random(2) * np.maximum(hi[i] - lo[i], 0)
            gap = min([np.linalg.norm(p - pos[j]) - r[i] - r[j] for j in range(i)], default=np.inf)
            if gap > best_gap:
                best, best_gap = p, gap
            if gap >= 0:
                break
        pos[i] = best
    scale = min(width, height)
    spd = rng.uniform(*speed, size=O) * scale
    head = rng.uniform(0, 2 * np.pi, size=O)
    vel = np.stack([np.cos(head), np.sin(head)], 1) * spd[:, None]
    out = np.zeros((n_frames, O, 2))
    dt = 1.0 / fps / substeps
    turn = rng.uniform(0.4, 1.2, size=O)  # how much each object wanders
    for k in range(n_frames):
        out[k] = pos
        for _ in range(substeps):
            # wander: rotate the velocity a little, keep the speed near its own
            ang = rng.normal(0, 1, size=O) * turn * np.sqrt(dt) * 0.6
            c, s = np.cos(ang), np.sin(ang)
            vel = np.stack([vel[:, 0] * c - vel[:, 1] * s, vel[:, 0] * s + vel[:, 1] * c], 1)
            sp = np.linalg.norm(vel, axis=1, keepdims=True) + 1e-9
            vel = vel / sp * (sp + (spd[:, None] - sp) * 0.05)
            pos = pos + vel * dt
            for i in range(O):  # objects push each other apart (elastic, equal masses)
                for j in range(i + 1, O):
                    dvec = pos[j] - pos[i]
                    dist = float(np.hypot(*dvec))
                    need = r[i] + r[j]
                    if dist < need:
                        nrm = dvec / dist if dist > 1e-6 else np.array([1.0, 0.0])
                        push = 0.5 * (need - dist)
                        pos[i] -= nrm * push
                        pos[j] += nrm * push
                        rel = float(np.dot(vel[j] - vel[i], nrm))
                        if rel < 0:
                            vel[i] += rel * nrm
                            vel[j] -= rel * nrm
            # bounce off the frame
            low = pos < lo
            high = pos > hi
            pos = np.where(low, 2 * lo - pos, pos)
            pos = np.where(high, 2 * hi - pos, pos)
            pos = np.clip(pos, lo, np.maximum(hi, lo))
            vel = np.where(low, np.abs(vel), vel)
            vel = np.where(high, -np.abs(vel), vel)
    return out
