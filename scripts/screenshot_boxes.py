#!/usr/bin/env python3
"""Screenshots of the box tool for the docs, under a virtual X server (Xvfb).

    python scripts/screenshot_boxes.py DIR [--clip speaker_webcam] [--frame 22] [--out docs/screenshot_boxes.png]
                                           [--compare models/avin]

DIR is the real test set made by ``python scripts/real_footage.py all DIR`` (its clips, its
library with the boxes). Opens the library and the clip, goes to the annotated frame, turns
the box tool on with the frame's box selected, waits for the model's scores and grabs the
window (``--out``) and the Boxes panel (``*_panel.png`` beside it). ``--compare MODEL`` opens a
second model beside the window's (both models' scores in the panel).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", metavar="DIR", help="the real set's folder (scripts/real_footage.py)")
    ap.add_argument("--clip", default="speaker_webcam")
    ap.add_argument("--frame", type=int, default=None, help="an annotated frame (default: the clip's first)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshot_boxes.png"))
    ap.add_argument("--size", default="1600x1000")
    ap.add_argument("--display", action="store_true", help="use the current $DISPLAY, no Xvfb")
    ap.add_argument("--compare", metavar="MODEL", default=None, help="a second model beside the window's")
    args = ap.parse_args()
    xvfb = None
    if not args.display:
        from screenshot import start_xvfb

        xvfb = start_xvfb(args.size + "x24")
    try:
        return shoot(Path(args.dir), args.clip, args.frame, Path(args.out), args.size, args.compare)
    finally:
        if xvfb is not None:
            xvfb.kill()


def shoot(root: Path, clip: str, frame, out: Path, size: str, compare=None) -> int:
    import tempfile

    os.environ.setdefault("AVSTUDIO_NO_AUDIO", "1")
    tmp = Path(tempfile.mkdtemp(prefix="avstudio-shots-"))
    os.environ["AVSTUDIO_CACHE"] = str(tmp / "cache")
    os.environ["AVSTUDIO_SETTINGS"] = str(tmp / "settings.ini")
    from avstudio.gui.app import make_app
    from avstudio.gui.main_window import MainWindow

    app = make_app()
    win = MainWindow(audio=False, load_model=True)
    w, h = (int(v) for v in size.split("x"))
    win.resize(w, h)
    win.show()

    def pump(seconds, until=None):
        t = time.time()
        while time.time() - t < seconds:
            app.processEvents()
            if until is not None and until():
                return True
            time.sleep(0.01)
        return until() if until else True

    pump(120, lambda: win.player.bundle is not None)
    if compare:
        win.open_compare_model(compare)
        if not pump(120, lambda: win.compare.bundle is not None):
            print(f"screenshot_boxes: cannot open the second model {compare}: {win.compare.error}", file=sys.stderr)
            return 2
    lp = win.library_panel
    if not lp.open_library(str(root / "real.avlib")):
        print("screenshot_boxes: cannot open the library", file=sys.stderr)
        return 2
    row = lp.lib.find(str(root / "clips" / f"{clip}.mp4"))
    if row is None:
        print(f"screenshot_boxes: no clip {clip} in the library", file=sys.stderr)
        return 2
    lp.open_clip(row.id)
    win.library_dock.hide()  # more room for the video
    pump(60, lambda: win.view.frame is not None)
    tool = win.box_tool
    frames = [f.frame for f in lp.lib.box_frames(row.id)]
    f = frame if frame is not None else frames[0]
    pump(600, lambda: win.player.analysis_state in ("done", "failed", "cancelled")
         and (win.compare.track is None or win.compare.track.state in ("done", "failed", "cancelled")))
    win.viewer.seek_frame(f)
    pump(30, lambda: win.view.frame_index == f and not win.view.frame_is_proxy)
    win.action("box_tool").trigger()
    pump(600, lambda: not tool.scoring and all(len(s.scores) == len(frames) for s in tool.scorers
                                               if s.bundle is not None))
    tool.editor.selected = 0
    tool._refresh_layer()
    pump(1.5)
    tool.panel.update_all()
    pump(0.5)
    out.parent.mkdir(parents=True, exist_ok=True)
    win.grab().save(str(out))
    panel_png = out.with_name(out.stem + "_panel.png")
    tool.dock.grab().save(str(panel_png))
    print(f"wrote {out} and {panel_png}: {clip} frame {f}, scores {tool.frame_scores(f)['model']['0.5']}")
    win.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
