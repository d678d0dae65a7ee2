"""On-disk cache of analysis results per (clip content, model): reopening a clip is instant.

Qt-free. Layout (``root`` is ``$AVSTUDIO_CACHE``, else ``$XDG_CACHE_HOME/avstudio``, else
``~/.cache/avstudio``)::

    root/<clip hash>-<model id>/
        meta.json                 video path, clip hash, model id, the counter's k estimate
        k<k>/                     one folder per number of sound clusters
            chunks/<a>-<b>.npz    heatmaps of frames a..b-1 as they are computed (any order)
            heatmaps.npz          all frames, once every chunk is in (chunks then removed)
            reference.npy         [k, D] audio centers that fix the cluster order of the clip
            stems/<j>.wav         the separated source of cluster j (+ stems.json: rate)

The clip hash is computed from the file's *content* (size and sampled blocks, the whole
file when small), so a renamed or copied clip hits the same entry and an edited one does
not. ``model_id`` is :attr:`avstudio.nets.checkpoint.ModelBundle.model_id`.

Every write is atomic (temporary file, then ``os.replace``), so a crash or a cancelled job
leaves the cache readable; a corrupt or unreadable entry is ignored (and recomputed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..dbguard import ensure_not_database
from ..errors import MediaError

#: files up to this size are hashed in full; bigger ones by sampled blocks
FULL_HASH_BYTES = 32 * 1024 * 1024
SAMPLE_BLOCK = 1024 * 1024
SAMPLE_BLOCKS = 16
CACHE_VERSION = 1
# How cached stems were made; stems stored by another method are recomputed. 2: each cluster
# conditioned on its attended visual vectors (separate_analysis), as the separator is trained.
STEMS_METHOD = 2

_hash_memo: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def cache_root() -> Path:
    """Where the cache lives: $AVSTUDIO_CACHE, $XDG_CACHE_HOME/avstudio or ~/.cache/avstudio."""
    env = os.environ.get("AVSTUDIO_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "avstudio"


def clip_hash(path: str | os.PathLike) -> str:
    """A 20-hex-digit hash of a file's content (size + sampled 1 MiB blocks for big files)."""
    p = os.fspath(path)
    ensure_not_database(p, "read as media", MediaError)
    st = os.stat(p)
    memo_key = (os.path.realpath(p), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        got = _hash_memo.get(memo_key)
    if got is not None:
        return got
    h = hashlib.sha1()
    size = st.st_size
    h.update(f"avstudio-clip:{CACHE_VERSION}:{size}:".encode())
    with open(p, "rb") as fh:
        if size <= FULL_HASH_BYTES:
            while True:
                buf = fh.read(4 * 1024 * 1024)
                if not buf:
                    break
                h.update(buf)
        else:
            offsets = np.linspace(0, size - SAMPLE_BLOCK, SAMPLE_BLOCKS).astype(np.int64)
            for off in offsets:
                fh.seek(int(off))
                h.update(fh.read(SAMPLE_BLOCK))
    digest = h.hexdigest()[:20]
    with _hash_lock:
        _hash_memo[memo_key] = digest
    return digest


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _save_npz(path: Path, **arrays) -> None:
    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    _atomic_write(path, write)


@dataclass
class HeatmapData:
    """Heatmaps of some frames of a clip (``frames`` sorted, unique)."""

    k: int
    frames: np.ndarray  # [T] int64 frame indices
    times: np.ndarray  # [T] float64 seconds
    heatmaps: np.ndarray  # [T, k, h, w] float16/32 in 0..1
    aligned: Optional[np.ndarray] = None  # [T, k, h, w]
    unaligned: Optional[np.ndarray] = None  # [T, h, w]
    visual_vectors: Optional[np.ndarray] = None  # [T, k, D]
    audio_centers: Optional[np.ndarray] = None  # [T, k, D]
    attended_vectors: Optional[np.ndarray] = None  # [T, k, D] the separator's conditioning

    #: the per-frame arrays besides heatmaps that a record may hold, and whether each is a
    #: map (stored as float16 in the cache) or a vector (float32)
    OPTIONAL = {"aligned": "map", "unaligned": "map", "visual_vectors": "vector",
                "audio_centers": "vector", "attended_vectors": "vector"}

    def arrays(self, maps_dtype=np.float16) -> dict[str, np.ndarray]:
        """Every array of the record by name, maps as ``maps_dtype``, vectors as float32."""
        out = {"heatmaps": self.heatmaps.astype(maps_dtype), "times": np.asarray(self.times, np.float64),
               "frames": np.asarray(self.frames, np.int64)}
        for name, kind in self.OPTIONAL.items():
            v = getattr(self, name)
            if v is not None:
                out[name] = v.astype(maps_dtype if kind == "map" else np.float32)
        return out

    def select(self, index: np.ndarray, frames: np.ndarray) -> HeatmapData:
        """The records at positions ``index`` (with repeats), renumbered as ``frames``."""
        out = HeatmapData(k=self.k, frames=np.asarray(frames, np.int64), times=np.asarray(self.times)[index],
                          heatmaps=np.asarray(self.heatmaps)[index])
        for name in self.OPTIONAL:
            v = getattr(self, name)
            setattr(out, name, None if v is None else np.asarray(v)[index])
        return out

    def __len__(self) -> int:
        return int(len(self.frames))

    @staticmethod
    def merge(parts: list[HeatmapData]) -> Optional[HeatmapData]:
        parts = [p for p in parts if p is not None and len(p)]
        if not parts:
            return None
        k = parts[0].k
        parts = [p for p in parts if p.k == k and p.heatmaps.shape[2:] == parts[0].heatmaps.shape[2:]]

        def cat(name):
            arrs = [getattr(p, name) for p in parts]
            if any(a is None for a in arrs):
                return None
            try:
                return np.concatenate(arrs)
            except ValueError:
                return None

        frames = np.concatenate([p.frames for p in parts]).astype(np.int64)
        order = np.argsort(frames, kind="stable")
        frames = frames[order]
        keep = np.ones(len(frames), bool)
        keep[1:] = frames[1:] != frames[:-1]  # a frame in two chunks: keep the first
        sel = order[keep]
        out = HeatmapData(k=k, frames=frames[keep], times=np.concatenate([p.times for p in parts])[sel],
                          heatmaps=np.concatenate([p.heatmaps for p in parts])[sel])
        for name in HeatmapData.OPTIONAL:
            a = cat(name)
            setattr(out, name, a[sel] if a is not None else None)
        return out

    def to_npz(self, path: str | os.PathLike, float32: bool = True) -> Path:
        """Write the analysis contract layout: ``heatmaps`` [T,K,h,w] float32 0..1, ``times``
        float64 [T], plus ``frames`` and whatever else is known."""
        p = Path(os.fspath(path))
        _save_npz(p, **self.arrays(np.float32 if float32 else self.heatmaps.dtype))
        return p


def _load_npz(path: Path, k_expected: Optional[int] = None) -> Optional[HeatmapData]:
    try:
        with np.load(path, allow_pickle=False) as z:
            hm = z["heatmaps"]
            if hm.ndim != 4:
                return None
            frames = z["frames"].astype(np.int64) if "frames" in z else np.arange(len(hm))
            times = z["times"].astype(np.float64)
            d = HeatmapData(k=int(hm.shape[1]), frames=frames, times=times, heatmaps=hm)
            for name in HeatmapData.OPTIONAL:
                if name in z:
                    setattr(d, name, z[name])
    except (OSError, ValueError, KeyError, EOFError, Exception):  # corrupt entry: recompute
        return None
    if k_expected is not None and d.k != k_expected:
        return None
    if not (len(d.frames) == len(d.times) == len(d.heatmaps)):
        return None
    return d


class AnalysisCache:
    """The cache entry of one (clip, model). Cheap to create; thread-safe writes."""

    def __init__(self, video: str | os.PathLike, model_id: str, root: Optional[str | os.PathLike] = None,
                 clip_key: Optional[str] = None):
        self.video = os.fspath(video)
        self.model_id = str(model_id)
        self.root = Path(root) if root is not None else cache_root()
        self.clip_key = clip_key or clip_hash(self.video)
        self.dir = self.root / f"{self.clip_key}-{self.model_id}"
        self._lock = threading.RLock()

    # -- meta ---------------------------------------------------------------------------------
    def _meta_path(self) -> Path:
        return self.dir / "meta.json"

    def meta(self) -> dict:
        try:
            d = json.loads(self._meta_path().read_text(encoding="utf-8"))
            return d if isinstance(d, dict) else {}
        except (OSError, ValueError):
            return {}

    def update_meta(self, **values) -> dict:
        with self._lock:
            d = self.meta()
            d.update({"video": self.video, "clip_hash": self.clip_key, "model_id": self.model_id,
                      "version": CACHE_VERSION})
            d.update(values)
            d["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            data = (json.dumps(d, indent=2) + "\n").encode()
            _atomic_write(self._meta_path(), lambda tmp: Path(tmp).write_bytes(data))
            return d

    def auto_k(self) -> Optional[dict]:
        """The counter's estimate stored earlier: {"k", "rate"} or None."""
        v = self.meta().get("auto_k")
        return v if isinstance(v, dict) and isinstance(v.get("k"), int) else None

    def save_auto_k(self, k: int, rate: Optional[float] = None) -> None:
        """Keep the counter's count (``k``) and rate for this clip and model."""
        self.update_meta(auto_k={"k": int(k), "rate": rate})

    # -- heatmaps -----------------------------------------------------------------------------
    def k_dir(self, k: int) -> Path:
        return self.dir / f"k{int(k)}"

    def save_chunk(self, data: HeatmapData) -> Path:
        """Store the heatmaps of some consecutive frames (a chunk of the analysis)."""
        if not len(data):
            raise ValueError("empty chunk")
        a, b = int(data.frames.min()), int(data.frames.max()) + 1
        p = self.k_dir(data.k) / "chunks" / f"{a:08d}-{b:08d}.npz"
        with self._lock:
            _save_npz(p, **data.arrays())
            if not self.meta():
                self.update_meta()
        return p

    def load(self, k: int) -> Optional[HeatmapData]:
        """Every cached frame's heatmaps for ``k`` clusters (None: nothing cached)."""
        kd = self.k_dir(k)
        parts: list[HeatmapData] = []
        with self._lock:
            full = kd / "heatmaps.npz"
            if full.exists():
                d = _load_npz(full, k)
                if d is not None:
                    parts.append(d)
            chunk_dir = kd / "chunks"
            if chunk_dir.is_dir():
                for f in sorted(chunk_dir.glob("*.npz")):
                    d = _load_npz(f, k)
                    if d is not None:
                        parts.append(d)
        return HeatmapData.merge(parts)

    def consolidate(self, k: int) -> Optional[Path]:
        """Merge the chunks into ``heatmaps.npz`` (call when the clip is fully analysed)."""
        with self._lock:
            d = self.load(k)
            if d is None:
                return None
            kd = self.k_dir(k)
            p = kd / "heatmaps.npz"
            _save_npz(p, **d.arrays())
            shutil.rmtree(kd / "chunks", ignore_errors=True)
            return p

    def reference(self, k: int) -> Optional[np.ndarray]:
        p = self.k_dir(k) / "reference.npy"
        try:
            r = np.load(p, allow_pickle=False)
        except (OSError, ValueError):
            return None
        return r if r.ndim == 2 and r.shape[0] == k else None

    def save_reference(self, k: int, centers: np.ndarray) -> None:
        p = self.k_dir(k) / "reference.npy"

        def write(tmp):
            with open(tmp, "wb") as fh:
                np.save(fh, np.asarray(centers, np.float32))
        with self._lock:
            _atomic_write(p, write)

    # -- stems --------------------------------------------------------------------------------
    def stems_dir(self, k: int) -> Path:
        return self.k_dir(k) / "stems"

    def save_stems(self, k: int, stems: np.ndarray, sample_rate: int) -> Path:
        """Store separated sources ``[k, N]`` float32 (as 32-bit float WAVs)."""
        from ..media import write_wav

        stems = np.asarray(stems, np.float32)
        d = self.stems_dir(k)
        with self._lock:
            d.mkdir(parents=True, exist_ok=True)
            for j in range(stems.shape[0]):
                _atomic_write(d / f"{j}.wav", lambda tmp, j=j: write_wav(tmp, stems[j], sample_rate,
                                                                          float32=True))
            info = (json.dumps({"k": int(stems.shape[0]), "sample_rate": int(sample_rate),
                                "samples": int(stems.shape[1]), "method": STEMS_METHOD}) + "\n").encode()
            _atomic_write(d / "stems.json", lambda tmp: Path(tmp).write_bytes(info))
        return d

    def load_stems(self, k: int) -> Optional[tuple[np.ndarray, int]]:
        """``(stems [k, N] float32, sample_rate)`` or None."""
        from ..media import read_wav

        d = self.stems_dir(k)
        try:
            info = json.loads((d / "stems.json").read_text())
            if int(info["k"]) != int(k) or int(info.get("method", 1)) != STEMS_METHOD:
                return None
            arrs = []
            for j in range(k):
                a, sr = read_wav(d / f"{j}.wav", mono=True)
                if sr != int(info["sample_rate"]):
                    return None
                arrs.append(a)
        except Exception:  # missing or corrupt: recompute
            return None
        n = min(len(a) for a in arrs)
        return np.stack([a[:n] for a in arrs]).astype(np.float32), int(info["sample_rate"])

    # -- housekeeping -------------------------------------------------------------------------
    def clear(self) -> None:
        with self._lock:
            shutil.rmtree(self.dir, ignore_errors=True)


def clear_all(root: Optional[str | os.PathLike] = None) -> None:
    """Remove the whole cache."""
    shutil.rmtree(Path(root) if root is not None else cache_root(), ignore_errors=True)


def cache_size_bytes(root: Optional[str | os.PathLike] = None) -> int:
    r = Path(root) if root is not None else cache_root()
    total = 0
    for dirpath, _, files in os.walk(r):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total
