"""The clip library in the app: a table of clips, source-count annotation with undo, imports,
exports and the counter's predictions.

Everything goes through the Qt-free :class:`avstudio.data.library.ClipLibrary`; this module
only holds widgets, actions and workers. :func:`install_library_panels` adds the panel (a dock,
left), the fine-tune panel (a dock tabbed with the timeline), their menu entries and the Edit
menu (undo/redo) to the main window.

Annotating: open a clip of the library in the player (double-click its row), listen, press
``0``–``4`` for the number of audible sources (``?``: unsure, or "can't tell" for a clip not
annotated yet); the count is saved at once and the player moves to the next clip to
annotate (the counter's least certain first, :meth:`ClipLibrary.next_unannotated`). Every
change is one step of the undo stack (``Ctrl+Z`` / ``Ctrl+Shift+Z``), which calls
``restore_annotation``: nothing is ever deleted from the library.

While a library is open the number keys annotate (Library › Number keys annotate, on by
default): ``0``–``4`` and ``?`` are taken from the actions that hold them otherwise (show/hide
sound 1–4, keyboard help) and given back when the mode is turned off or the library closed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QBrush, QColor, QFont, QKeySequence, QUndoCommand, QUndoStack
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
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
from ..progress import check_cancel, emit
from . import style
from .jobs import Job

LIBRARY_FILTER = "AV Studio library (*.avlib);;All files (*)"
MAX_KEY_COUNT = 4  # keys 0..4
ANNOTATION_KEYS = {f"annotate_{n}": str(n) for n in range(MAX_KEY_COUNT + 1)}
ANNOTATION_KEYS["annotate_unsure"] = "?"


def default_who() -> str:
    from ..data.stamps import default_who as login_name

    return os.environ.get("AVSTUDIO_WHO") or login_name()


# ---------------------------------------------------------------------------- the table


COLUMNS = [  # key, header, tooltip
    ("name", "Clip", "File name (the full path in the tooltip)"),
    ("count", "Count", "Annotated number of audible sources (? = can't tell)"),
    ("unsure", "Unsure", "The annotator was not sure"),
    ("pred", "Pred.", "The counter's prediction"),
    ("conf", "Conf.", "The counter's confidence in its prediction (0..1)"),
    ("stage", "Stage", "Curriculum stage: from the annotation, else (in italics) from the prediction"),
    ("duration", "Dur.", "Duration"),
    ("missing", "File", "Whether the file is where the library says"),
]
COL = {k: i for i, (k, _, _) in enumerate(COLUMNS)}
_ROOT = QModelIndex()  # the table's (invalid) root index

FILTERS = [  # label, filter, stage
    ("All clips", None, None),
    ("To annotate", "unannotated", None),
    ("Annotated", "annotated", None),
    ("Unsure", "unsure", None),
    ("Can't tell", "unknown", None),
    ("Disagrees with the prediction", "disagree", None),
    ("Missing files", "missing", None),
]


def _sort_key(col: str, r) -> Any:
    """The value a column sorts by (None sorts last in both directions)."""
    if col == "name":
        return Path(r.path).name.lower() + "\0" + r.path.lower()
    if col == "count":
        return None if not r.annotated else (-1 if r.count is None else r.count)
    if col == "unsure":
        return None if not r.annotated else int(r.unsure)
    if col == "pred":
        return r.predicted_count
    if col == "conf":
        return r.predicted_confidence
    if col == "stage":
        return None if r.stage is None else int(r.stage[1:])
    if col == "duration":
        return r.duration
    if col == "missing":
        return int(r.missing)
    return None


class ClipTableModel(QAbstractTableModel):
    """Rows of :class:`~avstudio.data.library.ClipRow`; sorted here, filtered by the library."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list = []
        self.current_id: Optional[int] = None  # the clip in the player
        self._sort: tuple[int, Qt.SortOrder] = (0, Qt.SortOrder.AscendingOrder)
        self._bold = QFont()
        self._bold.setBold(True)
        self._italic = QFont()
        self._italic.setItalic(True)

    # -- Qt model API ----------------------------------------------------------------------
    def rowCount(self, parent=_ROOT) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=_ROOT) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal:
            if role == Qt.ItemDataRole.DisplayRole:
                return COLUMNS[section][1]
            if role == Qt.ItemDataRole.ToolTipRole:
                return COLUMNS[section][2]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self.rows):
            return None
        r = self.rows[index.row()]
        col = COLUMNS[index.column()][0]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(col, r)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tip(r)
        if role == Qt.ItemDataRole.UserRole:
            return r.id
        if role == Qt.ItemDataRole.TextAlignmentRole and col != "name":
            return int(Qt.AlignmentFlag.AlignCenter)
        if role == Qt.ItemDataRole.FontRole:
            if col == "name" and r.id == self.current_id:
                return self._bold
            if col == "count" and r.annotated:
                return self._bold
            if col == "stage" and r.stage is not None and not (r.annotated and r.count is not None):
                return self._italic
        if role == Qt.ItemDataRole.ForegroundRole:
            if r.missing:
                return QBrush(QColor("#e0787a"))
            if col in ("pred", "conf") or (col == "stage" and not (r.annotated and r.count is not None)):
                return QBrush(QColor(style.FG_DIM))
            if col == "unsure" and r.unsure:
                return QBrush(QColor("#e6c229"))
        if role == Qt.ItemDataRole.BackgroundRole and r.id == self.current_id:
            return QBrush(QColor(79, 176, 198, 60))
        return None

    @staticmethod
    def _text(col: str, r) -> str:
        if col == "name":
            return Path(r.path).name
        if col == "count":
            if not r.annotated:
                return ""
            return "?" if r.count is None else str(r.count)
        if col == "unsure":
            return "unsure" if r.unsure else ""
        if col == "pred":
            return "" if r.predicted_count is None else str(r.predicted_count)
        if col == "conf":
            return "" if r.predicted_confidence is None else f"{r.predicted_confidence:.2f}"
        if col == "stage":
            return r.stage or ""
        if col == "duration":
            return "" if r.duration is None else f"{r.duration:.1f} s"
        if col == "missing":
            return "missing" if r.missing else ""
        return ""

    @staticmethod
    def _tip(r) -> str:
        lines = [r.path]
        if r.annotated:
            c = "can't tell" if r.count is None else f"{r.count} source{'s' if r.count != 1 else ''}"
            lines.append(f"annotated: {c}{' (unsure)' if r.unsure else ''} by {r.annotated_by} "
                         f"at {r.annotated_at}")
        else:
            lines.append("not annotated")
        if r.predicted_count is not None:
            conf = "" if r.predicted_confidence is None else f", confidence {r.predicted_confidence:.2f}"
            lines.append(f"predicted: {r.predicted_count}{conf} ({Path(str(r.predicted_by)).name})")
        if r.missing:
            lines.append("the file is missing (File › Import folder finds moved files)")
        return "\n".join(lines)

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        self._sort = (column, order)
        col = COLUMNS[column][0]
        self.layoutAboutToBeChanged.emit()
        known = [r for r in self.rows if _sort_key(col, r) is not None]
        unknown = [r for r in self.rows if _sort_key(col, r) is None]
        known.sort(key=lambda r: (_sort_key(col, r), r.path), reverse=order == Qt.SortOrder.DescendingOrder)
        unknown.sort(key=lambda r: r.path)
        self.rows = known + unknown
        self.layoutChanged.emit()

    # -- updates ---------------------------------------------------------------------------
    def set_rows(self, rows: list) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()
        self.sort(*self._sort)

    def row_of(self, clip_id: Optional[int]) -> int:
        for i, r in enumerate(self.rows):
            if r.id == clip_id:
                return i
        return -1

    def update_clip(self, row) -> None:
        i = self.row_of(row.id)
        if i >= 0:
            self.rows[i] = row
            self.dataChanged.emit(self.index(i, 0), self.index(i, len(COLUMNS) - 1))

    def set_current(self, clip_id: Optional[int]) -> None:
        old = self.row_of(self.current_id)
        self.current_id = clip_id
        for i in {old, self.row_of(clip_id)}:
            if i >= 0:
                self.dataChanged.emit(self.index(i, 0), self.index(i, len(COLUMNS) - 1))

    def clip_at(self, row: int):
        return self.rows[row] if 0 <= row < len(self.rows) else None


