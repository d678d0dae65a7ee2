"""One clip library, used at once by everything that uses libraries, with random kill -9s.

Real processes, each doing what it does in the product, all on one library file:

* **app**: a process doing what the app does with a library (the same core calls as the
  library and fine-tune panels): one connection held open for the whole session, a second one
  per fine-tune run, short-lived ones as panels open; annotations, clears, undo, counter
  predictions, reads; probes and hashes clip files; starts fine-tune runs (``prepare_run`` +
  ``TrainProcess.start``: the real fine-tune worker) and records their checkpoints
  (``sync_run``), re-attaching to a run that outlived a killed app (``reconcile_runs``).
* **fine-tune worker**: the ``avstudio train --manifest`` process each of those runs starts.
* **trainer**: ``avstudio train --library LIB`` reading the library's annotations.
* **cli**: ``avstudio library stats|list|annotate|import|export|refresh``, one after another.

A killer sends SIGKILL to one of them at random moments (seeded); a killed app is restarted.
Every write a process *acknowledges* (its line is logged only after the call returned, and
for the CLI only after it exited 0) is checked at the end, with ``PRAGMA integrity_check``.

    python tests/data/soak_library.py --seconds 600 --seed 1        # the long run (docs/reliability.md)

The test suite runs a short version (tests/data/test_library_soak.py). The figures it prints:
operations per kind, kills per victim, acknowledged writes checked, and what failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve()

TRAIN_ARGS = ["--stages", "1", "--epochs", "1", "--counter-epochs", "0", "--batch-clips", "2",
              "--clip-repeats", "1", "--threads", "1"]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("QT_QPA_PLATFORM", None)
    return env


def _avstudio(*args) -> list[str]:
    return [sys.executable, "-m", "avstudio", *map(str, args)]


# ============================================================================ setup


def setup(work: Path, seed: int) -> dict:
    """Clips (one and two sources, with their counts), a tiny base model, the library."""
    sys.path.insert(0, str(REPO))
    from avstudio.data.library import ClipLibrary
    from avstudio.data.manifest import read_manifest
    from avstudio.data.synth import SynthConfig, generate
    from avstudio.nets.config import default_config
    from avstudio.train.trainer import Row, TrainConfig, Trainer

    work.mkdir(parents=True, exist_ok=True)
    man = generate(work / "clips", 6, sources=(1, 1, 2), seed=seed,
                   config=SynthConfig(size=(64, 64), duration=1.0))
    rows = [Row(r.path, r.count) for r in read_manifest(man)]
    res = Trainer([r for r in rows if r.count == 1], work / "base",
                  TrainConfig(stages=[1], epochs=1, batch_clips=2, clip_repeats=1, counter_epochs=0,
                              seed=1, threads=1),
                  model_cfg=default_config("small")).run()
    # scratch clips: copies the app and the CLI annotate at random (the originals keep their
    # counts, so that the trainers always have clips of one source to train on)
    scratch = work / "scratch"
    scratch.mkdir(exist_ok=True)
    srcs = [Path(r.path) for r in rows]
    for i in range(8):
        shutil.copyfile(srcs[i % len(srcs)], scratch / f"s{i}.mp4")
    lib_path = work / "soak.avlib"
    with ClipLibrary(lib_path) as lib:
        lib.import_manifest(man, who="setup")
        lib.import_folder(scratch)
    return {"lib": str(lib_path), "base": str(res.model_path), "work": str(work),
            "originals": [str(p) for p in srcs], "scratch": str(scratch)}


# ============================================================================ the app


def _deleted_library_fds(lib_path: str) -> list[str]:
    """Files of the library this process holds open although they were deleted (the symptom)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(lib_path) and target.endswith("(deleted)"):
            out.append(target)
    return out


