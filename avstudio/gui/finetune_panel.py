"""Fine-tuning on the clip library, from the app: set up a curriculum run, watch it, keep it.

The run is an ``avstudio train`` process (:mod:`avstudio.train.job`), not a thread: the UI
never waits for it, a crash in it cannot take the app down, and it can go on after the app
quits. The panel reads the process's JSON progress lines from ``RUN/progress.jsonl`` (a
timer, 5 times a second), draws loss and accuracy per stage, shows the progress with an
ETA and the checkpoint written at each epoch, and records the run, its checkpoints and its
numbers in the library (``add_run`` / ``add_checkpoint`` / ``update_run``).

* Pause freezes the process (SIGSTOP, SIGCONT to continue); where signals cannot do that,
  pause stops the process and Continue resumes it from the last checkpoint.
* Cancel stops it (SIGTERM): the last finished epoch's checkpoint stays, and *Resume* in
  the runs list continues from it, as it does for a run that crashed or was killed.
* Quitting while a run is going asks whether to keep it running in the background, stop it,
  or not quit. A run left in the background is found again when its library is opened.
* When a run has finished, *Use this model* loads its model for analysis.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..assets import default_model_dir
from ..errors import AVStudioError
from ..studio.runs import EventView, RunMonitor, checkpoint_text, end_text
from ..train import job as J
from . import style
from .run_views import RunCurves, RunList

POLL_MS = 200
LR_CHOICES = ["1e-3", "5e-4", "3e-4", "1e-4", "3e-5", "1e-5"]


def default_base_model() -> str:
    """The shipped model's folder (``$AVSTUDIO_MODEL`` or ``models/default``), without torch."""
    env = os.environ.get("AVSTUDIO_MODEL")
    if env:
        return env
    return str(default_model_dir())


