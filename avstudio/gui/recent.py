"""File › Open recent: the last clips opened, kept in the window's settings."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QMenu

MAX_RECENT = 10


class RecentFiles:
    def __init__(self, win):
        self.win = win
        self.menu = QMenu("Open &recent", win)
        self.refresh()

    def files(self) -> list[str]:
        v = self.win.qsettings.value("recent", [])
        if isinstance(v, str):
            v = [v]
        return [str(x) for x in (v or [])]

    def add(self, path: str) -> None:
        p = str(Path(path).resolve())
        r = [x for x in self.files() if x != p]
        r.insert(0, p)
        self.win.qsettings.setValue("recent", r[:MAX_RECENT])
        self.win.qsettings.sync()
        self.refresh()

    def clear(self) -> None:
        self.win.qsettings.setValue("recent", [])
        self.refresh()

    def refresh(self) -> None:
        self.menu.clear()
        files = self.files()
        for p in files:
            a = self.menu.addAction(Path(p).name)
            a.setToolTip(p)
            a.setStatusTip(p)
            a.triggered.connect(lambda _c=False, p=p: self.win.open_file(p))
        if not files:
            self.menu.addAction("(none)").setEnabled(False)
        else:
            self.menu.addSeparator()
            self.menu.addAction("Clear the list").triggered.connect(lambda _c=False: self.clear())
