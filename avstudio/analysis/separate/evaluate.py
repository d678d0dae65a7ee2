"""Separation, evaluated: SDR/SIR/SAR (mir_eval ``bss_eval_sources``) on held-out two-source
mixtures of a benchmark folder, with the mixture itself and the ideal ratio mask in the same run
(:func:`evaluate_separation`; the visual vectors from :func:`visual_tracks`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio.functional as AF

from ...data.clips import audio_window
from ...data.manifest import find_manifest, read_manifest
from ...data.synth import load_ground_truth
from ...errors import AVStudioError, MediaError
from ...media import VideoReader, probe
from ...nets.kmeans import best_matching
from ...nets.separator import attend, attention_maps
from ...progress import ProgressFn, check_cancel, emit
from .. import metrics as M
from ..localize import FrameStacker
from .stems import read_clip_audio, require_separator, separate_tracks, tracks_from_analysis


def _irm(sep, mix: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Ideal ratio mask on the separator's own (linear) STFT, mixture phase."""
    with torch.no_grad():
        X = sep.stft(torch.from_numpy(mix)[None].to(sep.window.device))
        S = sep.stft(torch.from_numpy(refs).to(sep.window.device))
        Mk = (S.abs() / X.abs().clamp_min(1e-8)).clamp(0.0, 1.0)
        return sep.istft(Mk * X, len(mix)).cpu().numpy()


def _score(refs: np.ndarray, est: np.ndarray) -> Optional[dict]:
    if any(M.is_silent(r) for r in refs) or any(M.is_silent(e) for e in est):
        return None
    r = M.bss_eval(refs, est)
    return {k: [float(x) for x in v] for k, v in r.items()}


def _summ(items: list[dict]) -> dict:
    if not items:
        return {"n_sources": 0}
    out = {}
    for key in ("sdr", "sir", "sar"):
        vals = np.concatenate([np.asarray(it[key]) for it in items])
        out[key] = float(np.mean(vals))
        out[key + "_median"] = float(np.median(vals))
    out["n_sources"] = int(sum(len(it["sdr"]) for it in items))
    return out


