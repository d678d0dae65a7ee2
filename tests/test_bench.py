"""`avstudio bench` end to end in its tiny mode: every section, every key, a table.

No timing is asserted here: speeds are measured by the benchmark itself (docs/performance.md),
never in a unit test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avstudio.bench import REQUIRED_KEYS, make_clip, markdown_table, repeat_clip

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    env = {**os.environ, "AVSTUDIO_BENCH_TINY": "1", "QT_QPA_PLATFORM": "offscreen", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, "-m", "avstudio", "bench", "--quick", "--json", str(out)],
                       capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    return r, out


def test_bench_quick_tiny_writes_every_key(tiny_run):
    r, out = tiny_run
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    res = json.loads(out.read_text())
    assert res["scale"] == "tiny"
    for section, keys in REQUIRED_KEYS.items():
        assert section in res, section
        missing = [k for k in keys if k not in res[section]]
        assert not missing, (section, missing)
    # the parts that always run on any machine produced numbers
    assert res["decode"]["frames"] >= 1 and res["decode"]["small_s"] > 0
    assert res["analysis"]["available"] and res["analysis"]["frames"] == res["decode"]["frames"]
    assert res["compute"]["flops_per_frame"] > 0 and res["compute"]["matmul_gflops"] > 0
    assert res["training"]["cpu"]["available"] and res["training"]["cpu"]["clips_per_s"] > 0
    assert res["memory"]["available"] and len(res["memory"]["runs"]) == 2
    assert isinstance(res["machine"]["load_start"], list) and res["machine"]["cores"] >= 1
    # separation (a random separator: the tiny model has none) and the GUI (offscreen, beside a
    # training process) were measured
    assert res["separation"]["available"] and res["separation"]["stems_s"] > 0, res["separation"]["note"]
    assert res["gui"]["available"], (res["gui"]["note"], res["gui"].get("stderr_tail"))
    assert res["gui"]["render_fps"] > 0 and res["gui"]["loop_ms_p99"] is not None
    assert res["gui"]["loop_under_training"] and res["gui"]["loop_ticks"] >= 1
    assert "randomly initialised small model" in res["model"]["note"]


def test_bench_prints_the_machine_and_a_table(tiny_run):
    r, out = tiny_run
    assert r.stdout.startswith("machine: ")
    assert "load average" in r.stdout and "decode -> RGB 112x112" in r.stdout
    assert "analysis, every frame" in r.stdout and "peak RSS" in r.stdout
    md = markdown_table(json.loads(out.read_text()))
    assert md.startswith("| measure |") and md.count("\n") > 8


def test_bench_refuses_bad_flags(tmp_path):
    r = subprocess.run([sys.executable, "-m", "avstudio", "bench", "--only", "nonsense"], capture_output=True,
                       text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len([x for x in r.stderr.splitlines() if x.strip()]) == 1
    r = subprocess.run([sys.executable, "-m", "avstudio", "bench", "--json", str(tmp_path / "no" / "x.json")],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_repeat_clip_makes_a_long_valid_clip_cheaply(tmp_path):
    from avstudio.media import VideoReader, probe, read_audio

    seg = make_clip(tmp_path / "seg.mp4", seconds=1.0, size=(64, 48), preset="ultrafast")
    long = repeat_clip(seg, tmp_path / "long.mp4", 5)
    info = probe(long)
    assert abs(info.duration - 5.0) < 0.05 and info.frame_count == 125 and info.problem is None
    assert info.has_audio and abs(info.audio_duration - 5.0) < 0.1
    with VideoReader(long) as vr:
        assert sum(1 for _ in vr.frames(size=(16, 16))) == 125
        vr.frame(110)  # seeking into a later repetition
    assert abs(len(read_audio(long, 16000)) / 16000 - 5.0) < 0.1


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_gui_benchmarks_training_load_ends_with_the_process_that_started_it():
    """A GUI benchmark killed half-way (its timeout, Ctrl+C) must not leave its training load
    running forever: the load ends by itself once its parent is gone."""
    import signal
    import time

    code = ("import os; from avstudio.gui.bench import training_load; "
            "p = training_load('small'); print(p.pid, flush=True); os._exit(0)")  # dies, load still running
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    pid = int(r.stdout)
    try:
        deadline = time.monotonic() + 120  # a bound on waiting, not a speed: it ends within a second
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _running(pid), "the training load outlived the benchmark that started it"
    finally:
        if _running(pid):
            os.kill(pid, signal.SIGKILL)
