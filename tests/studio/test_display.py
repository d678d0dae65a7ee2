"""The clip's sound as the app shows it (avstudio.studio.display)."""

from __future__ import annotations

import numpy as np
import pytest

from avstudio.studio.display import envelope, load_clip_sound, mel_spectrogram
from helpers import make_video


def test_the_spectrogram_puts_a_tone_in_its_band():
    sr = 16000
    x = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(sr) / sr)).astype(np.float32)
    db, hop_s, centres = mel_spectrogram(x, sr, n_mels=64)
    assert db.shape[0] == 64 and hop_s == pytest.approx(0.01)
    peak = centres[int(np.argmax(db.mean(1)))]
    assert 800 < peak < 1250
    assert db.max() - db.min() <= 80.0 + 1e-3  # an 80 dB range, as shown


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
    assert set(got) >= {"spec", "spec_hop_s", "spec_t0", "mel_hz", "env_t", "env_lo", "env_hi"}
    assert load_clip_sound(str(make_video(tmp_path / "s.mp4", 5, size=(32, 32), audio=False))) is None
