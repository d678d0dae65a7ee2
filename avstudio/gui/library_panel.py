"""The clip library in the app: a table of clips, source-count annotation with undo, imports,
exports and the counter's predictions.

Everything goes through the Qt-free :class:`avstudio.data.library.ClipLibrary`; what the table
and the labels say comes from :mod:`avstudio.studio.library_table`. This module holds the panel
(a dock, left), its jobs (imports, predictions) and :func:`install_library_panels`, which adds it
and the fine-tune panel (a dock tabbed with the timeline) to the main window. The table model is
in :mod:`.library_table`, the annotation (count keys, undo/redo) in :mod:`.annotation`; their
actions and menu entries are rows of the action table (:mod:`avstudio.studio.actions`).

Annotating: open a clip of the library in the player (double-click its row), listen, press
``0``–``4`` for the number of audible sources (``?``: unsure, or "can't tell" for a clip not
annotated yet); the count is saved at once and the player moves to the next clip to
annotate (the counter's least certain first, :meth:`ClipLibrary.next_unannotated`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QFont, QFontMetrics
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import AVStudioError
from ..studio.library_table import (
    COL,
    COLUMNS,
    FILTERS,
    LIBRARY_FILTER,
    MAX_KEY_COUNT,
    WIDEST,
    import_report,
    key_note,
    player_line,
    skipped_note,
    stage_filters,
    summary_text,
)
from . import style
from .annotation import Annotator
from .jobs import Job
from .library_table import ClipTableModel, NameDelegate


def _no_focus(w: QWidget) -> QWidget:
    w.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys stay with the window's shortcuts
    return w


class LibraryPanel(QWidget):
    """The library dock: clips table, search, filter, annotation bar, job progress."""

    libraryChanged = Signal()  # opened or closed
    clipsChanged = Signal(object)  # list of changed clip ids, or None (anything may have changed)
    annotated = Signal(int)  # clip id whose annotation changed

    def __init__(self, win, parent=None):
        super().__init__(parent)
        self.win = win
        self.lib = None
        self._stats: dict = {}
        self.job: Optional[Job] = None
        self.last_report = None
        self._player_clip_id: Optional[int] = None
        self.setMinimumWidth(340)
        self.setStyleSheet("QToolButton#countButton { min-height: 22px; font-weight: 700; color: #dfe3ea;"
                           " background: #2a2f38; border: 1px solid #3a414d; border-radius: 4px; padding: 0 6px; }"
                           " QToolButton#countButton:hover { background: #33404c; border-color: #4fb0c6; }"
                           " QToolButton#countButton:disabled { color: #4b525e; background: #23272e; }")

        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        outer.setSpacing(6)
        self.stack = QStackedWidget()
        outer.addWidget(self.stack)

        # -- no library open -------------------------------------------------------------------
        empty = QWidget()
        v = QVBoxLayout(empty)
        v.addStretch(1)
        hint = QLabel("No clip library open.\n\nA library keeps your clips and how many sound "
                      "sources each one has, for fine-tuning the model on your own data.")
        hint.setWordWrap(True)
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint.setObjectName("dimLabel")
        v.addWidget(hint)
        row = QHBoxLayout()
        self.new_btn = QPushButton("New library…")
        self.open_btn = QPushButton("Open library…")
        row.addStretch(1)
        row.addWidget(self.new_btn)
        row.addWidget(self.open_btn)
        row.addStretch(1)
        v.addLayout(row)
        v.addStretch(2)
        self.stack.addWidget(empty)

        # -- the library -----------------------------------------------------------------------
        page = QWidget()
        v = QVBoxLayout(page)
        v.setContentsMargins(0, 0, 0, 0)
        v.setSpacing(6)
        self.title = QLabel("")
        self.title.setObjectName("modelLabel")
        v.addWidget(self.title)
        self.summary = QLabel("")
        self.summary.setObjectName("dimLabel")
        self.summary.setWordWrap(True)
        v.addWidget(self.summary)
        row = QHBoxLayout()
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search paths…")
        self.search.setClearButtonEnabled(True)
        self.search.setToolTip("Show only clips whose path contains this text (Ctrl+F)")
        self.filter = _no_focus(QComboBox())
        self.filter.setToolTip("Which clips to list")
        self.filter.setMinimumContentsLength(12)
        row.addWidget(self.search, 1)
        row.addWidget(self.filter)
        v.addLayout(row)

        self.model = ClipTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # clip_000…17.mp4
        self.name_delegate = NameDelegate(self.table)
        self.table.setItemDelegateForColumn(COL["name"], self.name_delegate)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setShowGrid(False)
        h = self.table.horizontalHeader()
        h.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        h.setMinimumSectionSize(30)
        fm = self.table.fontMetrics()
        for key, sample in WIDEST.items():  # narrow columns: the name gets the rest
            text = max(sample, COLUMNS[COL[key]][1], key=fm.horizontalAdvance)
            h.resizeSection(COL[key], fm.horizontalAdvance(text) + 16)
        # ... but never less than a usual clip name: in a narrow dock the table scrolls sideways
        # instead (a stretched column shrank to 30 px, every name one "….mp4")
        bold = QFont(self.table.font())
        bold.setBold(True)  # the clip in the player is drawn bold
        self.name_min = QFontMetrics(bold).horizontalAdvance("clip_00000.mp4") + 20
        self.table.viewport().installEventFilter(self)
        h.sectionResized.connect(lambda i, _old, _new: i != COL["name"] and self._fit_name_column())
        h.setSortIndicator(0, Qt.SortOrder.AscendingOrder)
        self.table.setToolTip("Double-click a clip to open it in the player")
        v.addWidget(self.table, 1)

        # annotation bar: the clip in the player and the count buttons
        self.player_label = QLabel("Double-click a clip to open it in the player")
        self.player_label.setWordWrap(True)
        v.addWidget(self.player_label)
        self.count_row = QHBoxLayout()
        self.count_row.setSpacing(3)
        v.addLayout(self.count_row)

        # job progress (imports, predictions)
        row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setTextVisible(True)
        self.cancel_btn = _no_focus(QToolButton())
        self.cancel_btn.setIcon(style.icon("cancel"))
        self.cancel_btn.setToolTip("Cancel (what is done is kept)")
        self.cancel_btn.clicked.connect(self.cancel_job)
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_btn)
        self.job_row = QWidget()
        self.job_row.setLayout(row)
        row.setContentsMargins(0, 0, 0, 0)
        self.job_row.setVisible(False)
        v.addWidget(self.job_row)
        self.tools_row = QHBoxLayout()
        self.tools_row.setSpacing(4)
        v.addLayout(self.tools_row)
        # what the last import skipped and why (hover: every file)
        self.import_note = QLabel("")
        self.import_note.setObjectName("dimLabel")
        self.import_note.setWordWrap(True)
        self.import_note.setVisible(False)
        v.addWidget(self.import_note)
        self.stack.addWidget(page)

        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(200)
        self._search_timer.timeout.connect(self.refresh)
        self._summary_timer = QTimer(self)
        self._summary_timer.setSingleShot(True)
        self._summary_timer.setInterval(400)
        self._summary_timer.timeout.connect(self.update_summary)
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.filter.currentIndexChanged.connect(lambda _i: self.refresh())
        self.table.activated.connect(self._on_activated)
        self.table.doubleClicked.connect(self._on_activated)
        self._activated_at = 0.0

        self.annotator = Annotator(self)
        self._make_buttons()
        self.new_btn.clicked.connect(self.action("new_library").trigger)
        self.open_btn.clicked.connect(self.action("open_library").trigger)
        win.clipOpened.connect(self._on_clip_opened)
        self._update_enabled()

    # ======================================================================== buttons
    def _make_buttons(self) -> None:
        """The annotation bar's and the tool row's buttons: short texts for the table's actions."""
        self.count_buttons = {}
        for n in range(MAX_KEY_COUNT + 1):
            self.count_buttons[n] = self._button(self.count_row, f"annotate_{n}", str(n), "countButton")
        for name, text in (("annotate_unsure", "?"), ("annotate_clear", "Clear"), ("next_unannotated", "Next ▸")):
            self._button(self.count_row, name, text, "countButton")
        self.count_row.addStretch(1)
        for name, text in (("import_folder", "Import folder…"), ("import_manifest", "Import manifest…"),
                           ("predict_counts", "Predict counts")):
            self._button(self.tools_row, name, text)
        self.tools_row.addStretch(1)

    def action(self, name: str) -> QAction:
        return self.win.action(name)

    def _button(self, row, name: str, text: str, object_name: str = "") -> QToolButton:
        """A short button for an action (its menu text is too long for a button)."""
        a = self.action(name)
        b = _no_focus(QToolButton())
        b.setText(text)
        if object_name:
            b.setObjectName(object_name)
            b.setMinimumWidth(30)
        b.clicked.connect(a.trigger)

        def sync():
            b.setEnabled(a.isEnabled())
            b.setToolTip(a.toolTip())

        a.changed.connect(sync)
        sync()
        row.addWidget(b)
        return b

    def _update_enabled(self) -> None:
        on = self.lib is not None
        names = ("import_folder", "import_manifest", "export_library_csv", "export_library_json", "close_library",
                 "next_unannotated", "find_clips", "predict_counts", "annotate_keys", "annotate_unsure",
                 "annotate_clear", "annotate_other") + tuple(f"annotate_{n}" for n in range(MAX_KEY_COUNT + 1))
        for name in names:
            self.action(name).setEnabled(on)
        self.stack.setCurrentIndex(1 if on else 0)

    def update_key_note(self) -> None:
        """The status bar's library line (annotated clips; the keys while they annotate)."""
        self.win.status_line.library.setText("" if self.lib is None else key_note(self._stats, self.annotator.keys_on))

    # ======================================================================== open / close
    def _ask_path(self, kind: str, title: str, filt: str, name: str = "") -> Optional[str]:
        start = str(self.win.qsettings.value("library/last_dir", "") or "")
        if kind == "save":
            p, _ = QFileDialog.getSaveFileName(self.win, title, str(Path(start) / name) if start else name, filt)
        elif kind == "dir":
            p = QFileDialog.getExistingDirectory(self.win, title, start)
        else:
            p, _ = QFileDialog.getOpenFileName(self.win, title, start, filt)
        if p:
            self.win.qsettings.setValue("library/last_dir", str(Path(p).parent if kind != "dir" else Path(p)))
        return p or None

    def new_library_dialog(self) -> None:
        p = self._ask_path("save", "New clip library", LIBRARY_FILTER, "clips.avlib")
        if p:
            if not Path(p).suffix:
                p += ".avlib"
            self.open_library(p, create=True)

    def open_library_dialog(self) -> None:
        p = self._ask_path("open", "Open clip library", LIBRARY_FILTER)
        if p:
            self.open_library(p)

    def open_library(self, path: str, create: bool = False) -> bool:
        """Open (``create``: or create) a library; errors show a dialog and change nothing."""
        from ..data.library import ClipLibrary

        try:
            lib = ClipLibrary(path, create=create)
        except AVStudioError as exc:
            self.win.error(str(exc), "Cannot open the library")
            return False
        existed_before = self.lib is not None
        if existed_before:
            self.close_library()
        self.lib = lib
        self.annotator.undo_stack.clear()
        self.win.qsettings.setValue("library/last", lib.path)
        self.title.setText(Path(lib.path).name)
        self.title.setToolTip(lib.path)
        self.filter.blockSignals(True)
        self.filter.setCurrentIndex(0)  # a new library starts with every clip listed
        self.filter.blockSignals(False)
        self.search.blockSignals(True)
        self.search.clear()
        self.search.blockSignals(False)
        self._fill_filters()
        self._update_enabled()
        self.refresh()
        self._on_clip_opened(self.win.player.path or "")
        self.annotator.set_annotation_keys(True)
        self.win.library_dock.show()
        self.win.library_dock.raise_()
        self.win.statusBar().showMessage(f"Library {lib.path}: {len(lib)} clips", 5000)
        self.libraryChanged.emit()
        return True

    def close_library(self) -> None:
        if self.lib is None:
            return
        self.cancel_job(wait=True)
        self.annotator.set_annotation_keys(False)
        self.lib.close()
        self.lib = None
        self.annotator.undo_stack.clear()
        self.model.set_rows([])
        self._player_clip_id = None
        self._stats = {}
        self._update_enabled()
        self.update_key_note()
        self.libraryChanged.emit()

    def _fill_filters(self) -> None:
        cur = self.filter.currentData()
        self.filter.blockSignals(True)
        self.filter.clear()
        for label, f, s in FILTERS:
            self.filter.addItem(label, (f, s))
        if self.lib is not None:
            for label, data in stage_filters(self.lib.stage_summary()):
                self.filter.addItem(label, data)
        i = next((j for j in range(self.filter.count()) if self.filter.itemData(j) == cur), 0)
        self.filter.setCurrentIndex(i)
        self.filter.blockSignals(False)

    # ======================================================================== listing
    def refresh(self) -> None:
        """Query the library again (filter, search) and redraw."""
        if self.lib is None:
            return
        f, stage = self.filter.currentData() or (None, None)
        try:
            rows = self.lib.clips(f, order_by="path", stage=stage, search=self.search.text().strip() or None)
        except AVStudioError as exc:
            self.win.statusBar().showMessage(str(exc), 8000)
            return
        sel = self.selected_clip_id()
        self.model.set_rows(rows)
        self.model.set_current(self._player_clip_id)
        if sel is not None:
            self.select_clip(sel, scroll=False)
        self.update_summary()

    def update_summary(self) -> None:
        if self.lib is None:
            return
        self._stats = self.lib.stats()
        self.summary.setText(summary_text(self._stats, len(self.model.rows)))
        self.update_key_note()

    def clip_changed(self, clip_id: int) -> None:
        """Re-read one clip (after an annotation) and tell the others."""
        if self.lib is None:
            return
        try:
            row = self.lib.get(clip_id)
        except AVStudioError:
            return
        self.model.update_clip(row)
        self._summary_timer.start()  # counting every clip takes a while in a big library
        self._update_player_label()
        self.annotated.emit(clip_id)
        self.clipsChanged.emit([clip_id])

    def selected_clip_id(self) -> Optional[int]:
        idx = self.table.selectionModel().selectedRows()
        if not idx:
            return None
        r = self.model.clip_at(idx[0].row())
        return None if r is None else r.id

    def select_clip(self, clip_id: Optional[int], scroll: bool = True) -> bool:
        i = self.model.row_of(clip_id)
        if i < 0:
            return False
        self.table.selectRow(i)
        if scroll:
            self.table.scrollTo(self.model.index(i, 0), QAbstractItemView.ScrollHint.EnsureVisible)
        return True

    def focus_search(self) -> None:
        self.win.library_dock.show()
        self.win.library_dock.raise_()
        self.search.setFocus()
        self.search.selectAll()

    # ======================================================================== the player
    def _on_activated(self, index) -> None:
        now = time.monotonic()
        if now - self._activated_at < 0.3:  # doubleClicked and activated for the same click
            return
        self._activated_at = now
        r = self.model.clip_at(index.row())
        if r is not None:
            self.open_clip(r.id)

    def open_clip(self, clip_id: int) -> bool:
        """Open a clip of the library in the player (the main window's open-file path)."""
        if self.lib is None:
            return False
        try:
            r = self.lib.get(clip_id)
        except AVStudioError as exc:
            self.win.error(str(exc))
            return False
        if not os.path.exists(r.path):
            self.win.error(f"{r.path} is missing (moved or deleted). Import the folder it moved to: "
                           "the library finds it again by its content.", "Missing file")
            return False
        ok = self.win.open_file(r.path)
        if ok:
            self.select_clip(clip_id)
        return ok

    def player_clip(self):
        """The library's row for the clip in the player (None: none, or not in the library)."""
        if self.lib is None or not self.win.player.path:
            return None
        if self._player_clip_id is not None:
            try:
                r = self.lib.get(self._player_clip_id)
                return r
            except AVStudioError:
                pass
        return self.lib.find_file(self.win.player.path)

    def eventFilter(self, obj, event) -> bool:
        if obj is self.table.viewport() and event.type() == QEvent.Type.Resize:
            self._fit_name_column()
        return super().eventFilter(obj, event)

    def _fit_name_column(self) -> None:
        """The name column takes the width the others leave, at least :attr:`name_min`."""
        h = self.table.horizontalHeader()
        others = sum(h.sectionSize(i) for i in range(h.count()) if i != COL["name"] and not h.isSectionHidden(i))
        want = max(self.name_min, self.table.viewport().width() - others)
        if h.sectionSize(COL["name"]) != want:
            h.resizeSection(COL["name"], want)

    def _on_clip_opened(self, path: str) -> None:
        if self.lib is None:
            return
        r = self.lib.find_file(path) if path else None
        self._player_clip_id = None if r is None else r.id
        self.model.set_current(self._player_clip_id)
        if r is not None:
            self.select_clip(r.id)
        self._update_player_label()

    def _update_player_label(self) -> None:
        if self.lib is not None:
            self.player_label.setText(player_line(self.player_clip(), bool(self.win.player.path)))

    # ======================================================================== jobs
    def _start_job(self, job: Job, label: str, on_done: Callable[[Any], None]) -> bool:
        if self.job is not None and self.job.isRunning():
            self.win.statusBar().showMessage("Another library job is running (cancel it first)", 5000)
            return False
        self.job = job
        self.progress.setValue(0)
        self.progress.setFormat(f"{label} %p%")
        self.job_row.setVisible(True)
        self._job_label = label
        self._job_done = on_done
        # bound methods of this panel, never lambdas: a signal still queued when the panel is
        # gone is dropped with it
        job.progress.connect(self._on_job_progress)
        job.done.connect(self._on_job_done)
        job.failed.connect(self._on_job_failed)
        job.cancelled.connect(self._on_job_cancelled)
        job.start()
        return True

    def _on_job_progress(self, ev) -> None:
        if self.sender() is not self.job:
            return
        if ev.fraction is not None:
            self.progress.setValue(int(round(100 * ev.fraction)))
            self.progress.setFormat(f"{self._job_label} {int(ev.done)}/{int(ev.total)}")
        ids = ev.metrics.get("clip_ids")
        if ids:
            for cid in ids:
                try:
                    self.model.update_clip(self.lib.get(cid))
                except (AVStudioError, AttributeError):
                    pass
            self.clipsChanged.emit(list(ids))

    def _end_job(self) -> bool:
        if self.sender() is not self.job:
            return False
        self.job_row.setVisible(False)
        self.refresh()
        self._fill_filters()
        self.clipsChanged.emit(None)
        return True

    def _on_job_done(self, result) -> None:
        if self._end_job():
            self._job_done(result)

    def _on_job_failed(self, msg: str) -> None:
        if self._end_job():
            self.win.error(msg, f"{self._job_label} failed")

    def _on_job_cancelled(self) -> None:
        if self._end_job():
            self.win.statusBar().showMessage(f"{self._job_label} cancelled: what was done is kept", 6000)

    def cancel_job(self, wait: bool = False) -> None:
        if self.job is not None and self.job.isRunning():
            self.job.cancel()
            if wait:
                self.job.wait(15000)

    def import_folder_dialog(self) -> None:
        if self.lib is None:
            return
        p = self._ask_path("dir", "Import a folder of videos into the library", "")
        if p:
            self.import_paths(folder=p)

    def import_manifest_dialog(self) -> None:
        if self.lib is None:
            return
        p = self._ask_path("open", "Import a manifest (CSV with path,count)", "Manifest (*.csv);;All files (*)")
        if p:
            self.import_paths(manifest=p)

    def import_paths(self, folder: Optional[str] = None, manifest: Optional[str] = None) -> Optional[Job]:
        """Import a folder or a manifest in a worker (progress bar, cancel)."""
        if self.lib is None:
            return None
        if folder is not None:
            job = Job("library-import", self.lib.import_folder, folder)
            what = Path(folder).name or folder
        else:
            job = Job("library-import", self.lib.import_manifest, manifest, who="manifest")
            what = Path(str(manifest)).name
        ok = self._start_job(job, f"Importing {what}", self._on_imported)
        return job if ok else None

    def _on_imported(self, rep) -> None:
        self.last_report = rep
        if self.win.player.path:  # the clip in the player may have just come into the library
            self._on_clip_opened(self.win.player.path)
        msg, details = import_report(rep)
        self.win.statusBar().showMessage(msg, 8000)
        # the files that are not videos: listed in the panel (every one, with why, on hover)
        note, tip = skipped_note(rep)
        self.import_note.setText(note)
        self.import_note.setToolTip(tip)
        self.import_note.setVisible(bool(note))
        if details:  # videos that could not be read: said in a dialog
            QMessageBox.warning(self.win, "Some files were not imported", details)

    def export_dialog(self, kind: str) -> Optional[str]:
        if self.lib is None:
            return None
        stem = Path(self.lib.path).stem
        p = self._ask_path("save", f"Export the library as {kind.upper()}",
                           "Manifest CSV (*.csv)" if kind == "csv" else "JSON (*.json)", f"{stem}.{kind}")
        if not p:
            return None
        return self.export(p)

    def export(self, path: str) -> Optional[str]:
        try:
            n = self.lib.export_json(path) if path.lower().endswith(".json") else self.lib.export_csv(path)
        except (AVStudioError, OSError) as exc:
            self.win.error(str(exc), "Export failed")
            return None
        self.win.statusBar().showMessage(f"Wrote {n} clips to {path}", 6000)
        return path

    def predict_counts(self) -> Optional[Job]:
        """Run the loaded model's counter over the unannotated clips (a worker)."""
        if self.lib is None:
            return None
        bundle = self.win.player.bundle
        if bundle is None:
            self.win.error("Load a model with a source counter first (Analysis › Load model)", "No model")
            return None
        if bundle.counter is None:
            self.win.error(f"The model {bundle.name} has no source counter", "No counter")
            return None
        ids = [r.id for r in self.lib.clips("unannotated") if not r.missing]
        if not ids:
            self.win.statusBar().showMessage("No unannotated clip to predict", 5000)
            return None
        name = bundle.paths.get("counter", bundle.name)
        from ..analysis.counting import predict_counts  # torch: imported when first needed

        job = Job("library-predict", predict_counts, self.lib, bundle, ids, name)

        def done(res):
            msg = f"Predicted the count of {res['predicted']} clips"
            if res["failed"]:
                msg += f" ({len(res['failed'])} could not be read)"
            self.win.statusBar().showMessage(msg, 8000)

        return job if self._start_job(job, "Predicting counts", done) else None


