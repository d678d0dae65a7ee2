"""The photographic world of the synthetic benchmark (``avstudio synth --world photo``).

Real pictures of things that make sound (Debian's qabcs-data: animals, instruments, food,
toys, household things; photographs and drawings), each playing its own recording, composited
over real photographs, with what a model meets in real footage:

* objects of 5-35 % of the frame, moving with acceleration, changing scale (nearer/farther),
  flipped and slightly rotated, colour/brightness jitter and blur per object, partly hidden by
  each other and by foreground crops of a photograph, sometimes partly out of the frame;
* backgrounds are random crops of real photographs that pan and zoom slowly (no two clips
  share a view), with depth-of-field blur; camera exposure/colour jitter, sensor noise and
  H.264 at realistic rates;
* each sounding object visibly reacts to its own sound: a short pulse (scale-up, brightening)
  at each onset of its recording, and motion that follows its loudness (bobbing, swaying or
  shaking); 0-2 silent visible distractors (some of them fidget, at the rhythm of a sound
  nobody plays); off-screen ambience (city, countryside, forest, swamp, crowds, birds) at a
  random level belongs to no object;
* sound: each object's recording placed at a random offset (short calls repeated after
  natural gaps), slightly sped up or slowed down, loudness-normalised, then gains within
  +-5 dB (so any two sources are within 10 dB); 16 kHz mono; the stems are kept exactly.

The same ``(seed, index, n_sources, config)`` always gives the same clip, in any process.
Outputs and sidecars are those of the shapes world (``avstudio.data.synth``): mp4 + ``.json``
+ ``.gt.npz`` + ``manifest.csv``; docs/ground_truth.md describes both worlds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import DataError
from . import photo_bank as pb
from .synth_clip import SynthClip, parse_size

FORMAT = "avstudio-synth/1"
WORLD = "photo"
PICTURE_SPLITS = ("train", "val", "test", "all")
MAX_SOURCES = 6
_CLIP_PEAK = 0.89
REF_RMS = 0.1  # every stem is normalised to this RMS over its active part (-20 dBFS)


@dataclass
class PhotoConfig:
    """Everything that shapes a photo-world clip, apart from its seed, index and source count."""

    size: tuple[int, int] = (224, 224)  # (width, height), even
    fps: float = 25.0
    duration: float = 4.0
    sample_rate: int = 16000
    n_sources: tuple[int, ...] = (1,)
    n_distractors: tuple[int, int] = (0, 2)
    pictures: str = "train"  # which split the objects come from: train | val | test | all
    object_area: tuple[float, float] = (0.05, 0.35)  # each object's silhouette, share of the frame
    max_total_area: float = 0.45  # objects shrink together when their shares add up above this
    gain_db: float = 5.0  # each stem's level: reference +- this (any two within 2x this)
    ambient_prob: float = 0.6  # share of clips with off-screen ambience
    ambient_level: tuple[float, float] = (0.05, 0.5)  # its RMS relative to a source's
    occluder_prob: float = 0.35  # share of clips with a foreground crop of a photograph
    pulse_scale: float = 0.10
    pulse_brightness: float = 0.25
    pulse_decay: float = 0.07  # s
    react: float = 1.0  # strength of the motion that follows loudness (0: none)
    distractor_fidget: float = 0.35  # share of distractors moving to a sound nobody plays
    gm_share: float = 0.3  # instrument pictures with a General-MIDI partner play a phrase instead
    crf: tuple[int, int] = (22, 32)  # H.264 quality drawn per clip (realistic web rates)
    world: str = WORLD

    def __post_init__(self) -> None:
        self.size = parse_size(self.size)
        ns = self.n_sources
        self.n_sources = tuple(int(x) for x in (ns if isinstance(ns, (tuple, list)) else (ns,)))
        nd = self.n_distractors
        if isinstance(nd, (int, np.integer)):
            nd = (int(nd), int(nd))
        self.n_distractors = (int(nd[0]), int(nd[1]))
        self.object_area = (float(self.object_area[0]), float(self.object_area[1]))
        self.ambient_level = (float(self.ambient_level[0]), float(self.ambient_level[1]))
        c = self.crf
        self.crf = (int(c), int(c)) if isinstance(c, (int, np.integer)) else (int(c[0]), int(c[1]))

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]

    @property
    def n_frames(self) -> int:
        return max(1, int(round(self.duration * self.fps)))

    @property
    def n_samples(self) -> int:
        return int(round(self.duration * self.sample_rate))

    def validate(self, n_sources: Optional[int] = None) -> None:
        w, h = self.size
        if w < 32 or h < 32:
            raise DataError(f"frame size {w}x{h} is too small (at least 32x32)")
        if w % 2 or h % 2:
            raise DataError(f"frame size {w}x{h} must have an even width and height (H.264)")
        if w * h > 4096 * 4096:
            raise DataError(f"frame size {w}x{h} is too large")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise DataError(f"fps must be positive, got {self.fps}")
        if not (self.duration > 0 and math.isfinite(self.duration)):
            raise DataError(f"duration must be positive, got {self.duration}")
        if not 4000 <= int(self.sample_rate) <= 192000:
            raise DataError(f"sample rate {self.sample_rate} is out of range (4000..192000)")
        lo, hi = self.n_distractors
        if lo < 0 or hi < lo or hi > 6:
            raise DataError(f"distractor range {lo}-{hi} must be a MIN-MAX range within 0..6")
        a0, a1 = self.object_area
        if not 0 < a0 <= a1 <= 0.6:
            raise DataError(f"object area range {a0}-{a1} must lie within 0..0.6 of the frame")
        if self.pictures not in PICTURE_SPLITS:
            raise DataError(f"unknown picture split '{self.pictures}' (use train, val, test or all)")
        if not 0 <= self.crf[0] <= self.crf[1] <= 51:
            raise DataError(f"H.264 quality range {self.crf} must lie within 0..51")
        for n in (self.n_sources if n_sources is None else (n_sources,)):
            if not 1 <= int(n) <= MAX_SOURCES:
                raise DataError(f"number of sound sources must be 1..{MAX_SOURCES} in the photo world, got {n}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PhotoConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


# --------------------------------------------------------------------------------------------
# Sound
# --------------------------------------------------------------------------------------------


def active_rms(x: np.ndarray, sr: int, floor_db: float = -30.0) -> float:
    from .instruments import active_rms as _a

    return _a(x, sr, floor_db)


def _speed(y: np.ndarray, factor: float) -> np.ndarray:
    """Play ``y`` ``factor`` times faster (pitch moves with it, like a tape)."""
    if abs(factor - 1.0) < 1e-6 or len(y) < 2:
        return y
    n = max(2, int(round(len(y) / factor)))
    x = np.linspace(0, len(y) - 1, n)
    return np.interp(x, np.arange(len(y)), y).astype(np.float32)


def place_recording(rec: np.ndarray, n: int, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    """A recording laid into ``n`` samples: a random stretch of a long one, or a short one at a
    random offset, repeated after natural gaps. Returns (wave, start times of each placement)."""
    out = np.zeros(n, np.float32)
    L = len(rec)
    starts: list[float] = []
    if L >= n * 0.9 and rng.random() < 0.7:
        a = int(rng.integers(0, max(1, L - n + 1)))
        seg = rec[a:a + n]
        out[:len(seg)] = seg
        if a < int(0.05 * sr):
            starts.append(0.0)
        return out, starts
    pos = int(rng.uniform(-0.3 * min(L, n), 0.45 * n))
    first = True
    while pos < n:
        a, b = max(pos, 0), min(pos + L, n)
        if b > a:
            out[a:b] += rec[a - pos:b - pos]
            if pos >= 0:
                starts.append(pos / sr)
        if not first and rng.random() < 0.25:
            break
        first = False
        pos += L + int(rng.uniform(0.15, 1.2) * sr)
    return out, starts


def onsets_of_wave(wave: np.ndarray, sr: int, min_gap: float = 0.1) -> np.ndarray:
    """Onset times (s): where the 10 ms energy envelope rises by >= 6 dB within 30 ms and is
    within 30 dB of the stem's loudest moment (on a 64-sample grid, as the shapes world)."""
    hop = sr // 100
    m = len(wave) // hop
    if m < 4:
        return np.zeros(0)
    e = np.square(wave[: m * hop].astype(np.float64)).reshape(m, hop).mean(axis=1)
    db = 10 * np.log10(e + 1e-12)
    top = db.max()
    rise = db[3:] - np.minimum.reduce([db[:-3], db[1:-2], db[2:-1]])
    cand = np.nonzero((rise >= 6.0) & (db[3:] > top - 30.0))[0] + 3
    out: list[float] = []
    last = -1e9
    for c in cand:
        # walk back to the start of the rise
        j = c
        while j > 0 and db[j - 1] < db[j] - 1.0 and c - j < 3:
            j -= 1
        t = j * hop / sr
        if t - last >= min_gap:
            out.append(round(t * sr / 64) * 64 / sr)
            last = t
    return np.asarray(out, np.float64)


