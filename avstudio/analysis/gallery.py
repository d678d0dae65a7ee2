"""A picture of what the model localizes: frames with their per-sound heatmaps (Qt-free).

Used for the docs (``docs/results.md``) and for looking at a model during development:
``python -m avstudio.analysis.gallery MODEL DATA_DIR OUT.png [--levels 1,2] [--clips 6]``.
Each row is a clip: the frame, then for each sound the heatmap over the frame (the sound's
own colour) with the ground-truth outline of its object, then the unaligned control.
"""

from __future__ import annotations

import argparse
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

COLOURS = np.array([[255, 64, 64], [64, 160, 255], [80, 220, 80], [255, 200, 40], [200, 80, 255],
                    [255, 128, 0]], dtype=np.float32)


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG with the standard library only."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) \
        + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def overlay(frame: np.ndarray, heat: np.ndarray, colour: np.ndarray, outline: np.ndarray | None = None) -> np.ndarray:
    """Blend a 0..1 heatmap (any size) over an RGB frame; draw a mask outline in white."""
    from .metrics import resize_map

    H, W, _ = frame.shape
    from .metrics import normalise

    h = normalise(resize_map(heat, (H, W)))[..., None]  # min-max, as the metrics see it
    out = frame.astype(np.float32) * (1 - 0.65 * h) + colour * 0.65 * h
    if outline is not None:
        m = outline.astype(bool)
        edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
        out[edge] = 255
    return out.clip(0, 255).astype(np.uint8)


@torch.no_grad()
def gallery(bundle, data: str | Path, levels=(1, 2), clips: int = 4, size: int = 160,
            aligned: bool = False) -> np.ndarray:
    """Rows of (frame, each sound's heatmap [and, with ``aligned``, its aligned visual cluster's
    mask], the unaligned control), at a moment where every source is heard."""
    from ..data.clips import audio_window
    from ..data.manifest import find_manifest, read_manifest
    from ..data.synth import load_ground_truth
    from ..media import VideoReader, read_audio
    from ..nets.kmeans import best_matching
    from .evaluate import pick_eval_frames
    from .localize import _to_tensor_frames

    av = bundle.av
    cfg = av.cfg
    rows_img = []
    man = read_manifest(find_manifest(data))
    for lvl in levels:
        for r in [r for r in man if r.count == lvl][:clips]:
            gt = load_ground_truth(r.path)
            t = int(pick_eval_frames(gt, 1, cfg.audio_seconds)[0])  # a moment where every source is heard
            with VideoReader(r.path) as vr:
                frame = vr.frame(t, size=(size, size))
                where = cfg.stack_indices(t, gt.fps, gt.n_frames)
                got = {j: vr.frame(j, size=(cfg.frame_size, cfg.frame_size)) for j in sorted(set(where))}
                small = got[t] if cfg.stack <= 1 else np.stack([got[j] for j in where])
            audio = read_audio(r.path, cfg.sample_rate)
            c = t / gt.fps
            wave = torch.from_numpy(audio_window(audio, c, cfg))[None]
            loc = av.localize(_to_tensor_frames([small]), wave, lvl)
            stems = torch.from_numpy(np.stack([audio_window(s, c, cfg) for s in gt.stems]))
            emb = av.audio_embedding(stems)[None]
            _, perm = best_matching(torch.einsum("bsd,bkd->bsk", emb, loc.audio_centers))
            from .metrics import resize_map

            tiles = [frame]
            for s in range(lvl):
                j = int(perm[0, s])
                mask = resize_map(gt.stem_mask(t, s).astype(np.float32), (size, size)) > 0.5
                tiles.append(overlay(frame, loc.heatmaps[0, j].numpy(), COLOURS[s % len(COLOURS)], mask))
                if aligned:
                    tiles.append(overlay(frame, loc.aligned[0, j].numpy(), COLOURS[s % len(COLOURS)] * 0.6, mask))
            tiles.append(overlay(frame, loc.unaligned[0].numpy(), np.array([200, 200, 200], np.float32)))
            while len(tiles) < max(levels) * (2 if aligned else 1) + 2:
                tiles.append(np.zeros_like(frame))
            sep = np.full((size, 4, 3), 32, np.uint8)
            row = np.concatenate(sum([[tl, sep] for tl in tiles], [])[:-1], 1)
            rows_img.append(row)
            rows_img.append(np.full((4, row.shape[1], 3), 32, np.uint8))
    return np.concatenate(rows_img[:-1], 0)


def main(argv=None) -> int:
    from ..nets.checkpoint import load_model

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("--levels", default="1,2")
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--aligned", action="store_true", help="also the aligned visual cluster's mask per sound")
    a = p.parse_args(argv)
    img = gallery(load_model(a.model), a.data, tuple(int(x) for x in a.levels.split(",")), a.clips,
                  aligned=a.aligned)
    write_png(a.out, img)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
