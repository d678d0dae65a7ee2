"""Box annotations: the library's schema v3 (history, undo/redo, checks), the box file layouts
(VGG-SS JSON, SoundNet-Flickr XML, AV Studio JSON) read and written, `avstudio library boxes`.

Media are tiny real clips made with PyAV (tests/helpers.py).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from avstudio.data.box_formats import detect_format, export_boxes, import_boxes, middle_frame, read_flickr, read_vggss
from avstudio.data.boxes import Box, gt_map, hit_test, make_box
from avstudio.data.library import SCHEMA_VERSION, ClipLibrary
from avstudio.errors import DataError
from helpers import make_video

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clipfiles(tmp_path_factory):
    d = tmp_path_factory.mktemp("boxclips")
    # 25 fps: 20 frames = 0.8 s, 30 frames = 1.2 s
    return [make_video(d / "cat.mp4", 20, size=(32, 32), fps=25),
            make_video(d / "dog.mp4", 30, size=(48, 32), fps=25)]


@pytest.fixture
def lib(tmp_path, clipfiles):
    folder = tmp_path / "media"
    folder.mkdir()
    for f in clipfiles:
        shutil.copyfile(f, folder / f.name)
    with ClipLibrary(tmp_path / "lib.avlib") as lib:
        rep = lib.import_folder(folder)
        assert rep.added == 2
        yield lib


def clip(lib, name):
    return next(c for c in lib.clips() if Path(c.path).name == name)


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "avstudio", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})


# ---------------------------------------------------------------- the pure part


def test_gt_map_union_and_consensus_follow_the_field():
    a = make_box(0.0, 0.0, 0.5, 0.5)
    b = make_box(0.25, 0.25, 0.75, 0.75)
    u = gt_map([a, b], "union", (8, 8))
    assert u.dtype == np.float32 and set(np.unique(u)) == {0.0, 1.0}
    assert u[:4, :4].all() and u[2:6, 2:6].all() and u.sum() == 16 + 16 - 4
    c = gt_map([a, b], "consensus", (8, 8))
    # one annotator: 0.5; two: 1 (sum halved, clipped at 1)
    assert c[0, 0] == 0.5 and c[3, 3] == 1.0 and c[5, 5] == 0.5 and c[7, 7] == 0.0
    assert gt_map([a, a, a], "consensus", (8, 8)).max() == 1.0
    # the field's rounding on its 224 grid: int(x * 224)
    m = gt_map([make_box(0.1, 0.2, 0.3, 0.4)], "union")
    ys, xs = np.nonzero(m)
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (int(0.2 * 224), int(0.4 * 224),
                                                               int(0.1 * 224), int(0.3 * 224))


def test_make_box_checks_and_clips():
    b = make_box(-0.01, 0.0, 1.005, 1.0)  # within the tolerance: clipped to the frame
    assert (b.x0, b.x1) == (0.0, 1.0)
    with pytest.raises(DataError, match="outside the frame"):
        make_box(0.2, 0.2, 1.4, 0.5)
    with pytest.raises(DataError, match="no area"):
        make_box(0.5, 0.2, 0.5, 0.6)
    with pytest.raises(DataError, match="no area"):
        make_box(0.6, 0.2, 0.4, 0.6)
    with pytest.raises(DataError, match="not a number"):
        make_box("a", 0, 1, 1)
    with pytest.raises(DataError, match="source"):
        make_box(0, 0, 1, 1, source=17)
    px = make_box(64, 0, 128, 256, scale=256)
    assert (px.x0, px.x1, px.y1) == (0.25, 0.5, 1.0)
    with pytest.raises(DataError, match=r"outside the frame.*0\.\.256"):
        make_box(0, 0, 300, 100, scale=256)


def test_hit_test_picks_the_smallest_box():
    big, small = make_box(0, 0, 1, 1), make_box(0.4, 0.4, 0.6, 0.6)
    assert hit_test([big, small], 0.5, 0.5) == 1
    assert hit_test([big, small], 0.1, 0.1) == 0
    assert hit_test([small], 0.1, 0.1) is None


# ---------------------------------------------------------------- library


def test_set_frame_boxes_history_undo_redo(lib):
    c = clip(lib, "cat.mp4")
    b1 = [make_box(0.1, 0.1, 0.5, 0.5, source=1, label="cat")]
    r1 = lib.set_frame_boxes(c.id, 4, 0.16, b1, who="ana")
    assert lib.frame_boxes(c.id, 4).boxes == b1 and lib.frame_boxes(c.id, 4).who == "ana"
    assert lib.set_frame_boxes(c.id, 4, 0.16, b1, who="ana") == r1  # same boxes: nothing written
    b2 = b1 + [make_box(0.6, 0.6, 0.9, 0.9)]
    r2 = lib.set_frame_boxes(c.id, 4, 0.16, b2, who="ana")
    lib.set_frame_boxes(c.id, 10, 0.4, [make_box(0, 0, 1, 1)], who="bo")
    assert [f.frame for f in lib.box_frames(c.id)] == [4, 10]
    # undo the second change of frame 4, then redo it
    back = lib.restore_boxes(c.id, 4, r1, who="ana")
    assert back.boxes == b1 and back.revision_id not in (r1, r2)
    again = lib.restore_boxes(c.id, 4, r2, who="ana")
    assert again.boxes == b2
    # undo the first change of frame 10 (there was nothing before it)
    assert lib.restore_boxes(c.id, 10, None) is None
    assert lib.frame_boxes(c.id, 10) is None and [f.frame for f in lib.box_frames(c.id)] == [4]
    hist = lib.box_history(c.id)
    assert [len(h.boxes) for h in hist] == [1, 2, 1, 1, 2, 0]  # nothing is ever deleted
    assert lib.clear_frame_boxes(c.id, 4) is not None and lib.box_frames(c.id) == []
    s = lib.stats()
    assert (s["box_frames"], s["box_clips"], s["box_revisions"]) == (0, 0, 7)
    dump = lib.to_dict()
    assert len([d for d in dump["clips"] if d["box_history"]]) == 1


def test_frame_past_the_end_is_refused(lib):
    c = clip(lib, "cat.mp4")  # 20 frames, 0.8 s
    lib.set_frame_boxes(c.id, 19, 0.76, [make_box(0, 0, 1, 1)])
    with pytest.raises(DataError, match=r"past the end of .*cat\.mp4"):
        lib.set_frame_boxes(c.id, 40, 1.6, [make_box(0, 0, 1, 1)])
    with pytest.raises(DataError, match="past the end"):
        lib.set_frame_boxes(c.id, 3, 5.0, [make_box(0, 0, 1, 1)])
    with pytest.raises(DataError, match="not a frame index"):
        lib.set_frame_boxes(c.id, -1, 0.0, [make_box(0, 0, 1, 1)])
    with pytest.raises(DataError, match="no clip with id"):
        lib.set_frame_boxes(999, 0, 0.0, [make_box(0, 0, 1, 1)])
    assert [f.frame for f in lib.box_frames(c.id)] == [19]


def test_database_refuses_bad_boxes_written_behind_our_back(lib):
    c = clip(lib, "cat.mp4")
    rid = lib.set_frame_boxes(c.id, 1, 0.04, [make_box(0, 0, 1, 1)])
    with pytest.raises(sqlite3.IntegrityError):
        with lib._write() as conn:
            conn.execute("INSERT INTO boxes (revision_id, x0, y0, x1, y1) VALUES (?, 0.5, 0, 1.5, 1)", (rid,))


# hand-written v2 schema, as it shipped, with data in it
V2_SCHEMA = """
CREATE TABLE clips (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, content_hash TEXT,
    size INTEGER, duration REAL, width INTEGER, height INTEGER, fps REAL,
    has_audio INTEGER NOT NULL DEFAULT 0 CHECK (has_audio IN (0, 1)), added_at TEXT NOT NULL,
    missing INTEGER NOT NULL DEFAULT 0 CHECK (missing IN (0, 1)), last_seen TEXT);
