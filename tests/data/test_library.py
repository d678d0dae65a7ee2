"""The clip library (avstudio.data.library) and `avstudio library` CLI.

Media are tiny real clips made with PyAV (tests/helpers.py): 32x32, about half a second.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from avstudio.data import library as libmod
from avstudio.data.library import SCHEMA_VERSION, ClipLibrary
from avstudio.errors import Cancelled, DataError
from helpers import make_random_bytes, make_text, make_video

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """Six distinct tiny clips (different frame counts, so different content hashes)."""
    d = tmp_path_factory.mktemp("templates")
    return [make_video(d / f"t{i}.mp4", 12 + i, size=(32, 32), fps=24) for i in range(6)]


def mkvideo(path: Path, *args, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_video(path, *args, **kwargs)


def copy_clips(templates, folder: Path, names) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, name in enumerate(names):
        dst = folder / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(templates[i % len(templates)], dst)
        out.append(dst)
    return out


@pytest.fixture
def lib(tmp_path):
    with ClipLibrary(tmp_path / "lib.avlib") as lib:
        yield lib


def lib_with_clips(lib, templates, folder, n):
    paths = copy_clips(templates, folder, [f"c{i}.mp4" for i in range(n)])
    rep = lib.import_files(paths)
    assert rep.added == n, rep
    return [lib.find(p) for p in paths]


# ---------------------------------------------------------------- schema


def test_new_library_pragmas_and_schema(tmp_path):
    path = tmp_path / "new.avlib"
    with ClipLibrary(path) as lib:
        c = lib.conn
        assert lib.schema_version == SCHEMA_VERSION
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert c.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert c.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
        assert c.execute("PRAGMA application_id").fetchone()[0] == libmod.APPLICATION_ID
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"clips", "annotations", "predictions", "runs", "run_checkpoints"} <= tables
        cols = {r[1] for r in c.execute("PRAGMA table_info(clips)")}
        assert {"id", "path", "content_hash", "duration", "width", "height", "fps", "has_audio",
                "added_at", "missing", "last_seen"} <= cols
    # a real SQLite file that the stdlib opens
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    # reopening is a no-op
    with ClipLibrary(path, create=False) as lib:
        assert lib.schema_version == SCHEMA_VERSION and len(lib) == 0


# v1 as it shipped, written out by hand (not taken from the module), with data in it
V1_SCHEMA = """
CREATE TABLE clips (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, content_hash TEXT,
    size INTEGER, duration REAL, width INTEGER, height INTEGER, fps REAL,
    has_audio INTEGER NOT NULL DEFAULT 0 CHECK (has_audio IN (0, 1)), added_at TEXT NOT NULL);
CREATE INDEX clips_hash ON clips(content_hash);
CREATE TABLE annotations (id INTEGER PRIMARY KEY,
    clip_id INTEGER NOT NULL REFERENCES clips(id) ON DELETE CASCADE,
    count INTEGER CHECK (count IS NULL OR (count BETWEEN 0 AND 16)),
    unsure INTEGER NOT NULL DEFAULT 0 CHECK (unsure IN (0, 1)), who TEXT NOT NULL,
    created_at TEXT NOT NULL);
CREATE INDEX annotations_clip ON annotations(clip_id, id);
CREATE TABLE predictions (id INTEGER PRIMARY KEY,
    clip_id INTEGER NOT NULL REFERENCES clips(id) ON DELETE CASCADE, model TEXT NOT NULL,
    count INTEGER NOT NULL CHECK (count BETWEEN 0 AND 16),
    confidence REAL CHECK (confidence IS NULL OR (confidence BETWEEN 0 AND 1)),
    created_at TEXT NOT NULL);
