#!/usr/bin/env python3
"""Screenshots of AV Studio for the docs, taken under a virtual X server (Xvfb).

    python scripts/screenshot.py [--video resources/demo.mp4] [--model models/default]
                                 [--out docs/screenshot.png] [--time 2.0] [--click 0.3 0.5]

Starts Xvfb itself (or uses $DISPLAY with --display), opens the clip with overlays on,
waits for the analysis (and the separation, when the model has a separator), moves to
``--time``, clicks a pixel when asked, and grabs the window to ``--out`` plus one PNG per
panel beside it (``*_video.png``, ``*_timeline.png``, ``*_clusters.png``, ``*_keys.png``).
Without the demo clip a synthetic two-source clip is rendered for the picture.
``--compare MODEL`` opens a second model beside the first (side by side, docs/gui.md) and
waits for its analysis too. ``--library`` (or ``--library-only``) also shoots the clip library and a fine-tuning run
(``screenshot_library.png``, ``screenshot_finetune.png``; see ``scripts/screenshot_panels.py``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def start_xvfb(size: str = "1680x1050x24") -> subprocess.Popen:
    exe = shutil.which("Xvfb")
    if exe is None:
        raise SystemExit("screenshot.py: Xvfb is not installed (apt-get install xvfb)")
    for n in range(99, 140):
        if Path(f"/tmp/.X{n}-lock").exists() or Path(f"/tmp/.X11-unix/X{n}").exists():
            continue
        proc = subprocess.Popen([exe, f":{n}", "-screen", "0", size, "-nolisten", "tcp", "-ac"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(50):
            if Path(f"/tmp/.X11-unix/X{n}").exists():
                os.environ["DISPLAY"] = f":{n}"
                return proc
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        proc.kill()
    raise SystemExit("screenshot.py: could not start Xvfb")


def synthetic_clip(out: Path) -> Path:
    from avstudio.data.synth import SynthConfig, render_clip, write_clip

    clip = render_clip(seed=7, index=1, n_sources=2,
                       config=SynthConfig(size=(640, 360), duration=6.0, n_distractors=(1, 1)))
    return write_clip(clip, out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default=None)
    ap.add_argument("--model", default=None, help="MODEL (default: models/default)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshot.png"))
    ap.add_argument("--time", type=float, default=None, help="seconds into the clip (default: 40%%)")
    ap.add_argument("--click", type=float, nargs=2, default=None, metavar=("X", "Y"),
                    help="click this normalised spot (0..1) to hear a pixel")
    ap.add_argument("--k", type=int, default=None, help="number of sound clusters (default: the counter's)")
    ap.add_argument("--compare", default=None, metavar="MODEL", help="a second model (B) beside the first")
    ap.add_argument("--size", default="1600x1000")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--display", action="store_true", help="use the current $DISPLAY, no Xvfb")
    ap.add_argument("--keep-cache", action="store_true", help="use the user's analysis cache")
    ap.add_argument("--no-panels", action="store_true", help="only the window, not one PNG per panel")
    ap.add_argument("--library", action="store_true", help="also the clip library and fine-tune panels "
                    "(screenshot_library.png, screenshot_finetune.png beside --out; trains for minutes)")
    ap.add_argument("--library-only", action="store_true", help="only the library and fine-tune panels")
    args = ap.parse_args()

    xvfb = None if args.display else start_xvfb()
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    os.environ.setdefault("AVSTUDIO_NO_AUDIO", "1")
    tmp = Path(tempfile.mkdtemp(prefix="avstudio-shot-"))
    if not args.keep_cache:
        os.environ["AVSTUDIO_CACHE"] = str(tmp / "cache")
    os.environ["AVSTUDIO_SETTINGS"] = str(tmp / "settings.ini")
    try:
        return shoot(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if xvfb is not None:
            xvfb.terminate()
            try:
                xvfb.wait(5)
            except subprocess.TimeoutExpired:
                xvfb.kill()


def library_shots(win, pump, out: Path, tmp: Path) -> None:
    """--library: a library of annotated synthetic clips and a fine-tuning run (screenshot_panels.py)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from screenshot_panels import shoot_panels

    shoot_panels(win, pump, out.parent, tmp)


