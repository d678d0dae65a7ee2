"""Write a compressed ``.npz`` whose big arrays arrive batch by batch, in flat memory.

``np.savez_compressed`` needs every array whole in memory: for a long clip the per-frame
heatmaps are the largest thing the analysis makes (16 KB of float32 per frame at k = 2, 1.4 GB
for an hour). :class:`NpzStreamWriter` appends each batch's rows to a raw temporary file beside
the target and, when the clip is done, streams them into the archive's ``NAME.npy`` members
(the ``.npy`` header is written once the row count is known), a few MB at a time. The result is
an ordinary ``.npz``: ``np.load`` reads it, nothing is pickled. The archive appears atomically
(written as ``*.tmp`` then renamed); a failed or cancelled analysis leaves no partial file.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

COPY_BYTES = 8 * 1024 * 1024


class NpzStreamWriter:
    """``append(name, rows)`` per batch (same dtype and row shape each time), then
    ``finish(small_arrays)`` writes ``path``; ``abort()`` (or an exception inside ``with``)
    removes the temporary files."""

    def __init__(self, path: str | os.PathLike, dtype=np.float32, progress=None):
        self.path = Path(path)
        self.progress = progress  # finish() reports the bytes written as task "write"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dtype = np.dtype(dtype)
        self._files: dict[str, tuple[Path, object]] = {}
        self._rows: dict[str, int] = {}
        self._shape: dict[str, tuple[int, ...]] = {}
        self.done = False

    def __enter__(self) -> NpzStreamWriter:
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is not None or not self.done:
            self.abort()

    def append(self, name: str, rows: np.ndarray) -> None:
        a = np.ascontiguousarray(rows, dtype=self.dtype)
        if a.ndim < 1:
            raise ValueError(f"{name}: rows need a leading dimension")
        if name not in self._files:
            tmp = self.path.with_name(f".{self.path.name}.{name}.part")
            self._files[name] = (tmp, open(tmp, "wb"))
            self._rows[name] = 0
            self._shape[name] = tuple(a.shape[1:])
        elif tuple(a.shape[1:]) != self._shape[name]:
            raise ValueError(f"{name}: rows of shape {a.shape[1:]} after {self._shape[name]}")
        self._files[name][1].write(a.tobytes())
        self._rows[name] += a.shape[0]

    def shape(self, name: str) -> Optional[tuple[int, ...]]:
        if name not in self._rows:
            return None
        return (self._rows[name],) + self._shape[name]

    def nbytes_streamed(self) -> int:
        return sum(int(np.prod(self.shape(n))) * self.dtype.itemsize for n in self._rows)

    def finish(self, arrays: Optional[dict[str, np.ndarray]] = None) -> Path:
        """Write the archive: the streamed arrays plus ``arrays`` (small, given whole)."""
        for _, fh in self._files.values():
            fh.close()
        from ..progress import emit

        tmp = self.path.with_name(self.path.name + ".tmp")
        total_mb, written = max(1, -(-self.nbytes_streamed() // 2**20)), 0
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
                for name, (part, _) in self._files.items():
                    header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                              "shape": self.shape(name)}
                    with zf.open(f"{name}.npy", "w", force_zip64=True) as out, open(part, "rb") as src:
                        np.lib.format.write_array_header_2_0(out, header)
                        while True:
                            buf = src.read(COPY_BYTES)
                            if not buf:
                                break
                            out.write(buf)
                            written += len(buf)
                            emit(self.progress, "write MB", min(total_mb, written // 2**20), total_mb,
                                 self.path.name)
                for name, arr in (arrays or {}).items():
                    with zf.open(f"{name}.npy", "w", force_zip64=True) as out:
                        np.lib.format.write_array(out, np.asanyarray(arr), allow_pickle=False)
            os.replace(tmp, self.path)
            emit(self.progress, "write MB", total_mb, total_mb, self.path.name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            self._remove_parts()
        self.done = True
        return self.path

    def abort(self) -> None:
        for _, fh in self._files.values():
            try:
                fh.close()
            except OSError:
                pass
        self._remove_parts()

    def _remove_parts(self) -> None:
        for part, _ in self._files.values():
            part.unlink(missing_ok=True)


__all__ = ["NpzStreamWriter"]
