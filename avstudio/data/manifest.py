"""Manifests: CSV lists of clips with their number of sound sources.

Format (a **contract**, docs/method.md): UTF-8 CSV with a header line holding at least the
columns ``path`` and ``count``; other columns are kept as extras. ``path`` is relative to the
manifest's folder (or absolute); ``count`` is a non-negative integer or empty (unknown).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional, Union

from ..dbguard import ensure_not_database
from ..errors import DataError

PathLike = Union[str, "os.PathLike[str]"]
REQUIRED = ("path", "count")


@dataclass
class ManifestRow:
    path: str  # absolute path of the clip
    count: Optional[int]  # number of sound sources, None = unknown
    extra: dict[str, str] = field(default_factory=dict)  # the other columns, as text


def _parse_count(text: str, where: str) -> Optional[int]:
    t = (text or "").strip()
    if t == "":
        return None
    try:
        v = int(t)
    except ValueError:
        try:
            f = float(t)
        except ValueError:
            f = None
        if f is None or not f.is_integer():
            raise DataError(f"{where}: count '{t}' is not a whole number (leave it empty if unknown)") from None
        v = int(f)
    if v < 0:
        raise DataError(f"{where}: count '{t}' is negative")
    return v


def read_manifest(path: PathLike) -> list[ManifestRow]:
    """Read a manifest; paths come back absolute (relative ones resolved against its folder).

    Raises :class:`DataError` naming the file (and the line) when the file is missing, has no
    header, lacks the ``path`` or ``count`` column, or holds a bad count or an empty path.
    """
    p = Path(path)
    if not p.is_file():
        if p.exists():
            raise DataError(f"manifest {p} is not a file")
        raise DataError(f"manifest {p} does not exist")
    ensure_not_database(p, "read as a manifest", DataError)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"manifest {p} is not UTF-8 text") from None
    except OSError as exc:
        raise DataError(f"cannot read manifest {p}: {exc.strerror or exc}") from None
    base = p.resolve().parent
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = None
        for row in reader:
            if any(c.strip() for c in row):
                header = [c.strip() for c in row]
                break
        if header is None:
            raise DataError(f"manifest {p} is empty (expected a header line with path,count)")
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise DataError(f"manifest {p} has no {' or '.join(repr(m) for m in missing)} column "
                            f"(header is: {','.join(header)})")
        ip, ic = header.index("path"), header.index("count")
        rows: list[ManifestRow] = []
        for row in reader:
            line = reader.line_num
            if not any(c.strip() for c in row):
                continue
            where = f"manifest {p} line {line}"
            if len(row) > len(header):
                raise DataError(f"{where}: {len(row)} fields but the header has {len(header)}")
            row = row + [""] * (len(header) - len(row))
            rel = row[ip].strip()
            if not rel:
                raise DataError(f"{where}: empty path")
            count = _parse_count(row[ic], where)
            full = rel if os.path.isabs(rel) else os.path.normpath(str(base / rel))
            extra = {h: row[i] for i, h in enumerate(header) if i not in (ip, ic)}
            rows.append(ManifestRow(full, count, extra))
    except csv.Error as exc:
        raise DataError(f"manifest {p} is not a valid CSV: {exc}") from None
    return rows


def _row_fields(row: Union[ManifestRow, Mapping]) -> tuple[str, Optional[int], dict]:
    if isinstance(row, ManifestRow):
        return row.path, row.count, dict(row.extra)
    d = dict(row)
    path = d.pop("path")
    count = d.pop("count", None)
    extra = d.pop("extra", None) or {}
    extra.update(d)
    return str(path), (None if count in (None, "") else int(count)), extra


def write_manifest(path: PathLike, rows: Iterable[Union[ManifestRow, Mapping]]) -> Path:
    """Write a manifest (header ``path,count,<extra columns>``), atomically.

    Rows are :class:`ManifestRow` or mappings with ``path``, ``count`` and any extra keys.
    Clip paths inside the manifest's folder are written relative to it, others absolute.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    base = p.resolve().parent
    items = [_row_fields(r) for r in rows]
    extra_cols: list[str] = []
    for _, _, ex in items:
        for k in ex:
            if k not in extra_cols and k not in REQUIRED:
                extra_cols.append(k)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(REQUIRED) + extra_cols)
    for clip, count, ex in items:
        cp = Path(clip)
        if cp.is_absolute():
            try:
                rel = cp.resolve().relative_to(base).as_posix()
            except ValueError:
                rel = str(cp)
        else:
            rel = cp.as_posix()
        w.writerow([rel, "" if count is None else int(count)] + ["" if ex.get(k) is None else ex.get(k) for k in extra_cols])
    tmp = p.with_name(p.name + ".part")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, p)
    return p


def rows_by_count(rows: Iterable[ManifestRow]) -> dict[Optional[int], list[ManifestRow]]:
    """Group rows by source count (key None: unknown), e.g. to build curriculum stages."""
    out: dict[Optional[int], list[ManifestRow]] = {}
    for r in rows:
        out.setdefault(r.count, []).append(r)
    return out


def find_manifest(data: str | Path) -> Path:
    """``DATA/manifest.csv`` of a benchmark folder (or DATA itself, a manifest file)."""
    p = Path(data)
    if p.is_dir():
        p = p / "manifest.csv"
    if not p.exists():
        raise DataError(f"{data}: no manifest.csv (make a benchmark with `avstudio synth`)")
    return p