CREATE INDEX clips_hash ON clips(content_hash);
CREATE TABLE annotations (id INTEGER PRIMARY KEY,
    clip_id INTEGER NOT NULL REFERENCES clips(id) ON DELETE CASCADE,
    count INTEGER CHECK (count IS NULL OR (count BETWEEN 0 AND 16)),
    unsure INTEGER NOT NULL DEFAULT 0 CHECK (unsure IN (0, 1)), who TEXT NOT NULL,
    created_at TEXT NOT NULL, cleared INTEGER NOT NULL DEFAULT 0 CHECK (cleared IN (0, 1)));
CREATE INDEX annotations_clip ON annotations(clip_id, id);
CREATE TABLE predictions (id INTEGER PRIMARY KEY,
    clip_id INTEGER NOT NULL REFERENCES clips(id) ON DELETE CASCADE, model TEXT NOT NULL,
    count INTEGER NOT NULL CHECK (count BETWEEN 0 AND 16),
    confidence REAL CHECK (confidence IS NULL OR (confidence BETWEEN 0 AND 1)),
    created_at TEXT NOT NULL);
CREATE INDEX predictions_clip ON predictions(clip_id, id);
CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT NOT NULL, config TEXT NOT NULL DEFAULT '{}',
    stages TEXT NOT NULL DEFAULT '[]', status TEXT NOT NULL DEFAULT 'created',
    created_at TEXT NOT NULL, started_at TEXT, ended_at TEXT, model_path TEXT,
    metrics TEXT NOT NULL DEFAULT '{}');