# ---------------------------------------------------------------------------- main window


def install_library_panels(win) -> None:
    """Add the library and fine-tune panels (docks) to the main window; their actions and menus
    come from the window's action table."""
    from .finetune_panel import FinetunePanel

    panel = LibraryPanel(win)
    win.library_panel = panel
    dock = QDockWidget("Clip library", win)
    dock.setObjectName("libraryDock")
    dock.setWidget(panel)
    dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable |
                     QDockWidget.DockWidgetFeature.DockWidgetFloatable |
                     QDockWidget.DockWidgetFeature.DockWidgetClosable)
    win.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
    win.library_dock = dock

    ft = FinetunePanel(win, panel)
    win.finetune_panel = ft
    fdock = QDockWidget("Fine-tune on the library", win)
    fdock.setObjectName("finetuneDock")
    fdock.setWidget(ft)
    fdock.setFeatures(dock.features())
    win.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, fdock)
    win.tabifyDockWidget(win.timeline_dock, fdock)
    win.timeline_dock.raise_()
    win.finetune_dock = fdock
    win.resizeDocks([dock], [480], Qt.Orientation.Horizontal)
    dock.hide()
    fdock.hide()
    ft.install_close_guard()


def open_library_from_args(win, path: str) -> bool:
    """``main.py --library LIB``: open (never create) a library."""
    panel = getattr(win, "library_panel", None)
    if panel is None:
        return False
    if not Path(path).exists():
        win.error(f"library {path} does not exist (create one with File › New library)", "Cannot open the library")
        return False
    return panel.open_library(path)


__all__ = ["LibraryPanel", "install_library_panels", "open_library_from_args"]
