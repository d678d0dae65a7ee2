"""`avstudio synth OUT --clips N --sources 1,2 --seed S`: write the synthetic benchmark."""

from __future__ import annotations

import argparse
import time


def _int_list(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of whole numbers") from None
    if not vals:
        raise argparse.ArgumentTypeError("give at least one number, e.g. 1,2")
    if any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"'{text}': source counts must be >= 1")
    return vals


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        w, h = (int(parts[0]), int(parts[1])) if len(parts) == 2 else (int(parts[0]),) * 2
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"'{text}' is not WIDTHxHEIGHT (e.g. 320x240)") from None
    return w, h


def _range(text: str) -> tuple[int, int]:
    try:
        if "-" in text:
            a, b = text.split("-", 1)
            lo, hi = int(a), int(b)
        else:
            lo = hi = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not MIN-MAX (e.g. 0-2) or a number") from None
    if lo < 0 or hi < lo:
        raise argparse.ArgumentTypeError(f"'{text}' is not a valid MIN-MAX range")
    return lo, hi


def _positive(kind):
    def conv(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"'{text}' must be > 0")
        return v

    return conv


def _nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be >= 0")
    return v


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "synth",
        help="write the synthetic audiovisual benchmark (mp4 + ground truth + manifest)",
        description="Render synthetic clips: 1..4 sounding objects (each pulses at its own note "
                    "onsets) plus silent distractors over varied backgrounds. Writes "
                    "OUT/clip_NNNNN.mp4 (H.264 + AAC), OUT/clip_NNNNN.json and "
                    "OUT/clip_NNNNN.gt.npz (masks, boxes, stems; see docs/ground_truth.md) and "
                    "OUT/manifest.csv (path,count,...). The same seed gives the same clips.",
    )
    p.add_argument("out", metavar="OUT", nargs="?", help="output folder (created if needed)")
    p.add_argument("--clips", type=int, default=10, help="number of clips (default 10)")
    p.add_argument("--sources", type=_int_list, default=(1,),
                   help="sound-source counts, spread round robin over the clips (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the set (default 0); use another "
                   "seed for held-out clips")
    p.add_argument("--size", type=_size, default=(224, 224), help="frame size WxH (default 224x224)")
    p.add_argument("--duration", type=_positive(float), default=4.0, help="seconds per clip (default 4)")
    p.add_argument("--fps", type=_positive(float), default=25.0, help="frames per second (default 25)")
    p.add_argument("--sample-rate", type=_positive(int), default=16000, help="audio rate (default 16000)")
    p.add_argument("--distractors", type=_range, default=(0, 2),
                   help="silent distractor objects per clip, MIN-MAX (default 0-2)")
    p.add_argument("--same-class-distractors", action="store_true",
                   help="distractors copy the classes of the sounding objects (silent twins)")
    p.add_argument("--distractor-pulses", action="store_true",
                   help="harder: distractors pulse too, at onsets of melodies nobody plays")
    p.add_argument("--classes", default=None,
                   help="comma-separated subset of classes (see --list-classes)")
    p.add_argument("--offscreen-noise", type=_nonneg_float, default=0.0, metavar="LEVEL",
                   help="off-screen noise RMS relative to a source's (default 0: none; 0.1 = -20 dB)")
    p.add_argument("--backend", choices=("auto", "fluidsynth", "handmade"), default="auto",
                   help="instrument timbres: soundfont via fluidsynth, hand-made, or auto (default)")
    p.add_argument("--harmony", choices=("key", "duet", "independent"), default="key",
                   help="sources of a clip share a key (default), key and tempo (duet), or nothing")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--list-classes", action="store_true", help="print the classes and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    from ..data.instruments import CLASSES, resolve_backend
    from ..errors import DataError

    if args.list_classes:
        for i, c in enumerate(CLASSES):
            sound = f"GM program {c.program}" if c.kind == "gm" else "hand-made"
            print(f"{i:2d} {c.name:16s} {c.shape:9s} {c.texture:9s} {sound}")
        return 0
    if not args.out:
        raise DataError("no output folder given (avstudio synth OUT --clips N ...)")
    if args.clips < 0:
        raise DataError(f"--clips must be >= 0, got {args.clips}")
    if args.workers < 1:
        raise DataError(f"--workers must be >= 1, got {args.workers}")

    from ..data.synth import SynthConfig, generate
    from ..progress import tqdm_progress

    classes = None
    if args.classes:
        classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    cfg = SynthConfig(size=args.size, fps=args.fps, duration=args.duration, sample_rate=args.sample_rate,
                      n_sources=args.sources, n_distractors=args.distractors, classes=classes,
                      offscreen_noise=args.offscreen_noise,
                      same_class_distractors=args.same_class_distractors, backend=args.backend,
                      distractor_pulses=args.distractor_pulses,
                      harmony=args.harmony)
    backend = resolve_backend(cfg.backend)
    bar = tqdm_progress(disable=args.quiet, unit="clip")
    t0 = time.time()
    try:
        manifest = generate(args.out, args.clips, sources=args.sources, seed=args.seed, config=cfg,
                            workers=args.workers, progress=bar)
    finally:
        bar.close()
    dt = time.time() - t0
    print(f"wrote {args.clips} clips ({backend} timbres) to {args.out} in {dt:.1f} s; manifest: {manifest}")
    return 0
