"""Scoring models against boxes: `avstudio eval --library` and `--testset DIR --format vggss|flickr`.

Clips are tiny real videos (tests/helpers.py); the model is the shipped one (models/default) and a
freshly initialised AVIN network (both real networks). A test set is made in each public layout
from the same frames and audio as a library, and must score exactly as the library does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from avstudio.analysis import box_eval as BE
from avstudio.analysis import metrics as M
from avstudio.analysis.box_eval import evaluate_boxes, frame_sample, library_samples, score_frame
from avstudio.data.boxes import gt_map, make_box
from avstudio.data.library import ClipLibrary
from avstudio.errors import DataError
from avstudio.media import VideoReader, read_audio, write_wav
from avstudio.nets.checkpoint import ModelBundle, load_model
from helpers import make_video

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model():
    return load_model(None)


@pytest.fixture(scope="module")
def still_model():
    """A model that looks at one still frame (the shapes world's): a test set holds one picture
    per sample, while library frames give a frame-stacking model (the default) its stacks, so
    the two layouts can agree exactly only for a still-frame model."""
    b = load_model(REPO / "models" / "shapes")
    assert int(b.av.cfg.stack) == 1
    return b


@pytest.fixture(scope="module")
def boxed(tmp_path_factory):
    """A library of two clips (2 s and 1.6 s at 25 fps, 80x64) with boxes on five frames."""
    d = tmp_path_factory.mktemp("boxeval")
    (d / "media").mkdir()
    a = make_video(d / "media" / "alpha.mp4", 50, size=(80, 64), fps=25, audio_kind="counter")
    b = make_video(d / "media" / "beta.mp4", 40, size=(80, 64), fps=25, audio_kind="sine")
    lib = ClipLibrary(d / "lib.avlib")
    lib.import_files([a, b])
    ca, cb = (lib.find(p) for p in (a, b))
    lib.set_frame_boxes(ca.id, 12, 0.48, [make_box(0.1, 0.2, 0.5, 0.9, source=1)])
    lib.set_frame_boxes(ca.id, 25, 1.0, [make_box(0.1, 0.2, 0.5, 0.9, source=1), make_box(0.6, 0.0, 1.0, 0.4)])
    lib.set_frame_boxes(ca.id, 37, 1.48, [make_box(0.0, 0.0, 0.3, 0.3)])
    lib.set_frame_boxes(cb.id, 15, 0.6, [make_box(0.25, 0.25, 0.75, 0.75, label="tone")])
    lib.set_frame_boxes(cb.id, 24, 0.96, [make_box(0.5, 0.5, 1.0, 1.0)])
    lib.close()
    return d


def test_library_eval_per_clip_overall_and_baselines(model, boxed):
    with ClipLibrary(boxed / "lib.avlib") as lib:
        res = evaluate_boxes([model], lambda cfg: library_samples(lib, cfg), {"library": "x"})
    assert (res["n_frames"], res["n_clips"]) == (5, 2)
    m = res["models"][0]
    assert m["method"] == "hsa" and [c["n_frames"] for c in m["clips"]] == [3, 2]
    assert [(f["frame"], f["boxes"]) for f in m["frames"]] == [(12, 1), (25, 2), (37, 1), (15, 1), (24, 1)]
    for block in (m["overall"], *m["clips"]):
        for name in ("model", "aligned_center", "unaligned_center"):
            assert set(block[name]) == set(M.BINARISATIONS)
            for how in M.BINARISATIONS:
                v = block[name][how]
                assert 0 <= v["ciou@0.5"] <= 1 and 0 <= v["auc"] <= 1 and 0 <= v["nsa"] <= 1
    assert m["overall"]["model"]["0.5"]["n"] == 5
    # the whole image's cIoU is the share of the frame the boxes cover, NSA 0 (under both rules)
    base = res["baselines"]["overall"]["whole_image"]
    areas = [gt_map([make_box(0.1, 0.2, 0.5, 0.9)]).mean(),
             gt_map([make_box(0.1, 0.2, 0.5, 0.9), make_box(0.6, 0.0, 1.0, 0.4)]).mean(),
             gt_map([make_box(0.0, 0.0, 0.3, 0.3)]).mean(), 0.25, 0.25]
    for how in M.BINARISATIONS:
        assert base[how]["mean_ciou"] == pytest.approx(np.mean(areas), abs=1e-6)
        assert base[how]["nsa"] == 0.0
    # the per-frame scores are the model's heatmap of that frame scored directly
    with ClipLibrary(boxed / "lib.avlib") as lib:
        c = lib.find(boxed / "media" / "beta.mp4")
        f = lib.frame_boxes(c.id, 15)
    audio = read_audio(c.path, model.av.cfg.sample_rate)
    with VideoReader(c.path) as vr:
        s = frame_sample(vr, audio, model.av.cfg, f.frame, f.time, f.boxes, f.map_rule, c.path, c.id)
    direct = score_frame(model, s)
    row = next(r for r in m["frames"] if r["frame"] == 15)
    assert direct["model"] == row["model"] and set(direct) >= {"model", "whole_image", "center_prior"}
    assert "table" in res and "| **all** | 5 |" in res["table"]


def make_testset(folder: Path, lib_path: Path, cfg, fmt: str, annotators: int = 2) -> list[str]:
    """The library's annotated frames as a public test set: frames/ID.png at the model's input
    size, audio/ID.wav (float) whose middle is the frame's time, and the boxes in ``fmt``."""
    (folder / "frames").mkdir(parents=True)
    (folder / "audio").mkdir()
    S, sr, n = cfg.frame_size, cfg.sample_rate, int(round(cfg.audio_seconds * cfg.sample_rate))
    entries, ids = [], []
    with ClipLibrary(lib_path) as lib:
        for cid, frames in lib.all_box_frames().items():
            c = lib.get(cid)
            audio = read_audio(c.path, sr)
            pad = np.concatenate([np.zeros(2 * n, np.float32), audio, np.zeros(2 * n, np.float32)])
            with VideoReader(c.path) as vr:
                for f in frames:
                    key = f"{Path(c.path).stem}_{f.frame:03d}"
                    ids.append(key)
                    import av

                    img = vr.frame(f.frame, size=(S, S))
                    with av.open(str(folder / "frames" / f"{key}.png"), "w") as out:
                        st = out.add_stream("png")
                        st.width, st.height, st.pix_fmt = S, S, "rgb24"
                        for p in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                            out.mux(p)
                        for p in st.encode():
                            out.mux(p)
                    start = int(round(f.time * sr)) - n // 2 + 2 * n
                    write_wav(folder / "audio" / f"{key}.wav", pad[start - n:start + 2 * n], sr, float32=True)
                    entries.append((key, f.boxes))
    if fmt == "vggss":
        (folder / "vggss.json").write_text(json.dumps(
            [{"file": k, "bbox": [b.as_list() for b in bx]} for k, bx in entries]))
    else:
        ann = folder / "Annotations"
        ann.mkdir()
        for k, bx in entries:
            root = ET.Element("annotation")
            for a in range(annotators):
                obj = ET.SubElement(root, "object")
                for b in bx:
                    el = ET.SubElement(obj, "bbox")
                    ET.SubElement(el, "label").text = str(a + 1)
                    for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), b.as_list(), strict=True):
                        ET.SubElement(el, tag).text = str(int(round(v * 256)))
            ET.ElementTree(root).write(ann / f"{k}.xml")
    return ids


