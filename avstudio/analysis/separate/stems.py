"""Stems: a clip's sound separated into one waveform per sound cluster.

* :func:`separate_clip` — the core: a clip's audio + the visual vectors of its k clusters
  over time (:func:`cluster_vectors`: by default each cluster's *attended* vector, the
  visual features pooled where its sound is heard) -> k waveforms. The clip is processed in
  long chunks (:class:`ClipSpectra`: the U-Net runs once per chunk whatever k is), the k
  conditionings are batched, and each STFT frame is conditioned on the cluster's visual
  vectors pooled over a window around it (so a cluster is followed as its object moves).
* :func:`write_stems` — ``OUT/stems/<k>.wav`` per cluster and ``OUT/stems/residual.wav``
  (mixture minus the stems: what no cluster claimed); the 16-bit files add up to the
  16-bit mixture exactly (integer arithmetic).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import AVStudioError, MediaError
from ...media import VideoReader, probe, read_audio, write_wav
from ...nets.checkpoint import ModelBundle
from ...nets.files import file_sha256, weights_sha256
from ...nets.separator import Separator, attend
from ...progress import ProgressFn, check_cancel, emit

POOL_SECONDS = 1.0  # a cluster's visual vectors are averaged over this window around each STFT frame
FADE_SECONDS = 0.05  # crossfade between chunks


def require_separator(bundle: ModelBundle) -> Separator:
    """The bundle's separator (in eval mode); a model without one is named as such."""
    if bundle.separator is None:
        raise AVStudioError(f"{bundle.name or 'model'}: this model has no separator "
                            "(train one with `avstudio train-separator`)")
    return bundle.separator.eval()


# -- conditioning tracks -----------------------------------------------------------------------

def pool_track(times: np.ndarray, vectors: np.ndarray, query: np.ndarray,
               window: float = POOL_SECONDS) -> np.ndarray:
    """Unit vectors [Q, D]: the mean of ``vectors`` [T, D] whose ``times`` lie within
    ``window``/2 of each query time (the nearest one where none does)."""
    times = np.asarray(times, np.float64)
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None]
        times = np.zeros(1)
    order = np.argsort(times, kind="stable")
    t, v = times[order], vectors[order]
    cs = np.concatenate([np.zeros((1, v.shape[1]), np.float64), np.cumsum(v, 0, dtype=np.float64)])
    lo = np.searchsorted(t, query - window / 2, "left")
    hi = np.searchsorted(t, query + window / 2, "right")
    out = (cs[hi] - cs[lo]).astype(np.float32)
    empty = hi <= lo
    if empty.any():
        near = np.clip(np.searchsorted(t, query[empty]), 0, len(t) - 1)
        prev = np.clip(near - 1, 0, len(t) - 1)
        pick = np.where(np.abs(t[prev] - query[empty]) < np.abs(t[near] - query[empty]), prev, near)
        out[empty] = v[pick]
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)


def tracks_from_analysis(visual_vectors: np.ndarray, times: Optional[np.ndarray] = None):
    """[(times [T], vectors [T, D]) per cluster] from ``ClipAnalysis.visual_vectors`` [T, k, D]
    (or static vectors [k, D])."""
    vv = np.asarray(visual_vectors, np.float32)
    if vv.ndim == 2:
        return [(np.zeros(1), vv[j][None]) for j in range(vv.shape[0])]
    if vv.ndim != 3:
        raise ValueError(f"visual vectors must be [T, k, D] or [k, D], got shape {vv.shape}")
    if times is None:
        raise ValueError("per-frame visual vectors need their times")
    t = np.asarray(times, np.float64)
    return [(t, vv[:, j]) for j in range(vv.shape[1])]


# -- chunked spectra of one clip ---------------------------------------------------------------

