"""``python main.py [VIDEO] [--model MODEL] [--compare MODEL] [--no-audio]``: start the desktop app."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional

_T_IMPORT = time.perf_counter()


def seconds_since_process_start() -> Optional[float]:
    """Seconds since this process was created (Linux /proc), None elsewhere."""
    try:
        with open(f"/proc/{os.getpid()}/stat") as fh:
            stat = fh.read()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="main.py", description="AV Studio: see and hear what an "
                                "audiovisual model learned.")
    p.add_argument("video", nargs="?", help="video to open (default: the bundled demo clip)")
    p.add_argument("--model", default=None, help="MODEL file or folder (default: models/default)")
    p.add_argument("--compare", default=None, metavar="MODEL",
                   help="a second MODEL (B) shown beside the first (A), side by side on the same frame")
    p.add_argument("--no-audio", action="store_true", help="play silently (no sound device)")
    p.add_argument("--no-model", action="store_true", help="do not load a model (video only)")
    p.add_argument("--benchmark-startup", action="store_true",
                   help="print the seconds from process start to the first frame painted, then exit")
    p.add_argument("--quit-after", type=float, default=None, metavar="SECONDS",
                   help="quit after this many seconds (scripts, tests)")
    p.add_argument("--k", type=int, default=None, metavar="K",
                   help="number of sound clusters (default: the model's counter decides)")
    p.add_argument("--play", action="store_true", help="start playing once the clip is open "
                   "(with --solo: once that stem is ready, from the start)")
    p.add_argument("--solo", type=int, default=None, metavar="J",
                   help="solo sound cluster J (1-based) once its stem is ready (scripts, tests)")
    p.add_argument("--quit-at-end", action="store_true", help="quit when playback reaches the end")
    p.add_argument("--verbose", action="store_true", help="print what happens (audio device, analysis)")
    p.add_argument("--library", default=None, metavar="LIB",
                   help="open this clip library (annotation and fine-tuning panels)")
    return p


def make_app(argv: Optional[list[str]] = None):
    from PySide6.QtWidgets import QApplication

    from . import style
    from .qtcompat import install_none_guard

    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else [sys.argv[0]])
    install_none_guard(app)
    app.setApplicationName("AV Studio")
    app.setOrganizationName("avstudio")
    app.setApplicationDisplayName("AV Studio")
    style.apply(app)
    app.setWindowIcon(style.app_icon())
    return app


def wait_events(seconds: float, until=None, poll_ms: int = 2) -> bool:
    """Run the Qt event loop (sleeping between events) for up to ``seconds`` or until
    ``until()`` is true. Returns ``until()`` (True without a predicate)."""
    from PySide6.QtCore import QEventLoop, QTimer

    if until is not None and until():
        return True
    loop = QEventLoop()
    poll = QTimer()
    poll.setInterval(poll_ms)
    poll.timeout.connect(lambda: until is not None and until() and loop.quit())
    end = QTimer()
    end.setSingleShot(True)
    end.timeout.connect(loop.quit)
    end.start(int(seconds * 1000))
    poll.start()
    loop.exec()
    poll.stop()
    end.stop()
    return bool(until()) if until is not None else True


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    app = make_app()
    from PySide6.QtCore import QTimer

    from .main_window import MainWindow, demo_clip

    if args.k is not None and not 1 <= args.k <= 6:
        print("main.py: error: --k must be between 1 and 6", file=sys.stderr)
        return 2
    video = args.video
    if video is None and demo_clip().exists():
        video = str(demo_clip())
    win = MainWindow(model_path=args.model, audio=not args.no_audio, load_model=not args.no_model, k=args.k,
                     defer_model=video is not None)
    win.show()
    if args.verbose:
        print(f"audio: {win.output.status}", flush=True)
        win.modelReady.connect(lambda: print(f"model: {win.player.bundle.name if win.player.bundle else win.player.model_error}",
                                             flush=True))
        win.analysisFinished.connect(lambda: print(f"analysis: done, k={win.player.k}", flush=True))
        win.stemsReady.connect(lambda: print(f"stems: ready, {win.player.stems.shape[0]} x {win.player.stems.shape[1]} "
                                             f"at {win.player.stems_sr} Hz", flush=True))
        win.playbackStopped.connect(lambda t: print(f"playback: stopped at {t:.3f} s", flush=True))

    if args.benchmark_startup:
        def first_paint(index: int) -> None:
            if index < 0:
                return
            since = seconds_since_process_start()
            since_import = time.perf_counter() - _T_IMPORT
            print(f"startup to first frame: {since if since is not None else since_import:.3f} s "
                  f"(process start; {since_import:.3f} s after the app module was imported)", flush=True)
            win.view.painted.disconnect(first_paint)
            QTimer.singleShot(0, win.close)
        win.view.painted.connect(first_paint)

    if args.compare:
        win.open_compare_model(args.compare)
        if args.verbose:
            win.compare.modelReady.connect(lambda: print(
                f"model B: {win.compare.bundle.name if win.compare.bundle else win.compare.error}", flush=True))
            win.compare.analysisFinished.connect(lambda: print("analysis B: done", flush=True))
    if video is None:
        win.statusBar().showMessage("The demo clip (resources/demo.mp4) is not installed: "
                                    "open a video with Ctrl+O or drop one here")
    if video is not None:
        QTimer.singleShot(0, lambda: win.open_file(video) and args.play and args.solo is None and win.viewer.play())
    if args.solo is not None:
        j = args.solo - 1

        def solo():
            win.panel.set_track(f"c{j}", solo=True, mute=False)
            if args.verbose:
                print(f"solo: sound {j + 1}; heard: {', '.join(win.mixer.audible())}", flush=True)
            if args.play:
                win.viewer.seek(win.player.video_start)
                win.viewer.play()
        win.stemsReady.connect(solo)
    if args.library:
        from .library_panel import open_library_from_args

        QTimer.singleShot(0, lambda: open_library_from_args(win, args.library))
    if args.quit_at_end:
        win.playbackStopped.connect(lambda t: t >= win.player.video_start + win.player.duration - 1.0 / win.player.fps
                                    and QTimer.singleShot(0, win.close))
    if args.quit_after is not None:
        QTimer.singleShot(int(args.quit_after * 1000), win.close)
    rc = app.exec()
    win.shutdown()
    return int(rc)


if __name__ == "__main__":
    raise SystemExit(main())