def cuda_devices(progress=None, cancel=None) -> list[tuple[str, str]]:
    """(device, name) of every CUDA device PyTorch sees (imports torch)."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [(f"cuda:{i}", torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count())]


def ask_close_while_training(parent, run_name: str) -> str:
    """Quitting while a run is going: "keep" (running in the background), "stop" or "cancel"."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("A fine-tuning run is going")
    box.setText(f"The run {run_name} is still training.")
    box.setInformativeText("Keep it running in the background (the app finds it again when you open "
                           "the library), or stop it (its last finished epoch is kept and it can be "
                           "resumed)?")
    keep = box.addButton("Keep training in the background", QMessageBox.ButtonRole.AcceptRole)
    stop = box.addButton("Stop training", QMessageBox.ButtonRole.DestructiveRole)
    cancel = box.addButton("Don't quit", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(cancel)
    box.exec()
    clicked = box.clickedButton()
    return "keep" if clicked is keep else "stop" if clicked is stop else "cancel"


def _no_focus(w: QWidget) -> QWidget:
    w.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    return w


class FinetunePanel(QWidget):
    """Set up, run, watch and resume fine-tuning runs on the library's annotated clips."""

    runStarted = Signal(int)  # run id
    runEnded = Signal(int, str)  # run id, status (finished, failed, cancelled)
    modelChosen = Signal(str)  # a run's model, loaded for analysis

    def __init__(self, win, library_panel, parent=None):
        super().__init__(parent)
        self.win = win
        self.library_panel = library_panel
        self.proc: Optional[J.TrainProcess] = None
        self.run_id: Optional[int] = None
        self.run_lib = None  # the active run's own connection to its library
        self.spec: Optional[J.FinetuneSpec] = None
        self.counts: dict[int, int] = {}
        self.monitor = RunMonitor(None)  # the run watched (progress, ETA, curves)
        self.tail: Optional[J.ProgressTail] = None
        self.cancelling = False
        self.pause_restart = False  # paused by stopping the process (no SIGSTOP here)
        self.last_status = ""
        self._hist_size = -1
        self._run_dir_auto = True
        self._devices_probed = False
        self._stage_boxes: dict[int, QCheckBox] = {}
        self._all_counts: dict[int, int] = {}
        self._clips_dirty = True

        outer = QHBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        split = QSplitter(Qt.Orientation.Horizontal)
        outer.addWidget(split)

        # -- set-up ----------------------------------------------------------------------------
        box = QGroupBox("New run")
        g = QGridLayout(box)
        g.setContentsMargins(8, 10, 8, 8)
        g.setHorizontalSpacing(6)
        g.setVerticalSpacing(5)
        r = 0
        g.addWidget(QLabel("Base model"), r, 0)
        self.base_edit = QLineEdit(default_base_model())
        self.base_edit.setToolTip("The MODEL to fine-tune (a .safetensors file or a folder)")
        b = QToolButton()
        b.setText("…")
        b.setToolTip("Choose the model to start from")
        b.clicked.connect(self._choose_base)
        row = QHBoxLayout()
        row.addWidget(self.base_edit, 1)
        row.addWidget(b)
        g.addLayout(row, r, 1, 1, 5)
        r += 1
        g.addWidget(QLabel("Clips"), r, 0)
        self.clips_combo = _no_focus(QComboBox())
        self.clips_combo.setToolTip("Which annotated clips of the library to train on")
        self.clips_combo.currentIndexChanged.connect(lambda _i: self._fill_stages())
        g.addWidget(self.clips_combo, r, 1, 1, 3)
        self.unsure_check = _no_focus(QCheckBox("include unsure"))
        self.unsure_check.setChecked(True)
        self.unsure_check.setToolTip("Also train on counts marked unsure")
        self.unsure_check.toggled.connect(lambda _on: self.refresh_clips())
        g.addWidget(self.unsure_check, r, 4, 1, 2)
        r += 1
        g.addWidget(QLabel("Stages"), r, 0)
        self.stages_row = QHBoxLayout()
        self.stages_row.setSpacing(10)
        self.stages_note = QLabel("")
        self.stages_note.setObjectName("dimLabel")
        w = QWidget()
        w.setLayout(self.stages_row)
        self.stages_row.setContentsMargins(0, 0, 0, 0)
        g.addWidget(w, r, 1, 1, 5)
        r += 1
        g.addWidget(QLabel("Epochs/stage"), r, 0)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 1000)
        self.epochs_spin.setValue(4)
        self.epochs_spin.setToolTip("Epochs of each curriculum stage")
        g.addWidget(self.epochs_spin, r, 1)
        g.addWidget(QLabel("Counter"), r, 2)
        self.counter_spin = QSpinBox()
        self.counter_spin.setRange(0, 1000)
        self.counter_spin.setValue(2)
        self.counter_spin.setToolTip("Epochs fitting the source counter after the stages (0: keep it)")
        g.addWidget(self.counter_spin, r, 3)
        g.addWidget(QLabel("Learning rate"), r, 4)
        self.lr_combo = QComboBox()
        self.lr_combo.setEditable(True)
        self.lr_combo.addItems(LR_CHOICES)
        self.lr_combo.setCurrentText("3e-4")
        self.lr_combo.setToolTip("Adam's learning rate (cosine schedule down to a tenth within each stage)")
        g.addWidget(self.lr_combo, r, 5)
        r += 1
        g.addWidget(QLabel("Batch"), r, 0)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 1024)
        self.batch_spin.setValue(8)
        self.batch_spin.setToolTip("Clips per step")
        g.addWidget(self.batch_spin, r, 1)
        g.addWidget(QLabel("Samples/clip"), r, 2)
        self.repeats_spin = QSpinBox()
        self.repeats_spin.setRange(1, 256)
        self.repeats_spin.setValue(4)
        self.repeats_spin.setToolTip("Samples drawn from each clip per epoch")
        g.addWidget(self.repeats_spin, r, 3)
        g.addWidget(QLabel("Device"), r, 4)
        self.device_combo = _no_focus(QComboBox())
        self.device_combo.addItem("CPU", "cpu")
        self.device_combo.setToolTip("Where to train (CUDA appears when PyTorch sees a GPU)")
        g.addWidget(self.device_combo, r, 5)
        r += 1
        g.addWidget(QLabel("Run folder"), r, 0)
        self.run_edit = QLineEdit("")
        self.run_edit.setToolTip("Checkpoints, history and the final model go here")
        self.run_edit.textEdited.connect(lambda _t: setattr(self, "_run_dir_auto", False))
        b = QToolButton()
        b.setText("…")
        b.clicked.connect(self._choose_run_dir)
        row = QHBoxLayout()
        row.addWidget(self.run_edit, 1)
        row.addWidget(b)
        g.addLayout(row, r, 1, 1, 5)
        r += 1
        row = QHBoxLayout()
        self.start_btn = _no_focus(QPushButton("Start"))
        self.start_btn.setIcon(style.icon("play_small"))
        self.start_btn.setToolTip("Start fine-tuning in a separate process")
        self.start_btn.clicked.connect(self.start)
        self.pause_btn = _no_focus(QPushButton("Pause"))
        self.pause_btn.setIcon(style.icon("pause"))
        self.pause_btn.clicked.connect(self.toggle_pause)
        self.cancel_btn = _no_focus(QPushButton("Cancel"))
        self.cancel_btn.setIcon(style.icon("cancel"))
        self.cancel_btn.setToolTip("Stop the run (its last finished epoch is kept; Resume continues from it)")
        self.cancel_btn.clicked.connect(self.cancel)
        row.addWidget(self.start_btn)
        row.addWidget(self.pause_btn)
        row.addWidget(self.cancel_btn)
        row.addStretch(1)
        g.addLayout(row, r, 0, 1, 6)
        r += 1
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        g.addWidget(self.progress, r, 0, 1, 6)
        r += 1
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setObjectName("dimLabel")
        g.addWidget(self.status, r, 0, 1, 6)
        r += 1
        self.ckpt_label = QLabel("")
        self.ckpt_label.setWordWrap(True)
        self.ckpt_label.setObjectName("dimLabel")
        self.ckpt_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        g.addWidget(self.ckpt_label, r, 0, 1, 6)
        g.setRowStretch(r + 1, 1)
        g.setColumnStretch(1, 1)
        g.setColumnStretch(3, 1)
        g.setColumnStretch(5, 1)
        split.addWidget(box)

        # -- curves ----------------------------------------------------------------------------
        self.curves = RunCurves()
        split.addWidget(self.curves)

        # -- runs ------------------------------------------------------------------------------
        box = QGroupBox("Runs")
        v = QVBoxLayout(box)
        v.setContentsMargins(8, 10, 8, 8)
        self.runs = RunList()
        self.runs.itemSelectionChanged.connect(self._on_run_selected)
        v.addWidget(self.runs, 1)
        row = QHBoxLayout()
        self.resume_btn = _no_focus(QPushButton("Resume"))
        self.resume_btn.setIcon(style.icon("resume"))
        self.resume_btn.setToolTip("Continue a stopped, crashed or cancelled run from its last checkpoint")
        self.resume_btn.clicked.connect(self._resume_selected)
        self.use_btn = _no_focus(QPushButton("Use this model"))
        self.use_btn.setToolTip("Load the run's model for analysis in the player")
        self.use_btn.clicked.connect(self._use_selected)
        row.addWidget(self.resume_btn)
        row.addWidget(self.use_btn)
        row.addStretch(1)
        v.addLayout(row)
        split.addWidget(box)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setStretchFactor(2, 0)
        split.setSizes([460, 540, 440])

        self._dirty_stages: set[str] = set()
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        library_panel.libraryChanged.connect(self._on_library_changed)
        win.modelReady.connect(self._probe_devices)  # torch is imported by then
        library_panel.clipsChanged.connect(lambda _ids: self._clips_timer.start())
        self._clips_timer = QTimer(self)
        self._clips_timer.setSingleShot(True)
        self._clips_timer.setInterval(300)
        self._clips_timer.timeout.connect(self.refresh_clips)
        self._update_buttons()

    # ======================================================================== library
    @property
    def lib(self):
        return self.library_panel.lib

    @property
    def series(self) -> dict[str, dict[str, list]]:
        """Each stage's curve points (see :class:`avstudio.studio.runs.RunMonitor`)."""
        return self.monitor.series

    @property
    def last_event(self):
        return self.monitor.last_event

    def _resume_selected(self) -> None:
        self.resume(self.selected_run_id())

    def _use_selected(self) -> None:
        self.use_model(self.selected_run_id())

    def _on_library_changed(self) -> None:
        self.refresh_clips()
        if self._run_dir_auto or not self.run_edit.text().strip():
            self._suggest_run_dir()
        if self.lib is not None and self.proc is None:
            try:
                alive = J.reconcile_runs(self.lib)
            except AVStudioError as exc:
                alive = []
                self.status.setText(str(exc))
            if alive:
                self.attach(alive[-1])
        self.refresh_runs()
        self._update_buttons()

    def _suggest_run_dir(self) -> None:
        if self.lib is None:
            return
        lib = Path(self.lib.path)
        d = lib.parent / "runs" / f"{lib.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.run_edit.setText(str(d))
        self._run_dir_auto = True

    def refresh_clips(self, force: bool = False) -> None:
        """The clip choices and the curriculum stages (with clips per stage) from the library.
        Hidden, the panel only notes that they changed (it counts when it is shown)."""
        if not force and not self.isVisible():
            self._clips_dirty = True
            return
        self._clips_dirty = False
        cur = self.clips_combo.currentData()
        self.clips_combo.blockSignals(True)
        self.clips_combo.clear()
        self._all_counts = {}
        if self.lib is None:
            self.clips_combo.addItem("(no library open)", None)
            self.clips_combo.blockSignals(False)
            self._fill_stages()
            return
        try:
            self._all_counts = J.count_clips(J.library_rows(self.lib, None, self.unsure_check.isChecked()))
        except AVStudioError as exc:
            self.status.setText(str(exc))
        counts = self._all_counts
        self.clips_combo.addItem(f"All annotated clips ({sum(counts.values())})", None)
        for c, n in counts.items():
            if c >= 1:
                self.clips_combo.addItem(f"Only stage C{c} ({n})", c)
        i = next((j for j in range(self.clips_combo.count()) if self.clips_combo.itemData(j) == cur), 0)
        self.clips_combo.setCurrentIndex(i)
        self.clips_combo.blockSignals(False)
        self._fill_stages()

    def _fill_stages(self) -> None:
        old = {c: b.isChecked() for c, b in self._stage_boxes.items()}
        while self.stages_row.count():
            it = self.stages_row.takeAt(0)
            if it.widget() is not None:
                it.widget().deleteLater()
        self._stage_boxes = {}
        only = self.clips_combo.currentData()
        counts = dict(self._all_counts) if self.lib is not None else {}
        if only is not None:
            counts = {only: counts[only]} if only in counts else {}
        self.counts = counts
        for c, n in counts.items():
            if c < 1:
                continue
            b = _no_focus(QCheckBox(f"C{c} ({n})"))
            b.setChecked(old.get(c, True))
            b.setToolTip(f"Stage C{c}: the {n} clip{'s' if n != 1 else ''} with {c} audible source"
                         f"{'s' if c != 1 else ''}; stages run in order, simplest first")
            self.stages_row.addWidget(b)
            self._stage_boxes[c] = b
        note = ""
        if counts.get(0):
            note = f"C0: {counts[0]} (counter only)"
        if not any(c >= 1 for c in counts):
            note = "no annotated clip yet" if self.lib is not None else "open a library"
        self.stages_note = QLabel(note)
        self.stages_note.setObjectName("dimLabel")
        self.stages_row.addWidget(self.stages_note)
        self.stages_row.addStretch(1)
        self._update_buttons()

    def stages(self) -> list[int]:
        return [c for c, b in self._stage_boxes.items() if b.isChecked()]

    # ======================================================================== devices
    def showEvent(self, ev) -> None:
        super().showEvent(ev)
        self._probe_devices()
        if self._clips_dirty:
            self.refresh_clips(force=True)

    def _probe_devices(self) -> None:
        """Add the CUDA devices PyTorch sees. Torch is not imported for this alone: the check
        runs once the app has imported it (loading a model), or in a worker on a machine with
        an NVIDIA driver."""
        if self._devices_probed:
            return

        if "torch" in sys.modules:
            self._devices_probed = True
            try:
                self._add_devices(cuda_devices())
            except Exception:  # no usable CUDA: CPU only
                pass
            return
        if Path("/proc/driver/nvidia").exists() or Path("/dev/nvidia0").exists():
            from .jobs import Job

            self._devices_probed = True
            job = Job("cuda-probe", cuda_devices, nice=10)
            job.done.connect(self._add_devices)  # a bound method: dropped with the panel
            self._probe_job = job
            job.start()

    def _add_devices(self, devs) -> None:
        for dev, name in devs or []:
            if self.device_combo.findData(dev) < 0:
                self.device_combo.addItem(f"CUDA {dev[5:]}: {name}", dev)
        if devs and self.device_combo.currentData() == "cpu":
            self.device_combo.setCurrentIndex(1)

    # ======================================================================== choose files
    def _choose_base(self) -> None:
        p, _ = QFileDialog.getOpenFileName(self.win, "Model to fine-tune", str(Path(self.base_edit.text()).parent),
                                           "Models (*.safetensors);;All files (*)")
        if p:
            self.base_edit.setText(p)

    def _choose_run_dir(self) -> None:
        p = QFileDialog.getExistingDirectory(self.win, "Run folder", str(Path(self.run_edit.text()).parent))
        if p:
            self.run_edit.setText(p)
            self._run_dir_auto = False

    # ======================================================================== start / stop
    def spec_from_form(self) -> J.FinetuneSpec:
        try:
            lr = float(self.lr_combo.currentText())
        except ValueError:
            raise AVStudioError(f"learning rate {self.lr_combo.currentText()!r} is not a number") from None
        if not 0 < lr < 1:
            raise AVStudioError(f"learning rate {lr:g} is not between 0 and 1")
        dev = self.device_combo.currentData() or "cpu"
        threads = max(1, (os.cpu_count() or 2) - 1) if dev == "cpu" else None
        return J.FinetuneSpec(library=self.lib.path, run_dir=self.run_edit.text().strip(),
                              base=self.base_edit.text().strip() or None, stages=self.stages(),
                              only_stage=self.clips_combo.currentData(),
                              include_unsure=self.unsure_check.isChecked(), epochs=self.epochs_spin.value(),
                              counter_epochs=self.counter_spin.value(), lr=lr,
                              batch_clips=self.batch_spin.value(), clip_repeats=self.repeats_spin.value(),
                              device=dev, threads=threads)

    def running(self) -> bool:
        return self.proc is not None and self.proc.running()

    def start(self) -> Optional[int]:
        """Start a run with the form's settings; returns its run id (None: it did not start)."""
        if self.lib is None:
            self.win.error("Open a clip library first (File › Open library)", "No library")
            return None
        if self.proc is not None:
            return None
        if self._run_dir_auto:
            self._suggest_run_dir()
        if self._clips_dirty:
            self.refresh_clips(force=True)
        from ..data.library import ClipLibrary

        try:
            spec = self.spec_from_form()
            if not spec.run_dir:
                raise AVStudioError("choose a run folder")
            argv, counts = J.prepare_run(self.lib, spec)
            run_lib = ClipLibrary(self.lib.path, create=False)
        except AVStudioError as exc:
            self.win.error(str(exc), "Cannot start fine-tuning")
            return None
        config = {**spec.to_dict(), "run_dir": str(Path(spec.run_dir).resolve()), "argv": argv,
                  "clips": sum(counts.values()), "clips_per_count": {f"C{c}": n for c, n in counts.items()}}
        run_id = run_lib.add_run(Path(spec.run_dir).name, config, [f"C{s}" for s in spec.stages])
        return self._launch(run_lib, run_id, spec, counts, argv, resumed=False)

    def _launch(self, run_lib, run_id: int, spec: J.FinetuneSpec, counts: dict[int, int], argv: list[str],
                resumed: bool) -> Optional[int]:
        run_dir = Path(spec.run_dir)
        try:
            proc = J.TrainProcess.start(argv, run_dir)
        except OSError as exc:
            run_lib.update_run(run_id, status="failed", metrics={"error": f"cannot start: {exc}"})
            run_lib.close()
            self.win.error(f"Cannot start the training process: {exc}", "Cannot start fine-tuning")
            return None
        run_lib.update_run(run_id, status="running", metrics={"pid": proc.pid, "error": None})
        self._begin(run_lib, run_id, spec, counts, proc)
        self.status.setText(("Resumed" if resumed else "Started") + f" {run_dir.name} (process {proc.pid})")
        self.runStarted.emit(run_id)
        return run_id

    def _begin(self, run_lib, run_id: int, spec: J.FinetuneSpec, counts: dict[int, int],
               proc: J.TrainProcess) -> None:
        self.proc, self.run_lib, self.run_id, self.spec, self.counts = proc, run_lib, run_id, spec, counts
        self.tail = J.ProgressTail(proc.progress_path, from_end=True)
        self.cancelling = False
        self.pause_restart = False
        self._hist_size = -1
        self._reset_curves(RunMonitor(spec, counts))
        self._load_history_points(Path(spec.run_dir))
        self.progress.setValue(0)
        self.progress.setFormat("starting…")
        self.ckpt_label.setText("")
        self.timer.start()
        self.refresh_runs()
        self._update_buttons()
        if self._run_dir_auto:
            self._suggest_run_dir()

    def toggle_pause(self) -> None:
        if self.proc is None:
            return
        if self.pause_restart:  # continue a run stopped for pausing: resume from its checkpoint
            run_id = self.run_id
            self._end("cancelled", quiet=True)
            self.resume(run_id)
            return
        if self.proc.paused:
            self.proc.resume()
            self.monitor.resumed()
            self.status.setText("Training")
        elif self.proc.pause():
            self.monitor.paused()
            self.status.setText("Paused: the process is frozen (Continue goes on where it stopped)")
            self.progress.setFormat("paused · " + self.progress.format())
        else:  # no SIGSTOP: stop now, resume from the last checkpoint later
            self.pause_restart = True
            self.proc.terminate()
            self.status.setText("Paused: stopped after the last checkpoint (Continue resumes from it)")
        self._update_buttons()

    def cancel(self) -> None:
        if self.proc is None:
            return
        self.cancelling = True
        self.proc.terminate()
        self.status.setText("Cancelling…")
        self._update_buttons()

    # ======================================================================== polling
    def poll(self) -> None:
        if self.proc is None:
            self.timer.stop()
            return
        for d in self.tail.read() if self.tail is not None else []:
            if "task" in d:
                self._on_event(J.event_from_dict(d))
        self._redraw_dirty()
        self._check_history()
        rc = self.proc.poll()
        if rc is not None:
            for d in self.tail.read() if self.tail is not None else []:
                if "task" in d:
                    self._on_event(J.event_from_dict(d))
            self._redraw_dirty()
            self._check_history(force=True)
            if self.cancelling:
                status = "cancelled"
            elif self.pause_restart:
                status = "cancelled"
            elif rc == 0 and J.final_model(self.proc.run_dir) is not None:
                status = "finished"
            else:
                status = "failed"
            self._end(status, rc=rc)

    def _on_event(self, ev) -> None:
        view: EventView = self.monitor.on_event(ev)
        if view.progress_text is not None:
            self.progress.setFormat(view.progress_text)
        if view.fraction is not None:
            self.progress.setValue(int(round(1000 * view.fraction)))
        if view.status:
            self.status.setText(view.status)
        if view.stage is not None:
            # redrawn once per poll, however many events came in (each redraw repaints both
            # plots: 20-40 ms of the GUI thread on a busy CPU)
            self._dirty_stages.add(view.stage)

    def _redraw_dirty(self) -> None:
        for stage in sorted(self._dirty_stages):
            if stage in self.series:
                self._redraw(stage)
        self._dirty_stages.clear()

    def _check_history(self, force: bool = False) -> None:
        if self.proc is None:
            return
        hp = self.proc.run_dir / "history.jsonl"
        try:
            size = hp.stat().st_size
        except OSError:
            size = 0
        if size == self._hist_size and not force:
            return
        self._hist_size = size
        try:
            run = J.sync_run(self.run_lib, self.run_id)
        except AVStudioError as exc:
            self.status.setText(f"Cannot record the run in the library: {exc}")
            run = None
        hist = self._load_history_points(self.proc.run_dir)
        if hist:
            ck = self.proc.run_dir / "checkpoint.safetensors"
            self.ckpt_label.setText(checkpoint_text(hist[-1], ck))
            self.ckpt_label.setToolTip(str(ck))
        if run is not None:
            self._update_run_item(run)

    def _end(self, status: str, rc: Optional[int] = None, quiet: bool = False) -> None:
        self.timer.stop()
        proc, run_id, run_lib = self.proc, self.run_id, self.run_lib
        err = None
        if status == "failed" and proc is not None:
            err = proc.last_error() or f"the training process ended with status {rc}"
        try:
            run = J.sync_run(run_lib, run_id, status=status, error=err)
        except AVStudioError as exc:
            run = None
            err = err or str(exc)
        self.proc = None
        self.pause_restart = False
        if run_lib is not None:
            run_lib.close()
        self.run_lib = None
        final = run.status if run is not None else status
        if not quiet:
            if final == "finished":
                self.progress.setValue(1000)
            self.progress.setFormat(final if final in ("finished", "cancelled") else "failed")
            self.status.setText(end_text(final, run.model_path if run is not None else None,
                                         run.metrics if run is not None else {}, err))
        self.last_status = final
        self.refresh_runs(select=run_id)
        self._update_buttons()
        if not quiet:
            self.runEnded.emit(int(run_id), final)

    # ======================================================================== curves
    def _reset_curves(self, monitor: RunMonitor) -> None:
        self.monitor = monitor
        self.curves.reset(monitor)

    def _redraw(self, stage: str) -> None:
        self.curves.redraw(stage)

    def _load_history_points(self, run_dir: Path) -> list[dict]:
        return self.curves.load_history(run_dir)

    def show_run_curves(self, run_id: Optional[int]) -> None:
        """Draw a past run's curves (its epochs) while nothing is training."""
        if self.proc is not None or run_id is None or self.lib is None:
            return
        try:
            run = self.lib.run(run_id)
        except AVStudioError:
            return
        spec = J.FinetuneSpec.from_dict(run.config) if run.config.get("run_dir") else None
        self.spec = spec
        self._reset_curves(RunMonitor(spec))
        if spec is not None:
            self._load_history_points(Path(run.config["run_dir"]))

    # ======================================================================== runs list
    def _live(self) -> Optional[tuple[int, str]]:
        """The run in progress and its status as the process is now (running or paused)."""
        if self.proc is None or self.run_id is None:
            return None
        return int(self.run_id), "paused" if self.proc.paused else "running"

    def refresh_runs(self, select: Optional[int] = None) -> None:
        lib = self.lib
        runs = []
        if lib is not None:
            try:
                runs = lib.runs()
            except AVStudioError:
                runs = []
        self.runs.fill(runs, select if select is not None else self.selected_run_id(), self._live())
        self._update_buttons()

    def _update_run_item(self, run) -> None:
        if not self.runs.update_run(run, self._live()):
            self.refresh_runs()

    def selected_run_id(self) -> Optional[int]:
        return self.runs.selected_run_id()

    def select_run(self, run_id: int) -> None:
        self.runs.select_run(run_id)

    def _on_run_selected(self) -> None:
        self._update_buttons()
        if self.proc is None:
            self.show_run_curves(self.selected_run_id())

    def _selected_run(self):
        rid = self.selected_run_id()
        if rid is None or self.lib is None:
            return None
        try:
            return self.lib.run(rid)
        except AVStudioError:
            return None

    def _update_buttons(self) -> None:
        busy = self.proc is not None
        has_lib = self.lib is not None
        self.start_btn.setEnabled(has_lib and not busy and bool(self._stage_boxes))
        self.pause_btn.setEnabled(busy and not self.cancelling)
        self.pause_btn.setText("Continue" if busy and (self.proc.paused or self.pause_restart) else "Pause")
        self.pause_btn.setIcon(style.icon("play_small" if busy and (self.proc.paused or self.pause_restart)
                                          else "pause"))
        self.pause_btn.setToolTip("Freeze the training process (Continue goes on where it stopped)"
                                  if J.CAN_PAUSE else "Stop after the last checkpoint (Continue resumes from it)")
        self.cancel_btn.setEnabled(busy and not self.cancelling)
        run = self._selected_run()
        resumable = (run is not None and not busy and run.status in ("failed", "cancelled", "running", "created")
                     and bool(run.config.get("argv")) and Path(str(run.config.get("run_dir", ""))).is_dir())
        self.resume_btn.setEnabled(resumable)
        self.use_btn.setEnabled(run is not None and run.status == "finished" and bool(run.model_path)
                                and Path(run.model_path).exists())

    # ======================================================================== resume / attach
    def resume(self, run_id: Optional[int]) -> Optional[int]:
        """Continue a run from its last checkpoint (the same command in the same folder)."""
        if run_id is None or self.lib is None or self.proc is not None:
            return None
        from ..data.library import ClipLibrary

        try:
            run = self.lib.run(run_id)
            argv = list(run.config.get("argv") or [])
            if not argv:
                raise AVStudioError(f"run {run.name} has no command to resume")
            if not Path(run.config.get("run_dir", "")).is_dir():
                raise AVStudioError(f"the folder of run {run.name} is gone ({run.config.get('run_dir')})")
            argv[0] = sys.executable  # this installation's Python
            spec = J.FinetuneSpec.from_dict(run.config)
            counts = {int(k[1:]): int(v) for k, v in (run.config.get("clips_per_count") or {}).items()}
            run_lib = ClipLibrary(self.lib.path, create=False)
        except AVStudioError as exc:
            self.win.error(str(exc), "Cannot resume")
            return None
        return self._launch(run_lib, run_id, spec, counts, argv, resumed=True)

    def attach(self, run_id: int) -> bool:
        """Follow a run that is going on in the background (started by an earlier session)."""
        from ..data.library import ClipLibrary

        try:
            run = self.lib.run(run_id)
            proc = J.TrainProcess.attach(run.config["run_dir"])
            if proc is None:
                return False
            spec = J.FinetuneSpec.from_dict(run.config)
            counts = {int(k[1:]): int(v) for k, v in (run.config.get("clips_per_count") or {}).items()}
            run_lib = ClipLibrary(self.lib.path, create=False)
        except (AVStudioError, KeyError):
            return False
        self._begin(run_lib, run_id, spec, counts, proc)
        self.status.setText(f"Following {run.name}, running in the background (process {proc.pid})")
        return True

    # ======================================================================== models
    def use_model(self, run_id: Optional[int]) -> Optional[str]:
        """Load a finished run's model in the main window for analysis."""
        if run_id is None or self.lib is None:
            return None
        try:
            run = self.lib.run(run_id)
        except AVStudioError:
            return None
        if not run.model_path or not Path(run.model_path).exists():
            self.win.error(f"Run {run.name} has no final model yet", "No model")
            return None
        win = self.win
        win.use_model(run.model_path)
        win.statusBar().showMessage(f"Loading the model of run {run.name}…", 5000)
        self.modelChosen.emit(run.model_path)
        return run.model_path

    # ======================================================================== closing
    def install_close_guard(self) -> None:
        self._guard = _CloseGuard(self)
        self.win.installEventFilter(self._guard)

    def on_close_requested(self) -> bool:
        """The window is about to close: True lets it close."""
        if not self.running():
            self.library_panel.close_library()  # the app quits: every write is committed already
            return True
        name = Path(self.spec.run_dir).name if self.spec else "the run"
        choice = ask_close_while_training(self.win, name)
        if choice == "cancel":
            return False
        if choice == "stop":
            self.cancelling = True
            self.proc.terminate()
            if self.proc.wait(15.0) is None:
                self.proc.kill()
                self.proc.wait(5.0)
            self._end("cancelled", quiet=True)
        else:
            self.detach()
        self.library_panel.close_library()
        return True

    def detach(self) -> None:
        """Leave the run going without the app (it is followed again when the library opens)."""
        if self.proc is None:
            return
        if self.proc.paused:
            self.proc.resume()
        self.timer.stop()
        try:
            J.sync_run(self.run_lib, self.run_id)
            self.run_lib.update_run(self.run_id, metrics={"detached": True})
        except AVStudioError:
            pass
        if self.run_lib is not None:
            self.run_lib.close()
        self.proc = None
        self.run_lib = None
        self._update_buttons()


class _CloseGuard(QObject):
    def __init__(self, panel: FinetunePanel):
        super().__init__(panel)
        self.panel = panel

    def eventFilter(self, obj, ev) -> bool:
        if ev.type() == QEvent.Type.Close and obj is self.panel.win:
            if not self.panel.on_close_requested():
                ev.ignore()
                return True
        return False


__all__ = ["FinetunePanel", "ask_close_while_training", "default_base_model"]