class ClipSpectra:
    """A clip's audio, cut into long overlapping chunks, with each chunk's STFT and U-Net
    features computed on demand and kept (LRU) for reuse by every conditioning."""

    def __init__(self, separator, audio: np.ndarray, max_cached: int = 2):
        self.sep = separator.eval()
        self.cfg = separator.cfg
        self.audio = np.ascontiguousarray(audio, dtype=np.float32)
        self.N = len(self.audio)
        self.sr = self.cfg.sample_rate
        self.device = next(separator.parameters()).device
        self.max_cached = max(1, int(max_cached))
        self._cache: OrderedDict[int, tuple] = OrderedDict()
        self.plan = self._plan()

    def _plan(self):
        c = self.cfg
        N, sr = self.N, self.sr
        L = max(1, int(c.chunk_seconds * sr))
        C = int(c.context_seconds * sr)
        fd = min(C, int(FADE_SECONDS * sr))
        if N <= L + 2 * C:
            return [(0, N, 0, N, None)]
        plan = []
        n_chunks = max(1, int(round(N / L)))  # equal chunks of about L samples: none is tiny
        bounds = np.linspace(0, N, n_chunks + 1).round().astype(int)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            a, b = int(a), int(b)
            lo, hi = max(0, a - C), min(N, b + C)
            oa, ob = max(0, a - fd), min(N, b + fd)
            w = np.ones(ob - oa, np.float32)
            rise = ((np.arange(2 * fd) + 0.5) / max(2 * fd, 1)).astype(np.float32)  # + its mirror = 1
            if a > 0:
                n = a + fd - oa
                w[:n] = rise[2 * fd - n:]
            if b < N:
                n = ob - (b - fd)
                w[len(w) - n:] *= (1.0 - rise)[:n]
            plan.append((lo, hi, oa, ob, w))
        return plan

    @torch.no_grad()
    def chunk(self, i: int):
        """(X complex [1, L, T], feats [1, C, Fw, T], frame times [T] in seconds)."""
        hit = self._cache.get(i)
        if hit is not None:
            self._cache.move_to_end(i)
            return hit
        lo, hi = self.plan[i][:2]
        x = torch.from_numpy(self.audio[lo:hi]).to(self.device)[None]
        if hi - lo < self.cfg.n_fft // 2 + 1:  # too short for the STFT's reflect padding
            x = F.pad(x, (0, self.cfg.n_fft // 2 + 1 - (hi - lo)))
        X = self.sep.stft(x)
        feats = self.sep.features(self.sep.warp(X.abs()))
        ft = (lo + np.arange(X.shape[-1]) * self.cfg.hop_length) / self.sr
        hit = (X, feats, ft)
        self._cache[i] = hit
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)
        return hit

    @torch.no_grad()
    def render(self, cond_fn: Callable[[np.ndarray], np.ndarray], n_src: int, start: int = 0,
               stop: Optional[int] = None, normalise: bool = True, cancel=None,
               progress: ProgressFn | None = None) -> np.ndarray:
        """Separated waves [n_src, stop - start]; ``cond_fn(frame_times [T]) -> [n_src, T, D]``."""
        stop = self.N if stop is None else stop
        out = np.zeros((n_src, max(0, stop - start)), np.float32)
        todo = [i for i, p in enumerate(self.plan) if p[2] < stop and p[3] > start]
        H = self.cfg.head_hidden or 1
        for n_done, i in enumerate(todo):
            check_cancel(cancel, "separation")
            lo, hi, oa, ob, w = self.plan[i]
            X, feats, ft = self.chunk(i)
            cond = torch.from_numpy(np.ascontiguousarray(cond_fn(ft), np.float32)).to(feats.device)
            T = feats.shape[-1]
            group = max(1, int(16e6 // (H * feats.shape[-2] * T)))  # bound the head's memory
            masks = torch.cat([torch.sigmoid(self.sep.mask_logits(feats, cond[None, g:g + group]))
                               for g in range(0, n_src, group)], 1)
            length = max(hi - lo, self.cfg.n_fft // 2 + 1)  # as padded in chunk()
            waves = self.sep.apply_masks(X, masks, length, normalise)[0, :, : hi - lo]
            seg = waves[:, oa - lo: ob - lo].cpu().numpy()
            if w is not None:
                seg = seg * w
            a, b = max(oa, start), min(ob, stop)
            out[:, a - start:b - start] += seg[:, a - oa:b - oa]
            emit(progress, "separate", n_done + 1, len(todo))
        return out


def separate_tracks(bundle, audio: np.ndarray, tracks: Sequence[tuple[np.ndarray, np.ndarray]],
                    window: float = POOL_SECONDS, normalise: bool = True, spectra: Optional[ClipSpectra] = None,
                    progress: ProgressFn | None = None, cancel=None) -> np.ndarray:
    """One wave per conditioning track ``(times [T], unit vectors [T, D])``: [len(tracks), N]."""
    sep = require_separator(bundle)
    sp = spectra or ClipSpectra(sep, audio, max_cached=1)

    def cond_fn(ft: np.ndarray) -> np.ndarray:
        return np.stack([pool_track(t, v, ft, window) for t, v in tracks])

    return sp.render(cond_fn, len(tracks), normalise=normalise, progress=progress, cancel=cancel)


def separate_clip(bundle, audio: np.ndarray, visual_vectors: np.ndarray, times: Optional[np.ndarray] = None,
                  window: float = POOL_SECONDS, normalise: bool = True, progress: ProgressFn | None = None,
                  cancel=None) -> np.ndarray:
    """Separate ``audio`` (float32 [N] at the separator's rate, 16 kHz) into k sources.

    ``visual_vectors``: the clusters' visual vectors as the separator expects them, ``[T, k, D]``
    at ``times`` [T] seconds (:func:`cluster_vectors` of a ``ClipAnalysis``) or static ``[k, D]``. Each STFT
    frame is conditioned on each cluster's vectors averaged over ``window`` seconds around it.
    With ``normalise`` the k masks never sum above 1 in a bin, so the stems partition the
    mixture and ``audio - stems.sum(0)`` is what no cluster claimed. Returns float32 [k, N].
    """
    return separate_tracks(bundle, audio, tracks_from_analysis(visual_vectors, times), window,
                           normalise, progress=progress, cancel=cancel)


# -- stems of an analysed clip ---------------------------------------------------------------------

def read_clip_audio(path, sr: int) -> np.ndarray:
    """The clip's audio at ``sr`` (silence as long as the clip when it has no sound)."""
    info = probe(path)
    if not info.has_audio:
        dur = float(info.duration or 0.0)
        return np.zeros(int(round(dur * sr)), np.float32)
    return read_audio(path, sr).astype(np.float32)


def av_match(bundle) -> Optional[bool]:
    """Was the separator trained in this bundle's AV model's visual space? (None: unknown)

    Compares the identity of the AV weights (``weights_sha256`` of the card), or, for cards
    that lack it, the SHA-256 of the AV model's file."""
    info = bundle.card("sep").get("av_model", {})
    if bundle.av is None or not info:
        return None
    if info.get("weights_sha256"):
        return weights_sha256(bundle.av) == info["weights_sha256"]
    path = bundle.paths.get("av")
    if not info.get("sha256") or not path:
        return None
    try:
        return file_sha256(path) == info["sha256"]
    except OSError:
        return None


@torch.no_grad()
def cluster_vectors(bundle, video_path, analysis, step_s: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """The visual vectors the separator expects for each sound cluster of an analysed clip:
    ``(times [T], vectors [T, k, D])``.

    A separator trained on aligned visual centers (``conditioning="center"``) takes
    ``analysis.visual_vectors`` as they are. One trained on attended vectors (the default)
    needs the visual features where each cluster's sound is heard: if the analysis carries
    them (``attended_vectors``) they are used, else they are computed from frames every
    ``step_s`` seconds and the analysis' audio centers (the same clusters, same order).
    """
    sep = require_separator(bundle)
    times = np.asarray(analysis.times, np.float64)
    if sep.cfg.conditioning == "center":
        return times, np.asarray(analysis.visual_vectors, np.float32)
    got = getattr(analysis, "attended_vectors", None)  # a ClipAnalysis or the GUI's HeatmapData
    if got is not None and float(getattr(analysis, "attended_tau", sep.cfg.attend_tau)) == float(sep.cfg.attend_tau):
        return times, np.asarray(got, np.float32)
    av = bundle.av
    if av is None:
        raise AVStudioError(f"{bundle.name}: the separator needs the AV model's visual features")
    fi = getattr(analysis, "frame_indices", None)
    fi = np.asarray(analysis.frames if fi is None else fi)  # ClipAnalysis or the GUI's HeatmapData
    if getattr(analysis, "audio_centers", None) is None:
        raise AVStudioError("the analysis has no audio centers to find each cluster's visual vector with")
    pick, last = [], -np.inf
    for i, t in enumerate(times):  # about one frame every step_s seconds
        if t - last >= step_s - 1e-6:
            pick.append(i)
            last = t
    pick = np.asarray(pick, dtype=np.int64)
    S = av.cfg.frame_size
    dev = next(av.parameters()).device
    out = []
    with VideoReader(video_path) as vr:
        n_all, fps_v = vr.frame_count, float(vr.info.fps or 25.0)
        wanted = {j for i in pick for j in av.cfg.stack_indices(int(fi[i]), fps_v, max(n_all, int(fi[i]) + 1))}
        frames = {}
        lo, hi = min(wanted), max(wanted) + 1
        for idx, _t, rgb in vr.frames(lo, hi, size=(S, S)):
            if idx in wanted:
                frames[idx] = np.ascontiguousarray(rgb.transpose(2, 0, 1))
    keep = [i for i in pick if int(fi[i]) in frames]
    if not keep:
        raise MediaError(f"{video_path}: none of the analysed frames could be decoded")

    def model_input(i: int) -> np.ndarray:  # a still frame, or the stack around it
        j0 = int(fi[i])
        if av.cfg.stack <= 1:
            return frames[j0]
        return np.stack([frames.get(j, frames[j0]) for j in av.cfg.stack_indices(j0, fps_v, max(n_all, j0 + 1))])

    A_all = torch.from_numpy(np.asarray(analysis.audio_centers, np.float32))
    for b in range(0, len(keep), 32):
        part = keep[b:b + 32]
        fr = torch.from_numpy(np.stack([model_input(i) for i in part])).to(dev)
        vis = av.visual(fr)
        out.append(attend(vis, A_all[part].to(dev), sep.cfg.attend_tau).cpu().numpy())
    return times[keep], np.concatenate(out).astype(np.float32)


def separate_analysis(bundle, video_path, analysis, audio: Optional[np.ndarray] = None,
                      progress: ProgressFn | None = None, cancel=None) -> np.ndarray:
    """Stems [k, N] of an analysed clip (a ``ClipAnalysis`` or the GUI cache's ``HeatmapData``):
    :func:`cluster_vectors` + :func:`separate_clip`. ``audio``: the clip's audio at the
    separator's rate when the caller has it decoded already."""
    sep = require_separator(bundle)
    if audio is None:
        audio = read_clip_audio(video_path, sep.cfg.sample_rate)
    t, vv = cluster_vectors(bundle, video_path, analysis)
    return separate_clip(bundle, audio, vv, t, progress=progress, cancel=cancel)


def write_stems(bundle, video_path, analysis, out_dir, progress: ProgressFn | None = None) -> dict:
    """Write ``out_dir/stems/<k>.wav`` (one per sound cluster, 16 kHz, 16-bit) and
    ``out_dir/stems/residual.wav``; returns the ``summary.json`` entries (paths, timings).
    An analysis with no sound cluster (k = 0: a clip without sound) has no stems: nothing is
    written and ``{"stems": None}`` is returned."""
    if int(analysis.k) == 0:
        return {"stems": None}
    t0 = time.perf_counter()
    sep = require_separator(bundle)
    sr = sep.cfg.sample_rate
    audio = read_clip_audio(video_path, sr)
    t1 = time.perf_counter()
    vt, vv = cluster_vectors(bundle, video_path, analysis)
    tv = time.perf_counter()
    stems = separate_clip(bundle, audio, vv, vt, progress=progress)
    t2 = time.perf_counter()
    out = Path(out_dir) / "stems"
    out.mkdir(parents=True, exist_ok=True)

    def q(x):
        return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int64)

    mix_q = q(audio)
    stems_q = q(stems)
    res_q = np.clip(mix_q - stems_q.sum(0), -32767, 32767)  # exact unless it would clip
    files = []
    for j in range(stems_q.shape[0]):
        p = out / f"{j}.wav"
        write_wav(p, stems_q[j] / 32767.0, sr)
        files.append(str(p.relative_to(Path(out_dir))))
    rp = out / "residual.wav"
    write_wav(rp, res_q / 32767.0, sr)
    t3 = time.perf_counter()
    match = av_match(bundle)
    info = {
        "dir": "stems", "files": files, "residual": str(rp.relative_to(Path(out_dir))),
        "sample_rate": sr, "k": int(stems.shape[0]), "samples": int(len(audio)),
        "conditioning": (f"{'attended visual vectors' if sep.cfg.conditioning == 'attended' else 'aligned visual centers'}"
                         f" of each cluster, averaged over {POOL_SECONDS:g} s windows around each STFT frame"),
        "separator": bundle.paths.get("sep", ""),
        "separator_av_model_match": match,
        "timings": {"decode_s": t1 - t0, "vectors_s": tv - t1, "separate_s": t2 - tv, "write_s": t3 - t2,
                    "total_s": t3 - t0},
    }
    if match is False:
        info["warning"] = "the separator was trained with another AV model's visual vectors"
    return {"stems": info}