def app_actor(cfg: dict, seed: int, log_path: str) -> int:
    """What the app does with a library, logged as it is acknowledged (see module docstring)."""
    sys.path.insert(0, str(REPO))
    from avstudio.data.library import ClipLibrary, content_hash
    from avstudio.media.probe import probe
    from avstudio.train import job as J

    rng = random.Random(seed)
    log = open(log_path, "a", buffering=1)
    pid = os.getpid()
    me = f"app{pid}"

    def say(*parts) -> None:
        log.write(" ".join(str(p) for p in parts) + "\n")

    lib_path = cfg["lib"]
    originals = set(cfg["originals"])
    lib = ClipLibrary(lib_path, create=False)  # the library panel's connection, open all session
    say("START", pid)
    run = None  # (run_lib, run_id, TrainProcess, recorded checkpoint keys)

    def adopt(run_id: int):
        r = lib.run(run_id)
        proc = J.TrainProcess.attach(r.config["run_dir"])
        if proc is None:
            return None
        run_lib = ClipLibrary(lib_path, create=False)  # the fine-tune panel's own connection
        say("W", run_id, proc.pid)
        return [run_lib, run_id, proc, {(c.stage, c.epoch) for c in r.checkpoints}]

    def record(final: Optional[str] = None) -> None:
        run_lib, rid, proc, seen = run
        r = J.sync_run(run_lib, rid, status=final,
                       error="the training process was killed" if final == "failed" else None)
        for c in r.checkpoints:
            if (c.stage, c.epoch) not in seen:
                seen.add((c.stage, c.epoch))
                say("K", rid, c.stage, "-" if c.epoch is None else c.epoch)
        if final is not None or r.status in ("finished", "failed", "cancelled"):
            say("S", rid, r.status)

    alive = J.reconcile_runs(lib)  # as the fine-tune panel does when a library opens
    if alive:
        run = adopt(alive[-1])
    k = 0
    warned = False
    while True:
        k += 1
        clips = lib.clips()
        scratch = [c for c in clips if c.path not in originals]
        r = rng.random()
        if r < 0.35 and scratch:
            c = rng.choice(scratch)
            n = rng.randint(0, 3)
            aid = lib.annotate(c.id, n, unsure=rng.random() < 0.2, who=me)
            say("A", aid, c.id, n, me)
        elif r < 0.40 and scratch:
            c = rng.choice(scratch)
            aid = lib.clear_annotation(c.id, who=me)
            if aid is not None:
                say("C", aid, c.id)
        elif r < 0.45 and scratch:  # undo: back to an earlier row of the history
            c = rng.choice(scratch)
            hist = [h for h in lib.annotation_history(c.id) if not h.cleared]
            if hist:
                back = rng.choice(hist)
                got = lib.restore_annotation(c.id, back.id, who=me)
                say("U", got.id, c.id, got.count)
        elif r < 0.55:
            model = f"soak-{me}-{k}"
            items = [(c.id, rng.randint(0, 4), round(rng.random(), 3))
                     for c in rng.sample(clips, min(4, len(clips)))]
            lib.set_predictions(items, model)
            for cid, n, _conf in items:
                say("P", cid, n, model)
        elif r < 0.62:  # a panel opening its own connection and closing it
            other = ClipLibrary(lib_path, create=False)
            other.stats()
            other.close()
            say("O")
        elif r < 0.67:  # the app opens and hashes clips (analysis cache, imports)
            c = rng.choice(clips)
            probe(c.path)
            content_hash(c.path)
            say("M", c.id)
        elif r < 0.75 and run is None:
            name = f"app-{pid}-{k}"
            spec = J.FinetuneSpec(library=lib_path, run_dir=os.path.join(cfg["work"], "runs", name),
                                  base=cfg["base"], stages=[1], only_stage=1, epochs=1, counter_epochs=0,
                                  batch_clips=2, clip_repeats=1, threads=1, seed=k)
            argv, counts = J.prepare_run(lib, spec)
            run_lib = ClipLibrary(lib_path, create=False)
            config = {**spec.to_dict(), "run_dir": str(Path(spec.run_dir).resolve()), "argv": argv}
            rid = run_lib.add_run(name, config, ["C1"])
            say("R", rid, name)
            proc = J.TrainProcess.start(argv, spec.run_dir, nice=0, env=_env())
            run_lib.update_run(rid, status="running", metrics={"pid": proc.pid, "error": None})
            say("W", rid, proc.pid)
            run = [run_lib, rid, proc, set()]
        else:
            lib.clips("unannotated")
            lib.stats()
            lib.next_unannotated()
            say("Q")
        if run is not None:
            rc = run[2].poll()
            if rc is None:
                record()
            else:
                final = "finished" if rc == 0 and J.final_model(run[2].run_dir) else "failed"
                record(final)
                run[0].close()
                run = None
        bad = _deleted_library_fds(lib_path)
        if bad and not warned:  # the symptom of lost locks; go on, to see what it costs
            say("E", "deleted-files-held", *bad)
            warned = True
        time.sleep(rng.uniform(0.005, 0.05))


# ============================================================================ the driver


