"""What the app shows is the state it is in: the transport, the solo/mute buttons, the panel's
rows, the library's names and imports, the number keys, the heatmaps' legend. Real widgets,
offscreen (actions through QAction.trigger(), as shortcuts need a window manager)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QRect, Qt  # noqa: E402
from PySide6.QtGui import QFontMetrics  # noqa: E402

from helpers import GUI_WAIT, make_text, make_tiny_model, make_video, open_bare_window, open_clip, open_window  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

WAIT = GUI_WAIT


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("state")
    return {
        "long": str(make_video(d / "long.mp4", 50, size=(96, 64), audio_kind="noise")),
        "short": str(make_video(d / "short.mp4", 20, size=(64, 48), audio_kind="counter")),
        "model": str(make_tiny_model(d / "model")),
    }


@pytest.fixture
def win(qtbot, media, dialogs):
    w = open_window(qtbot, media["model"], k=2)
    yield w
    w.shutdown()


@pytest.fixture
def bare(qtbot, dialogs):
    """The window without a model (library work)."""
    w = open_bare_window(qtbot)
    yield w
    w.shutdown()


def wait_library_job(qtbot, p):
    qtbot.waitUntil(lambda: p.job is not None and not p.job.isRunning() and not p.job_row.isVisible(),
                    timeout=WAIT)


# ---------------------------------------------------------------------------- the transport


def test_the_transport_shows_the_clip_just_opened(qtbot, win, media):
    """Time, duration and frame count of a clip are there as soon as it opens (no dashes), and a
    second clip never shows the first one's."""
    t = win.transport
    open_clip(qtbot, win, media["long"], analysed=False)
    assert t.time_label.text() == "00:00.000 / 00:02.000"
    assert t.frame_label.text() == "frame  1 / 50"
    win.viewer.go_end()
    assert t.frame_label.text() == "frame 50 / 50"
    open_clip(qtbot, win, media["short"], analysed=False)  # File › Open of another clip
    assert t.time_label.text() == "00:00.000 / 00:00.800"
    assert t.frame_label.text() == "frame  1 / 20"
    assert t.slider.maximum() == 19 and t.slider.value() == 0


# ---------------------------------------------------------------------------- solo and mute


def test_a_soloed_track_is_never_shown_muted(qtbot, win, media):
    open_clip(qtbot, win, media["long"])
    qtbot.waitUntil(lambda: win.player.stems is not None, timeout=WAIT)
    row = win.panel.rows["c0"]
    assert row.mute.isChecked() and "c0" not in win.mixer.audible()  # stems start muted
    row.solo.click()
    assert row.solo.isChecked() and not row.mute.isChecked()  # heard: not shown muted
    assert win.mixer.audible() == ["c0"]
    row.solo.click()  # the audition ends: the stem is muted again, as it was
    assert row.mute.isChecked() and not row.solo.isChecked() and win.mixer.audible() == ["mix"]
    row.solo.click()
    row.mute.click()
    assert row.mute.isChecked() and not row.solo.isChecked()  # muted: not soloed either
    assert "c0" not in win.mixer.audible() and "mix" in win.mixer.audible()
    win.sound.play_alone("c1")
    r1 = win.panel.rows["c1"]
    assert r1.solo.isChecked() and not r1.mute.isChecked() and win.mixer.audible() == ["c1"]


def _overlaps(widgets) -> list[tuple[str, str]]:
    bad = []
    for i, (na, a) in enumerate(widgets):
        for nb, b in widgets[i + 1:]:
            if a.intersects(b):
                bad.append((na, nb))
    return bad


