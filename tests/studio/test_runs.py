"""Watching a fine-tuning run without Qt (avstudio.studio.runs)."""

from __future__ import annotations

import json

import pytest

from avstudio.progress import ProgressEvent
from avstudio.studio.runs import RunMonitor, end_text, fmt_duration, loss_summary, run_stage_rows, stage_layout
from avstudio.train.job import FinetuneSpec


def spec(**kw) -> FinetuneSpec:
    return FinetuneSpec(library="lib.avlib", run_dir="run", stages=[1, 2], epochs=2, counter_epochs=1,
                        batch_clips=2, clip_repeats=1, **kw)


def test_progress_eta_and_curves_from_events():
    m = RunMonitor(spec(), counts={1: 4, 2: 2})
    assert m.plan == {"train:C1": 4, "train:C2": 2, "train:counter": 3}  # steps per task
    assert m.on_event(ProgressEvent("decode:C1", 3, 6)).progress_text == "decoding the clips of C1: 3/6"
    assert m.on_event(ProgressEvent("note", 0, None, "hello")).status == "hello"
    v = m.on_event(ProgressEvent("train:C1", 1, 4, "epoch 1/2", {"loss": 2.0, "acc": 0.1}), now=100.0)
    assert v.fraction == pytest.approx(1 / 9) and v.stage == "C1" and "ETA" not in v.progress_text
    m.paused(now=101.0)
    m.resumed(now=131.0)  # 30 s paused: not counted in the rate
    v = m.on_event(ProgressEvent("train:C2", 1, 2, "epoch 1/2", {"loss": 1.5, "acc": 0.2}), now=133.0)
    assert v.fraction == pytest.approx(5 / 9)
    assert v.progress_text == "C2 · epoch 1/2 · 56% · ETA 3 s"  # 4 steps in 3 active s: 4 left take 3 s
    assert m.series["C1"]["x"] == [0.5] and m.series["C2"]["x"] == [3.0]  # C2's epochs start at 2
    assert m.on_event(ProgressEvent("train:C2", 2, 2, "")).stage is None  # no metrics: no point


def test_history_becomes_epoch_points(tmp_path):
    m = RunMonitor(spec())
    lines = [{"phase": "stages", "stage": "C1", "epoch": 0, "loss": 2.0, "acc": 0.1},
             {"phase": "stages", "stage": "C1", "epoch": 1, "loss": 1.8, "acc": 0.2},
             {"phase": "stages", "stage": "C2", "epoch": 0, "loss": None, "acc": None}]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert len(m.load_history(tmp_path)) == 3
    assert m.series["C1"]["ex"] == [1, 2] and m.series["C1"]["eloss"] == [2.0, 1.8]
    assert m.series["C2"]["ex"] == []
    assert m.stage_index("C2") == 1 and m.stage_index("counter") == -1


def test_texts():
    assert stage_layout(spec())["C2"] == (2.0, 2.0) and stage_layout(spec())["counter"] == (4.0, 1.0)
    metrics = {"loss_by_stage": {"C1": [1.5, None, 1.42], "C2": [1.6]}, "counter_loss": 0.5, "counter_acc": 0.75}
    assert loss_summary(metrics) == "C1 1.500 → 1.420 · C2 1.600"
    assert run_stage_rows(metrics) == [("C1", 3, "loss 1.500 → 1.420"), ("C2", 1, "loss 1.600"),
                                       ("counter", None, "loss 0.500, acc 0.75")]
    assert [fmt_duration(s) for s in (5, 65, 3725)] == ["5 s", "1 min 05 s", "1 h 02 min"]
    assert end_text("finished", "/r/run1/model.safetensors", metrics, None).startswith("Finished: run1/model")
    assert end_text("failed", None, {}, "boom") == "Failed: boom (Resume continues from the last checkpoint)"
