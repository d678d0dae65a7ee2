"""Sound where there is none: levels, silence, the counter's 0, analyze on clips without sound.

The clips are made here (tests/helpers.py); the models are small and randomly initialised:
nothing asserted depends on what a trained model outputs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avstudio.analysis import sound as S
from helpers import make_video

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- clips and a model


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("sound clips")
    return {
        "sound": make_video(d / "sine.mp4", 40, size=(64, 64), audio_kind="counter"),
        "none": make_video(d / "no_audio.mp4", 40, size=(64, 64), audio=False),
        "silent": make_video(d / "zeros.mp4", 40, size=(64, 64), audio_kind="silence"),
        "silent_mp3": make_video(d / "zeros_mp3.mkv", 40, size=(64, 64), audio_kind="silence",
                                 codec="libx264", audio_codec="libmp3lame"),
    }


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small model folder: localizer (AV + counter) and separator, randomly initialised."""
    from avstudio.nets.checkpoint import component_tensors, save_tensors
    from avstudio.nets.config import CounterConfig, default_config
    from avstudio.nets.counter import Counter
    from avstudio.nets.model import AVModel
    from avstudio.nets.separator import Separator, SeparatorConfig

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("model")
    cfg = default_config("small")
    av, counter = AVModel(cfg), Counter(CounterConfig(), cfg)
    t = component_tensors("av", av)
    t.update(component_tensors("counter", counter))
    save_tensors(d / "localizer.safetensors", t,
                 {"kind": "avstudio-localizer",
                  "components": {"av": {"class": "AVModel", "config": cfg.to_dict()},
                                 "counter": {"class": "Counter", "config": counter.cfg.to_dict()}}})
    sep = Separator(SeparatorConfig(n_bins=64, channels=(4, 8, 8), feat_channels=8, head_hidden=8,
                                    cond_dim=cfg.embed_dim, chunk_seconds=0.8, context_seconds=0.3))
    save_tensors(d / "separator.safetensors", component_tensors("sep", sep),
                 {"components": {"sep": {"class": "Separator", "config": sep.cfg.to_dict()}}})
    return d


@pytest.fixture(scope="module")
def bundle(model_dir):
    from avstudio.nets.checkpoint import load_model

    return load_model(model_dir)


# ---------------------------------------------------------------- levels


def test_levels_in_dbfs():
    sr = 16000
    t = np.arange(sr) / sr
    assert S.level_dbfs(np.sin(2 * np.pi * 440 * t)) == pytest.approx(0.0, abs=0.01)  # AES17
    assert S.level_dbfs(0.5 * np.sin(2 * np.pi * 440 * t)) == pytest.approx(-6.02, abs=0.01)
    assert S.level_dbfs(np.zeros(100)) == -math.inf
    lv = S.window_levels(np.concatenate([np.zeros(800), 0.1 * np.sin(2 * np.pi * 440 * t[:800])]), sr)
    assert lv.shape == (2,) and lv[0] == -math.inf and lv[1] == pytest.approx(-20.0, abs=0.2)


def test_silence_is_decided_by_the_loudest_window():
    sr = 16000
    t = np.arange(2 * sr) / sr
    quiet = 10 ** (-70 / 20) * np.sin(2 * np.pi * 300 * t)  # -70 dBFS: a hiss, not a sound
    assert S.sound_of_samples(quiet, sr).state == "silent"
    click = quiet.copy()
    click[sr:sr + 800] += 0.05 * np.sin(2 * np.pi * 1000 * t[:800])  # 50 ms at about -26 dBFS
    snd = S.sound_of_samples(click, sr)
    assert snd.state == "sound" and snd.loudest_dbfs > S.SILENCE_DBFS
    zeros = S.sound_of_samples(np.zeros(sr, np.float32), sr)
    assert zeros.state == "silent" and zeros.to_dict()["digital_silence"] is True
    assert "every sample is 0" in zeros.note()
    assert S.NO_AUDIO.state == "none" and "no audio track" in S.NO_AUDIO.note()
    json.dumps(zeros.to_dict(), allow_nan=False)  # -inf is never written as JSON


