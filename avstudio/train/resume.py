"""What the localizer's and the separator's trainers share to resume a run folder.

A run folder holds ``run.json`` (settings and status), ``checkpoint.safetensors`` (weights,
optimizer state and the resume point, written atomically after every epoch) and
``history.jsonl`` (one line per finished epoch). A rerun of the same command resumes from the
checkpoint; a finished run is left as it is; a folder of a run with other settings is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from ..errors import DataError
from ..nets.checkpoint import load_state, load_tensors


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    hp = Path(run_dir) / "history.jsonl"
    if not hp.exists():
        return []
    return [json.loads(x) for x in hp.read_text().splitlines() if x.strip()]


def finished_run(run_dir: Path, compatible: Callable[[dict], bool], final: Path) -> Optional[list[dict]]:
    """The history of the run in ``run_dir`` if it finished (its final model is there), None if
    there is nothing to resume from or it is unfinished. A run with other settings is refused
    (DataError): its folder is not overwritten."""
    run_json = Path(run_dir) / "run.json"
    if not run_json.exists():
        return None
    try:
        old = json.loads(run_json.read_text())
    except (OSError, json.JSONDecodeError):
        old = {}
    if old and not compatible(old):
        raise DataError(f"{run_dir} holds a run with other settings; use a new --out folder")
    if old.get("status") == "done" and Path(final).exists():
        return read_history(run_dir)
    return None


def load_checkpoint(path: Path, modules: dict[str, Any]) -> tuple[dict, dict, dict]:
    """Load ``{prefix: module}`` from a run checkpoint: ``(tensors, card, resume point)``; the
    tensors also hold the optimizer state the resume point describes."""
    tensors, card = load_tensors(path, embedded_card=True)
    for prefix, module in modules.items():
        load_state(module, tensors, prefix, str(path))
    return tensors, card, card["checkpoint"]


def trim_history(run_dir: Path, keep: Callable[[dict], bool]) -> list[dict]:
    """Drop the history lines of epochs the checkpoint does not hold (an epoch interrupted after
    its log line, before its checkpoint) and rewrite the file; returns what is kept."""
    kept = [e for e in read_history(run_dir) if keep(e)]
    hp = Path(run_dir) / "history.jsonl"
    if hp.exists():
        hp.write_text("".join(json.dumps(e) + "\n" for e in kept))
    return kept


__all__ = ["finished_run", "load_checkpoint", "read_history", "trim_history"]
