"""`avstudio eval`: localization, counting (and separation) on a held-out benchmark folder.

Per complexity level (C1, C2, C3, ...), with the baselines computed in the same run:
whole-image, center prior and the unaligned visual center (the paper's control); the
mixture and the ideal ratio mask for separation; the majority class for counting.

Per-source localization in scenes with several sources: the model clusters the mixture
into k audio centers; each ground-truth source is given the cluster whose center is
closest to the embedding of that source's clean stem alone (an assignment made by sound,
never by looking at the heatmaps), and that cluster's heatmap is scored against that
source's mask. So "each sound's heatmap on its own object" is what is measured.

AVIN (:mod:`avstudio.nets.avin`) has no clusters: one heatmap per frame. On C1 it is scored
against the one source's mask like the clustering model; on C2+ it is scored against the
**union** of the sounding objects' masks (the field's protocol for single-map methods: the
union of the boxes). So that the two methods can be set side by side on C2+, the clustering
model is scored that way too (its union heatmap: the pixel-wise maximum of its k maps),
under ``"union"`` beside its per-source scores.
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
from .localize import estimate_count
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


def _union_scores(heat: np.ndarray, s: Sample, res: dict, baselines: bool) -> None:
    """Score one heatmap against the union of the sample's sounding objects (into res)."""
    g = s.masks.any(0)
    if g.sum() == 0:
        return
    res["model"].append(M.score_heatmap(heat, g))
    if baselines:
        res["whole_image"].append(M.score_heatmap(np.ones(g.shape, np.float32), g))
        res["center_prior"].append(M.score_heatmap(M.center_prior(g.shape), g))


def _summaries(res: dict) -> dict:
    out = {name: M.summarise(v) for name, v in res.items() if v}
    out["n_samples"] = len(res["model"])
    return out


@torch.no_grad()
def avin_localization_scores(avin, samples: Sequence[Sample], batch: int = 32, baselines: bool = True) -> dict:
    """AVIN's per-level summaries: C1 against the source's mask; C2+ against the union of the
    sounding objects (under ``"union"``), with the whole-image and center-prior baselines."""
    dev = next(avin.parameters()).device
    out: dict[str, dict] = {}
    for lvl in sorted({s.level for s in samples if s.level >= 1}):
        group = [s for s in samples if s.level == lvl]
        res = {"model": [], "whole_image": [], "center_prior": []}
        for b in range(0, len(group), batch):
            chunk = group[b:b + batch]
            fr = torch.from_numpy(np.stack([s.frame for s in chunk])).to(dev)
            wv = torch.from_numpy(np.stack([s.wave for s in chunk])).to(dev)
            heat = avin.heatmap(fr, wv).cpu().numpy()
            for i, s in enumerate(chunk):
                _union_scores(heat[i], s, res, baselines)
        summ = _summaries(res)
        out[f"C{lvl}"] = summ if lvl == 1 else {"union": summ, "n_samples": summ["n_samples"]}
    return out


def scores_for(model, samples: Sequence[Sample], batch: int = 32, baselines: bool = True) -> dict:
    """Per-level localization summaries of either kind of localizer."""
    from ..nets.avin import AVINModel

    if isinstance(model, AVINModel):
        return avin_localization_scores(model, samples, batch, baselines)
    return localization_scores(model, samples, batch, baselines)


@torch.no_grad()
def localization_scores(av, samples: Sequence[Sample], batch: int = 32, baselines: bool = True) -> dict:
    """Per-level summaries: model, aligned center, unaligned center, whole image, center prior;
    on C2+ also ``"union"``: the pixel-wise maximum of the k maps against the union of the
    sounding objects (the protocol of single-map methods such as AVIN)."""
    dev = next(av.parameters()).device
    by_level: dict[int, dict[str, list]] = {}
    for lvl in sorted({s.level for s in samples if s.level >= 1}):
        group = [s for s in samples if s.level == lvl]
        res = {"model": [], "aligned_center": [], "unaligned_center": [], "whole_image": [], "center_prior": []}
        union = {"model": [], "whole_image": [], "center_prior": []}
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
                if lvl >= 2:
                    _union_scores(heat[i].max(0), s, union, baselines)
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
        by_level[lvl] = _summaries(res)
        if lvl >= 2:
            by_level[lvl]["union"] = _summaries(union)
    return {f"C{k}": v for k, v in by_level.items()}