def loudness(wave: np.ndarray, sr: int, times: np.ndarray, win: float = 0.04, range_db: float = 30.0) -> np.ndarray:
    """Loudness at ``times`` in 0..1 (0: 30 dB or more below the stem's loudest 40 ms)."""
    h = max(1, int(win * sr / 2))
    cs = np.concatenate([[0.0], np.cumsum(np.square(wave.astype(np.float64)))])
    idx = np.clip((times * sr).astype(int), 0, len(wave))
    a = np.clip(idx - h, 0, len(wave))
    b = np.clip(idx + h, 0, len(wave))
    e = (cs[b] - cs[a]) / np.maximum(b - a, 1)
    ref = max(float(np.max(e)) if len(e) else 0.0, 1e-12)
    # the stem's loudest moment overall, not only at frame times
    n = len(wave) // (2 * h)
    if n:
        ref = max(ref, float(np.square(wave[: n * 2 * h].astype(np.float64)).reshape(n, 2 * h).mean(axis=1).max()))
    db = 10 * np.log10(e / ref + 1e-12)
    return np.clip(1.0 + db / range_db, 0.0, 1.0)


def ambient_noise(bank: pb.Bank, rng: np.random.Generator, n: int, sr: int) -> tuple[np.ndarray, str]:
    """Off-screen ambience: a random stretch of a real ambient recording (RMS = REF_RMS)."""
    from .instruments import offscreen_noise

    kinds = sorted(bank.ambient)
    y = None
    kind = "wind"
    if kinds:
        kind = kinds[int(rng.integers(len(kinds)))]
        files = bank.ambient[kind]
        path = files[int(rng.integers(len(files)))]
        u = rng.random()
        try:
            rec = pb.load_sound(path, sr)  # decoded once per process (cached)
        except DataError:
            rec = None
        if rec is not None and len(rec) > sr // 4:
            reps = int(math.ceil(n / len(rec))) + 1
            long = np.tile(rec, reps) if len(rec) < n + 1 else rec
            a = int(u * max(0, len(long) - n))
            y = long[a:a + n].astype(np.float32)
            if len(y) < n:
                y = np.pad(y, (0, n - len(y)))
            kind = f"{kind}:{path.rsplit('/', 1)[-1]}"
    if y is None:
        y, _ = offscreen_noise(rng, n, sr, "wind")
        kind = "wind:synthetic"
    y = y - y.mean()
    r = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if n else 0.0
    if r > 0:
        y = y * np.float32(REF_RMS / r)
    return y.astype(np.float32), kind


