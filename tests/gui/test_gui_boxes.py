"""The box tool in the app, driven offscreen with pytest-qt: drawing, selecting, moving,
resizing, deleting and tying boxes with the mouse and the window's actions, undo/redo, the
timeline's marks, jumping between annotated frames, and the model's per-frame scores (the same
numbers as `avstudio eval --library`).
"""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from helpers import make_tiny_avin, make_tiny_model, make_video  # noqa: E402

WAIT = 60000
SLOW = 600000  # ms: scoring shares two cores with the window's own analysis and other work


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("boxclip")
    return make_video(d / "tone.mp4", 40, size=(96, 64), fps=20, audio_kind="counter")


def make_win(qtbot, load_model: bool, model=None):
    from avstudio.gui.main_window import MainWindow

    w = MainWindow(model_path=model, audio=False, load_model=load_model)
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    return w


@pytest.fixture
def win(qtbot, dialogs):
    w = make_win(qtbot, load_model=False)
    yield w
    w.shutdown()


def open_clip_in_library(qtbot, w, clip, lib_path):
    assert w.library_panel.open_library(str(lib_path), create=True)
    assert w.open_file(str(clip))
    qtbot.waitUntil(lambda: w.view.frame is not None and w.view.frame_index == 0, timeout=WAIT)


def at(view, x, y) -> QPoint:
    r = view.frame_rect()
    return QPoint(int(round(r.x() + x * r.width())), int(round(r.y() + y * r.height())))


def drag(view, a, b):
    QTest.mousePress(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(view, *a))
    QTest.mouseMove(view, at(view, (a[0] + b[0]) / 2, (a[1] + b[1]) / 2))
    QTest.mouseMove(view, at(view, *b))
    QTest.mouseRelease(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(view, *b))


