#!/usr/bin/env python3
"""A gallery of photo-world clips: frames with the outline of every object's mask (red: it
sounds, blue: a silent distractor) and its class name, three moments per clip.

    python scripts/photo_gallery.py [--out docs/photo_world.jpg] [--seed 1] [--clips 8] [--pictures train]

Deterministic (the clips are ``render_photo_clip(seed, i, ...)``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avstudio.data.photo import PhotoConfig, render_photo_clip  # noqa: E402


def outline(mask: np.ndarray) -> np.ndarray:
    m = mask
    edge = np.zeros_like(m)
    edge[1:] |= m[1:] ^ m[:-1]
    edge[:, 1:] |= m[:, 1:] ^ m[:, :-1]
    return edge


def main() -> int:
    import cv2

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "photo_world.jpg"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--pictures", default="train")
    args = ap.parse_args()
    cfg = PhotoConfig(size=(224, 224), pictures=args.pictures)
    rows = []
    for i in range(args.clips):
        c = render_photo_clip(args.seed, i, 1 + i % 4, cfg)
        T = len(c.frames)
        tiles = []
        for t in (int(T * 0.15), int(T * 0.5), int(T * 0.85)):
            f = c.frames[t].copy()
            for o, ob in enumerate(c.objects):
                e = outline(c.masks[t, o])
                f[e] = (255, 40, 40) if ob["sounding"] else (60, 160, 255)
            tiles.append(f)
        strip = np.concatenate(tiles, axis=1)
        bar = np.full((22, strip.shape[1], 3), 24, np.uint8)
        snd = " + ".join(o["class_name"] for o in c.objects if o["sounding"])
        sil = ", ".join(o["class_name"] for o in c.objects if not o["sounding"])
        amb = c.meta["offscreen_noise"]["kind"]
        text = f"sounding: {snd}" + (f" | silent: {sil}" if sil else "") + \
            (f" | off-screen: {amb.split(':')[0]}" if amb else "")
        cv2.putText(bar, text[:110], (6, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (235, 235, 235), 1, cv2.LINE_AA)
        rows.append(np.concatenate([bar, strip], axis=0))
    img = np.concatenate(rows, axis=0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 88] if out.suffix.lower() in (".jpg", ".jpeg") else \
        [cv2.IMWRITE_PNG_COMPRESSION, 9]
    cv2.imwrite(str(out), img[..., ::-1], params)
    print(f"wrote {out} ({img.shape[1]}x{img.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
