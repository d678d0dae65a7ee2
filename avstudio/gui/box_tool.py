"""The box tool: draw boxes around what makes the sound, on any frame of a library clip, and
read how well the model's heatmap matches them (docs/boxes.md, docs/gui.md).

Qt wiring only: the editing logic is :class:`avstudio.data.box_editor.BoxEditor` (Qt-free), the
storage the clip library, the scores :mod:`avstudio.analysis.box_eval` (the code behind
``avstudio eval --library``). The video view forwards the left button here while the tool is
on; every finished edit is one library revision and one step of Edit › Undo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QUndoCommand
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import AVStudioError
from ..studio.overlay import cluster_colour
from . import style
from .jobs import Job
from .render import BoxLayer

BINARISATIONS = [("0.5", "at 0.5 of the normalised map (primary)"),
                 ("median", "at the median (the Flickr/VGG-SS code)")]

#: keys the tool takes from the window's other actions while it is on (given back after)
TOOL_KEYS = [str(n) for n in range(1, 10)] + ["Esc", "Delete", "Backspace", "C", "F2"]


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{v:.2f}"


class BoxCommand(QUndoCommand):
    """One box edit on Edit › Undo: undo/redo make a revision of the frame current again
    (``restore_boxes``: nothing is deleted)."""

    def __init__(self, tool: BoxTool, edit):
        super().__init__(edit.text)
        self.tool, self.edit = tool, edit
        self._pushed = False

    def redo(self) -> None:
        if not self._pushed:  # the edit is already saved when the command is pushed
            self._pushed = True
            return
        self.tool.restore(self.edit.clip_id, self.edit.frame, self.edit.after)

    def undo(self) -> None:
        self.tool.restore(self.edit.clip_id, self.edit.frame, self.edit.before)


def score_frames_fn(bundle, path: str, frames: list, audio=None, progress=None, cancel=None) -> dict:
    """The model's maps of these frames (a Job; torch works in this thread)."""
    import torch

    from ..analysis.box_eval import clip_frame_maps

    torch.set_num_threads(1)
    return clip_frame_maps(bundle, path, frames, audio=audio, progress=progress, cancel=cancel)