def test_check_sound_of_real_files(clips):
    assert S.check_sound(clips["none"]).state == "none"
    for name in ("silent", "silent_mp3"):
        got = S.check_sound(clips[name])
        assert got.state == "silent", (name, got)
        assert got.seconds > 1.0  # a silent track is read to its end
    got = S.check_sound(clips["sound"])
    assert got.state == "sound" and got.loudest_dbfs > -10


# ---------------------------------------------------------------- counting


def test_the_count_of_a_clip_without_sound_is_zero(bundle, clips):
    from avstudio.analysis.localize import RATE_MEANING, estimate_count

    for name, state in (("none", "none"), ("silent", "silent"), ("silent_mp3", "silent")):
        est = estimate_count(bundle, str(clips[name]))
        assert est.count == 0 and est.rate is None and est.sound.state == state
        d = est.to_dict()
        assert d["count"] == 0 and d["by"] == "sound check" and d["note"]
        assert est.text().startswith("0 sources: this clip")
    est = estimate_count(bundle, str(clips["sound"]))
    assert est.rate is not None and est.count == min(16, max(0, round(est.rate)))
    assert f"rate {est.rate:.2f}" in est.text() and est.to_dict()["rate_meaning"] == RATE_MEANING


def test_rate_to_count_can_answer_zero():
    from avstudio.nets.counter import rate_to_count

    assert rate_to_count(0.2) == 0 and rate_to_count(0.5) == 0 and rate_to_count(0.51) == 1
    assert rate_to_count(1.94) == 2 and rate_to_count(40.0) == 16


# ---------------------------------------------------------------- analysis


def test_analyze_clip_makes_no_sound_cluster_without_sound(bundle, clips):
    from avstudio.analysis.localize import analyze_clip
    from avstudio.analysis.separate import PixelSounder, write_stems
    from avstudio.errors import AVStudioError

    for name in ("none", "silent"):
        res = analyze_clip(bundle, str(clips[name]), k=2)
        assert res.k == 0 and res.heatmaps.shape[:2] == (40, 0) and res.heatmaps.shape[2] > 0
        assert len(res.times) == 40 and np.all(np.diff(res.times) > 0)
        assert res.count_prediction["count"] == 0 and "k = 2 was asked" in res.note
        assert write_stems(bundle, str(clips[name]), res, "/nonexistent") == {"stems": None}
        with pytest.raises(AVStudioError, match="this clip (is silent|has no sound)"):
            PixelSounder(bundle, str(clips[name]))
    res = analyze_clip(bundle, str(clips["sound"]), k=2)
    assert res.k == 2 and res.heatmaps.shape[1] == 2 and res.note is None


def _analyze(video, model_dir, out):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "avstudio", "analyze", str(video), "--model", str(model_dir),
                           "--out", str(out), "--quiet"], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name,state", [("none", "none"), ("silent_mp3", "silent")])
def test_avstudio_analyze_says_there_is_no_sound(name, state, clips, model_dir, tmp_path):
    r = _analyze(clips[name], model_dir, tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"avstudio analyze: note: {json.loads(r.stdout)['note']}"]
    z = np.load(tmp_path / "out" / "heatmaps.npz")
    assert z["heatmaps"].dtype == np.float32 and z["heatmaps"].shape[:2] == (40, 0)
    assert z["times"].shape == (40,)
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["k"] == 0 and s["stems"] is None and s["sound"]["state"] == state
    assert s["count_prediction"]["count"] == 0 and s["note"].startswith(
        "this clip is silent" if state == "silent" else "this clip has no sound")
    assert not (tmp_path / "out" / "stems").exists()


def test_avstudio_analyze_shows_the_rate_with_sound(clips, model_dir, tmp_path):
    r = _analyze(clips["sound"], model_dir, tmp_path / "out")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    cp = s["count_prediction"]
    assert cp["by"] == "counter" and cp["rate"] is not None and "confidence" not in cp
    assert s["sound"]["state"] == "sound" and "note" not in s and out["count"] == cp
    if s["k"] > 0:
        assert s["stems"]["k"] == s["k"]
