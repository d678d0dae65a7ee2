"""`avstudio info VIDEO`: print a media file's metadata as JSON."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "info",
        help="print a media file's metadata as JSON",
        description="Print metadata of a video or audio file as JSON: duration, fps, "
                    "frame_count, width, height, rotation, codecs, audio_rate, audio_channels, "
                    "has_audio. A bad, truncated or unreadable file exits with status 2.",
    )
    p.add_argument("video", metavar="VIDEO", help="a video (or audio) file FFmpeg can read")
    p.add_argument("--no-check", action="store_true",
                   help="report a truncated or corrupt file instead of failing (see 'problem')")
    return p


def run(args) -> int:
    from ..media import probe

    info = probe(args.video, check=not getattr(args, "no_check", False))
    json.dump(info.to_dict(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
