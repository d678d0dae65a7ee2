"""Using the separator: stems per sound cluster, the sound of a pixel, evaluation, benchmark.

* :func:`separate_clip` — the core: a clip's audio + the visual vectors of its k clusters
  over time (:func:`cluster_vectors`: by default each cluster's *attended* vector, the
  visual features pooled where its sound is heard) -> k waveforms. The clip is processed in long chunks (the U-Net runs
  once per chunk whatever k is), the k conditionings are batched, and each STFT frame is
  conditioned on the cluster's visual vectors pooled over a window around it (so a cluster
  is followed as its object moves or changes).
* :func:`write_stems` — ``OUT/stems/<k>.wav`` per cluster and ``OUT/stems/residual.wav``
  (mixture minus the stems: what no cluster claimed); the 16-bit files add up to the
  16-bit mixture exactly (integer arithmetic).
* :class:`PixelSounder` / :func:`pixel_sound` — "the sound of a pixel": condition on the
  visual feature at one pixel of one frame. The sounder keeps the decoded audio and the
  U-Net's features of the clip, so a click costs one frame through the visual encoder, the
  small per-bin head and an inverse STFT.
* :func:`evaluate_separation` — SDR/SIR/SAR (mir_eval ``bss_eval_sources``) on held-out
  two-source mixtures of a benchmark folder, with the mixture itself and the ideal ratio
  mask in the same run.
* :func:`bench_separation` — timings for ``avstudio bench``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import AVStudioError, MediaError
from ..nets.kmeans import best_matching
from ..nets.separator import attend, attention_maps
from ..progress import ProgressFn, check_cancel, emit
from . import metrics as M

POOL_SECONDS = 1.0  # a cluster's visual vectors are averaged over this window around each STFT frame
FADE_SECONDS = 0.05  # crossfade between chunks


def _separator(bundle):
    sep = getattr(bundle, "separator", None)
    if sep is None:
        raise AVStudioError(f"{getattr(bundle, 'name', 'model')}: this model has no separator "
                            "(train one with `avstudio train-separator`)")
    return sep.eval()


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
        for a, b in zip(bounds[:-1], bounds[1:]):
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
    sep = _separator(bundle)
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

def _read_clip_audio(path, sr: int) -> np.ndarray:
    from ..media import probe, read_audio

    info = probe(path)
    if not info.has_audio:
        dur = float(info.duration or 0.0)
        return np.zeros(int(round(dur * sr)), np.float32)
    return read_audio(path, sr).astype(np.float32)


def _av_match(bundle) -> Optional[bool]:
    """Was the separator trained in this bundle's AV model's visual space? (None: unknown)

    Compares the identity of the AV weights (``weights_sha256`` of the card), or, for cards
    that lack it, the SHA-256 of the AV model's file."""
    from ..train.separation import file_sha256, weights_sha256

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
    from ..media import VideoReader

    sep = _separator(bundle)
    times = np.asarray(analysis.times, np.float64)
    if sep.cfg.conditioning == "center":
        return times, np.asarray(analysis.visual_vectors, np.float32)
    got = getattr(analysis, "attended_vectors", None)
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
        wanted = {int(fi[i]): i for i in pick}
        frames = {}
        lo, hi = int(fi[pick].min()), int(fi[pick].max()) + 1
        for idx, _t, rgb in vr.frames(lo, hi, size=(S, S)):
            if idx in wanted:
                frames[idx] = np.ascontiguousarray(rgb.transpose(2, 0, 1))
    keep = [i for i in pick if int(fi[i]) in frames]
    if not keep:
        raise MediaError(f"{video_path}: none of the analysed frames could be decoded")
    A_all = torch.from_numpy(np.asarray(analysis.audio_centers, np.float32))
    for b in range(0, len(keep), 32):
        part = keep[b:b + 32]
        fr = torch.from_numpy(np.stack([frames[int(fi[i])] for i in part])).to(dev)
        vis = av.visual(fr)
        out.append(attend(vis, A_all[part].to(dev), sep.cfg.attend_tau).cpu().numpy())
    return times[keep], np.concatenate(out).astype(np.float32)


