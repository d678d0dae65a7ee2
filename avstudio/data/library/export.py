"""Writing a library out: a manifest CSV of the annotated clips, or every clip as JSON."""

from __future__ import annotations

import csv
import json
import os
from typing import Any

from ..stamps import now_iso
from .rows import (
    _CLIP_SELECT,
    ClipRow,
    PathLike,
    _abspath,
    _atomic_write_text,
    _clean_json,
    _row_to_annotation,
    _row_to_clip,
    _row_to_prediction,
)


class ExportMixin:
    """ClipLibrary's exports (a mixin of :class:`LibraryStore`)."""

    def _export_rows(self, annotated_only: bool) -> list[ClipRow]:
        return self.clips("annotated" if annotated_only else None, order_by="path")

    def export_csv(self, path: PathLike, annotated_only: bool = True,
                   relative: bool = False) -> int:
        """Write a manifest: ``path,count,unsure,who,when,predicted_count,predicted_rate``.
        Returns rows written.

        ``count`` is empty for "unknown" (and, with ``annotated_only=False``, for unannotated
        clips). Paths are absolute unless ``relative`` (then relative to the CSV's folder).
        The file is written to a temporary name and renamed, so it is never half-written.
        """
        out = _abspath(path)
        rows = self._export_rows(annotated_only)
        base = os.path.dirname(out)

        def write(fh: Any) -> None:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["path", "count", "unsure", "who", "when", "predicted_count", "predicted_rate"])
            for c in rows:
                p = os.path.relpath(c.path, base) if relative else c.path
                w.writerow([p, "" if c.count is None else c.count,
                            1 if c.unsure else 0 if c.annotated else "",
                            c.annotated_by or "", c.annotated_at or "",
                            "" if c.predicted_count is None else c.predicted_count,
                            "" if c.predicted_rate is None else f"{c.predicted_rate:.4g}"])

        _atomic_write_text(out, write)
        return len(rows)

    def export_json(self, path: PathLike) -> int:
        """Write everything (clips with annotation history and predictions, runs) as JSON."""
        out = _abspath(path)
        data = self.to_dict()
        _atomic_write_text(out, lambda fh: json.dump(data, fh, indent=1, allow_nan=False))
        return len(data["clips"])

    def to_dict(self) -> dict[str, Any]:
        with self._read() as conn:
            clips = [_row_to_clip(r) for r in conn.execute(f"{_CLIP_SELECT} ORDER BY c.path, c.id")]
            hist: dict[int, list[dict]] = {}
            for r in conn.execute("SELECT * FROM annotations ORDER BY id"):
                hist.setdefault(r["clip_id"], []).append(_row_to_annotation(r).to_dict())
            preds: dict[int, list[dict]] = {}
            for r in conn.execute("SELECT * FROM predictions ORDER BY id"):
                preds.setdefault(r["clip_id"], []).append(_row_to_prediction(r).to_dict())
            runs = [r.to_dict() for r in self._runs(conn)]
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        boxes: dict[int, list[dict]] = {}
        for c in clips:
            hist_boxes = self.box_history(c.id)
            if hist_boxes:
                boxes[c.id] = [f.to_dict() for f in hist_boxes]
        out = []
        for c in clips:
            d = c.to_dict()
            d["annotation_history"] = hist.get(c.id, [])
            d["predictions"] = preds.get(c.id, [])
            d["box_history"] = boxes.get(c.id, [])
            out.append(d)
        return {"format": "avstudio-library", "schema_version": version,
                "library": self.path, "exported_at": now_iso(), "clips": _clean_json(out),
                "runs": _clean_json(runs)}