def shoot(args, tmp: Path) -> int:
    from PySide6.QtCore import QTimer

    from avstudio.gui.app import make_app, wait_events
    from avstudio.gui.main_window import MainWindow, demo_clip

    video = args.video
    if video is None:
        video = str(demo_clip()) if demo_clip().exists() else str(synthetic_clip(tmp / "synthetic.mp4"))
    app = make_app()
    w, h = (int(x) for x in args.size.split("x"))
    win = MainWindow(model_path=args.model, audio=False, k=args.k)
    win.resize(w, h)
    win.show()

    def pump(seconds: float, until=None) -> bool:
        return wait_events(seconds, until, poll_ms=20)  # the event loop sleeps between events

    pump(60, lambda: not win.player.model_loading)
    if args.library_only:
        library_shots(win, pump, Path(args.out), tmp)
        QTimer.singleShot(0, win.close)
        pump(0.5)
        win.shutdown()
        return 0
    if args.compare:
        win.open_compare_model(args.compare)
        pump(60, lambda: not win.compare.loading)
        print(f"model B: {win.compare.bundle.name if win.compare.bundle else win.compare.error}")
    if not win.open_file(video):
        print(f"screenshot.py: cannot open {video}: {win.last_error}", file=sys.stderr)
        return 2
    t0 = time.time()
    if win.player.bundle is not None:
        ok = pump(args.timeout, lambda: win.player.analysis_state in ("done", "failed", "cancelled"))
        print(f"analysis: {win.player.analysis_state} in {time.time() - t0:.1f} s" + ("" if ok else " (timeout)"))
        if win.player.bundle.separator is not None and win.player.k:  # a clip without sound has no stems
            pump(args.timeout, lambda: win.player.stems is not None or "failed" in win.panel.note.text())
            print(f"stems: {'ready' if win.player.stems is not None else win.panel.note.text()}")
    if win.player.has_audio:  # the waveform and the spectrogram drawn
        pump(args.timeout, lambda: win.player.audio_data is not None)
    if win.compare.bundle is not None:
        ok = pump(args.timeout, lambda: win.compare.track is not None and
                  win.compare.track.state in ("done", "failed", "cancelled"))
        print(f"analysis B: {win.compare.track.state if win.compare.track else '-'}" + ("" if ok else " (timeout)"))
    t = args.time if args.time is not None else 0.4 * win.player.duration
    win.viewer.seek(win.player.video_start + t)
    pump(3.0, lambda: win.viewer.current_frame == win.player.index_at(win.player.video_start + t))
    if args.click is not None:
        win.sound.hear_pixel(*args.click)
        pump(60, lambda: win.player.pixel is not None and "audio" in win.player.pixel)
        win.viewer.pause()
        win.viewer.seek(win.player.video_start + t)
    win.timeline.zoom_fit()
    pump(1.5)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    win.grab().save(str(out))
    stem = out.with_suffix("")
    if args.no_panels:
        print(f"wrote {out}")
        QTimer.singleShot(0, win.close)
        pump(0.5)
        win.shutdown()
        return 0
    win.view.grab().save(f"{stem}_video.png")
    win.timeline_dock.grab().save(f"{stem}_timeline.png")
    win.panel_dock.grab().save(f"{stem}_clusters.png")
    win.show_keys()
    pump(0.5)
    win.keys_dialog.grab().save(f"{stem}_keys.png")
    win.keys_dialog.close()
    print(f"wrote {out} (+ {stem.name}_video/_timeline/_clusters/_keys.png)")
    if args.library:
        library_shots(win, pump, out, tmp)
    QTimer.singleShot(0, win.close)
    pump(0.5)
    win.shutdown()
    app.processEvents()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
