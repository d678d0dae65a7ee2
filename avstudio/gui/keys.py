"""The window's actions from the action table (avstudio/studio/actions.py): QActions, menus,
and Help > Keyboard, every shortcut of the window, generated from them."""

from __future__ import annotations

import functools
from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QMenu,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ..studio.actions import MENUS, Action
from . import style


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
    if slot is not None:
        if checkable:
            a.toggled.connect(slot)
        else:
            a.triggered.connect(lambda _checked=False: slot())
    window.addAction(a)
    return a


def _icon(window, name: Optional[str]):
    if name is None:
        return None
    if name.startswith("std:"):
        return window.style().standardIcon(getattr(QStyle.StandardPixmap, name[4:]))
    return style.icon(name)


def build_actions(window, specs: list[Action]) -> dict[str, QAction]:
    """A QAction for each row of the action table (avstudio/studio/actions.py), not yet
    connected (their owners may not exist yet: :func:`connect_actions`)."""
    out = {}
    for s in specs:
        a = make_action(window, s.name, s.text, None, s.keys, s.tip, _icon(window, s.icon), s.checkable)
        if s.checkable and s.checked:
            a.setChecked(True)
        out[s.name] = a
    return out


def connect_actions(actions: dict[str, QAction], specs: list[Action], owners: dict[str, object]) -> None:
    """Connect each action to its row's method (``owner.slot(*args)``; a checkable one gets its
    new state). A bound method of a QObject, or a functools.partial of one."""
    for s in specs:
        fn = getattr(owners[s.owner], s.slot)
        if s.args:
            fn = functools.partial(fn, *s.args)
        a = actions[s.name]
        if s.checkable:
            a.toggled.connect(fn)
        else:
            a.triggered.connect(lambda _checked=False, fn=fn: fn())


def build_menus(window, actions: dict[str, QAction], recent: QMenu) -> dict[str, QMenu]:
    """The menu bar from the action table; ``recent`` goes where a row says "recent"."""
    menus = {}
    for m in MENUS:
        menu = window.menuBar().addMenu("&" + m.title)
        menu.setToolTipsVisible(True)  # a disabled item says why on hover
        subs: dict[str, QMenu] = {}
        for s in m.actions:
            if s.submenu:
                if s.submenu not in subs:
                    subs[s.submenu] = menu.addMenu(s.submenu)
                subs[s.submenu].addAction(actions[s.name])
                continue
            menu.addAction(actions[s.name])
            if s.after == "recent":
                menu.addMenu(recent)
                menu.addSeparator()
            elif s.after == "separator":
                menu.addSeparator()
        menus[m.title] = menu
    return menus


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
