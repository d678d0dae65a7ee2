"""Localization scored against boxes: a clip library's annotated frames, or a public test set
in the layout it is distributed in (VGG-SS, SoundNet-Flickr). Qt-free; the CLI's
``avstudio eval --library / --testset`` and the app's per-frame scores both come from here.

The samples are made as ``avstudio eval --data`` makes them (:mod:`avstudio.analysis.evaluate`):
the frame resized to the model's input, the model's audio window centred on the frame's time,
one heatmap per sample from the model, scored by :func:`avstudio.analysis.metrics.score_heatmap`
(upsampled, min-max normalised, binarised at 0.5 and at the median; cIoU and NSA) against the
ground-truth map of the frame's boxes (:func:`avstudio.data.boxes.gt_map`, union or consensus).

The heatmap is the model's map of the *whole* sound at that moment (one audio cluster for the
clustering model; AVIN has only that one), scored against all the frame's boxes: the field's
protocol for VGG-SS and Flickr, where a frame's boxes are all the objects that sound. Sources
tied to boxes are kept for display and export; they do not split the score.

Baselines, from the same ground truth: the whole image, a centre prior (a Gaussian of 0.25 of
the frame), and for the clustering model its aligned and unaligned visual centres (the paper's
control).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..data.boxes import Box, gt_map
from ..data.clips import audio_window
from ..errors import DataError, MediaError
from ..progress import ProgressFn, check_cancel, emit
from . import metrics as M

#: baselines that need no model (computed once per sample)
PLAIN_BASELINES = ("whole_image", "center_prior")
#: maps every clustering model gives beside its heatmap (AVIN has none)
MODEL_BASELINES = ("aligned_center", "unaligned_center")


@dataclass
class BoxSample:
    """One annotated frame ready for a model: like :class:`avstudio.analysis.evaluate.Sample`
    with the box ground truth (``gt``: the frame's map, float32 0..1) and where it comes from."""

    clip: str  # the clip's file (library) or the sample id (test set)
    frame: np.ndarray  # uint8 [3, S, S], or a stack [F, 3, S, S] for a model that stacks frames
    wave: np.ndarray  # float32 [audio samples], centred on the frame's time
    gt: np.ndarray  # float32 [H, W] in 0..1
    frame_index: int = 0
    time: float = 0.0
    clip_id: Optional[int] = None
    n_boxes: int = 0
    map_rule: str = "union"


@dataclass
class BoxEvalReport:
    samples: list[BoxSample] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (clip or sample, reason)


def _net_of(bundle: Any):
    net = getattr(bundle, "localizer", None)
    if net is None:
        net = getattr(bundle, "av", None)
    if net is None:
        raise DataError(f"{getattr(bundle, 'name', 'the model')}: the model holds no localizer to evaluate")
    return net


def model_kind(bundle: Any) -> str:
    kind = getattr(bundle, "kind", None)
    return kind if kind else ("hsa" if getattr(bundle, "av", None) is not None else "")


def input_key(net: Any) -> tuple:
    cfg = net.cfg
    return (int(cfg.frame_size), int(cfg.sample_rate), int(round(cfg.audio_seconds * cfg.sample_rate)))


# ---------------------------------------------------------------- samples


def frame_input(reader: Any, cfg: Any, frame_index: int) -> np.ndarray:
    """A frame as the model takes it: uint8 [3, S, S], or for a model that stacks frames
    (``cfg.stack`` > 1) the stack around it [F, 3, S, S] (frames past the clip's ends: its first
    or last frame, as :func:`avstudio.analysis.evaluate.load_samples` does)."""
    S = int(cfg.frame_size)
    if int(getattr(cfg, "stack", 1) or 1) <= 1:
        return np.ascontiguousarray(reader.frame(int(frame_index), size=(S, S)).transpose(2, 0, 1))
    out, last = [], None
    for j in cfg.stack_indices(int(frame_index), reader.fps, reader.frame_count):
        try:
            last = reader.frame(int(j), size=(S, S)).transpose(2, 0, 1)
        except MediaError:  # past the frames that decode (an estimated frame count): the last one
            if last is None:
                raise
        out.append(last)
    return np.ascontiguousarray(np.stack(out))


def still_input(img: np.ndarray, cfg: Any) -> np.ndarray:
    """A still picture (a test set's one frame) as the model takes it: a model that stacks
    frames gets the picture repeated (no motion to see)."""
    f = np.ascontiguousarray(img.transpose(2, 0, 1))
    n = int(getattr(cfg, "stack", 1) or 1)
    return f if n <= 1 else np.ascontiguousarray(np.stack([f] * n))


def frame_sample(reader: Any, audio: np.ndarray, cfg: Any, frame_index: int, time_s: float,
                 boxes: Sequence[Box], map_rule: str, clip: str, clip_id: Optional[int] = None) -> BoxSample:
    """A sample from an open :class:`~avstudio.media.VideoReader` and the clip's audio (mono,
    ``cfg.sample_rate``): the frame at the model's size, the audio window on ``time_s``."""
    img = frame_input(reader, cfg, frame_index)
    return BoxSample(clip=clip, frame=img, wave=audio_window(audio, float(time_s), cfg),
                     gt=gt_map(list(boxes), map_rule), frame_index=int(frame_index), time=float(time_s),
                     clip_id=clip_id, n_boxes=len(boxes), map_rule=map_rule)


def library_samples(lib: Any, cfg: Any, clip_ids: Optional[Sequence[int]] = None,
                    progress: ProgressFn | None = None, cancel=None) -> BoxEvalReport:
    """Every annotated frame of the library's clips (or of ``clip_ids``) at ``cfg``'s input
    settings. Clips whose file is missing or unreadable are reported in ``skipped``."""
    from ..media import VideoReader, read_audio

    frames = lib.all_box_frames()
    if clip_ids is not None:
        frames = {k: v for k, v in frames.items() if k in set(int(c) for c in clip_ids)}
    rep = BoxEvalReport()
    total = sum(len(v) for v in frames.values())
    done = 0
    emit(progress, "frames", 0, total)
    for cid in sorted(frames, key=lambda k: lib.get(k).path):
        check_cancel(cancel, "evaluation")
        c = lib.get(cid)
        start = done
        if not os.path.exists(c.path):
            rep.skipped.append((c.path, "the file is missing"))
            done += len(frames[cid])
            continue
        try:
            audio = read_audio(c.path, int(cfg.sample_rate))
            with VideoReader(c.path) as vr:
                for f in frames[cid]:
                    check_cancel(cancel, "evaluation")
                    rep.samples.append(frame_sample(vr, audio, cfg, f.frame, f.time, f.boxes, f.map_rule,
                                                    c.path, c.id))
                    done += 1
                    emit(progress, "frames", done, total, os.path.basename(c.path))
        except MediaError as exc:
            rep.skipped.append((c.path, str(exc)))
            rep.samples = [s for s in rep.samples if s.clip_id != c.id]
            done = start + len(frames[cid])
    return rep


def testset_samples(folder: str | os.PathLike, fmt: str, cfg: Any, boxes_file: Optional[str | os.PathLike] = None,
                    progress: ProgressFn | None = None, cancel=None) -> BoxEvalReport:
    """A public test set in its distributed layout: ``frames/ID.jpg``, ``audio/ID.wav`` and the
    boxes (``vggss``: a VGG-SS JSON, by default the one ``.json`` in the folder; ``flickr``:
    ``Annotations/*.xml``, or the folder given as ``boxes_file``). The heatmap is made from that
    one frame and the audio window at the middle of the sample's audio, as the field does.
    Samples without a frame or an audio file are reported in ``skipped`` (the field's code
    leaves them out too)."""
    from ..data.box_formats import read_flickr, read_vggss
    from ..media import read_audio
    from ..media.image import read_image

    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"test set {root} is not a folder")
    fmt = str(fmt).lower()
    if fmt not in ("vggss", "flickr"):
        raise DataError(f"unknown test set format {fmt!r} (vggss or flickr)")
    for sub in ("frames", "audio"):
        if not (root / sub).is_dir():
            raise DataError(f"test set {root} has no {sub}/ folder (the layout: frames/ID.jpg, audio/ID.wav "
                            f"and the boxes)")
    if boxes_file is None:
        if fmt == "flickr":
            boxes_file = root / "Annotations"
            if not boxes_file.is_dir():
                raise DataError(f"test set {root} has no Annotations/ folder of SoundNet-Flickr .xml files")
        else:
            js = sorted(p for p in root.glob("*.json"))
            if len(js) != 1:
                raise DataError(f"test set {root} needs exactly one VGG-SS .json box file beside frames/ and "
                                f"audio/ (found {len(js)}); name it with --boxes")
            boxes_file = js[0]
    records = read_flickr(boxes_file) if fmt == "flickr" else read_vggss(boxes_file)
    frames = {p.stem: p for p in (root / "frames").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
    audios = {p.stem: p for p in (root / "audio").iterdir() if p.suffix.lower() in (".wav", ".flac", ".mp3", ".ogg")}
    rep = BoxEvalReport()
    S = int(cfg.frame_size)
    emit(progress, "samples", 0, len(records))
    for i, rec in enumerate(sorted(records, key=lambda r: r.key)):
        check_cancel(cancel, "evaluation")
        key = rec.key
        if key not in frames or key not in audios:
            rep.skipped.append((key, "no frame" if key not in frames else "no audio"))
            continue
        try:
            img = still_input(read_image(frames[key], size=(S, S)), cfg)
            audio = read_audio(audios[key], int(cfg.sample_rate))
        except MediaError as exc:
            rep.skipped.append((key, str(exc)))
            continue
        mid = 0.5 * len(audio) / float(cfg.sample_rate)
        rep.samples.append(BoxSample(clip=key, frame=img, wave=audio_window(audio, mid, cfg),
                                     gt=gt_map(rec.boxes, rec.map_rule), time=mid, n_boxes=len(rec.boxes),
                                     map_rule=rec.map_rule))
        emit(progress, "samples", i + 1, len(records), key)
    return rep


# ---------------------------------------------------------------- scoring


@torch.no_grad()
def model_maps(net: Any, frames: np.ndarray, waves: np.ndarray) -> dict[str, np.ndarray]:
    """The maps a model gives for a batch: ``"model"`` [B, h, w] (the whole sound's heatmap),
    for the clustering model ``"aligned_center"`` and ``"unaligned_center"``, and for a model
    that stacks frames ``"motion_prior"`` (where the stack's grey levels change, nothing more)."""
    dev = next(net.parameters()).device
    fr = torch.from_numpy(np.ascontiguousarray(frames)).to(dev)
    wv = torch.from_numpy(np.ascontiguousarray(waves)).to(dev)
    if hasattr(net, "localize"):
        loc = net.localize(fr, wv, 1)
        out = {"model": loc.heatmaps[:, 0].cpu().numpy(), "aligned_center": loc.aligned[:, 0].cpu().numpy(),
               "unaligned_center": loc.unaligned.cpu().numpy()}
    else:
        out = {"model": net.heatmap(fr, wv).cpu().numpy()}
    if frames.ndim == 5:  # stacks of frames: what motion alone points at (as eval --data reports it)
        out["motion_prior"] = np.stack([M.motion_prior(f) for f in frames])
    return out


def gt_baselines(gt: np.ndarray) -> dict[str, Any]:
    """The whole-image and centre-prior baselines' scores against one ground-truth map."""
    return {"whole_image": M.score_heatmap(np.ones(gt.shape, np.float32), gt),
            "center_prior": M.score_heatmap(M.center_prior(gt.shape), gt)}


def baseline_scores(samples: Sequence[BoxSample]) -> list[dict[str, Any]]:
    """Per sample: the whole-image and centre-prior baselines' scores."""
    return [gt_baselines(s.gt) for s in samples]


def scores_from_maps(maps: dict[str, np.ndarray], gt: np.ndarray) -> dict[str, Any]:
    """One sample's scores from its maps (``model_maps`` of that sample): what
    :func:`score_samples` gives, for a frame whose boxes change while its maps stay."""
    return {name: M.score_heatmap(m, gt) for name, m in maps.items()}


def clip_frame_maps(bundle: Any, path: str, frames: Sequence[tuple[int, float]], audio: Optional[np.ndarray] = None,
                    progress: ProgressFn | None = None, cancel=None) -> dict[str, Any]:
    """The model's maps of some frames ``(index, time)`` of a clip, read as
    :func:`library_samples` reads them (the app keeps them and rescores a frame whenever its
    boxes change). ``audio``: the clip's audio at the model's rate, if already read.
    Returns ``{"audio": audio, "maps": {frame: {name: map}}}``."""
    from ..media import VideoReader, read_audio

    net = _net_of(bundle)
    cfg = net.cfg
    if audio is None:
        audio = read_audio(path, int(cfg.sample_rate))
    out: dict[int, dict[str, np.ndarray]] = {}
    emit(progress, "box scores", 0, len(frames))
    with VideoReader(path) as vr:
        for i, (f, t) in enumerate(frames):
            check_cancel(cancel, "scoring")
            img = frame_input(vr, cfg, int(f))
            maps = model_maps(net, img[None], audio_window(audio, float(t), cfg)[None])
            out[int(f)] = {k: v[0] for k, v in maps.items()}
            emit(progress, "box scores", i + 1, len(frames))
    return {"audio": audio, "maps": out}


def score_samples(net: Any, samples: Sequence[BoxSample], batch: int = 1,
                  progress: ProgressFn | None = None, cancel=None, task: str = "score") -> list[dict[str, Any]]:
    """Per sample: ``{"model": {how: {"ciou", "nsa"}}, ...}`` for each of the model's maps.

    One sample per forward pass by default, as the app's box panel computes its maps
    (:func:`clip_frame_maps`): batched convolutions round differently, and the median
    binarisation of a map with many near-equal values moves with the last bits, so the panel
    and ``avstudio eval --library`` would disagree in the third decimal."""
    out: list[dict[str, Any]] = []
    emit(progress, task, 0, len(samples))
    for b in range(0, len(samples), batch):
        check_cancel(cancel, "evaluation")
        chunk = samples[b:b + batch]
        maps = model_maps(net, np.stack([s.frame for s in chunk]), np.stack([s.wave for s in chunk]))
        for i, s in enumerate(chunk):
            out.append(scores_from_maps({name: m[i] for name, m in maps.items()}, s.gt))
        emit(progress, task, len(out), len(samples))
    return out


def score_frame(bundle: Any, sample: BoxSample) -> dict[str, Any]:
    """One annotated frame's scores (the app's panel): the model's and the baselines'."""
    net = _net_of(bundle)
    d = score_samples(net, [sample])[0]
    d.update(baseline_scores([sample])[0])
    return d


def running_summary(per_frame: Sequence[dict[str, Any]], name: str = "model") -> dict[str, dict[str, float]]:
    """cIoU@0.5, AUC, mean cIoU and NSA over frames (each binarisation) for one map's scores."""
    return M.summarise([p[name] for p in per_frame if name in p])


# ---------------------------------------------------------------- the evaluation


def _group(samples: Sequence[BoxSample]) -> dict[str, list[int]]:
    g: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        g.setdefault(s.clip, []).append(i)
    return g


def _summaries(per: Sequence[dict[str, Any]], idx: Sequence[int]) -> dict[str, Any]:
    names = [k for k in per[idx[0]]] if idx else []
    return {name: M.summarise([per[i][name] for i in idx]) for name in names}


def evaluate_boxes(bundles: Sequence[Any], make_samples: Callable[[Any], BoxEvalReport], source: dict[str, Any],
                   labels: Optional[Sequence[str]] = None, paths: Optional[Sequence[Optional[str]]] = None,
                   progress: ProgressFn | None = None, cancel=None) -> dict[str, Any]:
    """Every model on the same annotated frames: per frame, per clip and overall, with the
    baselines, under both binarisations. ``make_samples(cfg)`` reads the frames at a model's
    input settings (once per distinct setting); ``source`` says where they come from."""
    t0 = time.time()
    nets = [_net_of(b) for b in bundles]
    reports: dict[tuple, BoxEvalReport] = {}
    for net in nets:
        if input_key(net) not in reports:
            reports[input_key(net)] = make_samples(net.cfg)
    report = reports[input_key(nets[0])]
    samples = report.samples
    if not samples:
        extra = f" ({len(report.skipped)} could not be read)" if report.skipped else ""
        raise DataError(f"no annotated frame to evaluate{extra}")
    labels = list(labels or [chr(ord("A") + i) for i in range(len(bundles))])
    groups = _group(samples)
    base = baseline_scores(samples)
    models = []
    for lab, b, net, path in zip(labels, bundles, nets, list(paths or [None] * len(bundles)), strict=True):
        mine = reports[input_key(net)].samples
        if [(s.clip, s.frame_index) for s in mine] != [(s.clip, s.frame_index) for s in samples]:
            raise DataError(f"model {lab} could not read the same frames as model {labels[0]}")
        per = score_samples(net, mine, progress=progress, cancel=cancel, task=f"model {lab}")
        frames = [{"clip": s.clip, "clip_id": s.clip_id, "frame": s.frame_index, "time": s.time,
                   "boxes": s.n_boxes, "map_rule": s.map_rule, **per[i]} for i, s in enumerate(samples)]
        models.append({
            "label": lab, "model": getattr(b, "name", ""), "path": path, "method": model_kind(b),
            "overall": _summaries(per, list(range(len(samples)))),
            "clips": [{"clip": c, "clip_id": samples[ix[0]].clip_id, "n_frames": len(ix), **_summaries(per, ix)}
                      for c, ix in groups.items()],
            "frames": frames})
    result = {
        "source": source,
        "primary": f"binarisation {M.PRIMARY} of the min-max normalised heatmap; 'median' beside it",
        "protocol": "the model's heatmap of the whole sound at each annotated frame against the ground-truth "
                    "map of all the frame's boxes (union, or consensus for SoundNet-Flickr)",
        "n_frames": len(samples), "n_clips": len(groups),
        "skipped": [{"item": a, "reason": r} for a, r in report.skipped],
        "models": models,
        "baselines": {"overall": _summaries(base, list(range(len(samples)))),
                      "clips": [{"clip": c, **_summaries(base, ix)} for c, ix in groups.items()]},
    }
    result["table"] = table_markdown(result)
    result["seconds"] = time.time() - t0
    return result


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{v:.2f}"


def table_markdown(result: dict[str, Any]) -> str:
    """Per clip and overall, under each binarisation (primary first): every model's cIoU@0.5,
    AUC, mean cIoU and NSA beside the baselines' (the paper's unaligned centre when model A is
    the clustering model, the centre prior, the whole image)."""
    models = result["models"]
    cols: list[tuple[str, Any, str]] = [(f"{m['label']}: {m['model']}", m, "model") for m in models]
    if "unaligned_center" in models[0]["overall"]:
        cols.append((f"unaligned centre ({models[0]['label']})", models[0], "unaligned_center"))
    for m in models:
        if "motion_prior" in m["overall"]:
            cols.append((f"motion only ({m['label']}'s stack)", m, "motion_prior"))
    cols += [("centre prior", None, "center_prior"), ("whole image", None, "whole_image")]
    base_clips = {b["clip"]: b for b in result["baselines"]["clips"]}
    out = []
    for how in (M.PRIMARY,) + tuple(h for h in M.BINARISATIONS if h != M.PRIMARY):
        title = "primary" if how == M.PRIMARY else "the field's Flickr/VGG-SS code"
        out.append(f"Binarised at {'0.5 of the normalised map' if how == '0.5' else 'the median'} ({title}); "
                   f"each cell: cIoU@0.5 / AUC / mean cIoU / NSA\n")
        out.append("| clip | frames | " + " | ".join(c[0] for c in cols) + " |")
        out.append("|---|---|" + "---|" * len(cols))

        def cell(block: dict[str, Any], name: str, how: str = how) -> str:
            v = block.get(name, {}).get(how)
            if v is None:
                return "–"
            return " / ".join(_fmt(v[k]) for k in ("ciou@0.5", "auc", "mean_ciou", "nsa"))

        def row(label: str, n: int, ci: Optional[int]) -> str:
            cells = []
            for _name, m, key in cols:
                if m is None:
                    blk = result["baselines"]["overall"] if ci is None else base_clips[models[0]["clips"][ci]["clip"]]
                else:
                    blk = m["overall"] if ci is None else m["clips"][ci]
                cells.append(cell(blk, key))
            return f"| {label} | {n} | " + " | ".join(cells) + " |"

        for i, cb in enumerate(models[0]["clips"]):
            out.append(row(os.path.basename(cb["clip"]), cb["n_frames"], i))
        out.append(row("**all**", result["n_frames"], None))
        out.append("")
    return "\n".join(out)


__all__ = ["BoxSample", "BoxEvalReport", "library_samples", "testset_samples", "frame_sample", "model_maps",
           "scores_from_maps", "clip_frame_maps", "gt_baselines", "frame_input", "still_input",
           "score_samples", "score_frame", "baseline_scores", "running_summary", "evaluate_boxes",
           "table_markdown"]
