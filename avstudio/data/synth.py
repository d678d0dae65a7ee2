"""The synthetic audiovisual benchmark: moving textured objects, some of which sound.

A clip holds 1..4 *sounding* objects (the clip's ``count``), each with its own sound (a melody
from a General-MIDI instrument rendered by fluidsynth, or a hand-made timbre), plus 0..2 silent
*distractors* drawn from the same class pool: "the object that sounds" is not "an object".
Each sounding object pulses (brief scale-up + brightening, ~150 ms) at its own note onsets, so
audio-visual synchrony is a cue; distractors never pulse. Backgrounds vary per clip (gradients,
blotches, low-contrast patterns) and say nothing about the sound. See docs/ground_truth.md for
the files and docs/method.md ("the shortcut") for why.

API
---
- :data:`CLASSES` (specs with ``.name``), :class:`SynthConfig`
- :func:`render_clip` -> :class:`SynthClip` (in memory; fast enough for on-the-fly training)
- :func:`render_source_audio` (one source: wave + onsets)
- :func:`generate` (a folder of mp4 + sidecars + ``manifest.csv``; parallel, cancellable)
- :func:`load_ground_truth` (the sidecars of a clip) -> :class:`GroundTruth`
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import Cancelled, DataError
from ..progress import CancelToken, ProgressFn, emit
from . import synth_draw as draw
from .synth_clip import SynthClip, parse_size
from .instruments import (BACKENDS, CLASS_NAMES, CLASSES, backend_info, class_index, compose,
                          offscreen_noise, onsets_of, random_key, render_source, render_source_audio,
                          resolve_backend)
from .manifest import ManifestRow, write_manifest

__all__ = ["CLASSES", "CLASS_NAMES", "SynthConfig", "SynthClip", "GroundTruth", "render_clip",
           "render_source_audio", "generate", "load_ground_truth", "clip_name", "sidecar_paths",
           "write_clip", "FORMAT"]

FORMAT = "avstudio-synth/1"
MAX_SOURCES = 8
_PULSE_LEVELS = 12  # pulse strength is quantised to this many steps (one sprite per step)
_CLIP_PEAK = 0.89  # the mixture is scaled down when its peak exceeds this
PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass
class SynthConfig:
    """Everything that shapes a clip, apart from its seed, index and number of sources."""

    size: tuple[int, int] = (224, 224)  # (width, height) in pixels, both even
    fps: float = 25.0
    duration: float = 4.0  # seconds
    sample_rate: int = 16000
    n_sources: tuple[int, ...] = (1,)  # default counts for render_clip(n_sources=None): round robin
    n_distractors: tuple[int, int] = (0, 2)  # inclusive range of silent distractors per clip
    classes: Optional[tuple[str, ...]] = None  # class-name subset (None: all classes)
    offscreen_noise: float = 0.0  # RMS of an off-screen noise relative to a source's (0: none)
    same_class_distractors: bool = False  # distractors copy the classes of sounding objects
    backend: str = "auto"  # instrument timbres: auto | fluidsynth | handmade
    object_area: tuple[float, float] = (0.03, 0.10)  # each object's share of the frame
    max_total_area: float = 0.36  # objects are shrunk together when their shares add up above this
    speed: tuple[float, float] = (0.05, 0.2)  # object speed in frame sizes per second
    pulse_scale: float = 0.22  # scale-up at an onset (0.22 = +22 %)
    pulse_brightness: float = 0.45  # share of the way to white at an onset
    pulse_decay: float = 0.05  # s, time constant of the pulse (gone after ~150 ms)
    distractor_pulses: bool = False  # harder variant: distractors pulse too, at onsets of a
    # melody nobody plays, so only audio-visual synchrony tells the sounding object apart
    loudness_jitter_db: float = 3.0  # each stem's level: reference +- this (uniform)
    harmony: str = "key"  # "key": sources share a key; "duet": key and tempo; "independent"
    crf: int = 20  # H.264 quality of the written mp4

    def __post_init__(self) -> None:
        self.size = parse_size(self.size)
        self.n_sources = tuple(int(x) for x in (self.n_sources if isinstance(self.n_sources, (tuple, list))
                                                 else (self.n_sources,)))
        nd = self.n_distractors
        if isinstance(nd, (int, np.integer)):
            nd = (int(nd), int(nd))
        self.n_distractors = (int(nd[0]), int(nd[1]))
        if self.classes is not None:
            if isinstance(self.classes, str):
                self.classes = tuple(c for c in self.classes.split(",") if c.strip())
            self.classes = tuple(CLASS_NAMES[class_index(c)] for c in self.classes)
        self.object_area = (float(self.object_area[0]), float(self.object_area[1]))
        self.speed = (float(self.speed[0]), float(self.speed[1]))

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

    def class_pool(self) -> list[int]:
        if self.classes is None:
            return list(range(len(CLASSES)))
        return sorted({class_index(c) for c in self.classes})

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
        if lo < 0 or hi < lo:
            raise DataError(f"distractor range {lo}-{hi} is not a valid MIN-MAX range")
        if hi > 8:
            raise DataError(f"at most 8 distractors per clip (asked for up to {hi})")
        a0, a1 = self.object_area
        if not 0 < a0 <= a1 < 0.5:
            raise DataError(f"object area range {a0}-{a1} must lie within 0..0.5 of the frame")
        if self.offscreen_noise < 0 or not math.isfinite(self.offscreen_noise):
            raise DataError(f"off-screen noise level must be >= 0, got {self.offscreen_noise}")
        if self.backend not in BACKENDS:
            raise DataError(f"unknown synth backend '{self.backend}' (use one of {', '.join(BACKENDS)})")
        if self.harmony not in ("key", "duet", "independent"):
            raise DataError(f"unknown harmony '{self.harmony}' (key, duet or independent)")
        pool = self.class_pool()
        counts = self.n_sources if n_sources is None else (n_sources,)
        for n in counts:
            if not 1 <= int(n) <= MAX_SOURCES:
                raise DataError(f"number of sound sources must be 1..{MAX_SOURCES}, got {n}")
            if int(n) > len(pool):
                raise DataError(f"{n} sounding sources need {n} different classes but only "
                                f"{len(pool)} are selected ({', '.join(CLASS_NAMES[i] for i in pool)})")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SynthConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


# --------------------------------------------------------------------------------------------
# In-memory clip
# --------------------------------------------------------------------------------------------


@dataclass
class _Obj:
    class_id: int
    sounding: bool
    look: draw.Look
    radius: float  # px, at pulse 0
    area: float  # share of the frame (unpulsed silhouette, before clipping)
    z: int = 0
    stem_index: Optional[int] = None
    onsets: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gain_db: float = 0.0
    timbre: str = ""


def _r(x: float, nd: int = 6) -> float:
    return float(round(float(x), nd))


def _streams(seed: int, index: int) -> tuple[dict[str, np.random.Generator], np.random.SeedSequence]:
    """Independent random streams of a clip (changing one part leaves the others as they were)."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(index)])
    kids = ss.spawn(7)
    names = ("scene", "motion", "background", "audio", "sources", "noise", "phantom")
    return {n: np.random.default_rng(k) for n, k in zip(names, kids)}, kids[4]