def by_frame(res):
    return [r["model"] for r in res["models"][0]["frames"]]


def test_testsets_in_both_layouts_score_as_the_library(still_model, boxed, tmp_path):
    model = still_model
    cfg = model.av.cfg
    with ClipLibrary(boxed / "lib.avlib") as lib:
        lib_res = evaluate_boxes([model], lambda c: library_samples(lib, c), {})
    # library frames are ordered by clip path then frame, test-set samples by id: the same order
    make_testset(tmp_path / "vgg", boxed / "lib.avlib", cfg, "vggss")
    vgg = evaluate_boxes([model], lambda c: BE.testset_samples(tmp_path / "vgg", "vggss", c), {})
    assert vgg["n_frames"] == 5 and vgg["skipped"] == []
    assert by_frame(vgg) == by_frame(lib_res)
    # Flickr: boxes on the 256 grid of pixels; two annotators who agree give the union map
    make_testset(tmp_path / "fl2", boxed / "lib.avlib", cfg, "flickr", annotators=2)
    fl2 = evaluate_boxes([model], lambda c: BE.testset_samples(tmp_path / "fl2", "flickr", c), {})
    for a, b in zip(by_frame(fl2), by_frame(lib_res), strict=True):
        for how in M.BINARISATIONS:
            assert a[how]["ciou"] == pytest.approx(b[how]["ciou"], abs=0.02)
    # one annotator: every box weighs 0.5 (the consensus rule): the whole image scores A/2 / (A/2 + N - A)
    make_testset(tmp_path / "fl1", boxed / "lib.avlib", cfg, "flickr", annotators=1)
    fl1 = evaluate_boxes([model], lambda c: BE.testset_samples(tmp_path / "fl1", "flickr", c), {})
    with ClipLibrary(boxed / "lib.avlib") as lib:
        first = lib.box_frames(lib.find(boxed / "media" / "alpha.mp4").id)[0]
    area = float(gt_map([make_box(*[round(v * 256) / 256 for v in first.boxes[0].as_list()])]).sum())
    whole = fl1["baselines"]["clips"][0]  # sample alpha_012: one box
    assert whole["clip"] == "alpha_012" and whole["whole_image"]["0.5"]["n"] == 1
    assert whole["whole_image"]["0.5"]["mean_ciou"] == pytest.approx(0.5 * area / (0.5 * area + 224 * 224 - area))