def make_val_fn(data: str | Path, cfg=None, frames_per_clip: int = 2, max_clips: int = 40):
    """A validation callback for the trainer: primary cIoU@0.5 etc. at the stage's level (AVIN on
    C2+: its single map against the union of the sounding objects). Samples are read at the
    model's input settings (``cfg`` is not used: kept for callers that pass one)."""
    cache: dict[tuple, list[Sample]] = {}

    def val(av, k: int) -> dict:
        mcfg = av.cfg
        key = (k, mcfg.frame_size, mcfg.sample_rate, mcfg.audio_samples, mcfg.stack)
        if key not in cache:
            cache[key] = load_samples(data, mcfg, frames_per_clip, levels=[k], max_clips=max_clips)
        if not cache[key]:
            return {}
        r = scores_for(av, cache[key], baselines=False).get(f"C{k}", {})
        if "model" not in r:
            r = r.get("union", {})
        m = r.get("model", {}).get(M.PRIMARY, {})
        return {"ciou@0.5": m.get("ciou@0.5"), "mean_ciou": m.get("mean_ciou"), "nsa": m.get("nsa")}

    return val


def _input_key(cfg) -> tuple:
    return (cfg.frame_size, cfg.sample_rate, cfg.audio_samples, cfg.stack)


def evaluate(bundle, data: str | Path, frames_per_clip: int = 4, max_clips: Optional[int] = None,
             separation: bool = True, progress: ProgressFn | None = None, cancel=None,
             samples: Optional[list[Sample]] = None) -> dict:
    """Localization (either kind of model), counting and separation (where the model has them).
    ``samples``: already loaded at this model's input settings (:func:`compare` shares them)."""
    t0 = time.time()
    net = bundle.localizer
    if net is None:
        raise DataError(f"{bundle.name}: the model holds no localizer to evaluate")
    cfg = net.cfg
    if samples is None:
        samples = load_samples(data, cfg, frames_per_clip, max_clips=max_clips, progress=progress, cancel=cancel)
    if not samples:
        raise DataError(f"{data}: no clip with sounding sources to evaluate")
    loc = scores_for(net, samples)
    if bundle.kind == "avin":
        primary = (f"'model' = AVIN's one heatmap per frame (cosine of the audio embedding with every "
                   f"position), binarised at {M.PRIMARY} of the min-max normalised map; on C1 scored "
                   "against the source's mask, on C2+ (under 'union') against the union of the sounding "
                   "objects (AVIN has no per-source maps); 'median' binarisation reported beside it")
    else:
        primary = (f"'model' = heatmap of each sound's audio center, binarised at {M.PRIMARY} "
                   "of the min-max normalised map; 'median' binarisation reported beside it; on C2+ "
                   "'union' = the maximum of the k maps against the union of the sounding objects")
    result = {
        "model": bundle.name,
        "method": bundle.kind,
        "data": str(data),
        "frames_per_clip": frames_per_clip,
        "primary": primary,
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
            true.append(r.count)
            pred.append(estimate_count(bundle, r.path).count)
            emit(progress, "count", i + 1, len(rows))
        result["counting"] = M.counting_summary(true, pred)
    if separation and bundle.separator is not None and bundle.av is not None:
        result["separation"] = evaluate_separation(bundle, data, max_clips=max_clips, progress=progress,
                                                   cancel=cancel)
    result["seconds"] = time.time() - t0
    return result


def compare(bundles: Sequence, data: str | Path, frames_per_clip: int = 4, max_clips: Optional[int] = None,
            separation: bool = True, progress: ProgressFn | None = None, cancel=None,
            labels: Optional[Sequence[str]] = None) -> dict:
    """Several models on the same samples of ``data``: each model's :func:`evaluate` result
    and one comparison table (:func:`comparison_rows`, :func:`comparison_markdown`)."""
    t0 = time.time()
    labels = list(labels or [chr(ord("A") + i) for i in range(len(bundles))])
    cache: dict[tuple, list[Sample]] = {}
    results = []
    if len(labels) != len(bundles):
        raise ValueError("one label per model")
    for lab, b in zip(labels, bundles, strict=True):
        net = b.localizer
        if net is None:
            raise DataError(f"{b.name}: the model holds no localizer to evaluate")
        key = _input_key(net.cfg)
        if key not in cache:
            cache[key] = load_samples(data, net.cfg, frames_per_clip, max_clips=max_clips, progress=progress,
                                      cancel=cancel)
        r = evaluate(b, data, frames_per_clip, max_clips, separation, progress, cancel, samples=cache[key])
        r["label"] = lab
        results.append(r)
    for r, name in zip(results, display_names(bundles), strict=True):
        r["display"] = name
    rows = comparison_rows(results)
    return {"data": str(data), "frames_per_clip": frames_per_clip, "models": results, "comparison": rows,
            "table": comparison_markdown(results, rows),
            "notes": ["Same clips and frames for every model (the held-out folder given by --data).",
                      "C2+ 'per source': each sound's own heatmap against its own object (the "
                      "clustering model only: AVIN has one map per frame).",
                      "C2+ 'union': one map against the union of the sounding objects: AVIN's map; the "
                      "clustering model's pixel-wise maximum of its k maps.",
                      f"Primary binarisation: {M.PRIMARY} of the min-max normalised map; 'median' beside it."],
            "seconds": time.time() - t0}


def display_names(bundles: Sequence) -> list[str]:
    """The models' names for a table: their names, or ``folder/name`` where two names are alike."""
    names = [b.name for b in bundles]
    out = []
    for b, n in zip(bundles, names, strict=True):
        if names.count(n) > 1 and b.paths:
            n = f"{Path(next(iter(b.paths.values()))).parent.name}/{n}"
        out.append(n)
    return out


def comparison_rows(results: Sequence[dict]) -> list[dict]:
    """One row per (level, protocol, binarisation): each model's cIoU@0.5, AUC, mean cIoU and NSA
    (None where the protocol does not apply to it) and the baselines of the same samples."""
    levels = sorted({lv for r in results for lv in r["localization"]}, key=lambda x: int(x[1:]))
    rows = []
    for lv in levels:
        protocols = ["source"] if lv == "C1" else ["per source", "union"]
        for proto in protocols:
            for how in M.BINARISATIONS:
                row: dict = {"level": lv, "protocol": proto, "binarisation": how, "models": {}, "baselines": {}}
                for r in results:
                    block = r["localization"].get(lv, {})
                    if proto == "union":
                        block = block.get("union", {})
                    m = block.get("model", {}).get(how)
                    row["models"][r["label"]] = None if m is None else {
                        k: m[k] for k in ("ciou@0.5", "auc", "mean_ciou", "nsa", "n")}
                    for base in ("unaligned_center", "center_prior", "whole_image"):
                        v = block.get(base, {}).get(how)
                        if v is not None and base not in row["baselines"]:
                            row["baselines"][base] = {k: v[k] for k in ("ciou@0.5", "auc", "nsa")}
                if any(v is not None for v in row["models"].values()):
                    rows.append(row)
    return rows


def comparison_markdown(results: Sequence[dict], rows: Sequence[dict]) -> str:
    """The comparison as a Markdown table (cIoU@0.5 / AUC / NSA per model, then the baselines)."""
    def f(x):
        return "—" if x is None or (isinstance(x, float) and x != x) else f"{x:.2f}"

    names = [f"{r['label']}: {r.get('display', r['model'])} ({'AVIN' if r.get('method') == 'avin' else 'HSA'})"
             for r in results]
    head = ["level", "protocol", "bin."] + [f"{n} cIoU@0.5 / AUC / NSA" for n in names] + \
        ["unaligned center (HSA control)", "center prior", "whole image"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["level"], row["protocol"], row["binarisation"]]
        for r in results:
            m = row["models"].get(r["label"])
            cells.append("—" if m is None else f"{f(m['ciou@0.5'])} / {f(m['auc'])} / {f(m['nsa'])}")
        for base in ("unaligned_center", "center_prior", "whole_image"):
            b = row["baselines"].get(base)
            cells.append("—" if b is None else f"{f(b['ciou@0.5'])} / {f(b['auc'])}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
