"""`avstudio bench`: one benchmark for every speed AV Studio promises (table + JSON)."""

from __future__ import annotations

import argparse
import os


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "bench", help="measure decoding, analysis, separation, GUI, training and memory on this machine",
        description="Makes its own clips (in a temporary folder) and measures, side by side: decode-only "
                    "(the floor), analysis (heatmaps for every frame, k=2), separation and click-to-hear, "
                    "the GUI (offscreen, in a subprocess), training throughput, peak memory of analysing a "
                    "long 720p clip, the model's FLOPs per frame and the CPU's matmul rate. Prints a table "
                    "and writes JSON. See docs/performance.md.")
    p.add_argument("--quick", action="store_true", help="fewer repeats; a 2-minute long clip instead of 10")
    p.add_argument("--tiny", action="store_true",
                   help="tiny clips and the small architecture (for tests; the figures mean nothing). "
                        "Also set by AVSTUDIO_BENCH_TINY=1")
    p.add_argument("--json", metavar="OUT.json", default=None, help="write the results here as JSON")
    p.add_argument("--model", default=None,
                   help="MODEL file or folder (default: models/default, else runs/main/model.safetensors, "
                        "else a randomly initialised model of the default architecture)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (analysis and separation; training is "
                                                     "measured on the CPU and on CUDA where present)")
    p.add_argument("--only", default=None, metavar="SECTIONS",
                   help="comma-separated subset of: analysis,separation,gui,training,memory,synth "
                        "(decode and compute always run)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def run(args) -> int:
    import json
    import sys

    import torch

    from ..bench import format_table, run_bench
    from ..errors import AVStudioError

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise AVStudioError("--device cuda was asked for but no CUDA device is available")
    tiny = args.tiny or os.environ.get("AVSTUDIO_BENCH_TINY", "") not in ("", "0")
    scale = "tiny" if tiny else ("quick" if args.quick else "full")
    sections = None
    if args.only:
        sections = {x.strip() for x in args.only.split(",") if x.strip()}
        bad = sections - {"analysis", "separation", "gui", "training", "memory", "synth"}
        if bad:
            raise AVStudioError(f"--only: unknown section {sorted(bad)[0]!r}")
    if args.json:
        parent = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(parent):
            raise AVStudioError(f"--json: the folder {parent!r} does not exist")

    def say(text: str) -> None:
        if not args.quiet:
            print(f"[bench] {text}", file=sys.stderr, flush=True)

    from ..progress import tqdm_progress

    progress = tqdm_progress(disable=args.quiet)
    try:
        res = run_bench(scale=scale, model=args.model, device=args.device, say=say, sections=sections,
                        progress=progress)
    finally:
        progress.close()
    print(format_table(res))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(res, fh, indent=2, default=str)
            fh.write("\n")
    return 0