class FrameScorer(QObject):
    """One model's scores on the open clip's annotated frames: its maps of those frames,
    computed in the background (a Job) and kept, and every frame's current boxes scored against
    them (no model run when boxes change). ``bundle_fn()`` gives the model (None: none loaded)."""

    updated = Signal()  # scores changed, or scoring started, finished or failed

    def __init__(self, tool: BoxTool, label: str, bundle_fn):
        super().__init__(tool)
        self.tool = tool
        self.label = label
        self.bundle_fn = bundle_fn
        self.maps: dict[int, dict] = {}  # frame -> the model's maps (for the open clip and model)
        self.maps_key: Optional[tuple] = None  # (clip path, model id)
        self.audio = None
        self.job: Optional[Job] = None
        self.pending = False
        self.scores: dict[int, dict] = {}  # frame -> scores (of the frame's current boxes)
        self.last_error: Optional[str] = None

    @property
    def bundle(self):
        return self.bundle_fn()

    @property
    def name(self) -> str:
        b = self.bundle
        return getattr(b, "name", "") if b is not None else ""

    def model_key(self) -> Optional[tuple]:
        b = self.bundle
        path = self.tool.win.player.path
        if b is None or path is None:
            return None
        try:
            mid = b.model_id
        except OSError:
            mid = getattr(b, "name", "")
        return (path, mid)

    def reset(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.job = None
        self.maps = {}
        self.maps_key = None
        self.audio = None
        self.scores = {}
        self.last_error = None
        self.pending = False

    def forget(self, frame: int) -> None:
        self.scores.pop(frame, None)

    def rescore(self) -> None:
        """Scores of every annotated frame whose maps are known (cheap: no model run)."""
        from ..analysis.box_eval import gt_baselines, scores_from_maps
        from ..data.boxes import gt_map

        ed = self.tool.editor
        out = {}
        if ed is not None and self.maps_key is not None and self.maps_key == self.model_key():
            for f, bf in ed.frames.items():
                if f in self.maps:
                    gt = gt_map(bf.boxes, bf.map_rule)
                    out[f] = {**scores_from_maps(self.maps[f], gt), **gt_baselines(gt)}
        self.scores = out
        self.updated.emit()

    def request(self) -> None:
        """Compute (in the background) the model's maps of annotated frames that lack them."""
        ed = self.tool.editor
        key = self.model_key()
        if key != self.maps_key:
            self.reset()
            self.maps_key = key
        if ed is None or key is None or not ed.frames:
            self.rescore()
            return
        todo = [(f, ed.time_of(f)) for f in ed.annotated_frames() if f not in self.maps]
        if not todo:
            self.rescore()
            return
        if self.job is not None:
            self.pending = True
            return
        job = Job(f"box-scores-{self.label}", score_frames_fn, self.bundle, key[0], todo, self.audio, nice=5)
        job.done.connect(self._on_done)
        job.failed.connect(self._on_failed)
        self.job = job
        self.pending = False
        self.updated.emit()
        job.start()

    def _on_done(self, res: dict) -> None:
        if self.sender() is not self.job:
            return
        self.job = None
        self.audio = res["audio"]
        self.maps.update(res["maps"])
        self.rescore()
        if self.pending:
            self.request()

    def _on_failed(self, msg: str) -> None:
        if self.sender() is not self.job:
            return
        self.job = None
        self.last_error = msg
        self.updated.emit()

    @property
    def scoring(self) -> bool:
        return self.job is not None

    def summary(self, how: str) -> Optional[dict]:
        """cIoU@0.5, AUC, mean cIoU and NSA over the clip's annotated frames scored so far."""
        from ..analysis import metrics as M

        if not self.scores:
            return None
        return M.summarise([v["model"] for v in self.scores.values()]).get(how)

    def wait(self, timeout_ms: int = 60000) -> bool:  # test helper
        from PySide6.QtCore import QCoreApplication, QElapsedTimer

        t = QElapsedTimer()
        t.start()
        while self.job is not None and t.elapsed() < timeout_ms:
            QCoreApplication.processEvents()
            self.job.wait(20)
        QCoreApplication.processEvents()
        return self.job is None


class BoxTool(QObject):
    """The box tool of a main window: actions, the view's box layer, the Boxes panel, scores."""

    changed = Signal()  # the open clip's boxes changed (or another clip was opened)
    scoresChanged = Signal()

    def __init__(self, win):
        super().__init__(win)
        self.win = win
        self.editor = None  # BoxEditor of the open clip (None: no clip, or not in a library)
        self.active = False
        self.how = "0.5"
        self._taken: dict[int, tuple[QAction, list[QKeySequence]]] = {}
        #: the window's model's scores ("A"); a second model's join when the window has one
        self.a = FrameScorer(self, "A", lambda: self.win.player.bundle)
        self.scorers: list[FrameScorer] = [self.a]
        self.a.updated.connect(self._on_scorer_updated)
        self.show_region = True  # outline the scored (binarised) heatmap on annotated frames
        self._region_cache: dict[str, tuple] = {}
        self._make_actions()
        self.panel = BoxPanel(self)
        view = win.view
        view.boxPressed.connect(self._on_press)
        view.boxMoved.connect(self._on_move)
        view.boxReleased.connect(self._on_release)
        view.boxDoubleClicked.connect(self._on_double_click)
        view.painted.connect(self._on_painted)
        win.clipOpened.connect(self._on_clip_opened)
        win.modelReady.connect(self._on_model_ready)
        lp = getattr(win, "library_panel", None)
        if lp is not None:
            lp.libraryChanged.connect(self._on_library_changed)
        # a second model beside the window's (Analysis › Open a second model beside…): its
        # scores on the same frames, side by side with A's in the panel
        self.b: Optional[FrameScorer] = None
        compare = getattr(win, "compare", None)
        if compare is not None:
            self.b = FrameScorer(self, "B", lambda: compare.bundle)
            self.b.updated.connect(self._on_scorer_updated)
            self.scorers.append(self.b)
            compare.modelReady.connect(self._on_second_model)
            # after the window's own slots (connected later): B closed, the panes' layout changed
            close = win.actions_by_name.get("close_compare")
            if close is not None:
                close.triggered.connect(lambda *_: QTimer.singleShot(0, self._on_second_model))
            for name in ("flip_ab", "compare_side_by_side"):
                act = win.actions_by_name.get(name)
                if act is not None:
                    act.triggered.connect(lambda *_: QTimer.singleShot(0, self._refresh_layer))
        self._frame_shown = -1

    # ================================================================ actions
    def _make_actions(self) -> None:
        """The tool's actions are rows of the action table (owner "boxes"); here: the keys it
        takes while active, and its button in the transport bar."""
        w = self.win
        self._tool_keys = {"box_delete": ["Delete", "Backspace"], "box_copy_nearby": ["C"], "box_label": ["F2"],
                           "box_cancel": ["Esc"], **{f"box_source_{n}": [str(n)] for n in range(1, 10)}}
        tool = w.action("box_tool")
        # the tool's button, in the transport bar beside the playback buttons
        b = QToolButton()
        b.setDefaultAction(tool)
        b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        b.setAutoRaise(True)
        b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly if not tool.icon().isNull()
                             else Qt.ToolButtonStyle.ToolButtonTextOnly)
        b.setObjectName("boxToolButton")
        self.button = b
        lay = w.transport.layout()
        lay.insertWidget(5, b)
        self._update_enabled()

    def action(self, name: str) -> QAction:
        return self.win.action(name)

    def _claim_keys(self, on: bool) -> None:
        """Give the tool its keys (1–9, Esc, Delete, Backspace, C, F2), taking them from any other
        action of the window, or give them back."""
        mine = set(self._tool_keys)
        if on:
            wanted = {QKeySequence(k) for ks in self._tool_keys.values() for k in ks}
            for a in self.win.findChildren(QAction):
                if a.objectName() in mine:
                    continue
                keys = a.shortcuts()
                if any(k in wanted for k in keys):
                    self._taken[id(a)] = (a, keys)
                    a.setShortcuts([k for k in keys if k not in wanted])
            for name, keys in self._tool_keys.items():
                a = self.action(name)
                a.setShortcuts([QKeySequence(k) for k in keys])
                a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        else:
            for name in self._tool_keys:
                self.action(name).setShortcuts([])
            for a, keys in self._taken.values():
                try:
                    a.setShortcuts(keys)
                except RuntimeError:  # deleted meanwhile
                    pass
            self._taken.clear()

    def _update_enabled(self) -> None:
        has_clip = bool(self.win.player.path)
        ed = self.editor
        self.action("box_tool").setEnabled(has_clip)
        annotated = ed is not None and bool(ed.frames)
        self.action("box_next_frame").setEnabled(annotated)
        self.action("box_prev_frame").setEnabled(annotated)
        on = self.active and ed is not None
        for name in ("box_delete", "box_label", "box_cancel", "box_copy_nearby"):
            self.action(name).setEnabled(on)
        for n in range(1, 10):
            self.action(f"box_source_{n}").setEnabled(on)
        for name in ("box_import", "box_export"):
            self.action(name).setEnabled(self.lib is not None)

    # ================================================================ the library and the clip
    @property
    def lib(self):
        lp = getattr(self.win, "library_panel", None)
        return None if lp is None else lp.lib

    @property
    def who(self) -> Optional[str]:
        lp = getattr(self.win, "library_panel", None)
        return None if lp is None else lp.annotator.who

    def _make_editor(self) -> None:
        from ..data.box_editor import BoxEditor

        self.editor = None
        lib, path = self.lib, self.win.player.path
        if lib is not None and path:
            row = lib.find_file(path)
            if row is not None:
                self.editor = BoxEditor(lib, row.id, self.win.player.fps, self.win.player.frame_count, self.win.player.video_start,
                                        who=self.who)
                self.editor.set_frame(max(0, self.win.viewer.current_frame))
        self._reset_scores()
        self._refresh_all()
        self._request_scores()  # a clip that has boxes is scored at once (the tool on or off)

    def _on_clip_opened(self, path: str) -> None:
        self._make_editor()
        if self.active and self.editor is None:
            self.set_active(False)

    def _on_library_changed(self) -> None:
        self._make_editor()
        if self.active and self.editor is None:
            self.set_active(False)

    def _on_model_ready(self) -> None:
        self.a.reset()
        self.a.request()
        self._update_panel()

    def _on_second_model(self) -> None:
        """Model B was loaded, failed to load, or closed: score with it, or drop its scores."""
        if self.b is not None:
            self.b.reset()
            self.b.request()
        self._update_panel()

    @property
    def comparing(self) -> bool:
        """A second model is loaded: the panel shows its scores beside the window's model's."""
        return self.b is not None and self.b.bundle is not None

    def _ensure_library_clip(self) -> bool:
        """The clip in the player must be in an open library (boxes are stored there): offer to
        create or open one, and add the clip to it (asking nothing more)."""
        win = self.win
        if not win.player.path:
            win.statusBar().showMessage("Open a clip first", 4000)
            return False
        lp = getattr(win, "library_panel", None)
        if lp is None:
            return False
        if lp.lib is None:
            box = QMessageBox(QMessageBox.Icon.Question, "Boxes are kept in a clip library",
                              "Boxes are saved in a clip library (one file, with the clip's other "
                              "annotations and their history). Create a new library or open one?",
                              QMessageBox.StandardButton.Cancel, win)
            new = box.addButton("New library…", QMessageBox.ButtonRole.AcceptRole)
            opn = box.addButton("Open library…", QMessageBox.ButtonRole.ActionRole)
            box.exec()
            if box.clickedButton() is new:
                lp.new_library_dialog()
            elif box.clickedButton() is opn:
                lp.open_library_dialog()
            if lp.lib is None:
                return False
        if lp.lib.find_file(win.player.path) is None:
            try:
                rep = lp.lib.import_files([win.player.path])
            except AVStudioError as exc:
                win.error(str(exc), "Cannot add the clip to the library")
                return False
            bad = rep.failed or rep.not_media
            if bad:
                win.error(f"{bad[0][0]}: {bad[0][1]}", "Cannot add the clip to the library")
                return False
            lp.refresh()
            lp._on_clip_opened(win.player.path)
            win.statusBar().showMessage(f"Added {Path(win.player.path).name} to the library {Path(lp.lib.path).name}", 5000)
        if self.editor is None or self.editor.lib is not lp.lib:
            self._make_editor()
        return self.editor is not None

    # ================================================================ box files
    def import_dialog(self) -> None:
        """Boxes › Import boxes…: a box file (or, for SoundNet-Flickr, its folder of .xml)."""
        from PySide6.QtWidgets import QFileDialog

        if self.lib is None:
            self.win.statusBar().showMessage("Open a clip library first (File › Open library…)", 5000)
            return
        p, _ = QFileDialog.getOpenFileName(self.win, "Import boxes", "",
                                           "Box files (*.json *.xml);;All files (*)")
        if not p:
            return
        path = Path(p)
        if path.suffix.lower() == ".xml":
            n = sum(1 for f in path.parent.glob("*.xml"))
            if n > 1:
                ans = QMessageBox.question(
                    self.win, "Import SoundNet-Flickr boxes",
                    f"Import every .xml file of {path.parent.name} ({n} files), or only {path.name}?",
                    QMessageBox.StandardButton.YesAll | QMessageBox.StandardButton.Yes,
                    QMessageBox.StandardButton.YesAll)
                if ans == QMessageBox.StandardButton.YesAll:
                    path = path.parent
        self.import_file(str(path))

    def import_file(self, path: str, fmt: Optional[str] = None):
        """Import a box file into the open library (all or nothing); a dialog for a bad file,
        another listing the entries that have no clip in the library. Returns the report."""
        from ..data.box_formats import import_boxes

        lib = self.lib
        if lib is None:
            return None
        try:
            rep = import_boxes(lib, path, fmt=fmt, who=self.who)
        except AVStudioError as exc:
            self.win.error(str(exc), "Cannot import the boxes")
            return None
        if self.editor is not None:
            self.editor.reload()
        self._reset_scores()
        self._refresh_all()
        self._request_scores()
        lp = getattr(self.win, "library_panel", None)
        if lp is not None:
            lp.refresh()
        msg = (f"Imported {rep.frames} annotated frames ({rep.boxes} boxes) on {rep.clips} clips"
               + (f"; {rep.unchanged} unchanged" if rep.unchanged else ""))
        self.win.statusBar().showMessage(msg, 8000)
        if rep.skipped:
            lines = "\n".join(f"{w}: {r}" for w, r in rep.skipped[:20])
            more = f"\n… and {len(rep.skipped) - 20} more" if len(rep.skipped) > 20 else ""
            QMessageBox.warning(self.win, "Some boxes were not imported",
                                f"{msg}. These entries have no clip in the library (import the clips "
                                f"first; an entry's id is the clip's file name):\n\n{lines}{more}")
        return rep

    def export_dialog(self) -> None:
        """Boxes › Export boxes…: choose the layout, then the file (or, for Flickr, a folder)."""
        from PySide6.QtWidgets import QFileDialog

        if self.lib is None:
            return
        kinds = ["AV Studio JSON (everything: frames, times, sources, labels, history dates)",
                 "VGG-SS JSON (file + bbox in 0..1)", "SoundNet-Flickr XML (one file per frame, into a folder)"]
        choice, ok = QInputDialog.getItem(self.win, "Export boxes", "Layout:", kinds, 0, False)
        if not ok:
            return
        fmt = ("avstudio", "vggss", "flickr")[kinds.index(choice)]
        if fmt == "flickr":
            out = QFileDialog.getExistingDirectory(self.win, "Folder for the .xml files")
        else:
            out, _ = QFileDialog.getSaveFileName(self.win, "Export boxes", "boxes.json", "JSON (*.json)")
        if out:
            self.export_file(out, fmt)

    def export_file(self, out: str, fmt: str) -> Optional[int]:
        from ..data.box_formats import export_boxes

        if self.lib is None:
            return None
        try:
            _fmt_name, n = export_boxes(self.lib, out, fmt=fmt)
        except AVStudioError as exc:
            self.win.error(str(exc), "Cannot export the boxes")
            return None
        self.win.statusBar().showMessage(f"Wrote {n} annotated frames to {out}", 8000)
        return n

    # ================================================================ on / off
    def set_active(self, on: bool) -> None:
        on = bool(on)
        if on and not self._ensure_library_clip():
            on = False
        if on and self.win.player.playing:
            self.win.viewer.pause()
        self.active = on
        a = self.action("box_tool")
        a.blockSignals(True)
        a.setChecked(on)
        a.blockSignals(False)
        self.win.view.set_box_mode(on)
        self._claim_keys(on)
        if on:
            self.show_panel()
            self.win.statusBar().showMessage(
                "Box tool: drag on the video around what makes the sound · click a box to select it, drag it "
                "or its handles · Delete removes it · 1–9 tie it to a sound · Alt+→ / Alt+← next / previous "
                "annotated frame · B leaves the tool", 10000)
            self._request_scores()
        elif self.editor is not None:
            self.editor.cancel()
            self.editor.selected = None
        self._update_enabled()
        self._refresh_layer()
        self._update_panel()

    def show_panel(self) -> None:
        self.dock.show()
        self.dock.raise_()

    # ================================================================ pointer and keys
    def _on_press(self, x: float, y: float) -> None:
        if not self.active or self.editor is None:
            return
        if self.win.player.playing:
            self.win.viewer.pause()
        self.editor.set_frame(max(0, self.win.viewer.current_frame))
        self.editor.press(x, y, self.win.view.pixel_tolerance())
        self._refresh_layer()
        self._update_panel()

    def _on_move(self, x: float, y: float) -> None:
        if self.editor is not None and self.editor.dragging:
            self.editor.move(x, y)
            self._refresh_layer()

    def _on_release(self, x: float, y: float) -> None:
        if self.editor is None or not self.editor.dragging:
            return
        self._apply(lambda: self.editor.release(x, y))

    def _on_double_click(self, x: float, y: float) -> None:
        if self.editor is None:
            return
        h = self.editor.hit(x, y, self.win.view.pixel_tolerance())
        if h is not None:
            self.editor.selected = h[1]
            self.label_selected()

    def _apply(self, fn) -> None:
        """Run an editor change; push the edit it saved onto Edit › Undo; refresh everything."""
        try:
            edit = fn()
        except AVStudioError as exc:
            self.win.error(str(exc), "Cannot save the boxes")
            self.editor.reload()
            edit = None
        if edit is not None:
            lp = getattr(self.win, "library_panel", None)
            if lp is not None:
                lp.annotator.undo_stack.push(BoxCommand(self, edit))
            self._on_boxes_changed(edit.frame)
        self._refresh_layer()
        self._update_panel()

    def delete_selected(self) -> None:
        if self.active and self.editor is not None:
            self._apply(self.editor.delete_selected)

    def tie_source(self, n: int) -> None:
        if self.active and self.editor is not None:
            if self.editor.selected is None:
                self.win.statusBar().showMessage("Select a box first (click it), then press the sound's number", 4000)
                return
            self._apply(lambda: self.editor.tie_source(n))

    def label_selected(self) -> None:
        ed = self.editor
        if ed is None or ed.selected is None or ed.selected >= len(ed.boxes()):
            return
        cur = ed.boxes()[ed.selected].label or ""
        text, ok = QInputDialog.getText(self.win, "Label the box", "What makes the sound here?", text=cur)
        if ok:
            self._apply(lambda: ed.set_label(text))

    def copy_nearby(self) -> None:
        ed = self.editor
        if not self.active or ed is None:
            return
        ed.set_frame(max(0, self.win.viewer.current_frame))
        near = ed.nearby(window_s=2.0)
        if near is None or near.frame == ed.frame:
            self.win.statusBar().showMessage("No annotated frame within 2 s to copy boxes from", 4000)
            return

        def do():
            before = ed.frames.get(ed.frame)
            from ..data.box_editor import BoxEdit

            rid = ed.lib.set_frame_boxes(ed.clip_id, ed.frame, ed.time_of(ed.frame), near.boxes, who=ed.who)
            ed.reload(ed.frame)
            b = before.revision_id if before is not None else None
            return None if rid == b else BoxEdit(ed.clip_id, ed.frame, b, rid,
                                                 f"copy the boxes of frame {near.frame} (frame {ed.frame})")

        self._apply(do)

    def cancel(self) -> None:
        if self.editor is not None:
            if self.editor.dragging:
                self.editor.cancel()
            else:
                self.editor.selected = None
            self._refresh_layer()
            self._update_panel()

    def next_frame(self) -> None:
        self._jump(self.editor.next_frame(max(0, self.win.viewer.current_frame)) if self.editor else None)

    def prev_frame(self) -> None:
        self._jump(self.editor.prev_frame(max(0, self.win.viewer.current_frame)) if self.editor else None)

    def _jump(self, frame: Optional[int]) -> None:
        if frame is None:
            self.win.statusBar().showMessage("No more annotated frames that way", 3000)
            return
        if self.win.player.playing:
            self.win.viewer.pause()
        self.win.viewer.seek_frame(frame)

    def restore(self, clip_id: int, frame: int, revision_id: Optional[int]) -> None:
        """Undo/redo of a box edit (any clip of the library; the open one is shown again)."""
        lib = self.lib
        if lib is None:
            return
        try:
            if self.editor is not None and self.editor.clip_id == clip_id:
                self.editor.restore(frame, revision_id)
                self._on_boxes_changed(frame)
                if self.win.viewer.current_frame != frame:
                    self.win.viewer.seek_frame(frame)
            else:
                lib.restore_boxes(clip_id, frame, revision_id, who=self.who)
                self.win.statusBar().showMessage(f"Boxes of frame {frame} of {Path(lib.get(clip_id).path).name} "
                                                 "restored", 5000)
        except AVStudioError as exc:
            self.win.statusBar().showMessage(f"Cannot undo: {exc}", 8000)
        self._refresh_layer()
        self._update_panel()

    # ================================================================ display
    def _on_painted(self, index: int) -> None:
        if index != self._frame_shown:
            self._frame_shown = index
            if self.editor is not None and not self.editor.dragging:
                self.editor.set_frame(max(0, index))
            self._refresh_layer()
            self.panel.update_frame()

    def _refresh_all(self) -> None:
        self._refresh_layer()
        self._refresh_marks()
        self._update_enabled()
        self._update_panel()
        self.changed.emit()

    def _refresh_marks(self) -> None:
        ed = self.editor
        t0 = self.win.player.video_start
        self.win.timeline.set_box_marks([] if ed is None else [ed.time_of(f) - t0 for f in ed.annotated_frames()])

    def _region_scorer(self) -> FrameScorer:
        """Whose scored region the window's pane outlines: A's, or B's when the one pane is
        flipped to model B."""
        compare = getattr(self.win, "compare", None)
        flipped = compare is not None and self.b is not None and compare.flipped_to_b
        return self.b if flipped else self.a

    def _layer(self, scorer: Optional[FrameScorer] = None, editable: bool = True) -> Optional[BoxLayer]:
        """What a pane draws over its frame: the frame's boxes (with handles and the selection
        in the pane that edits them) and ``scorer``'s scored region, or the faded boxes of a
        nearby annotated frame."""
        ed = self.editor
        if ed is None:
            return None
        cur = max(0, self.win.viewer.current_frame)
        if not ed.dragging:
            ed.set_frame(cur)
        boxes = ed.boxes()
        live = self.active and editable
        if boxes:
            items = [(b, _box_colour(b), live and i == ed.selected) for i, b in enumerate(boxes)]
            region = (self.scored_region(ed.frame, scorer or self._region_scorer())
                      if self.active and self.show_region else None)
            return BoxLayer(items=items, handles=live, region=region)
        near = ed.nearby(window_s=0.5)
        if near is not None and near.frame != ed.frame:
            items = [(b, _box_colour(b), False) for b in near.boxes]
            return BoxLayer(items=items, ghost=True, caption=f"boxes of frame {near.frame}")
        return None

    def _refresh_layer(self) -> None:
        layer = self._layer()
        if layer is not None or self.win.view.box_layer is not None:
            self.win.view.set_box_layer(layer)  # (nothing before or now: no extra repaint on every frame)
        compare = getattr(self.win, "compare", None)
        if compare is not None and self.b is not None:
            # model B's own pane (side by side): the same boxes, B's scored region, nothing to edit
            b_layer = self._layer(self.b, editable=False) if compare.state.second_pane else None
            if b_layer is not None or compare.view.box_layer is not None:
                compare.view.set_box_layer(b_layer)

    # ================================================================ scores
    @property
    def scores(self) -> dict[int, dict]:
        """The window's model's scores, frame -> scores of the frame's current boxes."""
        return self.a.scores

    @property
    def last_error(self) -> Optional[str]:
        return self.a.last_error

    @property
    def scoring(self) -> bool:
        return any(sc.scoring for sc in self.scorers)

    def _reset_scores(self) -> None:
        for sc in self.scorers:
            sc.reset()

    def _on_boxes_changed(self, frame: int) -> None:
        for sc in self.scorers:
            sc.forget(frame)
        self._refresh_marks()
        self._update_enabled()
        lp = getattr(self.win, "library_panel", None)
        if lp is not None and self.editor is not None:
            lp.clip_changed(self.editor.clip_id)
        self._rescore()
        self._request_scores()
        self.changed.emit()

    def _rescore(self) -> None:
        for sc in self.scorers:
            sc.rescore()

    def _request_scores(self) -> None:
        for sc in self.scorers:
            sc.request()

    def _on_scorer_updated(self) -> None:
        self._refresh_layer()  # the scored regions follow the maps
        self.scoresChanged.emit()

    def frame_scores(self, frame: Optional[int] = None) -> Optional[dict]:
        f = max(0, self.win.viewer.current_frame) if frame is None else frame
        return self.a.scores.get(f)

    def running_summary(self) -> Optional[dict]:
        """cIoU@0.5, AUC, mean cIoU and NSA over the clip's annotated frames scored so far."""
        return self.a.summary(self.how)

    def set_binarisation(self, how: str) -> None:
        self.how = how
        self._refresh_layer()
        self._update_panel()

    def set_show_region(self, on: bool) -> None:
        self.show_region = bool(on)
        self._refresh_layer()

    def scored_region(self, frame: int, scorer: Optional[FrameScorer] = None):
        """The border of the region the score counts as the model's answer on this frame: its
        heatmap upsampled to the ground-truth grid, min-max normalised and binarised as chosen
        (line segments in frame coordinates; None before the frame is scored). ``scorer``:
        whose (the window's model's by default)."""
        sc = scorer or self.a
        maps = sc.maps.get(frame) if sc.scores.get(frame) is not None else None
        if maps is None:
            return None
        key = (sc.label, frame, self.how, id(maps))
        cached = self._region_cache.get(sc.label)
        if cached is not None and cached[0] == key:
            return cached[1]
        from ..analysis import metrics as M
        from ..data.boxes import GT_SIZE
        from ..studio.overlay import contour_segments

        m = M.normalise(M.resize_map(maps["model"], GT_SIZE))
        # the binarised mask's border, traced on the 0/1 mask at 0.5 (between pixels)
        segs = contour_segments(M.binarise(m, self.how).astype(np.float32), 0.5)
        self._region_cache[sc.label] = (key, segs)
        return segs

    def _update_panel(self) -> None:
        self.panel.update_all()

    def wait_scores(self, timeout_ms: int = 60000) -> bool:  # test helper
        return all(sc.wait(timeout_ms) for sc in self.scorers)