def test_box_tool_without_library_asks_and_refuses_cleanly(qtbot, win, clip, dialogs, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    assert not win.action("box_tool").isEnabled()  # no clip yet
    assert win.open_file(str(clip))
    assert win.action("box_tool").isEnabled()
    monkeypatch.setattr(QMessageBox, "exec", lambda self: 0)  # the user cancels the question
    win.action("box_tool").trigger()
    assert win.box_tool.active is False and not win.action("box_tool").isChecked()
    assert win.view.box_mode is False


def test_draw_select_move_resize_tie_delete_undo(qtbot, win, clip, tmp_path):
    open_clip_in_library(qtbot, win, clip, tmp_path / "lib.avlib")
    lib = win.library_panel.lib
    lib.close()  # the clip is not in the new library yet: the tool adds it
    assert win.library_panel.open_library(str(tmp_path / "lib.avlib"))
    assert win.library_panel.lib.find(str(clip)) is None
    win.viewer.seek_frame(10)
    qtbot.waitUntil(lambda: win.viewer.current_frame == 10 and win.view.frame_index == 10, timeout=WAIT)
    win.action("box_tool").trigger()
    tool = win.box_tool
    assert tool.active and win.view.box_mode and win.action("box_tool").isChecked()
    lib = win.library_panel.lib
    row = lib.find(str(clip))
    assert row is not None  # added by the tool
    view = win.view
    drag(view, (0.2, 0.25), (0.6, 0.75))
    (f,) = lib.box_frames(row.id)
    assert f.frame == 10 and f.time == pytest.approx(0.5) and f.who == "tester"
    (b,) = f.boxes
    tol = 2 / min(view.frame_rect().width(), view.frame_rect().height())
    assert (b.x0, b.y0, b.x1, b.y1) == pytest.approx((0.2, 0.25, 0.6, 0.75), abs=tol)
    assert view.box_layer is not None and view.box_layer.items[0][2]  # shown, selected
    assert win.timeline.box_mark_times() == [pytest.approx(0.5)]
    # the number key's action ties it to sound 2; then move it by dragging its inside
    win.action("box_source_2").trigger()
    assert lib.frame_boxes(row.id, 10).boxes[0].source == 2
    drag(view, (0.4, 0.5), (0.5, 0.6))
    b = lib.frame_boxes(row.id, 10).boxes[0]
    assert (b.x0, b.y0) == pytest.approx((0.3, 0.35), abs=2 * tol) and b.source == 2
    # resize with the bottom-right handle
    drag(view, (b.x1, b.y1), (0.95, 0.95))
    b = lib.frame_boxes(row.id, 10).boxes[0]
    assert (b.x1, b.y1) == pytest.approx((0.95, 0.95), abs=2 * tol)
    # a second box, started just outside the frame's corner (it starts on the corner), then delete it
    r = view.frame_rect()
    QTest.mousePress(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(int(r.x()) - 6, int(r.y()) - 6))
    QTest.mouseMove(view, at(view, 0.1, 0.1))
    QTest.mouseRelease(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(view, 0.15, 0.2))
    corner = lib.frame_boxes(row.id, 10).boxes[1]
    assert (corner.x0, corner.y0) == (0.0, 0.0)
    assert len(lib.frame_boxes(row.id, 10).boxes) == 2
    win.action("box_delete").trigger()
    assert len(lib.frame_boxes(row.id, 10).boxes) == 1
    # undo twice (delete, draw), then redo once: the library follows
    undo, redo = win.action("undo"), win.action("redo")
    undo.trigger()
    assert len(lib.frame_boxes(row.id, 10).boxes) == 2
    undo.trigger()
    assert len(lib.frame_boxes(row.id, 10).boxes) == 1
    redo.trigger()
    assert len(lib.frame_boxes(row.id, 10).boxes) == 2
    # undo everything: the frame has no boxes; nothing was deleted from the history
    for _ in range(5):  # draw 2, resize, move, tie, draw 1
        undo.trigger()
    assert lib.frame_boxes(row.id, 10) is None and win.timeline.box_mark_times() == []
    assert len(lib.box_history(row.id)) >= 10


def test_keys_go_back_when_the_tool_is_left(qtbot, win, clip, tmp_path):
    open_clip_in_library(qtbot, win, clip, tmp_path / "lib.avlib")
    cluster1 = win.action("toggle_cluster_1")
    before = [k.toString() for k in cluster1.shortcuts()]
    win.action("box_tool").trigger()
    assert "1" not in [k.toString() for k in cluster1.shortcuts()]
    assert [k.toString() for k in win.action("box_source_1").shortcuts()] == ["1"]
    assert [k.toString() for k in win.action("box_cancel").shortcuts()] == ["Esc"]
    # a key two actions share fires neither (Qt calls it ambiguous): none, with the tool on or off
    assert key_owners(win)["Alt+Right"] == ["box_next_frame"] and key_owners(win)["Alt+Left"] == ["box_prev_frame"]
    assert {k: v for k, v in key_owners(win).items() if len(v) > 1} == {}
    win.action("box_tool").trigger()  # leave the tool (B)
    assert [k.toString() for k in cluster1.shortcuts()] == before
    assert win.action("box_source_1").shortcuts() == [] and win.view.box_mode is False
    assert key_owners(win)["Alt+Right"] == ["box_next_frame"] and key_owners(win)["Alt+Left"] == ["box_prev_frame"]
    assert {k: v for k, v in key_owners(win).items() if len(v) > 1} == {}


def key_owners(win) -> dict:
    from PySide6.QtGui import QAction

    out: dict = {}
    for a in win.findChildren(QAction):
        for k in a.shortcuts():
            out.setdefault(k.toString(), []).append(a.objectName() or a.text())
    return out


def test_jump_between_annotated_frames_and_nearby_boxes(qtbot, win, clip, tmp_path):
    from avstudio.data.boxes import make_box

    open_clip_in_library(qtbot, win, clip, tmp_path / "lib.avlib")
    lib = win.library_panel.lib
    lib.import_files([str(clip)])
    row = lib.find(str(clip))
    for f in (5, 20, 33):
        lib.set_frame_boxes(row.id, f, f / 20, [make_box(0.1, 0.1, 0.3, 0.3)])
    win.library_panel.open_library(str(tmp_path / "lib.avlib"))  # reopen: the tool reads the boxes
    lib = win.library_panel.lib
    assert win.box_tool.editor is not None
    assert win.timeline.box_mark_times() == [pytest.approx(0.25), pytest.approx(1.0), pytest.approx(1.65)]
    win.action("box_next_frame").trigger()
    qtbot.waitUntil(lambda: win.viewer.current_frame == 5, timeout=WAIT)
    win.action("box_next_frame").trigger()
    qtbot.waitUntil(lambda: win.viewer.current_frame == 20, timeout=WAIT)
    win.action("box_prev_frame").trigger()
    qtbot.waitUntil(lambda: win.viewer.current_frame == 5, timeout=WAIT)
    # two frames later the boxes of frame 5 are shown faded, named
    win.viewer.seek_frame(7)
    qtbot.waitUntil(lambda: win.view.frame_index == 7, timeout=WAIT)
    qtbot.waitUntil(lambda: win.view.box_layer is not None and win.view.box_layer.ghost, timeout=WAIT)
    assert win.view.box_layer.caption == "boxes of frame 5"
    # C (in the tool) copies them onto this frame
    win.action("box_tool").trigger()
    win.action("box_copy_nearby").trigger()
    assert [f.frame for f in lib.box_frames(row.id)] == [5, 7, 20, 33]


def test_scores_in_the_panel_match_eval_library(qtbot, clip, tmp_path, dialogs):
    """With the shipped model: each annotated frame's cIoU and NSA in the panel, and the
    clip's running cIoU@0.5 / AUC, are the numbers `avstudio eval --library` reports."""
    from avstudio.analysis.box_eval import evaluate_boxes, library_samples
    from avstudio.data.library import ClipLibrary
    from avstudio.nets.checkpoint import load_model

    w = make_win(qtbot, load_model=True)
    try:
        qtbot.waitUntil(lambda: w.player.bundle is not None, timeout=SLOW)
        open_clip_in_library(qtbot, w, clip, tmp_path / "lib.avlib")
        w.action("box_tool").trigger()
        view = w.view
        for f, box in ((4, (0.1, 0.1, 0.5, 0.6)), (17, (0.4, 0.3, 0.9, 0.9)), (30, (0.0, 0.5, 0.4, 1.0))):
            w.viewer.seek_frame(f)
            qtbot.waitUntil(lambda f=f: w.view.frame_index == f, timeout=WAIT)
            drag(view, box[:2], box[2:])
        tool = w.box_tool

        def state():
            a = tool.a
            job = a.job
            return (f"frames {tool.editor.annotated_frames()}, scored {sorted(a.scores)}, maps {sorted(a.maps)}, "
                    f"job {None if job is None else (job.state, job.isRunning())}, pending {a.pending}, "
                    f"error {a.last_error}, model {a.model_key()} vs {a.maps_key}")

        try:
            qtbot.waitUntil(lambda: len(tool.scores) == 3 and not tool.scoring, timeout=SLOW)
        except Exception:
            raise AssertionError(state()) from None
        lib_path = w.library_panel.lib.path
        with ClipLibrary(lib_path) as lib:
            res = evaluate_boxes([load_model(None)], lambda cfg: library_samples(lib, cfg), {})
        cli = {r["frame"]: r["model"] for r in res["models"][0]["frames"]}
        assert sorted(cli) == [4, 17, 30]
        for f, s in cli.items():
            assert tool.scores[f]["model"] == s
        summ = tool.running_summary()
        want = res["models"][0]["overall"]["model"]["0.5"]
        assert (summ["ciou@0.5"], summ["auc"], summ["n"]) == (want["ciou@0.5"], want["auc"], 3)
        text = tool.panel.frame_scores.text()
        assert f"cIoU <b>{cli[30]['0.5']['ciou']:.2f}</b>" in text  # the frame shown (30)
        assert "cIoU@0.5" in tool.panel.clip_scores.text()
        # the median binarisation, chosen in the panel
        tool.panel.how.setCurrentIndex(1)
        assert f"cIoU <b>{cli[30]['median']['ciou']:.2f}</b>" in tool.panel.frame_scores.text()
        # resizing the box rescores that frame at once (the model's maps are kept): the whole
        # image's cIoU is the share of the frame the new box covers
        from avstudio.data.boxes import gt_map

        drag(view, (0.4, 0.5), (0.6, 0.3))  # the selected box's top-right handle
        lib = w.library_panel.lib
        fb = lib.frame_boxes(lib.find(str(clip)).id, 30)
        assert fb.boxes[0].x1 == pytest.approx(0.6, abs=0.02) and fb.boxes[0].y0 == pytest.approx(0.3, abs=0.02)
        assert not tool.scoring
        assert tool.scores[30]["whole_image"]["0.5"]["ciou"] == pytest.approx(float(gt_map(fb.boxes).mean()))
        assert tool.scores[30]["whole_image"]["0.5"]["ciou"] != pytest.approx(0.4 * 0.5, abs=0.01)
    finally:
        w.shutdown()


def test_first_box_creates_a_library_and_adds_the_clip(qtbot, win, clip, tmp_path, monkeypatch):
    """A new user: a clip open, no library; B asks, "New library…" and a file name, and the
    first drag is saved in the new library."""
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    assert win.open_file(str(clip))
    qtbot.waitUntil(lambda: win.view.frame is not None, timeout=WAIT)
    asked = []

    def clicked(self):
        asked.append(self.text())
        return next(b for b in self.buttons() if b.text().startswith("New library"))

    monkeypatch.setattr(QMessageBox, "exec", lambda self: 0)
    monkeypatch.setattr(QMessageBox, "clickedButton", clicked)
    target = tmp_path / "my_clips"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    win.action("box_tool").trigger()
    assert asked and "clip library" in asked[0]
    lib = win.library_panel.lib
    assert lib is not None and lib.path == str(tmp_path / "my_clips.avlib")
    row = lib.find(str(clip))
    assert row is not None and win.box_tool.active
    drag(win.view, (0.3, 0.3), (0.7, 0.8))
    assert len(lib.box_frames(row.id)) == 1


def test_import_and_export_box_files_from_the_menu(qtbot, win, clip, tmp_path, dialogs, monkeypatch):
    import json

    from PySide6.QtWidgets import QFileDialog, QInputDialog

    open_clip_in_library(qtbot, win, clip, tmp_path / "lib.avlib")
    lib = win.library_panel.lib
    lib.import_files([str(clip)])
    win.library_panel.open_library(str(tmp_path / "lib.avlib"))
    lib = win.library_panel.lib
    tool = win.box_tool
    vgg = tmp_path / "vggss.json"
    vgg.write_text(json.dumps([{"file": "tone", "class": "tone", "bbox": [[0.1, 0.2, 0.5, 0.9]]},
                               {"file": "elsewhere", "bbox": [[0.1, 0.1, 0.2, 0.2]]}]))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(vgg), ""))
    win.action("box_import").trigger()
    row = lib.find(str(clip))
    (f,) = lib.box_frames(row.id)
    assert f.frame == 20 and f.boxes[0].label == "tone"  # the middle frame of 40
    assert win.timeline.box_mark_times() == [pytest.approx(1.0)]
    assert [d[1] for d in dialogs] == ["Some boxes were not imported"] and "elsewhere" in dialogs[0][2]
    # a bad file: one dialog, nothing changed
    bad = tmp_path / "bad.json"
    bad.write_text('[{"file": "tone", "bbox": [[0.1, 0.1, 1.9, 0.5]]}]')
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    win.action("box_import").trigger()
    assert dialogs[-1][0] == "critical" and "outside the frame" in dialogs[-1][2]
    assert len(lib.box_history(row.id)) == 1
    # a file in none of the layouts: one dialog, nothing changed
    for name, text, says in (("notes.json", '{"hello": 1}', "not a box file AV Studio reads"),
                             ("page.xml", "<html><body/></html>", "not a SoundNet-Flickr box file")):
        wrong = tmp_path / name
        wrong.write_text(text)
        n = len(dialogs)
        monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, p=wrong, **k: (str(p), ""))
        win.action("box_import").trigger()
        assert len(dialogs) == n + 1 and dialogs[-1][:2] == ("critical", "Cannot import the boxes")
        assert says in dialogs[-1][2] and name in dialogs[-1][2]
        assert len(lib.box_history(row.id)) == 1 and [f.frame for f in lib.box_frames(row.id)] == [20]
    # export as AV Studio JSON
    out = tmp_path / "out.json"
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: (a[3][0], True))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    win.action("box_export").trigger()
    data = json.loads(out.read_text())
    assert data["format"] == "avstudio-boxes" and data["clips"][0]["frames"][0]["frame"] == 20
    assert tool.editor is not None and tool.editor.annotated_frames() == [20]


