"""The clip's sound as the app shows it (avstudio.studio.display)."""

from __future__ import annotations

import numpy as np
import pytest

from avstudio.studio.display import SPEC_FLOOR_DB, SPEC_TOP_DB, envelope, load_clip_sound, mel_spectrogram
from helpers import make_video


def test_the_spectrogram_puts_a_tone_in_its_band():
    sr = 16000
    x = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(sr) / sr)).astype(np.float32)
    db, hop_s, centres = mel_spectrogram(x, sr, n_mels=64)
    assert db.shape[0] == 64 and hop_s == pytest.approx(0.01)
    peak = centres[int(np.argmax(db.mean(1)))]
    assert 800 < peak < 1250
    assert SPEC_FLOOR_DB <= db.min() and db.max() <= SPEC_TOP_DB


def test_the_spectrogram_has_one_fixed_scale():
    """dB relative to a full-scale sine, the same scale for every clip: a quiet tone stays dark
    and silence is the floor colour (never stretched to fill the colours)."""
    sr = 16000
    t = np.arange(sr) / sr
    loud, _, centres = mel_spectrogram(np.sin(2 * np.pi * 1000 * t).astype(np.float32), sr)
    assert loud.max() == pytest.approx(0.0, abs=3.0)  # a full-scale sine reads about 0 dB in its band
    band = int(np.argmin(np.abs(centres - 1000)))
    assert abs(int(loud[:, loud.shape[1] // 2].argmax()) - band) <= 2
    quiet, _, _ = mel_spectrogram((1e-3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), sr)
    assert quiet.max() == pytest.approx(-60.0, abs=3.0)  # 60 dB down, drawn 60 dB down
    silence, _, _ = mel_spectrogram(np.zeros(sr, np.float32), sr)
    assert (silence == SPEC_FLOOR_DB).all()


def test_the_envelope_holds_every_peak():
    x = np.zeros(1000, np.float32)
    x[123], x[777] = 0.9, -0.8
    t, lo, hi = envelope(x, 1000, bins=10)
    assert len(t) == 10 and hi.max() == pytest.approx(0.9) and lo.min() == pytest.approx(-0.8)
    assert envelope(np.zeros(0, np.float32), 1000)[0].shape == (1,)


def test_a_clips_sound_for_playback(tmp_path):
    clip = make_video(tmp_path / "c.mp4", 25, size=(32, 32), sr=16000)
    got = load_clip_sound(str(clip), 48000)
    assert got["sr"] == 16000 and abs(len(got["mix"]) - 16000) < 1100
    assert set(got) >= {"spec", "spec_hop_s", "spec_t0", "mel_hz", "env_t", "env_lo", "env_hi", "spec_levels"}
    assert got["spec_levels"] == (SPEC_FLOOR_DB, SPEC_TOP_DB) and got["sound"].state == "sound"
    none = load_clip_sound(str(make_video(tmp_path / "s.mp4", 5, size=(32, 32), audio=False)))
    assert none["sound"].state == "none" and "mix" not in none
    silent = load_clip_sound(str(make_video(tmp_path / "z.mp4", 25, size=(32, 32), audio_kind="silence")))
    assert silent["sound"].state == "silent" and (silent["spec"] == SPEC_FLOOR_DB).all()