CREATE TABLE run_checkpoints (id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, stage TEXT NOT NULL,
    epoch INTEGER, path TEXT NOT NULL, metrics TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL);
CREATE INDEX run_checkpoints_run ON run_checkpoints(run_id, id);
INSERT INTO clips VALUES (1, '/data/a.mp4', 'h1', 10, 2.0, 64, 48, 25.0, 1, '2024-01-01T00:00:00.000Z', 0, NULL);
INSERT INTO annotations VALUES (1, 1, 2, 0, 'ann', '2024-01-02T00:00:00.000Z', 0);
INSERT INTO runs (id, name, created_at) VALUES (1, 'r', '2024-01-05T00:00:00.000Z');
PRAGMA application_id = 1096176468;
PRAGMA user_version = 2;
"""


def test_migrates_v2_file_in_place(tmp_path):
    path = tmp_path / "v2.avlib"
    raw = sqlite3.connect(path)
    raw.executescript(V2_SCHEMA)
    raw.close()
    with ClipLibrary(path, create=False) as lib:
        assert lib.schema_version == SCHEMA_VERSION == 4
        a = lib.get(1)
        assert (a.count, a.annotated_by) == (2, "ann") and [r.name for r in lib.runs()] == ["r"]
        lib.set_frame_boxes(1, 25, 1.0, [make_box(0.2, 0.2, 0.4, 0.4)])
        assert lib.box_frames(1)[0].frame == 25
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    raw.close()


def test_newer_schema_is_refused_with_one_line(tmp_path):
    path = tmp_path / "future.avlib"
    with ClipLibrary(path):
        pass
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 9")
    raw.commit()
    raw.close()
    r = run_cli("library", "boxes", "list", path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "newer than this AV Studio" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------- formats: round trips


def annotate_some(lib):
    cat, dog = clip(lib, "cat.mp4"), clip(lib, "dog.mp4")
    lib.set_frame_boxes(cat.id, 10, 0.4, [make_box(0.125, 0.25, 0.5, 0.75, source=1, label="cat")], who="ana")
    lib.set_frame_boxes(dog.id, 3, 0.12, [make_box(0.0, 0.0, 0.25, 0.5, source=1, label="dog"),
                                          make_box(0.5, 0.5, 1.0, 1.0, source=2)], who="bo")
    lib.set_frame_boxes(dog.id, 20, 0.8, [make_box(0.25, 0.25, 0.75, 0.75, label="dog")], who="bo")
    return cat, dog


def fresh_library(tmp_path, lib, name="other.avlib"):
    other = ClipLibrary(tmp_path / name)
    other.import_files([c.path for c in lib.clips()])
    return other


def frames_of(lib):
    out = {}
    for c in lib.clips():
        out[Path(c.path).name] = [(f.frame, round(f.time, 6), f.map_rule,
                                   [(b.as_list(), b.source, b.label) for b in f.boxes])
                                  for f in lib.box_frames(c.id)]
    return out


def test_avstudio_json_round_trip(lib, tmp_path):
    annotate_some(lib)
    out = tmp_path / "boxes.json"
    assert export_boxes(lib, out) == ("avstudio", 3)
    assert detect_format(out) == "avstudio"
    with fresh_library(tmp_path, lib) as other:
        rep = import_boxes(other, out)
        assert (rep.frames, rep.skipped, rep.clips) == (3, [], 2)
        assert frames_of(other) == frames_of(lib)
        assert [f.who for f in other.box_frames(clip(other, "dog.mp4").id)] == ["bo", "bo"]
        # importing again changes nothing
        again = import_boxes(other, out)
        assert (again.frames, again.unchanged) == (0, 3)


def test_avstudio_json_relative_paths_follow_the_folder(lib, tmp_path):
    annotate_some(lib)
    media = Path(lib.clips()[0].path).parent
    out = media / "boxes.json"
    export_boxes(lib, out, relative=True)
    data = json.loads(out.read_text())
    assert sorted(c["path"] for c in data["clips"]) == ["cat.mp4", "dog.mp4"]
    moved = tmp_path / "moved"
    shutil.copytree(media, moved)
    with ClipLibrary(tmp_path / "moved.avlib") as other:
        other.import_folder(moved)
        rep = import_boxes(other, moved / "boxes.json")
        assert rep.frames == 3 and frames_of(other) == frames_of(lib)
        assert all(c.path.startswith(str(moved)) for c in other.clips())


def test_vggss_round_trip(lib, tmp_path):
    annotate_some(lib)
    out = tmp_path / "vggss.json"
    assert export_boxes(lib, out, fmt="vggss") == ("vggss", 3)
    rows = json.loads(out.read_text())
    # the field's layout: file + bbox in 0..1; a clip with several frames gets one id per frame
    assert sorted(r["file"] for r in rows) == ["cat", "dog_f000003", "dog_f000020"]
    cat = next(r for r in rows if r["file"] == "cat")
    assert cat["bbox"] == [[0.125, 0.25, 0.5, 0.75]] and cat["class"] == "cat"
    assert detect_format(out) == "vggss"
    with fresh_library(tmp_path, lib) as other:
        rep = import_boxes(other, out)
        assert (rep.frames, rep.skipped) == (3, [])
        got = frames_of(other)
        want = frames_of(lib)
        for name in want:  # VGG-SS keeps boxes and labels, not sources
            assert [(f, t, r, [bl for bl, _s, _l in bx]) for f, t, r, bx in got[name]] == \
                   [(f, t, r, [bl for bl, _s, _l in bx]) for f, t, r, bx in want[name]]


def test_vggss_as_the_field_writes_it_goes_to_the_middle_frame(lib, tmp_path):
    f = tmp_path / "vggss.json"
    f.write_text(json.dumps([
        {"file": "dog", "class": "dog barking", "bbox": [[0.403125, 0.253125, 0.6, 0.75]]},
        {"file": "zpWuikVorYg_000032", "class": "elk bugling", "bbox": [[0.1, 0.1, 0.2, 0.2]]}]))
    recs = read_vggss(f)
    assert recs[0].boxes[0].label == "dog barking" and recs[0].frame is None
    rep = import_boxes(lib, f, who="vggss")
    assert rep.frames == 1 and len(rep.skipped) == 1 and "zpWuikVorYg_000032" in rep.skipped[0][1]
    dog = clip(lib, "dog.mp4")
    (fr,) = lib.box_frames(dog.id)
    assert (fr.frame, fr.time) == middle_frame(dog.duration, dog.fps) == (15, 0.6)
    assert fr.who == "vggss" and fr.map_rule == "union"


FLICKR_XML = """<?xml version="1.0"?>
<annotation>
  <filename>cat.jpg</filename>
  <object>
    <bbox><label>1</label><xmin>32</xmin><ymin>64</ymin><xmax>128</xmax><ymax>192</ymax></bbox>
    <bbox><label>2</label><xmin>40</xmin><ymin>64</ymin><xmax>128</xmax><ymax>200</ymax></bbox>
  </object>
  <object>
    <bbox><label>3</label><xmin>0</xmin><ymin>0</ymin><xmax>256</xmax><ymax>256</ymax></bbox>
  </object>
