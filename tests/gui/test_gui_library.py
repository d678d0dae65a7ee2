"""The clip library and fine-tuning in the app, driven offscreen with pytest-qt.

* annotation through the window's actions (keys 0-4 and ?, undo/redo, next clip to
  annotate), checked in the table and in the library file;
* imports and exports through the panel;
* the fine-tune panel's process plumbing (pause, cancel, resume, quitting while a run goes on,
  following a run left in the background) with a stand-in trainer that needs no torch;
* one short real fine-tuning run from the panel, on tiny synthetic clips, from a tiny base
  model trained here: its loss goes down, its model is stored in the library's runs and can
  be loaded for analysis.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QKeySequence  # noqa: E402
from PySide6.QtWidgets import QFileDialog  # noqa: E402

from helpers import make_random_bytes, make_video, open_bare_window  # noqa: E402

WAIT = 60000  # ms: the machine is shared


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    for i in range(4):
        make_video(d / f"clip{i}.mp4", 8, size=(48, 32), audio_kind="noise")
    return d


@pytest.fixture
def win(qtbot, dialogs):
    w = open_bare_window(qtbot)
    yield w
    fp = w.finetune_panel
    if fp.proc is not None:  # never leave a process behind
        fp.proc.kill()
        fp.proc.wait(10)
    w.shutdown()


def wait_job(qtbot, panel):
    qtbot.waitUntil(lambda: panel.job is not None and not panel.job.isRunning()
                    and not panel.job_row.isVisible(), timeout=WAIT)


def table_text(panel, clip_id, col):
    from avstudio.gui.library_panel import COL

    i = panel.model.row_of(clip_id)
    return panel.model.data(panel.model.index(i, COL[col]))


# ---------------------------------------------------------------------------- annotation


def test_annotate_with_keys_undo_redo_and_next(qtbot, win, clips, tmp_path):
    p = win.library_panel
    assert p.open_library(str(tmp_path / "clips.avlib"), create=True)
    assert win.library_dock.isVisible()
    job = p.import_paths(folder=str(clips))
    assert job is not None
    wait_job(qtbot, p)
    assert p.model.rowCount() == 4
    lib = p.lib
    rows = {Path(r.path).name: r for r in lib.clips()}
    ids = [rows[f"clip{i}.mp4"].id for i in range(4)]
    # the counter's least certain clip first: clip2, clip0, clip3, then clip1 (no prediction)
    lib.set_prediction(ids[2], 1, 1.4, "m")  # margin 0.1 from the boundary between 1 and 2
    lib.set_prediction(ids[0], 2, 2.25, "m")  # 0.25
    lib.set_prediction(ids[3], 1, 1.05, "m")  # 0.45
    p.refresh()

    # opening a library gives 0-4 and ? to annotation (show/hide sound 1-4 give them up)
    assert win.action("annotate_2").shortcut() == QKeySequence("2")
    assert QKeySequence("2") not in win.action("toggle_cluster_2").shortcuts()
    assert QKeySequence("?") not in win.action("keyboard").shortcuts()
    assert QKeySequence("F1") in win.action("keyboard").shortcuts()

    win.action("next_unannotated").trigger()
    assert lib.find(win.player.path).id == ids[2]
    assert p.model.current_id == ids[2]
    win.action("annotate_2").trigger()  # count 2, then on to the next clip
    assert lib.get(ids[2]).count == 2 and lib.get(ids[2]).annotated_by == "tester"
    assert table_text(p, ids[2], "count") == "2"
    assert table_text(p, ids[2], "stage") == "C2"
    assert lib.find(win.player.path).id == ids[0]
    win.action("annotate_unsure").trigger()  # no count yet: "can't tell"
    c0 = lib.get(ids[0])
    assert c0.annotated and c0.count is None
    assert table_text(p, ids[0], "count") == "?"
    assert lib.find(win.player.path).id == ids[3]
    win.action("annotate_0").trigger()
    assert lib.get(ids[3]).count == 0
    assert lib.find(win.player.path).id == ids[1]

    # undo goes back to the clip it changed; redo writes it again; nothing is deleted
    n_rows = len(lib.annotation_history(ids[3]))
    win.action("undo").trigger()
    assert not lib.get(ids[3]).annotated
    assert lib.find(win.player.path).id == ids[3]
    assert table_text(p, ids[3], "count") == ""
    win.action("undo").trigger()
    assert not lib.get(ids[0]).annotated
    win.action("redo").trigger()
    assert lib.get(ids[0]).annotated and lib.get(ids[0]).count is None
    win.action("redo").trigger()
    assert lib.get(ids[3]).count == 0
    assert len(lib.annotation_history(ids[3])) == n_rows + 2
    assert not win.action("redo").isEnabled()

    # "?" on an annotated clip toggles unsure and stays on it; undo takes it back
    p.open_clip(ids[2])
    win.action("annotate_unsure").trigger()
    assert lib.get(ids[2]).unsure and lib.get(ids[2]).count == 2
    assert lib.find(win.player.path).id == ids[2]
    assert table_text(p, ids[2], "unsure") == "unsure"
    win.action("undo").trigger()
    assert not lib.get(ids[2]).unsure

    # another library opened the same file sees every change (it is saved at once)
    from avstudio.data.library import ClipLibrary

    with ClipLibrary(lib.path, create=False) as other:
        assert [other.get(i).count for i in ids[2:]] == [2, 0]
        assert other.get(ids[0]).annotated

    # filter, search, sort
    p.filter.setCurrentIndex(p.filter.findText("To annotate"))
    assert [r.id for r in p.model.rows] == [ids[1]]
    p.filter.setCurrentIndex(0)
    p.search.setText("clip3")
    qtbot.waitUntil(lambda: p.model.rowCount() == 1, timeout=WAIT)
    p.search.setText("")
    qtbot.waitUntil(lambda: p.model.rowCount() == 4, timeout=WAIT)
    from avstudio.gui.library_panel import COL

    p.table.sortByColumn(COL["count"], Qt.SortOrder.DescendingOrder)
    assert [r.id for r in p.model.rows][:2] == [ids[2], ids[3]]

    # the last clip, then nothing is left
    p.open_clip(ids[1])
    win.action("annotate_1").trigger()
    assert lib.get(ids[1]).count == 1
    assert "Every clip" in win.statusBar().currentMessage()

    # turning the mode off gives the keys back
    win.action("annotate_keys").trigger()
    assert QKeySequence("2") in win.action("toggle_cluster_2").shortcuts()
    assert QKeySequence("?") in win.action("keyboard").shortcuts()
    assert win.action("annotate_2").shortcuts() == []
    p.close_library()
    assert QKeySequence("2") in win.action("toggle_cluster_2").shortcuts()
    assert not win.action("annotate_2").isEnabled()


def test_double_click_opens_the_clip_and_missing_files_say_so(qtbot, win, clips, tmp_path, dialogs):
    import shutil

    d = tmp_path / "v"
    d.mkdir()
    for n in ("a.mp4", "b.mp4"):
        shutil.copy(clips / "clip0.mp4", d / n)
    (d / "b.mp4").write_bytes((d / "b.mp4").read_bytes() + b"x")  # another content hash
    p = win.library_panel
    p.open_library(str(tmp_path / "l.avlib"), create=True)
    p.import_paths(folder=str(d))
    wait_job(qtbot, p)
    i = p.model.row_of(p.lib.find(d / "a.mp4").id)
    rect = p.table.visualRect(p.model.index(i, 0))
    qtbot.mouseClick(p.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(p.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: win.player.path is not None and Path(win.player.path).name == "a.mp4", timeout=WAIT)
    assert "a.mp4" in p.player_label.text()
    (d / "b.mp4").unlink()
    p.lib.refresh_missing()
    p.refresh()
    b = p.lib.find(d / "b.mp4")
    assert b.missing and table_text(p, b.id, "missing") == "missing"
    assert not p.open_clip(b.id)
    assert dialogs and "missing" in dialogs[-1][2]


# ---------------------------------------------------------------------------- import / export


def test_import_folder_and_manifest_through_the_panel(qtbot, win, clips, tmp_path, monkeypatch, dialogs):
    p = win.library_panel
    # File > New library (the dialog answers with a path)
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(tmp_path / "new"), "")))
    win.action("new_library").trigger()
    assert p.lib is not None and p.lib.path.endswith("new.avlib")

    bad = tmp_path / "junk"
    bad.mkdir()
    make_random_bytes(bad / "broken.mp4")
    make_video(bad / "good.mp4", 6, size=(48, 32))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(bad)))
    win.action("import_folder").trigger()
    assert p.job_row.isVisible()  # the job's progress row shows from the start (hidden when it ends)
    wait_job(qtbot, p)
    assert p.last_report.added == 1 and len(p.last_report.failed) == 1
    assert any("not imported" in t for _k, _t, t in dialogs)
    assert p.model.rowCount() == 1

    man = tmp_path / "m.csv"
    man.write_text("path,count,unsure\n" + "".join(f"{clips}/clip{i}.mp4,{i % 3},{int(i == 1)}\n"
                                                  for i in range(4)))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(man), "")))
    win.action("import_manifest").trigger()
    wait_job(qtbot, p)
    assert p.last_report.added == 4 and p.last_report.annotated == 4
    assert p.model.rowCount() == 5
    st = p.lib.stats()
    assert st["annotated"] == 4 and st["unsure"] == 1
    assert "4 annotated" in p.summary.text()
    # the stage filters come from the counts
    assert p.filter.findText("Stage C2 (1)") >= 0
    p.filter.setCurrentIndex(p.filter.findText("Stage C0 (2)"))
    assert p.model.rowCount() == 2
    assert p.filter.findText("No stage (1)") >= 0

    # exports: a manifest CSV that imports back into another library, and JSON
    out = p.export(str(tmp_path / "out.csv"))
    assert out and (tmp_path / "out.csv").read_text().startswith("path,count,unsure")
    from avstudio.data.library import ClipLibrary

    with ClipLibrary(tmp_path / "copy.avlib") as other:
        other.import_manifest(tmp_path / "out.csv")
        assert sorted(r.count for r in other.clips("annotated")) == [0, 0, 1, 2]
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(tmp_path / "dump.json"), "")))
    win.action("export_library_json").trigger()
    data = json.loads((tmp_path / "dump.json").read_text())
    assert len(data["clips"]) == 5

    # main.py --library LIB opens it
    from avstudio.gui.app import build_parser
    from avstudio.gui.library_panel import open_library_from_args

    assert build_parser().parse_args(["--library", "x.avlib"]).library == "x.avlib"
    p.close_library()
    assert open_library_from_args(win, str(tmp_path / "copy.avlib"))
    assert p.model.rowCount() == 4
    assert not open_library_from_args(win, str(tmp_path / "nope.avlib"))


# ---------------------------------------------------------------------------- fine-tuning plumbing

FAKE_TRAINER = textwrap.dedent('''
    """Stands in for `avstudio train --json-progress`: events on stdout, history, checkpoints."""
    import json, os, sys, time
    run = sys.argv[1]
    epochs, steps, dt = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    os.makedirs(run, exist_ok=True)
    state = os.path.join(run, "checkpoint.safetensors")
    start = int(open(state).read()) + 1 if os.path.exists(state) else 0
    hist = os.path.join(run, "history.jsonl")
    if os.path.exists(hist):  # as the trainer does: forget epochs after the checkpoint
        keep = [x for x in open(hist).read().splitlines() if json.loads(x)["epoch"] < start]
        open(hist, "w").write("".join(x + "\\n" for x in keep))
    json.dump({"status": "running"}, open(os.path.join(run, "run.json"), "w"))
    hold = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hold")
    for e in range(start, epochs):
        while e >= 1 and os.path.exists(hold):  # the test holds the run after its first epoch
            time.sleep(0.05)
        for s in range(steps):
            time.sleep(dt)
            loss = 2.0 - 0.1 * (e * steps + s) / steps
            print(json.dumps({"task": "train:C1", "done": e * steps + s + 1, "total": epochs * steps,
                              "message": f"epoch {e + 1}/{epochs}",
                              "metrics": {"loss": loss, "acc": 0.1 * e, "epoch": e + 1}}), flush=True)
        with open(os.path.join(run, "history.jsonl"), "a") as fh:
            fh.write(json.dumps({"phase": "stages", "stage": "C1", "k": 1, "stage_index": 0, "epoch": e,
                                 "loss": loss, "acc": 0.1 * e, "time_s": 0.0}) + "\\n")
        open(state + ".tmp", "w").write(str(e))
        os.replace(state + ".tmp", state)
    open(os.path.join(run, "model.safetensors"), "w").write("not a real model")
    json.dump({"status": "done"}, open(os.path.join(run, "run.json"), "w"))
    print(json.dumps({"model": os.path.join(run, "model.safetensors"), "resumed": start > 0}), flush=True)
''')


@pytest.fixture
def fake_trainer(tmp_path, monkeypatch):
    """prepare_run as usual (manifest, checks), but the command runs the stand-in."""
    from avstudio.train import job as J

    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAINER)
    real = J.prepare_run
    speed = {"epochs": 3, "steps": 6, "dt": 0.2}

    def prepare(lib, spec):
        _argv, counts = real(lib, spec)
        argv = [sys.executable, str(script), str(Path(spec.run_dir).resolve()), str(speed["epochs"]),
                str(speed["steps"]), str(speed["dt"])]
        return argv, counts

    monkeypatch.setattr(J, "prepare_run", prepare)
    return speed


def annotated_library(qtbot, win, clips, tmp_path):
    p = win.library_panel
    p.open_library(str(tmp_path / "ft.avlib"), create=True)
    man = tmp_path / "m.csv"
    man.write_text("path,count\n" + "".join(f"{clips}/clip{i}.mp4,{1 + i % 2}\n" for i in range(4)))
    p.import_paths(manifest=str(man))
    wait_job(qtbot, p)
    win.action("show_finetune").trigger()
    qtbot.waitUntil(lambda: len(win.finetune_panel._stage_boxes) == 2, timeout=WAIT)
    return p


def test_finetune_pause_cancel_resume_and_quit(qtbot, win, clips, tmp_path, fake_trainer, monkeypatch):
    from avstudio.gui import finetune_panel as F
    from avstudio.train import job as J

    annotated_library(qtbot, win, clips, tmp_path)
    ft = win.finetune_panel
    win.action("show_finetune").trigger()
    assert win.finetune_dock.isVisible()
    assert {c: b.text() for c, b in ft._stage_boxes.items()} == {1: "C1 (2)", 2: "C2 (2)"}
    ft._stage_boxes[2].setChecked(False)
    ft.run_edit.setText(str(tmp_path / "runs" / "a"))
    ft._run_dir_auto = False
    hold = tmp_path / "hold"  # the stand-in waits after its first epoch while this exists
    hold.touch()
    rid = ft.start()
    assert rid is not None and ft.running()
    assert ft.start() is None  # one run at a time
    lib = win.library_panel.lib
    assert lib.run(rid).status == "running"
    # the clips are frozen in the run folder (C2's are there for the counter)
    assert (tmp_path / "runs" / "a" / "manifest.csv").read_text().count("\n") == 5
    qtbot.waitUntil(lambda: ft.last_event is not None, timeout=WAIT)
    assert "C1" in ft.progress.format()

    if J.CAN_PAUSE:  # frozen: no progress while paused
        ft.toggle_pause()
        assert ft.pause_btn.text() == "Continue"
        qtbot.waitUntil(lambda: J._proc_state(ft.proc.pid) == "T", timeout=WAIT)
        ft.poll()
        n = ft.tail.offset
        time.sleep(0.6)
        ft.poll()
        assert ft.tail.offset == n
        ft.toggle_pause()
        assert ft.pause_btn.text() == "Pause"

    # cancel after the first epoch: its checkpoint stays and is recorded
    qtbot.waitUntil(lambda: len(J.read_history(tmp_path / "runs" / "a")) >= 1, timeout=WAIT)
    ft.cancel()
    qtbot.waitUntil(lambda: ft.proc is None, timeout=WAIT)
    run = lib.run(rid)
    assert run.status == "cancelled" and ft.last_status == "cancelled"
    assert any(c.stage == "C1" and c.epoch == 0 for c in run.checkpoints)
    assert len(J.read_history(tmp_path / "runs" / "a")) == 1
    hold.unlink()

    # resume from the runs list: the same folder goes on from its checkpoint to the end
    ft.select_run(rid)
    assert ft.resume_btn.isEnabled() and not ft.use_btn.isEnabled()
    ft.resume_btn.click()
    assert ft.running()
    qtbot.waitUntil(lambda: ft.proc is None, timeout=WAIT)
    run = lib.run(rid)
    assert run.status == "finished" and run.model_path.endswith("model.safetensors")
    epochs = [(e["stage"], e["epoch"]) for e in J.read_history(tmp_path / "runs" / "a")]
    assert epochs == [("C1", 0), ("C1", 1), ("C1", 2)]
    assert sorted(c.epoch for c in run.checkpoints if c.epoch is not None) == [0, 1, 2]
    assert run.metrics["first_loss"] > run.metrics["last_loss"]
    ft.select_run(rid)
    assert ft.use_btn.isEnabled() and not ft.resume_btn.isEnabled()
    assert ft.series["C1"]["ex"] == [1.0, 2.0, 3.0]

    # quitting while a run goes on asks; "don't quit" keeps the window, "keep" leaves it running
    fake_trainer.update(epochs=2, steps=6, dt=0.2)
    ft.run_edit.setText(str(tmp_path / "runs" / "b"))
    hold.touch()  # it stays running until the new session below has found it
    rid2 = ft.start()
    answers = ["cancel", "keep"]
    monkeypatch.setattr(F, "ask_close_while_training", lambda parent, name: answers.pop(0))
    assert not win.close()
    assert win.isVisible() and ft.running()
    pid = ft.proc.pid
    assert win.close()
    assert ft.proc is None and J._pid_alive(pid)

    # a new session finds it running in the background and follows it to its end
    from avstudio.gui.main_window import MainWindow

    w2 = MainWindow(audio=False, load_model=False)
    qtbot.addWidget(w2)
    try:
        w2.library_panel.open_library(lib.path)
        ft2 = w2.finetune_panel
        assert ft2.proc is not None and ft2.run_id == rid2 and ft2.proc.pid == pid
        hold.unlink()
        qtbot.waitUntil(lambda: ft2.proc is None, timeout=WAIT)
        assert ft2.last_status == "finished"
        assert w2.library_panel.lib.run(rid2).status == "finished"
    finally:
        if w2.finetune_panel.proc is not None:
            w2.finetune_panel.proc.kill()
        w2.shutdown()


def test_a_run_that_died_is_marked_failed_and_resumable(qtbot, win, clips, tmp_path):
    from avstudio.train import job as J

    p = annotated_library(qtbot, win, clips, tmp_path)
    run_dir = tmp_path / "runs" / "dead"
    run_dir.mkdir(parents=True)
    (run_dir / "history.jsonl").write_text(json.dumps({"phase": "stages", "stage": "C1", "epoch": 0,
                                                       "loss": 1.0, "acc": 0.5}) + "\n")
    rid = p.lib.add_run("dead", {"run_dir": str(run_dir), "argv": [sys.executable, "-c", "pass"],
                                 "stages": [1]}, ["C1"], status="running")
    (run_dir / J.PID_FILE).write_text(json.dumps({"pid": 2 ** 22 + 7}))  # no such process
    p.close_library()
    p.open_library(str(tmp_path / "ft.avlib"))
    run = p.lib.run(rid)
    assert run.status == "failed" and "resume" in run.metrics["error"]
    assert [(c.stage, c.epoch) for c in run.checkpoints] == [("C1", 0)]
    win.finetune_panel.select_run(rid)
    assert win.finetune_panel.resume_btn.isEnabled()


def test_finetune_refuses_what_cannot_run(qtbot, win, clips, tmp_path, dialogs):
    ft = win.finetune_panel
    assert ft.start() is None
    assert "library" in dialogs[-1][2]
    annotated_library(qtbot, win, clips, tmp_path)
    for b in ft._stage_boxes.values():
        b.setChecked(False)
    assert ft.start() is None
    assert "stage" in dialogs[-1][2]
    ft._stage_boxes[1].setChecked(True)
    ft.base_edit.setText(str(tmp_path / "no-such-model"))
    assert ft.start() is None
    assert "does not exist" in dialogs[-1][2]
    ft.lr_combo.setCurrentText("fast")
    assert ft.start() is None
    assert "learning rate" in dialogs[-1][2]


# ---------------------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """Tiny synthetic clips (two with one source, one with two) and a tiny base model trained here."""
    from avstudio.data.manifest import read_manifest
    from avstudio.data.synth import SynthConfig, generate
    from avstudio.nets.config import default_config
    from avstudio.train.trainer import Row, TrainConfig, Trainer

    d = tmp_path_factory.mktemp("bench")
    man = generate(d / "clips", 3, sources=(1, 1, 2), seed=11, config=SynthConfig(size=(96, 96), duration=2.0))
    rows = [Row(r.path, r.count) for r in read_manifest(man)]
    res = Trainer([r for r in rows if r.count == 1], d / "base",
                  TrainConfig(stages=[1], epochs=1, batch_clips=2, clip_repeats=1, counter_epochs=1, seed=1,
                              threads=1),
                  model_cfg=default_config("small")).run()
    # the same localizer with a separator beside it (a MODEL folder, as models/default is)
    import torch

    from avstudio.nets.checkpoint import component_tensors, load_tensors, save_tensors
    from avstudio.nets.separator import Separator, SeparatorConfig

    folder = d / "base_with_separator"
    folder.mkdir()
    save_tensors(folder / "localizer.safetensors", *load_tensors(res.model_path))
    torch.manual_seed(2)
    sep = Separator(SeparatorConfig(n_bins=64, channels=(4, 8), feat_channels=4, head_hidden=4,
                                    cond_dim=default_config("small").embed_dim))
    save_tensors(folder / "separator.safetensors", component_tensors("sep", sep),
                 {"components": {"sep": {"class": "Separator", "config": sep.cfg.to_dict()}}})
    return {"manifest": man, "base": res.model_path, "base_with_separator": folder}


def test_real_finetune_from_the_panel(qtbot, win, bench, tmp_path, monkeypatch):
    from avstudio.train import job as J

    p = win.library_panel
    p.open_library(str(tmp_path / "real.avlib"), create=True)
    p.import_paths(manifest=str(bench["manifest"]))
    wait_job(qtbot, p)
    assert p.lib.stats()["annotated"] == 3
    ft = win.finetune_panel
    win.action("show_finetune").trigger()
    ft.base_edit.setText(str(bench["base_with_separator"]))
    qtbot.waitUntil(lambda: ft.clips_combo.findText("Only stage C1 (2)") > 0, timeout=WAIT)
    i = ft.clips_combo.findText("Only stage C1 (2)")
    ft.clips_combo.setCurrentIndex(i)
    assert list(ft._stage_boxes) == [1]
    ft.epochs_spin.setValue(2)
    ft.counter_spin.setValue(0)
    ft.batch_spin.setValue(2)
    ft.repeats_spin.setValue(3)
    ft.run_edit.setText(str(tmp_path / "run"))
    ft._run_dir_auto = False
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # one training thread
    rid = ft.start()
    assert rid is not None
    qtbot.waitUntil(lambda: ft.proc is None, timeout=300000)
    assert ft.last_status == "finished", (ft.status.text(), (tmp_path / "run" / "train.log").read_text())

    hist = J.read_history(tmp_path / "run")
    assert [(e["stage"], e["epoch"]) for e in hist] == [("C1", 0), ("C1", 1)]
    assert hist[-1]["loss"] < hist[0]["loss"]  # it learned
    assert len(ft.series["C1"]["x"]) >= 2  # live points on the curves
    run = p.lib.run(rid)
    assert run.status == "finished"
    assert Path(run.model_path) == (tmp_path / "run" / "model.safetensors")
    assert run.metrics["last_loss"] < run.metrics["first_loss"]
    assert {(c.stage, c.epoch) for c in run.checkpoints} >= {("C1", 0), ("C1", 1), ("C1", None)}
    assert run.config["argv"][-1] == "1" and "--json-progress" in run.config["argv"]

    # the new model loads for analysis in the main window
    ft.select_run(rid)
    with qtbot.waitSignal(win.modelReady, timeout=WAIT):
        ft.use_btn.click()
    b = win.player.bundle
    assert b is not None and b.paths["av"] == str(tmp_path / "run" / "model.safetensors")
    # ... keeping the separator it was fine-tuned from (stems and click-to-hear stay), and the
    # status bar names it
    assert b.separator is not None and b.paths["sep"] == b.paths["av"]
    assert win.status_line.model.text() == "model: run/model"
    assert "fine-tuned from" in win.panel.model_label.toolTip()

    # ... and its counter predicts the counts of clips not annotated yet
    c = p.lib.clips()[0]
    p.lib.clear_annotation(c.id)
    job = p.predict_counts()
    assert job is not None
    wait_job(qtbot, p)
    got = p.lib.get(c.id)
    assert got.predicted_count is not None and got.predicted_rate >= 0.0
    assert got.predicted_count == min(16, round(got.predicted_rate))
    assert table_text(p, c.id, "pred") == str(got.predicted_count)


def test_library_keys_are_documented(qtbot, win, tmp_path):
    from avstudio.gui.keys import markdown_table
    from avstudio.studio.actions import owned_by

    p = win.library_panel
    p.open_library(str(tmp_path / "k.avlib"), create=True)
    names = {a.name for a in owned_by("library") + owned_by("annotation")} | {"show_finetune"}
    table = markdown_table(win, only=names)
    for key in ("`0`", "`4`", "`?`", "`Ctrl+Z`", "`N`"):
        assert key in table
    doc = (Path(__file__).resolve().parents[2] / "docs" / "library.md").read_text()
    assert table.strip() in doc
    # the player's own table (docs/gui.md) does not change with the library
    assert not names & win.player_action_names


# ------------------------------------------------------------------ responsiveness under load

def test_gui_stays_responsive_while_analysis_and_training_run(qtbot, win, bench, tmp_path, monkeypatch):
    """A real fine-tuning run (worker process) and a real analysis (GUI's background thread) at
    once, on the same 2 cores: the event loop keeps ticking and nothing blocks it for seconds.
    How late its events come (p99 <= 100 ms) is a speed, measured by ``avstudio bench`` (the
    GUI section's ``loop_ms_p99``), not asserted here: on a shared machine that is a coin toss."""
    from avstudio.gui.bench import LoopProbe

    p = win.library_panel
    p.open_library(str(tmp_path / "load.avlib"), create=True)
    p.import_paths(manifest=str(bench["manifest"]))
    wait_job(qtbot, p)
    ft = win.finetune_panel
    win.action("show_finetune").trigger()
    ft.base_edit.setText(str(bench["base"]))
    qtbot.waitUntil(lambda: ft.clips_combo.findText("Only stage C1 (2)") > 0, timeout=WAIT)
    ft.clips_combo.setCurrentIndex(ft.clips_combo.findText("Only stage C1 (2)"))
    ft.epochs_spin.setValue(1000)  # far longer than the measurement: cancelled below
    ft.counter_spin.setValue(0)
    ft.batch_spin.setValue(2)
    ft.repeats_spin.setValue(4)
    ft.run_edit.setText(str(tmp_path / "run"))
    ft._run_dir_auto = False
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert ft.start() is not None
    # wait until the worker trains (its first epoch logged), then analyse a clip in the window
    qtbot.waitUntil(lambda: len(ft.series.get("C1", {}).get("x", [])) >= 1, timeout=300000)
    with qtbot.waitSignal(win.modelReady, timeout=WAIT):
        win.load_model(str(bench["base"]))
    clip = make_video(tmp_path / "load.mp4", 500, size=(320, 240), audio_kind="noise")
    probe = LoopProbe()
    probe.start()
    t0 = time.perf_counter()
    assert win.open_file(str(clip))
    qtbot.waitUntil(lambda: win.player.analysis_state == "done", timeout=300000)
    busy_s = time.perf_counter() - t0
    probe.stop()
    assert ft.proc is not None, "the fine-tuning run ended before the measurement did"
    ft.cancel()
    qtbot.waitUntil(lambda: ft.proc is None, timeout=WAIT)
    s = probe.summary()
    s["seconds"] = busy_s
    report = os.environ.get("AVSTUDIO_RELIABILITY_REPORT")
    if report:
        Path(report).with_suffix(".gui_latency.json").write_text(json.dumps(s, indent=2))
    print("event-loop latency while analysing + training:", s)
    assert s["ticks"] >= 20, s  # the loop ran all along (a 5 ms timer over seconds of work)
    assert s["max_ms"] < 5000, s  # and no event waited for seconds
