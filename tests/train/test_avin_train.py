"""AVIN end to end on tiny clips: `avstudio train --method avin` (stages, card, kill -9 and resume),
`avstudio analyze` with either kind of model, `avstudio eval` with two models in one table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from avstudio.data.manifest import read_manifest
from avstudio.data.synth import SynthConfig, generate
from avstudio.errors import CheckpointError, DataError
from avstudio.nets.avin import ResNet18Trunk, avin_config
from avstudio.nets.checkpoint import load_model, load_tensors
from avstudio.train.trainer import Row, TrainConfig, Trainer

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "avstudio", *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=timeout)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("avin_bench")
    generate(out, 8, sources=(1, 2), seed=12, config=SynthConfig(size=(96, 96), duration=2.0))
    return out


@pytest.fixture(scope="module")
def hsa_model(bench, tmp_path_factory):
    run = tmp_path_factory.mktemp("hsa_run")
    r = run_cli("train", "--manifest", bench / "manifest.csv", "--out", run, "--arch", "small", "--epochs", "1",
                "--batch-clips", "2", "--clip-repeats", "1", "--counter-epochs", "0", "--threads", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    return run / "model.safetensors"


AVIN_ARGS = ["--method", "avin", "--arch", "small", "--epochs", "3", "--batch-clips", "3", "--clip-repeats", "2",
             "--seed", "5", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def avin_run(bench, tmp_path_factory):
    """An AVIN run killed with SIGKILL after two logged epochs, then resumed by the same command."""
    run = tmp_path_factory.mktemp("avin_run") / "run"
    args = ["train", "--manifest", bench / "manifest.csv", "--out", run, *AVIN_ARGS]
    p = subprocess.Popen([sys.executable, "-m", "avstudio", *map(str, args)], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hist = run / "history.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if hist.exists() and len(hist.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    before = len(hist.read_text().splitlines())
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    return run, before, json.loads(r.stdout)


def test_avin_training_resumes_after_kill_and_writes_its_card(bench, avin_run):
    run, before, out = avin_run
    assert before >= 2
    assert out["resumed"] is True
    keys = [(e["stage"], e["epoch"]) for e in map(json.loads, (run / "history.jsonl").read_text().splitlines())]
    # the curriculum's stages, each epoch once, and no counter (AVIN has none)
    assert keys == [("C1", 0), ("C1", 1), ("C1", 2), ("C2", 0), ("C2", 1), ("C2", 2)]
    b = load_model(run / "model.safetensors")
    assert b.kind == "avin" and b.av is None and b.counter is None
    card = b.card("avin")
    assert card["kind"] == "avstudio-avin" and card["method"] == "avin"
    assert card["training"]["moments"] == 1 and "command" in card
    assert [s["stage"] for s in card["stages"]] == ["C1", "C2"]
    assert (run / "stages" / "C1.safetensors").exists()
    # the same command again: already finished, nothing rewritten
    again = run_cli("train", "--manifest", bench / "manifest.csv", "--out", run, *AVIN_ARGS)
    assert again.returncode == 0 and json.loads(again.stdout)["already_done"] is True


def test_analyze_either_kind_by_its_card(bench, avin_run, hsa_model, tmp_path):
    run, _, _ = avin_run
    clip = read_manifest(bench / "manifest.csv")[1].path
    r = run_cli("analyze", clip, "--model", run / "model.safetensors", "--out", tmp_path / "a", "--quiet")
    assert r.returncode == 0, r.stderr
    z = np.load(tmp_path / "a" / "heatmaps.npz")
    h = z["heatmaps"]
    assert h.dtype == np.float32 and h.shape[:2] == (50, 1) and h.shape[2:] == (28, 28)
    # min-max normalised per frame: each map spans 0..1 exactly
    assert np.allclose(h.reshape(50, -1).min(1), 0.0) and np.allclose(h.reshape(50, -1).max(1), 1.0)
    assert "aligned" not in z.files and "unaligned" not in z.files  # AVIN has no visual centers
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["method"] == "avin" and s["k"] == 1 and "one heatmap per frame" in s["note"]
    # k = 2 for a model that has no clusters: one line, exit 2
    r = run_cli("analyze", clip, "--model", run / "model.safetensors", "--out", tmp_path / "b", "--k", "2")
    assert r.returncode == 2 and "k = 1" in r.stderr and "Traceback" not in r.stderr
    assert len([x for x in r.stderr.splitlines() if x.strip()]) == 1
    r = run_cli("analyze", clip, "--model", hsa_model, "--out", tmp_path / "c", "--k", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "c" / "summary.json").read_text())["method"] == "hsa"


def test_eval_two_models_one_table_one_json(bench, avin_run, hsa_model, tmp_path):
    run, _, _ = avin_run
    r = run_cli("eval", "--model", hsa_model, "--model", run / "model.safetensors", "--data", bench,
                "--frames-per-clip", "2", "--table", tmp_path / "t.md", "--out", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert json.loads((tmp_path / "r.json").read_text()) == res
    a, b = res["models"]
    assert (a["label"], a["method"], b["label"], b["method"]) == ("A", "hsa", "B", "avin")
    # AVIN: C1 against the source, C2 only against the union of the sounding objects
    assert "model" in b["localization"]["C1"] and "model" not in b["localization"]["C2"]
    assert "model" in b["localization"]["C2"]["union"]
    assert "model" in a["localization"]["C2"] and "model" in a["localization"]["C2"]["union"]
    # the same samples for both models
    assert a["localization"]["C1"]["model"]["0.5"]["n"] == b["localization"]["C1"]["model"]["0.5"]["n"] > 0
    assert a["localization"]["C2"]["union"]["model"]["0.5"]["n"] == b["localization"]["C2"]["union"]["model"]["0.5"]["n"]
    rows = {(x["level"], x["protocol"], x["binarisation"]): x for x in res["comparison"]}
    assert set(rows) == {(lv, p, how) for lv, p in [("C1", "source"), ("C2", "per source"), ("C2", "union")]
                         for how in ("0.5", "median")}
    assert rows[("C2", "per source", "0.5")]["models"]["B"] is None
    assert rows[("C1", "source", "0.5")]["models"]["B"]["ciou@0.5"] == b["localization"]["C1"]["model"]["0.5"]["ciou@0.5"]
    assert "unaligned_center" in rows[("C1", "source", "0.5")]["baselines"]
    table = (tmp_path / "t.md").read_text()
    assert "table" not in res and table in r.stderr  # the table: on stderr and in --table; the JSON: the rows
    assert f"A: {hsa_model.parent.name}/model (HSA)" in table and "B: run/model (AVIN)" in table and len(table.splitlines()) == 2 + len(rows)


def test_method_and_model_kind_must_agree(bench, avin_run, hsa_model, tmp_path):
    run, _, _ = avin_run
    rows = [Row(r.path, r.count) for r in read_manifest(bench / "manifest.csv")]
    with pytest.raises(CheckpointError, match="it is an AVIN model: train it with --method avin"):
        Trainer(rows, tmp_path / "x", TrainConfig(method="hsa"), init=str(run / "model.safetensors"))
    with pytest.raises(CheckpointError, match="holds no AVIN model.*clustering-alignment"):
        Trainer(rows, tmp_path / "y", TrainConfig(method="avin"), init=str(hsa_model))
    r = run_cli("train", "--manifest", bench / "manifest.csv", "--out", tmp_path / "z", "--method", "avin",
                "--visual-weights", tmp_path / "w.pth")
    assert r.returncode == 2 and "--visual-trunk resnet18" in r.stderr and "Traceback" not in r.stderr
    # fine-tuning an AVIN model needs no --method: the card says which it is
    r = run_cli("train", "--manifest", bench / "manifest.csv", "--out", tmp_path / "ft", "--init",
                run / "model.safetensors", "--stages", "1", "--epochs", "1", "--batch-clips", "4",
                "--clip-repeats", "1", "--threads", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    assert load_model(tmp_path / "ft" / "model.safetensors").kind == "avin"


def test_resnet18_trunk_starts_from_the_users_file(bench, tmp_path):
    torch.manual_seed(2)
    sd = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in ResNet18Trunk().state_dict().items()}
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    torch.save(sd, tmp_path / "resnet18.pth")
    rows = [Row(r.path, r.count) for r in read_manifest(bench / "manifest.csv")]
    cfg = avin_config("small", visual_trunk="resnet18")
    with pytest.raises(DataError, match="needs a ResNet-18|--visual-trunk resnet18"):
        Trainer(rows, tmp_path / "bad", TrainConfig(method="avin", visual_weights=str(tmp_path / "resnet18.pth")),
                model_cfg=avin_config("small"))
    # no epoch to run: the saved model is the initialisation itself
    t = Trainer(rows, tmp_path / "run", TrainConfig(method="avin", stages=[1], epochs=0, threads=1,
                                                    visual_weights=str(tmp_path / "resnet18.pth")), model_cfg=cfg)
    res = t.run()
    tensors, card = load_tensors(res.model_path)
    assert card["visual_init"] == {"file": "resnet18.pth", "tensors": len(sd) - 2}
    for k, v in sd.items():
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked"):
            assert torch.equal(tensors[f"avin.visual_trunk.{k}"], v), k
    assert not any(".fc." in k for k in tensors)


def test_conv_trunk_from_a_clustering_model_and_a_slower_trunk(bench, hsa_model, tmp_path):
    rows = [Row(r.path, r.count) for r in read_manifest(bench / "manifest.csv")]
    # no epoch: the saved trunk is the clustering model's visual encoder, layer for layer
    t = Trainer(rows, tmp_path / "run", TrainConfig(method="avin", stages=[1], epochs=0, threads=1,
                                                    visual_init=str(hsa_model)), model_cfg=avin_config("small"))
    tensors, card = load_tensors(t.run().model_path)
    src, _ = load_tensors(hsa_model)
    body = {k[len("av.visual.body."):]: v for k, v in src.items() if k.startswith("av.visual.body.")}
    assert body and all(torch.equal(tensors[f"avin.visual_trunk.body.{k}"], v) for k, v in body.items())
    assert card["visual_init"]["model"] == str(hsa_model)
    with pytest.raises(DataError, match="does not match this AVIN's trunk"):
        Trainer(rows, tmp_path / "x", TrainConfig(method="avin", visual_init=str(hsa_model)),
                model_cfg=avin_config("default"))
    # the trunk learns at lr x 0.1 (two parameter groups), the heads at lr
    t = Trainer(rows, tmp_path / "slow", TrainConfig(method="avin", stages=[1], epochs=1, batch_clips=8,
                                                     clip_repeats=1, threads=1, trunk_lr_scale=0.1,
                                                     schedule="constant", lr=1e-3),
                model_cfg=avin_config("small"))
    t.run()
    _, ck = load_tensors(tmp_path / "slow" / "checkpoint.safetensors", embedded_card=True)
    groups = ck["checkpoint"]["optimizer"]["param_groups"]
    assert [(g["lr"], g["lr_scale"]) for g in groups] == [(pytest.approx(1e-4), 0.1), (pytest.approx(1e-3), 1.0)]
    assert len(groups[0]["params"]) == len(list(t.model.visual_trunk.parameters()))
