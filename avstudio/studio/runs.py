"""Watching a fine-tuning run, without Qt: :class:`RunMonitor` turns the training process's
progress events and its history file into the overall progress, an ETA and the loss/accuracy
curves of each stage; and the texts the fine-tune panel shows about runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..progress import ProgressEvent
from ..train import job as J


def fmt_duration(s: float) -> str:
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def loss_summary(metrics: dict, arrow: str = " → ") -> str:
    """"C1 1.50 → 1.42 · C2 1.65 → 1.40": each stage's first and last epoch loss."""
    parts = []
    for stage, losses in (metrics.get("loss_by_stage") or {}).items():
        vals = [v for v in losses if v is not None]
        if vals:
            parts.append(f"{stage} {vals[0]:.3f}{arrow}{vals[-1]:.3f}" if len(vals) > 1 else f"{stage} {vals[0]:.3f}")
    return " · ".join(parts)


def stage_layout(spec: J.FinetuneSpec) -> dict[str, tuple[float, float]]:
    """Where each stage's curve lies on the epoch axis: stage -> (first epoch, epochs)."""
    out, off = {}, 0.0
    for i, s in enumerate(spec.stages):
        e = spec.epochs[min(i, len(spec.epochs) - 1)] if isinstance(spec.epochs, (list, tuple)) else spec.epochs
        out[f"C{s}"] = (off, float(e))
        off += float(e)
    out["counter"] = (off, float(max(1, spec.counter_epochs)))
    out["mixed"] = (0.0, float(off or 1))
    return out


def run_stage_rows(metrics: dict) -> list[tuple[str, Optional[int], str]]:
    """(stage, epochs, its loss text) of each stage of a run, and the counter's."""
    rows = []
    for stage, losses in (metrics.get("loss_by_stage") or {}).items():
        vals = [v for v in losses if v is not None]
        if vals:
            rows.append((stage, len(losses), f"loss {vals[0]:.3f} → {vals[-1]:.3f}" if len(vals) > 1
                         else f"loss {vals[0]:.3f}"))
    if metrics.get("counter_loss") is not None:
        rows.append(("counter", None, f"loss {metrics['counter_loss']:.3f}, acc {metrics.get('counter_acc') or 0:.2f}"))
    return rows


def end_text(final: str, model_path: Optional[str], metrics: dict, error: Optional[str]) -> str:
    """The panel's status line when a run ends."""
    if final == "finished":
        return (f"Finished: {Path(str(model_path)).parent.name}/model.safetensors. Loss per stage, first → last "
                f"epoch: {loss_summary(metrics)}. “Use this model” loads it for analysis.")
    if final == "cancelled":
        return "Cancelled: the last finished epoch's checkpoint is kept (Resume continues from it)"
    return f"Failed: {error or 'the training process ended early'} (Resume continues from the last checkpoint)"


def checkpoint_text(epoch: dict, checkpoint: Path) -> str:
    """The line about the last checkpoint written (``epoch``: its history entry)."""
    when = time.strftime("%H:%M:%S", time.localtime(checkpoint.stat().st_mtime)) if checkpoint.exists() else "?"
    loss, acc = epoch.get("loss"), epoch.get("acc")
    return (f"Checkpoint after {epoch.get('stage')} epoch {int(epoch.get('epoch', 0)) + 1} ({when}): "
            f"loss {loss if loss is None else f'{loss:.4f}'}, acc {acc if acc is None else f'{acc:.3f}'}"
            f" — {checkpoint.parent.name}/{checkpoint.name}")


@dataclass
class EventView:
    """What one progress event changes in the panel (None: nothing)."""

    progress_text: Optional[str] = None
    fraction: Optional[float] = None  # the whole run's progress, 0..1
    status: Optional[str] = None
    stage: Optional[str] = None  # the stage whose curve got a point


