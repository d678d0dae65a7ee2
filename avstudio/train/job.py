"""Fine-tuning runs started from a clip library, in a separate process (Qt-free).

The app (``avstudio/gui/finetune_panel.py``) and scripts use these pieces:

* :class:`FinetuneSpec` says what to train: the library's annotated clips (optionally one
  stage only), the curriculum stages, epochs, learning rate, batch, device, base model and
  run folder. :func:`prepare_run` freezes the chosen clips into ``RUN/manifest.csv`` (so a
  resumed run trains on exactly the same clips, whatever is annotated meanwhile) and returns
  the command line: ``python -m avstudio train --manifest RUN/manifest.csv --out RUN
  --init BASE --stages ... --json-progress``.
* :class:`TrainProcess` starts that command in its own process group with its standard
  output going to ``RUN/progress.jsonl`` (one JSON progress event per line) and its
  standard error to ``RUN/train.log``. Nothing ties the process to the app: the app may quit
  and leave it running, and a later session re-attaches to it (``RUN/train.pid``). Pause is
  SIGSTOP/SIGCONT of the process group; cancel is SIGTERM (the last finished epoch's
  checkpoint stays, and running the same command again resumes from it).
* :class:`ProgressTail` reads the new complete lines of ``progress.jsonl``.
* :func:`sync_run` copies what a run folder says (``history.jsonl``, ``run.json``, the
  checkpoints) into the library's ``runs`` / ``run_checkpoints`` tables; it can be called
  at any time, again and again (it adds only what is new), e.g. for a run that finished
  while the app was closed.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, TextIO

from ..errors import DataError
from ..progress import ProgressEvent

PROGRESS_FILE = "progress.jsonl"
LOG_FILE = "train.log"
PID_FILE = "train.pid"
MANIFEST_FILE = "manifest.csv"

CAN_PAUSE = hasattr(signal, "SIGSTOP")  # POSIX: pause = SIGSTOP, continue = SIGCONT


# ---------------------------------------------------------------- JSON progress lines


def _jsonable(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    try:  # numpy / torch scalars
        return _jsonable(float(x))
    except (TypeError, ValueError):
        return str(x)


def event_to_json(ev: ProgressEvent) -> str:
    """One line of JSON for a progress event (non-finite numbers become null)."""
    return json.dumps({"task": ev.task, "done": _jsonable(ev.done), "total": _jsonable(ev.total),
                       "message": ev.message, "metrics": _jsonable(ev.metrics), "time": ev.time},
                      allow_nan=False)


def event_from_dict(d: dict[str, Any]) -> ProgressEvent:
    return ProgressEvent(str(d.get("task", "")), float(d.get("done") or 0.0),
                         None if d.get("total") is None else float(d["total"]),
                         str(d.get("message") or ""), dict(d.get("metrics") or {}),
                         float(d.get("time") or time.time()))


def parse_line(line: str) -> Optional[dict[str, Any]]:
    """A JSON object from one line of ``progress.jsonl`` (None for anything else)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        d = json.loads(line)
    except ValueError:
        return None
    return d if isinstance(d, dict) else None


class JsonLinesProgress:
    """A ``progress`` callable that prints each event as one JSON line and flushes.

    Step events of the same task closer together than ``min_interval`` seconds are dropped
    (a curve needs a few points a second, not one per step); the first event of a task, the
    last one (``done == total``) and end-of-epoch events (``epoch_done``) always go out.
    """

    def __init__(self, stream: Optional[TextIO] = None, min_interval: float = 0.2):
        self.stream = stream
        self.min_interval = float(min_interval)
        self._last_task: Optional[str] = None
        self._last_time = 0.0

    def __call__(self, ev: ProgressEvent) -> None:
        now = time.monotonic()
        last = ev.total is not None and ev.done >= ev.total
        if (ev.task == self._last_task and not last and "epoch_done" not in ev.metrics
                and now - self._last_time < self.min_interval):
            return
        self._last_task, self._last_time = ev.task, now
        out = self.stream if self.stream is not None else sys.stdout
        try:
            out.write(event_to_json(ev) + "\n")
            out.flush()
        except (BrokenPipeError, ValueError):  # nobody reads any more: keep training
            pass

    def close(self) -> None:
        pass


class ProgressTail:
    """The new complete lines of a growing JSON-lines file, parsed (``read()``)."""

    def __init__(self, path: os.PathLike | str, from_end: bool = False):
        self.path = Path(path)
        self.offset = 0
        if from_end:
            try:
                self.offset = self.path.stat().st_size
            except OSError:
                self.offset = 0
        self._partial = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return []
        if not data:
            return []
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()  # b"" when the data ended with a newline
        out = []
        for raw in lines:
            d = parse_line(raw.decode("utf-8", "replace"))
            if d is not None:
                out.append(d)
        return out