def test_a_library_from_a_newer_schema_is_one_dialog_and_stays_untouched(qtbot, win, clip, tmp_path, dialogs,
                                                                          monkeypatch):
    """B with no library, "Open library…", a library written by a newer AV Studio: one dialog
    naming the versions, the tool stays off, the file is not changed."""
    import sqlite3

    from PySide6.QtWidgets import QFileDialog, QMessageBox

    from avstudio.data.library import ClipLibrary

    future = tmp_path / "future.avlib"
    with ClipLibrary(future) as lib:
        lib.import_files([str(clip)])
    raw = sqlite3.connect(future)
    raw.execute("PRAGMA user_version = 9")
    raw.commit()
    raw.close()
    before = future.read_bytes()
    assert win.open_file(str(clip))
    qtbot.waitUntil(lambda: win.view.frame is not None, timeout=WAIT)
    monkeypatch.setattr(QMessageBox, "exec", lambda self: 0)
    monkeypatch.setattr(QMessageBox, "clickedButton",
                        lambda self: next(b for b in self.buttons() if b.text().startswith("Open library")))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(future), ""))
    win.action("box_tool").trigger()
    assert len(dialogs) == 1 and dialogs[0][:2] == ("critical", "Cannot open the library")
    assert "schema version 9, newer than this AV Studio" in dialogs[0][2]
    assert win.library_panel.lib is None and not win.box_tool.active and not win.action("box_tool").isChecked()
    assert future.read_bytes() == before