# ---------------------------------------------------------------------------- undo


class AnnotateCommand(QUndoCommand):
    """One annotation change; undo/redo go through ``restore_annotation`` (nothing is deleted).

    ``before``: the clip's current annotation row id before the change (None: none).
    ``after``: the row the change wrote (already written when the command is pushed).
    """

    def __init__(self, panel: LibraryPanel, clip_id: int, before: Optional[int], after: Optional[int],
                 text: str):
        super().__init__(text)
        self.panel, self.clip_id, self.before, self.after = panel, clip_id, before, after
        self._pushed = False

    def redo(self) -> None:
        if not self._pushed:  # written by the panel before the push
            self._pushed = True
            return
        self.panel._restore(self.clip_id, self.after, reveal=False)

    def undo(self) -> None:
        self.panel._restore(self.clip_id, self.before, reveal=True)


# ---------------------------------------------------------------------------- workers


def predict_counts_fn(lib, bundle, clip_ids: list[int], model_name: str, batch: int = 8,
                      progress=None, cancel=None) -> dict:
    """The counter's (count, confidence) for each clip, stored in the library as it goes."""
    import torch

    from ..analysis.localize import predict_count

    torch.set_num_threads(1)
    done, failed, buf = 0, [], []

    def flush():
        if buf:
            lib.set_predictions(list(buf), model_name)
            emit(progress, "predict", done, len(clip_ids), "", clip_ids=[b[0] for b in buf])
            buf.clear()

    emit(progress, "predict", 0, len(clip_ids))
    try:
        for cid in clip_ids:
            check_cancel(cancel, "prediction")
            clip = lib.get(cid)
            try:
                n, conf, _rate = predict_count(bundle, clip.path)
            except AVStudioError as exc:
                failed.append((clip.path, str(exc)))
                continue
            finally:
                done += 1
            buf.append((cid, int(max(0, min(16, n))), float(max(0.0, min(1.0, conf)))))
            if len(buf) >= batch:
                flush()
            else:
                emit(progress, "predict", done, len(clip_ids))
    finally:
        flush()  # what is predicted is kept, also when cancelled
    return {"predicted": done - len(failed), "failed": failed}


