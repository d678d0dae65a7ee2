"""Fine-tuning runs recorded in the library, with their checkpoints and numbers."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from typing import Any, Optional

from ...errors import DataError
from ..stamps import now_iso
from .rows import (
    CheckpointRow,
    PathLike,
    RunRow,
    _clean_json,
    _dumps,
    _loads,
    stage_name,
)
from .schema import _TERMINAL


class RunMixin:
    """ClipLibrary's runs (a mixin of :class:`LibraryStore`)."""

    def add_run(self, name: str, config: Optional[dict[str, Any]] = None,
                stages: Optional[Sequence[Any]] = None, status: str = "created") -> int:
        """Record a training run. Returns its id."""
        if not str(name).strip():
            raise DataError("a run needs a name")
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO runs (name, config, stages, status, created_at) VALUES (?,?,?,?,?)",
                (str(name), _dumps(config or {}), _dumps(list(stages or [])), str(status), now_iso()))
            return int(cur.lastrowid)

    def update_run(self, run_id: int, status: Optional[str] = None,
                   metrics: Optional[dict[str, Any]] = None, model_path: Optional[PathLike] = None,
                   stages: Optional[Sequence[Any]] = None, merge_metrics: bool = True) -> None:
        """Update a run. ``status="running"`` stamps ``started_at`` (first time), a final status
        (finished/failed/cancelled) stamps ``ended_at``. ``metrics`` are merged into the stored
        ones unless ``merge_metrics=False``."""
        with self._write() as conn:
            r = conn.execute("SELECT * FROM runs WHERE id = ?", (int(run_id),)).fetchone()
            if r is None:
                raise DataError(f"no run with id {run_id} in library {self.path}")
            sets: dict[str, Any] = {}
            stamp = now_iso()
            if status is not None:
                sets["status"] = str(status)
                if status == "running" and r["started_at"] is None:
                    sets["started_at"] = stamp
                if status in _TERMINAL:
                    sets["ended_at"] = stamp
                    if r["started_at"] is None:
                        sets["started_at"] = stamp
            if metrics is not None:
                m = _loads(r["metrics"], {}) if merge_metrics else {}
                m.update(_clean_json(metrics))
                sets["metrics"] = _dumps(m)
            if model_path is not None:
                sets["model_path"] = os.fspath(model_path)
            if stages is not None:
                sets["stages"] = _dumps(list(stages))
            if sets:
                conn.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",
                             [*sets.values(), int(run_id)])

    def add_checkpoint(self, run_id: int, stage: Any, epoch: Optional[int], path: PathLike,
                       metrics: Optional[dict[str, Any]] = None) -> int:
        """Record a checkpoint a run saved (``stage`` e.g. "C2" or 2). Returns its id."""
        st = stage_name(stage) if isinstance(stage, int) and not isinstance(stage, bool) else str(stage)
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE id = ?", (int(run_id),)).fetchone() is None:
                raise DataError(f"no run with id {run_id} in library {self.path}")
            cur = conn.execute(
                "INSERT INTO run_checkpoints (run_id, stage, epoch, path, metrics, created_at)"
                " VALUES (?,?,?,?,?,?)",
                (int(run_id), st, None if epoch is None else int(epoch), os.fspath(path),
                 _dumps(metrics or {}), now_iso()))
            return int(cur.lastrowid)

    def runs(self) -> list[RunRow]:
        """All runs, oldest first, each with its checkpoints."""
        with self._read() as conn:
            return self._runs(conn)

    def run(self, run_id: int) -> RunRow:
        for r in self.runs():
            if r.id == int(run_id):
                return r
        raise DataError(f"no run with id {run_id} in library {self.path}")

    @staticmethod
    def _runs(conn: sqlite3.Connection) -> list[RunRow]:
        cps: dict[int, list[CheckpointRow]] = {}
        for r in conn.execute("SELECT * FROM run_checkpoints ORDER BY id"):
            cps.setdefault(r["run_id"], []).append(CheckpointRow(
                r["id"], r["run_id"], r["stage"], r["epoch"], r["path"], _loads(r["metrics"], {}),
                r["created_at"]))
        return [RunRow(r["id"], r["name"], _loads(r["config"], {}), _loads(r["stages"], []),
                       r["status"], r["created_at"], r["started_at"], r["ended_at"],
                       r["model_path"], _loads(r["metrics"], {}), cps.get(r["id"], []))
                for r in conn.execute("SELECT * FROM runs ORDER BY id")]