</annotation>
"""


def field_flickr_map(xml_path):
    """The field's reading of a Flickr XML (EZ-VSL / LVS test code, rewritten here): skip the
    first child of each bbox, scale 256 -> 224, sum, halve, clip at 1."""
    gt = ET.parse(xml_path).getroot()
    m = np.zeros((224, 224))
    for child in gt:
        for bb in child:
            if bb.tag == "bbox":
                v = [int(224 * int(ch.text) / 256) for i, ch in enumerate(bb) if i > 0]
                t = np.zeros((224, 224))
                t[v[1]:v[3], v[0]:v[2]] = 1
                m += t
    m /= 2
    m[m > 1] = 1
    return m


def test_flickr_xml_reads_as_the_field_does_and_round_trips(lib, tmp_path):
    folder = tmp_path / "Annotations"
    folder.mkdir()
    (folder / "cat.xml").write_text(FLICKR_XML)
    recs = read_flickr(folder)
    assert len(recs) == 1 and recs[0].map_rule == "consensus" and len(recs[0].boxes) == 3
    assert [b.annotator for b in recs[0].boxes] == ["1", "2", "3"]
    ours = gt_map(recs[0].boxes, "consensus")
    assert np.array_equal(ours, field_flickr_map(folder / "cat.xml").astype(np.float32))
    assert detect_format(folder) == "flickr"
    rep = import_boxes(lib, folder)
    assert rep.frames == 1
    out = tmp_path / "flickr_out"
    assert export_boxes(lib, out, fmt="flickr") == ("flickr", 1)
    # what we write, the field's code reads to the same map
    assert np.array_equal(field_flickr_map(out / "cat.xml").astype(np.float32), ours)
    with fresh_library(tmp_path, lib) as other:
        assert import_boxes(other, out).frames == 1
        assert frames_of(other) == frames_of(lib)
        assert [b.annotator for b in other.box_frames(clip(other, "cat.mp4").id)[0].boxes] == ["1", "2", "3"]


def test_flickr_positional_children_are_read_like_the_field(tmp_path):
    f = tmp_path / "x.xml"
    f.write_text("<annotation><object><bbox><a>7</a><b>0</b><c>0</c><d>128</d><e>64</e></bbox>"
                 "</object></annotation>")
    (r,) = read_flickr(f)
    assert r.boxes[0].as_list() == [0.0, 0.0, 0.5, 0.25]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("content, message", [
    ("not json at all", "not a box file AV Studio reads"),
    ('{"hello": 1}', "not a box file AV Studio reads"),
    ('[{"file": "cat", "bbox": [[0.1, 0.1, 1.7, 0.5]]}]',
     r"entry 1 \(cat\) box 1 \[0.1, 0.1, 1.7, 0.5\] is outside the frame"),
    ('[{"file": "cat", "bbox": [[0.1, 0.1, 0.5]]}]', r"box 1 must be \[x0, y0, x1, y1\]"),
    ('[{"file": "cat", "bbox": []}]', "non-empty list"),
    ('{"format": "avstudio-boxes", "version": 7, "clips": []}', "version 7, newer"),
    ('{"format": "avstudio-boxes", "version": 1, "clips": [{"path": "cat.mp4", "frames": '
     '[{"frame": 500, "time": 20.0, "boxes": [[0, 0, 1, 1]]}]}]}', r"past the end of .*cat\.mp4"),
])
def test_bad_box_files_change_nothing(lib, tmp_path, content, message):
    annotate_some(lib)
    before = frames_of(lib)
    revs = lib.stats()["box_revisions"]
    media = Path(lib.clips()[0].path).parent
    f = media / "bad.json"
    f.write_text(content)
    with pytest.raises(DataError, match=message):
        import_boxes(lib, f)
    assert frames_of(lib) == before and lib.stats()["box_revisions"] == revs


def test_import_is_all_or_nothing(lib, tmp_path):
    media = Path(lib.clips()[0].path).parent
    f = media / "two.json"
    f.write_text(json.dumps({"format": "avstudio-boxes", "version": 1, "clips": [
        {"path": "cat.mp4", "frames": [{"frame": 2, "time": 0.08, "boxes": [[0, 0, 0.5, 0.5]]}]},
        {"path": "dog.mp4", "frames": [{"frame": 999, "time": 39.96, "boxes": [[0, 0, 0.5, 0.5]]}]}]}))
    with pytest.raises(DataError, match=r"two\.json clip 2 .*past the end"):
        import_boxes(lib, f)
    assert lib.stats()["box_revisions"] == 0  # the good first entry was not written either


def test_cli_boxes_import_export_list_set(lib, tmp_path):
    cat, dog = annotate_some(lib)
    path = lib.path
    lib.close()
    out = tmp_path / "v.json"
    r = run_cli("library", "boxes", "export", path, out, "--format", "vggss")
    assert r.returncode == 0 and "wrote 3 annotated frames" in r.stdout and "VGG-SS" in r.stdout
    r = run_cli("library", "boxes", "set", path, cat.id, "--frame", 2, "--box", "0.1,0.1,0.4,0.4:2:bird")
    assert r.returncode == 0, r.stderr
    r = run_cli("library", "boxes", "list", path, cat.path, "--json")
    data = json.loads(r.stdout)
    assert [f["frame"] for f in data[0]["frames"]] == [2, 10]
    assert data[0]["frames"][0]["boxes"][0] == {"x0": 0.1, "y0": 0.1, "x1": 0.4, "y1": 0.4,
                                                "source": 2, "label": "bird"}
    r = run_cli("library", "boxes", "set", path, cat.id, "--time", "0.08")  # no box: remove them
    assert r.returncode == 0 and "removed" in r.stdout
    r = run_cli("library", "stats", path)
    assert "boxes          4 on 3 frames of 2 clips" in r.stdout
    r = run_cli("library", "boxes", "import", path, out)
    assert r.returncode == 0 and "unchanged 3" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("args, msg", [
    (lambda path, cat, tmp: ("set", path, cat.id, "--frame", 2, "--box", "0.1,0.1,1.9,0.4"), "outside the frame"),
    (lambda path, cat, tmp: ("set", path, cat.id, "--frame", 900, "--box", "0.1,0.1,0.4,0.4"), "past the end"),
    (lambda path, cat, tmp: ("import", path, tmp / "nope.json"), "does not exist"),
    (lambda path, cat, tmp: ("import", path, REPO / "README.md"), "not a box file AV Studio reads"),
])
def test_cli_boxes_refuses_bad_input_in_one_line(lib, tmp_path, args, msg):
    cat, _dog = annotate_some(lib)
    path = lib.path
    before = lib.box_stats()
    lib.close()
    r = run_cli("library", "boxes", *args(path, cat, tmp_path))
    assert r.returncode == 2 and msg in r.stderr and r.stderr.count("\n") == 1, r.stderr
    with ClipLibrary(path, create=False) as again:
        assert again.box_stats() == before  # nothing changed


# ---------------------------------------------------------------- the box tool's editor (Qt-free)


def test_editor_draw_select_move_resize_delete_tie_and_undo(lib):
    from avstudio.data.box_editor import BoxEditor

    c = clip(lib, "dog.mp4")  # 30 frames at 25 fps
    ed = BoxEditor(lib, c.id, fps=25, frame_count=30, who="ana")
    ed.set_frame(5)
    tol = (0.02, 0.02)
    # a click is not a box
    ed.press(0.5, 0.5, tol)
    assert ed.release(0.505, 0.5) is None and ed.boxes() == []
    # draw: the preview follows the pointer, the release saves one revision
    ed.press(0.2, 0.3, tol)
    ed.move(0.5, 0.6)
    assert ed.boxes() == [Box(0.2, 0.3, 0.5, 0.6)] and lib.frame_boxes(c.id, 5) is None
    e1 = ed.release(0.6, 0.7)
    assert e1.before is None and e1.after is not None and ed.selected == 0
    assert lib.frame_boxes(c.id, 5).boxes == [Box(0.2, 0.3, 0.6, 0.7)]
    assert lib.frame_boxes(c.id, 5).time == pytest.approx(0.2)
    # drawing past the frame's edge clips to it
    ed.press(0.7, 0.7, tol)
    e2 = ed.release(1.4, 1.2)
    assert ed.boxes()[1] == Box(0.7, 0.7, 1.0, 1.0) and ed.selected == 1
    # press inside the first box selects it; drag moves it, stopping at the frame's edge
    ed.press(0.3, 0.4, tol)
    assert ed.selected == 0
    e3 = ed.release(0.3 - 0.5, 0.4)
    b = ed.boxes()[0]
    assert (b.x0, b.x1) == (0.0, pytest.approx(0.4)) and (b.y0, b.y1) == (pytest.approx(0.3), pytest.approx(0.7))
    # the selected box's bottom-right handle resizes it
    assert ed.hit(0.4, 0.7, tol) == ("handle", 0, "br")
    ed.press(0.4, 0.7, tol)
    e4 = ed.release(0.5, 0.9)
    assert ed.boxes()[0].x1 == pytest.approx(0.5) and ed.boxes()[0].y1 == pytest.approx(0.9)
    # a number key ties the selected box to a source; the same number unties it
    e5 = ed.tie_source(2)
    assert ed.boxes()[0].source == 2
    assert ed.tie_source(2) is not None and ed.boxes()[0].source is None
    ed.tie_source(1)
    assert ed.set_label("dog") is not None and ed.boxes()[0].label == "dog"
    # delete
    ed.selected = 1
    e6 = ed.delete_selected()
    assert len(ed.boxes()) == 1 and ed.selected is None
    # undo everything back to the start, then redo the first draw
    for e in [e6, e5, e4, e3, e2, e1]:
        assert e is not None
    n_before = lib.stats()["box_revisions"]
    ed.restore(e6.frame, e6.before)
    assert len(ed.boxes()) == 2
    ed.restore(e1.frame, e1.before)
    assert ed.boxes() == [] and ed.annotated_frames() == []
    ed.restore(e1.frame, e1.after)
    assert ed.boxes() == [Box(0.2, 0.3, 0.6, 0.7)]
    assert lib.stats()["box_revisions"] == n_before + 3  # undo and redo are revisions too


def test_editor_navigation_and_nearby_boxes(lib):
    from avstudio.data.box_editor import BoxEditor

    c = clip(lib, "dog.mp4")
    for f in (3, 12, 20):
        lib.set_frame_boxes(c.id, f, f / 25, [make_box(0.1, 0.1, 0.2, 0.2)])
    ed = BoxEditor(lib, c.id, fps=25, frame_count=30)
    ed.set_frame(12)
    assert (ed.next_frame(), ed.prev_frame()) == (20, 3)
    assert ed.next_frame(20) is None and ed.prev_frame(3) is None
    assert ed.nearby(14).frame == 12 and ed.nearby(17).frame == 20  # the nearest within 0.5 s
    assert ed.nearby(8, window_s=0.1) is None
    assert ed.nearby(12).frame == 12