# ---------------------------------------------------------------- what to train


@dataclass
class FinetuneSpec:
    library: str
    run_dir: str
    base: Optional[str] = None  # MODEL to start from (None: models/default)
    stages: list[int] = field(default_factory=list)  # curriculum stages (source counts >= 1)
    only_stage: Optional[int] = None  # train on the clips of this count only
    include_unsure: bool = True
    epochs: Any = 4  # per stage: an int or one per stage
    counter_epochs: int = 2
    lr: float = 3e-4
    batch_clips: int = 8
    clip_repeats: int = 4
    device: str = "cpu"
    threads: Optional[int] = None
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FinetuneSpec:
        known = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in d.items() if k in known}
        kw.setdefault("library", "")
        kw.setdefault("run_dir", "")
        return cls(**kw)


def library_rows(lib, only_stage: Optional[int] = None, include_unsure: bool = True) -> list[dict]:
    """The library's training rows (annotated, with a count, file present), maybe one stage."""
    rows = [r for r in lib.annotated_manifest_rows(include_unsure=include_unsure)
            if r["count"] is not None]
    if only_stage is not None:
        rows = [r for r in rows if int(r["count"]) == int(only_stage)]
    return rows


def count_clips(rows: Sequence[dict]) -> dict[int, int]:
    """{source count: number of clips}, counts ascending."""
    out: dict[int, int] = {}
    for r in rows:
        c = int(r["count"])
        out[c] = out.get(c, 0) + 1
    return dict(sorted(out.items()))


def build_command(spec: FinetuneSpec, manifest: os.PathLike | str) -> list[str]:
    """The ``avstudio train`` command line of a run (absolute paths, JSON progress)."""
    argv = [sys.executable, "-m", "avstudio", "train", "--manifest", str(Path(manifest).resolve()),
            "--out", str(Path(spec.run_dir).resolve()), "--json-progress"]
    if spec.base:
        argv += ["--init", str(Path(spec.base).resolve())]
    else:
        from ..nets.checkpoint import default_model_path

        argv += ["--init", str(default_model_path())]
    if spec.stages:
        argv += ["--stages", ",".join(str(int(s)) for s in spec.stages)]
    ep = spec.epochs
    argv += ["--epochs", ",".join(str(int(e)) for e in ep) if isinstance(ep, (list, tuple)) else str(int(ep))]
    argv += ["--counter-epochs", str(int(spec.counter_epochs)), "--lr", repr(float(spec.lr)),
             "--batch-clips", str(int(spec.batch_clips)), "--clip-repeats", str(int(spec.clip_repeats)),
             "--device", spec.device, "--seed", str(int(spec.seed))]
    if spec.threads:
        argv += ["--threads", str(int(spec.threads))]
    return argv


def prepare_run(lib, spec: FinetuneSpec) -> tuple[list[str], dict[int, int]]:
    """Check the spec against the library, write ``RUN/manifest.csv`` and return the command
    and the clips per count. Raises :class:`DataError` with one sentence when it cannot run."""
    from ..data.manifest import write_manifest

    rows = library_rows(lib, spec.only_stage, spec.include_unsure)
    if not rows:
        raise DataError("the library has no annotated clip to train on"
                        + (f" in stage C{spec.only_stage}" if spec.only_stage is not None else ""))
    counts = count_clips(rows)
    if not spec.stages:
        raise DataError("choose at least one curriculum stage")
    for s in spec.stages:
        if int(s) < 1:
            raise DataError(f"stage C{s}: a curriculum stage needs at least one source")
        if counts.get(int(s), 0) == 0:
            raise DataError(f"no annotated clip has {s} source(s) for stage C{s}")
    run = Path(spec.run_dir)
    if run.exists() and not run.is_dir():
        raise DataError(f"run folder {run} is a file")
    if (run / "run.json").exists():
        raise DataError(f"{run} already holds a run (resume it from the runs list, or choose a new folder)")
    if spec.base is not None and not Path(spec.base).exists():
        raise DataError(f"base model {spec.base} does not exist")
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create run folder {run}: {exc.strerror or exc}") from None
    write_manifest(run / MANIFEST_FILE, [{"path": r["path"], "count": r["count"],
                                          "clip_id": r["clip_id"], "who": r["who"]} for r in rows])
    (run / "finetune.json").write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
    return build_command(spec, run / MANIFEST_FILE), counts