# --------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------


def _gauss_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an image [h, w] or [h, w, C], uint8 or float32 (OpenCV; edges replicated)."""
    if sigma < 0.3:
        return img
    import cv2

    src = np.ascontiguousarray(img) if img.dtype == np.uint8 else np.ascontiguousarray(img, dtype=np.float32)
    return cv2.GaussianBlur(src, (0, 0), float(sigma), borderType=cv2.BORDER_REPLICATE)


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Resize a float32 image [h, w, C]: area averaging when shrinking (no aliasing), bilinear
    when enlarging (OpenCV)."""
    import cv2

    shrink = w < img.shape[1] or h < img.shape[0]
    out = cv2.resize(np.ascontiguousarray(img, dtype=np.float32), (int(w), int(h)),
                     interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if out.ndim == 2:
        out = out[..., None]
    return np.clip(out, 0.0, 1.0)


def _paths(rng: np.random.Generator, T: int, fps: float, lo: np.ndarray, hi: np.ndarray,
           speed: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Centres [T, O, 2]: each object wanders with acceleration (a smoothly varying random
    force, some drag), bounces inside its box [lo_o, hi_o], and is pushed away from the others
    when closer than 0.85x the sum of their radii (partial overlap stays possible)."""
    O = len(speed)
    pos = np.zeros((O, 2))
    for i in range(O):  # a start that overlaps the others as little as it can
        best, gap_best = None, -np.inf
        for _ in range(60):
            p = lo[i] + rng.random(2) * np.maximum(hi[i] - lo[i], 0)
            gap = min([np.hypot(*(p - pos[j])) - 0.85 * (radius[i] + radius[j]) for j in range(i)], default=np.inf)
            if gap > gap_best:
                best, gap_best = p, gap
            if gap >= 0:
                break
        pos[i] = best
    ang = rng.uniform(0, 2 * math.pi, O)
    vel = np.stack([np.cos(ang), np.sin(ang)], 1) * (speed * rng.uniform(0.3, 1.0, O))[:, None]
    force = np.zeros((O, 2))
    dt = 1.0 / fps
    out = np.zeros((T, O, 2))
    for t in range(T):
        out[t] = pos
        force = 0.85 * force + rng.normal(0, 1, (O, 2)) * speed[:, None] * 2.0
        for i in range(O):
            for j in range(i + 1, O):
                dv = pos[i] - pos[j]
                dist = float(np.hypot(*dv)) + 1e-6
                lim = 0.85 * (radius[i] + radius[j])
                if dist < lim:
                    push = dv / dist * (lim - dist) * 4.0
                    force[i] += push
                    force[j] -= push
        vel = vel + force * dt - 0.3 * vel * dt
        sp = np.hypot(vel[:, 0], vel[:, 1])
        cap = np.maximum(sp / (2.0 * speed), 1.0)
        vel = vel / cap[:, None]
        pos = pos + vel * dt
        below, above = pos < lo, pos > hi
        pos = np.where(below, 2 * lo - pos, np.where(above, 2 * hi - pos, pos))
        vel = np.where(below, np.abs(vel), np.where(above, -np.abs(vel), vel))
        pos = np.clip(pos, lo, hi)
    return out


def _affine_sample(img: np.ndarray, theta: np.ndarray, out_h: int, out_w: int,
                   border: str = "zero") -> np.ndarray:
    """Bilinear samples of ``img`` [h, w, C] through one affine map per output frame.

    ``theta`` [T, 2, 3] maps output coordinates normalised to -1..1 (pixel edges, as torch's
    ``affine_grid`` with ``align_corners=False``) to input coordinates normalised the same way;
    outside the input is zero (``border="zero"``) or the nearest edge pixel (``"edge"``).
    Returns [T, out_h, out_w, C], uint8 for a uint8 image, else float32. OpenCV's warpAffine: each output pixel computed on its
    own (fixed interpolation tables), so the result does not depend on the thread count.
    """
    import cv2

    h, w, C = img.shape
    src = np.ascontiguousarray(img) if img.dtype == np.uint8 else np.ascontiguousarray(img, dtype=np.float32)
    T = theta.shape[0]
    out = np.empty((T, out_h, out_w, C), src.dtype)
    bm = cv2.BORDER_CONSTANT if border == "zero" else cv2.BORDER_REPLICATE
    for t in range(T):
        (a, b, c), (d, e, f) = theta[t]
        # normalised -> pixel centres (OpenCV: pixel k is centred at k)
        M = np.array([
            [w / out_w * a, w / out_h * b, w / 2 * (a * (1 / out_w - 1) + b * (1 / out_h - 1) + c + 1) - 0.5],
            [h / out_w * d, h / out_h * e, h / 2 * (d * (1 / out_w - 1) + e * (1 / out_h - 1) + f + 1) - 0.5],
        ], np.float64)
        cv2.warpAffine(src, M, (out_w, out_h), dst=out[t] if C > 1 else out[t, ..., 0],
                       flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=bm, borderValue=0)
    return out


def _pan_zoom(region: np.ndarray, cx: np.ndarray, cy: np.ndarray, scale: np.ndarray, W: int, H: int) -> np.ndarray:
    """Frames [T, H, W, 3] of a camera over ``region`` (uint8): frame t shows the window centred
    on (cx[t], cy[t]) (region px) at ``scale[t]`` region px per frame px. The region is resized
    once per zoom level (levels 1 % apart) and each frame is a whole-pixel crop of
    its level: a slow pan moves in steps of at most one pixel, a zoom in steps of 1 %."""
    import cv2

    T = len(cx)
    Hr, Wr = region.shape[:2]
    lo, hi = float(scale.min()), float(scale.max())
    n = max(1, int(math.ceil(math.log(hi / lo) / math.log(1.01))) + 1) if hi > lo * 1.001 else 1
    levels = lo * (hi / lo) ** (np.arange(n) / max(n - 1, 1)) if n > 1 else np.array([lo])
    imgs = []
    for sc in levels:
        w, h = max(W, int(math.ceil(Wr / sc))), max(H, int(math.ceil(Hr / sc)))
        # bilinear is enough: the region was blurred for anti-aliasing before (sigma ~0.45 px/px)
        imgs.append(cv2.resize(region, (w, h), interpolation=cv2.INTER_LINEAR))
    which = np.abs(np.log(scale[:, None]) - np.log(levels[None, :])).argmin(axis=1)
    out = np.empty((T, H, W, 3), np.uint8)
    for t in range(T):
        img = imgs[which[t]]
        sc = levels[which[t]]
        x = int(round(cx[t] / sc - W / 2))
        y = int(round(cy[t] / sc - H / 2))
        x = min(max(x, 0), img.shape[1] - W)
        y = min(max(y, 0), img.shape[0] - H)
        out[t] = img[y:y + H, x:x + W]
    return out


@dataclass
class _Obj:
    item: pb.Item
    sounding: bool
    sprite: np.ndarray  # uint8 [h, w, 4], premultiplied, blurred, colour-jittered
    sprite_scale: float  # display px per sprite px at scale 1.0 (before scale changes and pulses)
    area: float
    flip: bool
    angle: float
    react: str  # bob | sway | shake | none
    z: int = 0
    stem_index: Optional[int] = None
    onsets: np.ndarray = None  # type: ignore[assignment]
    gain_db: float = 0.0
    recording: str = ""
    speed_factor: float = 1.0


def _pick_items(rng: np.random.Generator, pool: list[pb.Item], n: int, avoid_cls: set[str],
                problems: list[str], need_sound: bool = True) -> list[pb.Item]:
    """n items of n different classes (not in avoid_cls) whose files decode."""
    out: list[pb.Item] = []
    used = set(avoid_cls)
    for j in rng.permutation(len(pool)):
        if len(out) == n:
            break
        it = pool[int(j)]
        if it.cls in used:
            continue
        try:
            pb.load_picture(it.picture)
            if need_sound:
                pb.load_sound(it.recording, 16000)
        except DataError as exc:
            problems.append(str(exc))
            continue
        out.append(it)
        used.add(it.cls)
    if len(out) < n:
        raise DataError(f"only {len(out)} usable pictures of different classes for {n} objects "
                        f"(bank split of {len(pool)} pictures)")
    return out


def render_photo_clip(seed: int, index: int, n_sources: Optional[int] = None,
                      config: Optional[PhotoConfig] = None, _background: Optional[float] = None,
                      _layers: Optional[dict] = None):
    """Render clip ``index`` of the photo-world set made with ``seed`` -> ``synth.SynthClip``.

    (For the tests only: ``_background`` replaces the photograph by a flat grey of that level,
    everything else unchanged; ``_layers`` receives the occluder's coverage [T, H, W].)"""
    from .instruments import render_source
    cfg = config or PhotoConfig()
    if n_sources is None:
        n_sources = cfg.n_sources[index % len(cfg.n_sources)]
    n_sources = int(n_sources)
    cfg.validate(n_sources)
    bank = pb.load_bank()
    pool = bank.pool(cfg.pictures)
    W, H = cfg.size
    T, N, sr, fps = cfg.n_frames, cfg.n_samples, int(cfg.sample_rate), float(cfg.fps)
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(index), 0x70686F746F])
    names = ("scene", "motion", "background", "audio", "look", "noise", "occluder", "camera")
    rs = {nm: np.random.default_rng(k) for nm, k in zip(names, ss.spawn(len(names)))}
    rng = rs["scene"]
    problems: list[str] = []

    # --- who is in the scene
    lo, hi = cfg.n_distractors
    n_dis = int(rng.integers(lo, hi + 1))
    snd_items = _pick_items(rng, pool, n_sources, set(), problems)
    # distractors: pictures of other classes, some of which have no recording at all
    dis_pool = pool + bank.pool(cfg.pictures, silent=True)
    dis_items = _pick_items(rng, dis_pool, n_dis, {it.cls for it in snd_items}, problems,
                            need_sound=False) if n_dis else []
    all_items = snd_items + dis_items
    O = len(all_items)
    areas = rng.uniform(*cfg.object_area, size=O)
    if areas.sum() > cfg.max_total_area:  # shrink what is above the smallest size, together
        a0 = cfg.object_area[0]
        extra = areas - a0
        room = max(cfg.max_total_area - O * a0, 0.0)
        areas = a0 + extra * (room / max(extra.sum(), 1e-9))
    look = rs["look"]
    objs: list[_Obj] = []
    for i, it in enumerate(all_items):
        pic = pb.load_picture(it.picture)
        ph, pw = pic.rgba.shape[:2]
        # display size: silhouette area = areas[i] * W * H  ->  bbox = that / fill
        bbox_area = areas[i] * W * H / pic.fill
        k = math.sqrt(bbox_area / (pw * ph))  # display px per picture px
        kmax = k * (1.0 + 0.25) * (1.0 + cfg.pulse_scale) * 1.1  # largest size on screen
        sw, sh = max(2, int(round(pw * kmax))), max(2, int(round(ph * kmax)))
        rgba = _resize(pic.rgba, sw, sh) if (sw, sh) != (pw, ph) else pic.rgba.copy()
        # colour/brightness jitter of the object (its own lighting)
        gain = look.uniform(0.8, 1.15)
        sat = look.uniform(0.75, 1.2)
        rgb = rgba[..., :3]
        grey = rgb.mean(axis=-1, keepdims=True)
        rgb = np.clip((grey + (rgb - grey) * sat) * gain * look.uniform(0.94, 1.06, size=3), 0, 1)
        a = rgba[..., 3:4]
        prem = np.concatenate([rgb * a, a], axis=-1).astype(np.float32)
        if look.random() < 0.6:  # out of focus: sigma in screen px, drawn at the sprite's scale
            prem = _gauss_blur(prem, look.uniform(0.0, 1.2) * kmax / k)
        prem = np.clip(prem * 255.0 + 0.5, 0, 255).astype(np.uint8)  # composited as bytes (fast)
        react = "none"
        sounding = i < n_sources
        if sounding:
            react = str(look.choice(["bob", "sway", "shake"]))
        elif look.random() < cfg.distractor_fidget:
            react = str(look.choice(["bob", "sway", "shake"]))
        objs.append(_Obj(it, sounding, prem, k / kmax, float(areas[i]), bool(look.random() < 0.5),
                         float(look.uniform(-12, 12)), react, stem_index=i if sounding else None))
    z_order = [int(x) for x in rng.permutation(O)]
    for z, o in enumerate(z_order):
        objs[o].z = z

    # --- sound
    arng = rs["audio"]
    stems = np.zeros((n_sources, N), np.float32)
    gains = arng.uniform(-cfg.gain_db, cfg.gain_db, size=max(n_sources, 1))
    for s in range(n_sources):
        ob = objs[s]
        srng = np.random.default_rng(arng.integers(0, 2 ** 63))
        partner = ob.item.gm_partner
        if partner is not None and srng.random() < cfg.gm_share:
            src = render_source(partner, srng, cfg.duration, sr)
            wave = src.wave[:N]
            ob.recording = f"gm:{partner}:{src.backend}"
            on = onsets_of_wave(wave, sr)
        else:
            rec = pb.load_sound(ob.item.recording, sr)
            ob.speed_factor = float(srng.uniform(0.93, 1.07))
            rec = _speed(rec, ob.speed_factor)
            r = active_rms(rec, sr)
            if r > 0:
                rec = rec * np.float32(REF_RMS / r)
            wave, _starts = place_recording(rec, N, sr, srng)
            ob.recording = f"qabcs:{ob.item.name}.ogg"
            on = onsets_of_wave(wave, sr)
        ob.onsets = on
        ob.gain_db = float(gains[s])
        stems[s] = wave * np.float32(10 ** (gains[s] / 20.0))
    noise = np.zeros(N, np.float32)
    amb_kind = None
    amb_level = 0.0
    nrng = rs["noise"]
    if cfg.ambient_prob > 0 and nrng.random() < cfg.ambient_prob:
        amb_level = float(nrng.uniform(*cfg.ambient_level))
        nz, amb_kind = ambient_noise(bank, nrng, N, sr)
        noise = nz * np.float32(amb_level)
    mix = stems.sum(axis=0) + noise
    peak = float(np.abs(mix).max()) if N else 0.0
    mgain = 1.0
    if peak > _CLIP_PEAK:
        mgain = _CLIP_PEAK / peak
        stems *= np.float32(mgain)
        noise *= np.float32(mgain)
    stems = (np.round(stems * 32768.0) / 32768.0).astype(np.float32)
    noise = (np.round(noise * 32768.0) / 32768.0).astype(np.float32)
    mix = (stems.sum(axis=0) + noise).astype(np.float32)

    # --- what each object does per frame: pulse (onsets) and loudness-driven motion
    times = np.arange(T) / fps
    pulse = np.zeros((T, O))
    drive = np.zeros((T, O))  # loudness driving the motion, 0..1
    prng = rs["motion"]
    for o, ob in enumerate(objs):
        if ob.sounding:
            on = ob.onsets
            drive[:, o] = loudness(stems[o], sr, times)
        elif ob.react != "none":  # a fidgeting distractor: the rhythm of a sound nobody plays
            ghost_it = pool[int(prng.integers(len(pool)))]  # (never heard in the clip)
            try:
                g = pb.load_sound(ghost_it.recording, sr)
                gw, _ = place_recording(g, N, sr, np.random.default_rng(prng.integers(0, 2 ** 63)))
                on = onsets_of_wave(gw, sr)
                drive[:, o] = loudness(gw, sr, times)
            except DataError as exc:
                problems.append(str(exc))
                on = np.zeros(0)
        else:
            on = np.zeros(0)
        if len(on) and (cfg.pulse_scale or cfg.pulse_brightness):
            d = times[:, None] - np.asarray(on)[None, :]
            pulse[:, o] = np.where(d >= 0, np.exp(-np.maximum(d, 0) / max(cfg.pulse_decay, 1e-3)), 0.0).max(axis=1)

    # --- motion paths, scale changes
    centres = np.zeros((T, O, 2))
    scales = np.ones((T, O))
    angles = np.zeros((T, O))
    mrng = rs["motion"]
    lo_ = np.zeros((O, 2))
    hi_ = np.zeros((O, 2))
    rad = np.zeros(O)
    for o, ob in enumerate(objs):
        sh, sw = ob.sprite.shape[:2]
        half_w, half_h = 0.5 * sw * ob.sprite_scale, 0.5 * sh * ob.sprite_scale
        # keep at least about 80 % of the object inside the frame
        lo_[o] = [min(0.6 * half_w, W / 2), min(0.6 * half_h, H / 2)]
        hi_[o] = [max(W - 0.6 * half_w, W / 2), max(H - 0.6 * half_h, H / 2)]
        rad[o] = math.sqrt(ob.area * W * H / math.pi)
    speeds = mrng.uniform(0.03, 0.18, O) * min(W, H)
    centres[:] = _paths(mrng, T, fps, lo_, hi_, speeds, rad)
    for o, ob in enumerate(objs):
        sh, sw = ob.sprite.shape[:2]
        half_w, half_h = 0.5 * sw * ob.sprite_scale, 0.5 * sh * ob.sprite_scale
        amp = mrng.uniform(0.0, 0.2)
        f = mrng.uniform(0.05, 0.25)
        ph = mrng.uniform(0, 2 * math.pi)
        scales[:, o] = np.exp(amp * np.sin(2 * math.pi * f * times + ph)) * (1.0 + cfg.pulse_scale * pulse[:, o])
        angles[:, o] = ob.angle
        e = drive[:, o] * cfg.react
        if ob.react == "bob":
            centres[:, o, 1] -= e * 0.12 * 2 * half_h
        elif ob.react == "sway":
            angles[:, o] += e * 10.0 * np.sin(2 * math.pi * 2.5 * times + ph)
        elif ob.react == "shake":
            centres[:, o, 0] += e * 0.06 * 2 * half_w * np.sin(2 * math.pi * 7.0 * times + ph)
            centres[:, o, 1] += e * 0.04 * 2 * half_h * np.cos(2 * math.pi * 5.0 * times + ph)

    # --- background: a crop of a photograph panning and zooming over the clip
    brng = rs["background"]
    bg_path = bank.backgrounds[int(brng.integers(len(bank.backgrounds)))]
    photo = pb.load_photo(bg_path)
    Hp, Wp = photo.shape[:2]
    view = brng.uniform(0.3, 0.75)  # crop width as a share of the photograph's width
    cw0 = view * Wp
    cw1 = cw0 * brng.uniform(0.85, 1.15)
    cw1 = min(cw1, Wp * 0.95, Hp * 0.95 * W / H)
    cw0 = min(cw0, Wp * 0.95, Hp * 0.95 * W / H)
    ch0, ch1 = cw0 * H / W, cw1 * H / W
    def _c(cw, ch):
        return np.array([brng.uniform(cw / 2, Wp - cw / 2), brng.uniform(ch / 2, Hp - ch / 2)])
    c0 = _c(cw0, ch0)
    pan = brng.normal(0, 0.06, 2) * np.array([Wp, Hp])
    c1 = np.clip(c0 + pan, [cw1 / 2, ch1 / 2], [Wp - cw1 / 2, Hp - ch1 / 2])
    u = 0.5 - 0.5 * np.cos(math.pi * times / max(cfg.duration, 1e-6))  # ease in/out
    cx = c0[0] + (c1[0] - c0[0]) * u
    cy = c0[1] + (c1[1] - c0[1]) * u
    cw = cw0 + (cw1 - cw0) * u
    # the photograph region the clip ever shows, blurred (anti-aliasing + depth of field)
    x0 = int(max(0, math.floor((cx - cw / 2).min()) - 4))
    x1 = int(min(Wp, math.ceil((cx + cw / 2).max()) + 4))
    y0 = int(max(0, math.floor((cy - cw * H / W / 2).min()) - 4))
    y1 = int(min(Hp, math.ceil((cy + cw * H / W / 2).max()) + 4))
    region = photo[y0:y1, x0:x1]  # uint8: warped as bytes (a quarter of the memory traffic)
    factor = float(cw.mean() / W)  # photograph px per frame px
    dof = brng.uniform(0.0, 2.0) if brng.random() < 0.6 else 0.0
    region = _gauss_blur(region, 0.45 * factor + dof * factor)
    canvas = _pan_zoom(region, cx - x0, cy - y0, cw / W, W, H)  # uint8 [T, H, W, 3]
    if _background is not None:
        canvas[:] = int(round(_background * 255))
    bg_info = {"photo": bg_path.rsplit("/backgrounds/", 1)[-1], "view": _r(view, 4),
               "start": [_r(c0[0] / Wp, 4), _r(c0[1] / Hp, 4)], "end": [_r(c1[0] / Wp, 4), _r(c1[1] / Hp, 4)],
               "zoom": _r(cw0 / cw1, 4), "blur_px": _r(dof, 3)}

    # --- objects, painter's order; label image for the masks. Each frame warps each sprite
    # straight into the part of the frame its bounding box covers (OpenCV, bilinear).
    import cv2

    label = np.full((T, H, W), 255, np.uint8)
    boxes = np.zeros((T, O, 4), np.float32)
    full_px = np.zeros((T, O))
    for o in z_order:
        ob = objs[o]
        sh, sw = ob.sprite.shape[:2]
        sprite_px = float((ob.sprite[..., 3] >= 128).sum())
        disp = ob.sprite_scale * scales[:, o]  # [T] display px per sprite px
        full_px[:, o] = sprite_px * disp ** 2  # the silhouette's size, inside the frame or not
        th = np.deg2rad(angles[:, o])
        ca, sa = np.cos(th), np.sin(th)
        fl = -1.0 if ob.flip else 1.0
        hx = disp * (np.abs(ca) * sw / 2 + np.abs(sa) * sh / 2)
        hy = disp * (np.abs(sa) * sw / 2 + np.abs(ca) * sh / 2)
        pb_ = ob.react != "none" and cfg.pulse_brightness > 0
        # the sprite drawn once per (scale, angle) state, quantised to 1 % and 1 degree, then
        # pasted at whole-pixel positions (a move of a fraction of a pixel is not drawn)
        cache: dict[tuple[int, int], tuple] = {}
        qs = np.round(scales[:, o] * 100).astype(int)
        qa = np.round(angles[:, o]).astype(int)
        for t in range(T):
            key = (int(qs[t]), int(qa[t]))
            hit = cache.get(key)
            if hit is None:
                d = ob.sprite_scale * key[0] / 100.0
                th_ = math.radians(key[1])
                c_, s_ = math.cos(th_), math.sin(th_)
                ww = 2 * int(math.ceil(d * (abs(c_) * sw / 2 + abs(s_) * sh / 2))) + 3
                hh = 2 * int(math.ceil(d * (abs(s_) * sw / 2 + abs(c_) * sh / 2))) + 3
                ex, ey = 0.5 - ww / 2, 0.5 - hh / 2
                M = np.array([[fl * c_ / d, fl * s_ / d, fl * (c_ * ex + s_ * ey) / d + sw / 2 - 0.5],
                              [-s_ / d, c_ / d, (-s_ * ex + c_ * ey) / d + sh / 2 - 0.5]])
                wt = cv2.warpAffine(ob.sprite, M, (ww, hh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0).reshape(hh, ww, 4)
                a1 = np.ascontiguousarray(wt[..., 3])
                a3 = cv2.merge([a1, a1, a1])
                solid = a1 >= 128
                bx, by, bw, bh = cv2.boundingRect(solid.view(np.uint8))
                ext = (bx, by, bx + bw, by + bh) if bw > 0 else None
                hit = (cv2.cvtColor(wt, cv2.COLOR_RGBA2RGB), a3, cv2.bitwise_not(a3), solid, ww, hh, ext)
                cache[key] = hit
            rgb, a3, inv3, solid, ww, hh, ext = hit
            x0 = int(round(centres[t, o, 0] - ww / 2))
            y0 = int(round(centres[t, o, 1] - hh / 2))
            X0, Y0, X1, Y1 = max(x0, 0), max(y0, 0), min(x0 + ww, W), min(y0 + hh, H)
            if X1 <= X0 or Y1 <= Y0:
                continue
            sl = (slice(Y0 - y0, Y1 - y0), slice(X0 - x0, X1 - x0))
            rgb_ = rgb[sl]
            if pb_ and pulse[t, o] > 0:  # brighten towards white, inside the silhouette
                k = float(cfg.pulse_brightness * pulse[t, o])
                rgb_ = cv2.addWeighted(rgb_, 1.0 - k, a3[sl], k, 0.0)
            reg = canvas[t, Y0:Y1, X0:X1]
            # premultiplied "over" in bytes: reg = reg * (255 - a) / 255 + rgb (saturating)
            cv2.add(cv2.multiply(reg, inv3[sl], scale=1.0 / 255), rgb_, dst=reg)
            label[t, Y0:Y1, X0:X1][solid[sl]] = o
            if ext is not None:  # the whole silhouette's box, clipped to the frame
                bx0, by0 = max(x0 + ext[0], 0), max(y0 + ext[1], 0)
                bx1, by1 = min(x0 + ext[2], W), min(y0 + ext[3], H)
                if bx1 > bx0 and by1 > by0:
                    boxes[t, o] = (bx0, by0, bx1, by1)

    # --- a foreground crop of a photograph (a leaf, a post, a branch...) in front of everything
    orng = rs["occluder"]
    occ_info = None
    if cfg.occluder_prob > 0 and orng.random() < cfg.occluder_prob:
        occ_info = _occluder(orng, bank, canvas, label, W, H, T, cx, cw, _layers)

    # --- camera: exposure / white balance drift, sensor noise
    crng = rs["camera"]
    bright = crng.uniform(-0.06, 0.06) + 0.03 * np.sin(2 * math.pi * crng.uniform(0.05, 0.2) * times + crng.uniform(0, 6.3))
    contrast = crng.uniform(0.85, 1.15)
    wb = crng.uniform(0.95, 1.05, size=3)
    sigma = crng.uniform(0.0, 0.012)
    # one lookup table per frame (exposure, contrast, white balance), then sensor noise: one grain
    # texture shifted by a random whole number of pixels each frame, added in bytes
    grain = np.clip(crng.standard_normal((H + 32, W + 32, 3)) * sigma * 255.0, -127, 127)
    g_pos = np.round(np.maximum(grain, 0)).astype(np.uint8)
    g_neg = np.round(np.maximum(-grain, 0)).astype(np.uint8)
    shifts = crng.integers(0, 33, size=(T, 2))
    v = np.arange(256, dtype=np.float64)[None, :, None] / 255.0
    luts = np.clip(((v - 0.5) * contrast + 0.5 + bright[:, None, None]) * wb[None, None, :] * 255.0 + 0.5,
                   0, 255).astype(np.uint8)  # [T, 256, 3]
    frames = canvas  # transformed in place
    for t in range(T):
        f = frames[t]
        cv2.LUT(f, luts[t].reshape(256, 1, 3), dst=f)
        if sigma > 0:
            y, x = shifts[t]
            cv2.add(f, g_pos[y:y + H, x:x + W], dst=f)
            cv2.subtract(f, g_neg[y:y + H, x:x + W], dst=f)
    masks = np.empty((T, O, H, W), bool)
    ids = np.arange(O, dtype=np.uint8)[:, None, None]
    for t in range(T):
        np.equal(label[t][None], ids, out=masks[t])
    vis = masks.sum(axis=(2, 3)).astype(np.float64)
    min_visible = np.clip(vis / np.maximum(full_px, 1), 0, 1).min(axis=0) if T else np.ones(O)
    crf = int(rs["camera"].integers(cfg.crf[0], cfg.crf[1] + 1))

    # --- description
    objects = []
    for o, ob in enumerate(objs):
        d = {
            "id": o, "class_id": bank.class_id(ob.item.cls), "class_name": ob.item.cls,
            "picture": f"qabcs:{ob.item.category}/{ob.item.name}.png", "category": ob.item.category,
            "split": ob.item.split, "sounding": ob.sounding, "stem_index": ob.stem_index,
            "onsets": [_r(x) for x in ob.onsets] if ob.sounding else [],
            "z": ob.z, "flip": ob.flip, "angle": _r(ob.angle, 3), "reaction": ob.react,
            "area_fraction": _r(ob.area, 5), "min_visible_fraction": _r(min_visible[o], 4),
        }
        if ob.sounding:
            d["recording"] = ob.recording
            d["speed"] = _r(ob.speed_factor, 4)
            d["gain_db"] = _r(ob.gain_db + 20 * math.log10(mgain), 4)
        objects.append(d)
    meta = {
        "format": FORMAT, "world": WORLD,
        "seed": int(seed), "index": int(index),
        "fps": fps, "sample_rate": sr, "size": [W, H], "width": W, "height": H,
        "duration": float(cfg.duration), "n_frames": T, "n_samples": N,
        "count": n_sources, "n_distractors": n_dis, "pictures": cfg.pictures,
        "background": bg_info, "occluder": occ_info,
        "offscreen_noise": {"level": _r(amb_level * mgain), "kind": amb_kind},
        "mix_gain_db": _r(20 * math.log10(mgain), 4),
        "pulse": {"scale": cfg.pulse_scale, "brightness": cfg.pulse_brightness, "decay_s": cfg.pulse_decay},
        "crf": crf,
        "camera": {"contrast": _r(contrast, 4), "white_balance": [_r(x, 4) for x in wb],
                   "brightness": _r(float(np.mean(bright)), 4), "noise": _r(sigma, 5)},
        "objects": objects,
        "problems": problems,
        "config": cfg.to_dict(),
    }
    sounding = np.array([ob.sounding for ob in objs], bool)
    loud = np.stack([loudness(stems[s], sr, times) for s in range(n_sources)]).astype(np.float32) \
        if n_sources else np.zeros((0, T), np.float32)
    clip = SynthClip(frames, mix, stems, noise, masks, boxes, sounding, objects, meta, None, loud)
    return clip


def _occluder(rng: np.random.Generator, bank: pb.Bank, canvas: np.ndarray, label: np.ndarray,
              W: int, H: int, T: int, cx: np.ndarray, cw: np.ndarray, layers: Optional[dict] = None) -> dict:
    """Paste a soft-edged crop of a photograph over one side of the frame (in place), moving
    with a parallax of 1.4x the background pan; its pixels (alpha >= 0.5) leave every mask."""
    path = bank.backgrounds[int(rng.integers(len(bank.backgrounds)))]
    photo = pb.load_photo(path)
    Hp, Wp = photo.shape[:2]
    pad = int(0.25 * max(W, H))
    Wo, Ho = W + 2 * pad, H + 2 * pad
    sx = rng.uniform(0.8, 2.0)
    cwp = min(Wp - 2, Wo * sx)
    chp = min(Hp - 2, Ho * sx)
    x0 = rng.uniform(0, Wp - cwp)
    y0 = rng.uniform(0, Hp - chp)
    theta = np.array([[[cwp / Wp, 0.0, (x0 + cwp / 2) * 2 / Wp - 1], [0.0, chp / Hp, (y0 + chp / 2) * 2 / Hp - 1]]])
    img = _affine_sample(photo, theta, Ho, Wo, border="edge")[0].astype(np.float32) * np.float32(1 / 255)
    # soft shape: a blob entering from one side of the frame, its edge wobbling
    import cv2

    side = str(rng.choice(["left", "right", "top", "bottom", "corner"]))
    yy = (np.arange(Ho, dtype=np.float32)[:, None] - pad) / H
    xx = (np.arange(Wo, dtype=np.float32)[None, :] - pad) / W
    cells = int(rng.integers(3, 7))
    coarse = rng.random((cells + 1, cells + 1)).astype(np.float32)
    wob = cv2.resize(coarse, (Wo, Ho), interpolation=cv2.INTER_CUBIC) - 0.5
    cover = rng.uniform(0.08, 0.22)
    if side == "left":
        f = np.broadcast_to(xx, (Ho, Wo))
    elif side == "right":
        f = np.broadcast_to(1.0 - xx, (Ho, Wo))
    elif side == "top":
        f = np.broadcast_to(yy, (Ho, Wo))
    elif side == "bottom":
        f = np.broadcast_to(1.0 - yy, (Ho, Wo))
    else:
        f = np.minimum(xx, yy) * 1.4
    alpha = np.clip((cover - f + 0.25 * wob) * 25.0 + 0.5, 0.0, 1.0).astype(np.float32)
    alpha = _gauss_blur(alpha, 1.0)
    dark = rng.uniform(0.55, 1.0)  # foreground things are often in shade
    a8 = np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
    inv3 = cv2.bitwise_not(cv2.merge([a8, a8, a8]))
    prem = np.clip(img * alpha[..., None] * dark * 255.0 + 0.5, 0, 255).astype(np.uint8)
    shift = (cx - cx[0]) / cw * W * 1.4  # px of parallax per frame
    for t in range(T):
        s = int(round(np.clip(-shift[t], -pad, pad)))
        win = (slice(pad, pad + H), slice(pad + s, pad + s + W))
        cv2.add(cv2.multiply(canvas[t], inv3[win], scale=1.0 / 255), prem[win], dst=canvas[t])
        label[t][a8[win] >= 128] = 254
        if layers is not None:
            layers.setdefault("occluder", np.zeros((T, H, W), np.float32))[t] = a8[win] / 255.0
    return {"photo": path.rsplit("/backgrounds/", 1)[-1], "side": side, "cover": _r(cover, 4)}


def _r(x: float, nd: int = 6) -> float:
    return float(round(float(x), nd))


__all__ = ["PhotoConfig", "render_photo_clip", "place_recording", "onsets_of_wave", "loudness", "WORLD"]
