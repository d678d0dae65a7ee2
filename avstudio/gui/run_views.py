"""The fine-tuning panel's two views of runs: the loss and accuracy curves of the run watched
(:class:`RunCurves`) and the library's list of runs (:class:`RunList`).

Both only draw: what a curve holds comes from :class:`avstudio.studio.runs.RunMonitor`, what a
run's row says from the library's run record (``run_stage_rows``, ``loss_summary``). The panel
(:mod:`avstudio.gui.finetune_panel`) decides which run they show.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QHBoxLayout, QHeaderView, QTreeWidget, QTreeWidgetItem, QWidget

from ..studio.overlay import cluster_colour
from ..studio.runs import RunMonitor, loss_summary, run_stage_rows
from . import style
from .timeline import pg

COUNTER_COLOUR = (170, 178, 191)
STATUS_COLOURS = {"finished": "#6cc497", "failed": "#e0787a", "cancelled": "#e6c229",
                  "running": style.ACCENT, "paused": style.ACCENT}


def _plot(title: str, legend: bool):
    w = pg.PlotWidget(background=style.BG_PLOT)
    w.setMenuEnabled(False)
    w.showGrid(x=True, y=True, alpha=0.15)
    w.setTitle(title, color=style.FG_DIM, size="9pt")
    w.setLabel("bottom", "epoch", color=style.FG_DIM)
    for ax in ("left", "bottom"):
        w.getAxis(ax).setTextPen(style.FG_DIM)
        w.getAxis(ax).setPen(pg.mkPen("#3a414d"))
        w.getAxis(ax).enableAutoSIPrefix(False)
    w.setMinimumSize(220, 150)
    if legend:
        lg = w.addLegend(offset=(-8, 8), labelTextColor=style.FG, labelTextSize="8pt")
        lg.setBrush(pg.mkBrush(20, 22, 27, 200))
    return w


class RunCurves(QWidget):
    """Loss and accuracy per stage of one run, side by side: faint, the running mean of the
    epoch in progress; solid with dots, the finished epochs. Stage colours follow the
    clusters' (the counter's stage is grey)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.loss_plot = _plot("Loss (contrastive; counter: Poisson)", legend=True)
        self.acc_plot = _plot("Accuracy (matching; counter: exact count)", legend=False)
        self.acc_plot.setYRange(0.0, 1.0, padding=0.04)
        lay.addWidget(self.loss_plot)
        lay.addWidget(self.acc_plot)
        self.monitor = RunMonitor(None)
        self.items: dict[str, tuple] = {}  # stage -> its plot items

    def reset(self, monitor: RunMonitor) -> None:
        """Clear the plots and draw ``monitor``'s run from now on."""
        self.loss_plot.clear()
        self.acc_plot.clear()
        for p in (self.loss_plot, self.acc_plot):
            if p.plotItem.legend is not None:
                p.plotItem.legend.clear()
        self.monitor = monitor
        self.items = {}

    def _colour(self, stage: str) -> tuple[int, int, int]:
        j = self.monitor.stage_index(stage)
        return COUNTER_COLOUR if j < 0 else cluster_colour(j)

    def _items(self, stage: str) -> tuple:
        if stage not in self.items:
            c = self._colour(stage)
            items = []
            for p in (self.loss_plot, self.acc_plot):
                live = p.plot([], [], pen=pg.mkPen((*c, 120), width=1))
                pts = p.plot([], [], pen=pg.mkPen(c, width=2), symbol="o", symbolSize=7,
                             symbolBrush=pg.mkBrush(*c), symbolPen=pg.mkPen("#0d0f12"),
                             name=stage if p is self.loss_plot else None)
                items.append((live, pts))
            self.items[stage] = tuple(items)
        return self.items[stage]

    def redraw(self, stage: str) -> None:
        """Draw ``stage``'s points as the monitor holds them now."""
        s = self.monitor.series[stage]
        (ll, lp), (al, ap) = self._items(stage)
        ll.setData(s["x"], s["loss"])
        al.setData(s["x"], s["acc"])
        lp.setData(s["ex"], s["eloss"])
        ap.setData(s["ex"], s["eacc"])

    def load_history(self, run_dir: Path) -> list[dict]:
        """Read the run's finished epochs (``history.jsonl``) into the monitor and draw every
        stage; returns the epochs read."""
        hist = self.monitor.load_history(run_dir)
        for stage in self.monitor.series:
            self.redraw(stage)
        return hist