def plan_steps(counts: dict[int, int], spec: FinetuneSpec) -> dict[str, int]:
    """Optimiser steps per task ("train:C1", ..., "train:counter") as the trainer counts them."""
    stages = [int(s) for s in spec.stages]
    out: dict[str, int] = {}
    for i, s in enumerate(stages):
        ep = spec.epochs[min(i, len(spec.epochs) - 1)] if isinstance(spec.epochs, (list, tuple)) else spec.epochs
        steps = max(1, math.ceil(counts.get(s, 0) * spec.clip_repeats / spec.batch_clips))
        out[f"train:C{s}"] = steps * int(ep)
    if spec.counter_epochs > 0:
        n = sum(counts.values())
        out["train:counter"] = max(1, math.ceil(n * spec.clip_repeats / spec.batch_clips)) * int(spec.counter_epochs)
    return out


# ---------------------------------------------------------------- the process


def _proc_start_ticks(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _proc_state(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return _proc_state(pid) not in ("Z", "X")


def train_env() -> dict[str, str]:
    """The environment of a training process: this one, with this avstudio importable."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("QT_QPA_PLATFORM", None)
    return env


class TrainProcess:
    """A training command running in its own process group, output in the run folder."""

    def __init__(self, run_dir: os.PathLike | str, pid: int, popen: Optional[subprocess.Popen] = None,
                 argv: Optional[list[str]] = None):
        self.run_dir = Path(run_dir)
        self.pid = int(pid)
        self.popen = popen
        self.argv = argv or []
        self.paused = False
        self.returncode: Optional[int] = None

    @property
    def progress_path(self) -> Path:
        return self.run_dir / PROGRESS_FILE

    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_FILE

    @classmethod
    def start(cls, argv: list[str], run_dir: os.PathLike | str, nice: int = 5,
              env: Optional[dict[str, str]] = None) -> TrainProcess:
        run = Path(run_dir)
        run.mkdir(parents=True, exist_ok=True)
        with open(run / PROGRESS_FILE, "ab") as out, open(run / LOG_FILE, "ab") as err:
            err.write(f"\n$ {' '.join(argv)}\n".encode())
            err.flush()
            kw: dict[str, Any] = {}
            if os.name == "posix":
                kw["start_new_session"] = True  # its own group: outlives the app, signals reach it all
            else:  # pragma: no cover - Windows
                kw["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 env=env or train_env(), **kw)
        if nice and hasattr(os, "setpriority"):
            try:  # the app's own threads come first
                os.setpriority(os.PRIO_PROCESS, p.pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice))
            except OSError:
                pass
        (run / PID_FILE).write_text(json.dumps({"pid": p.pid, "start_ticks": _proc_start_ticks(p.pid),
                                                "argv": argv, "started": time.time()}) + "\n")
        return cls(run, p.pid, p, argv)

    @classmethod
    def attach(cls, run_dir: os.PathLike | str) -> Optional[TrainProcess]:
        """The training process of this run folder if it is still running (else None)."""
        run = Path(run_dir)
        try:
            info = json.loads((run / PID_FILE).read_text())
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not _pid_alive(pid):
            return None
        ticks = info.get("start_ticks")
        if ticks is not None and _proc_start_ticks(pid) not in (None, ticks):
            return None  # the pid was reused by another process
        tp = cls(run, pid, None, info.get("argv"))
        tp.paused = _proc_state(pid) == "T"
        return tp

    def poll(self) -> Optional[int]:
        """None while running; then the exit status (attached: 0 if the run finished, else 1)."""
        if self.returncode is not None:
            return self.returncode
        if self.popen is not None:
            rc = self.popen.poll()
            if rc is not None:
                self.returncode = rc
            return rc
        if _pid_alive(self.pid):
            return None
        self.returncode = 0 if run_status(self.run_dir) == "done" else 1
        return self.returncode

    def running(self) -> bool:
        return self.poll() is None

    def _signal(self, sig: int) -> None:
        try:
            if os.name == "posix":
                os.killpg(self.pid, sig)
            else:  # pragma: no cover
                os.kill(self.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(self.pid, sig)

    def pause(self) -> bool:
        """Freeze the process (SIGSTOP); False where that is not possible."""
        if not CAN_PAUSE or not self.running():
            return False
        self._signal(signal.SIGSTOP)
        self.paused = True
        return True

    def resume(self) -> None:
        if CAN_PAUSE and self.running():
            self._signal(signal.SIGCONT)
        self.paused = False

    def terminate(self) -> None:
        """Stop the run (SIGTERM; a paused process is continued so that it can end)."""
        if not self.running():
            return
        self._signal(signal.SIGTERM)
        if CAN_PAUSE:
            self._signal(signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        if self.running():
            self._signal(getattr(signal, "SIGKILL", signal.SIGTERM))

    def wait(self, timeout: float = 10.0) -> Optional[int]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            rc = self.poll()
            if rc is not None:
                return rc
            time.sleep(0.02)
        return self.poll()

    def last_error(self) -> str:
        """The last line the process wrote on its standard error (its one-line error)."""
        try:
            lines = [x for x in self.log_path.read_text(errors="replace").splitlines() if x.strip()]
        except OSError:
            return ""
        for x in reversed(lines):
            if "error" in x.lower():
                return x.strip()
        return lines[-1].strip() if lines else ""


# ---------------------------------------------------------------- run folders -> library


def read_history(run_dir: os.PathLike | str) -> list[dict[str, Any]]:
    """``history.jsonl`` of a run: one entry per finished epoch (stage, epoch, loss, acc, ...)."""
    p = Path(run_dir) / "history.jsonl"
    out = []
    try:
        text = p.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        d = parse_line(line)
        if d is not None:
            out.append(d)
    return out


def run_status(run_dir: os.PathLike | str) -> Optional[str]:
    """``run.json``'s status ("running", "done") or None."""
    try:
        return json.loads((Path(run_dir) / "run.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def final_model(run_dir: os.PathLike | str) -> Optional[Path]:
    p = Path(run_dir) / "model.safetensors"
    return p if p.exists() and run_status(run_dir) == "done" else None


def history_metrics(history: Sequence[dict]) -> dict[str, Any]:
    """What the library stores about a run's progress."""
    stages = [e for e in history if e.get("phase") == "stages"]
    m: dict[str, Any] = {"epochs_done": len(history)}
    if stages:
        m["first_loss"] = stages[0].get("loss")
        m["last_loss"] = stages[-1].get("loss")
        m["last_acc"] = stages[-1].get("acc")
        by: dict[str, list] = {}
        for e in stages:
            by.setdefault(str(e.get("stage")), []).append(e.get("loss"))
        m["loss_by_stage"] = by
    counter = [e for e in history if e.get("phase") == "counter"]
    if counter:
        m["counter_loss"] = counter[-1].get("loss")
        m["counter_acc"] = counter[-1].get("acc")
    if history:
        m["time_s"] = history[-1].get("time_s")
    return m


def sync_run(lib, run_id: int, status: Optional[str] = None, error: Optional[str] = None) -> Any:
    """Bring the library's record of run ``run_id`` up to date with its folder.

    Adds a checkpoint row for every epoch in ``history.jsonl`` not recorded yet (the epoch's
    checkpoint file) and one per finished stage (``stages/C<k>.safetensors``), merges the
    metrics, and sets the status: "finished" (with the model path) when the run folder says
    it is done, else ``status`` if given. Returns the updated :class:`RunRow`.
    """
    run = lib.run(run_id)
    run_dir = Path(run.config.get("run_dir", ""))
    history = read_history(run_dir)
    seen = {(c.stage, c.epoch) for c in run.checkpoints}
    ckpt = run_dir / "checkpoint.safetensors"
    for e in history:
        key = (str(e.get("stage")), int(e.get("epoch", 0)))
        if key in seen:
            continue
        seen.add(key)
        lib.add_checkpoint(run_id, key[0], key[1], ckpt,
                           {k: e.get(k) for k in ("phase", "loss", "acc", "steps", "time_s") if k in e})
    for f in sorted((run_dir / "stages").glob("*.safetensors")) if (run_dir / "stages").is_dir() else []:
        key = (f.stem, None)
        if key not in seen:
            last = [e for e in history if str(e.get("stage")) == f.stem]
            lib.add_checkpoint(run_id, f.stem, None, f,
                               {"kind": "stage", **({"loss": last[-1].get("loss"), "acc": last[-1].get("acc")}
                                                    if last else {})})
            seen.add(key)
    model = final_model(run_dir)
    metrics = history_metrics(history)
    if error:
        metrics["error"] = error
    if model is not None:
        lib.update_run(run_id, status="finished", metrics=metrics, model_path=model)
    else:
        lib.update_run(run_id, status=status, metrics=metrics)
    return lib.run(run_id)


def reconcile_runs(lib) -> list[int]:
    """Runs recorded as running whose process is gone: finished (their folder says so) or
    failed (interrupted: resumable). Returns the ids of runs still running."""
    alive = []
    for r in lib.runs():
        if r.status not in ("running", "created"):
            continue
        run_dir = r.config.get("run_dir")
        if not run_dir:
            continue
        if TrainProcess.attach(run_dir) is not None:
            alive.append(r.id)
            sync_run(lib, r.id)
            continue
        sync_run(lib, r.id, status="failed",
                 error="the training process ended before the run finished; resume it from its last checkpoint")
    return alive


__all__ = ["FinetuneSpec", "JsonLinesProgress", "ProgressTail", "TrainProcess", "build_command",
           "count_clips", "event_from_dict", "event_to_json", "final_model", "history_metrics",
           "library_rows", "parse_line", "plan_steps", "prepare_run", "read_history", "reconcile_runs",
           "run_status", "sync_run", "CAN_PAUSE"]
