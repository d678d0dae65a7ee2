"""Curriculum training, resume after kill -9, analysis and evaluation, end to end on tiny clips."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from avstudio.data.manifest import read_manifest
from avstudio.data.synth import SynthConfig, generate
from avstudio.nets.checkpoint import load_model, load_tensors
from avstudio.nets.config import default_config
from avstudio.train.trainer import Row, TrainConfig, Trainer

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "avstudio", *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=timeout)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cfg = SynthConfig(size=(96, 96), duration=2.0)
    generate(out, 8, sources=(1, 2), seed=11, config=cfg)
    return out


def tiny_config(**kw):
    base = dict(epochs=2, batch_clips=2, clip_repeats=2, counter_epochs=1, seed=3, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def rows_of(bench):
    return [Row(r.path, r.count) for r in read_manifest(bench / "manifest.csv")]


def test_curriculum_stages_in_order_and_progress_events(bench, tmp_path):
    events = []
    t = Trainer(rows_of(bench), tmp_path / "run", tiny_config(), model_cfg=default_config("small"),
                progress=events.append)
    res = t.run()
    stages = [e["stage"] for e in res.history]
    assert stages == ["C1", "C1", "C2", "C2", "counter"]
    tasks = [e.task for e in events]
    assert tasks.index("train:C1") < tasks.index("train:C2") < tasks.index("train:counter")
    assert all("loss" in e.metrics and "acc" in e.metrics for e in events if e.task.startswith("train:"))
    # a loadable model with a complete card, and one per stage
    b = load_model(res.model_path)
    card = b.card("av")
    assert card["stages"][0]["k"] == 1 and card["stages"][1]["k"] == 2
    assert "command" in card and card["data"] is not None and card["training"]["seed"] == 3
    assert (tmp_path / "run" / "stages" / "C1.safetensors").exists()
    assert (tmp_path / "run" / "stages" / "C2.safetensors").exists()
    # running the same command again does nothing and says so
    again = Trainer(rows_of(bench), tmp_path / "run", tiny_config(), model_cfg=default_config("small")).run()
    assert again.already_done


def test_same_seed_same_weights(bench, tmp_path):
    cfg = tiny_config(stages=[1], counter_epochs=0, epochs=1)
    a = Trainer(rows_of(bench), tmp_path / "a", cfg, model_cfg=default_config("small")).run()
    b = Trainer(rows_of(bench), tmp_path / "b", tiny_config(stages=[1], counter_epochs=0, epochs=1),
                model_cfg=default_config("small")).run()
    ta, _ = load_tensors(a.model_path)
    tb, _ = load_tensors(b.model_path)
    assert ta.keys() == tb.keys()
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_missing_counts_need_a_counter(bench, tmp_path):
    from avstudio.errors import DataError

    rows = rows_of(bench)
    rows[0] = Row(rows[0].path, None)
    with pytest.raises(DataError, match="no source count"):
        Trainer(rows, tmp_path / "r", tiny_config(), model_cfg=default_config("small")).run()


def test_kill_9_then_resume_loses_at_most_one_epoch(bench, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--manifest", bench / "manifest.csv", "--out", run, "--arch", "small", "--epochs", "4",
            "--batch-clips", "2", "--clip-repeats", "2", "--counter-epochs", "1", "--seed", "5",
            "--threads", "1", "--quiet"]
    p = subprocess.Popen([sys.executable, "-m", "avstudio", *map(str, args)], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hist = run / "history.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if hist.exists() and len(hist.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done_before = len(hist.read_text().splitlines())
    assert done_before >= 2
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["resumed"] is True
    lines = [json.loads(x) for x in hist.read_text().splitlines()]
    keys = [(e["stage"], e["epoch"]) for e in lines]
    assert len(keys) == len(set(keys))  # no epoch logged twice
    assert keys == [("C1", 0), ("C1", 1), ("C1", 2), ("C1", 3), ("C2", 0), ("C2", 1), ("C2", 2), ("C2", 3),
                    ("counter", 0)]
    assert load_model(run / "model.safetensors").counter is not None


def test_analyze_and_eval_cli(bench, tmp_path):
    run = tmp_path / "run"
    r = run_cli("train", "--manifest", bench / "manifest.csv", "--out", run, "--arch", "small", "--epochs", "1",
                "--batch-clips", "2", "--clip-repeats", "1", "--counter-epochs", "1", "--threads", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    clip = read_manifest(bench / "manifest.csv")[1].path
    out = tmp_path / "an"
    r = run_cli("analyze", clip, "--model", run / "model.safetensors", "--out", out, "--k", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    z = np.load(out / "heatmaps.npz")
    h, t = z["heatmaps"], z["times"]
    assert h.dtype == np.float32 and h.ndim == 4 and h.shape[1] == 2 and h.shape[0] == 50
    assert 0.0 <= h.min() and h.max() <= 1.0
    assert t.dtype == np.float64 and t.shape == (50,) and np.all(np.diff(t) > 0)
    assert abs(t[1] - t[0] - 0.04) < 1e-6
    s = json.loads((out / "summary.json").read_text())
    assert s["k"] == 2 and "timings" in s and s["model"]
    # the trained model has no separator: no stems, and the user is told so
    assert not (out / "stems").exists() and "no separator" in s["stems_note"]
    assert "no separator" in r.stderr and "no separator" in json.loads(r.stdout)["stems_note"]
    r = run_cli("eval", "--model", run, "--data", bench, "--frames-per-clip", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    for lvl in ("C1", "C2"):
        L = res["localization"][lvl]
        for name in ("model", "aligned_center", "unaligned_center", "whole_image", "center_prior"):
            for how in ("0.5", "median"):
                assert {"ciou@0.5", "auc", "nsa"} <= set(L[name][how])
    # a whole-image guess floods the frame: NSA 0 under the 0.5 binarisation
    assert res["localization"]["C1"]["whole_image"]["0.5"]["nsa"] == 0.0
    assert {"accuracy", "majority_baseline"} <= set(res["counting"])


@pytest.mark.parametrize("make,word", [
    (lambda d: d / "missing.mp4", "no such file|does not exist|not found|missing"),
    # seeded: some random byte strings parse as a stream-less container ("has no video or audio stream")
    (lambda d: (d / "junk.mp4").write_bytes(random.Random(7).randbytes(2000)) and d / "junk.mp4",
     "media|decode|invalid|not|stream"),
])
def test_analyze_bad_video_one_line(tmp_path, make, word):
    import re

    path = make(tmp_path)
    r = run_cli("analyze", path, "--out", tmp_path / "o", "--model", tmp_path / "nomodel.safetensors")
    assert r.returncode != 0
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert re.search(word, lines[0], re.I) and str(path) in lines[0]  # the video is checked first


def test_analyze_refuses_a_pickled_model(tmp_path, bench):
    import pickle

    bad = tmp_path / "m.safetensors"
    bad.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    bad.with_suffix(".json").write_text('{"format": "avstudio-model", "components": {"av": {}}}')
    clip = read_manifest(bench / "manifest.csv")[0].path
    r = run_cli("analyze", clip, "--model", bad, "--out", tmp_path / "o")
    assert r.returncode == 2 and "pickle" in r.stderr and "Traceback" not in r.stderr


def test_replay_and_stage_lr(bench, tmp_path, monkeypatch):
    """--replay: about that share of a later stage's steps trains on the earlier stage's clips
    with its k; --stage-lr: stage i starts at lr * F**i."""
    import avstudio.train.trainer as T

    seen = []
    lrs = []
    orig_set_lr = T.set_lr

    def spy_lr(opt, tcfg, progress, stage_index=0):
        orig_set_lr(opt, tcfg, progress, stage_index)
        lrs.append((stage_index, progress, opt.param_groups[0]["lr"]))

    monkeypatch.setattr(T, "set_lr", spy_lr)
    cfg = tiny_config(epochs=3, clip_repeats=8, counter_epochs=0, replay=0.5, stage_lr=0.3, schedule="constant")
    t = Trainer(rows_of(bench), tmp_path / "run", cfg, model_cfg=default_config("small"))
    orig = t._with_replay

    def spy(batches, si, epoch, steps):
        for b, k in orig(batches, si, epoch, steps):
            seen.append((si, k))
            yield b, k

    t._with_replay = spy
    t.run()
    ks = [k for si, k in seen if si == 1]
    assert ks and set(ks) <= {1, 2}
    share = ks.count(1) / len(ks)  # the data has levels 1 and 2: C2 replays C1
    assert 0.2 < share < 0.8  # about half of stage C2's steps replay C1 (k = 1)
    assert {round(lr, 6) for si, _, lr in lrs if si == 0} == {1e-3}
    assert {round(lr, 6) for si, _, lr in lrs if si == 1} == {3e-4}


def test_stacked_model_maps_of_a_chunk_equal_the_whole_clip(bench, tmp_path):
    """A model that stacks frames gets each frame's neighbours in a chunk of the clip too (the
    app analyses chunks from the playhead): a chunk's maps are the whole clip's maps."""
    from avstudio.analysis.localize import analyze_clip
    from avstudio.nets.checkpoint import component_tensors, save_tensors
    from avstudio.nets.model import AVModel

    torch.manual_seed(0)
    cfg = default_config("photo-small")
    m = AVModel(cfg).eval()
    card = {"kind": "avstudio-localizer", "components": {"av": {"class": "AVModel", "config": cfg.to_dict()}}}
    path = tmp_path / "m.safetensors"
    save_tensors(path, component_tensors("av", m), card)
    b = load_model(path)
    clip = sorted(bench.glob("clip_*.mp4"))[0]
    whole = analyze_clip(b, str(clip), k=1)
    n = len(whole.frame_indices)
    for a, z in ((0, 7), (10, 21), (n - 6, n)):
        part = analyze_clip(b, str(clip), k=1, start_frame=a, stop_frame=z)
        assert list(part.frame_indices) == list(range(a, z))
        assert np.abs(part.heatmaps - whole.heatmaps[a:z]).max() < 2e-3


def test_calibrate_writes_the_chosen_temperature(bench, tmp_path):
    """avstudio calibrate scores each candidate temperature on validation clips and, with
    --write, stores the best one in the localizer's card (weights untouched)."""
    from avstudio.nets.files import component_tensors, file_sha256, save_tensors
    from avstudio.nets.model import AVModel

    torch.manual_seed(0)
    cfg = default_config("small")
    card = {"kind": "avstudio-localizer", "components": {"av": {"class": "AVModel", "config": cfg.to_dict()}}}
    path = tmp_path / "m.safetensors"
    save_tensors(path, component_tensors("av", AVModel(cfg)), card)
    sha = file_sha256(path)
    r = run_cli("calibrate", path, "--val-data", bench, "--temperatures", "0.2,0.7", "--frames", "1", "--write")
    assert r.returncode == 0, r.stderr
    rows = [ln for ln in r.stdout.splitlines() if ln[:3] in ("0.2", "0.7")]
    assert len(rows) == 2 and sum("<- best" in ln for ln in rows) == 1
    best = float(next(ln for ln in rows if "<- best" in ln).split()[0])
    written = json.loads(path.with_suffix(".json").read_text())
    assert written["components"]["av"]["config"]["heat_temperature"] == best
    assert written["calibration"]["val_data"] == str(bench)
    assert file_sha256(path) == sha
    assert load_model(path).av.cfg.heat_temperature == best
    bad = run_cli("calibrate", path, "--val-data", tmp_path / "nowhere")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_map_rate_interpolates_between_computed_frames(bench, tmp_path):
    """A model with a map rate below the clip's frame rate computes maps every fps // rate
    frames (the same maps as computing every frame) and interpolates the frames between;
    every frame still gets maps, the last one computed."""
    from dataclasses import replace

    from avstudio.analysis.localize import analyze_clip
    from avstudio.nets.files import component_tensors, save_tensors
    from avstudio.nets.model import AVModel

    torch.manual_seed(0)
    cfg = default_config("photo-small")
    m = AVModel(cfg).eval()
    paths = {}
    for name, c in (("every", cfg), ("rate", replace(cfg, map_rate=cfg.map_rate or 8.0))):
        card = {"kind": "avstudio-localizer", "components": {"av": {"class": "AVModel", "config": c.to_dict()}}}
        paths[name] = tmp_path / f"{name}.safetensors"
        save_tensors(paths[name], component_tensors("av", m), card)
    clip = str(sorted(bench.glob("clip_*.mp4"))[1])
    full = analyze_clip(load_model(paths["every"]), clip, k=1)
    part = analyze_clip(load_model(paths["rate"]), clip, k=1)
    n = len(full.frame_indices)
    assert list(part.frame_indices) == list(range(n))
    stride = part.timings["map_stride"]
    assert stride == 3 and part.timings["maps_computed"] == len(range(0, n, stride)) + ((n - 1) % stride != 0)
    for j in list(range(0, n, stride)) + [n - 1]:
        assert np.abs(part.heatmaps[j] - full.heatmaps[j]).max() < 2e-3
    for j in range(1, n - 1):
        if j % stride and j < (n - 1) // stride * stride:
            a, b = j // stride * stride, (j // stride + 1) * stride
            u = (j - a) / (b - a)
            want = (1 - u) * part.heatmaps[a] + u * part.heatmaps[b]
            assert np.abs(part.heatmaps[j] - want).max() < 2e-3


