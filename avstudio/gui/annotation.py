"""Annotating the clip library from the player: the count keys and buttons, "unsure", "clear",
"next clip to annotate", and undo/redo (a QUndoStack whose commands go through the library's
``restore_annotation``: nothing is ever deleted from the library).

While a library is open the number keys annotate (Library › Number keys annotate, on by
default): ``0``–``4`` and ``?`` are taken from the actions that hold them otherwise (show/hide
sound 1–4, keyboard help) and given back when the mode is turned off or the library closed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence, QUndoCommand, QUndoStack

from ..errors import AVStudioError
from ..studio.library_table import ANNOTATION_KEYS, MAX_KEY_COUNT, default_who


class AnnotateCommand(QUndoCommand):
    """One annotation change; undo/redo go through ``restore_annotation`` (nothing is deleted).

    ``before``: the clip's current annotation row id before the change (None: none).
    ``after``: the row the change wrote (already written when the command is pushed).
    """

    def __init__(self, annotator: Annotator, clip_id: int, before: Optional[int], after: Optional[int],
                 text: str):
        super().__init__(text)
        self.annotator, self.clip_id, self.before, self.after = annotator, clip_id, before, after
        self._pushed = False

    def redo(self) -> None:
        if not self._pushed:  # written before the push
            self._pushed = True
            return
        self.annotator._restore(self.clip_id, self.after, reveal=False)

    def undo(self) -> None:
        self.annotator._restore(self.clip_id, self.before, reveal=True)


class Annotator(QObject):
    """The library panel's annotation: the actions the table gives to ``owner="annotation"``."""

    def __init__(self, panel):
        super().__init__(panel)
        self.panel = panel
        self.win = panel.win
        self._who: Optional[str] = None  # the annotator (None: $AVSTUDIO_WHO or the user name)
        self.undo_stack = QUndoStack(self)
        self._taken: dict[int, tuple[QAction, list[QKeySequence]]] = {}  # id -> (action, its keys before)
        self._keys_on = False
        self.undo_stack.canUndoChanged.connect(self._update_undo)
        self.undo_stack.canRedoChanged.connect(self._update_undo)
        self.undo_stack.indexChanged.connect(self._on_index)
        self._update_undo()

    @property
    def lib(self):
        return self.panel.lib

    @property
    def who(self) -> str:
        return self._who or default_who()

    @who.setter
    def who(self, name: Optional[str]) -> None:
        self._who = name

    @property
    def keys_on(self) -> bool:
        """Whether 0–4 and ? annotate now."""
        return self._keys_on

    def _on_index(self, _i: int) -> None:
        self._update_undo()

    def _update_undo(self) -> None:
        try:
            s = self.undo_stack
            s.canUndo()
        except RuntimeError:  # the window is being destroyed
            return
        u, r = self.win.action("undo"), self.win.action("redo")
        u.setEnabled(s.canUndo())
        r.setEnabled(s.canRedo())
        u.setStatusTip(f"Undo {s.undoText()}" if s.canUndo() else "Nothing to undo")
        r.setStatusTip(f"Redo {s.redoText()}" if s.canRedo() else "Nothing to redo")
        u.setToolTip(u.statusTip())
        r.setToolTip(r.statusTip())

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
                a = self.win.action(name)
                a.setShortcut(QKeySequence(key))
                a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
                a.setToolTip(f"{a.statusTip()} ({key})")
        else:
            for name in ANNOTATION_KEYS:
                self.win.action(name).setShortcuts([])
                self.win.action(name).setToolTip(self.win.action(name).statusTip())
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
        a = self.win.action("annotate_keys")
        a.blockSignals(True)
        a.setChecked(self._keys_on)
        a.blockSignals(False)

    def _update_key_note(self) -> None:
        self.panel.update_key_note()

    def _current_row_id(self, clip_id: int) -> Optional[int]:
        hist = self.lib.annotation_history(clip_id)
        return hist[-1].id if hist else None

    def _need_player_clip(self):
        if self.lib is None:
            return None
        r = self.panel.player_clip()
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
        self.panel.clip_changed(clip.id)
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
        self.panel.clip_changed(clip_id)
        if reveal and self.panel._player_clip_id != clip_id:
            self.panel.open_clip(clip_id)
        else:
            self.panel.select_clip(clip_id)

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
            after = self.panel._player_clip_id
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
        self.panel.open_clip(nxt.id)
        return nxt.id