class RunList(QTreeWidget):
    """The library's runs, newest first: name, status and epochs done, and one child row per
    stage with the loss of its first and last epoch. ``live`` (run id, status) overrides the
    status the library records for the run in progress (running or paused)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setRootIsDecorated(True)
        self.setIndentation(12)
        self.setAlternatingRowColors(True)
        self.setHeaderLabels(["Run", "Status", "Loss"])
        self.headerItem().setToolTip(2, "Epochs done; per stage, the loss of its first and last epoch")
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        h = self.header()
        h.setStretchLastSection(False)
        h.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        h.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        h.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)

    def fill(self, runs: list, keep: Optional[int], live: Optional[tuple[int, str]] = None) -> None:
        """Show ``runs`` (oldest first, as the library lists them), the newest and ``keep``
        expanded, ``keep`` selected; no selection signal is emitted."""
        self.blockSignals(True)
        self.clear()
        for i, run in enumerate(reversed(runs)):
            it = QTreeWidgetItem()
            it.setData(0, Qt.ItemDataRole.UserRole, run.id)
            self.fill_item(it, run, live)
            self.addTopLevelItem(it)
            it.setExpanded(i == 0 or run.id == keep)
            if run.id == keep:
                it.setSelected(True)
                self.setCurrentItem(it)
        self.blockSignals(False)

    def fill_item(self, it: QTreeWidgetItem, run, live: Optional[tuple[int, str]] = None) -> None:
        """A run's row (name, status, epochs done) and one child row per stage (its loss)."""
        m = run.metrics or {}
        status = live[1] if live is not None and live[0] == run.id else run.status
        n = m.get("epochs_done")
        for c, t in enumerate([run.name, status, f"{n} epoch{'s' if n != 1 else ''}" if n else ""]):
            it.setText(c, t)
        tip = [f"{run.name}: {status}, stages {' '.join(str(s) for s in run.stages)}",
               str(run.config.get("run_dir", ""))]
        if loss_summary(m):
            tip.append(f"loss, first → last epoch: {loss_summary(m)}")
        if m.get("error"):
            tip.append(str(m["error"]))
        if run.model_path:
            tip.append(f"model: {run.model_path}")
        for c in range(3):
            it.setToolTip(c, "\n".join(tip))
        colour = STATUS_COLOURS.get(status)
        if colour:
            it.setForeground(1, QBrush(QColor(colour)))
        it.takeChildren()
        for stage, ne, text in run_stage_rows(m):
            ch = QTreeWidgetItem([stage, "" if ne is None else f"{ne} epoch{'s' if ne != 1 else ''}", text])
            ch.setData(0, Qt.ItemDataRole.UserRole, run.id)
            for c in range(3):
                ch.setForeground(c, QBrush(QColor(style.FG_DIM)))
                ch.setToolTip(c, "\n".join(tip))
            it.addChild(ch)

    def update_run(self, run, live: Optional[tuple[int, str]] = None) -> bool:
        """Refresh ``run``'s row in place; False when it is not listed."""
        for i in range(self.topLevelItemCount()):
            it = self.topLevelItem(i)
            if it.data(0, Qt.ItemDataRole.UserRole) == run.id:
                self.fill_item(it, run, live)
                return True
        return False

    def selected_run_id(self) -> Optional[int]:
        items = self.selectedItems()
        return None if not items else int(items[0].data(0, Qt.ItemDataRole.UserRole))

    def select_run(self, run_id: int) -> None:
        for i in range(self.topLevelItemCount()):
            it = self.topLevelItem(i)
            if it.data(0, Qt.ItemDataRole.UserRole) == run_id:
                self.setCurrentItem(it)
                it.setSelected(True)
                return