def test_the_source_rows_never_squash_into_each_other(qtbot, win, media):
    """With the pixel row, in a small window with the fine-tune panel open, every row keeps its
    height and nothing in the Sources box overlaps (the panel scrolls instead)."""
    open_clip(qtbot, win, media["long"])
    qtbot.waitUntil(lambda: win.player.stems is not None, timeout=WAIT)
    win.sound.hear_pixel(0.3, 0.4)
    qtbot.waitUntil(lambda: "pixel" in win.panel.rows, timeout=WAIT)
    win.action("show_finetune").trigger()
    qtbot.wait(200)
    # the window fits a 768-pixel screen with every dock open (the panel's content scrolls:
    # without that the docks' minimum made the window over 1000 pixels tall, and a smaller
    # screen squashed the rows into each other)
    assert win.minimumSizeHint().height() <= 720, win.minimumSizeHint()
    win.resize(win.width(), win.minimumSizeHint().height())
    qtbot.wait(300)
    assert win.panel_scroll.verticalScrollBar().maximum() > 0  # it scrolls instead
    panel = win.panel
    items = []
    for name, row in panel.rows.items():
        for part in ("swatch", "label", "solo", "mute", "volume", "alone", "export"):
            w = getattr(row, part)
            if w is None or not w.isVisible():
                continue
            need = min(w.minimumSizeHint().height(), w.maximumHeight())  # a swatch has a fixed size
            assert w.height() >= need - 1, (name, part, w.height(), need)
            items.append((f"{name}.{part}", QRect(w.mapTo(panel, w.rect().topLeft()), w.size())))
    note = panel.note
    items.append(("note", QRect(note.mapTo(panel, note.rect().topLeft()), note.size())))
    assert _overlaps(items) == []
    assert panel.height() >= panel.minimumSizeHint().height()  # scrolled, not squashed


# ---------------------------------------------------------------------------- the library


def test_library_import_takes_every_video_and_lists_what_it_skipped(qtbot, bare, tmp_path):
    d = tmp_path / "footage"
    d.mkdir()
    for name in ("a.mpg", "b.mpeg", "c.ts", "d.ogv", "e.mp4"):
        make_video(d / name, 8, size=(32, 32))
    (d / "notes.json").write_text("{}")
    make_text(d / "readme.txt")
    p = bare.library_panel
    p.open_library(str(tmp_path / "l.avlib"), create=True)
    p.import_paths(folder=str(d))
    wait_library_job(qtbot, p)
    names = sorted(Path(c.path).name for c in p.lib.clips())
    assert names == ["a.mpg", "b.mpeg", "c.ts", "d.ogv", "e.mp4"]
    assert p.import_note.isVisible()
    text, tip = p.import_note.text(), p.import_note.toolTip()
    assert "not a video (a .json file)" in text and "not a video (a .txt file)" in text
    assert str(d / "notes.json") in tip and str(d / "readme.txt") in tip
    assert "2 other files skipped" in bare.statusBar().currentMessage()


def test_clip_names_keep_what_tells_them_apart(qtbot, bare, tmp_path):
    """A narrow name column elides the middle of the name but keeps its extension and the end
    of the stem (where clips of one series differ); the full path is in the tooltip."""
    from avstudio.gui.library_table import NameDelegate
    from avstudio.studio.library_table import COL, elide_name

    d = tmp_path / "names"
    d.mkdir()
    src = make_video(d / "movie-hello.mp4", 8, size=(32, 32))
    shutil.copyfile(src, d / "movie-dog.mp4")
    p = bare.library_panel
    p.open_library(str(tmp_path / "n.avlib"), create=True)
    p.import_paths(folder=str(d))
    wait_library_job(qtbot, p)
    table = p.table
    assert isinstance(table.itemDelegateForColumn(COL["name"]), NameDelegate)
    fm = QFontMetrics(table.font())
    width = fm.horizontalAdvance("movi….mp4") + 2
    # where Qt's own middle elision makes the two names one
    assert fm.elidedText("movie-hello.mp4", Qt.TextElideMode.ElideMiddle, width) == \
        fm.elidedText("movie-dog.mp4", Qt.TextElideMode.ElideMiddle, width)
    shown = {n: elide_name(n, width, fm.horizontalAdvance) for n in ("movie-hello.mp4", "movie-dog.mp4")}
    assert shown["movie-hello.mp4"] != shown["movie-dog.mp4"]
    assert all(s.endswith(".mp4") and "…" in s and fm.horizontalAdvance(s) <= width for s in shown.values())
    # what the table draws goes through it, and the tooltip has the full path
    from PySide6.QtWidgets import QStyleOptionViewItem

    drawn = {}
    for r in range(p.model.rowCount()):
        idx = p.model.index(r, COL["name"])
        opt = QStyleOptionViewItem()
        opt.initFrom(table)
        opt.rect = QRect(0, 0, width + 10, 22)
        table.itemDelegateForColumn(COL["name"]).initStyleOption(opt, idx)
        drawn[p.model.clip_at(r).path] = opt.text
        assert p.model.data(idx, Qt.ItemDataRole.ToolTipRole).splitlines()[0] == p.model.clip_at(r).path
    assert len(set(drawn.values())) == 2
    # a narrow library dock: the name column keeps room for a name and the table scrolls
    # sideways (it used to shrink to 30 px: every name one "….mp4")
    h = table.horizontalHeader()
    table.setFixedWidth(260)
    qtbot.waitUntil(lambda: table.viewport().width() <= 260)
    qtbot.wait(50)
    assert h.sectionSize(COL["name"]) >= fm.horizontalAdvance("movie-hello.mp4") + 10
    assert table.horizontalScrollBar().maximum() > 0
    shown_now = set()
    for r in range(p.model.rowCount()):
        opt = QStyleOptionViewItem()
        opt.initFrom(table)
        opt.rect = QRect(0, 0, h.sectionSize(COL["name"]), 22)
        table.itemDelegateForColumn(COL["name"]).initStyleOption(opt, p.model.index(r, COL["name"]))
        shown_now.add(opt.text)
    assert shown_now == {"movie-hello.mp4", "movie-dog.mp4"}
    table.setMinimumWidth(0)
    table.setMaximumWidth(16777215)
    p.win.library_dock.setMinimumWidth(700)  # wide: the name column takes the rest
    qtbot.waitUntil(lambda: table.viewport().width() > 600)
    others = sum(h.sectionSize(i) for i in range(h.count()) if i != COL["name"])
    assert h.sectionSize(COL["name"]) == table.viewport().width() - others > p.name_min