def _resample(x: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    if sr_from == sr_to:
        return x
    return AF.resample(torch.from_numpy(np.ascontiguousarray(x)), sr_from, sr_to).numpy()


@torch.no_grad()
def visual_tracks(bundle, path, k: int, step_s: float = 0.2, batch: int = 32) -> dict:
    """The aligned visual centers of a clip's k sound clusters every ``step_s`` seconds (what
    :func:`~avstudio.analysis.localize.analyze_clip` gives for every frame, at a stride: the
    separator pools them over 1 s windows anyway). Cluster identity is kept over time the
    same way (audio centers ordered like a running reference). Returns ``times`` [T],
    ``centers`` [T, k, D] (aligned visual centers) and their masks ``aligned`` [T, k, h, w],
    ``attended`` [T, k, D] (:func:`~avstudio.nets.separator.attend`) and their weights
    ``attention`` [T, k, h, w], and ``frame_indices`` [T]."""
    av = bundle.av.eval()
    cfg = av.cfg
    S = cfg.frame_size
    dev = next(av.parameters()).device
    info = probe(path)
    audio = read_clip_audio(path, cfg.sample_rate) if info.has_audio else np.zeros(0, np.float32)
    fps = float(info.fps or 25.0)
    step = max(1, int(round(step_s * fps)))
    frames, idx, times = [], [], []
    with VideoReader(path) as vr:
        if cfg.stack <= 1:
            for fi, ft, rgb in vr.frames(0, None, size=(S, S), step=step):
                frames.append(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
                idx.append(fi)
                times.append(float(ft))
        else:  # a model that stacks frames: every frame is decoded, stacks taken at the stride
            st = FrameStacker(cfg, fps, vr.frame_count)
            for fi, ft, rgb in vr.frames(0, None, size=(S, S)):
                for j, tj, stack in st.push(fi, float(ft), rgb, fi % step == 0):
                    frames.append(np.ascontiguousarray(stack.transpose(0, 3, 1, 2)))
                    idx.append(j)
                    times.append(tj)
            for j, tj, stack in st.finish():
                frames.append(np.ascontiguousarray(stack.transpose(0, 3, 1, 2)))
                idx.append(j)
                times.append(tj)
    if not frames:
        raise MediaError(f"{path}: no video frames could be decoded")
    vecs, aligned, att, att_maps = [], [], [], []
    tau = bundle.separator.cfg.attend_tau if bundle.separator is not None else 0.05
    ref = None
    for b in range(0, len(frames), batch):
        fr = torch.from_numpy(np.stack(frames[b:b + batch])).to(dev)
        wv = torch.from_numpy(np.stack([audio_window(audio, t, cfg) for t in times[b:b + batch]])).to(dev)
        vis = av.visual(fr)
        aud, w = av.audio(wv)
        A, _ = av.audio_centers(aud, w, k)
        if k > 1:
            for i in range(A.shape[0]):
                if ref is None:
                    ref = A[i].clone()
                _, perm = best_matching((ref @ A[i].t()).unsqueeze(0))
                A[i] = A[i][perm[0]]
                ref = F.normalize(0.9 * ref + 0.1 * A[i], dim=-1)
        loc = av.localize_features(vis, aud, w, k, audio_centers=A)
        D = loc.visual_centers.shape[-1]
        V = torch.gather(loc.visual_centers, 1, loc.match.unsqueeze(-1).expand(-1, -1, D))
        vecs.append(V.cpu().numpy().astype(np.float32))
        aligned.append(loc.aligned.cpu().numpy().astype(np.float32))
        att.append(attend(vis, A, tau).cpu().numpy().astype(np.float32))
        att_maps.append(attention_maps(vis, A, tau).cpu().numpy().astype(np.float32))
    return {"times": np.asarray(times, np.float64), "centers": np.concatenate(vecs),
            "aligned": np.concatenate(aligned), "attended": np.concatenate(att),
            "attention": np.concatenate(att_maps), "frame_indices": np.asarray(idx)}


def evaluate_separation(bundle, data, max_clips: Optional[int] = None, progress: ProgressFn | None = None,
                        cancel=None, details: bool = False) -> dict:
    """Separation on held-out two-source mixtures of a benchmark folder, with baselines.

    Two kinds of mixtures, each scored on whole clips at 16 kHz:

    * ``duets``: every clip with two sounding sources, as it is (its decoded mp4 audio);
      the clip is analysed as ``avstudio analyze`` does (k = 2; every 0.2 s, see
      :func:`visual_tracks`) and each stem is given the cluster whose visual vector comes
      from that stem's object (by sight: the share of the cluster's attention map, or of
      its aligned center's mask, that lies on the object; an optimal one-to-one matching);
    * ``solo_pairs``: two solo clips mixed (clips 0+1, 2+3, ... of the count-1 clips), each
      separated from the visual vector of its own clip (k = 1).

    References are the clean stems of the sidecars. BSS Eval (``bss_eval_sources``
    semantics, no permutation search) for the model, the mixture itself (``SDR_mix``) and
    the ideal ratio mask on the separator's STFT (upper bound); a mixture whose reference
    or model estimate is silent is skipped (as Sound-of-Pixels does). ``details`` adds the
    per-mixture scores (clip names and SDR/SIR/SAR per source) for paired comparisons.
    """
    t0 = time.time()
    sep = require_separator(bundle)
    if bundle.av is None:
        raise AVStudioError(f"{bundle.name}: separation needs the AV model's visual vectors")
    sr = sep.cfg.sample_rate
    rows = read_manifest(find_manifest(data))
    if max_clips:
        rows = rows[:max_clips]
    duets = [r for r in rows if r.count == 2]
    solos = [r for r in rows if r.count == 1]
    jobs = [("duet", (r,)) for r in duets] + [("solo_pair", (solos[2 * i], solos[2 * i + 1]))
                                               for i in range(len(solos) // 2)]
    res: dict[str, dict[str, list]] = {"duets": {"model": [], "mixture": [], "irm": []},
                                       "solo_pairs": {"model": [], "mixture": [], "irm": []}}
    skipped = {"duets": 0, "solo_pairs": 0}
    improvements: dict[str, list] = {"duets": [], "solo_pairs": []}
    t_sep = 0.0
    per: dict[str, list] = {}
    for ji, (kind, rs) in enumerate(jobs):
        check_cancel(cancel, "evaluation")
        group = "duets" if kind == "duet" else "solo_pairs"
        if kind == "duet":
            r = rs[0]
            gt = load_ground_truth(r.path)
            an = visual_tracks(bundle, r.path, k=2)
            mix = read_clip_audio(r.path, sr)
            N = len(mix)
            refs = _resample(gt.stems, gt.sample_rate, sr)
            refs = np.pad(refs[:, :N], ((0, 0), (0, max(0, N - refs.shape[1])))).astype(np.float32)
            # by sight: stem s <- the cluster whose aligned mask covers its object best
            vec_key, map_key = ("attended", "attention") if sep.cfg.conditioning == "attended" else ("centers", "aligned")
            h, w = an[map_key].shape[-2:]
            fidx = np.clip(an["frame_indices"], 0, gt.n_frames - 1)
            ov = np.zeros((2, 2))
            for s in range(2):
                obj = [o["id"] for o in gt.objects if o.get("stem_index") == s][0]
                g = torch.from_numpy(gt.masks[fidx, obj].astype(np.float32))[:, None]
                g = F.adaptive_avg_pool2d(g, (h, w))[:, 0].numpy()  # [T, h, w]
                m = an[map_key]
                ov[s] = (m * g[:, None]).sum((0, 2, 3)) / np.maximum(m.sum((0, 2, 3)), 1e-6)
            _, perm = best_matching(torch.from_numpy(ov)[None])
            tracks = tracks_from_analysis(an[vec_key], an["times"])
            tracks = [tracks[int(j)] for j in perm[0]]
        else:
            a, b = rs
            parts, refs_l, tracks = [], [], []
            for r in (a, b):
                gt = load_ground_truth(r.path)
                an = visual_tracks(bundle, r.path, k=1)
                parts.append(read_clip_audio(r.path, sr))
                refs_l.append(_resample(gt.stems[0], gt.sample_rate, sr))
                tracks += tracks_from_analysis(an["attended" if sep.cfg.conditioning == "attended" else "centers"],
                                               an["times"])
            N = min(len(p) for p in parts)
            mix = (parts[0][:N] + parts[1][:N]).astype(np.float32)
            refs = np.stack([np.pad(x[:N], (0, max(0, N - len(x)))) for x in refs_l]).astype(np.float32)
        ts = time.perf_counter()
        est = separate_tracks(bundle, mix, tracks)
        t_sep += time.perf_counter() - ts
        sm = _score(refs, est)
        if sm is None:
            skipped[group] += 1
        else:
            sx = _score(refs, np.stack([mix] * len(refs)))
            si = _score(refs, _irm(sep, mix, refs))
            res[group]["model"].append(sm)
            res[group]["mixture"].append(sx)
            res[group]["irm"].append(si)
            improvements[group] += [m - x for m, x in zip(sm["sdr"], sx["sdr"], strict=True)]
            per.setdefault(group, []).append({"clips": [Path(r.path).name for r in rs], "model": sm,
                                              "mixture": sx, "irm": si})
        emit(progress, "eval:separation", ji + 1, len(jobs), group)
    out: dict = {"primary": "mean over sources of whole-clip SDR (dB, bss_eval_sources) on held-out two-source "
                            "mixtures; 'mixture' = the mixture itself as the estimate (SDR_mix), 'irm' = ideal "
                            "ratio mask on the separator's STFT (upper bound)",
                 "sample_rate": sr}
    allres = {"model": [], "mixture": [], "irm": []}
    for group in ("duets", "solo_pairs"):
        g = {name: _summ(v) for name, v in res[group].items()}
        if improvements[group]:
            g["sdr_improvement"] = float(np.mean(improvements[group]))
        g["n_mixtures"] = len(res[group]["model"])
        g["skipped_silent"] = skipped[group]
        if details:
            g["per_mixture"] = per.get(group, [])
        out[group] = g
        for name in allres:
            allres[name] += res[group][name]
    out["all"] = {name: _summ(v) for name, v in allres.items()}
    imp = improvements["duets"] + improvements["solo_pairs"]
    if imp:
        out["all"]["sdr_improvement"] = float(np.mean(imp))
    out["all"]["n_mixtures"] = len(allres["model"])
    out["separate_seconds"] = t_sep
    out["seconds"] = time.time() - t0
    return out