CREATE INDEX predictions_clip ON predictions(clip_id, id);
INSERT INTO clips VALUES (1, '/data/a.mp4', 'h1', 10, 2.0, 64, 48, 25.0, 1, '2024-01-01T00:00:00.000Z');
INSERT INTO clips VALUES (2, '/data/b.mp4', 'h2', 11, 3.0, 64, 48, 25.0, 0, '2024-01-01T00:00:00.000Z');
INSERT INTO annotations VALUES (1, 1, 2, 0, 'ann', '2024-01-02T00:00:00.000Z');
INSERT INTO annotations VALUES (2, 1, 3, 1, 'ann', '2024-01-03T00:00:00.000Z');
INSERT INTO predictions VALUES (1, 2, 'counter.safetensors', 1, 0.25, '2024-01-04T00:00:00.000Z');
PRAGMA user_version = 1;
"""


def test_migrates_v1_file_and_keeps_data(tmp_path):
    path = tmp_path / "old.avlib"
    raw = sqlite3.connect(path)
    raw.executescript(V1_SCHEMA)
    raw.close()
    with ClipLibrary(path, create=False) as lib:
        assert lib.schema_version == SCHEMA_VERSION == 4
        a, b = lib.get(1), lib.get(2)
        assert (a.path, a.count, a.unsure, a.annotated_by, a.stage) == ("/data/a.mp4", 3, True, "ann", "C3")
        assert a.missing is False and a.last_seen == "2024-01-01T00:00:00.000Z"
        assert (b.count, b.predicted_count, b.predicted_confidence, b.stage) == (None, 1, 0.25, "C1")
        assert b.predicted_rate is None  # made before rates were stored
        # v4: the counter's rate, and the margin order takes old and new predictions alike
        lib.set_prediction(1, 2, 2.45, "m")  # margin 0.05: less certain than b's 0.25 / 2
        assert lib.get(1).predicted_rate == 2.45 and lib.get(1).predicted_confidence is None
        assert [r.id for r in lib.clips(order_by="margin")] == [1, 2]
        assert [h.count for h in lib.annotation_history(1)] == [2, 3]
        # v2 features work on the migrated file
        assert lib.runs() == []
        run = lib.add_run("r", {"lr": 0.1})
        lib.add_checkpoint(run, "C1", 0, "/m.safetensors", {})
        lib.clear_annotation(1)
        assert lib.get(1).annotated is False
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    raw.close()


def test_refuses_newer_schema(tmp_path):
    path = tmp_path / "future.avlib"
    with ClipLibrary(path):
        pass
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(DataError, match="newer"):
        ClipLibrary(path)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1  # untouched
    raw.close()


def test_failed_migration_rolls_back(tmp_path, monkeypatch):
    path = tmp_path / "lib.avlib"
    with ClipLibrary(path):
        pass
    from avstudio.data.library import schema

    broken = schema.MIGRATIONS + ["CREATE TABLE extra (x INTEGER); CREATE TABLE oops ("]
    monkeypatch.setattr(schema, "MIGRATIONS", broken)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(broken))
    with pytest.raises(DataError):
        ClipLibrary(path)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}
    assert "extra" not in names  # the first statement of the failed migration was rolled back
    raw.close()


def test_refuses_files_that_are_not_libraries(tmp_path):
    junk = make_random_bytes(tmp_path / "junk.avlib")
    with pytest.raises(DataError, match="not an AV Studio library"):
        ClipLibrary(junk)
    other = tmp_path / "other.db"
    raw = sqlite3.connect(other)
    raw.execute("CREATE TABLE t (x)")
    raw.commit()
    raw.close()
    with pytest.raises(DataError, match="not an AV Studio library"):
        ClipLibrary(other)
    with pytest.raises(DataError, match="does not exist"):
        ClipLibrary(tmp_path / "nope.avlib", create=False)
    assert not (tmp_path / "nope.avlib").exists()
    with pytest.raises(DataError, match="folder"):
        ClipLibrary(tmp_path / "no" / "such" / "dir.avlib")
    with pytest.raises(DataError, match="folder"):
        ClipLibrary(tmp_path)


# ---------------------------------------------------------------- import


def test_import_folder(tmp_path, lib, templates):
    media = tmp_path / "media"
    mkvideo(media / "a.mp4", 12, size=(32, 32), fps=24)
    mkvideo(media / "sub" / "b.MKV", 12, size=(32, 32), fps=24, audio=False)
    mkvideo(media / "sub" / "c.mov", 12, size=(48, 32), fps=24)
    mkvideo(media / "sub" / "deep" / "d.avi", 12, size=(32, 32), fps=24)
    mkvideo(media / "e.m4v", 12, size=(32, 32), fps=24)
    make_random_bytes(media / "broken.mp4")
    make_text(media / "notes.txt")
    make_text(media / "sub" / "readme.webm")  # right extension, not media
    copy_clips(templates, media / ".hidden", ["x.mp4"])

    events = []
    rep = lib.import_folder(media, progress=events.append)
    assert rep.added == 5 and rep.skipped == 0
    assert sorted(Path(p).name for p, _ in rep.failed) == ["broken.mp4", "readme.webm"]
    assert all(reason for _, reason in rep.failed)
    assert events and events[-1].done == events[-1].total == 7

    rows = {Path(r.path).name: r for r in lib.clips()}
    assert set(rows) == {"a.mp4", "b.MKV", "c.mov", "d.avi", "e.m4v"}
    a = rows["a.mp4"]
    assert os.path.isabs(a.path) and a.path == str((media / "a.mp4").resolve())
    assert (a.width, a.height, a.has_audio) == (32, 32, True)
    assert a.duration == pytest.approx(0.5, abs=0.1) and a.fps == pytest.approx(24)
    assert rows["b.MKV"].has_audio is False and rows["c.mov"].width == 48
    assert a.content_hash == libmod.content_hash(media / "a.mp4") and len(a.content_hash) == 64
    assert all(not r.annotated and r.stage is None for r in rows.values())

    again = lib.import_folder(media)
    assert (again.added, again.skipped, len(again.failed)) == (0, 5, 2)
    assert len(lib) == 5

    lib2 = ClipLibrary(tmp_path / "flat.avlib")
    assert lib2.import_folder(media, recursive=False).added == 2
    lib2.close()
    with pytest.raises(DataError, match="does not exist"):
        lib.import_folder(tmp_path / "nowhere")


def _still_png(path: Path) -> Path:
    import av
    import numpy as np

    with av.open(str(path), "w", format="image2") as c:
        s = c.add_stream("png")
        s.width, s.height, s.pix_fmt = 16, 16, "rgb24"
        for p in s.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def test_import_takes_whatever_ffmpeg_reads_and_says_what_it_skipped(tmp_path, lib):
    """Every video FFmpeg reads is imported, whatever its name (.mpg, .mpeg, .ts, .ogv, none at
    all); every other file is listed with why it was skipped; the library's own files are
    never opened."""
    from helpers import make_audio_only

    d = tmp_path / "mixed"
    vids = [mkvideo(d / n, 12, size=(32, 32)) for n in ("a.mpg", "b.mpeg", "c.ts", "d.ogv", "e.mp4")]
    shutil.copyfile(vids[-1], d / "no_extension")
    _still_png(d / "still.png")
    make_audio_only(d / "sound.wav", 0.5)
    (d / "notes.json").write_text("{}")
    make_text(d / "broken.mp4")  # named as a video, unreadable: failed
    make_random_bytes(d / "blob.bin")  # no video name, unreadable: not a video
    rep = lib.import_folder(d)
    assert rep.added == 6, rep
    assert sorted(Path(c.path).name for c in lib.clips()) == ["a.mpg", "b.mpeg", "c.ts", "d.ogv", "e.mp4",
                                                               "no_extension"]
    assert [Path(p).name for p, _ in rep.failed] == ["broken.mp4"]
    skipped = {Path(p).name: why for p, why in rep.not_media}
    assert skipped == {"still.png": "a still image, not a video", "sound.wav": "audio only: no video stream",
                       "notes.json": "not a video (a .json file)", "blob.bin": "not a media file FFmpeg can read"}
    lines = libmod.summarize_skipped(rep.not_media)
    assert len(lines) == 4 and all(line.startswith("1 file: ") for line in lines)
    # the folder holding the library: its file and its -wal / -shm are skipped, never opened
    wal = Path(str(lib.path) + "-wal")
    assert wal.exists()
    rep = lib.import_folder(tmp_path, recursive=False)
    assert {Path(p).name for p, why in rep.not_media if "clip library itself" in why} >= {"lib.avlib",
                                                                                         "lib.avlib-wal"}
    assert wal.exists() and rep.added == 0


def test_import_cancel_keeps_committed_batches(tmp_path, lib, templates):
    paths = copy_clips(templates, tmp_path / "m", [f"c{i}.mp4" for i in range(6)])
    stop = threading.Event()

    def progress(ev):
        if ev.done >= 3:
            stop.set()

    with pytest.raises(Cancelled):
        lib.import_files(paths, progress=progress, cancel=stop, batch_size=2)
    assert len(lib) == 3  # the two committed batches and the file finished before cancel
    rep = lib.import_folder(tmp_path / "m")  # resuming skips what is there
    assert (rep.added, rep.skipped) == (3, 3)


def test_content_hash_first_last_mib_and_size(tmp_path):
    big = tmp_path / "big.bin"
    data = bytearray(os.urandom(3 * 1024 * 1024 + 17))
    big.write_bytes(data)
    h = libmod.content_hash(big)
    data[2 * 1024 * 1024] ^= 0xFF  # a byte in the middle: not part of the fingerprint
    big.write_bytes(data)
    assert libmod.content_hash(big) == h
    data[-1] ^= 0xFF  # a byte in the last MiB
    big.write_bytes(data)
    assert libmod.content_hash(big) != h


def write_manifest(path: Path, rows, header=("path", "count")):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_import_manifest(tmp_path, lib, templates):
    d = tmp_path / "set"
    a, b, c, e = copy_clips(templates, d, ["clips/a.mp4", "clips/b.mp4", "c.mp4", "e.mp4"])
    elsewhere = copy_clips(templates, tmp_path / "other", ["z.mp4"])[0]
    m = write_manifest(d / "manifest.csv", [
        ["clips/a.mp4", "2", "", ""],
        ["clips/b.mp4", "0", "1", "alice"],  # 0 = none audible is a valid count
        ["c.mp4", "", "", ""],  # unknown count: imported, not annotated
        [str(elsewhere), "16", "", ""],  # absolute path
        ["e.mp4", "three", "", ""],
        ["e.mp4", "17", "", ""],
        ["gone.mp4", "1", "", ""],
    ], header=("path", "count", "unsure", "who"))
    rep = lib.import_manifest(m, who="import-bot")
    assert rep.added == 4 and rep.annotated == 3
    reasons = {(Path(p).name, r) for p, r in rep.failed}
    assert len(reasons) == 3 and {n for n, _ in reasons} == {"e.mp4", "gone.mp4"}
    assert any("three" in r for _, r in reasons) and any("16" in r for _, r in reasons)
    ra, rb, rc, rz = (lib.find(p) for p in (a, b, c, elsewhere))
    assert (ra.count, ra.unsure, ra.annotated_by, ra.stage) == (2, False, "import-bot", "C2")
    assert (rb.count, rb.unsure, rb.annotated_by, rb.stage) == (0, True, "alice", "C0")
    assert rc is not None and not rc.annotated and rc.count is None
    assert rz.count == 16
    assert lib.find(e) is None

    # importing the same manifest again writes nothing new
    rep2 = lib.import_manifest(m)
    assert (rep2.added, rep2.skipped, rep2.annotated) == (0, 4, 0)
    assert len(lib.annotation_history(ra.id)) == 1

    bad = write_manifest(tmp_path / "bad.csv", [["a.mp4", "1"]], header=("file", "count"))
    with pytest.raises(DataError, match="no 'path' column"):
        lib.import_manifest(bad)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        lib.import_manifest(tmp_path / "empty.csv")
    with pytest.raises(DataError, match="does not exist"):
        lib.import_manifest(tmp_path / "missing.csv")


def test_export_csv_round_trip_and_json(tmp_path, lib, templates):
    rows = lib_with_clips(lib, templates, tmp_path / "m", 5)
    lib.annotate(rows[0].id, 1, who="ann")
    lib.annotate(rows[1].id, 0, unsure=True, who="ann")
    lib.annotate(rows[2].id, 7, who="bob")
    lib.annotate(rows[2].id, 4, who="bob")  # corrected: the latest counts
    lib.set_prediction(rows[3].id, 2, 2.3, "counter.safetensors")
    out = tmp_path / "out" / "labels.csv"
    out.parent.mkdir()
    assert lib.export_csv(out) == 3
    with open(out, newline="") as fh:
        got = list(csv.DictReader(fh))
    assert list(got[0]) == ["path", "count", "unsure", "who", "when", "predicted_count", "predicted_rate"]
    assert {r["path"]: r["count"] for r in got} == {rows[0].path: "1", rows[1].path: "0",
                                                    rows[2].path: "4"}

    with ClipLibrary(tmp_path / "copy.avlib") as other:
        rep = other.import_manifest(out)
        assert rep.added == 3 and rep.annotated == 3 and not rep.failed
        for r in rows[:3]:
            mine, theirs = lib.find(r.path), other.find(r.path)
            assert (theirs.count, theirs.unsure, theirs.annotated_by) == (
                mine.count, mine.unsure, mine.annotated_by)

    # all clips, relative paths: still a valid manifest from the CSV's folder
    everything = tmp_path / "all.csv"
    assert lib.export_csv(everything, annotated_only=False, relative=True) == 5
    with ClipLibrary(tmp_path / "copy2.avlib") as other:
        rep = other.import_manifest(everything)
        assert rep.added == 5 and rep.annotated == 3
        assert other.find(rows[3].path).predicted_count is None  # predictions are not labels

    js = tmp_path / "lib.json"
    assert lib.export_json(js) == 5
    data = json.loads(js.read_text())
    assert data["format"] == "avstudio-library" and data["schema_version"] == SCHEMA_VERSION
    by_path = {c["path"]: c for c in data["clips"]}
    assert [h["count"] for h in by_path[rows[2].path]["annotation_history"]] == [7, 4]
    assert by_path[rows[3].path]["predictions"][0]["rate"] == 2.3
    assert not list(tmp_path.glob(".*.tmp")) and not list(out.parent.glob(".*.tmp"))


# ---------------------------------------------------------------- annotations


def test_annotation_history_and_undo(tmp_path, lib, templates):
    (r,) = lib_with_clips(lib, templates, tmp_path / "m", 1)
    assert lib.annotation_history(r.id) == []
    assert lib.clear_annotation(r.id) is None  # nothing to clear: nothing written

    a1 = lib.annotate(r.id, 2, who="ann")
    a2 = lib.annotate(r.id, 3, unsure=True, who="ann")
    cur = lib.get(r.id)
    assert (cur.count, cur.unsure, cur.annotated, cur.stage) == (3, True, True, "C3")

    # undo = restore the annotation that was current before (a new row; history kept)
    back = lib.restore_annotation(r.id, a1, who="ann")
    assert back.count == 2 and not back.unsure and lib.get(r.id).count == 2
    assert lib.restore_annotation(r.id, a1).id == back.id  # already current: nothing written
    lib.clear_annotation(r.id, who="ann")
    assert lib.get(r.id).annotated is False and lib.get(r.id).stage is None
    assert lib.restore_annotation(r.id, a2).count == 3  # redo
    assert lib.restore_annotation(r.id, None) is None and not lib.get(r.id).annotated

    hist = lib.annotation_history(r.id)
    assert [(h.count, h.unsure, h.cleared) for h in hist] == [
        (2, False, False), (3, True, False), (2, False, False), (None, False, True),
        (3, True, False), (None, False, True)]
    assert [h.id for h in hist] == sorted(h.id for h in hist)

    # 0 = none audible is a count; None = looked, can't tell (annotated, no count)
    lib.annotate(r.id, 0)
    assert (lib.get(r.id).count, lib.get(r.id).stage) == (0, "C0")
    lib.set_prediction(r.id, 5, 4.9, "m")
    lib.annotate(r.id, None, unsure=True)
    row = lib.get(r.id)
    assert row.annotated and row.count is None and row.stage == "C5"  # stage from the prediction
    assert lib.annotated_manifest_rows() == []  # no count: nothing to train on

    with pytest.raises(DataError, match="no clip"):
        lib.annotate(9999, 1)
    for bad_rate in (-0.5, float("nan"), float("inf")):
        with pytest.raises(DataError):
            lib.set_prediction(r.id, 1, bad_rate, "m")
    with pytest.raises(DataError):
        lib.restore_annotation(r.id, 123456)


def test_clips_filters_orders_and_manifest_rows(tmp_path, lib, templates):
    rows = lib_with_clips(lib, templates, tmp_path / "m", 6)
    ids = [r.id for r in rows]
    lib.annotate(ids[0], 1)
    lib.annotate(ids[1], 2, unsure=True)
    lib.annotate(ids[2], 2)
    lib.set_prediction(ids[2], 3, 3.1, "m")  # disagrees with the annotation
    lib.set_prediction(ids[3], 1, 1.2, "m")
    lib.annotate(ids[4], None)
    assert {r.id for r in lib.clips("annotated")} == {ids[0], ids[1], ids[2], ids[4]}
    assert {r.id for r in lib.clips("unannotated")} == {ids[3], ids[5]}
    assert [r.id for r in lib.clips("unsure")] == [ids[1]]
    assert [r.id for r in lib.clips("unknown")] == [ids[4]]
    assert [r.id for r in lib.clips("disagree")] == [ids[2]]
    assert {r.id for r in lib.clips(stage="C1")} == {ids[0], ids[3]}  # annotation or prediction
    assert {r.id for r in lib.clips(stage="c2")} == {ids[1], ids[2]}
    assert {r.id for r in lib.clips(stage="none")} == {ids[4], ids[5]}
    assert [r.id for r in lib.clips(search="C3.MP4")] == [ids[3]]
    assert [r.id for r in lib.clips(order_by="-id")] == ids[::-1]
    counts = [r.count for r in lib.clips(order_by="count")]
    assert counts == [1, 2, 2, None, None, None]  # unknown last
    assert lib.stage_summary() == {"C1": 2, "C2": 2, "unknown": 2}
    s = lib.stats()
    assert (s["clips"], s["annotated"], s["unsure"], s["unknown"], s["disagree"]) == (6, 4, 1, 1, 1)

    manifest = lib.annotated_manifest_rows()
    assert [(m["clip_id"], m["count"], m["unsure"]) for m in manifest] == [
        (ids[0], 1, False), (ids[1], 2, True), (ids[2], 2, False)]
    assert [m["clip_id"] for m in lib.annotated_manifest_rows(include_unsure=False)] == [ids[0], ids[2]]


@pytest.mark.parametrize("bad", [17, -1, 2.5, "3", True])
def test_annotate_refuses_a_count_that_is_not_one(tmp_path, lib, templates, bad):
    (r,) = lib_with_clips(lib, templates, tmp_path / "m", 1)
    with pytest.raises(DataError, match="count"):
        lib.annotate(r.id, bad)
    assert not lib.get(r.id).annotated


@pytest.mark.parametrize("bad", [{"filter": "weird"}, {"order_by": "path; DROP TABLE clips"}, {"stage": "C99"}])
def test_clip_queries_refuse_unknown_filters_orders_and_stages(lib, bad):
    with pytest.raises(DataError):
        lib.clips(**bad)
    assert lib.clips() == []  # and the table is still there


def test_next_unannotated_order(tmp_path, lib, templates):
    rows = lib_with_clips(lib, templates, tmp_path / "m", 6)
    ids = [r.id for r in rows]  # paths c0..c5 sort in id order
    # the rate's margin from the boundary between two counts: 0.45, 0.1, 0.1, (0.35), 0.25
    lib.set_prediction(ids[4], 2, 2.05, "m")
    lib.set_prediction(ids[2], 1, 1.4, "m")
    lib.set_prediction(ids[5], 1, 1.4, "m")  # same margin: by path
    lib.set_prediction(ids[0], 3, 3.15, "old")
    lib.set_prediction(ids[0], 3, 2.75, "new")  # the latest prediction counts
    lib.annotate(ids[1], 2)  # annotated: never proposed
    expected = [ids[2], ids[5], ids[0], ids[4], ids[3]]

    walk, cur = [], lib.next_unannotated()
    while cur is not None:
        walk.append(cur.id)
        cur = lib.next_unannotated(after_clip_id=cur.id)
    assert walk == expected

    # annotating the current one and asking for the next continues from its place
    first = lib.next_unannotated()
    lib.annotate(first.id, 1)
    assert lib.next_unannotated(after_clip_id=first.id).id == ids[5]
    assert lib.next_unannotated().id == ids[5]
    # missing files are not proposed
    os.remove(rows[5].path)
    lib.refresh_missing()
    assert lib.next_unannotated().id == ids[0]
    assert lib.next_unannotated(include_missing=True).id == ids[5]


def test_missing_and_moved_files_are_flagged_not_dropped(tmp_path, lib, templates):
    rows = lib_with_clips(lib, templates, tmp_path / "m", 4)
    for r, n in zip(rows, (1, 2, 3, 4), strict=True):
        lib.annotate(r.id, n)
    os.remove(rows[0].path)  # gone for good
    moved_to = tmp_path / "archive" / "deeper" / "renamed.mp4"
    moved_to.parent.mkdir(parents=True)
    shutil.move(rows[1].path, moved_to)
    shutil.move(rows[2].path, tmp_path / "unsearched.mp4")  # moved somewhere we don't look

    rep = lib.refresh_missing(search_in=tmp_path / "archive")
    assert rep.present == 1
    assert rep.relinked == [(rows[1].path, str(moved_to))]
    assert sorted(rep.missing) == sorted([rows[0].path, rows[2].path])
    assert len(lib) == 4  # nothing deleted
    gone = lib.get(rows[0].id)
    assert gone.missing and gone.count == 1
    moved = lib.get(rows[1].id)
    assert moved.path == str(moved_to) and not moved.missing and moved.count == 2
    assert [r.id for r in lib.clips("missing")] == [rows[0].id, rows[2].id]
    assert rows[0].id not in {m["clip_id"] for m in lib.annotated_manifest_rows()}
    assert rows[0].path in {r.path for r in lib.clips("annotated")}  # still exported

    # importing the folder a file moved to re-finds it by content hash (annotation kept)
    rep2 = lib.import_folder(tmp_path, recursive=False)
    assert (rep2.added, rep2.relinked) == (0, 1)
    back = lib.get(rows[2].id)
    assert back.path == str(tmp_path / "unsearched.mp4") and not back.missing and back.count == 3

    # the file coming back clears the flag
    shutil.copyfile(templates[0], rows[0].path)
    assert lib.refresh_missing().missing == []
    assert not lib.get(rows[0].id).missing


# ---------------------------------------------------------------- runs


def test_runs_and_checkpoints(lib):
    rid = lib.add_run("finetune-C1-C3", {"lr": 1e-4, "epochs": 3, "bad": float("nan")},
                      stages=["C1", "C2", "C3"])
    (run,) = lib.runs()
    assert (run.name, run.status, run.config["lr"], run.config["bad"], run.stages) == (
        "finetune-C1-C3", "created", 1e-4, None, ["C1", "C2", "C3"])
    lib.update_run(rid, status="running", metrics={"loss": 1.5})
    lib.add_checkpoint(rid, 1, 0, "/runs/x/C1-e0.safetensors", {"acc": 0.4})
    lib.add_checkpoint(rid, "C2", 1, "/runs/x/C2-e1.safetensors", {"acc": 0.6})
    lib.update_run(rid, status="finished", metrics={"acc": 0.7}, model_path="/runs/x/model.safetensors")
    run = lib.run(rid)
    assert run.status == "finished" and run.started_at and run.ended_at
    assert run.metrics == {"loss": 1.5, "acc": 0.7}
    assert run.model_path == "/runs/x/model.safetensors"
    assert [(c.stage, c.epoch, c.metrics["acc"]) for c in run.checkpoints] == [("C1", 0, 0.4), ("C2", 1, 0.6)]
    with pytest.raises(DataError):
        lib.update_run(999, status="running")
    with pytest.raises(DataError):
        lib.add_checkpoint(999, "C1", 0, "/x", {})


# ---------------------------------------------------------------- concurrency


def test_threads_and_second_connection(tmp_path, templates):
    path = tmp_path / "lib.avlib"
    lib = ClipLibrary(path)
    rows = lib_with_clips(lib, templates, tmp_path / "m", 3)
    other = ClipLibrary(path)  # e.g. the CLI while the GUI has the library open
    errors = []

    def writer(db, who):
        try:
            for i in range(40):
                db.annotate(rows[i % 3].id, i % 17, who=who)
                db.clips()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(lib, "t1")),
               threading.Thread(target=writer, args=(lib, "t2")),
               threading.Thread(target=writer, args=(other, "t3"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert lib.stats()["annotation_rows"] == 120
    other.close()
    lib.close()


def _held_deleted(lib_path) -> list[str]:
    """Library files this process holds open although another process deleted them."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(lib_path)) and target.endswith("(deleted)"):
            out.append(target)
    return out