def test_a_box_on_a_frame_past_the_clip_end_is_one_dialog_and_nothing_changes(qtbot, win, tmp_path, dialogs):
    """The library holds the clip as 20 frames; its file was since replaced by a 40-frame one.
    A box drawn on frame 30 is refused with one dialog (the clip and its length in it): no
    revision written, nothing on the undo stack; a box on frame 10 is then saved as usual."""
    import os

    from avstudio.data.library import ClipLibrary

    path = tmp_path / "media" / "grows.mp4"
    path.parent.mkdir()
    make_video(path, 20, size=(96, 64), fps=20)
    lib_path = tmp_path / "lib.avlib"
    with ClipLibrary(lib_path) as lib:
        lib.import_files([str(path)])
    longer = make_video(tmp_path / "longer.mp4", 40, size=(96, 64), fps=20)
    os.replace(longer, path)
    open_clip_in_library(qtbot, win, path, lib_path)
    lib = win.library_panel.lib
    row = lib.find(str(path))
    win.viewer.seek_frame(30)
    qtbot.waitUntil(lambda: win.viewer.current_frame == 30 and win.view.frame_index == 30, timeout=WAIT)
    win.action("box_tool").trigger()
    assert win.box_tool.active
    stack = win.library_panel.annotator.undo_stack
    n_undo = stack.count()
    drag(win.view, (0.2, 0.2), (0.6, 0.7))
    assert len(dialogs) == 1 and dialogs[0][:2] == ("critical", "Cannot save the boxes")
    assert "past the end of" in dialogs[0][2] and "grows.mp4" in dialogs[0][2] and "20 frames" in dialogs[0][2]
    assert lib.box_history(row.id) == [] and stack.count() == n_undo
    assert win.view.box_layer is None and win.timeline.box_mark_times() == []
    win.viewer.seek_frame(10)
    qtbot.waitUntil(lambda: win.view.frame_index == 10, timeout=WAIT)
    drag(win.view, (0.2, 0.2), (0.6, 0.7))
    assert [f.frame for f in lib.box_frames(row.id)] == [10] and len(dialogs) == 1