class RunMonitor:
    """The run being watched: its step plan (overall progress), ETA (paused time left out) and
    curves. ``series[stage]``: ``x``, ``loss``, ``acc`` (running means within epochs) and ``ex``,
    ``eloss``, ``eacc`` (finished epochs, from the history)."""

    def __init__(self, spec: Optional[J.FinetuneSpec], counts: Optional[dict[int, int]] = None):
        self.spec = spec
        self.plan: dict[str, int] = J.plan_steps(counts, spec) if spec is not None and counts is not None else {}
        self.layout = stage_layout(spec) if spec is not None else {}
        self.series: dict[str, dict[str, list]] = {}
        self.last_event: Optional[ProgressEvent] = None
        self.eta_text = ""
        self._t_first: Optional[float] = None
        self._g_first = 0.0
        self._paused_at: Optional[float] = None
        self._paused_total = 0.0

    # -- pause accounting (the ETA leaves paused time out)
    def paused(self, now: Optional[float] = None) -> None:
        self._paused_at = time.monotonic() if now is None else now

    def resumed(self, now: Optional[float] = None) -> None:
        if self._paused_at is not None:
            self._paused_total += (time.monotonic() if now is None else now) - self._paused_at
            self._paused_at = None

    def stage_index(self, stage: str) -> int:
        """The colour index of a stage's curves (the counter has its own colour: -1)."""
        if stage == "counter":
            return -1
        order = [f"C{s}" for s in (self.spec.stages if self.spec else [])]
        return order.index(stage) if stage in order else len(order)

    def series_of(self, stage: str) -> dict[str, list]:
        s = self.series.get(stage)
        if s is None:
            s = {"x": [], "loss": [], "acc": [], "ex": [], "eloss": [], "eacc": []}
            self.series[stage] = s
        return s

    def on_event(self, ev: ProgressEvent, now: Optional[float] = None) -> EventView:
        self.last_event = ev
        task = ev.task
        if task.startswith("decode"):
            what = task.split(":", 1)[1] if ":" in task else "clips"
            return EventView(progress_text=f"decoding the clips of {what}: {int(ev.done)}/{int(ev.total or 0)}")
        if task == "grading":
            return EventView(progress_text=f"grading clips {int(ev.done)}/{int(ev.total or 0)}")
        if not task.startswith("train:"):
            return EventView(status=ev.message or None)
        stage = task.split(":", 1)[1]
        if ev.total:
            self.plan[task] = int(ev.total)
        order = [f"train:C{s}" for s in self.spec.stages] + (["train:counter"] if "train:counter" in self.plan else [])
        if task not in order:
            order.append(task)
            self.plan.setdefault(task, int(ev.total or 1))
        g = sum(self.plan.get(t, 0) for t in order[:order.index(task)]) + float(ev.done)
        total = max(1.0, float(sum(self.plan.get(t, 0) for t in order)))
        frac = min(1.0, g / total)
        now = time.monotonic() if now is None else now
        if self._t_first is None:
            self._t_first, self._g_first = now, g
        active = now - self._t_first - self._paused_total
        eta = ""
        if g > self._g_first and active > 1.0:
            rate = (g - self._g_first) / active
            eta = f" · ETA {fmt_duration((total - g) / rate)}"
        self.eta_text = eta
        view = EventView(progress_text=f"{stage} · {ev.message or ''} · {100 * frac:.0f}%{eta}", fraction=frac)
        off, E = self.layout.get(stage, (0.0, 1.0))
        loss, acc = ev.metrics.get("loss"), ev.metrics.get("acc")
        if loss is not None and acc is not None:
            s = self.series_of(stage)
            s["x"].append(off + E * (float(ev.done) / float(ev.total or 1)))
            s["loss"].append(float(loss))
            s["acc"].append(float(acc))
            view.stage = stage
        return view

    def load_history(self, run_dir: Path) -> list[dict]:
        """The finished epochs of ``run_dir``'s history as curve points; returns the history."""
        hist = J.read_history(run_dir)
        for s in self.series.values():
            s["ex"], s["eloss"], s["eacc"] = [], [], []
        for e in hist:
            stage = str(e.get("stage"))
            off, _E = self.layout.get(stage, (0.0, 1.0))
            s = self.series_of(stage)
            if e.get("loss") is None or e.get("acc") is None:
                continue
            s["ex"].append(off + int(e.get("epoch", 0)) + 1)
            s["eloss"].append(float(e["loss"]))
            s["eacc"].append(float(e["acc"]))
        return hist