def _other_process_opens_and_closes(path) -> None:
    res = cli("stats", path, cwd=Path(path).parent)
    assert res.returncode == 0, res.stderr


def test_second_connection_in_one_process_keeps_its_locks(tmp_path, templates):
    """The app holds the library open and opens it again (the fine-tune panel's run record);
    the CLI then opens and closes it. The CLI must not think it is alone: the WAL stays, the
    app's writes land in the file. (Opening once read the header with open()/close(), which
    dropped every POSIX lock of the process on the file: the CLI deleted the WAL under the app.)"""
    path = tmp_path / "lib.avlib"
    app = ClipLibrary(path)
    rows = lib_with_clips(app, templates, tmp_path / "m", 2)
    run_record = ClipLibrary(path, create=False)
    run_record.add_run("r", {}, ["C1"])
    run_record.close()
    _other_process_opens_and_closes(path)
    assert _held_deleted(path) == []
    assert Path(str(path) + "-wal").exists()
    aid = app.annotate(rows[0].id, 3, who="app")
    _other_process_opens_and_closes(path)
    assert _held_deleted(path) == []
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    assert raw.execute("SELECT count, who FROM annotations WHERE id = ?", (aid,)).fetchone() == (3, "app")
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    app.close()


def test_open_library_files_are_never_opened_as_other_files(tmp_path, templates):
    """Whatever a user points at the open library (or its -wal / -shm), as a video, a model,
    a manifest, an import, an export or a stem to write, gets one sentence, and the library
    keeps its locks."""
    import numpy as np

    from avstudio.errors import CheckpointError, MediaError
    from avstudio.media.audio import write_wav
    from avstudio.media.probe import probe
    from avstudio.nets.checkpoint import load_tensors

    path = tmp_path / "clips.avlib"
    lib = ClipLibrary(path)
    lib_with_clips(lib, templates, tmp_path / "m", 1)
    wal = Path(str(path) + "-wal")
    link = tmp_path / "looks-like-a.mp4"
    os.symlink(path, link)
    before = path.stat().st_size, wal.stat().st_size
    for p in (path, wal, Path(str(path) + "-shm"), link):
        with pytest.raises(MediaError, match="clip library"):
            probe(p)
    with pytest.raises(CheckpointError, match="clip library"):
        load_tensors(path)
    with pytest.raises(MediaError, match="clip library"):
        write_wav(path, np.zeros(100, np.float32), 16000)
    with pytest.raises(DataError, match="clip library"):
        lib.export_csv(path)
    with pytest.raises(DataError, match="clip library"):
        lib.import_manifest(path)
    from avstudio.data.box_formats import read_box_file

    for fmt in (None, "flickr", "vggss"):
        with pytest.raises(DataError, match="clip library"):
            read_box_file(path, fmt)
    with pytest.raises(DataError, match="clip library"):
        libmod.content_hash(link)
    rep = lib.import_files([link])
    assert rep.added == 0 and "clip library" in rep.failed[0][1]
    assert (path.stat().st_size, wal.stat().st_size) == before  # nothing written over it
    _other_process_opens_and_closes(path)
    assert _held_deleted(path) == [] and wal.exists()
    lib.close()
    # closed: it is an ordinary file again (FFmpeg says what it is)
    with pytest.raises(MediaError, match="not a media file"):
        probe(path)


