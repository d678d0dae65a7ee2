"""`avstudio synth OUT --clips N --sources 1,2 --seed S`: write the synthetic benchmark."""

from __future__ import annotations

import argparse
import sys
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
        description="Render synthetic clips. --world shapes (default): 1..4 sounding textured "
                    "shapes (each pulses at its own note onsets) plus silent distractors over varied "
                    "backgrounds. --world photo: real pictures of sounding things (Debian's "
                    "qabcs-data) each playing its own recording, over real photographs, with "
                    "occlusion, motion, blur, off-screen ambience. Writes "
                    "OUT/clip_NNNNN.mp4 (H.264 + AAC), OUT/clip_NNNNN.json and "
                    "OUT/clip_NNNNN.gt.npz (masks, boxes, stems; see docs/ground_truth.md) and "
                    "OUT/manifest.csv (path,count,...). The same seed gives the same clips.",
    )
    p.add_argument("out", metavar="OUT", nargs="?", help="output folder (created if needed)")
    p.add_argument("--world", choices=("shapes", "photo"), default="shapes",
                   help="shapes (default: textured shapes, synthesised notes) or photo (real pictures "
                        "with their own recordings over real photographs)")
    p.add_argument("--pictures", choices=("train", "val", "test", "all"), default="train",
                   help="photo world: which pictures and recordings the objects come from: the "
                        "training pictures (default), the validation or test ones (held out: never "
                        "seen in training), or all")
    p.add_argument("--ambient", type=_nonneg_float, default=None, metavar="P",
                   help="photo world: share of clips with off-screen ambience (default 0.6)")
    p.add_argument("--clips", type=int, default=10, help="number of clips (default 10)")
    p.add_argument("--sources", type=_int_list, default=(1,),
                   help="sound-source counts, spread round robin over the clips (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the set (default 0); use another "
                   "seed for held-out clips")
    p.add_argument("--size", type=_size, default=(224, 224), help="frame size WxH (default 224x224)")
    p.add_argument("--duration", type=_positive(float), default=4.0, help="seconds per clip (default 4)")
    p.add_argument("--fps", type=_positive(float), default=25.0, help="frames per second (default 25)")
    p.add_argument("--sample-rate", type=_positive(int), default=16000, help="audio rate (default 16000)")
    p.add_argument("--distractors", type=_range, default=None,
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
    from ..errors import DataError

    if args.list_classes:
        if args.world == "photo":
            from ..data.photo_bank import load_bank

            bank = load_bank()
            for i, c in enumerate(bank.classes):
                items = [it for it in bank.items if it.cls == c]
                pics = ", ".join(f"{it.name} ({it.split})" for it in items)
                print(f"{i:3d} {c:22s} {items[0].category if items else '-':10s} {pics}")
            for line in bank.problems:
                print(f"note: {line}")
            return 0
        from ..data.instruments import CLASSES

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

    distractors = args.distractors if args.distractors is not None else (0, 2)
    if args.world == "photo":
        from ..data.photo import PhotoConfig
        from ..data.photo_bank import load_bank

        shapes_only = [f for f, v in (("--classes", args.classes), ("--same-class-distractors", args.same_class_distractors),
                                      ("--distractor-pulses", args.distractor_pulses),
                                      ("--offscreen-noise", args.offscreen_noise)) if v]
        if shapes_only:
            raise DataError(f"{shapes_only[0]} belongs to the shapes world (the photo world has --pictures, --ambient)")
        kw = {}
        if args.ambient is not None:
            if args.ambient > 1:
                raise DataError(f"--ambient is a share of clips (0..1), got {args.ambient}")
            kw["ambient_prob"] = args.ambient
        cfg = PhotoConfig(size=args.size, fps=args.fps, duration=args.duration, sample_rate=args.sample_rate,
                          n_sources=args.sources, n_distractors=distractors, pictures=args.pictures, **kw)
        bank = load_bank()
        for line in bank.problems:
            print(f"note: {line}", file=sys.stderr)
        what = f"photo world, {args.pictures} pictures"
    else:
        from ..data.instruments import resolve_backend

        if args.ambient is not None or args.pictures != "train":
            raise DataError("--pictures and --ambient belong to the photo world (add --world photo)")
        classes = None
        if args.classes:
            classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
        cfg = SynthConfig(size=args.size, fps=args.fps, duration=args.duration, sample_rate=args.sample_rate,
                          n_sources=args.sources, n_distractors=distractors, classes=classes,
                          offscreen_noise=args.offscreen_noise,
                          same_class_distractors=args.same_class_distractors, backend=args.backend,
                          distractor_pulses=args.distractor_pulses,
                          harmony=args.harmony)
        what = f"{resolve_backend(cfg.backend)} timbres"
    bar = tqdm_progress(disable=args.quiet, unit="clip")
    t0 = time.time()
    try:
        manifest = generate(args.out, args.clips, sources=args.sources, seed=args.seed, config=cfg,
                            workers=args.workers, progress=bar)
    finally:
        bar.close()
    dt = time.time() - t0
    print(f"wrote {args.clips} clips ({what}) to {args.out} in {dt:.1f} s; manifest: {manifest}")
    return 0
