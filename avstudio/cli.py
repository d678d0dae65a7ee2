"""`avstudio` command line: thin sub-commands over the Qt-free core.

Each sub-command lives in :mod:`avstudio.commands` as a module with ``register(sub)``
(adds its parser) and ``run(args) -> int``. Errors meant for the user
(:class:`avstudio.errors.AVStudioError`) become one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

# Order is the order in `avstudio --help`.
COMMANDS = ["info", "synth", "train", "train_separator", "analyze", "eval", "calibrate", "library", "bench"]

EXIT_USER_ERROR = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avstudio",
        description="AV Studio: inspect, separate and fine-tune self-supervised audiovisual models.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"avstudio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"avstudio.commands.{name}")
        except ModuleNotFoundError as exc:  # a command not built yet
            if exc.name == f"avstudio.commands.{name}":
                continue
            raise
        p = mod.register(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .errors import AVStudioError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    try:
        return int(args._run(args) or 0)
    except AVStudioError as exc:
        print(f"avstudio {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"avstudio {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: one line for the user, the traceback to a log file
        log = os.path.join(os.path.expanduser("~"), ".avstudio-crash.log")
        try:
            with open(log, "a", encoding="utf-8") as fh:
                traceback.print_exc(file=fh)
            where = f" (details in {log})"
        except OSError:
            where = ""
        print(f"avstudio {args.command}: internal error: {type(exc).__name__}: {exc}{where}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
