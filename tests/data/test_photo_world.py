"""The photographic world (``avstudio synth --world photo``): exact sidecars, held-out pictures,
determinism, and one clear line for every bad input of the media bank."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avstudio.data import photo_bank as pb
from avstudio.data.photo import PhotoConfig, render_photo_clip
from avstudio.data.synth import generate, load_ground_truth, sidecar_paths
from avstudio.errors import DataError


def _real_bank_or_skip():
    try:
        return pb.load_bank()
    except DataError as exc:
        pytest.skip(f"the photo world's Debian packages are not installed ({exc})")


SMALL = dict(size=(96, 96), duration=1.0, fps=12.0)


def test_clip_is_exact_and_deterministic():
    _real_bank_or_skip()
    cfg = PhotoConfig(**SMALL, n_distractors=(1, 2))
    a = render_photo_clip(3, 7, 3, cfg)
    b = render_photo_clip(3, 7, 3, cfg)
    for name in ("frames", "audio", "stems", "noise", "masks", "boxes", "sounding"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.meta == b.meta
    # stems sum to the mixture before encoding, counts agree
    assert a.stems.shape[0] == 3 == a.meta["count"] == int(a.sounding.sum())
    assert np.array_equal(a.audio, (a.stems.sum(axis=0) + a.noise).astype(np.float32))
    for s in range(3):
        assert np.abs(a.stems[s]).max() > 0.01  # every source is heard
    # masks never overlap; objects are of the frame's size range; sounding first, in stem order
    assert (a.masks.sum(axis=1) <= 1).all()
    assert [o["stem_index"] for o in a.objects if o["sounding"]] == [0, 1, 2]
    assert all(0.05 * 0.5 <= o["area_fraction"] <= 0.35 for o in a.objects)
    other = render_photo_clip(4, 7, 3, cfg)
    assert not np.array_equal(other.frames, a.frames)


def test_masks_are_the_visible_object_pixels():
    """Rendered over two flat greys, a pixel differs between the two renders by (1 - coverage)
    of the grey step: mask pixels (coverage >= 0.5 of the top object) differ by at most half of
    it, and pixels in no mask (nor under the occluder) by at least half, up to codec-free
    rounding and the rare pixel where two see-through edges overlap."""
    _real_bank_or_skip()
    for idx, occ in ((1, 0.0), (2, 1.0)):
        cfg = PhotoConfig(**SMALL, n_distractors=(2, 2), occluder_prob=occ)
        lay: dict = {}
        lo = render_photo_clip(11, idx, 2, cfg, _background=0.25, _layers=lay)
        hi = render_photo_clip(11, idx, 2, cfg, _background=0.75)
        assert np.array_equal(lo.masks, hi.masks)
        cam = lo.meta["camera"]
        step = 0.5 * 255.0 * cam["contrast"] * np.asarray(cam["white_balance"])  # full grey step
        d = (hi.frames.astype(np.float64) - lo.frames.astype(np.float64)) / step  # 1 - coverage
        d = d.mean(axis=-1)
        union = lo.masks.any(axis=1)
        if occ:
            assert lo.meta["occluder"] is not None
            under = lay["occluder"] >= 0.5
            assert under.any()
            assert not (union & under).any()  # nothing behind the occluder is called visible
            union = union | under
        tol = 2.5 / step.min()
        assert (d[union] <= 0.5 + tol).all()
        outside = d[~union]
        assert (outside >= 0.5 - tol).mean() > 0.995
        # each object's mask is where it is the top layer: its own share of the frame is visible
        for o in range(lo.masks.shape[1]):
            assert lo.masks[:, o].any()


def test_held_out_pictures_never_appear_in_training_clips():
    bank = _real_bank_or_skip()
    names_of = {sp: {it.name for it in bank.pool(sp)} | {it.name for it in bank.pool(sp, silent=True)}
                for sp in ("train", "val", "test")}
    train, val, test = names_of["train"], names_of["val"], names_of["test"]
    assert train and val and test and not (train & test) and not (train & val) and not (val & test)
    assert 0.1 < len(bank.pool("test")) / len(bank.items) < 0.3
    assert 0.04 < len(bank.pool("val")) / len(bank.items) < 0.2
    for split, names in names_of.items():
        cfg = PhotoConfig(**SMALL, pictures=split, n_distractors=(2, 2))
        for i in range(3):
            c = render_photo_clip(0, i, 2, cfg)
            for o in c.objects:
                name = o["picture"].rsplit("/", 1)[-1][:-4]
                assert name in names and o["split"] == split


def test_generate_writes_identical_sidecars_with_any_worker_count(tmp_path):
    _real_bank_or_skip()
    cfg = PhotoConfig(**SMALL)
    m1 = generate(tmp_path / "a", 3, sources=(1, 2), seed=9, config=cfg, workers=1)
    m2 = generate(tmp_path / "b", 3, sources=(1, 2), seed=9, config=cfg, workers=2)
    assert m1.read_bytes() == m2.read_bytes()
    for i in range(3):
        for side in sidecar_paths(tmp_path / "a" / f"clip_{i:05d}.mp4"):
            assert side.read_bytes() == (tmp_path / "b" / side.name).read_bytes(), side.name
    gt = load_ground_truth(tmp_path / "a" / "clip_00001.mp4")
    assert gt.meta["world"] == "photo" and gt.count == 2
    assert np.array_equal(gt.mix, (gt.stems.sum(0) + gt.noise).astype(np.float32))
    from avstudio.media import probe

    info = probe(tmp_path / "a" / "clip_00001.mp4")
    assert info.has_audio and info.audio_rate == 16000 and (info.width, info.height) == (96, 96)


def _fake_bank(root: Path) -> dict:
    """A tiny bank: three animals with recordings, one picture without one, one corrupt PNG,
    one corrupt recording; two backgrounds; one ambience."""
    import cv2

    from helpers import make_audio_only

    pics = root / "qabcs" / "pics" / "animals"
    noises = root / "qabcs" / "noises"
    pics.mkdir(parents=True)
    noises.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ["alpha", "beta", "gamma", "delta", "mute", "broken_png", "broken_ogg"]:
        img = np.zeros((60, 60, 4), np.uint8)
        img[10:50, 10:50, :3] = rng.integers(0, 255, 3)
        img[10:50, 10:50, 3] = 255
        if name == "broken_png":
            (pics / f"{name}.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
        else:
            cv2.imwrite(str(pics / f"{name}.png"), img)
        if name == "mute":
            continue
        if name == "broken_ogg":
            (noises / f"{name}.ogg").write_bytes(b"OggS" + bytes(200))
        else:
            make_audio_only(noises / f"{name}.ogg", seconds=1.0, kind="sine")
    bg = root / "bg"
    bg.mkdir()
    for i in range(2):
        cv2.imwrite(str(bg / f"bg{i}.jpg"), rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    amb = root / "amb"
    amb.mkdir()
    make_audio_only(amb / "hum.wav", seconds=3.0, kind="noise")
    return {"AVSTUDIO_QABCS": str(root / "qabcs"), "AVSTUDIO_BACKGROUNDS": str(bg), "AVSTUDIO_AMBIENT": str(amb)}


def test_bad_files_cost_only_themselves(tmp_path, monkeypatch):
    env = _fake_bank(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    bank = pb.load_bank()
    assert len(bank.items) == 6 and [it.name for it in bank.silent] == ["mute"]
    assert any("1 pictures have no recording" in p for p in bank.problems)
    cfg = PhotoConfig(**SMALL, pictures="all", n_distractors=(1, 1))
    seen_problem = False
    for i in range(8):
        c = render_photo_clip(0, i, 2, cfg)  # never fails: the broken files are skipped
        assert c.count == 2
        for line in c.meta["problems"]:
            seen_problem = True
            assert "\n" not in line and ("broken_png" in line or "broken_ogg" in line)
        names = {o["picture"].rsplit("/", 1)[-1] for o in c.objects}
        assert "broken_png.png" not in names
        assert c.meta["offscreen_noise"]["kind"] is None or c.meta["offscreen_noise"]["kind"].startswith("hum")
    assert seen_problem
    with pytest.raises(DataError, match="cannot be read"):
        pb.load_picture(str(tmp_path / "qabcs" / "pics" / "animals" / "broken_png.png"))
    with pytest.raises(DataError, match="cannot be decoded|no usable sound|silent"):
        pb.load_sound(str(tmp_path / "qabcs" / "noises" / "broken_ogg.ogg"), 16000)


def test_missing_packages_give_one_line(tmp_path):
    env = dict(os.environ, AVSTUDIO_QABCS=str(tmp_path / "nowhere"), PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-m", "avstudio", "synth", str(tmp_path / "out"), "--world", "photo",
                        "--clips", "1", "--quiet"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "qabcs-data" in lines[0] and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "avstudio", "synth", str(tmp_path / "out"), "--world", "photo",
                        "--classes", "cello"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "shapes world" in r.stderr


def test_cli_writes_a_photo_set(tmp_path):
    _real_bank_or_skip()
    out = tmp_path / "set"
    r = subprocess.run([sys.executable, "-m", "avstudio", "synth", str(out), "--world", "photo", "--clips", "2",
                        "--sources", "1,2", "--seed", "4", "--size", "96x96", "--duration", "1", "--fps", "10",
                        "--pictures", "test", "--quiet"],
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    rows = (out / "manifest.csv").read_text().splitlines()
    assert rows[0].startswith("path,count") and len(rows) == 3
    meta = json.loads((out / "clip_00001.json").read_text())
    assert meta["pictures"] == "test" and meta["count"] == 2
    assert all(o["split"] == "test" for o in meta["objects"])