def _box_colour(b) -> tuple[int, int, int]:
    return cluster_colour(b.source - 1) if b.source else style.BOX_UNTIED


class BoxPanel(QWidget):
    """The Boxes panel: this frame's boxes and scores, the clip's running scores, its frames."""

    def __init__(self, tool: BoxTool, parent=None):
        super().__init__(parent)
        self.tool = tool
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        top = QHBoxLayout()
        self.toggle = QPushButton("Box tool: off (B)")
        self.toggle.setObjectName("boxToggle")
        self.toggle.setCheckable(True)
        self.toggle.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.toggle.clicked.connect(lambda on: tool.set_active(on))
        top.addWidget(self.toggle)
        top.addStretch(1)
        top.addWidget(QLabel("Binarised"))
        self.how = QComboBox()
        self.how.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for key, text in BINARISATIONS:
            self.how.addItem(text, key)
        self.how.currentIndexChanged.connect(lambda _i: tool.set_binarisation(self.how.currentData()))
        top.addWidget(self.how)
        lay.addLayout(top)
        self.region = QCheckBox("Outline the scored heatmap (what cIoU counts as the model's answer)")
        self.region.setChecked(True)
        self.region.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.region.toggled.connect(tool.set_show_region)
        lay.addWidget(self.region)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.setObjectName("boxHint")
        lay.addWidget(self.hint)
        self.frame_title = QLabel()
        self.frame_title.setObjectName("boxFrameTitle")
        lay.addWidget(self.frame_title)
        self.frame_scores = QLabel()
        self.frame_scores.setWordWrap(True)
        self.frame_scores.setTextFormat(Qt.TextFormat.RichText)
        self.frame_scores.setObjectName("boxFrameScores")
        lay.addWidget(self.frame_scores)
        self.clip_scores = QLabel()
        self.clip_scores.setWordWrap(True)
        self.clip_scores.setTextFormat(Qt.TextFormat.RichText)
        self.clip_scores.setObjectName("boxClipScores")
        lay.addWidget(self.clip_scores)
        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["frame", "time", "boxes", "cIoU", "NSA"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.cellDoubleClicked.connect(self._jump_to_row)
        lay.addWidget(self.table, 1)
        tool.scoresChanged.connect(self.update_all)
        tool.changed.connect(self.update_all)
        self._rows: list[int] = []

    def _jump_to_row(self, row: int, _col: int) -> None:
        if 0 <= row < len(self._rows):
            self.tool._jump(self._rows[row])

    def update_all(self) -> None:
        """Everything: the hint, this frame, the clip's scores and its frames' table."""
        self._update_hint()
        self.update_frame()
        self._update_table()

    def _update_hint(self) -> None:
        tool, win = self.tool, self.tool.win
        self.toggle.blockSignals(True)
        self.toggle.setChecked(tool.active)
        self.toggle.setText("Box tool: on (B)" if tool.active else "Box tool: off (B)")
        self.toggle.blockSignals(False)
        self.toggle.setEnabled(bool(win.player.path))
        if not win.player.path:
            self.hint.setText("Open a clip, then press B (or the Box tool button) and drag on the video around "
                              "what makes the sound.")
        elif tool.editor is None:
            self.hint.setText("Press B (or the Box tool button) to draw boxes on this clip. Boxes are kept in a "
                              "clip library: the tool offers to create one and adds the clip to it.")
        elif tool.active:
            self.hint.setText("Drag around what makes the sound you hear. Click a box to select it, drag it or its "
                              "corners; Delete removes it; 1–9 tie it to a sound; F2 labels it; C copies the "
                              "nearest frame's boxes here; Alt+→ / Alt+← jump between annotated frames.")
        else:
            self.hint.setText("Press B to draw or edit boxes. Alt+→ / Alt+← jump between annotated frames.")

    def update_frame(self) -> None:
        """The frame shown: its boxes, its scores, the clip's running scores (cheap: every frame)."""
        tool, win = self.tool, self.tool.win
        ed = tool.editor
        if ed is None:
            self.frame_title.setText("")
            self.frame_scores.setText("")
            self.clip_scores.setText("")
            return
        if self.table.columnCount() != self._n_columns():
            self._update_table()  # a second model came or went: its columns too (this runs again)
            return
        frame = max(0, win.viewer.current_frame)
        how = tool.how
        boxes = ed.boxes() if ed.dragging else ed.boxes(frame)
        self.frame_title.setText(f"<b>Frame {frame + 1}</b> of {max(win.player.frame_count, frame + 1)} "
                                 f"({ed.time_of(frame):.3f} s): {len(boxes)} box{'es' if len(boxes) != 1 else ''}")
        model = win.player.bundle
        both = tool.comparing
        if not boxes:
            txt = "No box on this frame." + (" Drag on the video to draw one." if tool.active else "")
        elif model is None and not both:
            txt = "No model loaded: no score."
        else:
            lines = [self._model_line(s, frame, how, both) for s in tool.scorers if s.bundle is not None]
            if model is None:
                lines.insert(0, "A: no model loaded: no score.")
            base = next((s.scores.get(frame) for s in tool.scorers if s.scores.get(frame) is not None), None)
            if base is not None:
                cp, wi = base["center_prior"][how], base["whole_image"][how]
                motion = "".join(
                    f"; motion only{f' ({s.label})' if both else ''}: cIoU {_fmt(s.scores[frame]['motion_prior'][how]['ciou'])}"
                    for s in tool.scorers if s.bundle is not None and "motion_prior" in s.scores.get(frame, {}))
                lines.append(f"<span style='color:{style.FG_DIM}'>centre prior: cIoU {_fmt(cp['ciou'])} · NSA "
                             f"{_fmt(cp['nsa'])}; whole image: cIoU {_fmt(wi['ciou'])}{motion}</span>")
            txt = "<br>".join(lines)
        self.frame_scores.setText(txt)
        n = len(ed.frames)
        if n == 0:
            self.clip_scores.setText("This clip has no annotated frame yet.")
        else:
            lines = []
            for s in tool.scorers:
                if s.bundle is None:
                    continue
                summ = s.summary(how)
                who = f"<b>{s.label} · {s.name}</b> " if both else ""
                if summ is None:
                    lines.append(f"{who}This clip: {n} annotated frame{'s' if n != 1 else ''}." if not both
                                 else f"{who}on this clip: not scored yet.")
                else:
                    lines.append(
                        (f"{who}on this clip, " if both else "This clip, ")
                        + f"{summ['n']} of {n} annotated frames scored: cIoU@0.5 <b>{_fmt(summ['ciou@0.5'])}</b>"
                        f" · AUC <b>{_fmt(summ['auc'])}</b> · mean cIoU {_fmt(summ['mean_ciou'])} · NSA {_fmt(summ['nsa'])}")
            if not lines:
                lines.append(f"This clip: {n} annotated frame{'s' if n != 1 else ''}.")
            self.clip_scores.setText("<br>".join(lines))
        if frame in self._rows:
            r = self._rows.index(frame)
            if self.table.currentRow() != r:
                self.table.selectRow(r)
        elif self.table.selectedItems():
            self.table.clearSelection()

    def _model_line(self, scorer: FrameScorer, frame: int, how: str, both: bool) -> str:
        """One model's cIoU and NSA on this frame (or why there is none yet)."""
        who = f"{scorer.label} · {scorer.name}" if both else scorer.name
        sc = scorer.scores.get(frame)
        if sc is None:
            if scorer.scoring:
                return f"Scoring with {who}…"
            return f"{who}: {scorer.last_error}" if scorer.last_error else f"{who}: not scored yet."
        m = sc["model"][how]
        return (f"<b>{who}</b> on this frame: cIoU <b>{_fmt(m['ciou'])}</b> · NSA {_fmt(m['nsa'])}"
                + ("" if both else f" <span style='color:{style.FG_DIM}'>(its heatmap of the whole sound, "
                                    f"against every box)</span>"))

    def _table_models(self) -> list[FrameScorer]:
        tool = self.tool
        return [s for s in tool.scorers if s.bundle is not None] if tool.comparing else [tool.a]

    def _n_columns(self) -> int:
        return 3 + 2 * len(self._table_models())

    def _update_table(self) -> None:
        tool = self.tool
        ed = tool.editor
        how = tool.how
        frames = ed.annotated_frames() if ed is not None else []
        models = self._table_models()
        heads = ["frame", "time", "boxes"]
        for s in models:
            heads += [f"cIoU {s.label}", f"NSA {s.label}"] if tool.comparing else ["cIoU", "NSA"]
        if self.table.columnCount() != len(heads):
            self.table.setColumnCount(len(heads))
        self.table.setHorizontalHeaderLabels(heads)
        self._rows = frames
        self.table.setRowCount(len(frames))
        for r, f in enumerate(frames):
            vals = [str(f + 1), f"{ed.time_of(f):.2f}", str(len(ed.frames[f].boxes))]
            for m in models:
                s = m.scores.get(f)
                vals += [_fmt(s["model"][how]["ciou"]) if s else "", _fmt(s["model"][how]["nsa"]) if s else ""]
            for c, v in enumerate(vals):
                it = QTableWidgetItem(v)
                it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, it)
        self.update_frame()


def install_box_tool(win) -> BoxTool:
    """Add the box tool (actions, menu, transport button, the Boxes panel) to the main window."""
    tool = BoxTool(win)
    win.box_tool = tool
    dock = QDockWidget("Boxes", win)
    dock.setObjectName("boxDock")
    dock.setWidget(tool.panel)
    dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable |
                     QDockWidget.DockWidgetFeature.DockWidgetFloatable |
                     QDockWidget.DockWidgetFeature.DockWidgetClosable)
    win.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    panel_dock = getattr(win, "panel_dock", None)
    if panel_dock is not None:
        win.tabifyDockWidget(panel_dock, dock)
        panel_dock.raise_()
    tool.dock = dock
    tool.panel.update_all()
    return tool