# ---------------------------------------------------------------------------- the panel


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
        self._who: Optional[str] = None  # the annotator (None: $AVSTUDIO_WHO or the user name)
        self.undo_stack = QUndoStack(self)
        self.job: Optional[Job] = None
        self.last_report = None
        self._taken: dict[int, tuple[QAction, list[QKeySequence]]] = {}  # id -> (action, its keys before)
        self._keys_on = False
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
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setShowGrid(False)
        h = self.table.horizontalHeader()
        h.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        h.setSectionResizeMode(COL["name"], QHeaderView.ResizeMode.Stretch)
        h.setMinimumSectionSize(30)
        fm = self.table.fontMetrics()
        widest = {"count": "00", "unsure": "unsure", "pred": "00", "conf": "0.00", "stage": "C10",
                  "duration": "100.0 s", "missing": "missing"}
        for key, sample in widest.items():  # narrow columns: the name gets the rest
            text = max(sample, COLUMNS[COL[key]][1], key=fm.horizontalAdvance)
            h.resizeSection(COL[key], fm.horizontalAdvance(text) + 16)
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

        self._make_actions()
        self.new_btn.clicked.connect(lambda: self.action("new_library").trigger())
        self.open_btn.clicked.connect(lambda: self.action("open_library").trigger())
        win.clipOpened.connect(self._on_clip_opened)
        self._update_enabled()

    @property
    def who(self) -> str:
        return self._who or default_who()

    @who.setter
    def who(self, name: Optional[str]) -> None:
        self._who = name

    # ======================================================================== actions
    def _make_actions(self) -> None:
        from .keys import make_action

        self.actions_by_name: dict[str, QAction] = {}
        win = self.win

        def A(name, text, slot, keys=(), tip="", checkable=False) -> QAction:
            a = make_action(win, name, text, slot, keys, tip, checkable=checkable)
            self.actions_by_name[name] = a
            return a

        self.file_actions = [
            A("new_library", "&New library…", self.new_library_dialog, [], "Create a clip library"),
            A("open_library", "Open &library…", self.open_library_dialog, ["Ctrl+L"], "Open a clip library"),
            A("import_folder", "&Import folder into the library…", self.import_folder_dialog, ["Ctrl+I"],
              "Add every video of a folder (and its sub-folders) to the library"),
            A("import_manifest", "Import &manifest into the library…", self.import_manifest_dialog, [],
              "Add the clips and counts of a manifest CSV (path,count)"),
            A("export_library_csv", "Export library as CS&V…", lambda: self.export_dialog("csv"), [],
              "Write the annotated clips as a manifest CSV"),
            A("export_library_json", "Export library as &JSON…", lambda: self.export_dialog("json"), [],
              "Write every clip with its annotation history, predictions and runs as JSON"),
            A("close_library", "Close library", self.close_library, [], "Close the clip library"),
        ]
        self.undo_action = A("undo", "&Undo", self.undo, ["Ctrl+Z"], "Undo the last annotation change")
        self.redo_action = A("redo", "&Redo", self.redo, ["Ctrl+Shift+Z", "Ctrl+Y"],
                             "Redo the annotation change undone last")
        self.undo_stack.canUndoChanged.connect(self._update_undo)
        self.undo_stack.canRedoChanged.connect(self._update_undo)
        self.undo_stack.indexChanged.connect(lambda _i: self._update_undo())
        self.edit_actions = [self.undo_action, self.redo_action]

        names = {0: "0 sources (none audible)", 1: "1 source"}
        lib_acts = []
        for n in range(MAX_KEY_COUNT + 1):
            lib_acts.append(A(f"annotate_{n}", f"Count: {names.get(n, f'{n} sources')}",
                              lambda n=n: self.annotate_player_clip(n), [],
                              f"The clip in the player has {n} audible source{'s' if n != 1 else ''}; "
                              "go to the next clip to annotate"))
        lib_acts += [
            A("annotate_other", "Count: other…", self.annotate_other, [],
              "Type the number of audible sources of the clip in the player (0 to 16)"),
            A("annotate_unsure", "Unsure / can't tell", self.toggle_unsure, [],
              "Mark the count of the clip in the player as unsure (a clip without a count: can't tell)"),
            A("annotate_clear", "Clear the annotation", self.clear_player_clip, [],
              "Make the clip in the player unannotated again"),
            A("next_unannotated", "&Next clip to annotate", self.go_next, ["N"],
              "Open the next clip to annotate (the counter's least certain first)"),
            A("annotate_keys", "Number keys annotate (0–4, ?)", self.set_annotation_keys, [],
              "While on, 0–4 and ? annotate the clip in the player (instead of showing/hiding sounds "
              "and the keyboard help)", checkable=True),
            A("find_clips", "&Find clips", self.focus_search, ["Ctrl+F"], "Search the library's clips"),
            A("predict_counts", "&Predict counts of unannotated clips", self.predict_counts, [],
              "Run the model's source counter over the clips not annotated yet"),
        ]
        self.library_actions = lib_acts
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
        self._update_undo()

    def action(self, name: str) -> QAction:
        return self.actions_by_name[name]

    def _button(self, row, name: str, text: str, object_name: str = "") -> QToolButton:
        """A short button for an action (its menu text is too long for a button)."""
        a = self.action(name)
        b = _no_focus(QToolButton())
        b.setText(text)
        if object_name:
            b.setObjectName(object_name)
            b.setMinimumWidth(30)
        b.clicked.connect(lambda _c=False: a.trigger())

        def sync():
            b.setEnabled(a.isEnabled())
            b.setToolTip(a.toolTip())

        a.changed.connect(sync)
        sync()
        row.addWidget(b)
        return b

    def _update_undo(self) -> None:
        try:
            s = self.undo_stack
            s.canUndo()
        except RuntimeError:  # the window is being destroyed
            return
        self.undo_action.setEnabled(s.canUndo())
        self.redo_action.setEnabled(s.canRedo())
        self.undo_action.setStatusTip(f"Undo {s.undoText()}" if s.canUndo() else "Nothing to undo")
        self.redo_action.setStatusTip(f"Redo {s.redoText()}" if s.canRedo() else "Nothing to redo")
        self.undo_action.setToolTip(self.undo_action.statusTip())
        self.redo_action.setToolTip(self.redo_action.statusTip())

    def _update_enabled(self) -> None:
        on = self.lib is not None
        names = ("import_folder", "import_manifest", "export_library_csv", "export_library_json", "close_library",
                 "next_unannotated", "find_clips", "predict_counts", "annotate_keys", "annotate_unsure",
                 "annotate_clear", "annotate_other") + tuple(f"annotate_{n}" for n in range(MAX_KEY_COUNT + 1))
        for name in names:
            self.action(name).setEnabled(on)
        self.stack.setCurrentIndex(1 if on else 0)

    # ======================================================================== number keys
    def set_annotation_keys(self, on: bool) -> None:
        """Give 0–4 and ? to the annotation actions (taking them from any other action of the
        window), or give them back."""
        on = bool(on) and self.lib is not None
        if on == self._keys_on:
            self._sync_keys_action()
            return
        win = self.win
        mine = set(ANNOTATION_KEYS)
        others = [a for a in win.findChildren(QAction) if a.objectName() not in mine]
        if on:
            wanted = {QKeySequence(k) for k in ANNOTATION_KEYS.values()}
            for a in others:
                keys = a.shortcuts()
                if any(k in wanted for k in keys):
                    self._taken[id(a)] = (a, keys)
                    a.setShortcuts([k for k in keys if k not in wanted])
            for name, key in ANNOTATION_KEYS.items():
                a = self.action(name)
                a.setShortcut(QKeySequence(key))
                a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
                a.setToolTip(f"{a.statusTip()} ({key})")
        else:
            for name in ANNOTATION_KEYS:
                self.action(name).setShortcuts([])
                self.action(name).setToolTip(self.action(name).statusTip())
            for a, keys in self._taken.values():
                try:
                    a.setShortcuts(keys)
                except RuntimeError:  # deleted meanwhile
                    pass
            self._taken.clear()
        self._keys_on = on
        self._sync_keys_action()
        self._update_key_note()

    def _sync_keys_action(self) -> None:
        a = self.action("annotate_keys")
        a.blockSignals(True)
        a.setChecked(self._keys_on)
        a.blockSignals(False)

    def _update_key_note(self) -> None:
        if self.lib is None:
            self.win.library_status.setText("")
            return
        st = self._stats
        txt = f"Library: {st.get('annotated', 0)}/{st.get('clips', 0)} annotated"
        if self._keys_on:
            txt += "  ·  keys 0–4 count, ? unsure, N next"
        self.win.library_status.setText(txt)

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
        self.undo_stack.clear()
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
        self._on_clip_opened(self.win.path or "")
        self.set_annotation_keys(True)
        self.win.library_dock.show()
        self.win.library_dock.raise_()
        self.win.statusBar().showMessage(f"Library {lib.path}: {len(lib)} clips", 5000)
        self.libraryChanged.emit()
        return True

    def close_library(self) -> None:
        if self.lib is None:
            return
        self.cancel_job(wait=True)
        self.set_annotation_keys(False)
        self.lib.close()
        self.lib = None
        self.undo_stack.clear()
        self.model.set_rows([])
        self._player_clip_id = None
        self._stats = {}
        self._update_enabled()
        self._update_key_note()
        self.libraryChanged.emit()

    def _fill_filters(self) -> None:
        cur = self.filter.currentData()
        self.filter.blockSignals(True)
        self.filter.clear()
        for label, f, s in FILTERS:
            self.filter.addItem(label, (f, s))
        if self.lib is not None:
            for st, n in self.lib.stage_summary().items():
                if st == "unknown":
                    self.filter.addItem(f"No stage ({n})", (None, "none"))
                else:
                    self.filter.addItem(f"Stage {st} ({n})", (None, st))
        i = next((j for j in range(self.filter.count()) if self.filter.itemData(j) == cur), 0)
        self.filter.setCurrentIndex(i)
        self.filter.blockSignals(False)

    # ======================================================================== listing
    _stats: dict = {}

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
        st = self.lib.stats()
        self._stats = st
        stages = "  ".join(f"{k} {v}" for k, v in st["stages"].items() if k != "unknown")
        secs = st["hours"] * 3600
        length = f"{secs:.0f} s" if secs < 120 else f"{secs / 60:.0f} min" if secs < 7200 else f"{st['hours']:.1f} h"
        parts = [f"{st['clips']} clips ({length})", f"{st['annotated']} annotated",
                 f"{st['unannotated']} to do"]
        if st["unsure"]:
            parts.append(f"{st['unsure']} unsure")
        if st["missing"]:
            parts.append(f"{st['missing']} missing")
        if st["predicted"]:
            parts.append(f"{st['predicted']} predicted")
        shown = len(self.model.rows)
        self.summary.setText(" · ".join(parts) + (f"\nStages: {stages}" if stages else "")
                             + (f"\nShowing {shown}" if shown != st["clips"] else ""))
        self._update_key_note()

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
        if self.lib is None or not self.win.path:
            return None
        if self._player_clip_id is not None:
            try:
                r = self.lib.get(self._player_clip_id)
                return r
            except AVStudioError:
                pass
        return self.lib.find(self.win.path)

    def _on_clip_opened(self, path: str) -> None:
        if self.lib is None:
            return
        r = self.lib.find(path) if path else None
        self._player_clip_id = None if r is None else r.id
        self.model.set_current(self._player_clip_id)
        if r is not None:
            self.select_clip(r.id)
        self._update_player_label()

    def _update_player_label(self) -> None:
        if self.lib is None:
            return
        r = self.player_clip()
        if r is None:
            self.player_label.setText("The clip in the player is not in this library. Double-click a clip "
                                      "to open it." if self.win.path else
                                      "Double-click a clip to open it in the player")
            return
        if not r.annotated:
            state = "not annotated"
            if r.predicted_count is not None:
                state += f" (counter: {r.predicted_count}"
                state += f", confidence {r.predicted_confidence:.2f})" if r.predicted_confidence is not None else ")"
        elif r.count is None:
            state = "can't tell"
        else:
            state = f"<b>{r.count}</b> source{'s' if r.count != 1 else ''}" + (" (unsure)" if r.unsure else "")
        self.player_label.setText(f"In the player: <b>{Path(r.path).name}</b> — {state}")

    # ======================================================================== annotating
    def _current_row_id(self, clip_id: int) -> Optional[int]:
        hist = self.lib.annotation_history(clip_id)
        return hist[-1].id if hist else None

    def _need_player_clip(self):
        if self.lib is None:
            return None
        r = self.player_clip()
        if r is None:
            self.win.statusBar().showMessage("Open a clip of the library first (double-click it in the list)", 5000)
        return r

    def _write(self, clip, fn: Callable[[], Optional[int]], text: str) -> bool:
        try:
            before = self._current_row_id(clip.id)
            after = fn()
        except AVStudioError as exc:
            self.win.error(str(exc), "Cannot save the annotation")
            return False
        self.undo_stack.push(AnnotateCommand(self, clip.id, before, after, text))
        self.clip_changed(clip.id)
        return True

    def annotate_player_clip(self, count: Optional[int], unsure: bool = False, advance: bool = True) -> bool:
        """Save ``count`` for the clip in the player, then open the next clip to annotate."""
        r = self._need_player_clip()
        if r is None:
            return False
        c = "can't tell" if count is None else f"{count}"
        if not self._write(r, lambda: self.lib.annotate(r.id, count, unsure=unsure, who=self.who),
                           f"count {c} for {Path(r.path).name}"):
            return False
        self.win.statusBar().showMessage(f"{Path(r.path).name}: {c}{' (unsure)' if unsure else ''}", 4000)
        if advance:
            self.go_next(after=r.id)
        return True

    def annotate_other(self) -> bool:
        """Ask for any count 0..16 (the keys cover 0-4)."""
        from PySide6.QtWidgets import QInputDialog

        from ..data.library import MAX_COUNT

        r = self._need_player_clip()
        if r is None:
            return False
        start = r.count if r.count is not None else (r.predicted_count or MAX_KEY_COUNT + 1)
        n, ok = QInputDialog.getInt(self.win, "Number of sound sources",
                                    f"Audible sources in {Path(r.path).name} (0 to {MAX_COUNT}):",
                                    int(start), 0, int(MAX_COUNT))
        return self.annotate_player_clip(int(n)) if ok else False

    def toggle_unsure(self) -> bool:
        """``?``: toggle "unsure" on the clip's count; a clip without one becomes "can't tell"."""
        r = self._need_player_clip()
        if r is None:
            return False
        if not r.annotated:
            return self.annotate_player_clip(None)
        flag = not r.unsure
        ok = self._write(r, lambda: self.lib.annotate(r.id, r.count, unsure=flag, who=self.who),
                         f"{'unsure' if flag else 'sure'} for {Path(r.path).name}")
        if ok:
            self.win.statusBar().showMessage(f"{Path(r.path).name}: {'unsure' if flag else 'sure'}", 4000)
        return ok

    def clear_player_clip(self) -> bool:
        r = self._need_player_clip()
        if r is None or not r.annotated:
            return False
        return self._write(r, lambda: self.lib.clear_annotation(r.id, who=self.who),
                           f"clear {Path(r.path).name}")

    def _restore(self, clip_id: int, annotation_id: Optional[int], reveal: bool) -> None:
        if self.lib is None:
            return
        try:
            self.lib.restore_annotation(clip_id, annotation_id, who=self.who)
        except AVStudioError as exc:
            self.win.statusBar().showMessage(f"Cannot undo: {exc}", 8000)
            return
        self.clip_changed(clip_id)
        if reveal and self._player_clip_id != clip_id:
            self.open_clip(clip_id)
        else:
            self.select_clip(clip_id)

    def undo(self) -> None:
        if self.undo_stack.canUndo():
            text = self.undo_stack.undoText()
            self.undo_stack.undo()
            self.win.statusBar().showMessage(f"Undone: {text}", 4000)

    def redo(self) -> None:
        if self.undo_stack.canRedo():
            text = self.undo_stack.redoText()
            self.undo_stack.redo()
            self.win.statusBar().showMessage(f"Redone: {text}", 4000)

    def go_next(self, after: Optional[int] = None) -> Optional[int]:
        """Open the next clip to annotate in the player; returns its id (None: all done)."""
        if self.lib is None:
            return None
        if after is None:
            after = self._player_clip_id
        try:
            nxt = self.lib.next_unannotated(after_clip_id=after) if after is not None else None
            if nxt is None:
                nxt = self.lib.next_unannotated()
        except AVStudioError as exc:
            self.win.statusBar().showMessage(str(exc), 6000)
            return None
        if nxt is None:
            self.win.statusBar().showMessage("Every clip of the library is annotated", 6000)
            return None
        self.open_clip(nxt.id)
        return nxt.id

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
        msg = f"Imported {rep.added} clip{'s' if rep.added != 1 else ''}"
        extra = []
        if rep.skipped:
            extra.append(f"{rep.skipped} already there")
        if rep.annotated:
            extra.append(f"{rep.annotated} counts")
        if rep.relinked:
            extra.append(f"{rep.relinked} moved files found again")
        if rep.failed:
            extra.append(f"{len(rep.failed)} not imported")
        if extra:
            msg += " (" + ", ".join(extra) + ")"
        self.win.statusBar().showMessage(msg, 8000)
        if rep.failed:
            lines = "\n".join(f"{Path(p).name}: {why}" for p, why in rep.failed[:12])
            more = f"\n… and {len(rep.failed) - 12} more" if len(rep.failed) > 12 else ""
            QMessageBox.warning(self.win, "Some files were not imported", f"{msg}.\n\n{lines}{more}")

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
        bundle = self.win.bundle
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
        job = Job("library-predict", predict_counts_fn, self.lib, bundle, ids, name)

        def done(res):
            msg = f"Predicted the count of {res['predicted']} clips"
            if res["failed"]:
                msg += f" ({len(res['failed'])} could not be read)"
            self.win.statusBar().showMessage(msg, 8000)

        return job if self._start_job(job, "Predicting counts", done) else None