def _choose_classes(rng: np.random.Generator, pool: list[int], n_src: int, n_dis: int,
                    same_class: bool) -> tuple[list[int], list[int], str]:
    sounding = [int(c) for c in rng.choice(pool, size=n_src, replace=False)]
    rest = [c for c in pool if c not in sounding]
    mode = "same_class" if same_class else "other_class"
    if n_dis == 0:
        return sounding, [], mode
    if same_class or not rest:
        src = sounding
        mode = "same_class" if same_class else "same_class_fallback"
    else:
        src = rest
    distract = [int(c) for c in rng.choice(src, size=n_dis, replace=n_dis > len(src))]
    return sounding, distract, mode


def render_clip(seed: int, index: int, n_sources: Optional[int] = None,
                config: Optional[SynthConfig] = None) -> SynthClip:
    """Render clip ``index`` of the set made with ``seed``, in memory.

    ``n_sources``: number of sounding objects (None: ``config.n_sources[index % len]``).
    The same (seed, index, n_sources, config) always gives the same clip (and the same
    backend: fluidsynth and hand-made timbres give the same notes but different waves).
    """
    cfg = config or SynthConfig()
    if n_sources is None:
        n_sources = cfg.n_sources[index % len(cfg.n_sources)]
    n_sources = int(n_sources)
    cfg.validate(n_sources)
    backend = resolve_backend(cfg.backend)
    W, H = cfg.size
    T, N, sr, fps = cfg.n_frames, cfg.n_samples, int(cfg.sample_rate), float(cfg.fps)
    rs, sources_ss = _streams(seed, index)
    rng = rs["scene"]

    # --- who is in the scene
    lo, hi = cfg.n_distractors
    n_dis = int(rng.integers(lo, hi + 1))
    pool = cfg.class_pool()
    snd_cls, dis_cls, dis_mode = _choose_classes(rng, pool, n_sources, n_dis, cfg.same_class_distractors)
    objs: list[_Obj] = []
    areas = rng.uniform(*cfg.object_area, size=len(snd_cls) + len(dis_cls))
    if areas.sum() > cfg.max_total_area:
        areas *= cfg.max_total_area / areas.sum()
    for i, cid in enumerate(snd_cls + dis_cls):
        spec = CLASSES[cid]
        A, _, _ = draw.shape_stats(spec.shape)
        look = draw.Look(
            shape=spec.shape, texture=spec.texture,
            color=draw.jitter_color(spec.color, rng), color2=draw.jitter_color(spec.color2, rng, 0.5),
            angle=float(rng.uniform(-25, 25)), tex_angle=float(spec.texture_angle + rng.uniform(-15, 15)),
            tex_period=float(spec.texture_period * rng.uniform(0.85, 1.15)),
            tex_phase=(float(rng.random()), float(rng.random())))
        radius = math.sqrt(areas[i] * W * H / A)
        sounding = i < len(snd_cls)
        objs.append(_Obj(cid, sounding, look, radius, float(areas[i]),
                         stem_index=i if sounding else None))
    O = len(objs)
    z_order = [int(x) for x in rng.permutation(O)]  # bottom to top
    for z, o in enumerate(z_order):
        objs[o].z = z

    # --- sound
    arng = rs["audio"]
    key = random_key(arng)
    tempo = float(arng.uniform(80, 120)) if cfg.harmony == "duet" else None
    gains = arng.uniform(-cfg.loudness_jitter_db, cfg.loudness_jitter_db, size=max(n_sources, 1))
    src_rngs = [np.random.default_rng(s) for s in sources_ss.spawn(n_sources)]
    stems = np.zeros((n_sources, N), np.float32)
    for s in range(n_sources):
        o = objs[s]
        src = render_source(o.class_id, src_rngs[s], cfg.duration, sr, backend=backend,
                            key=None if cfg.harmony == "independent" else key, tempo=tempo)
        o.gain_db = float(gains[s])
        o.onsets = src.onsets
        o.timbre = src.backend
        stems[s] = src.wave * np.float32(10 ** (gains[s] / 20.0))
    noise = np.zeros(N, np.float32)
    noise_kind = None
    if cfg.offscreen_noise > 0:
        nz, noise_kind = offscreen_noise(rs["noise"], N, sr)
        noise = (nz * np.float32(cfg.offscreen_noise)).astype(np.float32)
    mix = stems.sum(axis=0) + noise
    peak = float(np.abs(mix).max()) if N else 0.0
    gain = 1.0
    if peak > _CLIP_PEAK:
        gain = _CLIP_PEAK / peak
        stems *= np.float32(gain)
        noise *= np.float32(gain)
    # store on a 16-bit grid (as exact as the soundfont's own samples; compresses better)
    stems = (np.round(stems * 32768.0) / 32768.0).astype(np.float32)
    noise = (np.round(noise * 32768.0) / 32768.0).astype(np.float32)
    mix = (stems.sum(axis=0) + noise).astype(np.float32)

    # --- pulses: strength per frame and object, quantised
    times = np.arange(T) / fps
    level = np.zeros((T, O), np.int32)
    phantom: dict[int, np.ndarray] = {}
    if cfg.distractor_pulses:
        for o, ob in enumerate(objs):
            if not ob.sounding:
                notes = compose(CLASSES[ob.class_id], rs["phantom"], cfg.duration, sr, key=key)
                phantom[o] = onsets_of(notes, sr)
    for o, ob in enumerate(objs):
        pulses = ob.onsets if ob.sounding else phantom.get(o, np.zeros(0))
        if len(pulses) and (cfg.pulse_scale or cfg.pulse_brightness):
            d = times[:, None] - pulses[None, :]
            p = np.where(d >= 0, np.exp(-np.maximum(d, 0) / max(cfg.pulse_decay, 1e-3)), 0.0).max(axis=1)
            level[:, o] = np.round(p * _PULSE_LEVELS).astype(np.int32)

    # --- motion and background
    margins, radii = [], []
    for ob in objs:
        _, rc, rcoll = draw.shape_stats(ob.look.shape)
        margins.append(ob.radius * rc * 1.04)
        radii.append(ob.radius * rcoll * 1.1)
    centres = draw.place_and_move(rs["motion"], W, H, T, fps, margins, radii, speed=cfg.speed)
    avoid = [ob.look.color for ob in objs]
    bg, bg_info = draw.make_background(rs["background"], W, H, avoid=avoid)

    # --- frames, masks, boxes
    frames = np.empty((T, H, W, 3), np.uint8)
    masks = np.empty((T, O, H, W), bool)
    boxes = np.zeros((T, O, 4), np.float32)
    cache: dict[tuple[int, int], tuple] = {}

    def sprite(o: int, q: int):
        k = (o, q)
        hit = cache.get(k)
        if hit is None:
            p = q / _PULSE_LEVELS
            sp = draw.render_sprite(objs[o].look, objs[o].radius, 1.0 + cfg.pulse_scale * p)
            rgb = sp.rgb
            if p > 0 and cfg.pulse_brightness:
                rgb = rgb + (1.0 - rgb) * np.float32(cfg.pulse_brightness * p)
            rows = np.nonzero(sp.solid.any(axis=1))[0]
            cols = np.nonzero(sp.solid.any(axis=0))[0]
            ext = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1) if rows.size else (0, 0, 0, 0)
            hit = (sp.half, sp.alpha[..., None], rgb.astype(np.float32), sp.solid, ext, int(sp.solid.sum()))
            cache[k] = hit
        return hit

    label = np.empty((H, W), np.uint8)
    ids = np.arange(O, dtype=np.uint8)[:, None, None]
    min_visible = np.ones(O)
    for t in range(T):
        canvas = bg.copy()
        label.fill(255)
        for o in z_order:
            half, alpha, rgb, solid, ext, full = sprite(o, int(level[t, o]))
            cx, cy = centres[t, o]
            x0 = int(math.floor(cx)) - half
            y0 = int(math.floor(cy)) - half
            S = 2 * half + 1
            X0, Y0, X1, Y1 = max(x0, 0), max(y0, 0), min(x0 + S, W), min(y0 + S, H)
            if X1 <= X0 or Y1 <= Y0:
                continue
            sl = (slice(Y0 - y0, Y1 - y0), slice(X0 - x0, X1 - x0))
            a = alpha[sl]
            reg = canvas[Y0:Y1, X0:X1]
            reg += (rgb[sl] - reg) * a
            label[Y0:Y1, X0:X1][solid[sl]] = o
            r0, r1, c0, c1 = ext
            boxes[t, o] = (max(x0 + c0, 0), max(y0 + r0, 0), min(x0 + c1, W), min(y0 + r1, H))
        np.multiply(canvas, 255.0, out=canvas)
        canvas += 0.5
        np.clip(canvas, 0, 255, out=canvas)
        frames[t] = canvas.astype(np.uint8)
        np.equal(label[None], ids, out=masks[t])
    if O and T:
        vis = masks.sum(axis=(2, 3)).astype(np.float64)
        full = np.array([[cache[(o, int(level[t, o]))][5] for o in range(O)] for t in range(T)], np.float64)
        min_visible = (vis / np.maximum(full, 1)).min(axis=0)

    # --- description
    binfo = backend_info(backend)
    objects = []
    for o, ob in enumerate(objs):
        spec = CLASSES[ob.class_id]
        d = {
            "id": o, "class_id": ob.class_id, "class_name": spec.name, "sounding": ob.sounding,
            "stem_index": ob.stem_index,
            "onsets": [_r(x) for x in ob.onsets] if ob.sounding else [],
            "z": ob.z, "shape": ob.look.shape, "texture": ob.look.texture,
            "color": [_r(c, 4) for c in ob.look.color],
            "color2": [_r(c, 4) for c in ob.look.color2],
            "area_fraction": _r(ob.area, 5), "radius_px": _r(ob.radius, 3),
            "min_visible_fraction": _r(min_visible[o], 4),
        }
        if o in phantom:
            d["phantom_pulses"] = [_r(x) for x in phantom[o]]
        if ob.sounding:
            d["gain_db"] = _r(ob.gain_db + 20 * math.log10(gain), 4)
            d["timbre"] = ob.timbre if ob.timbre != "fluidsynth" else f"fluidsynth:{binfo['soundfont']}:program{spec.program}"
        objects.append(d)
    meta = {
        "format": FORMAT,
        "seed": int(seed), "index": int(index),
        "fps": float(fps), "sample_rate": sr, "size": [W, H], "width": W, "height": H,
        "duration": float(cfg.duration), "n_frames": T, "n_samples": N,
        "count": n_sources, "n_distractors": len(dis_cls), "distractor_classes": dis_mode,
        "synth_backend": binfo["backend"], "soundfont": binfo["soundfont"],
        "key": {"root": key[0], "mode": key[1]} if cfg.harmony != "independent" else None,
        "harmony": cfg.harmony,
        "background": bg_info,
        "offscreen_noise": {"level": _r(cfg.offscreen_noise), "kind": noise_kind},
        "mix_gain_db": _r(20 * math.log10(gain), 4),
        "pulse": {"scale": cfg.pulse_scale, "brightness": cfg.pulse_brightness, "decay_s": cfg.pulse_decay},
        "objects": objects,
        "config": cfg.to_dict(),
    }
    sounding = np.array([ob.sounding for ob in objs], bool)
    bg8 = np.clip(bg * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return SynthClip(frames, mix, stems, noise, masks, boxes, sounding, objects, meta, bg8)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def clip_name(index: int) -> str:
    return f"clip_{int(index):05d}"


def sidecar_paths(video: PathLike) -> tuple[Path, Path]:
    """(json, npz) sidecars of a clip: ``X.mp4`` -> ``X.json``, ``X.gt.npz``."""
    p = Path(os.fspath(video))
    name = p.name
    for suf in (".gt.npz", ".json", ".mp4"):
        if name.endswith(suf):
            name = name[: -len(suf)]
            break
    else:
        name = p.stem
    return p.with_name(name + ".json"), p.with_name(name + ".gt.npz")


_NPZ_LEVELS = {"stems": 1, "noise": 1}  # audio barely compresses: spend the time on the masks


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """What np.savez_compressed writes (np.load reads it), but byte-reproducible: fixed zip
    timestamps, and a zlib level per array."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            try:
                info._compresslevel = _NPZ_LEVELS.get(name, 6)  # type: ignore[attr-defined]
            except AttributeError:  # a zipfile without per-entry levels: its default (6)
                pass
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)


def write_clip(clip: SynthClip, video: PathLike, crf: int = 20) -> Path:
    """Write a clip as ``video`` (mp4) with its ``.json`` and ``.gt.npz`` sidecars (atomically)."""
    from ..media import write_mp4

    video = Path(os.fspath(video))
    jpath, npath = sidecar_paths(video)
    meta = dict(clip.meta)
    meta["video"] = video.name
    tmp_v = video.with_name(video.stem + ".part.mp4")
    tmp_j = jpath.with_name(jpath.name + ".part")
    tmp_n = npath.with_name(npath.name + ".part")
    try:
        write_mp4(tmp_v, clip.frames, clip.fps, audio=clip.audio, sample_rate=clip.sample_rate, crf=crf)
        tmp_j.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        arrays = {"masks": clip.masks, "boxes": clip.boxes, "stems": clip.stems,
                  "noise": clip.noise, "sounding": clip.sounding}
        if clip.loudness is not None:
            arrays["loudness"] = clip.loudness.astype(np.float32)
        _save_npz(tmp_n, arrays)
        os.replace(tmp_n, npath)
        os.replace(tmp_j, jpath)
        os.replace(tmp_v, video)
    finally:
        for t in (tmp_v, tmp_j, tmp_n):
            try:
                t.unlink()
            except OSError:
                pass
    return video


def _manifest_extra(meta: dict) -> dict:
    snd = [o["class_name"] for o in meta["objects"] if o["sounding"]]
    dis = [o["class_name"] for o in meta["objects"] if not o["sounding"]]
    backend = meta.get("synth_backend") or meta.get("world", "shapes")
    return {"seed": meta["seed"], "index": meta["index"], "classes": "+".join(snd),
            "distractors": "+".join(dis), "duration": meta["duration"], "backend": backend}


def config_from_dict(d: dict):
    """A world's config from its dict: :class:`SynthConfig` (shapes) or ``PhotoConfig``."""
    if d.get("world") == "photo":
        from .photo import PhotoConfig

        return PhotoConfig.from_dict(d)
    return SynthConfig.from_dict(d)


def render_any(seed: int, index: int, n_sources: Optional[int], config) -> SynthClip:
    """``render_clip`` of the config's world (shapes or photo)."""
    if getattr(config, "world", "shapes") == "photo":
        from .photo import render_photo_clip

        return render_photo_clip(seed, index, n_sources, config)
    return render_clip(seed, index, n_sources, config)


def _make_one(out_dir: str, seed: int, index: int, n_sources: int, cfg_dict: dict) -> tuple[int, int, dict]:
    cfg = config_from_dict(cfg_dict)
    clip = render_any(seed, index, n_sources, cfg)
    video = Path(out_dir) / (clip_name(index) + ".mp4")
    write_clip(clip, video, crf=int(clip.meta.get("crf", getattr(cfg, "crf", 20))))
    return index, n_sources, _manifest_extra(clip.meta)


def _worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def generate(out_dir: PathLike, clips: int, sources: Sequence[int] = (1,), seed: int = 0,
             config: Any = None, workers: int = 1,
             progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None) -> Path:
    """Write ``clips`` clips into ``out_dir`` and ``out_dir/manifest.csv``; returns the manifest path.

    Clip ``i`` has ``sources[i % len(sources)]`` sounding objects and is the same clip as
    ``render_clip(seed, i, ...)``. ``workers > 1`` renders in a process pool. Progress events
    ``("synth", done, clips)`` after each clip; when ``cancel`` is set the finished clips are
    kept, the manifest lists them, and :class:`Cancelled` is raised.
    """
    cfg = config or SynthConfig()
    clips = int(clips)
    if clips < 0:
        raise DataError(f"number of clips must be >= 0, got {clips}")
    sources = tuple(int(s) for s in sources)
    if not sources:
        raise DataError("no source counts given (e.g. --sources 1,2)")
    for s in sources:
        cfg.validate(s)
    if getattr(cfg, "world", "shapes") == "photo":
        from .photo_bank import load_bank

        load_bank()  # fail early (one line naming the packages) when the media bank is missing
    else:
        resolve_backend(cfg.backend)  # fail early when fluidsynth was asked for and is missing
    out = Path(os.fspath(out_dir)).resolve()  # manifest rows are then relative to its folder
    if out.exists() and not out.is_dir():
        raise DataError(f"output {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    manifest = out / "manifest.csv"
    jobs = [(i, sources[i % len(sources)]) for i in range(clips)]
    done: dict[int, tuple[int, dict]] = {}
    cfg_dict = cfg.to_dict()
    emit(progress, "synth", 0, clips, "")
    cancelled = False

    def finish() -> Path:
        rows = [ManifestRow(str(out / (clip_name(i) + ".mp4")), done[i][0], done[i][1]) for i in sorted(done)]
        return write_manifest(manifest, rows)

    try:
        if workers <= 1 or clips <= 1:
            for i, n in jobs:
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                idx, n_src, extra = _make_one(str(out), seed, i, n, cfg_dict)
                done[idx] = (n_src, extra)
                emit(progress, "synth", len(done), clips, f"clip {idx}")
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")  # never fork a process that may hold threads (GUI)
            with ProcessPoolExecutor(max_workers=min(int(workers), clips), mp_context=ctx,
                                     initializer=_worker_init) as ex:
                pending: set[Future] = set()
                it = iter(jobs)
                depth = 2 * int(workers)

                def top_up() -> None:
                    while len(pending) < depth:
                        try:
                            i, n = next(it)
                        except StopIteration:
                            return
                        pending.add(ex.submit(_make_one, str(out), seed, i, n, cfg_dict))

                top_up()
                while pending:
                    fin, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    for f in fin:
                        idx, n_src, extra = f.result()
                        done[idx] = (n_src, extra)
                        emit(progress, "synth", len(done), clips, f"clip {idx}")
                    if cancel is not None and cancel.is_set():
                        cancelled = True
                        for f in pending:
                            f.cancel()
                        # clips already being rendered finish and are kept
                        for f in wait(pending)[0]:
                            if not f.cancelled() and f.exception() is None:
                                idx, n_src, extra = f.result()
                                done[idx] = (n_src, extra)
                        pending = set()
                        break
                    top_up()
    except BaseException:
        finish()  # whatever finished stays usable
        raise
    path = finish()
    if cancelled:
        raise Cancelled(f"synth cancelled after {len(done)} of {clips} clips (manifest of those: {path})")
    return path


# --------------------------------------------------------------------------------------------
# Reading the ground truth
# --------------------------------------------------------------------------------------------


@dataclass
class GroundTruth:
    path: str  # the video
    meta: dict
    masks: np.ndarray  # bool [T, O, H, W]
    boxes: np.ndarray  # float32 [T, O, 4]
    stems: np.ndarray  # float32 [S, N]
    noise: np.ndarray  # float32 [N]
    sounding: np.ndarray  # bool [O]
    loudness: Optional[np.ndarray] = None  # float32 [S, T] (photo world; None for older sets)

    @property
    def objects(self) -> list[dict]:
        return self.meta["objects"]

    @property
    def count(self) -> int:
        return int(self.meta["count"])

    @property
    def fps(self) -> float:
        return float(self.meta["fps"])

    @property
    def sample_rate(self) -> int:
        return int(self.meta["sample_rate"])

    @property
    def n_frames(self) -> int:
        return int(self.masks.shape[0])

    @property
    def mix(self) -> np.ndarray:
        """The clean mixture (the mp4's audio before AAC): ``stems.sum(0) + noise``."""
        return (self.stems.sum(axis=0) + self.noise).astype(np.float32)

    def frame_index(self, t: float) -> int:
        """Index of the frame shown at time ``t`` seconds (frame k shows ``k / fps``)."""
        return int(np.clip(math.floor(t * self.fps + 1e-6), 0, self.n_frames - 1))

    def sounding_mask(self, frame: int) -> np.ndarray:
        """bool [H, W]: pixels of any sounding object at a frame."""
        return self.masks[frame][self.sounding].any(axis=0)

    def stem_mask(self, frame: int, stem: int) -> np.ndarray:
        """bool [H, W]: pixels of the object whose sound is stem ``stem``."""
        for o in self.meta["objects"]:
            if o["stem_index"] == stem:
                return self.masks[frame, o["id"]]
        raise IndexError(f"no object has stem {stem}")

    def onsets(self, stem: int) -> np.ndarray:
        for o in self.meta["objects"]:
            if o["stem_index"] == stem:
                return np.asarray(o["onsets"], np.float64)
        raise IndexError(f"no object has stem {stem}")


def load_ground_truth(video: PathLike) -> GroundTruth:
    """The ground truth of a synthetic clip, from the ``.json`` and ``.gt.npz`` beside it."""
    jpath, npath = sidecar_paths(video)
    missing = [p.name for p in (jpath, npath) if not p.is_file()]
    if missing:
        raise DataError(f"no ground truth for {os.fspath(video)}: {' and '.join(missing)} "
                        f"missing next to it (made by `avstudio synth`)")
    try:
        meta = json.loads(jpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"ground truth {jpath} is not readable JSON: {exc}") from None
    try:
        with np.load(npath, allow_pickle=False) as z:
            arrs = {k: z[k] for k in ("masks", "boxes", "stems", "noise", "sounding")}
            loud = z["loudness"] if "loudness" in z.files else None
    except KeyError as exc:
        raise DataError(f"ground truth {npath} lacks the array {exc}") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"ground truth {npath} is not a readable npz: {exc}") from None
    if not isinstance(meta, dict) or "objects" not in meta:
        raise DataError(f"ground truth {jpath} has no 'objects' list")
    m = arrs["masks"]
    if m.ndim != 4 or m.shape[1] != len(meta["objects"]) or arrs["sounding"].shape != (m.shape[1],):
        raise DataError(f"ground truth {npath} does not match {jpath.name} "
                        f"(masks {m.shape}, {len(meta['objects'])} objects)")
    return GroundTruth(str(Path(os.fspath(video))), meta, m.astype(bool, copy=False), arrs["boxes"],
                       arrs["stems"], arrs["noise"], arrs["sounding"].astype(bool, copy=False), loud)
