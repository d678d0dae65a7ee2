"""The separator's training data: clips (synthetic, rendered on the fly, or from a manifest), their
visual vectors from the frozen AV model (:func:`prepare_clip`), mixtures (:func:`make_batch`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import AVStudioError, DataError
from ...nets.kmeans import best_matching


@dataclass
class RawClip:
    """What the separator's training needs from a clip, before the AV model has seen it."""

    name: str
    audio: np.ndarray  # float32 [N] at the separator's rate (the clip's own mixture)
    stems: np.ndarray  # float32 [S, N]
    frames: np.ndarray  # uint8 [F, 3, s, s] at the AV model's frame size
    times: np.ndarray  # float [F] seconds of those frames
    masks: Optional[np.ndarray]  # bool [F, S, h, w] the object of each stem (None: unknown)


@dataclass
class PreparedClip:
    name: str
    audio: np.ndarray  # [N]
    stems: np.ndarray  # [S, N]
    vectors: np.ndarray  # [F, S, D] aligned visual centers in stem order
    pixels: np.ndarray  # [F, S, P, D] visual features at pixels of each stem's object


def _resize_frame(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize like the media layer does (libswscale through PyAV) -> uint8 [3, size, size]."""
    import av

    if rgb.shape[0] == size and rgb.shape[1] == size:
        out = rgb
    else:
        out = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").to_ndarray(
            format="rgb24", width=size, height=size)
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def _pick_frames(n_frames: int, fps: float, duration: float, count: int, rng: np.random.Generator,
                 visible: Optional[np.ndarray] = None) -> np.ndarray:
    """``count`` frame indices away from the clip's edges (full audio windows), preferring
    frames where every stem's object is visible."""
    lo = min(int(0.5 * fps), max(0, n_frames - 1))
    hi = max(lo + 1, min(n_frames, int((duration - 0.5) * fps)))
    cand = np.arange(lo, hi)
    if visible is not None:
        ok = cand[visible[cand]]
        if len(ok) >= count:
            cand = ok
    return np.sort(rng.choice(cand, size=count, replace=len(cand) < count))


def _stacks(get, idx, fps: float, n_frames: int, av_cfg) -> np.ndarray:
    """The AV model's visual input at frames ``idx``: [n, 3, S, S], or [n, F, 3, S, S] for a
    model that stacks frames (``get(j)`` -> frame j as [3, S, S]; each frame read once)."""
    if av_cfg.stack <= 1:
        return np.stack([get(int(j)) for j in idx])
    cache: dict[int, np.ndarray] = {}

    def one(j: int) -> np.ndarray:
        if j not in cache:
            cache[j] = get(j)
        return cache[j]

    return np.stack([np.stack([one(j) for j in av_cfg.stack_indices(int(i), fps, n_frames)]) for i in idx])


class SynthSource:
    """Clips of the synthetic benchmark rendered in memory (exact stems and masks)."""

    def __init__(self, seed: int, av_cfg, sample_rate: int, overrides: Optional[dict] = None):
        from ...data.synth import config_from_dict

        self.seed = int(seed)
        self.av_cfg = av_cfg
        size = int(av_cfg.frame_size)
        # drawn straight at the AV model's frame size: the visual vectors are the same as from a
        # 224 px clip scaled down (cosine >= 0.996 measured) and rendering costs half as much.
        # overrides {"world": "photo", ...} render the photo world instead of the shapes world.
        self.cfg = config_from_dict({"size": [size, size], **(overrides or {})})
        self.size = size
        self.sr = sample_rate

    def describe(self) -> dict:
        return {"synth_seed": self.seed, "synth_config": self.cfg.to_dict()}

    def raw(self, index: int, count: int, n_frames: int, rng: np.random.Generator, seed: Optional[int] = None) -> RawClip:
        from ...data.synth import render_any

        clip = render_any(self.seed if seed is None else seed, index, count, self.cfg)
        if clip.sample_rate != self.sr:
            raise DataError(f"the synthetic clips are at {clip.sample_rate} Hz, the separator needs {self.sr} Hz")
        stem_obj = [None] * clip.stems.shape[0]
        for o in clip.objects:
            if o["sounding"]:
                stem_obj[o["stem_index"]] = o["id"]
        m = clip.masks[:, stem_obj]  # [T, S, H, W]
        visible = (m.sum(axis=(2, 3)) >= 40).all(axis=1)
        idx = _pick_frames(len(clip.frames), clip.fps, float(clip.meta["duration"]), n_frames, rng, visible)
        frames = _stacks(lambda j: _resize_frame(clip.frames[j], self.size), idx, clip.fps, len(clip.frames),
                         self.av_cfg)
        return RawClip(f"synth:{self.seed if seed is None else seed}:{index}:{count}", clip.audio.astype(np.float32),
                       clip.stems.astype(np.float32), frames, (idx + 0.5) / clip.fps, m[idx])


class ManifestSource:
    """Clips of a manifest decoded through the media layer; stems from synthetic sidecars
    (a solo clip without one is its own stem; a clip of several sources needs them)."""

    def __init__(self, rows, av_cfg, sample_rate: int, max_seconds: float = 30.0):
        self.rows = list(rows)
        self.av_cfg = av_cfg
        self.size = int(av_cfg.frame_size)
        self.sr = sample_rate
        self.max_seconds = max_seconds
        self.failures: dict[str, str] = {}

    def describe(self) -> dict:
        return {"clips": len(self.rows)}

    def raw(self, i: int, n_frames: int, rng: np.random.Generator) -> Optional[RawClip]:
        from ...media import VideoReader, read_audio

        r = self.rows[i]
        try:
            gt = None
            try:
                from ...data.synth import load_ground_truth

                gt = load_ground_truth(r.path)
            except DataError:
                gt = None
            with VideoReader(r.path) as vr:
                fps = float(vr.info.fps or 25.0)
                n = vr.frame_count
                dur = min(n / fps, self.max_seconds)
                n_use = max(1, min(n, int(dur * fps)))
                stems, masks_full, visible = None, None, None
                if gt is not None:
                    stem_obj = [None] * gt.stems.shape[0]
                    for o in gt.objects:
                        if o.get("sounding"):
                            stem_obj[o["stem_index"]] = o["id"]
                    masks_full = gt.masks[:, stem_obj]
                    visible = (masks_full.sum(axis=(2, 3)) >= 40).all(axis=1)
                    if len(visible) < n_use:
                        visible = np.concatenate([visible, np.zeros(n_use - len(visible), bool)])
                idx = _pick_frames(n_use, fps, dur, n_frames, rng, visible)
                frames = _stacks(lambda j: vr.frame(int(j), size=(self.size, self.size)).transpose(2, 0, 1),
                                 idx, fps, n, self.av_cfg)
            audio = read_audio(r.path, self.sr, 0.0, dur).astype(np.float32)
            if gt is not None:
                stems = gt.stems
                if gt.sample_rate != self.sr:
                    import torchaudio.functional as AF

                    stems = AF.resample(torch.from_numpy(stems), gt.sample_rate, self.sr).numpy()
                N = len(audio)
                stems = np.pad(stems[:, :N], ((0, 0), (0, max(0, N - stems.shape[1]))))
                masks = masks_full[np.minimum(idx, len(masks_full) - 1)]
            else:
                if (r.count or 0) != 1:
                    raise DataError(f"{r.path}: {r.count} sources but no ground-truth stems beside it "
                                    "(only solo clips can train without them)")
                stems, masks = audio[None], None
        except AVStudioError as exc:
            self.failures[r.path] = str(exc)
            return None
        return RawClip(r.path, audio, stems.astype(np.float32), frames, (idx + 0.5) / fps, masks)


@torch.no_grad()
def prepare_clip(av, raw: RawClip, device: torch.device, n_pixels: int, rng: np.random.Generator,
                 conditioning: str = "attended", tau: float = 0.05) -> PreparedClip:
    """Visual vectors of each stem's object from the frozen AV model (see the module doc):
    the k = count sound clusters of each frame's own audio window, and for each the
    attended visual vector (``conditioning="attended"``, :func:`avstudio.nets.separator.attend`)
    or the aligned visual center (``"center"``)."""
    from ...data.clips import audio_window
    from ...nets.separator import attend, attention_maps

    cfg = av.cfg
    S = raw.stems.shape[0]
    k = S
    fr = torch.from_numpy(raw.frames).to(device)
    wv = torch.from_numpy(np.stack([audio_window(raw.audio, float(t), cfg) for t in raw.times])).to(device)
    vis = av.visual(fr)  # [F, D, h, w]
    aud, w = av.audio(wv)
    loc = av.localize_features(vis, aud, w, k)
    Fn, D, h, wd = vis.shape
    if conditioning == "center":
        V = torch.gather(loc.visual_centers, 1, loc.match.unsqueeze(-1).expand(-1, -1, D))  # [F, k, D]
        where_k = loc.aligned  # [F, k, h, w]
    else:
        V = attend(vis, loc.audio_centers, tau)
        where_k = attention_maps(vis, loc.audio_centers, tau)
    if raw.masks is not None:
        gt = torch.from_numpy(raw.masks.astype(np.float32)).to(device)  # [F, S, H, W]
        gt = F.adaptive_avg_pool2d(gt, (h, wd))  # coverage of each cell
        if k > 1:  # stem s <- the cluster whose mask (or attention) lies most on its object
            ov = torch.einsum("fshw,fkhw->fsk", gt, where_k) / where_k.sum((2, 3)).clamp_min(1e-6).unsqueeze(1)
            _, perm = best_matching(ov)  # [F, S]
            V = torch.gather(V, 1, perm.unsqueeze(-1).expand(-1, -1, D))
        where = gt
    else:
        where = loc.aligned  # the model's own belief: the aligned cluster's mask
    vf = vis.flatten(2).transpose(1, 2)  # [F, N, D]
    wf = where.flatten(2).cpu().numpy()  # [F, S, N]
    pix = np.zeros((Fn, S, n_pixels, D), np.float32)
    vfn = vf.cpu().numpy()
    for f in range(Fn):
        for s in range(S):
            cand = np.nonzero(wf[f, s] >= 0.5)[0]
            if len(cand) == 0:
                cand = np.array([int(np.argmax(wf[f, s]))])
            pick = rng.choice(cand, size=n_pixels, replace=len(cand) < n_pixels)
            pix[f, s] = vfn[f, pick]
    return PreparedClip(raw.name, raw.audio, raw.stems, V.cpu().numpy().astype(np.float32), pix)


def make_batch(pool: Sequence[PreparedClip], rng: np.random.Generator, batch: int, seg: int,
               gain_db: float, pixel_prob: float, partners: Optional[Sequence[PreparedClip]] = None):
    """Mixtures of two clips each: (mix [B, seg], sources [B, n, seg], cond [B, n, D]).
    Both clips come from ``pool``, or the second from ``partners`` when given."""
    mixes, srcs, conds = [], [], []
    for _ in range(batch):
        if partners is None:
            i, j = rng.choice(len(pool), size=2, replace=False)
            pair = (pool[i], pool[j])
        else:
            pair = (pool[int(rng.integers(len(pool)))], partners[int(rng.integers(len(partners)))])
        mix = np.zeros(seg, np.float32)
        ss, cc = [], []
        for c in pair:
            N = len(c.audio)
            off = int(rng.integers(0, max(1, N - seg + 1)))
            g = np.float32(10 ** (rng.uniform(-gain_db, gain_db) / 20.0))
            a = np.zeros(seg, np.float32)
            a[:min(seg, N - off)] = c.audio[off:off + seg]
            st = np.zeros((c.stems.shape[0], seg), np.float32)
            st[:, :min(seg, N - off)] = c.stems[:, off:off + seg]
            mix += g * a
            ss.append(g * st)
            f = int(rng.integers(c.vectors.shape[0]))
            for s in range(c.stems.shape[0]):
                if rng.random() < pixel_prob:
                    cc.append(c.pixels[f, s, int(rng.integers(c.pixels.shape[2]))])
                else:
                    cc.append(c.vectors[f, s])
        mixes.append(mix)
        srcs.append(np.concatenate(ss))
        conds.append(np.stack(cc))
    return (torch.from_numpy(np.stack(mixes)), torch.from_numpy(np.stack(srcs)),
            torch.from_numpy(np.stack(conds)))