def test_a_clip_with_boxes_is_scored_when_opened(qtbot, clip, tmp_path, dialogs):
    """Opening a library clip that has boxes (the box tool off) scores its annotated frames:
    jumping to one shows the model's cIoU there without pressing B first."""
    from avstudio.data.boxes import make_box
    from avstudio.data.library import ClipLibrary

    lib_path = tmp_path / "lib.avlib"
    with ClipLibrary(lib_path) as lib:
        lib.import_files([str(clip)])
        row = lib.find(str(clip))
        for f in (8, 30):
            lib.set_frame_boxes(row.id, f, f / 20, [make_box(0.2, 0.2, 0.7, 0.8)])
    w = make_win(qtbot, load_model=True, model=str(make_tiny_model(tmp_path / "hsa", separator=False)))
    try:
        open_clip_in_library(qtbot, w, clip, lib_path)
        tool = w.box_tool
        assert not tool.active
        qtbot.waitUntil(lambda: sorted(tool.scores) == [8, 30] and not tool.scoring, timeout=SLOW)
        w.action("box_next_frame").trigger()
        qtbot.waitUntil(lambda: w.viewer.current_frame == 8, timeout=WAIT)
        qtbot.waitUntil(lambda: "on this frame: cIoU <b>" in tool.panel.frame_scores.text(), timeout=WAIT)
        assert f"cIoU <b>{tool.scores[8]['model']['0.5']['ciou']:.2f}</b>" in tool.panel.frame_scores.text()
        assert "2 of 2 annotated frames scored" in tool.panel.clip_scores.text()
        assert dialogs == []
    finally:
        w.shutdown()


