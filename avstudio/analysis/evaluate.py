"""`avstudio eval`: localization, counting (and separation) on a held-out benchmark folder.

Per complexity level (C1, C2, C3, ...), with the baselines computed in the same run:
whole-image, center prior and the unaligned visual center (the paper's control); the
mixture and the ideal ratio mask for separation; the majority class for counting.

Per-source localization in scenes with several sources: the model clusters the mixture
into k audio centers; each ground-truth source is given the cluster whose center is
closest to the embedding of that source's clean stem alone (an assignment made by sound,
never by looking at the heatmaps), and that cluster's heatmap is scored against that
source's mask. So "each sound's heatmap on its own object" is what is measured.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..data.clips import audio_window
from ..data.manifest import find_manifest, read_manifest
from ..data.synth import load_ground_truth
from ..errors import DataError
from ..media import VideoReader, read_audio
from ..nets.kmeans import best_matching
from ..progress import ProgressFn, check_cancel, emit
from . import metrics as M
from .localize import predict_count
from .separate import evaluate_separation


@dataclass
class Sample:
    clip: str
    level: int  # number of sounding sources
    frame: np.ndarray  # uint8 [3, S, S], or a stack [F, 3, S, S] for a model that stacks frames
    wave: np.ndarray  # mixture window [samples]
    stems: np.ndarray  # clean stem windows [k, samples]
    masks: np.ndarray  # bool [k, H, W] per sounding source (stem order)


def pick_eval_frames(gt, n: int, audio_seconds: float = 1.0, active: float = 0.4) -> np.ndarray:
    """Up to ``n`` frame indices of a clip to score, evenly spread, at least half a second from
    its ends. Where the ground truth has each stem's loudness per frame (the photo world, whose
    recordings pause), only moments where every source is heard are used: each stem's loudness
    reaches ``active`` (about 18 dB below its peak) within the middle half of the audio window,
    the part of the window the frame shows; a clip with no such moment uses the moments where
    its quietest source is loudest."""
    fps = gt.fps
    T = gt.masks.shape[0]
    lo, hi = int(0.5 * fps), max(int(0.5 * fps) + 1, T - int(0.5 * fps))
    cand = np.arange(lo, hi)
    loud = gt.loudness
    if loud is None or loud.shape[0] == 0 or loud.shape[1] != T:
        return np.unique(np.linspace(lo, hi - 1, n).round().astype(int))
    r = max(1, int(round(audio_seconds * fps / 4)))
    pad = np.pad(loud, ((0, 0), (r, r)), mode="edge")
    win = np.stack([pad[:, i:i + T] for i in range(2 * r + 1)]).max(axis=0)  # [S, T]
    heard = win.min(axis=0)[cand]  # the quietest source's loudness near each moment
    ok = cand[heard >= active]
    if len(ok) == 0:
        ok = cand[np.argsort(-heard, kind="stable")[:max(n, 1)]]
        ok.sort()
    pick = np.unique(np.linspace(0, len(ok) - 1, min(n, len(ok))).round().astype(int))
    return ok[pick]


def load_samples(data: str | Path, cfg, frames_per_clip: int = 4, levels: Optional[Sequence[int]] = None,
                 max_clips: Optional[int] = None, progress: ProgressFn | None = None, cancel=None) -> list[Sample]:
    """Evaluation samples (frame, audio window, clean stems, masks) from a synth folder."""

    rows = read_manifest(find_manifest(data))
    if levels:
        rows = [r for r in rows if r.count in set(levels)]
    if max_clips:
        rows = rows[:max_clips]
    S = cfg.frame_size
    out: list[Sample] = []
    for ci, r in enumerate(rows):
        check_cancel(cancel, "evaluation")
        gt = load_ground_truth(r.path)
        fps = float(gt.meta["fps"])
        sr = int(gt.meta["sample_rate"])
        objects = gt.meta["objects"]
        sounding = [o for o in objects if o.get("sounding")]
        sounding.sort(key=lambda o: o["stem_index"])
        obj_index = [objects.index(o) for o in sounding]
        T = gt.masks.shape[0]
        idx = pick_eval_frames(gt, frames_per_clip, cfg.audio_seconds)
        audio = read_audio(r.path, cfg.sample_rate)
        stems = gt.stems
        if sr != cfg.sample_rate:
            import torchaudio.functional as AF

            stems = AF.resample(torch.from_numpy(stems), sr, cfg.sample_rate).numpy()
        with VideoReader(r.path) as vr:
            need = sorted({j for t in idx for j in cfg.stack_indices(int(t), fps, T)})
            got = {fi: rgb.transpose(2, 0, 1) for fi, _, rgb in vr.frames(need[0], need[-1] + 1, size=(S, S))
                   if fi in set(need)}
            last = max(got) if got else 0
            for t in idx:
                stack = [got.get(j, got.get(last)) for j in cfg.stack_indices(int(t), fps, T)]
                frame = stack[len(stack) // 2] if cfg.stack <= 1 else np.stack(stack)
                c = t / fps  # frame t shows time t / fps
                out.append(Sample(
                    clip=r.path, level=len(sounding), frame=np.ascontiguousarray(frame),
                    wave=audio_window(audio, c, cfg),
                    stems=np.stack([audio_window(s, c, cfg) for s in stems]) if len(stems) else
                    np.zeros((0, cfg.audio_samples), np.float32),
                    masks=np.stack([gt.masks[t, o] for o in obj_index]).astype(bool) if obj_index else
                    np.zeros((0,) + gt.masks.shape[2:], bool)))
        emit(progress, "load", ci + 1, len(rows))
    return out


@torch.no_grad()
def localization_scores(av, samples: Sequence[Sample], batch: int = 32, baselines: bool = True) -> dict:
    """Per-level summaries: model, aligned center, unaligned center, whole image, center prior."""
    dev = next(av.parameters()).device
    by_level: dict[int, dict[str, list]] = {}
    for lvl in sorted({s.level for s in samples if s.level >= 1}):
        group = [s for s in samples if s.level == lvl]
        res = {"model": [], "aligned_center": [], "unaligned_center": [], "whole_image": [], "center_prior": []}
        for b in range(0, len(group), batch):
            chunk = group[b:b + batch]
            fr = torch.from_numpy(np.stack([s.frame for s in chunk])).to(dev)
            wv = torch.from_numpy(np.stack([s.wave for s in chunk])).to(dev)
            loc = av.localize(fr, wv, lvl)
            st = torch.from_numpy(np.concatenate([s.stems for s in chunk])).to(dev)
            emb = av.audio_embedding(st).reshape(len(chunk), lvl, -1)  # [B, k, D]
            # cluster of each source, decided by sound: clean stem embedding vs mixture centers
            _, perm = best_matching(torch.einsum("bsd,bkd->bsk", emb, loc.audio_centers))
            heat = loc.heatmaps.cpu().numpy()
            al = loc.aligned.cpu().numpy()
            un = loc.unaligned.cpu().numpy()
            pm = perm.cpu().numpy()
            for i, s in enumerate(chunk):
                shape = s.masks.shape[1:]
                for src in range(lvl):
                    g = s.masks[src]
                    if g.sum() == 0:
                        continue  # the object is hidden in this frame
                    j = pm[i, src]
                    res["model"].append(M.score_heatmap(heat[i, j], g))
                    res["aligned_center"].append(M.score_heatmap(al[i, j], g))
                    res["unaligned_center"].append(M.score_heatmap(un[i], g))
                    if baselines:
                        res["whole_image"].append(M.score_heatmap(np.ones(shape, np.float32), g))
                        res["center_prior"].append(M.score_heatmap(M.center_prior(shape), g))
                        if s.frame.ndim == 4:  # a stack of frames: the motion-only baseline too
                            res.setdefault("motion_prior", []).append(M.score_heatmap(M.motion_prior(s.frame), g))
        by_level[lvl] = {name: M.summarise(v) for name, v in res.items() if v}
        by_level[lvl]["n_samples"] = len(res["model"])
    return {f"C{k}": v for k, v in by_level.items()}


def make_val_fn(data: str | Path, cfg=None, frames_per_clip: int = 2, max_clips: int = 40):
    """A validation callback for the trainer: primary cIoU@0.5 etc. at the stage's level.
    Samples are read with the input settings of the model it is given (``cfg`` is unused, kept
    for callers)."""
    cache: dict[int, list[Sample]] = {}

    def val(av, k: int) -> dict:
        if k not in cache:
            cache[k] = load_samples(data, av.cfg, frames_per_clip, levels=[k], max_clips=max_clips)
        if not cache[k]:
            return {}
        r = localization_scores(av, cache[k], baselines=False).get(f"C{k}", {})
        m = r.get("model", {}).get(M.PRIMARY, {})
        return {"ciou@0.5": m.get("ciou@0.5"), "mean_ciou": m.get("mean_ciou"), "nsa": m.get("nsa")}

    return val


def evaluate(bundle, data: str | Path, frames_per_clip: int = 4, max_clips: Optional[int] = None,
             separation: bool = True, progress: ProgressFn | None = None, cancel=None) -> dict:
    t0 = time.time()
    cfg = bundle.av.cfg
    samples = load_samples(data, cfg, frames_per_clip, max_clips=max_clips, progress=progress, cancel=cancel)
    if not samples:
        raise DataError(f"{data}: no clip with sounding sources to evaluate")
    loc = localization_scores(bundle.av, samples)
    result = {
        "model": bundle.name,
        "data": str(data),
        "frames_per_clip": frames_per_clip,
        "primary": f"'model' = heatmap of each sound's audio center, binarised at {M.PRIMARY} "
                   "of the min-max normalised map; 'median' binarisation reported beside it",
        "localization": loc,
    }
    if bundle.counter is not None:
        rows = read_manifest(find_manifest(data))
        if max_clips:
            rows = rows[:max_clips]
        true, pred = [], []
        for i, r in enumerate(rows):
            check_cancel(cancel, "evaluation")
            if r.count is None:
                continue
            n, _, _ = predict_count(bundle, r.path)
            true.append(r.count)
            pred.append(n)
            emit(progress, "count", i + 1, len(rows))
        result["counting"] = M.counting_summary(true, pred)
    if separation and bundle.separator is not None:
        result["separation"] = evaluate_separation(bundle, data, max_clips=max_clips, progress=progress,
                                                   cancel=cancel)
    result["seconds"] = time.time() - t0
    return result