def separate_analysis(bundle, video_path, analysis, audio: Optional[np.ndarray] = None,
                      progress: ProgressFn | None = None, cancel=None) -> np.ndarray:
    """Stems [k, N] of an analysed clip (a ``ClipAnalysis`` or the GUI cache's ``HeatmapData``):
    :func:`cluster_vectors` + :func:`separate_clip`. ``audio``: the clip's audio at the
    separator's rate when the caller has it decoded already."""
    sep = _separator(bundle)
    if audio is None:
        audio = _read_clip_audio(video_path, sep.cfg.sample_rate)
    t, vv = cluster_vectors(bundle, video_path, analysis)
    return separate_clip(bundle, audio, vv, t, progress=progress, cancel=cancel)


def write_stems(bundle, video_path, analysis, out_dir, progress: ProgressFn | None = None) -> dict:
    """Write ``out_dir/stems/<k>.wav`` (one per sound cluster, 16 kHz, 16-bit) and
    ``out_dir/stems/residual.wav``; returns the ``summary.json`` entries (paths, timings)."""
    from ..media import write_wav

    t0 = time.perf_counter()
    sep = _separator(bundle)
    sr = sep.cfg.sample_rate
    audio = _read_clip_audio(video_path, sr)
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
    match = _av_match(bundle)
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


# -- the sound of a pixel -------------------------------------------------------------------------