def test_a_second_model_scores_beside_the_first(qtbot, clip, tmp_path, dialogs):
    """With a second model open beside the window's (an AVIN model beside a clustering model),
    the panel shows both models' cIoU / NSA on each annotated frame and both running
    cIoU@0.5 / AUC, each the number `avstudio eval --library --model A --model B` gives; closing
    the second model leaves the first's alone."""
    import numpy as np

    from avstudio.analysis.box_eval import evaluate_boxes, library_samples
    from avstudio.data.library import ClipLibrary
    from avstudio.nets.checkpoint import load_model

    hsa = make_tiny_model(tmp_path / "hsa", separator=False)
    avin = make_tiny_avin(tmp_path)
    w = make_win(qtbot, load_model=True, model=str(hsa))
    try:
        qtbot.waitUntil(lambda: w.player.bundle is not None, timeout=SLOW)
        w.open_compare_model(str(avin))
        qtbot.waitUntil(lambda: w.compare.bundle is not None, timeout=SLOW)
        open_clip_in_library(qtbot, w, clip, tmp_path / "lib.avlib")
        w.action("box_tool").trigger()
        for f, box in ((6, (0.1, 0.1, 0.5, 0.6)), (25, (0.4, 0.3, 0.9, 0.9))):
            w.viewer.seek_frame(f)
            qtbot.waitUntil(lambda f=f: w.view.frame_index == f, timeout=WAIT)
            drag(w.view, box[:2], box[2:])
        tool = w.box_tool
        assert tool.comparing and [s.label for s in tool.scorers] == ["A", "B"]
        qtbot.waitUntil(lambda: all(len(s.scores) == 2 for s in tool.scorers) and not tool.scoring, timeout=SLOW)
        with ClipLibrary(w.library_panel.lib.path) as lib:
            res = evaluate_boxes([load_model(str(hsa)), load_model(str(avin))],
                                 lambda cfg: library_samples(lib, cfg), {})
        for scorer, m in zip(tool.scorers, res["models"], strict=True):
            cli = {r["frame"]: r["model"] for r in m["frames"]}
            assert sorted(cli) == [6, 25]
            # both binarisations exactly: eval runs one frame per forward pass, as the app does
            assert {f: scorer.scores[f]["model"] for f in cli} == cli, scorer.label
            want = m["overall"]["model"]["0.5"]
            summ = scorer.summary("0.5")
            assert (summ["ciou@0.5"], summ["auc"], summ["n"]) == (want["ciou@0.5"], want["auc"], 2)
        a25, b25 = (tool.scorers[i].scores[25]["model"]["0.5"] for i in (0, 1))
        text = tool.panel.frame_scores.text()  # the frame shown: 25
        assert f"A · {tool.a.name}</b> on this frame: cIoU <b>{a25['ciou']:.2f}</b> · NSA {a25['nsa']:.2f}" in text
        assert f"B · {tool.b.name}</b> on this frame: cIoU <b>{b25['ciou']:.2f}</b> · NSA {b25['nsa']:.2f}" in text
        clip_text = tool.panel.clip_scores.text()
        assert f"A · {tool.a.name}</b> on this clip" in clip_text and f"B · {tool.b.name}</b> on this clip" in clip_text
        table = tool.panel.table
        heads = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
        assert heads == ["frame", "time", "boxes", "cIoU A", "NSA A", "cIoU B", "NSA B"]
        assert table.item(1, 5).text() == f"{b25['ciou']:.2f}" and table.item(1, 3).text() == f"{a25['ciou']:.2f}"
        # B's pane: the same boxes, B's scored region, nothing to edit; A's pane: A's region
        la, lb = w.view.box_layer, w.compare.view.box_layer
        assert lb is not None and [it[0] for it in lb.items] == [it[0] for it in la.items]
        assert la.handles and not lb.handles and not any(it[2] for it in lb.items)
        assert la.region is tool.scored_region(25, tool.a) and lb.region is tool.scored_region(25, tool.b)
        assert la.region is not None and lb.region is not None and not np.array_equal(la.region, lb.region)
        # one pane flipped to B: it outlines B's region
        w.action("flip_ab").trigger()
        qtbot.waitUntil(lambda: w.view.box_layer.region is tool.scored_region(25, tool.b), timeout=WAIT)
        w.action("compare_side_by_side").trigger()
        qtbot.waitUntil(lambda: w.view.box_layer.region is tool.scored_region(25, tool.a), timeout=WAIT)
        # the second model closed: A's scores alone, as before
        w.action("close_compare").trigger()
        qtbot.waitUntil(lambda: table.columnCount() == 5, timeout=WAIT)
        assert not tool.comparing and tool.b.scores == {} and "B ·" not in tool.panel.frame_scores.text()
        assert f"cIoU <b>{a25['ciou']:.2f}</b>" in tool.panel.frame_scores.text()
        assert dialogs == []
    finally:
        w.shutdown()