def test_a_damaged_library_is_one_sentence(tmp_path, templates):
    path = tmp_path / "lib.avlib"
    with ClipLibrary(path) as lib:
        lib_with_clips(lib, templates, tmp_path / "m", 3)
        assert lib.check() == []
    res = cli("check", path, cwd=tmp_path)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr
    data = bytearray(path.read_bytes())  # closed: nobody holds a lock to lose
    page = 4096
    for i in range(page, len(data)):  # every page after the first: garbage
        data[i] = (i * 7919) % 251
    path.write_bytes(bytes(data))
    res = cli("check", path, cwd=tmp_path)
    assert res.returncode in (1, 2), res.stdout
    assert "Traceback" not in res.stderr
    res = cli("stats", path, cwd=tmp_path)
    assert_user_error(res, "damaged")


# ---------------------------------------------------------------- crash safety

CHILD = textwrap.dedent("""
    import os, random, shutil, sys
    sys.path.insert(0, sys.argv[5])
    from avstudio.data.library import ClipLibrary

    db, template, work, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rng = random.Random(seed)
    lib = ClipLibrary(db)
    ids = [c.id for c in lib.clips()]
    print("READY", flush=True)
    i = 0
    while True:
        i += 1
        r = rng.random()
        if not ids or r < 0.15:
            # a small import of several files in batches of 2
            dsts = []
            for k in range(rng.randint(1, 4)):
                dst = os.path.join(work, f"s{seed}_{i}_{k}.mp4")
                shutil.copyfile(template, dst)
                dsts.append(dst)
            lib.import_files(dsts, batch_size=2)
            for d in dsts:
                c = lib.find(d)
                ids.append(c.id)
                print(f"I {c.id} {d}", flush=True)
        elif r < 0.25:
            cid = rng.choice(ids)
            lib.clear_annotation(cid, who=f"w{seed}")
        else:
            cid = rng.choice(ids)
            count = rng.randint(0, 16)
            aid = lib.annotate(cid, count, unsure=bool(i % 2), who=f"w{seed}")
            print(f"A {aid} {cid} {count}", flush=True)
""")