# ---------------------------------------------------------------------------- main window


def _menu(win, title: str) -> Optional[QMenu]:
    for a in win.menuBar().actions():
        m = a.menu()
        if m is not None and a.text().replace("&", "") == title:
            return m
    return None


def _insert_menu_before(win, menu: QMenu, before_title: Optional[str]) -> None:
    before = None
    for a in win.menuBar().actions():
        if before_title and a.text().replace("&", "") == before_title:
            before = a
            break
    if before is not None:
        win.menuBar().insertMenu(before, menu)
    else:
        win.menuBar().addMenu(menu)


def _add_group(win, title: str, acts: list[QAction], after: Optional[str] = None) -> None:
    groups = win.action_groups()
    for name, lst in groups:
        if name == title:
            names = [a.objectName() for a in lst]
            pos = names.index("quit") if "quit" in names else len(lst)
            lst[pos:pos] = acts
            return
    pos = len(groups)
    if after is not None:
        for i, (name, _) in enumerate(groups):
            if name == after:
                pos = i + 1
    groups.insert(pos, (title, acts))


def install_library_panels(win) -> None:
    """Add the library and fine-tune panels, their actions and menus to the main window."""
    from .finetune_panel import FinetunePanel

    win.library_status = QLabel("")
    win.library_status.setObjectName("statusLibrary")
    win.statusBar().addPermanentWidget(win.library_status)

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
    timeline_dock = getattr(win, "timeline_dock", None)
    if timeline_dock is not None:
        win.tabifyDockWidget(timeline_dock, fdock)
        timeline_dock.raise_()
    win.finetune_dock = fdock
    win.resizeDocks([dock], [480], Qt.Orientation.Horizontal)

    def show_finetune():
        fdock.show()
        fdock.raise_()

    finetune_act = QAction("&Fine-tune on the library…", win)
    finetune_act.setObjectName("show_finetune")
    finetune_act.setStatusTip("Fine-tune the model on the library's annotated clips, simple scenes first")
    finetune_act.triggered.connect(lambda _c=False: show_finetune())
    win.addAction(finetune_act)
    panel.actions_by_name["show_finetune"] = finetune_act
    panel.library_actions.append(finetune_act)

    # menus: File (library files), Edit (undo/redo, new), Library (annotation, predictions)
    file_menu = _menu(win, "File")
    if file_menu is not None:
        quit_act = win.actions_by_name.get("quit")
        before = quit_act if quit_act in file_menu.actions() else None
        for a in panel.file_actions:
            file_menu.insertAction(before, a) if before is not None else file_menu.addAction(a)
            if a.objectName() in ("import_manifest", "export_library_json", "close_library"):
                file_menu.insertSeparator(before) if before is not None else file_menu.addSeparator()
    edit = QMenu("&Edit", win)
    for a in panel.edit_actions:
        edit.addAction(a)
    _insert_menu_before(win, edit, "Playback")
    libm = QMenu("&Library", win)
    for a in panel.library_actions:
        libm.addAction(a)
        if a.objectName() in ("annotate_clear", "annotate_keys", "find_clips", "predict_counts"):
            libm.addSeparator()
    _insert_menu_before(win, libm, "Help")
    win.library_menu = libm
    view = _menu(win, "View")
    if view is not None:
        view.addAction(dock.toggleViewAction())
        view.addAction(fdock.toggleViewAction())

    # the keyboard help (Help › Keyboard shortcuts) lists these from the same actions
    _add_group(win, "File", list(panel.file_actions))
    _add_group(win, "Edit", list(panel.edit_actions), after="File")
    _add_group(win, "Library", list(panel.library_actions), after="Analysis")
    for name, a in panel.actions_by_name.items():
        win.actions_by_name.setdefault(name, a)

    dock.hide()
    fdock.hide()
    state = win.qsettings.value("window/state")
    if state is not None:  # the saved layout, now that these docks exist
        try:
            win.restoreState(state)
        except TypeError:
            pass
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


__all__ = ["LibraryPanel", "ClipTableModel", "AnnotateCommand", "install_library_panels",
           "open_library_from_args", "predict_counts_fn"]