class PixelSounder:
    """Answers "what does this pixel sound like?" for one clip, fast enough for a click.

    Holds the clip's decoded audio, the U-Net features of its chunks (computed on the first
    request) and the visual map of the last frame asked for. ``sound(t, x, y)`` conditions
    the separator on the visual feature at (x, y) (0..1 of the frame) of the frame at ``t``.
    """

    def __init__(self, bundle, video_path=None, audio: Optional[np.ndarray] = None, max_cached: int = 3):
        self.bundle = bundle
        self.sep = _separator(bundle)
        self.sr = self.sep.cfg.sample_rate
        self.path = None if video_path is None else str(video_path)
        if audio is None:
            if video_path is None:
                raise ValueError("PixelSounder needs a video path or audio")
            audio = _read_clip_audio(video_path, self.sr)
        self.spectra = ClipSpectra(self.sep, audio, max_cached=max_cached)
        self._reader = None
        self._vis_key = None
        self._vis = None

    @property
    def duration(self) -> float:
        return self.spectra.N / self.sr

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @torch.no_grad()
    def visual_map(self, time_s: float) -> torch.Tensor:
        """The AV model's visual features [D, h, w] of the frame shown at ``time_s``."""
        from ..media import VideoReader

        av = self.bundle.av
        if av is None:
            raise AVStudioError(f"{self.bundle.name}: this model has no visual encoder")
        if self.path is None:
            raise AVStudioError("this sounder has no video to take a frame from")
        if self._reader is None:
            self._reader = VideoReader(self.path)
        idx = max(0, self._reader.index_at(float(time_s)))
        if self._reader.info.frame_count_exact:
            idx = min(idx, self._reader.frame_count - 1)
        if self._vis_key != idx:
            S = av.cfg.frame_size
            rgb = self._reader.frame(idx, size=(S, S))
            dev = next(av.parameters()).device
            fr = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].to(dev)
            self._vis = av.visual(fr)[0]
            self._vis_key = idx
        return self._vis

    @staticmethod
    def vector_at(vis: torch.Tensor, x: float, y: float) -> np.ndarray:
        """Bilinear sample of a feature map [D, h, w] at (x, y) in 0..1 -> unit vector [D]."""
        g = torch.tensor([[[[2.0 * float(np.clip(x, 0, 1)) - 1.0, 2.0 * float(np.clip(y, 0, 1)) - 1.0]]]],
                         dtype=vis.dtype, device=vis.device)
        v = F.grid_sample(vis[None], g, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0, 0]
        return F.normalize(v, dim=0).cpu().numpy()

    def window(self, time_s: float, seconds: Optional[float]) -> tuple[int, int]:
        """Sample range [a, a + n) of a ``seconds`` window centred on ``time_s`` (kept inside the
        clip when the clip is long enough); the whole clip when ``seconds`` is None."""
        N = self.spectra.N
        if seconds is None:
            return 0, N
        n = max(1, int(round(float(seconds) * self.sr)))
        a = int(round(float(time_s) * self.sr)) - n // 2
        a = max(0, min(a, N - n))
        return a, a + n

    def sound_of_vector(self, vector: np.ndarray, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
        """The sound the separator gives for one visual vector [D], samples [start, stop)."""
        v = np.asarray(vector, np.float32).reshape(1, 1, -1)
        stop = self.spectra.N if stop is None else stop
        a, b = max(0, start), min(self.spectra.N, stop)
        out = np.zeros(stop - start, np.float32)
        if b > a:
            got = self.spectra.render(lambda ft: np.broadcast_to(v, (1, len(ft), v.shape[-1])), 1, a, b,
                                      normalise=False)[0]
            out[a - start:b - start] = got
        return out

    def sound(self, time_s: float, x: float, y: float, seconds: Optional[float] = None) -> np.ndarray:
        """float32 audio at 16 kHz: the whole clip (``seconds`` None) or ``round(seconds*16000)``
        samples around ``time_s`` (zeros past the clip's end when it is shorter)."""
        vec = self.vector_at(self.visual_map(time_s), x, y)
        a, b = self.window(time_s, seconds)
        return self.sound_of_vector(vec, a, b)

    def clusters(self, visual_vectors: np.ndarray, times: Optional[np.ndarray] = None) -> np.ndarray:
        """Per-cluster stems [k, N] (as :func:`separate_clip`), reusing the cached features."""
        tracks = tracks_from_analysis(visual_vectors, times)
        return separate_tracks(self.bundle, self.spectra.audio, tracks, spectra=self.spectra)

    def clusters_of(self, analysis) -> np.ndarray:
        """Per-cluster stems [k, N] of an analysed clip (GUI per-cluster playback): the
        vectors from :func:`cluster_vectors`, the features from this sounder's cache."""
        if self.path is None:
            raise AVStudioError("this sounder has no video to take the clusters' frames from")
        t, v = cluster_vectors(self.bundle, self.path, analysis)
        return self.clusters(v, t)


_SOUNDERS: "OrderedDict[tuple, PixelSounder]" = OrderedDict()


def pixel_sound(bundle, video_path, time_s: float, x: float, y: float,
                seconds: Optional[float] = None) -> np.ndarray:
    """The sound of pixel (x, y) (0..1 of the frame) of the frame at ``time_s``: float32 at
    16 kHz, the whole clip or ``seconds`` around ``time_s``. Keeps the last two clips' sounders."""
    p = Path(video_path)
    try:
        st = p.stat()
    except OSError:
        raise MediaError(f"{video_path}: no such file") from None
    key = (id(bundle), id(bundle.separator), str(p.resolve()), st.st_mtime_ns, st.st_size)
    sp = _SOUNDERS.get(key)
    if sp is None:
        sp = PixelSounder(bundle, video_path)
        _SOUNDERS[key] = sp
        while len(_SOUNDERS) > 2:
            _, old = _SOUNDERS.popitem(last=False)
            old.close()
    else:
        _SOUNDERS.move_to_end(key)
    return sp.sound(time_s, x, y, seconds)


# -- evaluation --------------------------------------------------------------------------------------

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
    import torchaudio.functional as AF

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
    from ..data.clips import audio_window
    from ..media import VideoReader, probe

    av = bundle.av.eval()
    cfg = av.cfg
    S = cfg.frame_size
    dev = next(av.parameters()).device
    info = probe(path)
    audio = _read_clip_audio(path, cfg.sample_rate) if info.has_audio else np.zeros(0, np.float32)
    fps = float(info.fps or 25.0)
    step = max(1, int(round(step_s * fps)))
    frames, idx, times = [], [], []
    with VideoReader(path) as vr:
        for fi, ft, rgb in vr.frames(0, None, size=(S, S), step=step):
            frames.append(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
            idx.append(fi)
            times.append(float(ft))
    if not frames:
        raise MediaError(f"{path}: no video frames could be decoded")
    vecs, aligned, att, att_maps = [], [], [], []
    tau = bundle.separator.cfg.attend_tau if getattr(bundle, "separator", None) is not None else 0.05
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
    from ..data.manifest import read_manifest
    from ..data.synth import load_ground_truth
    from .evaluate import find_manifest

    t0 = time.time()
    sep = _separator(bundle)
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
            mix = _read_clip_audio(r.path, sr)
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
                parts.append(_read_clip_audio(r.path, sr))
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
            improvements[group] += [m - x for m, x in zip(sm["sdr"], sx["sdr"])]
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


# -- benchmark -----------------------------------------------------------------------------------------

def bench_separation(bundle, seconds: float = 10.0, k: int = 2, repeats: int = 3) -> dict:
    """Timings of separation on this machine: stems for ``k`` clusters of a ``seconds`` clip
    (target: 2 clusters of 10 s in <= 1 s on 2 CPU cores) and the sound of a pixel (a click:
    one frame through the visual encoder, the head and the inverse STFT; the first click of
    a clip also runs the U-Net). Wall-clock medians of ``repeats`` runs at the current torch
    thread count, plus the process CPU time (``stems_cpu_s``: what the work costs on a
    machine that other jobs share)."""
    sep = getattr(bundle, "separator", None)
    if sep is None:
        return {"available": False, "reason": "the model has no separator"}
    sep.eval()
    sr = sep.cfg.sample_rate
    rng = np.random.default_rng(0)
    N = int(round(seconds * sr))
    t = np.arange(N) / sr
    audio = (0.1 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 587 * t * (1 + 0.01 * np.sin(t)))
             + 0.02 * rng.standard_normal(N)).astype(np.float32)
    T = max(1, int(seconds * 25))
    vv = rng.standard_normal((T, k, sep.cfg.cond_dim)).astype(np.float32)
    vv /= np.linalg.norm(vv, axis=-1, keepdims=True)
    times = np.arange(T) / 25.0
    separate_clip(bundle, audio[: sr], vv[:25], times[:25])  # warm-up
    runs, cpu = [], []
    for _ in range(max(1, repeats)):
        t0, c0 = time.perf_counter(), time.process_time()
        separate_clip(bundle, audio, vv, times)
        runs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    stems_s = float(np.median(runs))
    ps = PixelSounder(bundle, audio=audio)
    t0 = time.perf_counter()
    ps.sound_of_vector(vv[0, 0])
    first = time.perf_counter() - t0
    clicks = []
    for i in range(max(1, repeats)):
        t0 = time.perf_counter()
        if bundle.av is not None:
            S = bundle.av.cfg.frame_size
            dev = next(bundle.av.parameters()).device
            with torch.no_grad():
                vis = bundle.av.visual(torch.from_numpy(rng.integers(0, 255, (1, 3, S, S), dtype=np.uint8)).to(dev))[0]
            vec = PixelSounder.vector_at(vis, 0.3 + 0.1 * i, 0.5)
        else:
            vec = vv[i % T, 0]
        ps.sound_of_vector(vec)
        clicks.append(time.perf_counter() - t0)
    return {"available": True, "seconds": float(seconds), "k": int(k), "threads": torch.get_num_threads(),
            "device": str(next(sep.parameters()).device),
            "stems_s": stems_s, "stems_min_s": float(min(runs)), "stems_cpu_s": float(np.median(cpu)),
            "stems_target_s": 1.0,
            "stems_meets_target": bool(stems_s <= 1.0), "stems_realtime_factor": float(seconds / stems_s),
            "pixel_first_click_s": float(first), "pixel_click_s": float(np.median(clicks))}


__all__ = ["cluster_vectors", "separate_analysis", "separate_clip", "separate_tracks", "write_stems", "PixelSounder", "pixel_sound",
           "evaluate_separation", "bench_separation", "ClipSpectra", "pool_track", "tracks_from_analysis",
           "visual_tracks"]