def test_testset_missing_files_are_skipped_and_bad_layouts_named(model, boxed, tmp_path):
    cfg = model.av.cfg
    ids = make_testset(tmp_path / "vgg", boxed / "lib.avlib", cfg, "vggss")
    os.remove(tmp_path / "vgg" / "audio" / f"{ids[0]}.wav")
    rep = BE.testset_samples(tmp_path / "vgg", "vggss", cfg)
    assert len(rep.samples) == 4 and rep.skipped == [(ids[0], "no audio")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no frames/ folder"):
        BE.testset_samples(tmp_path / "empty", "vggss", cfg)
    with pytest.raises(DataError, match="no Annotations/ folder"):
        BE.testset_samples(tmp_path / "vgg", "flickr", cfg)


def test_avin_model_is_scored_too(model, boxed):
    import torch

    from avstudio.nets.avin import AVINModel, avin_config

    torch.manual_seed(0)
    avin = ModelBundle(avin=AVINModel(avin_config("small")).eval(), name="avin-small")
    with ClipLibrary(boxed / "lib.avlib") as lib:
        res = evaluate_boxes([model, avin], lambda cfg: library_samples(lib, cfg), {})
    a, b = res["models"]
    assert (a["method"], b["method"]) == ("hsa", "avin")
    assert "unaligned_center" in a["overall"] and set(b["overall"]) == {"model"}
    assert b["overall"]["model"]["0.5"]["n"] == 5 and "B: avin-small" in res["table"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "avstudio", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_cli_eval_library_and_testset(model, boxed, tmp_path):
    out = tmp_path / "res.json"
    table = tmp_path / "table.md"
    r = run_cli("eval", "--library", boxed / "lib.avlib", "--out", out, "--table", table, "--quiet")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res == json.loads(out.read_text()) and res["n_frames"] == 5 and "table" not in res
    assert "| **all** | 5 |" in table.read_text()
    make_testset(tmp_path / "fl", boxed / "lib.avlib", model.av.cfg, "flickr")
    r = run_cli("eval", "--testset", tmp_path / "fl", "--format", "flickr")
    assert r.returncode == 0 and json.loads(r.stdout)["n_frames"] == 5
    assert "Binarised at the median" in r.stderr  # the table, under both binarisations


@pytest.mark.parametrize("args, msg", [
    (lambda boxed, fl: ("--testset", fl), "--testset needs --format"),
    (lambda boxed, fl: ("--library", fl.parent / "nope.avlib"), "does not exist"),
    (lambda boxed, fl: ("--testset", fl, "--format", "vggss"), "exactly one VGG-SS .json"),
    (lambda boxed, fl: ("--library", boxed / "lib.avlib", "--format", "vggss"), "go with --testset"),
    (lambda boxed, fl: ("--data", fl.parent, "--table", fl.parent / "t.md"), "needs two or more --model"),
])
def test_cli_eval_refuses_bad_box_options(boxed, tmp_path, args, msg):
    fl = tmp_path / "fl"  # a test set laid out (frames/, audio/) but without a box file
    (fl / "frames").mkdir(parents=True)
    (fl / "audio").mkdir()
    r = run_cli("eval", *args(boxed, fl))
    assert r.returncode == 2 and msg in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_library_without_boxes_says_so(tmp_path):
    ClipLibrary(tmp_path / "empty.avlib").close()
    r = run_cli("eval", "--library", tmp_path / "empty.avlib")
    assert r.returncode == 2 and "no annotated frame to evaluate" in r.stderr


def test_a_model_that_stacks_frames_gets_its_stacks(boxed, tmp_path):
    """A stacking model ('photo-small': 3 frames 0.06 s apart) is given the frames around each
    annotated frame, exactly as `eval --data` gives them (load_samples); a test set's still
    picture is repeated."""
    import torch

    from avstudio.analysis.box_eval import frame_input, model_maps, still_input
    from avstudio.nets.config import default_config
    from avstudio.nets.model import AVModel

    torch.manual_seed(0)
    cfg = default_config("photo-small")
    assert cfg.stack == 3
    bundle = ModelBundle(av=AVModel(cfg).eval(), name="stacker")
    with ClipLibrary(boxed / "lib.avlib") as lib:
        res = evaluate_boxes([bundle], lambda c: library_samples(lib, c), {})
        c = lib.find(boxed / "media" / "alpha.mp4")
    assert res["n_frames"] == 5
    assert "motion_prior" in res["models"][0]["overall"] and "motion only (A's stack)" in res["table"]
    with VideoReader(c.path) as vr:
        x = frame_input(vr, cfg, 25)
        S = cfg.frame_size
        idx = cfg.stack_indices(25, vr.fps, vr.frame_count)
        want = [vr.frame(j, size=(S, S)).transpose(2, 0, 1) for j in idx]
        assert x.shape == (3, 3, S, S) and all((x[i] == want[i]).all() for i in range(3))
        assert not (x[0] == x[1]).all()  # different frames (each shows its own index)
        first = frame_input(vr, cfg, 0)
        assert (first[0] == first[1]).all()  # before the first frame: the first frame
    audio = read_audio(c.path, cfg.sample_rate)
    from avstudio.data.clips import audio_window

    maps = model_maps(bundle.av, x[None], audio_window(audio, 1.0, cfg)[None])
    row = next(r for r in res["models"][0]["frames"] if r["clip"] == c.path and r["frame"] == 25)
    with ClipLibrary(boxed / "lib.avlib") as lib:
        fb = lib.frame_boxes(c.id, 25)
    one = M.score_heatmap(maps["model"][0], gt_map(fb.boxes))
    for how in M.BINARISATIONS:  # one sample alone vs a batch: equal up to float rounding
        assert one[how]["ciou"] == pytest.approx(row["model"][how]["ciou"], abs=1e-3)
        assert one[how]["nsa"] == pytest.approx(row["model"][how]["nsa"], abs=1e-3)
    still = still_input(np.zeros((S, S, 3), np.uint8), cfg)
    assert still.shape == (3, 3, S, S)
