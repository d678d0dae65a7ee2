"""torchrun / DistributedDataParallel on this machine: two CPU processes, gloo on loopback.

* one step of 2 ranks x B/2 (negatives gathered, batch norm synchronised) equals one
  single-process step of batch B: parameters after the optimizer step, within float tolerance;
* a few steps (augmentation on, DataLoader workers, a corrupt clip): the ranks' parameters stay
  bitwise identical, the corrupt clip is skipped and counted on every rank;
* `python -m torch.distributed.run --nproc_per_node=2 -m avstudio train ...`: rank 0 alone
  writes (one history line per epoch, one JSON report), and after kill -9 of the whole job the
  same command resumes;
* the sampler, the lazy manifest and the worker path, in one process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from avstudio.data.lazy_manifest import LazyManifest, open_manifest, rows_with_count
from avstudio.data.manifest import read_manifest, write_manifest
from avstudio.data.synth import SynthConfig, generate
from avstudio.errors import DataError
from avstudio.nets.avin import avin_config
from avstudio.nets.config import default_config
from avstudio.train import distributed as D
from avstudio.train.trainer import Row, TrainConfig, Trainer

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "GLOO_SOCKET_IFNAME": "lo"}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """6 one-source clips, and a second manifest that also lists a corrupt mp4."""
    out = tmp_path_factory.mktemp("dbench")
    generate(out, 6, sources=(1,), seed=21, config=SynthConfig(size=(96, 96), duration=2.0))
    (out / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    rows = read_manifest(out / "manifest.csv")
    write_manifest(out / "with_corrupt.csv", [{"path": r.path, "count": r.count} for r in rows[:3]]
                   + [{"path": str(out / "corrupt.mp4"), "count": 1}]
                   + [{"path": r.path, "count": r.count} for r in rows[3:]])
    return out


def rows_of(manifest):
    return [Row(r.path, r.count) for r in read_manifest(manifest)]


def one_step_config(**kw):
    # 6 clips, a global batch of 6 clips (12 pairs), one step; no augmentation (its random
    # draws are per rank), so that 2 x 3 clips is the same computation as 1 x 6
    base = dict(stages=[1], epochs=1, batch_clips=6, clip_repeats=1, counter_epochs=0, augment=False,
                seed=3, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def few_steps_config(**kw):
    # 3 clips a step: 2 on rank 0, 1 on rank 1 (unequal shares, padded for the gather)
    base = dict(stages=[1], epochs=2, batch_clips=3, clip_repeats=1, counter_epochs=1, augment=True,
                seed=4, threads=1, num_workers=1)
    base.update(kw)
    return TrainConfig(**base)


# The audio input norm's bias has a true gradient of zero (the next conv + batch norm removes a
# constant shift): its gradient is float noise (~1e-9) that Adam's first step, g / (|g| + eps),
# turns into an arbitrary fraction of the learning rate, in one process as in two.
ZERO_GRADIENT = {"audio.norm.bias"}
LR = 1e-3


def _grads(run_dir: Path, names: list[str]) -> dict[str, torch.Tensor]:
    """The gradients of the first step, from the checkpoint: Adam's first moment is 0.1 x g."""
    from avstudio.nets.checkpoint import load_tensors

    t, _ = load_tensors(run_dir / "checkpoint.safetensors")
    return {n: t[f"opt.{i}.exp_avg"] / 0.1 for i, n in enumerate(names)}


