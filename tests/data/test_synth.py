"""The synthetic benchmark generator: determinism, ground truth, audio, pulses, files, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from avstudio.data import instruments
from avstudio.data.manifest import ManifestRow, read_manifest, write_manifest
from avstudio.data.synth import (
    CLASSES,
    SynthConfig,
    generate,
    load_ground_truth,
    render_clip,
    render_source_audio,
    sidecar_paths,
)
from avstudio.errors import Cancelled, DataError

ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(size=(96, 96), duration=1.5, fps=20)


def small(**kw) -> SynthConfig:
    return SynthConfig(**{**SMALL, **kw})


def _erode(m: np.ndarray, k: int = 1) -> np.ndarray:
    out = m.copy()
    for _ in range(k):
        e = out.copy()
        e[1:] &= out[:-1]
        e[:-1] &= out[1:]
        e[:, 1:] &= out[:, :-1]
        e[:, :-1] &= out[:, 1:]
        out = e
    return out


def _quiet_frames(clip, obj: dict, gap: float = 0.25) -> list[int]:
    """Frames at which the object shows no pulse (no onset in the previous ``gap`` s)."""
    on = np.asarray(obj["onsets"])
    out = []
    for k, t in enumerate(clip.times):
        if not len(on) or not np.any((on <= t + 1e-9) & (on > t - gap)):
            out.append(k)
    return out


# ------------------------------------------------------------------------------------ classes


def test_classes_have_own_look_and_sound():
    assert len(CLASSES) >= 10
    names = [c.name for c in CLASSES]
    assert len(set(names)) == len(names)
    looks = {(c.shape, c.texture, tuple(round(x, 2) for x in c.color)) for c in CLASSES}
    assert len(looks) == len(CLASSES)
    assert len({c.shape for c in CLASSES}) >= 10
    for want in ("accordion", "acoustic_guitar", "cello", "clarinet", "flute", "saxophone",
                 "trumpet", "tuba", "violin", "xylophone"):
        assert want in names


@pytest.mark.parametrize("backend", ["auto", "handmade"])
def test_every_class_renders_a_source(backend):
    rng_sr = 16000
    for i, c in enumerate(CLASSES):
        wave, onsets = render_source_audio(i, np.random.default_rng([1, i]), 1.5, rng_sr, backend=backend)
        assert wave.dtype == np.float32 and wave.shape == (int(1.5 * rng_sr),)
        assert np.isfinite(wave).all()
        assert np.sqrt(np.mean(wave ** 2)) > 0.01, c.name
        assert len(onsets) >= 1 and np.all(np.diff(onsets) > 0)
        assert onsets[0] >= 0 and onsets[-1] < 1.5
        # the onsets are real: the sound starts at the first onset (nothing before it)
        first = int(onsets[0] * rng_sr)
        assert np.abs(wave[:max(first - 64, 0)]).max(initial=0) < 1e-3, c.name


def test_classes_differ_in_pitch():
    # the fundamental of a low and a high instrument (tuba vs flute), from the spectrum
    def centroid(name):
        w, _ = render_source_audio(name, np.random.default_rng(3), 2.0, 16000)
        spec = np.abs(np.fft.rfft(w))
        f = np.fft.rfftfreq(len(w), 1 / 16000)
        return float((spec * f).sum() / spec.sum())

    assert centroid("tuba") < centroid("flute")


# ------------------------------------------------------------------------------- determinism


def test_render_is_deterministic():
    cfg = small()
    a = render_clip(11, 3, 2, cfg)
    b = render_clip(11, 3, 2, cfg)
    for k in ("frames", "audio", "stems", "noise", "masks", "boxes", "sounding"):
        assert np.array_equal(getattr(a, k), getattr(b, k)), k
    assert json.dumps(a.meta) == json.dumps(b.meta)
    c = render_clip(12, 3, 2, cfg)
    assert not np.array_equal(a.frames, c.frames)
    assert not np.array_equal(a.audio, c.audio)
    d = render_clip(11, 4, 2, cfg)
    assert not np.array_equal(a.frames, d.frames)


def test_generate_is_byte_reproducible(tmp_path):
    cfg = small(duration=1.0)
    m1 = generate(tmp_path / "a", 3, sources=(1, 2), seed=5, config=cfg)
    m2 = generate(tmp_path / "b", 3, sources=(1, 2), seed=5, config=cfg, workers=2)
    m3 = generate(tmp_path / "c", 3, sources=(1, 2), seed=6, config=cfg)
    assert m1.read_bytes() == m2.read_bytes()
    for i in range(3):
        for suffix in (".json", ".gt.npz"):
            name = f"clip_{i:05d}{suffix}"
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
        assert (tmp_path / "a" / f"clip_{i:05d}.gt.npz").read_bytes() != \
            (tmp_path / "c" / f"clip_{i:05d}.gt.npz").read_bytes()
    assert m1.read_bytes() != m3.read_bytes()
    # the in-memory render is the same clip as the written one
    gt = load_ground_truth(tmp_path / "a" / "clip_00001.mp4")
    clip = render_clip(5, 1, 2, cfg)
    assert np.array_equal(gt.masks, clip.masks)
    assert np.array_equal(gt.stems, clip.stems)


# ------------------------------------------------------------------------------ ground truth


def test_counts_and_sounding_flags():
    for n in (1, 2, 3, 4):
        clip = render_clip(2, n, n, small(n_distractors=(1, 2)))
        T, H, W = clip.frames.shape[:3]
        O = len(clip.objects)
        assert clip.count == n == clip.meta["count"]
        assert clip.sounding.sum() == n and clip.stems.shape == (n, clip.audio.shape[0])
        assert 1 <= O - n <= 2 and clip.meta["n_distractors"] == O - n
        assert clip.masks.shape == (T, O, H, W) and clip.masks.dtype == bool
        assert clip.boxes.shape == (T, O, 4) and clip.boxes.dtype == np.float32
        assert T == clip.meta["n_frames"] == 30
        stems = sorted(o["stem_index"] for o in clip.objects if o["sounding"])
        assert stems == list(range(n))
        snd_classes = {o["class_name"] for o in clip.objects if o["sounding"]}
        for o, s in zip(clip.objects, clip.sounding, strict=True):
            assert o["sounding"] == bool(s)
            if not s:
                assert o["stem_index"] is None and o["onsets"] == []
                assert o["class_name"] not in snd_classes  # default: other classes
            else:
                assert len(o["onsets"]) >= 1
        # masks are disjoint (visible pixels) and every object is visible
        assert clip.masks.sum(axis=1).max() <= 1
        assert clip.masks.any(axis=(2, 3)).all()


def test_same_class_distractors():
    clip = render_clip(4, 0, 2, small(n_distractors=(2, 2), same_class_distractors=True))
    snd = {o["class_name"] for o in clip.objects if o["sounding"]}
    dis = [o["class_name"] for o in clip.objects if not o["sounding"]]
    assert len(dis) == 2 and set(dis) <= snd


def test_class_subset_and_sizes():
    clip = render_clip(0, 0, 2, small(classes=("tuba", "flute", "drums"), n_distractors=(1, 1)))
    assert {o["class_name"] for o in clip.objects} == {"tuba", "flute", "drums"}
    cfg = SynthConfig(size=(128, 96), duration=0.5, fps=10)
    clip = render_clip(0, 1, 1, cfg)
    assert clip.frames.shape == (5, 96, 128, 3) and clip.masks.shape[2:] == (96, 128)
    area = clip.masks[0].sum(axis=(1, 2)) / (96 * 128)
    assert np.all(area > 0.015) and np.all(area < 0.15)
    with pytest.raises(DataError, match="even"):
        render_clip(0, 0, 1, SynthConfig(size=(95, 96)))
    with pytest.raises(DataError, match="unknown source class"):
        SynthConfig(classes=("banjo",))
    with pytest.raises(DataError, match="different classes"):
        render_clip(0, 0, 3, small(classes=("tuba", "flute")))


def test_masks_lie_on_the_objects_pixels():
    clip = render_clip(7, 2, 2, small(n_distractors=(2, 2)))
    bg = clip.background.astype(np.float32)
    objs = clip.objects
    for o, obj in enumerate(objs):
        c1 = np.asarray(obj["color"], np.float32)
        c2 = np.asarray(obj["color2"], np.float32)
        # the colour family: shades of the blend of its two colours
        fam = np.array([s * (c1 * (1 - t) + c2 * t) for t in np.linspace(0, 1, 21)
                        for s in np.linspace(0.85, 1.15, 13)], np.float32)
        frames = _quiet_frames(clip, obj)
        assert frames
        for k in frames[::5]:
            inner = _erode(clip.masks[k, o], 1)
            if inner.sum() < 10:
                continue
            px = clip.frames[k][inner].astype(np.float32) / 255.0
            d = np.sqrt(((px[:, None, :] - fam[None]) ** 2).sum(-1)).min(axis=1)
            assert np.mean(d < 0.08) > 0.9, (obj["class_name"], k)
            diff = np.abs(clip.frames[k][inner].astype(np.float32) - bg[inner]).sum(-1)
            assert diff.mean() > 40, (obj["class_name"], k)
    # outside every object (a pixel away) the frame is the background
    for k in range(0, len(clip.frames), 7):
        anyobj = clip.masks[k].any(axis=0)
        grown = ~_erode(~anyobj, 2)
        assert np.array_equal(clip.frames[k][~grown], clip.background[~grown])
    # boxes hold the masks
    for k in (0, 10):
        for o in range(len(objs)):
            ys, xs = np.nonzero(clip.masks[k, o])
            x0, y0, x1, y1 = clip.boxes[k, o]
            assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1


def test_decoded_video_matches_ground_truth(tmp_path):
    from avstudio.media import VideoReader, read_audio

    cfg = small(duration=1.0)
    generate(tmp_path, 1, sources=(2,), seed=9, config=cfg)
    video = tmp_path / "clip_00000.mp4"
    gt = load_ground_truth(video)
    clip = render_clip(9, 0, 2, cfg)
    with VideoReader(str(video)) as vr:
        decoded = [rgb for _, _, rgb in vr.frames(0, None)]
    assert len(decoded) == gt.n_frames == 20
    for k in (0, 7, 19):
        fr = decoded[k].astype(np.float32)
        assert fr.shape == (96, 96, 3)
        for o in range(gt.masks.shape[1]):
            inner = _erode(gt.masks[k, o], 2)
            if inner.sum() < 10:
                continue
            err = np.abs(fr[inner] - clip.frames[k][inner].astype(np.float32)).mean()
            assert err < 10, (k, o, err)
    audio = read_audio(str(video), 16000, 0.0, 1.0)
    n = min(len(audio), len(gt.mix))
    corr = np.corrcoef(audio[:n], gt.mix[:n])[0, 1]
    assert corr > 0.9


# ------------------------------------------------------------------------------------ audio


def test_stems_sum_to_the_mix_and_are_normalised():
    for n in (1, 3):
        clip = render_clip(3, n, n, small(duration=2.0))
        assert np.allclose(clip.audio, clip.stems.sum(axis=0) + clip.noise, atol=1e-6)
        assert not clip.noise.any()
        assert np.abs(clip.audio).max() <= 0.9
        for o in clip.objects:
            if o["sounding"]:
                stem = clip.stems[o["stem_index"]]
                level = 20 * np.log10(instruments.active_rms(stem, 16000) / instruments.REF_RMS)
                assert abs(level - o["gain_db"]) < 0.2
                assert o["gain_db"] <= 3.0 + 1e-6


def test_offscreen_noise_is_separate():
    clip = render_clip(3, 0, 2, small(duration=2.0, offscreen_noise=0.3))
    assert clip.noise.any() and clip.meta["offscreen_noise"]["kind"] in instruments.NOISE_KINDS
    assert np.allclose(clip.audio, clip.stems.sum(axis=0) + clip.noise, atol=1e-6)
    quiet = render_clip(3, 0, 2, small(duration=2.0))
    # the noise does not change what the objects play
    assert [o["onsets"] for o in clip.objects] == [o["onsets"] for o in quiet.objects]


def test_fallback_when_fluidsynth_is_missing(monkeypatch):
    cfg = small(duration=1.5, classes=("cello", "flute", "trumpet"))
    have_fs = instruments.resolve_backend("auto") == "fluidsynth"
    ref = render_clip(1, 0, 2, cfg) if have_fs else None
    orig = sys.modules.get("fluidsynth")
    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # `import fluidsynth` fails
    instruments.reset_backend_cache()
    try:
        assert instruments.resolve_backend("auto") == "handmade"
        with pytest.raises(DataError, match="fluidsynth"):
            instruments.resolve_backend("fluidsynth")
        clip = render_clip(1, 0, 2, cfg)
        assert clip.meta["synth_backend"] == "handmade"
        assert all(o.get("timbre") == "handmade" for o in clip.objects if o["sounding"])
        assert np.sqrt(np.mean(clip.stems ** 2, axis=1)).min() > 0.01
        if ref is not None:  # same notes and pictures, other timbres
            assert ref.meta["synth_backend"] == "fluidsynth"
            assert [o["onsets"] for o in ref.objects] == [o["onsets"] for o in clip.objects]
            assert np.array_equal(ref.frames, clip.frames)
            assert not np.array_equal(ref.stems, clip.stems)
    finally:
        if orig is not None:
            sys.modules["fluidsynth"] = orig
        else:
            sys.modules.pop("fluidsynth", None)
        instruments.reset_backend_cache()
    # a soundfont that is not there
    monkeypatch.setenv("AVSTUDIO_SOUNDFONT", "/nonexistent/bank.sf2")
    instruments.reset_backend_cache()
    assert instruments.resolve_backend("auto") == "handmade"
    monkeypatch.delenv("AVSTUDIO_SOUNDFONT")
    instruments.reset_backend_cache()


# ----------------------------------------------------------------------------------- pulses


def test_sounding_objects_pulse_at_onsets_and_distractors_do_not():
    cfg = small(duration=2.0, fps=25, n_distractors=(1, 2))
    checked = 0
    for idx in range(3):
        clip = render_clip(21, idx, 2, cfg)
        size = (clip.boxes[..., 2] - clip.boxes[..., 0]) * (clip.boxes[..., 3] - clip.boxes[..., 1])
        lum = clip.frames.astype(np.float32).mean(-1)
        for o, obj in enumerate(clip.objects):
            if not obj["sounding"]:
                assert np.ptp(size[:, o]) == 0  # same silhouette all along
                continue
            on = np.asarray(obj["onsets"])
            for t0 in on:
                prev = on[on < t0]
                if prev.size and t0 - prev[-1] < 0.3:
                    continue  # the previous pulse has not faded yet
                before = int(np.floor(t0 * clip.fps - 1e-9))
                after = before + 1
                if before < 0 or after >= len(clip.frames):
                    continue
                assert size[after, o] > size[before, o] * 1.08, (idx, obj["class_name"], t0)
                mb, ma = clip.masks[before, o], clip.masks[after, o]
                if mb.sum() > 20 and ma.sum() > 20:
                    assert lum[after][ma].mean() > lum[before][mb].mean() + 5
                checked += 1
            quiet = _quiet_frames(clip, obj)
            assert np.ptp(size[quiet, o]) == 0
    assert checked >= 4


def test_distractor_pulses_option():
    cfg = small(duration=2.0, n_distractors=(2, 2), distractor_pulses=True)
    clip = render_clip(5, 0, 1, cfg)
    plain = render_clip(5, 0, 1, small(duration=2.0, n_distractors=(2, 2)))
    width = clip.boxes[..., 2] - clip.boxes[..., 0]
    for o, obj in enumerate(clip.objects):
        if not obj["sounding"]:
            assert obj["onsets"] == [] and obj["stem_index"] is None
            assert len(obj["phantom_pulses"]) >= 1
            assert np.ptp(width[:, o]) > 0
    # same sound and same sounding object; only the decoys change
    assert np.array_equal(clip.stems, plain.stems)
    assert [o["onsets"] for o in clip.objects] == [o["onsets"] for o in plain.objects]


# --------------------------------------------------------------------------------- manifest


def test_manifest_round_trip(tmp_path):
    rows = [ManifestRow(str(tmp_path / "a.mp4"), 1, {"seed": "3"}),
            ManifestRow(str(tmp_path / "sub" / "b.mp4"), None, {"seed": "4", "note": "x,y"}),
            {"path": "/elsewhere/c.mp4", "count": 2}]
    m = write_manifest(tmp_path / "m.csv", rows)
    text = m.read_text()
    assert text.splitlines()[0] == "path,count,seed,note"
    assert "a.mp4,1,3," in text and "sub/b.mp4,,4" in text and "/elsewhere/c.mp4,2" in text
    back = read_manifest(m)
    assert [r.path for r in back] == [str(tmp_path / "a.mp4"), str(tmp_path / "sub" / "b.mp4"),
                                      "/elsewhere/c.mp4"]
    assert [r.count for r in back] == [1, None, 2]
    assert back[1].extra == {"seed": "4", "note": "x,y"}


def test_read_manifest_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_manifest(tmp_path / "none.csv")
    p = tmp_path / "m.csv"
    p.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_manifest(p)
    p.write_text("path,label\na.mp4,1\n")
    with pytest.raises(DataError, match="'count'"):
        read_manifest(p)
    p.write_text("count\n1\n")
    with pytest.raises(DataError, match="'path'"):
        read_manifest(p)
    p.write_text("path,count\na.mp4,1\nb.mp4,two\n")
    with pytest.raises(DataError, match=r"line 3.*'two'"):
        read_manifest(p)
    p.write_text("path,count\na.mp4,-1\n")
    with pytest.raises(DataError, match="line 2.*negative"):
        read_manifest(p)
    p.write_text("path,count\n,1\n")
    with pytest.raises(DataError, match="line 2.*empty path"):
        read_manifest(p)
    p.write_text("\ufeffpath,count,x\n\nclips/a.mp4, 2 ,k\nb.mp4,,\n")
    rows = read_manifest(p)
    assert [r.count for r in rows] == [2, None]
    assert rows[0].path == str(tmp_path / "clips" / "a.mp4")


# --------------------------------------------------------------------------- files and CLI


def test_generate_round_robin_progress_and_cancel(tmp_path):
    events = []
    m = generate(tmp_path / "rr", 4, sources=(1, 2, 3), seed=1, config=small(duration=0.5),
                 progress=events.append)
    rows = read_manifest(m)
    assert [r.count for r in rows] == [1, 2, 3, 1]
    assert [Path(r.path).name for r in rows] == [f"clip_{i:05d}.mp4" for i in range(4)]
    assert rows[1].extra["index"] == "1" and rows[1].extra["seed"] == "1"
    assert events[-1].done == 4 and events[-1].total == 4 and events[-1].task == "synth"

    cancel = threading.Event()

    def on_progress(ev):
        if ev.done >= 2:
            cancel.set()

    with pytest.raises(Cancelled):
        generate(tmp_path / "cx", 6, sources=(1,), seed=1, config=small(duration=0.5),
                 progress=on_progress, cancel=cancel)
    rows = read_manifest(tmp_path / "cx" / "manifest.csv")
    assert len(rows) == 2 and all(os.path.exists(r.path) for r in rows)
    assert not list((tmp_path / "cx").glob("*.part*"))
    for r in rows:
        load_ground_truth(r.path)


def test_load_ground_truth_errors(tmp_path):
    with pytest.raises(DataError, match="clip_00000.json"):
        load_ground_truth(tmp_path / "clip_00000.mp4")
    j, n = sidecar_paths(tmp_path / "x.mp4")
    assert j.name == "x.json" and n.name == "x.gt.npz"
    j.write_text("{}")
    n.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="x.gt.npz"):
        load_ground_truth(tmp_path / "x.mp4")


def _cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "avstudio", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "set"
    r = _cli("synth", str(out), "--clips", "2", "--sources", "1,2", "--seed", "5", "--size", "96x64",
             "--duration", "1", "--fps", "10", "--distractors", "1-1", "--quiet")
    assert r.returncode == 0, r.stderr
    rows = read_manifest(out / "manifest.csv")
    assert [r_.count for r_ in rows] == [1, 2]
    gt = load_ground_truth(rows[1].path)
    assert gt.count == 2 and gt.masks.shape == (10, 3, 64, 96) and gt.sounding.sum() == 2
    assert gt.meta["size"] == [96, 64] and gt.meta["video"] == "clip_00001.mp4"
    try:
        import avstudio.commands.info  # noqa: F401
    except ModuleNotFoundError:
        return
    r = _cli("info", rows[1].path)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["width"] == 96 and info["height"] == 64 and info["has_audio"]
    assert info["frame_count"] == 10


def test_cli_bad_input_is_one_clear_line(tmp_path):
    r = _cli("synth", str(tmp_path / "o"), "--clips", "1", "--size", "95x96", "--quiet")
    assert r.returncode == 2
    assert "even" in r.stderr and "Traceback" not in r.stderr
    r = _cli("synth", str(tmp_path / "o"), "--clips", "1", "--classes", "tuba,banjo", "--quiet")
    assert r.returncode == 2 and "banjo" in r.stderr and "Traceback" not in r.stderr
    r = _cli("synth", str(tmp_path / "o"), "--sources", "1,x")
    assert r.returncode == 2 and "Traceback" not in r.stderr
