"""Fine-tuning runs from a library, Qt-free (avstudio/train/job.py): JSON progress lines,
the run's command and frozen manifest, and recording a run folder in the library."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from avstudio.data.library import ClipLibrary
from avstudio.errors import DataError
from avstudio.progress import ProgressEvent
from avstudio.train import job as J
from helpers import make_video


def test_json_progress_lines_are_throttled_and_strict(monkeypatch):
    out = io.StringIO()
    clock = [0.0]
    monkeypatch.setattr(J.time, "monotonic", lambda: clock[0])
    pr = J.JsonLinesProgress(out, min_interval=0.2)
    for i in range(1, 11):  # 10 steps, 0.05 s apart
        clock[0] += 0.05
        pr(ProgressEvent("train:C1", i, 10, "epoch 1/1", {"loss": 1.0 / i, "acc": float("nan")}))
    clock[0] += 0.01
    pr(ProgressEvent("train:C1", 10, 10, "", {"epoch_done": 1, "loss": 0.1}))
    pr(ProgressEvent("train:counter", 1, 5, ""))
    lines = [json.loads(x) for x in out.getvalue().splitlines()]  # strict JSON: no NaN
    done = [(d["task"], d["done"]) for d in lines]
    assert done[0] == ("train:C1", 1)  # the first of a task
    assert ("train:C1", 10) in done and done[-2:] == [("train:C1", 10), ("train:counter", 1)]
    assert len(done) < 10  # steps closer than 0.2 s are dropped
    assert lines[0]["metrics"]["acc"] is None
    ev = J.event_from_dict(lines[0])
    assert ev.task == "train:C1" and ev.metrics["loss"] == 1.0 and ev.fraction == 0.1


def test_progress_tail_reads_complete_lines_only(tmp_path):
    p = tmp_path / "progress.jsonl"
    tail = J.ProgressTail(p)
    assert tail.read() == []  # no file yet
    with open(p, "w") as fh:
        fh.write('{"task": "a", "done": 1}\nnot json\n{"task": "b", "do')
    assert [d["task"] for d in tail.read()] == ["a"]
    with open(p, "a") as fh:
        fh.write('ne": 2}\n')
    assert tail.read() == [{"task": "b", "done": 2}]
    assert J.ProgressTail(p, from_end=True).read() == []


@pytest.fixture
def lib(tmp_path):
    clips = [make_video(tmp_path / f"c{i}.mp4", 4, size=(32, 32)) for i in range(4)]
    with ClipLibrary(tmp_path / "l.avlib") as lib:
        lib.import_files(clips)
        for c, n in zip(lib.clips(order_by="path"), [1, 1, 2, 0], strict=True):
            lib.annotate(c.id, n, unsure=(n == 2), who="t")
        yield lib


def test_prepare_run_freezes_the_clips_and_builds_the_command(lib, tmp_path):
    base = tmp_path / "base.safetensors"
    base.write_bytes(b"x")
    spec = J.FinetuneSpec(library=lib.path, run_dir=str(tmp_path / "run"), base=str(base), stages=[1, 2],
                          epochs=[3, 2], counter_epochs=1, lr=3e-4, batch_clips=2, clip_repeats=4, threads=1)
    argv, counts = J.prepare_run(lib, spec)
    assert counts == {0: 1, 1: 2, 2: 1}
    assert argv[:4] == [sys.executable, "-m", "avstudio", "train"]
    for flag, val in (("--stages", "1,2"), ("--epochs", "3,2"), ("--counter-epochs", "1"), ("--batch-clips", "2"),
                      ("--clip-repeats", "4"), ("--init", str(base.resolve())), ("--threads", "1")):
        assert argv[argv.index(flag) + 1] == val
    assert "--json-progress" in argv
    man = Path(argv[argv.index("--manifest") + 1])
    from avstudio.data.manifest import read_manifest

    assert sorted(r.count for r in read_manifest(man)) == [0, 1, 1, 2]
    assert J.plan_steps(counts, spec) == {"train:C1": 4 * 3, "train:C2": 2 * 2, "train:counter": 8}
    # one stage only, unsure left out
    only = J.library_rows(lib, only_stage=2, include_unsure=False)
    assert only == []
    with pytest.raises(DataError, match="already holds a run"):
        (tmp_path / "run" / "run.json").write_text("{}")
        J.prepare_run(lib, spec)


@pytest.mark.parametrize("bad, match", [(dict(stages=[]), "at least one"), (dict(stages=[3]), "C3"),
                                        (dict(base="nope"), "does not exist"), (dict(only_stage=5), "no annotated clip")])
def test_prepare_run_refuses_what_cannot_run(lib, tmp_path, bad, match):
    base = tmp_path / "base.safetensors"
    base.write_bytes(b"x")
    spec = dict(library=lib.path, run_dir=str(tmp_path / "r2"), base=str(base), stages=[1, 2], threads=1)
    if "base" in bad:
        bad = {"base": str(tmp_path / bad["base"])}
    with pytest.raises(DataError, match=match):
        J.prepare_run(lib, J.FinetuneSpec(**{**spec, **bad}))


def test_sync_run_records_epochs_stages_and_the_final_model(lib, tmp_path):
    run = tmp_path / "run"
    (run / "stages").mkdir(parents=True)
    rid = lib.add_run("run", {"run_dir": str(run)}, ["C1"], status="running")
    hist = [{"phase": "stages", "stage": "C1", "epoch": e, "loss": 2.0 - e, "acc": 0.1 * e, "time_s": e}
            for e in range(2)]
    (run / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in hist[:1]))
    r = J.sync_run(lib, rid)
    assert r.status == "running" and [(c.stage, c.epoch) for c in r.checkpoints] == [("C1", 0)]
    (run / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in hist)
                                       + json.dumps({"phase": "counter", "stage": "counter", "epoch": 0,
                                                     "loss": 0.5, "acc": 0.75}) + "\n")
    (run / "stages" / "C1.safetensors").write_bytes(b"x")
    (run / "model.safetensors").write_bytes(b"x")
    (run / "run.json").write_text(json.dumps({"status": "done"}))
    r = J.sync_run(lib, rid)
    r = J.sync_run(lib, rid)  # again: nothing new
    assert r.status == "finished" and r.model_path == str(run / "model.safetensors")
    assert sorted((c.stage, -1 if c.epoch is None else c.epoch) for c in r.checkpoints) == [
        ("C1", -1), ("C1", 0), ("C1", 1), ("counter", 0)]
    m = r.metrics
    assert m["first_loss"] == 2.0 and m["last_loss"] == 1.0 and m["loss_by_stage"] == {"C1": [2.0, 1.0]}
    assert m["counter_loss"] == 0.5 and m["epochs_done"] == 3
    # a run whose process is gone without finishing: failed, with a reason
    rid2 = lib.add_run("gone", {"run_dir": str(tmp_path / "gone")}, ["C1"], status="running")
    assert J.reconcile_runs(lib) == []
    assert lib.run(rid2).status == "failed" and "resume" in lib.run(rid2).metrics["error"]
