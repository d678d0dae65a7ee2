"""Manifests of hundreds of thousands of clips, read lazily.

:func:`avstudio.data.manifest.read_manifest` builds one Python object per row. For a big
manifest :class:`LazyManifest` instead makes one streaming pass that validates every record
(the same rules and messages as ``read_manifest``) and keeps two arrays: the byte offset of
each record and its source count (-1: unknown), 12 bytes a row (300 000 rows: 3.6 MB). A row
is parsed when it is asked for (``os.pread``: safe in threads and in DataLoader workers; the
object pickles to workers without its file handle).

The trainer uses the lazy path through :func:`open_manifest` (automatic above
:data:`LAZY_THRESHOLD_BYTES`) and the helpers :func:`rows_with_count`,
:func:`labelled_rows`, :func:`present_counts`, which work on plain row lists too.
Stage subsets are :class:`ManifestView` objects (an index array), and their clip dataset
is :class:`LazyClipWindows`, which resolves paths only when a clip is decoded.
"""

from __future__ import annotations

import csv
import os
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np

from ..errors import DataError
from .clips import ClipWindows
from .manifest import REQUIRED, ManifestRow, _parse_count, read_manifest

LAZY_THRESHOLD_BYTES = 4 << 20  # manifests larger than this (about 40 000 rows) are read lazily
PathLike = Union[str, "os.PathLike[str]"]
_BOM = b"\xef\xbb\xbf"


def _fields(rec: bytes, where: str, p: Path) -> list[str]:
    try:
        text = rec.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"manifest {p} is not UTF-8 text") from None
    text = text.rstrip("\r\n")
    if '"' not in text:
        return text.split(",")
    try:
        return next(csv.reader([text]), [])
    except csv.Error as exc:
        raise DataError(f"manifest {p} is not a valid CSV: {exc} ({where})") from None


class LazyManifest(Sequence):
    """A manifest indexed by byte offsets; ``m[i]`` is a :class:`ManifestRow` (absolute path)."""

    lazy = True

    def __init__(self, path: PathLike):
        p = Path(path)
        if not p.is_file():
            if p.exists():
                raise DataError(f"manifest {p} is not a file")
            raise DataError(f"manifest {p} does not exist")
        self.path = p
        self.base = p.resolve().parent
        self._fd: Optional[int] = None
        self._pid = -1
        starts, ends, counts, lines = array("q"), array("q"), array("i"), array("i")
        header = None
        try:
            fh = open(p, "rb")
        except OSError as exc:
            raise DataError(f"cannot read manifest {p}: {exc.strerror or exc}") from None
        with fh:
            pos = 0
            first = fh.read(3)
            if first != _BOM:
                fh.seek(0)
            else:
                pos = 3
            line_no = 0
            while True:
                start, start_line = pos, line_no + 1
                rec = fh.readline()
                if not rec:
                    break
                pos += len(rec)
                line_no += 1
                while rec.count(b'"') % 2 == 1:  # a quoted field spans lines
                    more = fh.readline()
                    if not more:
                        raise DataError(f"manifest {p} is not a valid CSV: unexpected end of data "
                                        f"(a quote opened on line {start_line} is never closed)")
                    rec += more
                    pos += len(more)
                    line_no += 1
                where = f"manifest {p} line {start_line}"
                row = _fields(rec, where, p)
                if not any(c.strip() for c in row):
                    continue
                if header is None:
                    header = [c.strip() for c in row]
                    missing = [c for c in REQUIRED if c not in header]
                    if missing:
                        raise DataError(f"manifest {p} has no {' or '.join(repr(m) for m in missing)} "
                                        f"column (header is: {','.join(header)})")
                    ip, ic = header.index("path"), header.index("count")
                    continue
                if len(row) > len(header):
                    raise DataError(f"{where}: {len(row)} fields but the header has {len(header)}")
                row = row + [""] * (len(header) - len(row))
                if not row[ip].strip():
                    raise DataError(f"{where}: empty path")
                c = _parse_count(row[ic], where)
                starts.append(start)
                ends.append(pos)
                counts.append(-1 if c is None else c)
                lines.append(start_line)
        if header is None:
            raise DataError(f"manifest {p} is empty (expected a header line with path,count)")
        self.header = header
        self._ip, self._ic = ip, ic
        self.starts = np.frombuffer(starts, dtype=np.int64).copy()
        self.ends = np.frombuffer(ends, dtype=np.int64).copy()
        self.counts = np.frombuffer(counts, dtype=np.int32).copy()
        self.lines = np.frombuffer(lines, dtype=np.int32).copy()

    # -- pickling (DataLoader workers): no file handle travels -----------------------------------
    def __getstate__(self):
        d = dict(self.__dict__)
        d["_fd"], d["_pid"] = None, -1
        return d

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None and getattr(self, "_pid", -1) == os.getpid():
            try:
                os.close(fd)
            except OSError:
                pass

    def _read(self, i: int) -> bytes:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDONLY)
            self._pid = os.getpid()
        a, b = int(self.starts[i]), int(self.ends[i])
        return os.pread(self._fd, b - a, a)

    # -- rows -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.starts)

    def path_of(self, i: int) -> str:
        return self._row(i).path

    def count_of(self, i: int) -> Optional[int]:
        c = int(self.counts[i])
        return None if c < 0 else c

    def _row(self, i: int) -> ManifestRow:
        where = f"manifest {self.path} line {int(self.lines[i])}"
        row = _fields(self._read(i), where, self.path)
        row = row + [""] * (len(self.header) - len(row))
        rel = row[self._ip].strip()
        full = rel if os.path.isabs(rel) else os.path.normpath(str(self.base / rel))
        extra = {h: row[j] for j, h in enumerate(self.header) if j not in (self._ip, self._ic)}
        return ManifestRow(full, self.count_of(i), extra)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ManifestView(self, np.arange(len(self))[i])
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._row(i)

    def __iter__(self) -> Iterator[ManifestRow]:
        for i in range(len(self)):
            yield self._row(i)

    # -- subsets / summaries ----------------------------------------------------------------------
    @property
    def n_unknown(self) -> int:
        return int((self.counts < 0).sum())

    def view(self, index=None) -> "ManifestView":
        return ManifestView(self, np.arange(len(self)) if index is None else np.asarray(index, dtype=np.int64))

    def with_count(self, k: int) -> "ManifestView":
        return self.view(np.flatnonzero(self.counts == int(k)))

    def labelled(self) -> "ManifestView":
        return self.view(np.flatnonzero(self.counts >= 0))

    def present_counts(self) -> list[int]:
        return sorted(int(c) for c in np.unique(self.counts) if c >= 1)

    def count_summary(self) -> dict[str, int]:
        """Clips per count, keys as text ("None" for unknown), like the trainer's data summary."""
        vals, n = np.unique(self.counts, return_counts=True)
        return {("None" if v < 0 else str(int(v))): int(c) for v, c in zip(vals, n)}

    def windows(self, cfg, **kw) -> "LazyClipWindows":
        return self.view().windows(cfg, **kw)


