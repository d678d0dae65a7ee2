"""Progress events and cancellation shared by every long job (Qt-free).

A long function accepts ``progress`` (a callable taking a :class:`ProgressEvent`) and
``cancel`` (anything with ``is_set()``, e.g. ``threading.Event``). The CLI renders events
with tqdm (:func:`tqdm_progress`), the GUI turns them into Qt signals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

from .errors import Cancelled


@dataclass
class ProgressEvent:
    task: str  # e.g. "analyze", "train:C1", "synth"
    done: float  # units done so far
    total: Optional[float] = None  # None: unknown
    message: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)  # e.g. {"loss": 0.3, "acc": 0.9}
    time: float = field(default_factory=time.time)

    @property
    def fraction(self) -> Optional[float]:
        if not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))


ProgressFn = Callable[[ProgressEvent], None]


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


def check_cancel(cancel: Optional[CancelToken], what: str = "job") -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"{what} cancelled")


def emit(progress: Optional[ProgressFn], task: str, done: float, total: Optional[float] = None,
         message: str = "", **metrics: Any) -> None:
    if progress is not None:
        progress(ProgressEvent(task, done, total, message, dict(metrics)))


class tqdm_progress:
    """A ``progress`` callable that draws one tqdm bar per task name (CLI use)."""

    def __init__(self, disable: bool = False, **kwargs: Any):
        self.bars: dict[str, Any] = {}
        self.disable = disable
        self.kwargs = kwargs

    def __call__(self, ev: ProgressEvent) -> None:
        from tqdm import tqdm

        bar = self.bars.get(ev.task)
        if bar is None:
            bar = tqdm(total=ev.total, desc=ev.task, disable=self.disable, dynamic_ncols=True,
                       **self.kwargs)
            self.bars[ev.task] = bar
        if ev.total is not None and bar.total != ev.total:
            bar.total = ev.total
        bar.n = ev.done
        if ev.metrics:
            bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v)
                             for k, v in ev.metrics.items()}, refresh=False)
        if ev.message:
            bar.set_description_str(f"{ev.task} {ev.message}", refresh=False)
        bar.refresh()
        if ev.total is not None and ev.done >= ev.total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