def test_a_fine_tune_keeps_the_separator_it_started_with(bench, tmp_path):
    """Fine-tuning a model that has a separator leaves a model that still has it (unchanged, its
    card saying where it came from), so stems and the sound of a pixel survive "Use this model";
    the model's name says which run it is."""
    from avstudio.analysis.separate import av_match
    from avstudio.nets.checkpoint import component_tensors, save_tensors
    from avstudio.nets.separator import Separator, SeparatorConfig

    base = tmp_path / "base"
    Trainer(rows_of(bench), base / "run", tiny_config(stages=[1], epochs=1, counter_epochs=0),
            model_cfg=default_config("small")).run()
    folder = tmp_path / "with_sep"
    folder.mkdir()
    av_file = base / "run" / "model.safetensors"
    tensors, card = load_tensors(av_file)
    save_tensors(folder / "localizer.safetensors", tensors, card)
    torch.manual_seed(5)
    sep = Separator(SeparatorConfig(n_bins=64, channels=(4, 8), feat_channels=4, head_hidden=4,
                                    cond_dim=default_config("small").embed_dim))
    from avstudio.nets.files import weights_sha256

    save_tensors(folder / "separator.safetensors", component_tensors("sep", sep),
                 {"components": {"sep": {"class": "Separator", "config": sep.cfg.to_dict()}},
                  "av_model": {"path": str(folder / "localizer.safetensors"),
                               "weights_sha256": weights_sha256(load_model(folder).av)}})
    assert av_match(load_model(folder)) is True
    run = tmp_path / "ft-run"
    res = Trainer(rows_of(bench), run, tiny_config(stages=[1], epochs=1, counter_epochs=1), init=str(folder)).run()
    got = load_model(res.model_path)
    assert got.separator is not None and got.av is not None and got.counter is not None
    for k, v in sep.state_dict().items():
        assert torch.equal(got.separator.state_dict()[k], v), k
    kept = got.card("sep")["separator"]
    assert kept["kept_from"] == str(folder / "separator.safetensors") and kept["trained_here"] is False
    assert av_match(got) is False  # fine-tuning moved the visual space the separator was trained on
    assert load_model(run / "stages" / "C1.safetensors").separator is not None
    assert got.name == "ft-run/model" and load_model(run / "stages" / "C1.safetensors").name == "ft-run/C1"
    assert load_model(folder).name == "with_sep"
    # a model without a separator fine-tunes into one without (nothing invented)
    plain = Trainer(rows_of(bench), tmp_path / "plain", tiny_config(stages=[1], epochs=1, counter_epochs=0),
                    init=str(av_file)).run()
    assert load_model(plain.model_path).separator is None