@dataclass
class Stats:
    ops: dict = field(default_factory=dict)
    kills: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    cli_acks: list = field(default_factory=list)  # ("annotate", cid, count, who) / ("import", path)
    killed_pids: set = field(default_factory=set)

    def op(self, name: str, n: int = 1) -> None:
        self.ops[name] = self.ops.get(name, 0) + n

    def kill(self, name: str) -> None:
        self.kills[name] = self.kills.get(name, 0) + 1


class Soak:
    def __init__(self, cfg: dict, seconds: float, seed: int, quotas: Optional[dict] = None,
                 max_seconds: Optional[float] = None, keep_going: bool = False):
        self.cfg, self.seconds, self.seed = cfg, float(seconds), int(seed)
        # kills of each kind the run must have done before it may end (deterministic coverage)
        self.quotas = quotas or {"app": 1, "worker": 1, "trainer": 1, "cli": 1}
        self.max_seconds = max_seconds or max(self.seconds * 4, self.seconds + 300)
        self.work = Path(cfg["work"])
        self.logs = self.work / "logs"
        self.logs.mkdir(exist_ok=True)
        self.stats = Stats()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.procs: dict[str, Optional[subprocess.Popen]] = {"app": None, "trainer": None, "cli": None}
        self.app_logs: list[Path] = []
        self.trainer_out = self.logs / "none"
        self.cli_n = 0
        self.rng = random.Random(seed)
        self.keep_going = keep_going

    # -- processes
    def _popen(self, argv, out, err) -> subprocess.Popen:
        return subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=_env(),
                                start_new_session=True, cwd=str(self.work))

    def _kill(self, what: str, p: subprocess.Popen) -> None:
        with self.lock:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            self.stats.killed_pids.add(p.pid)
            self.stats.kill(what)

    def _kill_pid(self, what: str, pid: int) -> bool:
        with self.lock:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                return False
            self.stats.killed_pids.add(pid)
            self.stats.kill(what)
            return True

    def _failed(self, what: str, detail: str) -> None:
        with self.lock:
            self.stats.failures.append(f"{what}: {detail}")

    # -- the app, restarted whenever it ends
    def app_loop(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            log = self.logs / f"app-{n}.log"
            err = self.logs / f"app-{n}.err"
            self.app_logs.append(log)
            with open(err, "wb") as fe:
                p = self._popen([sys.executable, str(HERE), "--actor", "app", "--config",
                                 str(self.work / "config.json"), "--seed", str(self.seed * 1000 + n),
                                 "--log", str(log)], subprocess.DEVNULL, fe)
            self.procs["app"] = p
            p.wait()
            self.stats.op("app sessions")
            if p.pid not in self.stats.killed_pids and not self.stop.is_set():
                self._failed("app", f"exited {p.returncode}: {err.read_text()[-2000:]}")
                if not self.keep_going:
                    return
            time.sleep(0.2)

    # -- the trainer, again and again
    def trainer_loop(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            out = self.logs / f"trainer-{n}.out"
            err = self.logs / f"trainer-{n}.err"
            self.trainer_out = out
            with open(out, "wb") as fo, open(err, "wb") as fe:
                p = self._popen(_avstudio("train", "--library", self.cfg["lib"], "--out",
                                          self.work / "trainer" / f"run{n}", "--init", self.cfg["base"],
                                          "--json-progress", *TRAIN_ARGS), fo, fe)
            self.procs["trainer"] = p
            p.wait()
            if p.pid in self.stats.killed_pids:
                continue
            if p.returncode != 0:
                if self.stop.is_set():
                    return
                self._failed("trainer", f"exited {p.returncode}: {err.read_text()[-2000:]}")
                if not self.keep_going:
                    return
                continue
            self.stats.op("trainer runs finished")

    # -- the command line, one command after another
    def cli_loop(self) -> None:
        rng = random.Random(self.seed * 7 + 1)
        while not self.stop.is_set():
            self.cli_n += 1
            n = self.cli_n
            kind = rng.choices(["stats", "list", "annotate", "import", "export", "refresh"],
                               [3, 2, 4, 1, 1, 1])[0]
            args: list = []
            ack = None
            lib = self.cfg["lib"]
            if kind == "stats":
                args = ["stats", lib]
            elif kind == "list":
                args = ["list", lib, "--json"]
            elif kind == "annotate":
                cid = rng.randint(7, 14)  # scratch clips (ids after the 6 originals)
                count = rng.randint(0, 3)
                who = f"cli{n}"
                args = ["annotate", lib, str(cid), str(count), "--who", who]
                ack = ("annotate", cid, count, who)
            elif kind == "import":
                src = rng.choice(self.cfg["originals"])
                dst = Path(self.cfg["scratch"]) / f"cli{n}.mp4"
                shutil.copyfile(src, dst)
                args = ["import", lib, str(dst)]
                ack = ("import", str(dst.resolve()))
            elif kind == "export":
                args = ["export", lib, str(self.work / f"export{n % 3}.{rng.choice(['csv', 'json'])}")]
            else:
                args = ["refresh", lib]
            err = self.logs / f"cli-{n}.err"
            with open(err, "wb") as fe:
                p = self._popen(_avstudio("library", *args), subprocess.DEVNULL, fe)
            self.procs["cli"] = p
            p.wait()
            self.stats.op(f"cli {kind}")
            if p.pid in self.stats.killed_pids:
                continue
            if p.returncode != 0:
                if self.stop.is_set():
                    return
                self._failed("cli", f"{' '.join(args)} exited {p.returncode}: {err.read_text()[-2000:]}")
                if not self.keep_going:
                    return
                continue
            if ack is not None:
                with self.lock:
                    self.stats.cli_acks.append(ack)

    # -- the killer
    def _worker_pids(self) -> list[int]:
        """Fine-tune workers alive, from their run folders (``TrainProcess.attach`` checks the
        process's start time, so a pid the system gave to another process is never killed)."""
        from avstudio.train.job import TrainProcess

        pids = []
        for d in sorted((self.work / "runs").glob("*")):
            tp = TrainProcess.attach(d)
            if tp is not None and tp.pid not in self.stats.killed_pids:
                pids.append(tp.pid)
        return pids

    def killer_loop(self) -> None:
        rng = self.rng
        while not self.stop.is_set():
            time.sleep(rng.uniform(0.5, 3.0))
            if self.stop.is_set():
                return
            # the kind furthest behind its quota first, else any
            need = [k for k, q in self.quotas.items() if self.stats.kills.get(k, 0) < q]
            what = rng.choice(need) if need and rng.random() < 0.7 else rng.choice(
                ["app", "app", "worker", "trainer", "cli"])
            if what == "worker":
                pids = self._worker_pids()
                if pids:
                    self._kill_pid("worker", rng.choice(pids))
                continue
            p = self.procs.get(what)
            if p is None or p.poll() is not None:
                continue
            # kills land mid-work, never on a process still importing: an app after a seeded
            # number of acknowledged operations of its session, a trainer once it trains
            if what == "app" and len(_lines(self.app_logs[-1])) < rng.randint(2, 40):
                continue
            if what == "trainer" and not _lines(self.trainer_out):
                continue
            self._kill(what, p)

    def run(self) -> dict:
        (self.work / "config.json").write_text(json.dumps(self.cfg))
        t0 = time.monotonic()
        threads = [threading.Thread(target=f, daemon=True)
                   for f in (self.app_loop, self.trainer_loop, self.cli_loop, self.killer_loop)]
        for t in threads:
            t.start()
        reason = "time"
        while True:
            time.sleep(0.5)
            el = time.monotonic() - t0
            if self.stats.failures and not self.keep_going:
                reason = "failure"
                break
            met = all(self.stats.kills.get(k, 0) >= q for k, q in self.quotas.items())
            if el >= self.seconds and met:
                break
            if el >= self.max_seconds:
                reason = "max_seconds"
                self._failed("soak", f"kill quotas {self.quotas} not met after {el:.0f} s: {self.stats.kills}")
                break
        self.stop.set()
        # end: everything killed (a last kill -9 of each), workers included
        for what, p in list(self.procs.items()):
            if p is not None and p.poll() is None:
                self._kill(what, p)
        for pid in self._worker_pids():
            self._kill_pid("worker", pid)
        for t in threads:
            t.join(timeout=60)
        elapsed = time.monotonic() - t0
        result = self.verify()
        result.update({"seconds": round(elapsed, 1), "seed": self.seed, "ended_by": reason,
                       "kills": dict(sorted(self.stats.kills.items())),
                       "ops": dict(sorted(self.stats.ops.items())),
                       "failures": self.stats.failures + result.pop("problems")})
        return result

    # -- the end: what was acknowledged is there
    def verify(self) -> dict:
        problems: list[str] = []
        uri = "file:" + self.cfg["lib"] + "?mode=ro"
        raw = sqlite3.connect(uri, uri=True)
        integrity = raw.execute("PRAGMA integrity_check").fetchall()
        if integrity != [("ok",)]:
            problems.append(f"integrity_check: {integrity[:5]}")
        fk = raw.execute("PRAGMA foreign_key_check").fetchall()
        if fk:
            problems.append(f"foreign_key_check: {fk[:5]}")
        ann = {r[0]: r[1:] for r in raw.execute("SELECT id, clip_id, count, who, cleared FROM annotations")}
        preds = {tuple(r) for r in raw.execute("SELECT clip_id, count, model FROM predictions")}
        runs = {r[0]: r[1:] for r in raw.execute("SELECT id, name, status, metrics FROM runs")}
        ckpts = {(r[0], r[1], "-" if r[2] is None else str(r[2]))
                 for r in raw.execute("SELECT run_id, stage, epoch FROM run_checkpoints")}
        clips = {r[0] for r in raw.execute("SELECT path FROM clips")}
        counts = {t: raw.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                  for t in ("clips", "annotations", "predictions", "runs", "run_checkpoints")}
        raw.close()
        checked: dict[str, int] = {}

        def ok(kind: str, cond: bool, line) -> None:
            checked[kind] = checked.get(kind, 0) + 1
            if not cond:
                problems.append(f"acknowledged {kind} missing or changed: {line}")

        final_status: dict[int, str] = {}
        for log in self.app_logs:
            for parts in _lines(log):
                tag = parts[0]
                if tag == "A":
                    aid, cid, n, who = int(parts[1]), int(parts[2]), int(parts[3]), parts[4]
                    ok("annotation", ann.get(aid) == (cid, n, who, 0), parts)
                elif tag == "C":
                    a = ann.get(int(parts[1]))
                    ok("clear", a is not None and a[0] == int(parts[2]) and a[3] == 1, parts)
                elif tag == "U":
                    a = ann.get(int(parts[1]))
                    want = None if parts[3] == "None" else int(parts[3])
                    ok("undo", a is not None and a[0] == int(parts[2]) and a[1] == want, parts)
                elif tag == "P":
                    ok("prediction", (int(parts[1]), int(parts[2]), parts[3]) in preds, parts)
                elif tag == "R":
                    ok("run", int(parts[1]) in runs and runs[int(parts[1])][0] == parts[2], parts)
                elif tag == "K":
                    ok("checkpoint", (int(parts[1]), parts[2], parts[3]) in ckpts, parts)
                elif tag == "S":
                    final_status[int(parts[1])] = parts[2]
                elif tag == "E":
                    problems.append(f"app saw: {' '.join(parts)}")
                self.stats.op(f"app {tag}")
        for rid, status in final_status.items():
            ok("run status", rid in runs and runs[rid][1] == status, ("S", rid, status))
        # a run that failed must be one whose worker we killed
        for rid, (name, status, metrics) in runs.items():
            if status == "failed":
                pid = (json.loads(metrics or "{}") or {}).get("pid")
                if pid is not None and pid not in self.stats.killed_pids:  # None: app killed before the start
                    problems.append(f"run {rid} ({name}) failed but its worker {pid} was not killed: {metrics}")
        for ack in self.stats.cli_acks:
            if ack[0] == "annotate":
                _k, cid, n, who = ack
                ok("cli annotation", any(v[:3] == (cid, n, who) for v in ann.values()), ack)
            else:
                ok("cli import", ack[1] in clips, ack)
        return {"integrity_check": integrity[0][0] if integrity else None, "rows": counts,
                "acknowledged_checked": dict(sorted(checked.items())), "problems": problems}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _lines(path: Path) -> list[list[str]]:
    """Complete lines only: a line cut by a kill was never acknowledged."""
    try:
        text = path.read_text()
    except OSError:
        return []
    return [ln.split(" ") for ln in text.split("\n")[:-1] if ln]


def run_soak(work: Path, seconds: float, seed: int, quotas: Optional[dict] = None,
             max_seconds: Optional[float] = None, keep_going: bool = False) -> dict:
    cfg = setup(Path(work), seed)
    return Soak(cfg, seconds, seed, quotas=quotas, max_seconds=max_seconds, keep_going=keep_going).run()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", help="folder for the clips, the library and the logs (default: a new temp folder)")
    ap.add_argument("--keep-going", action="store_true",
                    help="do not stop at the first failure (see everything a broken build loses)")
    ap.add_argument("--actor", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--log", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.actor == "app":
        return app_actor(json.loads(Path(a.config).read_text()), a.seed, a.log)
    import tempfile

    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="avsoak-"))
    res = run_soak(work, a.seconds, a.seed, keep_going=a.keep_going)
    print(json.dumps(res, indent=1))
    print(f"work folder: {work}", file=sys.stderr)
    return 0 if not res["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
