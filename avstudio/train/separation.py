"""Training the visually-guided separator by mix-and-separate (Sound-of-Pixels; Hu et al. 2023).

The clustering-alignment model (``--av-model``) is frozen: it only provides the visual
vectors the separator is conditioned on, exactly as at inference. One training example:

1. take two clips of the stage's source count k (stage C1: two solos; C2: two duets);
2. mix their audio (random 2 s segments, random gains of +-5 dB each): the mixture holds
   2k sources;
3. condition on each source's visual vector, taken from a frame of its own clip by the
   frozen AV model: the k sound clusters of the clip's own audio window (soft k-means,
   k = the clip's count), and for each its *attended* visual vector (the visual features
   pooled where that sound is heard, :func:`avstudio.nets.separator.attend`; or the
   aligned visual center with ``conditioning="center"``). In a duet the k vectors are put
   in stem order by sight: the cluster whose attention lies most on the object of stem s
   (an optimal one-to-one matching; the synthetic ground truth says which object made which
   stem). With probability ``pixel_prob`` the visual feature at a random pixel of the
   object is used instead (so "the sound of a pixel" is in distribution);
4. the separator predicts one mask per source; the loss is on the separated waveforms
   (``loss="snr"``, the default: soft-thresholded SNR, as MixIT) or, as Sound-of-Pixels, on
   the masks (``loss="mask"``: ratio mask weighted L1 / binary mask weighted BCE).

Clips come from the synthetic benchmark rendered on the fly (``--synth-seed S``: every
epoch renders a fresh pool of clips ``render_clip(S, i, k)``, so no clip is seen twice and
the stems are exact) or from a manifest read through the media layer (stems from the
synthetic sidecars; a solo clip without a sidecar is its own stem).

Engineering as :mod:`avstudio.train.trainer`: progress events, a checkpoint (safetensors +
JSON card, optimizer included, never pickle) after every epoch, rerunning the same command
resumes (at most one epoch lost), seeded and reproducible, CPU or CUDA, a ``--max-minutes``
budget shared out over the stages. A run folder holds::

    run.json, history.jsonl
    checkpoint.safetensors (+ .json)      separator + optimizer after the last finished epoch
    stages/C<k>.safetensors (+ .json)     the separator at the end of each stage
    separator.safetensors (+ .json)       the final separator (its card names the AV model)
    model/                                a complete MODEL folder: the AV model's file(s) +
                                          the separator (``avstudio analyze --model RUN/model``)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import AVStudioError, Cancelled, CheckpointError, DataError
from ..nets.checkpoint import card_path, component_tensors, load_model, save_tensors
from ..nets.files import file_sha256, weights_sha256
from ..nets.kmeans import best_matching, normalize
from ..nets.separator import Separator, SeparatorConfig
from ..progress import ProgressFn, emit
from .resume import finished_run, load_checkpoint, trim_history
from .trainer import _load_opt, _opt_tensors


@dataclass
class SepTrainConfig:
    stages: list[int] = field(default_factory=lambda: [1, 2])
    epochs: int = 20  # per stage
    steps: int = 60  # optimizer steps per epoch
    batch: int = 8  # mixtures per step
    pool: int = 32  # clips per epoch (rendered fresh each epoch for synth data)
    frames_per_clip: int = 4  # frames per clip whose visual vectors are used
    pixels_per_source: int = 16  # pixel features kept per source and frame
    segment_frames: int = 128  # STFT frames per training segment (128 x 256 hop = 2.03 s)
    lr: float = 1e-3
    weight_decay: float = 0.0
    pixel_prob: float = 0.25  # share of conditionings that use a pixel feature, not a center
    gain_db: float = 5.0  # each clip's gain in a mixture: uniform +-gain_db
    loss: str = "snr"  # "snr" (on the waveforms) or "mask" (Sound-of-Pixels: L1 / BCE on the mask)
    later_stages: str = "same"  # stages k > 1: "same" (two clips of count k) or "mixed" (with solos)
    val_mixtures: int = 12  # held-out mixtures per stage (other seeds) scored after each epoch
    max_minutes: Optional[float] = None
    seed: int = 0
    device: str = "cpu"
    threads: Optional[int] = None
    synth_seed: Optional[int] = None
    synth: dict = field(default_factory=dict)  # SynthConfig overrides for on-the-fly clips
    manifest: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- data ---------------------------------------------------------------------------------------

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
        from ..data.synth import config_from_dict

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
        from ..data.synth import render_any

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
        from ..media import VideoReader, read_audio

        r = self.rows[i]
        try:
            gt = None
            try:
                from ..data.synth import load_ground_truth

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
    from ..data.clips import audio_window
    from ..nets.separator import attend, attention_maps

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


# -- the trainer -----------------------------------------------------------------------------------

@dataclass
class SepTrainResult:
    run_dir: Path
    model_path: Path
    history: list[dict[str, Any]]
    resumed: bool = False
    already_done: bool = False
    skipped_clips: dict[str, str] = field(default_factory=dict)


class SeparatorTrainer:
    def __init__(self, av_model: str, run_dir: str | os.PathLike, tcfg: SepTrainConfig,
                 sep_cfg: Optional[SeparatorConfig] = None, rows=None, progress: ProgressFn | None = None,
                 cancel=None, command: Optional[str] = None, sep_overrides: Optional[dict] = None):
        if (tcfg.synth_seed is None) == (rows is None):
            raise DataError("give either manifest rows or a synthetic seed to train the separator on")
        self.tcfg = tcfg
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.cancel = cancel
        self.command = command or " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])
        dev = tcfg.device
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise DataError("--device cuda was asked for but no CUDA device is available")
        self.device = torch.device(dev)
        if tcfg.threads:
            torch.set_num_threads(tcfg.threads)
        self.av_model = str(av_model)
        bundle = load_model(av_model, device=dev)
        if bundle.av is None:
            raise CheckpointError(f"{av_model}: holds no clustering-alignment model (the separator is "
                                  "trained in its visual space)")
        self.av = bundle.av.eval()
        for p in self.av.parameters():
            p.requires_grad_(False)
        self.av_path = bundle.paths["av"]
        self.av_sha = file_sha256(self.av_path)
        self.av_weights_sha = weights_sha256(self.av)
        self.sep_cfg = sep_cfg or SeparatorConfig(**{"cond_dim": self.av.cfg.embed_dim, **(sep_overrides or {})})
        self.sep_cfg.check()
        if self.sep_cfg.cond_dim != self.av.cfg.embed_dim:
            raise DataError(f"the separator's conditioning has {self.sep_cfg.cond_dim} dimensions, the AV "
                            f"model's visual vectors {self.av.cfg.embed_dim}")
        torch.manual_seed(tcfg.seed)
        self.model = Separator(self.sep_cfg).to(self.device)
        self.synth = None
        self.manifest = None
        if tcfg.synth_seed is not None:
            self.synth = SynthSource(tcfg.synth_seed, self.av.cfg, self.sep_cfg.sample_rate, tcfg.synth)
            self.data_summary = {"source": "synth (rendered on the fly)", **self.synth.describe()}
        else:
            self.manifest = ManifestSource(rows, self.av.cfg, self.sep_cfg.sample_rate)
            counts: dict[str, int] = {}
            for r in rows:
                counts[str(r.count)] = counts.get(str(r.count), 0) + 1
            self.data_summary = {"source": "manifest", "manifest": tcfg.manifest, "clips": len(rows),
                                 "clips_per_count": counts}
        self.history: list[dict[str, Any]] = []
        self._prepared: dict[int, list[PreparedClip]] = {}
        self._val: dict[int, list] = {}

    # -- files ------------------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoint.safetensors"

    def _card(self, stages_done: list[dict], extra: Optional[dict] = None) -> dict[str, Any]:
        card = {
            "kind": "avstudio-separator",
            "components": {"sep": {"class": "Separator", "config": self.sep_cfg.to_dict()}},
            "av_model": {"path": str(self.av_path), "sha256": self.av_sha, "weights_sha256": self.av_weights_sha,
                         "embed_dim": self.av.cfg.embed_dim, "frame_size": self.av.cfg.frame_size},
            "training": self.tcfg.to_dict(),
            "recipe": self.recipe(),
            "stages": stages_done,
            "data": self.data_summary,
            "command": self.command,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "torch": torch.__version__,
        }
        if extra:
            card.update(extra)
        return card

    def recipe(self) -> str:
        c2 = ("mixtures of a duet and a solo clip, alternating with mixtures of two solo clips"
              if self.tcfg.later_stages == "mixed" else "mixtures of two duets")
        what = ("attended visual vector (visual features pooled where the cluster's sound is heard)"
                if self.sep_cfg.conditioning == "attended" else "aligned visual center")
        return (f"mix-and-separate, loss {self.tcfg.loss}: C1 = mixtures of two solo clips, each recovered "
                f"from its {what} (k=1); C2 = {c2}, each duet's 2 stems recovered from "
                f"its 2 clusters' vectors (k=2), put in stem order by sight; {self.tcfg.pixel_prob:.0%} of "
                "the conditionings are the visual feature at a pixel of the object instead")

    def _write_run_json(self, status: str, extra: Optional[dict] = None) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        info = {"status": status, "training": self.tcfg.to_dict(), "separator": self.sep_cfg.to_dict(),
                "av_model": {"path": str(self.av_path), "sha256": self.av_sha,
                             "weights_sha256": self.av_weights_sha},
                "data": self.data_summary, "command": self.command}
        if extra:
            info.update(extra)
        tmp = self.run_dir / "run.json.tmp"
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, self.run_dir / "run.json")

    def _log(self, entry: dict[str, Any]) -> None:
        self.history.append(entry)
        with open(self.run_dir / "history.jsonl", "a") as fh:
            fh.write(json.dumps(entry) + "\n")

    def _compatible(self, old: dict[str, Any]) -> bool:
        keep = ("stages", "epochs", "steps", "batch", "pool", "seed", "synth_seed", "manifest",
                "segment_frames", "pixel_prob", "lr", "loss", "later_stages")
        a, b = old.get("training", {}), self.tcfg.to_dict()
        oa = old.get("av_model", {})
        same_av = (oa.get("weights_sha256") == self.av_weights_sha if oa.get("weights_sha256")
                   else oa.get("sha256") == self.av_sha)
        return all(a.get(x) == b.get(x) for x in keep) and old.get("separator") == self.sep_cfg.to_dict() and same_av

    # -- data --------------------------------------------------------------------------------
    def _check_cancel(self, what: str) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"separator training cancelled {what}; the last finished epoch is saved")

    def _prepare(self, raw: RawClip, n_pixels: int, rng) -> PreparedClip:
        return prepare_clip(self.av, raw, self.device, n_pixels, rng, self.sep_cfg.conditioning,
                            self.sep_cfg.attend_tau)

    def _manifest_pool(self, k: int) -> list[PreparedClip]:
        """Manifest clips of count k, decoded and prepared once (the AV model is frozen)."""
        if k not in self._prepared:
            idx = [i for i, r in enumerate(self.manifest.rows) if r.count == k]
            out = []
            for n, i in enumerate(idx):
                self._check_cancel("while decoding clips")
                rng = np.random.default_rng([self.tcfg.seed, 77, i])
                raw = self.manifest.raw(i, self.tcfg.frames_per_clip, rng)
                if raw is not None and raw.stems.shape[0] == k:
                    out.append(self._prepare(raw, self.tcfg.pixels_per_source, rng))
                elif raw is not None:
                    self.manifest.failures[raw.name] = f"{raw.stems.shape[0]} stems but count {k}"
                emit(self.progress, f"decode:C{k}", n + 1, len(idx))
            self._prepared[k] = out
        return self._prepared[k]

    def _pool(self, k: int, si: int, epoch: int, size: Optional[int] = None, offset: int = 0) -> list[PreparedClip]:
        size = self.tcfg.pool if size is None else size
        if self.synth is None:
            allc = self._manifest_pool(k)
            n_val = self._n_val_manifest(len(allc))
            train = allc[n_val:]
            if len(train) < 2:
                raise DataError(f"stage C{k} needs at least 2 usable clips with {k} source(s) "
                                f"(the manifest gives {len(allc)})")
            rng = np.random.default_rng([self.tcfg.seed, k, epoch, 5] + ([offset] if offset else []))
            pick = rng.choice(len(train), size=min(size, len(train)), replace=False)
            return [train[int(i)] for i in pick]
        out = []
        # clip indices far above those of any `avstudio synth` folder (0, 1, 2, ...), so the
        # training clips never coincide with a benchmark made with the same seed
        base = 10_000_000 * k + offset + epoch * size
        for j in range(size):
            self._check_cancel("while rendering clips")
            rng = np.random.default_rng([self.tcfg.seed, k, epoch, j] + ([offset] if offset else []))
            raw = self.synth.raw(base + j, k, self.tcfg.frames_per_clip, rng)
            out.append(self._prepare(raw, self.tcfg.pixels_per_source, rng))
            emit(self.progress, f"render:C{k}", j + 1, size, f"epoch {epoch + 1}")
        return out

    @staticmethod
    def _n_val_manifest(n: int) -> int:
        return min(2 * 12, n // 5) if n >= 10 else 0

    def _val_pairs(self, k: int):
        if k in self._val:
            return self._val[k]
        pairs = []
        if self.synth is not None:
            clips = []
            for j in range(2 * self.tcfg.val_mixtures):
                rng = np.random.default_rng([self.tcfg.seed, k, 99, j])
                raw = self.synth.raw(9_000_000 + 1000 * k + j, k, self.tcfg.frames_per_clip, rng)
                clips.append(self._prepare(raw, 1, rng))
                emit(self.progress, f"render:val:C{k}", j + 1, 2 * self.tcfg.val_mixtures)
            pairs = [(clips[2 * i], clips[2 * i + 1]) for i in range(self.tcfg.val_mixtures)]
        else:
            allc = self._manifest_pool(k)
            n_val = self._n_val_manifest(len(allc))
            pairs = [(allc[2 * i], allc[2 * i + 1]) for i in range(n_val // 2)]
        self._val[k] = pairs
        return pairs

    # -- main ---------------------------------------------------------------------------------
    def run(self) -> SepTrainResult:
        t = self.tcfg
        final = self.run_dir / "separator.safetensors"
        resumed = False
        start_stage, start_epoch = 0, 0
        elapsed_before = 0.0
        stages_done: list[dict] = []
        opt_state = None
        hist = finished_run(self.run_dir, self._compatible, final)
        if hist is not None:
            emit(self.progress, "train-separator", 1, 1, "already finished")
            return SepTrainResult(self.run_dir, final, hist, already_done=True)
        if self.ckpt_path.exists():
            tensors, card, ck = load_checkpoint(self.ckpt_path, {"sep.": self.model})
            start_stage, start_epoch = ck["stage_index"], ck["epoch"] + 1
            elapsed_before = float(ck.get("elapsed_s", 0.0))
            stages_done = card.get("stages", [])
            opt_state = (tensors, ck["optimizer"])
            resumed = True
            mark = (ck["stage_index"], ck["epoch"])
            self.history = trim_history(self.run_dir, lambda e: (e["stage_index"], e["epoch"]) <= mark)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_run_json("running")
        t0 = time.time() - elapsed_before
        budget = None if t.max_minutes is None else t.max_minutes * 60.0
        for si in range(start_stage, len(t.stages)):
            k = t.stages[si]
            ep0 = start_epoch if si == start_stage else 0
            if si != start_stage:
                opt_state = None
            deadline = None if budget is None else t0 + budget * (si + 1) / len(t.stages)
            info = self._train_stage(si, k, ep0, opt_state, stages_done, t0, deadline)
            stages_done = [s for s in stages_done if s["stage_index"] != si] + [info]
            save_tensors(self.run_dir / "stages" / f"C{k}.safetensors", component_tensors("sep", self.model),
                         self._card(stages_done))
        metrics = {s["stage"]: s.get("val", {}) for s in stages_done}
        card = self._card(stages_done, {"metrics": {"validation_si_sdr": metrics}, "history": self.history,
                                        "train_seconds": time.time() - t0})
        save_tensors(final, component_tensors("sep", self.model), card)
        self._write_model_folder(final)
        skipped = dict(self.manifest.failures) if self.manifest is not None else {}
        self._write_run_json("done", {"model": str(final), "model_folder": str(self.run_dir / "model"),
                                      "skipped_clips": skipped})
        return SepTrainResult(self.run_dir, final, self.history, resumed=resumed, skipped_clips=skipped)

    def _write_model_folder(self, sep_file: Path) -> None:
        """RUN/model: the AV model's file + the separator, a MODEL folder load_model reads whole."""
        out = self.run_dir / "model"
        out.mkdir(parents=True, exist_ok=True)
        src = Path(self.av_path)
        for p in (src, card_path(src)):
            dst = out / p.name
            if dst.name.startswith("separator"):
                dst = out / ("localizer" + p.suffix)
            shutil.copyfile(p, dst)
        for p in (sep_file, card_path(sep_file)):
            shutil.copyfile(p, out / p.name)

    def _train_stage(self, si: int, k: int, ep0: int, opt_state, stages_done, t0: float,
                     deadline: Optional[float]) -> dict:
        t = self.tcfg
        model = self.model
        opt = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        if opt_state is not None:
            _load_opt(opt, *opt_state)
        hop = model.cfg.hop_length
        seg = (t.segment_frames - 1) * hop
        task = f"train:C{k}"
        total = t.steps * t.epochs
        last: dict[str, Any] = {"loss": float("nan")}
        epochs_run = ep0
        val_pairs = self._val_pairs(k) if t.val_mixtures > 0 else []
        for epoch in range(ep0, t.epochs):
            if deadline is not None and time.time() > deadline:
                break
            torch.manual_seed(t.seed * 1000003 + k * 1009 + epoch)
            solos = None
            if k > 1 and t.later_stages == "mixed":
                # half the pool of count k, half solos (other clips than stage C1's): steps
                # alternate between a count-k clip mixed with a solo and two solos
                pool = self._pool(k, si, epoch, size=max(2, t.pool // 2))
                solos = self._pool(1, si, epoch, size=max(2, t.pool // 2), offset=5_000_000)
            else:
                pool = self._pool(k, si, epoch)
            rng = np.random.default_rng([t.seed, k, epoch, 1])
            model.train()
            sl, n = 0.0, 0
            for s in range(t.steps):
                self._check_cancel(f"in stage C{k}, epoch {epoch + 1}")
                if deadline is not None and n > 0 and time.time() > deadline:
                    break
                if solos is None:
                    mix, src, cond = make_batch(pool, rng, t.batch, seg, t.gain_db, t.pixel_prob)
                elif s % 2 == 0:
                    mix, src, cond = make_batch(pool, rng, t.batch, seg, t.gain_db, t.pixel_prob, solos)
                else:
                    mix, src, cond = make_batch(solos, rng, t.batch, seg, t.gain_db, t.pixel_prob)
                loss, _ = separation_loss(model, mix.to(self.device), src.to(self.device), cond.to(self.device),
                                          t.loss)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                opt.step()
                sl += float(loss.detach())
                n += 1
                emit(self.progress, task, epoch * t.steps + s + 1, total, f"epoch {epoch + 1}/{t.epochs}",
                     loss=sl / n, epoch=epoch + 1, stage=f"C{k}")
            last = {"loss": sl / max(n, 1)}
            entry = {"stage": f"C{k}", "k": k, "stage_index": si, "epoch": epoch, "steps": n,
                     "time_s": time.time() - t0, **last}
            if val_pairs:
                entry["val"] = validate(model, val_pairs, self.device)
            self._log(entry)
            emit(self.progress, task, (epoch + 1) * t.steps, total, f"epoch {epoch + 1}/{t.epochs}",
                 epoch_done=epoch + 1, **last, **({"val_si_sdr": entry["val"].get("si_sdr")}
                                                  if entry.get("val") else {}))
            info = {"k": k, "stage": f"C{k}", "stage_index": si, "epochs": epoch + 1, **last,
                    "val": entry.get("val", {})}
            done = [x for x in stages_done if x["stage_index"] != si] + [info]
            tensors = component_tensors("sep", model)
            ot, ometa = _opt_tensors(opt)
            tensors.update(ot)
            save_tensors(self.ckpt_path, tensors, self._card(done, {"checkpoint": {
                "stage_index": si, "epoch": epoch, "elapsed_s": time.time() - t0, "optimizer": ometa}}))
            epochs_run = epoch + 1
        if epochs_run == ep0 and ep0 > 0:
            prev = [x for x in stages_done if x["stage_index"] == si]
            if prev:
                return prev[0]
        val = [e.get("val", {}) for e in self.history if e["stage_index"] == si]
        return {"k": k, "stage": f"C{k}", "stage_index": si, "epochs": epochs_run, **last,
                "val": val[-1] if val else {}}


__all__ = ["SepTrainConfig", "SeparatorTrainer", "SepTrainResult", "make_batch", "prepare_clip",
           "separation_loss", "SynthSource", "ManifestSource", "validate", "si_sdr"]