def _wait_ready(out: Path, proc, deadline: float) -> None:
    while time.monotonic() < deadline:
        if out.exists() and "READY" in out.read_text():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise AssertionError(f"child not ready: {proc.poll()}")


@pytest.mark.slow
def test_sigkill_during_import_and_annotation_loses_nothing_committed(tmp_path, templates):
    db = tmp_path / "crash.avlib"
    work = tmp_path / "work"
    work.mkdir()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rng = random.Random(1234)
    reported: list[str] = []
    for rnd in range(3):
        procs = []
        for j in range(2):  # two writers at once: they also contend for the lock
            seed = rnd * 10 + j
            out, err = tmp_path / f"out{seed}.txt", tmp_path / f"err{seed}.txt"
            with open(out, "w") as fo, open(err, "w") as fe:
                p = subprocess.Popen([sys.executable, str(script), str(db), str(templates[j]),
                                      str(work), str(seed), str(REPO)], stdout=fo, stderr=fe)
            procs.append((p, out, err))
            _wait_ready(out, p, time.monotonic() + 60)
        for p, out, err in procs:
            # killed at a random point of its work: once it has reported 5-30 annotations
            target, deadline = rng.randint(5, 30), time.monotonic() + 300
            while out.read_text().count("\nA ") < target and p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert p.poll() is None, err.read_text()
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            assert p.returncode == -signal.SIGKILL
            text = out.read_text()
            lines = text.split("\n")[:-1]  # a last line without newline was not finished
            reported += [ln for ln in lines if ln[:2] in ("A ", "I ")]

    n_ann = sum(1 for ln in reported if ln.startswith("A "))
    assert n_ann >= 30, f"children did too little work ({n_ann} annotations)"
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    ann = {r[0]: (r[1], r[2]) for r in raw.execute("SELECT id, clip_id, count FROM annotations")}
    clips = {r[0]: r[1] for r in raw.execute("SELECT id, path FROM clips")}
    raw.close()
    for ln in reported:
        kind, a, b, *rest = ln.split(" ")
        if kind == "A":
            assert ann.get(int(a)) == (int(b), int(rest[0])), ln
        else:
            assert clips.get(int(a)) == b, ln
    with ClipLibrary(db, create=False) as lib:  # opens (and recovers the WAL) cleanly
        assert len(lib) == len(clips)
        lib.annotate(next(iter(clips)), 1)