def test_number_keys_annotate_the_clip_in_the_player(qtbot, bare, tmp_path):
    """0–4 act on the clip in the player however it was opened: File › Open before the library
    was open, or through another name of the same file (a symlinked folder)."""
    d = tmp_path / "clips"
    d.mkdir()
    clips = [make_video(d / f"c{i}.mp4", 8, size=(32, 32)) for i in range(3)]
    link = tmp_path / "elsewhere"
    os.symlink(d, link)
    p = bare.library_panel
    assert bare.open_file(str(clips[1]))  # before the library
    p.open_library(str(tmp_path / "k.avlib"), create=True)
    p.import_paths(folder=str(d))
    wait_library_job(qtbot, p)
    assert p.player_clip() is not None and Path(p.player_clip().path).name == "c1.mp4"
    assert "c1.mp4" in p.player_label.text()
    bare.action("annotate_2").trigger()
    assert p.lib.find(clips[1]).count == 2
    assert bare.open_file(str(link / "c2.mp4"))  # the same file under another name
    bare.action("annotate_3").trigger()
    assert p.lib.find(clips[2]).count == 3, bare.statusBar().currentMessage()


# ---------------------------------------------------------------------------- the heatmaps


def test_reading_the_heatmaps_is_in_help_and_the_panel_has_a_legend(qtbot, win):
    from PySide6.QtWidgets import QMenu

    from avstudio.gui.help_text import LEGEND, READING_HEATMAPS

    help_menu = next(m for m in win.menuBar().findChildren(QMenu) if m.title() == "&Help")
    assert win.action("reading_heatmaps") in help_menu.actions()
    win.action("reading_heatmaps").trigger()
    text = win.reading_text.toPlainText()
    assert win.reading_dialog.isVisible() and "Fill" in text and "Outline" in text and "threshold" in text
    win.reading_dialog.close()
    assert win.panel.legend.text() == LEGEND and win.panel.legend.isVisible()
    doc = (ROOT / "docs" / "gui.md").read_text()
    assert READING_HEATMAPS in doc


def test_docs_say_what_the_shipped_model_has():
    """docs/gui.md describes the shipped model's parts as its card lists them."""
    import json

    comps = set()
    for card in (ROOT / "models" / "default").glob("*.json"):
        comps |= set(json.loads(card.read_text()).get("components", {}))
    doc = (ROOT / "docs" / "gui.md").read_text()
    caption = doc[doc.index("![AV Studio](screenshot.png)"):doc.index("![The sound of a pixel]")]
    parts = " + ".join(n for c, n in (("av", "localizer"), ("counter", "counter"), ("sep", "separator"))
                       if c in comps)
    assert f"shipped model\n({parts})" in caption or f"shipped model ({parts})" in caption, (parts, caption)
    if "sep" in comps:
        assert "has no separator" not in doc
