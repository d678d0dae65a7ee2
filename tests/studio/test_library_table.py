"""What the library panel shows (avstudio.studio.library_table), on rows of a real library."""

from __future__ import annotations

import pytest

from avstudio.data.library import ClipLibrary
from avstudio.studio.library_table import (
    COLUMNS,
    cell_text,
    key_note,
    player_line,
    row_tooltip,
    sorted_rows,
    stage_filters,
    summary_text,
)
from helpers import make_video


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    d = tmp_path_factory.mktemp("libtable")
    for name in ("b.mp4", "a.mp4", "c.mp4"):
        make_video(d / name, 100, size=(32, 32))  # 4 s each
    lib = ClipLibrary(d / "t.avlib", create=True)
    lib.import_folder(d)
    rows = {r.path.rsplit("/", 1)[1]: r for r in lib.clips()}
    lib.annotate(rows["b.mp4"].id, 2, unsure=True, who="ana")
    lib.annotate(rows["c.mp4"].id, None, who="ana")  # "can't tell"
    yield lib
    lib.close()


def _rows(lib):
    return {r.path.rsplit("/", 1)[1]: r for r in lib.clips()}


def test_cells_and_tooltips(lib):
    r = _rows(lib)
    assert [cell_text("count", r[n]) for n in ("a.mp4", "b.mp4", "c.mp4")] == ["", "2", "?"]
    assert cell_text("unsure", r["b.mp4"]) == "unsure" and cell_text("stage", r["b.mp4"]) == "C2"
    assert cell_text("name", r["a.mp4"]) == "a.mp4" and cell_text("duration", r["a.mp4"]) == "4.0 s"
    assert "annotated: 2 sources (unsure) by ana" in row_tooltip(r["b.mp4"])
    assert "not annotated" in row_tooltip(r["a.mp4"])
    assert len({c[0] for c in COLUMNS}) == len(COLUMNS)


@pytest.mark.parametrize("col, descending, order", [
    ("name", False, ["a.mp4", "b.mp4", "c.mp4"]),
    ("name", True, ["c.mp4", "b.mp4", "a.mp4"]),
    ("count", False, ["c.mp4", "b.mp4", "a.mp4"]),  # can't tell (-1) < 2; not annotated last
    ("count", True, ["b.mp4", "c.mp4", "a.mp4"]),  # unknown values stay last either way
])
def test_sorting_puts_unknown_values_last(lib, col, descending, order):
    got = sorted_rows(lib.clips(), col, descending)
    assert [r.path.rsplit("/", 1)[1] for r in got] == order


def test_summary_lines(lib):
    st = lib.stats()
    text = summary_text(st, shown=2)
    assert text == "3 clips (12 s) · 2 annotated · 1 to do · 1 unsure\nStages: C2 1\nShowing 2"
    assert "Showing" not in summary_text(st, shown=3)
    assert key_note(st, keys_on=True) == "Library: 2/3 annotated  ·  keys 0–4 count, ? unsure, N next"
    assert ("Stage C2 (1)", (None, "C2")) in stage_filters(lib.stage_summary())
    r = _rows(lib)
    assert player_line(r["b.mp4"], True) == "In the player: <b>b.mp4</b> — <b>2</b> sources (unsure)"
    assert player_line(r["c.mp4"], True).endswith("can't tell")
    assert player_line(None, True).startswith("The clip in the player is not in this library")
    assert player_line(None, False) == "Double-click a clip to open it in the player"