# ---------------------------------------------------------------- CLI


def cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "avstudio", "library", *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def assert_user_error(res, *words):
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr and lines[0].startswith("avstudio library: error:")
    for w in words:
        assert w in lines[0], lines[0]


def test_cli_end_to_end(tmp_path, templates):
    media = tmp_path / "media"
    copy_clips(templates, media, ["a.mp4", "b.mp4", "sub/c.mkv"])
    make_random_bytes(media / "bad.mp4")
    copy_clips(templates[3:], tmp_path / "set", ["d.mp4"])
    write_manifest(tmp_path / "set" / "m.csv", [["d.mp4", "3"]])
    lib = tmp_path / "clips.avlib"

    res = cli("init", lib, cwd=tmp_path)
    assert res.returncode == 0 and "created" in res.stdout, res.stderr
    res = cli("import", lib, media, tmp_path / "set" / "m.csv", cwd=tmp_path)
    assert res.returncode == 1, res.stderr  # one file could not be imported: said, not fatal
    assert "added 4" in res.stdout and "bad.mp4" in res.stderr and "Traceback" not in res.stderr

    res = cli("annotate", lib, "media/a.mp4", "2", "--unsure", "--who", "zoe", cwd=tmp_path)
    assert res.returncode == 0 and "count 2 (unsure) by zoe" in res.stdout, res.stderr
    res = cli("list", lib, "--unannotated", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    names = sorted(Path(r["path"]).name for r in json.loads(res.stdout))
    assert names == ["b.mp4", "c.mkv"]
    res = cli("list", lib, "--stage", "C3", cwd=tmp_path)
    assert res.returncode == 0 and "d.mp4" in res.stdout and "a.mp4" not in res.stdout

    res = cli("export", lib, tmp_path / "out.csv", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with open(tmp_path / "out.csv", newline="") as fh:
        got = {Path(r["path"]).name: (r["count"], r["unsure"], r["who"]) for r in csv.DictReader(fh)}
    assert got == {"a.mp4": ("2", "1", "zoe"), "d.mp4": ("3", "0", "manifest")}
    res = cli("stats", lib, "--json", cwd=tmp_path)
    s = json.loads(res.stdout)
    assert (s["clips"], s["annotated"], s["stages"]) == (4, 2, {"C2": 1, "C3": 1, "unknown": 2})

    # user errors: exit 2, one line on stderr, no traceback, library unchanged
    assert_user_error(cli("annotate", lib, "media/a.mp4", "99", cwd=tmp_path), "99", "0..16")
    assert_user_error(cli("annotate", lib, "media/nope.mp4", "1", cwd=tmp_path), "no clip")
    assert_user_error(cli("list", tmp_path / "missing.avlib", cwd=tmp_path), "does not exist")
    assert_user_error(cli("export", lib, tmp_path / "out.txt", cwd=tmp_path), ".csv")
    assert_user_error(cli("import", lib, tmp_path / "nowhere", cwd=tmp_path), "does not exist")
    (tmp_path / "fake.avlib").write_text("not a database at all, just text\n" * 10)
    assert_user_error(cli("stats", tmp_path / "fake.avlib", cwd=tmp_path), "not an AV Studio library")
    with ClipLibrary(lib, create=False) as l2:
        assert l2.stats()["annotation_rows"] == 2
