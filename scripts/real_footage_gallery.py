#!/usr/bin/env python3
"""Frames of real videos with each model's heatmap over them, side by side (docs/real_footage.md).

    python scripts/real_footage_gallery.py CLIPS_DIR OUT.jpg --model models/default --model models/shapes
           [--frames 3] [--k 1] [--clips a,b,...]

CLIPS_DIR holds the real clips (``scripts/real_footage.py build DIR`` makes DIR/clips). Each
row is a clip at a few moments where it is loud; the first column is the frame, then one
column per model: its heatmap of the clip's sound (k sound clusters, each in its colour) as the
app draws it, normalised per frame. Nothing is scored here (the boxes and the scores are in
``avstudio eval --library``); this is for looking.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COLOURS = np.array([[255, 64, 64], [64, 160, 255], [80, 220, 80], [255, 200, 40]], np.float32)


def loud_moments(path: str, n: int, fps: float, n_frames: int) -> list[int]:
    """``n`` frame indices at the clip's loudest 0.5 s windows, spread over the clip."""
    from avstudio.media import read_audio

    a = read_audio(path, 16000)
    if a.size == 0:
        return list(np.linspace(0, n_frames - 1, n + 2).round().astype(int)[1:-1])
    hop = 8000
    m = max(1, len(a) // hop)
    e = np.sqrt(np.square(a[: m * hop].reshape(m, hop)).mean(axis=1) + 1e-12)
    order = np.argsort(-e)
    picks: list[int] = []
    for w in order:
        t = (w + 0.5) * hop / 16000
        fi = int(min(n_frames - 1, round(t * fps)))
        if all(abs(fi - p) > fps * 0.6 for p in picks):
            picks.append(fi)
        if len(picks) == n:
            break
    return sorted(picks)


def overlay(frame: np.ndarray, maps: np.ndarray) -> np.ndarray:
    import cv2

    H, W = frame.shape[:2]
    out = frame.astype(np.float32)
    for j, m in enumerate(maps):
        m = cv2.resize(m.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
        m = (m - m.min()) / max(float(m.max() - m.min()), 1e-6)
        a = (0.7 * m)[..., None]
        out = out * (1 - a) + COLOURS[j % len(COLOURS)] * a
        edge = (m >= 0.5).astype(np.uint8)
        cnt, _ = cv2.findContours(edge, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, cnt, -1, (255, 255, 255), 1)
    return out.clip(0, 255).astype(np.uint8)


def main() -> int:
    import cv2

    from avstudio.analysis.localize import analyze_clip
    from avstudio.media import VideoReader, probe
    from avstudio.nets.checkpoint import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips_dir")
    ap.add_argument("out")
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--clips", default=None, help="comma-separated clip names (default: all)")
    ap.add_argument("--height", type=int, default=150)
    ap.add_argument("--label", action="append", default=None, help="column title per --model (default: its name)")
    args = ap.parse_args()
    clips = sorted(Path(args.clips_dir).glob("*.mp4"))
    if args.clips:
        want = set(args.clips.split(","))
        clips = [c for c in clips if c.stem in want]
    bundles = [load_model(m) for m in args.model]
    rows = []
    tile_w = None
    for c in clips:
        info = probe(c)
        fps = float(info.fps or 25.0)
        moments = loud_moments(str(c), args.frames, fps, info.frame_count)
        maps = []
        for b in bundles:
            kk = args.k if b.kind != "avin" else 1
            an = analyze_clip(b, str(c), k=kk)
            fi = list(an.frame_indices)
            maps.append([an.heatmaps[fi.index(m)] for m in moments])
        with VideoReader(str(c)) as vr:
            for i, m in enumerate(moments):
                f = vr.frame(m)
                s = args.height / f.shape[0]
                f = cv2.resize(f, (int(round(f.shape[1] * s)), args.height), interpolation=cv2.INTER_AREA)
                tiles = [f] + [overlay(f, maps[j][i]) for j in range(len(bundles))]
                tile_w = tile_w or f.shape[1] + 4
                sep = np.full((args.height, 4, 3), 30, np.uint8)
                row = np.concatenate(sum([[t, sep] for t in tiles], [])[:-1], axis=1)
                label = np.full((18, row.shape[1], 3), 24, np.uint8)
                cv2.putText(label, f"{c.stem}  t={m / fps:.2f} s", (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                            (230, 230, 230), 1, cv2.LINE_AA)
                rows.append(np.concatenate([label, row], axis=0))
        print(f"{c.stem}: frames {moments}", flush=True)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0))) for r in rows]
    head = np.full((20, width, 3), 24, np.uint8)
    x = 4
    cv2.putText(head, "frame", (x, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (230, 230, 230), 1, cv2.LINE_AA)
    names = args.label or [Path(m).parent.name if Path(m).is_file() else Path(m).name for m in args.model]
    for j, name in enumerate(names):
        cv2.putText(head, name, (x + (j + 1) * tile_w, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (230, 230, 230), 1,
                    cv2.LINE_AA)
    img = np.concatenate([head] + rows, axis=0)
    cv2.imwrite(args.out, img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {args.out} ({img.shape[1]}x{img.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