def _params(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _child(rank: int, world: int, port: int, bench: str, out: str) -> None:
    """One rank of the spawned 2-process job (gloo on 127.0.0.1)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    bench, out = Path(bench), Path(out)
    # 1) one optimizer step, 2 ranks x 3 clips
    t = Trainer(rows_of(bench / "manifest.csv"), out / "one", one_step_config(), model_cfg=default_config("small"))
    t.run()
    torch.save({"av": _params(t.model), "buffers": dict(t.model.named_buffers())}, out / f"one.{rank}.pt")
    # the scene-level ablation gathers the feature maps instead of the centers
    t = Trainer(rows_of(bench / "manifest.csv"), out / "scene", one_step_config(alignment="scene"),
                model_cfg=default_config("small", alignment="scene"))
    t.run()
    torch.save({"av": _params(t.model)}, out / f"scene.{rank}.pt")
    # the control: the same step with each rank's own 3 clips as its only negatives
    t = Trainer(rows_of(bench / "manifest.csv"), out / "local", one_step_config(gather_negatives=False),
                model_cfg=default_config("small"))
    t.run()
    # AVIN: its two losses gathered over the ranks (induction vectors, audio, pooled scores)
    t = Trainer(rows_of(bench / "manifest.csv"), out / "avin", one_step_config(method="avin", moments=1),
                model_cfg=avin_config("small"))
    t.run()
    torch.save({"avin": _params(t.model), "buffers": dict(t.model.named_buffers())}, out / f"avin.{rank}.pt")
    # 2) a few steps with augmentation, DataLoader workers, the counter, and a corrupt clip
    t = Trainer(rows_of(bench / "with_corrupt.csv"), out / "few", few_steps_config(),
                model_cfg=default_config("small"))
    res = t.run()
    torch.save({"av": _params(t.model), "counter": _params(t.counter), "skipped": res.skipped_clips,
                "steps": [e["steps"] for e in res.history]}, out / f"few.{rank}.pt")
    D.cleanup(t.dist)


@pytest.fixture(scope="module")
def spawned(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("spawned")
    ctx = torch.multiprocessing.start_processes(
        _child, args=(2, D.free_port(), str(bench), str(out)), nprocs=2, join=False, start_method="spawn")
    deadline = time.time() + 180
    while not ctx.join(timeout=5):
        if time.time() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the 2-rank job did not finish in 180 s")
    return out


@pytest.mark.timeout(300)
def test_two_ranks_one_step_equal_one_process_with_the_whole_batch(bench, spawned, tmp_path):
    r0 = torch.load(spawned / "one.0.pt")
    r1 = torch.load(spawned / "one.1.pt")
    # the reference: one process, the same 6 clips in one batch, one step
    ref = Trainer(rows_of(bench / "manifest.csv"), tmp_path / "ref", one_step_config(),
                  model_cfg=default_config("small"))
    ref.run()
    want = _params(ref.model)
    init = _params(Trainer([], tmp_path / "init", one_step_config(), model_cfg=default_config("small")).model)
    assert r0["av"].keys() == want.keys()
    moved = max(float((want[k] - init[k]).abs().max()) for k in want)
    assert moved > 5e-4  # the step did move the weights (Adam, lr 1e-3)
    names = list(want)
    g_ref, g_two = _grads(tmp_path / "ref", names), _grads(spawned / "one", names)
    g_local = _grads(spawned / "local", names)
    worst = worst_local = 0.0
    for k in want:
        assert torch.equal(r0["av"][k], r1["av"][k]), k  # ranks identical
        if k in ZERO_GRADIENT:
            assert float((r0["av"][k] - want[k]).abs().max()) <= 2 * LR + 1e-6  # at most one step apart
            continue
        # the gradients of the step agree to float rounding (measured: <= 6.4e-5 of the largest)
        scale = float(g_ref[k].abs().max())
        worst = max(worst, float((g_two[k] - g_ref[k]).abs().max()) / scale)
        worst_local = max(worst_local, float((g_local[k] - g_ref[k]).abs().max()) / scale)
        # and so do the weights, except where Adam's first step g / (|g| + 1e-8) is ill-conditioned
        # (|g| < 1e-4: there a float-rounding change dg of g moves the step by 1e-3 x 1e-8 / g^2 x dg)
        firm = g_ref[k].abs() >= 1e-4
        d = (r0["av"][k] - want[k]).abs()
        assert float(d[firm].max()) <= 1e-6, k  # measured: <= 7.5e-9
        assert float(d.max()) <= 2 * LR + 1e-6, k
    assert worst <= 2e-3, worst  # float32 reductions differ with the thread count (seen: 6e-4); local negatives: 1.8
    # the control: without gathering it is another step, far outside that tolerance
    assert worst_local > 0.02, worst_local
    scene = torch.load(spawned / "scene.0.pt")["av"]
    sref = Trainer(rows_of(bench / "manifest.csv"), tmp_path / "sref", one_step_config(alignment="scene"),
                   model_cfg=default_config("small", alignment="scene"))
    sref.run()
    for k, v in _params(sref.model).items():
        if k not in ZERO_GRADIENT:
            torch.testing.assert_close(scene[k], v, rtol=0, atol=2e-5, msg=k)  # measured: <= 5.3e-7
    # batch norm statistics over the global batch, as in one process
    for k, v in dict(ref.model.named_buffers()).items():
        if v.is_floating_point():
            torch.testing.assert_close(r0["buffers"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    # what rank 0 logged is the loss of the global batch
    h0 = [json.loads(x) for x in (spawned / "one" / "history.jsonl").read_text().splitlines()]
    href = [json.loads(x) for x in (tmp_path / "ref" / "history.jsonl").read_text().splitlines()]
    assert len(h0) == 1 and h0[0]["steps"] == 1
    assert abs(h0[0]["loss"] - href[0]["loss"]) < 1e-4


@pytest.mark.timeout(300)
def test_avin_two_ranks_one_step_equal_one_process_with_the_whole_batch(bench, spawned, tmp_path):
    r0 = torch.load(spawned / "avin.0.pt")
    r1 = torch.load(spawned / "avin.1.pt")
    cfg = one_step_config(method="avin", moments=1)
    ref = Trainer(rows_of(bench / "manifest.csv"), tmp_path / "ref", cfg, model_cfg=avin_config("small"))
    ref.run()
    want = _params(ref.model)
    names = list(want)
    g_ref, g_two = _grads(tmp_path / "ref", names), _grads(spawned / "avin", names)
    worst = 0.0
    for k in want:
        assert torch.equal(r0["avin"][k], r1["avin"][k]), k  # ranks identical
        if k == "audio_trunk.norm.bias":  # true gradient zero (see ZERO_GRADIENT)
            continue
        scale = float(g_ref[k].abs().max())
        assert scale > 0, k  # every parameter learns (visual from one loss, audio from the other)
        worst = max(worst, float((g_two[k] - g_ref[k]).abs().max()) / scale)
        firm = g_ref[k].abs() >= 1e-4
        d = (r0["avin"][k] - want[k]).abs()
        assert float(d[firm].max()) <= 1e-6, k
    assert worst <= 2e-3, worst
    for k, v in dict(ref.model.named_buffers()).items():
        if v.is_floating_point():
            torch.testing.assert_close(r0["buffers"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    h0 = [json.loads(x) for x in (spawned / "avin" / "history.jsonl").read_text().splitlines()]
    href = [json.loads(x) for x in (tmp_path / "ref" / "history.jsonl").read_text().splitlines()]
    assert len(h0) == 1 and abs(h0[0]["loss"] - href[0]["loss"]) < 1e-4


def test_two_ranks_stay_identical_and_skip_a_corrupt_clip(spawned):
    r0 = torch.load(spawned / "few.0.pt")
    r1 = torch.load(spawned / "few.1.pt")
    for part in ("av", "counter"):
        assert r0[part].keys() == r1[part].keys()
        for k in r0[part]:
            assert torch.equal(r0[part][k], r1[part][k]), f"{part}.{k} differs between ranks"
    assert r0["steps"] == r1["steps"] and r0["steps"][:2] == [3, 3]  # 7 clips / 3 a step
    # the corrupt clip: skipped and counted (on every rank), the run finished
    assert [Path(p).name for p in r0["skipped"]] == ["corrupt.mp4"] == [Path(p).name for p in r1["skipped"]]
    run = json.loads((spawned / "few" / "run.json").read_text())
    assert run["status"] == "done" and run["skipped_count"] == 1
    assert (spawned / "few" / "model.safetensors").exists()


# -- torchrun, end to end -----------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _kill_job(p: subprocess.Popen) -> None:
    """kill -9 the torchrun agent and every process it started (ranks run in their own sessions)."""
    for pid in [p.pid] + _descendants(p.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.wait(timeout=30)


@pytest.mark.timeout(400)
def test_torchrun_rank0_writes_and_resume_after_kill(bench, tmp_path):
    run = tmp_path / "run"
    port = D.free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--max-restarts=0",
           "-m", "avstudio", "train", "--manifest", str(bench / "with_corrupt.csv"), "--out", str(run),
           "--arch", "small", "--epochs", "4", "--batch-clips", "3", "--clip-repeats", "1",
           "--counter-epochs", "1", "--seed", "5", "--threads", "1", "--quiet"]
    p = subprocess.Popen(cmd, env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    hist = run / "history.jsonl"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and p.poll() is None:
            if hist.exists() and len(hist.read_text().splitlines()) >= 2:
                break
            time.sleep(0.05)
    finally:
        _kill_job(p)
    done_before = len(hist.read_text().splitlines())
    assert done_before >= 2, "the job did not log two epochs in 120 s"
    r = subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout[r.stdout.index("{"):])  # one report: rank 0 alone prints
    assert r.stdout.count('"model"') == 1
    assert out["resumed"] is True and out["skipped_clips"] == 1
    lines = hist.read_text().splitlines()
    assert len(lines) == len(set(lines))
    keys = [(e["stage"], e["epoch"]) for e in map(json.loads, lines)]
    assert keys == [("C1", 0), ("C1", 1), ("C1", 2), ("C1", 3), ("counter", 0)]  # none twice, none lost
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "done" and info["skipped_count"] == 1
    assert [Path(x).name for x in info["skipped_clips"]] == ["corrupt.mp4"]
    left = sorted(x.name for x in run.iterdir())
    assert left == ["checkpoint.json", "checkpoint.safetensors", "history.jsonl", "model.json",
                    "model.safetensors", "run.json", "stages"], left  # no stray temporary files


# -- one process: sampler, lazy manifest, worker path ---------------------------------------------


def test_gather_negatives_is_on_by_default():
    assert TrainConfig().gather_negatives is True
    from avstudio.cli import build_parser

    args = build_parser().parse_args(["train", "--manifest", "m.csv", "--out", "o"])
    assert args.local_negatives is False and args.workers == 0


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("batch_clips", [1, 2, 3, 5, 8])
def test_rank_shares_partition_every_global_batch(world, batch_clips):
    pool = np.arange(11)
    shares = [list(D.rank_batches(pool, 7, batch_clips, 9, 2, 1, D.DistInfo(world, r, r)))
              for r in range(world)]
    G = D.global_batch(batch_clips, world)
    glob = D.step_order(pool, 7, G, 9, 2, 1)
    for s in range(7):
        parts = [shares[r][s] for r in range(world)]
        assert all(len(x) >= 1 for x in parts)  # every rank trains every step (no deadlock)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
        assert np.array_equal(np.concatenate(parts), glob[s])  # the union is the global batch
    if world == 1:  # one process: the order the trainer has always used
        rng = np.random.default_rng([9, 2, 1])
        order = np.concatenate([rng.permutation(11) for _ in range(-(-7 * batch_clips // 11) + 1)])
        assert np.array_equal(glob.ravel(), order[:7 * batch_clips])


def test_lazy_manifest_reads_like_read_manifest(tmp_path, monkeypatch):
    p = tmp_path / "m.csv"
    p.write_bytes('\ufeffpath,count,note\r\na.mp4,1,x\r\n\r\n"b, c.mp4",2,"two\nlines"\n/abs/d.mp4,,\n'
                  '"e""q.mp4",3,\u00fc\n'.encode())
    want = [(r.path, r.count, r.extra) for r in read_manifest(p)]
    lm = LazyManifest(p)
    assert [(r.path, r.count, r.extra) for r in lm] == want
    assert len(lm) == 4 and lm.n_unknown == 1 and lm.present_counts() == [1, 2, 3]
    assert [r.path for r in rows_with_count(lm, 2)] == [want[1][0]]
    import pickle

    assert pickle.loads(pickle.dumps(lm))[3].path == want[3][0]  # DataLoader workers get a copy
    # a big one: 200 000 rows, indexed (12 bytes a row), stage subsets as index arrays
    big = tmp_path / "big.csv"
    with open(big, "w") as fh:
        fh.write("path,count\n")
        fh.writelines(f"clips/c{i:06d}.mp4,{1 + i % 2}\n" for i in range(200_000))
    import avstudio.data.lazy_manifest as LM

    monkeypatch.setattr(LM, "LAZY_THRESHOLD_BYTES", 1 << 20)  # auto: lazy above the threshold
    assert isinstance(open_manifest(p), list)
    lm = open_manifest(big)
    assert isinstance(lm, LazyManifest) and len(lm) == 200_000
    c2 = lm.with_count(2)
    assert len(c2) == 100_000 and c2[7].path == str(tmp_path / "clips" / "c000015.mp4")
    assert lm.count_summary() == {"1": 100_000, "2": 100_000}


@pytest.mark.parametrize("text, msg", [("path\na,1\n", "no 'count' column"), ("path,count\na,x\n", "line 2: count 'x'"),
                                       ("path,count\n,1\n", "line 2: empty path"), ("", "empty")])
def test_bad_manifests_are_refused_by_both_readers(tmp_path, text, msg):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(DataError, match=msg):
        LazyManifest(tmp_path / "bad.csv")
    with pytest.raises(DataError, match=msg):
        read_manifest(tmp_path / "bad.csv")


def test_worker_path_and_lazy_manifest_train_like_the_in_memory_path(bench, tmp_path):
    """DataLoader workers over a lazy manifest draw the same batches as the in-memory path."""
    cfg = dict(stages=[1], epochs=1, batch_clips=3, clip_repeats=1, counter_epochs=0, seed=6, threads=1)
    a = Trainer(rows_of(bench / "manifest.csv"), tmp_path / "a", TrainConfig(**cfg),
                model_cfg=default_config("small"))
    ra = a.run()
    b = Trainer(LazyManifest(bench / "manifest.csv"), tmp_path / "b", TrainConfig(**cfg, num_workers=1),
                model_cfg=default_config("small"))
    rb = b.run()
    assert ra.history[0]["steps"] == rb.history[0]["steps"] == 2
    assert ra.history[0]["loss"] == rb.history[0]["loss"]
    pa, pb = _params(a.model), _params(b.model)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
