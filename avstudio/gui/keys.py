"""Help > Keyboard: every shortcut of the window, generated from its QActions."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QHeaderView, QTableWidget, QTableWidgetItem, QVBoxLayout


def make_action(window, name: str, text: str, slot, keys=(), tip: str = "", icon=None,
                checkable: bool = False) -> QAction:
    """A window-wide QAction named ``name`` (tests trigger it by name; Help > Keyboard lists its
    ``keys``), added to ``window`` so its shortcuts work whatever widget has the focus."""
    a = QAction(text, window)
    a.setObjectName(name)
    if keys:
        a.setShortcuts([QKeySequence(k) for k in keys])
        a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    if tip:
        a.setToolTip(tip + (f" ({', '.join(keys)})" if keys else ""))
        a.setStatusTip(tip)
    if icon is not None:
        a.setIcon(icon)
    a.setCheckable(checkable)
    if checkable:
        a.toggled.connect(slot)
    else:
        a.triggered.connect(lambda _checked=False: slot())
    window.addAction(a)
    return a


def shortcut_rows(window, only: set[str] | None = None) -> list[tuple[str, str, str]]:
    """(menu, action text, shortcuts) for every action of ``window`` that has a shortcut
    (``only``: just the actions with these object names)."""
    rows = []
    for group, acts in window.action_groups():
        for a in acts:
            if only is not None and a.objectName() not in only:
                continue
            keys = [k.toString(QKeySequence.SequenceFormat.NativeText) for k in a.shortcuts()]
            if keys:
                rows.append((group, a.text().replace("&", ""), ", ".join(keys)))
    return rows


def markdown_table(window, only: set[str] | None = None) -> str:
    lines = ["| Menu | Action | Keys |", "|---|---|---|"]
    for group, text, keys in shortcut_rows(window, only):
        ks = " / ".join(f"`{k.strip()}`" for k in keys.split(", "))
        lines.append(f"| {group} | {text} | {ks} |")
    return "\n".join(lines) + "\n"


class KeyboardDialog(QDialog):
    def __init__(self, window):
        super().__init__(window)
        self.setWindowTitle("Keyboard shortcuts")
        self.resize(560, 640)
        lay = QVBoxLayout(self)
        rows = shortcut_rows(window)
        t = QTableWidget(len(rows), 3)
        t.setHorizontalHeaderLabels(["Menu", "Action", "Keys"])
        t.verticalHeader().setVisible(False)
        t.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        t.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        t.setAlternatingRowColors(True)
        for r, (g, text, keys) in enumerate(rows):
            for c, v in enumerate((g, text, keys)):
                it = QTableWidgetItem(v)
                if c == 2:
                    f = it.font()
                    f.setBold(True)
                    it.setFont(f)
                t.setItem(r, c, it)
        h = t.horizontalHeader()
        h.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        h.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        h.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.table = t
        lay.addWidget(t)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        bb.rejected.connect(self.reject)
        bb.accepted.connect(self.accept)
        lay.addWidget(bb)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
