"""What the app plays, checked for content through a real PortAudio/ALSA output.

ALSA's ``type file`` plugin (slave ``null``) writes every sample the app plays to a file.
The app runs in a subprocess whose HOME holds an ``.asoundrc`` making that the default
device; PortAudio (sounddevice) must see it, the app must open it, and what it wrote when a
cluster is soloed must be that cluster's stem (correlation, not timing: the file device has
no real-time clock).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import make_tiny_model, make_video

ROOT = Path(__file__).resolve().parents[2]
RATE = 48000

ASOUNDRC = """
pcm.!default {{
  type plug
  slave {{
    pcm "avstudio_file"
    format S16_LE
    rate {rate}
    channels 1
  }}
}}
pcm.avstudio_file {{
  type file
  slave.pcm "null"
  file "{out}"
  format "raw"
}}
"""


def _has_alsa() -> bool:
    return any(Path(p).exists() for p in ("/usr/share/alsa/alsa.conf", "/etc/alsa/alsa.conf"))


pytestmark = pytest.mark.skipif(sys.platform != "linux" or not _has_alsa(), reason="needs Linux ALSA")


@pytest.fixture
def alsa_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "played.raw"
    (home / ".asoundrc").write_text(ASOUNDRC.format(rate=RATE, out=out))
    env = dict(os.environ, HOME=str(home), QT_QPA_PLATFORM="offscreen",
               AVSTUDIO_CACHE=str(tmp_path / "cache"), AVSTUDIO_SETTINGS=str(tmp_path / "settings.ini"))
    env.pop("AVSTUDIO_NO_AUDIO", None)
    env.pop("ALSA_CONFIG_PATH", None)
    return env, out, tmp_path


def test_portaudio_sees_the_alsa_default_device(alsa_home):
    env, _out, _ = alsa_home
    code = ("import json, sounddevice as sd\n"
            "d = sd.query_devices(kind='output')\n"
            "from avstudio.media.audio_out import open_output\n"
            "o = open_output(48000)\n"
            "print(json.dumps({'name': d['name'], 'channels': d['max_output_channels'],"
            " 'status': o.status, 'kind': type(o).__name__}))\n"
            "o.close()\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    if r.returncode != 0 and "PortAudio library not found" in r.stderr:
        pytest.skip("libportaudio2 is not installed")
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["name"] == "default" and got["channels"] > 0
    assert got["kind"] == "SoundDeviceOutput" and got["status"] == "Playing through default"


def _best_corr(x: np.ndarray, ref: np.ndarray) -> float:
    """Correlation of ``ref`` with ``x`` at the lag where they line up best."""
    n = 1 << int(np.ceil(np.log2(len(x) + len(ref))))
    c = np.fft.irfft(np.fft.rfft(x, n) * np.conj(np.fft.rfft(ref, n)), n)
    lag = int(np.argmax(np.abs(c[: max(1, len(x) - len(ref) // 2)])))
    seg = x[lag: lag + len(ref)]
    m = min(len(seg), len(ref))
    return float(np.corrcoef(seg[:m], ref[:m])[0, 1])


def test_soloed_cluster_is_what_the_device_plays(alsa_home):
    from avstudio.analysis.cache import AnalysisCache
    from avstudio.nets.checkpoint import load_model

    env, out, tmp = alsa_home
    clip = make_video(tmp / "clip.mp4", 50, size=(64, 48), audio_kind="noise")
    model = make_tiny_model(tmp / "model")
    # the stems the app will find in its cache (as after a first session): two sounds that
    # no mix of the others resembles
    sr = 16000
    t = np.arange(2 * sr) / sr
    stems = np.stack([0.4 * np.sin(2 * np.pi * 440 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t)),
                      0.3 * np.sign(np.sin(2 * np.pi * 97 * t))]).astype(np.float32)
    bundle = load_model(model)
    AnalysisCache(clip, bundle.model_id, root=env["AVSTUDIO_CACHE"]).save_stems(2, stems, sr)

    r = subprocess.run([sys.executable, str(ROOT / "main.py"), str(clip), "--model", str(model), "--k", "2",
                        "--solo", "1", "--play", "--quit-at-end", "--verbose"],
                       env=env, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "audio: Playing through default" in r.stdout, r.stdout
    assert "solo: sound 1; heard: c0" in r.stdout, r.stdout
    assert out.exists(), "the ALSA file device wrote nothing"
    played = np.fromfile(out, dtype="<i2").astype(np.float32) / 32768.0
    assert len(played) > 1.5 * RATE, f"only {len(played) / RATE:.2f} s played"
    assert np.abs(played).max() > 0.1

    def at_rate(x):  # what the mixer does: linear interpolation to the output rate
        tt = np.arange(int(len(x) * RATE / sr)) / RATE
        return np.interp(tt * sr, np.arange(len(x)), x)

    c0 = _best_corr(played, at_rate(stems[0]))
    c1 = _best_corr(played, at_rate(stems[1]))
    assert c0 > 0.95, (c0, c1)
    assert abs(c1) < 0.3, (c0, c1)