class ManifestView(Sequence):
    """Rows ``index`` of a :class:`LazyManifest` (a curriculum stage, the labelled clips...)."""

    lazy = True

    def __init__(self, manifest: LazyManifest, index: np.ndarray):
        self.manifest = manifest
        self.index = np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ManifestView(self.manifest, self.index[i])
        return self.manifest[int(self.index[i])]

    def __iter__(self):
        for j in self.index:
            yield self.manifest[int(j)]

    def path_of(self, i: int) -> str:
        return self.manifest.path_of(int(self.index[i]))

    def count_of(self, i: int) -> Optional[int]:
        return self.manifest.count_of(int(self.index[i]))

    @property
    def counts(self) -> np.ndarray:
        return self.manifest.counts[self.index]

    @property
    def n_unknown(self) -> int:
        return int((self.counts < 0).sum())

    def with_count(self, k: int) -> "ManifestView":
        return ManifestView(self.manifest, self.index[self.counts == int(k)])

    def labelled(self) -> "ManifestView":
        return ManifestView(self.manifest, self.index[self.counts >= 0])

    def present_counts(self) -> list[int]:
        return sorted(int(c) for c in np.unique(self.counts) if c >= 1)

    def windows(self, cfg, **kw) -> "LazyClipWindows":
        return LazyClipWindows(self, cfg, **kw)


class _Column:
    """A read-only sequence over one field of a view, resolved on access."""

    def __init__(self, view: ManifestView, field: str):
        self.view, self.field = view, field

    def __len__(self) -> int:
        return len(self.view)

    def __getitem__(self, i: int):
        return self.view.path_of(i) if self.field == "path" else self.view.count_of(i)


class LazyClipWindows(ClipWindows):
    """ClipWindows over a :class:`ManifestView`: a clip's path is read from the manifest when
    the clip is decoded, not up front."""

    def __init__(self, view: ManifestView, cfg, moments: int = 2, seed: int = 0, **kw):
        super().__init__([], cfg, moments=moments, seed=seed, **kw)
        self.view = view
        self.paths = _Column(view, "path")
        self.counts = _Column(view, "count")


# -- helpers that accept lists of rows as well as lazy manifests ----------------------------------


def open_manifest(path: PathLike, lazy: Optional[bool] = None):
    """A :class:`LazyManifest` when ``lazy`` (None: when the file is over the threshold),
    else ``read_manifest``'s list."""
    if lazy is None:
        try:
            lazy = os.path.getsize(path) > LAZY_THRESHOLD_BYTES
        except OSError:
            lazy = False
    return LazyManifest(path) if lazy else read_manifest(path)


def is_lazy(rows) -> bool:
    return bool(getattr(rows, "lazy", False))


def rows_with_count(rows, k: int):
    return rows.with_count(k) if is_lazy(rows) else [r for r in rows if r.count == k]


def labelled_rows(rows):
    return rows.labelled() if is_lazy(rows) else [r for r in rows if r.count is not None]


def present_counts(rows) -> list[int]:
    """The source counts >= 1 present (the curriculum stages the data allows)."""
    if is_lazy(rows):
        return rows.present_counts()
    return sorted({r.count for r in rows if r.count is not None and r.count >= 1})


def count_values(rows) -> list[int]:
    """Every known count present, 0 included (the counter's classes)."""
    if is_lazy(rows):
        return sorted(int(c) for c in np.unique(rows.counts) if c >= 0)
    return sorted({r.count for r in rows if r.count is not None})


__all__ = ["LAZY_THRESHOLD_BYTES", "LazyManifest", "ManifestView", "LazyClipWindows", "open_manifest",
           "is_lazy", "rows_with_count", "labelled_rows", "present_counts", "count_values"]
