"""`avstudio bench`: every speed the issues promise, measured side by side in one run (Qt-free).

What is measured (targets from the issues; see docs/performance.md):

* ``decode``      PyAV decoding of every frame of a 10 s 1280x720 25 fps clip, raw (no colour
                  conversion), at the model's input size (112 x 112 RGB) and at full size: the
                  floor that analysis cannot beat.
* ``analysis``    :func:`avstudio.analysis.localize.analyze_clip` (heatmaps for every frame, k = 2)
                  on the same clip, its ratio to decode-only (target: 10 s in <= 2 s on 2 cores).
* ``separation``  :func:`avstudio.analysis.separate.bench_separation`: stems of 2 clusters of 10 s
                  (target <= 1 s) and the click-to-hear latency of a pixel (``PixelSounder``).
* ``gui``         :func:`avstudio.gui.bench.run_gui_bench` in a subprocess (``QT_QPA_PLATFORM=
                  offscreen``), so Qt is never imported here: overlay render rate, scrub p50/p95,
                  start-up to first frame.
* ``training``    clips/s and steps/s of the default architecture, 16 clips x 2 moments a step,
                  on the CPU (and CUDA where present).
* ``memory``      peak RSS of analysing a 1-minute and a 10-minute 720p clip as ``avstudio
                  analyze`` does (frames decoded and dropped as they go, the per-frame maps
                  streamed to ``heatmaps.npz``), each in its own process (``/proc`` polling +
                  ``VmHWM``): flat, apart from the small per-frame vectors kept in memory.
* ``synth``       CPU seconds per clip of each synthetic world (``avstudio synth``: render +
                  H.264/AAC + sidecars, one process, one thread), 224x224, 4 s, 1-4 sources.
* ``compute``     FLOPs per frame of the visual + audio encoders (``FlopCounterMode``) and the
                  CPU's measured matmul rate, so the table shows how far analysis is from the
                  compute limit.

Clips are made here, in a temporary folder. ``scale`` is ``full``, ``quick`` (2-minute long clip
instead of 10, fewer repeats) or ``tiny`` (tiny clips and the small architecture: for tests; the
figures mean nothing).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional

import numpy as np

#: every section of the result and the keys each one always has (values may be None when a
#: part is not available on this machine or in this build)
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "machine": ("cpu", "cores", "load_start", "load_end", "torch", "av", "python", "cuda"),
    "model": ("source", "note", "arch", "params"),
    "decode": ("frames", "seconds_of_video", "raw_s", "small_s", "full_s", "small_fps", "full_fps"),
    "analysis": ("available", "frames", "seconds", "fps", "realtime_factor", "vs_decode_small",
                 "decode_s", "model_s", "target_s", "meets_target"),
    "separation": ("available", "stems_s", "stems_realtime_factor", "pixel_click_s",
                   "pixel_first_click_s", "target_s", "meets_target", "note"),
    "gui": ("available", "render_fps", "scrub_ms_p50", "scrub_ms_p95", "startup_s", "loop_ms_p99", "note"),
    "training": ("cpu", "cpu_1t", "cuda"),
    "memory": ("available", "runs", "growth_mb", "output_growth_mb", "flat"),
    "compute": ("flops_per_frame", "matmul_gflops", "analysis_gflops", "compute_utilisation"),
    "synth": ("shapes", "photo"),
}

TARGETS = {
    "analysis_s": 2.0,  # 10 s clip, 2 cores
    "stems_s": 1.0,  # 2 clusters of 10 s
    "render_fps": 50.0,
    "scrub_ms_p50": 50.0,
    "scrub_ms_p95": 150.0,
    "startup_s": 3.0,
    "loop_ms_p99": 100.0,  # the GUI's event loop while analysing beside a training run
}

SCALES: dict[str, dict[str, Any]] = {
    "full": dict(seconds=10.0, size=(1280, 720), fps=25.0, mem_minutes=(1.0, 4.0, 10.0), mem_repeats=2, train_steps=5,
                 train_clips=16, moments=2, arch="default", repeats=3, sep_seconds=10.0,
                 gui=dict(), gui_timeout=900, matmul_n=2048, synth_clips=8),
    "quick": dict(seconds=10.0, size=(1280, 720), fps=25.0, mem_minutes=(1.0, 2.0, 3.0), mem_repeats=1, train_steps=3,
                  train_clips=16, moments=2, arch="default", repeats=2, sep_seconds=10.0,
                  gui=dict(scrubs=30, render_frames=60, play_seconds=2.0), gui_timeout=600, matmul_n=2048,
                  synth_clips=4),
    "tiny": dict(seconds=1.0, size=(160, 96), fps=25.0, mem_minutes=(0.05, 0.1), train_steps=1,
                 train_clips=2, moments=2, arch="small", repeats=1, sep_seconds=1.0,
                 gui=dict(scrubs=3, render_frames=5, play_seconds=0.5, startup=False, training_arch="small"), gui_timeout=300,
                 matmul_n=256),
}


def _log(say: Optional[Callable[[str], None]], text: str) -> None:
    if say is not None:
        say(text)


def _r(x: Optional[float], nd: int = 4) -> Optional[float]:
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return round(x, nd) if np.isfinite(x) else None


class _Clock:
    """Wall and CPU time (this process, every thread) of a block: ``with _Clock() as c: ...``.

    On a shared machine the wall time depends on what else runs; the CPU time much less, so
    both are reported (CPU seconds / cores is what the same work would take on idle cores)."""

    def __enter__(self) -> _Clock:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


class _threads:
    """Temporarily set torch's intra-op thread count (None: leave it)."""

    def __init__(self, n: Optional[int]):
        self.n = n

    def __enter__(self):
        import torch

        self.old = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(int(self.n))
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.old)


# ----------------------------------------------------------------------------- the machine

def loadavg() -> Optional[list[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    import av
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = None
    cuda = None
    if torch.cuda.is_available():
        cuda = torch.cuda.get_device_name(0)
    return {"cpu": cpu_model(), "cores": usable, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "memory_gb": _r(mem, 1),
            "load_start": loadavg(), "load_end": None, "torch": torch.__version__, "av": av.__version__,
            "ffmpeg": ".".join(str(x) for x in av.library_versions.get("libavcodec", ())) or None,
            "numpy": np.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "cuda": cuda}


# ----------------------------------------------------------------------------- clips

def make_clip(path, seconds: float = 10.0, size=(1280, 720), fps: float = 25.0, gop: int = 50,
              sr: int = 16000, crf: int = 23, preset: str = "veryfast") -> Path:
    """A clip with a drifting gradient, two moving squares and two tones (H.264 + AAC)."""
    from .media import Mp4Writer

    W, H = int(size[0]), int(size[1])
    n = max(1, int(round(seconds * fps)))
    yy, xx = np.mgrid[0:H, 0:W]
    base_r = (xx // 4).astype(np.int64)
    base_g = (yy // 3).astype(np.int64)
    side = max(2, min(W, H) // 9)
    per = sr / fps
    with Mp4Writer(path, fps=fps, sample_rate=sr, audio=True, gop=gop, crf=crf, preset=preset) as w:
        for i in range(n):
            img = np.empty((H, W, 3), np.uint8)
            img[..., 0] = (base_r + 3 * i) % 256
            img[..., 1] = (base_g + i) % 256
            img[..., 2] = 90
            for j, (cx, cy) in enumerate(((0.3, 0.5), (0.7, 0.45))):
                x = int(W * (cx + 0.08 * np.sin(i / 12 + j)))
                y = int(H * cy)
                img[max(0, y - side):y + side, max(0, x - side):x + side] = \
                    (240, 200, 60) if j == 0 else (60, 160, 240)
            w.add_frame(img)
            a0, a1 = int(round(i * per)), int(round((i + 1) * per))
            t = np.arange(a0, a1) / sr
            w.add_audio((0.2 * np.sin(2 * np.pi * 330 * t) + 0.2 * np.sin(2 * np.pi * 880 * t)).astype(np.float32))
    return Path(path)


def repeat_clip(src, dst, times: int) -> Path:
    """``src`` played ``times`` times in a row, by copying its packets (no re-encoding: cheap).

    Every stream is shifted by the *video's* span per repetition (so audio stays in sync);
    a packet that would not come after the previous one of its stream (encoder priming and
    padding at the joins) is dropped: a few ms of audio per join. The container follows
    ``dst``'s suffix (mp4, mkv, mov).
    """
    import av

    times = max(1, int(times))
    with av.open(str(src)) as inp:
        streams = [s for s in inp.streams if s.type in ("video", "audio")]
        vs = next((s for s in streams if s.type == "video"), streams[0])
        order = []  # (time, stream, pts, dts, duration, key, data), sorted by time once
        for p in inp.demux(*streams):
            if p.size == 0 or p.pts is None:
                continue
            order.append((float(p.pts * p.stream.time_base), p.stream, p.pts, p.dts, p.duration,
                          p.is_keyframe, bytes(p)))
        order.sort(key=lambda m: m[0])
        vp = [m for m in order if m[1] is vs]
        span_s = max(float((m[2] + (m[4] or 0)) * vs.time_base) for m in vp) - min(m[0] for m in vp)
        with av.open(str(dst), "w") as out:
            omap = {s.index: out.add_stream_from_template(s) for s in streams}
            offs = {s.index: Fraction(span_s).limit_denominator(10**6) / s.time_base for s in streams}
            last = {s.index: None for s in streams}
            for r in range(times):
                for _, s, pts, dts, dur, key, data in order:
                    off = int(round(r * offs[s.index]))
                    d = (dts if dts is not None else pts) + off
                    if last[s.index] is not None and d <= last[s.index]:
                        continue
                    last[s.index] = d
                    pk = av.Packet(data)
                    pk.stream = omap[s.index]
                    pk.time_base = s.time_base
                    pk.pts, pk.dts = pts + off, d
                    if dur:
                        pk.duration = dur
                    pk.is_keyframe = key
                    out.mux(pk)
    return Path(dst)


# ----------------------------------------------------------------------------- the model

def _random_bundle(arch: str = "default"):
    """A randomly initialised model of ``arch`` (AV model + counter; no separator)."""
    import torch

    from .nets.checkpoint import ModelBundle
    from .nets.config import CounterConfig, default_config
    from .nets.counter import Counter
    from .nets.model import AVModel

    torch.manual_seed(0)
    cfg = default_config(arch)
    b = ModelBundle(av=AVModel(cfg).eval(), counter=Counter(CounterConfig(), cfg).eval(), name=f"random-{arch}")
    return b


def save_bundle(bundle, path) -> Path:
    """Write a bundle's components (av, counter, sep) to one .safetensors file with its card."""
    from .nets.checkpoint import component_tensors, save_tensors

    comps, tensors = {}, {}
    for name, mod in (("av", bundle.av), ("counter", bundle.counter), ("sep", bundle.separator)):
        if mod is None:
            continue
        comps[name] = {"class": type(mod).__name__, "config": mod.cfg.to_dict()}
        tensors.update(component_tensors(name, mod))
    card = {"kind": "avstudio-bench", "components": comps,
            "note": "randomly initialised by `avstudio bench` (timings only)"}
    return save_tensors(path, tensors, card)


def resolve_model(model: Optional[str], tmp: Path, arch: str = "default"):
    """(bundle, path of its files, note): the given MODEL; else the shipped default, else
    runs/main/model.safetensors, else a randomly initialised model of ``arch`` saved in ``tmp``."""
    from .errors import CheckpointError
    from .nets.checkpoint import load_model

    root = Path(__file__).resolve().parents[1]
    if model is not None:
        return load_model(model), str(model), "as given"
    if arch == "default":
        try:
            from .nets.checkpoint import default_model_path

            b = load_model(None)
            return b, str(default_model_path()), "the shipped default model (models/default)"
        except CheckpointError:
            pass
        run = root / "runs" / "main" / "model.safetensors"
        if run.exists():
            try:
                return load_model(run), str(run), "runs/main/model.safetensors (no shipped model yet)"
            except CheckpointError as exc:
                note = f"runs/main/model.safetensors unusable ({exc}); "
            else:
                note = ""
        else:
            note = ""
    else:
        note = ""
    b = _random_bundle(arch)
    p = save_bundle(b, tmp / f"random-{arch}.safetensors")
    from .nets.checkpoint import load_model as _lm

    return _lm(p), str(p), note + f"no trained model found: a randomly initialised {arch} model " \
                                  "(timings are the same as a trained one's)"


def _ensure_separator(bundle):
    """A bundle with a separator: its own, else a randomly initialised default one. (bundle, note)"""
    import torch

    from .nets.separator import Separator, SeparatorConfig

    if bundle.separator is not None:
        return bundle, "the model's separator"
    torch.manual_seed(1)
    cfg = SeparatorConfig(cond_dim=bundle.av.cfg.embed_dim if bundle.av is not None else 64)
    bundle.separator = Separator(cfg).eval()
    return bundle, "the model has no separator: a randomly initialised default separator (same cost)"


# ----------------------------------------------------------------------------- measurements

def bench_decode(path, model_size: int = 112, threads: int = 0, repeats: int = 1) -> dict[str, Any]:
    """Every frame of ``path``: raw PyAV decode, RGB at model_size^2, RGB at full size (best of
    ``repeats``; wall and CPU seconds)."""
    best: dict[str, Any] = {}
    for _ in range(max(1, repeats)):
        r = _decode_once(path, model_size, threads)
        for key in ("raw", "small", "full"):
            if key + "_s" not in best or r[key + "_s"] < best[key + "_s"]:
                best.update({k: v for k, v in r.items() if k.startswith(key + "_")})
        best.update({k: v for k, v in r.items() if k in ("frames", "seconds_of_video", "size")})
    return best


def _decode_once(path, model_size: int, threads: int) -> dict[str, Any]:
    import av

    from .media import VideoReader, probe

    info = probe(path)
    res: dict[str, Any] = {"frames": info.frame_count, "seconds_of_video": _r(info.duration, 3),
                           "size": [info.width, info.height]}
    n = 0
    with _Clock() as c:
        with av.open(str(path)) as ct:
            vs = ct.streams.video[0]
            vs.thread_type = "AUTO"
            for _ in ct.decode(vs):
                n += 1
    res["raw_s"], res["raw_cpu_s"], res["raw_fps"] = c.wall, c.cpu, n / c.wall
    for key, size in (("small", (model_size, model_size)), ("full", None)):
        n = 0
        with _Clock() as c:
            with VideoReader(path, threads=threads) as vr:
                for _ in vr.frames(size=size):
                    n += 1
        res[f"{key}_s"], res[f"{key}_cpu_s"] = c.wall, c.cpu
        res[f"{key}_fps"] = n / c.wall if c.wall > 0 else None
    return res


def bench_analysis(bundle, path, k: int = 2, repeats: int = 1) -> dict[str, Any]:
    """analyze_clip on ``path`` with torch's threads as they are, and with 1 thread (on a busy
    machine a second thread that is often descheduled makes every parallel op wait). Best of
    ``repeats`` each, wall and CPU seconds."""
    import torch

    from .analysis.localize import analyze_clip

    analyze_clip(bundle, str(path), k=k, stop_frame=8)  # warm-up (allocations, first-call costs)
    out: dict[str, Any] = {"available": True, "k": k}
    for label, n in (("", None), ("1t_", 1)):
        runs, cpus, last = [], [], None
        with _threads(n):
            threads = torch.get_num_threads()
            for _ in range(max(1, repeats)):
                with _Clock() as c:
                    last = analyze_clip(bundle, str(path), k=k)
                runs.append(c.wall)
                cpus.append(c.cpu)
        i = int(np.argmin(runs))  # best of the runs: other work on a shared machine only adds
        frames = int(len(last.times))
        secs = frames / last.fps
        out.update({f"{label}threads": threads, f"{label}seconds": runs[i], f"{label}cpu_s": cpus[i],
                    f"{label}runs": [_r(x, 3) for x in runs], f"{label}fps": frames / runs[i],
                    f"{label}realtime_factor": secs / runs[i],
                    f"{label}decode_s": last.timings.get("decode_s"), f"{label}model_s": last.timings.get("model_s")})
        out["frames"], out["seconds_of_video"] = frames, secs
    out["target_s"] = TARGETS["analysis_s"] * out["seconds_of_video"] / 10.0
    out["best_s"] = min(out["seconds"], out["1t_seconds"])
    out["meets_target"] = bool(out["best_s"] <= out["target_s"])
    return out


def bench_separation_section(bundle, seconds: float, repeats: int) -> dict[str, Any]:
    base = {"available": False, "stems_s": None, "stems_realtime_factor": None, "pixel_click_s": None,
            "pixel_first_click_s": None, "target_s": TARGETS["stems_s"] * seconds / 10.0,
            "meets_target": None, "note": ""}
    from .analysis.separate import bench_separation

    b, note = _ensure_separator(bundle)
    res = bench_separation(b, seconds=seconds, k=2, repeats=repeats)
    out = dict(base)
    out.update(res)
    with _threads(1):
        one = bench_separation(b, seconds=seconds, k=2, repeats=repeats)
    out.update({f"1t_{k}": v for k, v in one.items() if k in ("stems_s", "stems_min_s", "stems_realtime_factor",
                                                              "pixel_click_s", "pixel_first_click_s", "threads")})
    out["note"] = note
    if res.get("stems_s") is not None:
        out["best_s"] = min(res.get("stems_min_s") or res["stems_s"], one.get("stems_min_s") or one["stems_s"])
        out["meets_target"] = bool(out["best_s"] <= out["target_s"])
    return out


_GUI_CHILD = r"""
import faulthandler, json, sys
faulthandler.dump_traceback_later(float(sys.argv[4]), exit=False)  # where it was, if it runs out of time
from avstudio.gui.bench import run_gui_bench
kw = json.loads(sys.argv[3])
res = run_gui_bench(sys.argv[1], model=(sys.argv[2] or None), **kw)
print("AVSTUDIO-GUI-BENCH " + json.dumps(res, default=str), flush=True)
"""


def _kill_group(p: subprocess.Popen) -> tuple[str, str]:
    """SIGKILL the process group ``p`` leads (started with ``start_new_session``), reap it and
    return what it wrote (stdout, stderr)."""
    import signal

    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        p.kill()
    return p.communicate()


def bench_gui(video, model_path: Optional[str], kwargs: dict, timeout: float = 900) -> dict[str, Any]:
    """run_gui_bench in a fresh process (offscreen Qt); Qt is never imported into this one."""
    import importlib.util

    base = {"available": False, "render_fps": None, "scrub_ms_p50": None, "scrub_ms_p95": None,
            "startup_s": None, "loop_ms_p99": None, "note": ""}
    try:
        spec = importlib.util.find_spec("avstudio.gui.bench")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        base["note"] = "not available (avstudio.gui.bench is missing)"
        return base
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", AVSTUDIO_NO_AUDIO="1")
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t = time.perf_counter()
    # its own process group: a timeout kills the GUI process and the training load it started
    p = subprocess.Popen([sys.executable, "-c", _GUI_CHILD, str(video), model_path or "", json.dumps(kwargs),
                          str(max(1.0, timeout - 10))],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root,
                         start_new_session=True)
    try:
        stdout, stderr = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _, stderr = _kill_group(p)
        base["note"] = f"the GUI benchmark did not finish in {timeout:.0f} s"
        base["stderr_tail"] = (stderr or "")[-4000:]  # the threads' stacks, dumped just before
        return base
    except BaseException:  # interrupted (Ctrl+C, a test's timeout): leave nothing running
        _kill_group(p)
        raise
    r = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    for line in r.stdout.splitlines():
        if line.startswith("AVSTUDIO-GUI-BENCH "):
            res = json.loads(line.split(" ", 1)[1])
            out = dict(base)
            out.update(res)
            out["available"] = True
            out["wall_s"] = time.perf_counter() - t
            return out
    err = [x for x in r.stderr.splitlines() if x.strip()]
    base["note"] = "the GUI benchmark failed: " + (err[-1] if err else f"exit status {r.returncode}")
    return base


def bench_training(arch, device: str, clips: int, moments: int, steps: int, k: int = 1,
                   threads: Optional[int] = None) -> dict[str, Any]:
    """Optimizer steps of the trainer's inner loop (augment, forward, backward, clip, Adam) on
    random data of the model's input size: clips/s and steps/s (decoding is not included: the
    trainer decodes every clip once up front). ``arch``: an architecture name, or the AVConfig
    of the model being benchmarked."""
    import torch

    from .data.clips import augment_frames
    from .nets.config import default_config
    from .nets.model import AVModel

    if device.startswith("cuda") and not torch.cuda.is_available():
        return {"available": False, "note": "no CUDA device"}
    dev = torch.device(device)
    torch.manual_seed(0)
    cfg = default_config(arch) if isinstance(arch, str) else arch
    if not isinstance(arch, str):
        arch = f"{cfg.vis_arch} {cfg.frame_size}px x{cfg.stack} frames"
    model = AVModel(cfg).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    B = clips * moments
    S = cfg.frame_size
    gen = torch.Generator().manual_seed(0)
    shape = (B, 3, S, S) if cfg.stack <= 1 else (B, cfg.stack, 3, S, S)
    frames = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
    wave = 0.1 * torch.randn(B, cfg.audio_samples, generator=gen)

    def step():
        fr = augment_frames(frames, gen).to(dev)
        gain = torch.exp(0.3 * torch.randn(B, 1, generator=gen)).to(dev)
        loss, _ = model(fr, wave.to(dev) * gain, k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        return float(loss.detach())

    with _threads(threads):
        step()  # warm-up
        if dev.type == "cuda":
            torch.cuda.synchronize()
        with _Clock() as c:
            for _ in range(max(1, steps)):
                step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
        nt = torch.get_num_threads()
    dt = c.wall
    n = max(1, steps)
    return {"available": True, "device": str(dev), "arch": arch, "batch_clips": clips, "moments": moments,
            "k": k, "steps": n, "seconds": dt, "cpu_s": c.cpu, "steps_per_s": n / dt, "clips_per_s": n * clips / dt,
            "pairs_per_s": n * B / dt, "threads": nt}


def _flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return int(fc.get_total_flops())


def bench_compute(bundle, matmul_n: int = 2048, k: int = 2) -> dict[str, Any]:
    """FLOPs per analysed frame (visual + audio encoders; and the whole per-frame localisation)
    and the measured matmul rate of this CPU (float32, torch's threads)."""
    import torch

    av = bundle.av.eval()
    cfg = av.cfg
    dev = next(av.parameters()).device
    fr = torch.randint(0, 256, (1, 3, cfg.frame_size, cfg.frame_size), dtype=torch.uint8, device=dev)
    wv = 0.1 * torch.randn(1, cfg.audio_samples, device=dev)
    with torch.no_grad():
        vis_f = _flops(lambda: av.visual(fr))
        aud_f = _flops(lambda: av.audio(wv))
        loc_f = _flops(lambda: av.localize(fr, wv, k))
    n = int(matmul_n)
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    res = {"flops_per_frame": vis_f + aud_f, "visual_flops": vis_f, "audio_flops": aud_f,
           "localize_flops": loc_f, "matmul_n": n, "analysis_gflops": None, "compute_utilisation": None}
    for label, nt in (("", None), ("1t_", 1)):
        with _threads(nt):
            torch.matmul(a, b)
            reps = 0
            with _Clock() as c:
                while True:
                    torch.matmul(a, b)
                    reps += 1
                    if time.perf_counter() - c.wall0 > 1.0 or reps >= 50:
                        break
            res[f"{label}threads"] = torch.get_num_threads()
        flop = 2.0 * n ** 3 * reps
        res[f"{label}matmul_gflops"] = flop / c.wall / 1e9
        res[f"{label}matmul_gflop_per_cpu_s"] = flop / max(c.cpu, 1e-9) / 1e9
    res["frames_per_s_at_matmul_rate"] = res["matmul_gflops"] * 1e9 / max(1, vis_f + aud_f)
    return res


# -- memory: analysis of a long clip in a child process

_MEM_CHILD = r"""
import json, os, resource, sys, time
def rss():
    with open('/proc/self/status') as fh:
        for line in fh:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    return 0
base = rss()
import torch
torch.set_num_threads(1)  # memory does not depend on it; 1 thread keeps it short on a busy machine
from avstudio.nets.checkpoint import load_model
from avstudio.analysis.localize import analyze_clip
from avstudio.analysis.npzstream import NpzStreamWriter
import tempfile
b = load_model(sys.argv[1])
loaded = rss()
marks = []
def on_batch(idx, heat):
    marks.append((int(idx[-1]) + 1, rss()))
t = time.perf_counter()
with tempfile.TemporaryDirectory(prefix='avstudio-mem-') as out_dir:
    # what `avstudio analyze` does: the per-frame maps stream to heatmaps.npz as they come
    with NpzStreamWriter(os.path.join(out_dir, 'heatmaps.npz')) as sink:
        res = analyze_clip(b, sys.argv[2], k=int(sys.argv[3]), on_batch=on_batch, sink=sink,
                           progress=lambda ev: print('AVSTUDIO-PROG %d %d' % (ev.done, ev.total or 0),
                                                     file=sys.stderr, flush=True))
        streamed = sink.nbytes_streamed()
        res.save(out_dir)
    npz_bytes = os.path.getsize(os.path.join(out_dir, 'heatmaps.npz'))
dt = time.perf_counter() - t
out_bytes = sum(a.nbytes for a in (res.heatmaps, res.aligned, res.unaligned, res.visual_vectors,
                                      res.audio_centers, res.attended_vectors, res.times, res.frame_indices)
                if a is not None)
def hwm():  # peak RSS of this process image (ru_maxrss would include the parent's, from fork)
    with open('/proc/self/status') as fh:
        for line in fh:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
peak = hwm()
n_frames = int(len(res.times))
rss_end = rss()
# what the allocator keeps once the outputs are gone (glibc gives freed memory back on trim)
del res
import ctypes, gc
gc.collect()
try:
    ctypes.CDLL('libc.so.6').malloc_trim(0)
except OSError:
    pass
print('AVSTUDIO-MEM ' + json.dumps({'rss_start': base, 'rss_loaded': loaded, 'rss_end': rss_end, 'peak': peak,
      'rss_after_trim': rss(), 'frames': n_frames, 'seconds': dt, 'output_bytes': int(out_bytes),
      'streamed_bytes': int(streamed), 'npz_bytes': int(npz_bytes),
      'marks': marks[:: max(1, len(marks) // 20)] + marks[-1:]}), flush=True)
"""


def _proc_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def measure_analysis_memory(model_path: str, video, k: int = 2, timeout: float = 3600,
                            progress=None, label: str = "") -> dict[str, Any]:
    """Analyse ``video`` in a child process; peak RSS from the child's VmHWM (its own peak: the
    ru_maxrss of a forked child starts at the parent's RSS) and from /proc polling. The child's
    progress (frames done) goes to ``progress`` as task ``memory <label>``."""
    from .progress import emit

    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    p = subprocess.Popen([sys.executable, "-c", _MEM_CHILD, str(model_path), str(video), str(k)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root)
    polled = 0
    box: dict[str, Any] = {"err": []}
    task = f"memory {label}".strip()

    def read_out():
        box["out"] = p.stdout.read()

    def read_err():
        for line in p.stderr:
            if line.startswith("AVSTUDIO-PROG "):
                try:
                    done, total = (int(x) for x in line.split()[1:3])
                except ValueError:
                    continue
                emit(progress, task, done, total or None)
            elif line.strip():
                box["err"].append(line.rstrip())

    threads = [threading.Thread(target=f, daemon=True) for f in (read_out, read_err)]
    for th in threads:
        th.start()
    t0 = time.perf_counter()
    while p.poll() is None:
        polled = max(polled, _proc_rss(p.pid))
        if time.perf_counter() - t0 > timeout:
            p.kill()
            p.wait()
            return {"error": f"did not finish in {timeout:.0f} s"}
        time.sleep(0.05)
    for th in threads:
        th.join(10)
    for line in (box.get("out") or "").splitlines():
        if line.startswith("AVSTUDIO-MEM "):
            d = json.loads(line.split(" ", 1)[1])
            d["peak_polled"] = polled
            return d
    err = box["err"]
    return {"error": err[-1] if err else f"exit status {p.returncode}"}


def bench_memory(model_path: str, clips: dict[str, Path], k: int = 2, progress=None, repeats: int = 1,
                 minutes: Optional[dict[str, float]] = None) -> dict[str, Any]:
    """Peak RSS of ``avstudio analyze`` on clips of several lengths, each ``repeats`` times in its
    own process. A single pair of lengths gave opposite verdicts on a quiet machine (the peak of
    one run moves by tens of MB with what the allocator happens to keep), so the verdict is the
    slope of peak RSS beyond the outputs kept in memory, fitted by least squares over every run
    against minutes of video: flat when it stays under 2 MB per minute of video (120 MB an hour)."""
    runs: dict[str, list] = {}
    for label, path in clips.items():
        runs[label] = [measure_analysis_memory(model_path, path, k, progress=progress,
                                               label=label if repeats == 1 else f"{label} #{i + 1}")
                       for i in range(max(1, repeats))]
    ok = {lb: [r for r in rs if "error" not in r] for lb, rs in runs.items()}
    res: dict[str, Any] = {"available": all(ok.values()) and len(ok) >= 2, "runs": {}, "growth_mb": None,
                           "output_growth_mb": None, "flat": None, "repeats": max(1, repeats)}
    for label, rs in runs.items():
        good = ok[label]
        if not good:
            res["runs"][label] = {"error": rs[0].get("error")}
            continue
        peaks = [r["peak"] / 2**20 for r in good]
        r = good[int(np.argsort(peaks)[len(peaks) // 2])]  # the median run
        res["runs"][label] = {
            "minutes": None if minutes is None else minutes.get(label),
            "frames": r["frames"], "seconds": _r(r["seconds"], 2),
            "peak_mb": _r(float(np.median(peaks)), 1), "peak_mb_runs": [_r(x, 1) for x in peaks],
            "peak_polled_mb": _r(r["peak_polled"] / 2**20, 1),
            "loaded_mb": _r(r["rss_loaded"] / 2**20, 1), "output_mb": _r(r["output_bytes"] / 2**20, 1),
            "after_trim_mb": _r(r.get("rss_after_trim", 0) / 2**20, 1),
            "streamed_mb": _r(r.get("streamed_bytes", 0) / 2**20, 1), "npz_mb": _r(r.get("npz_bytes", 0) / 2**20, 1),
            "streaming_rss_mb": [[f, _r(b / 2**20, 1)] for f, b in r.get("marks", [])],
        }
    if res["available"]:
        labels = list(runs)
        a, b = res["runs"][labels[0]], res["runs"][labels[-1]]
        res["growth_mb"] = _r(b["peak_mb"] - a["peak_mb"], 1)
        res["output_growth_mb"] = _r(b["output_mb"] - a["output_mb"], 1)
        res["growth_beyond_output_mb"] = _r(res["growth_mb"] - res["output_growth_mb"], 1)
        # slope of (peak - outputs) against minutes of video, over every run
        xs, ys = [], []
        for label in labels:
            m = (minutes or {}).get(label)
            if m is None:
                m = ok[label][0]["frames"] / 25.0 / 60.0
            for r in ok[label]:
                xs.append(float(m))
                ys.append((r["peak"] - r["output_bytes"]) / 2**20)
        x, y = np.asarray(xs), np.asarray(ys)
        slope = float(np.polyfit(x, y, 1)[0]) if len(set(xs)) >= 2 else None
        res["slope_beyond_output_mb_per_min"] = None if slope is None else _r(slope, 2)
        res["spread_mb"] = _r(max(max(v["peak_mb_runs"]) - min(v["peak_mb_runs"]) for v in res["runs"].values()), 1)
        res["flat"] = None if slope is None else bool(slope <= 2.0)
    return res


def bench_synth(clips: int, size: tuple[int, int] = (224, 224), seconds: float = 4.0) -> dict[str, Any]:
    """CPU seconds per clip of each world (render, then H.264/AAC + sidecars), in a child
    process with one thread, as one ``avstudio synth`` worker makes them; the first clip of
    each world (soundfont loading) and the photo world's bank (pictures, photographs and
    recordings, decoded once per worker process and cached) are timed apart: the per-clip figure
    is what a long run costs once every worker has seen the bank."""
    code = r"""
import json, os, sys, tempfile, time
os.environ["OMP_NUM_THREADS"] = "1"
import torch
torch.set_num_threads(1)
from pathlib import Path
from avstudio.data.synth import SynthConfig, render_any, write_clip
from avstudio.errors import DataError
n, W, H, secs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
out = {}
tmp = Path(tempfile.mkdtemp(prefix="avstudio-bench-synth-"))
for world in ("shapes", "photo"):
    try:
        if world == "photo":
            from avstudio.data.photo import PhotoConfig
            from avstudio.data import photo_bank as pb
            cfg = PhotoConfig(size=(W, H), duration=secs)
            t = time.process_time()
            bank = pb.load_bank()  # what a long run decodes once per worker, timed apart
            for p in bank.backgrounds:
                pb.load_photo(p)
            for it in bank.items + bank.silent:
                pb.load_picture(it.picture)
            for it in bank.items:
                pb.load_sound(it.recording, cfg.sample_rate)
            for files in bank.ambient.values():
                for f in files:
                    pb.load_sound(f, cfg.sample_rate)
            load_s = time.process_time() - t
        else:
            cfg = SynthConfig(size=(W, H), duration=secs)
        t = time.process_time()
        clip = render_any(0, 0, 1, cfg)
        first = time.process_time() - t
        rs, ws = [], []
        for i in range(1, n + 1):
            t = time.process_time()
            clip = render_any(0, i, 1 + (i - 1) % 4, cfg)
            t2 = time.process_time()
            write_clip(clip, tmp / f"{world}{i}.mp4", crf=int(clip.meta.get("crf", 20)))
            rs.append(t2 - t)
            ws.append(time.process_time() - t2)
        out[world] = {"available": True, "clips": n, "render_cpu_s": sum(rs) / n, "write_cpu_s": sum(ws) / n,
                      "per_clip_cpu_s": (sum(rs) + sum(ws)) / n, "first_clip_cpu_s": first}
        if world == "photo":
            out[world]["bank_load_cpu_s"] = load_s
    except DataError as exc:
        out[world] = {"available": False, "note": str(exc)}
print(json.dumps(out))
"""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code, str(clips), str(size[0]), str(size[1]), str(seconds)],
                       capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode != 0:
        note = (r.stderr.strip().splitlines() or ["failed"])[-1]
        return {"shapes": {"available": False, "note": note}, "photo": {"available": False, "note": note}}
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["size"] = list(size)
    res["seconds"] = seconds
    return res


# ----------------------------------------------------------------------------- the run

def run_bench(scale: str = "full", model: Optional[str] = None, device: str = "cpu",
              say: Optional[Callable[[str], None]] = None, workdir: Optional[str] = None,
              sections: Optional[set[str]] = None, progress=None) -> dict[str, Any]:
    """Run the whole benchmark; returns a JSON-able dict with every key of REQUIRED_KEYS.
    ``progress``: where the long parts (the long clips' analysis) report how far they are."""
    import torch

    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}")
    sc = SCALES[scale]
    want = (lambda s: True) if not sections else (lambda s: s in sections)
    res: dict[str, Any] = {"scale": scale, "command": " ".join(shlex.quote(a) for a in sys.argv),
                           "started": time.strftime("%Y-%m-%d %H:%M:%S"), "targets": TARGETS}
    res["machine"] = machine_info()
    _log(say, f"machine: {res['machine']['cpu']}, {res['machine']['cores']} cores, load {res['machine']['load_start']}")
    tmpctx = tempfile.TemporaryDirectory(prefix="avstudio-bench-", dir=workdir)
    tmp = Path(tmpctx.name)
    t_all = time.perf_counter()
    try:
        bundle, model_path, note = resolve_model(model, tmp, sc["arch"] if model is None else "default")
        bundle.to(device)
        nparams = sum(p.numel() for p in bundle.av.parameters()) if bundle.av is not None else None
        res["model"] = {"source": model_path, "note": note, "params": nparams,
                        "arch": bundle.av.cfg.to_dict() if bundle.av is not None else None,
                        "has_separator": bundle.separator is not None, "device": device}
        _log(say, f"model: {model_path} ({note})")

        W, H = sc["size"]
        clip = tmp / f"clip-{W}x{H}.mp4"
        t = time.perf_counter()
        make_clip(clip, sc["seconds"], sc["size"], sc["fps"])
        res["clip"] = {"path": clip.name, "seconds": sc["seconds"], "size": [W, H], "fps": sc["fps"],
                       "make_s": _r(time.perf_counter() - t, 2), "codec": "h264 veryfast crf 23 gop 50 + aac"}
        _log(say, f"clip: {W}x{H} {sc['seconds']:g} s made in {res['clip']['make_s']} s")

        S = bundle.av.cfg.frame_size if bundle.av is not None else 112
        res["decode"] = bench_decode(clip, S, repeats=sc["repeats"])
        _log(say, f"decode: raw {res['decode']['raw_s']:.2f} s, {S}px {res['decode']['small_s']:.2f} s, "
                  f"full {res['decode']['full_s']:.2f} s")

        if want("analysis") and bundle.av is not None:
            res["analysis"] = bench_analysis(bundle, clip, k=2, repeats=sc["repeats"] if scale != "full" else 2)
            a = res["analysis"]
            a["vs_decode_small"] = a["best_s"] / res["decode"]["small_s"]
            a["cpu_vs_decode_small"] = a["1t_cpu_s"] / max(1e-9, res["decode"]["small_cpu_s"])
            _log(say, f"analysis: {a['seconds']:.2f} s with {a['threads']} threads, {a['1t_seconds']:.2f} s "
                      f"with 1 ({a['1t_cpu_s']:.2f} CPU s)")
        else:
            res["analysis"] = {k: None for k in REQUIRED_KEYS["analysis"]}
            res["analysis"]["available"] = False
            res["analysis"]["note"] = "not measured (--only)" if bundle.av is not None else "the model has no AV network"

        res["compute"] = bench_compute(bundle, sc["matmul_n"]) if bundle.av is not None else \
            {k: None for k in REQUIRED_KEYS["compute"]}
        a, c = res["analysis"], res["compute"]
        if a.get("available") and c.get("flops_per_frame"):
            work = a["frames"] * c["flops_per_frame"] / 1e9  # GFLOP of the encoders
            c["analysis_gflops"] = work / a["best_s"]  # wall-clock rate, best thread setting
            c["analysis_gflop_per_cpu_s"] = work / max(1e-9, a["1t_cpu_s"])  # 1 thread, per CPU second
            # share of the matmul rate, both per CPU second at 1 thread (robust to the load)
            c["compute_utilisation"] = c["analysis_gflop_per_cpu_s"] / c["1t_matmul_gflop_per_cpu_s"]
        _log(say, f"compute: {res['compute'].get('flops_per_frame', 0) / 1e6:.0f} MFLOP/frame, "
                  f"matmul {res['compute'].get('matmul_gflops') or 0:.1f} GFLOP/s")

        if want("separation"):
            res["separation"] = bench_separation_section(bundle, sc["sep_seconds"], sc["repeats"])
            _log(say, f"separation: stems {res['separation'].get('stems_s')} s, "
                      f"click {res['separation'].get('pixel_click_s')} s ({res['separation']['note']})")
        else:
            res["separation"] = {k: None for k in REQUIRED_KEYS["separation"]}
            res["separation"]["note"] = "not measured (--only)"

        res["training"] = {"cpu": None, "cpu_1t": None, "cuda": None}
        if want("training"):
            # the architecture of the model being benchmarked (the shipped one by default)
            tarch = bundle.av.cfg if (scale != "tiny" and bundle.av is not None) else sc["arch"]
            res["training"]["cpu"] = bench_training(tarch, "cpu", sc["train_clips"], sc["moments"],
                                                    sc["train_steps"])
            res["training"]["cpu_1t"] = bench_training(tarch, "cpu", sc["train_clips"], sc["moments"],
                                                       sc["train_steps"], threads=1)
            _log(say, f"training (cpu): {res['training']['cpu']['clips_per_s']:.2f} clips/s, "
                      f"{res['training']['cpu_1t']['clips_per_s']:.2f} with 1 thread")
            if device.startswith("cuda") or torch.cuda.is_available():
                res["training"]["cuda"] = bench_training(tarch, "cuda", sc["train_clips"], sc["moments"],
                                                         max(10, sc["train_steps"]))
            else:
                res["training"]["cuda"] = {"available": False, "note": "no CUDA device"}

        if want("gui"):
            res["gui"] = bench_gui(clip, model_path, sc["gui"], sc["gui_timeout"])
            _log(say, f"gui: render {res['gui'].get('render_fps')} fps, scrub p50 {res['gui'].get('scrub_ms_p50')} ms "
                      f"{res['gui'].get('note') or ''}")
        else:
            res["gui"] = {k: None for k in REQUIRED_KEYS["gui"]}
            res["gui"]["note"] = "not measured (--only)"

        if want("synth"):
            n = sc.get("synth_clips", 1)
            res["synth"] = bench_synth(n, (224, 224) if scale != "tiny" else (64, 64), 4.0 if scale != "tiny" else 0.5)
            _log(say, "synth: " + ", ".join(f"{w} {v.get('per_clip_cpu_s') or 0:.2f} CPU s/clip"
                                            for w, v in res["synth"].items() if isinstance(v, dict) and v.get("available")))
        else:
            res["synth"] = {"shapes": None, "photo": None, "note": "not measured (--only)"}

        if want("memory") and bundle.av is not None:
            seg = tmp / "segment.mp4"
            make_clip(seg, 10.0 if scale != "tiny" else 1.0, sc["size"], sc["fps"], gop=25, crf=30,
                      preset="ultrafast")
            seg_s = 10.0 if scale != "tiny" else 1.0
            long, mins = {}, {}
            for minutes in sc["mem_minutes"]:
                reps = max(1, int(round(minutes * 60 / seg_s)))
                p = tmp / f"long-{minutes:g}min.mp4"
                repeat_clip(seg, p, reps)
                long[f"{minutes:g} min"] = p
                mins[f"{minutes:g} min"] = reps * seg_s / 60.0
            _log(say, "memory: analysing " + ", ".join(long) + f" clips in child processes ({sc.get('mem_repeats', 1)}x each)")
            res["memory"] = bench_memory(model_path, long, progress=progress, repeats=sc.get("mem_repeats", 1),
                                         minutes=mins)
            res["memory"]["size"] = [W, H]
            _log(say, f"memory: growth {res['memory'].get('growth_mb')} MB "
                      f"(outputs {res['memory'].get('output_growth_mb')} MB), flat={res['memory'].get('flat')}")
        else:
            res["memory"] = {k: None for k in REQUIRED_KEYS["memory"]}
            res["memory"]["note"] = "not measured (--only)"
    finally:
        tmpctx.cleanup()
    res["machine"]["load_end"] = loadavg()
    res["wall_s"] = time.perf_counter() - t_all
    for sec, keys in REQUIRED_KEYS.items():
        d = res.setdefault(sec, {})
        for k in keys:
            d.setdefault(k, None)
    return res


# ----------------------------------------------------------------------------- the table

def _fmt(x, unit: str = "", nd: int = 2) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        return f"{x:.{nd}f}{unit}"
    return str(x)


def _ok(flag) -> str:
    return "" if flag is None else ("ok" if flag else "MISS")


def table_rows(res: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(what, measured, target, verdict) rows of the summary table."""
    rows = []
    d, a, s = res["decode"], res["analysis"], res["separation"]
    g, tr, m, c = res["gui"], res["training"], res["memory"], res["compute"]
    secs = d.get("seconds_of_video") or 0
    size = "x".join(str(x) for x in d.get("size", []) or [])
    rows.append((f"decode raw (no RGB), {secs:g} s {size}", f"{_fmt(d.get('raw_s'), ' s')} "
                 f"({_fmt(d.get('raw_fps'), ' fps', 0)})", "", ""))
    rows.append(("decode -> RGB 112x112 (analysis floor)", f"{_fmt(d.get('small_s'), ' s')} "
                 f"({_fmt(d.get('small_fps'), ' fps', 0)})", "", ""))
    rows.append(("decode -> RGB full size", f"{_fmt(d.get('full_s'), ' s')} ({_fmt(d.get('full_fps'), ' fps', 0)})",
                 "", ""))
    if a.get("available"):
        rows.append((f"analysis, every frame, k=2, {a.get('threads')} threads ({a.get('frames')} frames)",
                     f"{_fmt(a.get('seconds'), ' s')} ({_fmt(a.get('realtime_factor'), 'x real time', 1)}; "
                     f"waiting for frames {_fmt(a.get('decode_s'), ' s')}, model {_fmt(a.get('model_s'), ' s')})",
                     f"<= {_fmt(a.get('target_s'), ' s', 1)}", _ok(a.get("seconds") <= a.get("target_s"))))
        rows.append(("analysis, same, 1 thread",
                     f"{_fmt(a.get('1t_seconds'), ' s')} ({_fmt(a.get('1t_realtime_factor'), 'x real time', 1)}; "
                     f"{_fmt(a.get('1t_cpu_s'), ' CPU s')})",
                     f"<= {_fmt(a.get('target_s'), ' s', 1)}", _ok(a.get("1t_seconds") <= a.get("target_s"))))
        rows.append(("analysis / decode-only (112 px): wall, CPU",
                     f"{_fmt(a.get('vs_decode_small'), 'x', 1)}, {_fmt(a.get('cpu_vs_decode_small'), 'x', 1)}", "", ""))
    else:
        rows.append(("analysis", a.get("note") or "not available", "", ""))
    if c.get("flops_per_frame"):
        rows.append(("model FLOPs per frame (visual + audio encoders)",
                     f"{c['flops_per_frame'] / 1e6:.0f} MFLOP (visual {c['visual_flops'] / 1e6:.0f}, "
                     f"audio {c['audio_flops'] / 1e6:.0f})", "", ""))
        rows.append((f"CPU matmul rate ({c.get('matmul_n')}^2 fp32): {c.get('threads')} threads / 1 thread",
                     f"{_fmt(c.get('matmul_gflops'), ' GFLOP/s', 1)} / {_fmt(c.get('1t_matmul_gflops'), ' GFLOP/s', 1)} "
                     f"({_fmt(c.get('1t_matmul_gflop_per_cpu_s'), ' GFLOP per CPU s', 1)})", "", ""))
        rows.append(("analysis encoders' rate: wall / per CPU s (1 thread)",
                     f"{_fmt(c.get('analysis_gflops'), ' GFLOP/s', 1)} / {_fmt(c.get('analysis_gflop_per_cpu_s'), ' GFLOP per CPU s', 1)}"
                     f" = {_fmt(None if c.get('compute_utilisation') is None else c['compute_utilisation'] * 100, ' %', 0)} of matmul", "", ""))
    if s.get("available"):
        tgt = f"<= {_fmt(s.get('target_s'), ' s', 1)}"
        rows.append((f"separation, stems of 2 clusters of {_fmt(s.get('seconds'), ' s', 0)}, {s.get('threads')} threads",
                     f"{_fmt(s.get('stems_min_s'), ' s')} ({_fmt(s.get('stems_realtime_factor'), 'x real time', 1)})",
                     tgt, _ok(None if s.get("stems_min_s") is None else s["stems_min_s"] <= s["target_s"])))
        if s.get("1t_stems_s") is not None:
            rows.append(("separation, same, 1 thread",
                         f"{_fmt(s.get('1t_stems_min_s'), ' s')} ({_fmt(s.get('1t_stems_realtime_factor'), 'x real time', 1)})",
                         tgt, _ok(s["1t_stems_min_s"] <= s["target_s"])))
        rows.append(("click-to-hear (PixelSounder), first / next click",
                     f"{_fmt(s.get('pixel_first_click_s'), ' s')} / {_fmt(s.get('pixel_click_s'), ' s')}"
                     + (f" (1 thread: {_fmt(s.get('1t_pixel_first_click_s'), ' s')} / {_fmt(s.get('1t_pixel_click_s'), ' s')})"
                        if s.get("1t_pixel_click_s") is not None else ""), "", ""))
    else:
        rows.append(("separation", s.get("note") or "not available", "", ""))
    if g.get("available"):
        rows.append(("GUI overlay render rate (offscreen)", _fmt(g.get("render_fps"), " fps", 0),
                     ">= 50 fps", _ok(g.get("render_fps") is not None and g["render_fps"] >= 50)))
        rows.append(("GUI scrub latency p50 / p95",
                     f"{_fmt(g.get('scrub_ms_p50'), ' ms', 0)} / {_fmt(g.get('scrub_ms_p95'), ' ms', 0)}",
                     "<= 50 / 150 ms",
                     _ok(None if g.get("scrub_ms_p50") is None else
                         bool(g["scrub_ms_p50"] <= 50 and (g.get("scrub_ms_p95") or 1e9) <= 150))))
        rows.append(("GUI start-up to first frame", _fmt(g.get("startup_s"), " s"), "<= 3 s",
                     _ok(None if g.get("startup_s") is None else g["startup_s"] <= 3)))
        if g.get("loop_ms_p99") is not None:
            rows.append(("GUI event-loop latency p50 / p99 / max while analysing"
                         + (" beside a training process" if g.get("loop_under_training") else ""),
                         f"{_fmt(g.get('loop_ms_p50'), ' ms', 1)} / {_fmt(g.get('loop_ms_p99'), ' ms', 0)} / "
                         f"{_fmt(g.get('loop_ms_max'), ' ms', 0)}", "p99 <= 100 ms",
                         _ok(g["loop_ms_p99"] <= 100)))
    else:
        rows.append(("GUI", g.get("note") or "not available", "", ""))
    for dev in ("cpu", "cpu_1t", "cuda"):
        t = tr.get(dev) or {}
        if t.get("available"):
            rows.append((f"training {t['arch']} arch, {t['batch_clips']} clips x {t['moments']} moments "
                         f"({t['device']}{', ' + str(t['threads']) + ' threads' if t['device'] == 'cpu' else ''})",
                         f"{_fmt(t.get('clips_per_s'), ' clips/s')} ({_fmt(t.get('steps_per_s'), ' steps/s', 3)})",
                         "", ""))
        elif t:
            rows.append((f"training ({dev})", t.get("note") or "not available", "", ""))
    sy = res.get("synth") or {}
    for world in ("shapes", "photo"):
        v = sy.get(world)
        if isinstance(v, dict) and v.get("available"):
            rows.append((f"avstudio synth --world {world}, {'x'.join(map(str, sy.get('size') or []))} "
                         f"{_fmt(sy.get('seconds'), ' s', 0)} clip, 1 thread",
                         f"{_fmt(v.get('per_clip_cpu_s'), ' CPU s/clip')} (render {_fmt(v.get('render_cpu_s'), ' s')}, "
                         f"mp4 + sidecars {_fmt(v.get('write_cpu_s'), ' s')})",
                         "photo <= shapes" if world == "photo" else "",
                         _ok(v["per_clip_cpu_s"] <= (sy.get("shapes") or {}).get("per_clip_cpu_s", 1e9))
                         if world == "photo" and (sy.get("shapes") or {}).get("available") else ""))
        elif isinstance(v, dict):
            rows.append((f"avstudio synth --world {world}", v.get("note") or "not available", "", ""))
    if m.get("available"):
        for label, r in m["runs"].items():
            rows.append((f"peak RSS, analysing a {label} {'x'.join(map(str, res['memory'].get('size') or []))} clip",
                         f"{_fmt(r.get('peak_mb'), ' MB', 0)} (after model load {_fmt(r.get('loaded_mb'), ' MB', 0)}; "
                         f"kept in memory {_fmt(r.get('output_mb'), ' MB', 0)}, streamed to disk "
                         f"{_fmt(r.get('streamed_mb'), ' MB', 0)})", "", ""))
        rows.append(("peak RSS growth, long vs short clip",
                     f"{_fmt(m.get('growth_mb'), ' MB', 0)} (outputs {_fmt(m.get('output_growth_mb'), ' MB', 0)})",
                     "", ""))
        rows.append((f"peak RSS beyond outputs vs minutes of video (least squares over "
                     f"{sum(len(r.get('peak_mb_runs', [])) for r in m['runs'].values())} runs)",
                     f"{_fmt(m.get('slope_beyond_output_mb_per_min'), ' MB/min')} (repeats differ by up to "
                     f"{_fmt(m.get('spread_mb'), ' MB', 0)})",
                     "<= 2 MB/min", _ok(m.get("flat"))))
    elif m.get("runs"):
        rows.append(("peak RSS", "failed: " + "; ".join(str(r.get("error")) for r in m["runs"].values()), "", ""))
    else:
        rows.append(("peak RSS", m.get("note") or "not available", "", ""))
    return rows


def format_table(res: dict[str, Any]) -> str:
    rows = [("measure", "measured", "target", "")] + table_rows(res)
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    mc = res["machine"]
    lines.append(f"machine: {mc['cpu']}, {mc['cores']} usable cores ({mc.get('cpu_count')} total), "
                 f"torch {mc['torch']} ({mc.get('torch_threads')} threads), av {mc['av']}, "
                 f"python {mc['python']}, CUDA: {mc['cuda'] or 'none'}")
    lines.append(f"load average (1/5/15 min): start {mc['load_start']}, end {mc['load_end']}")
    lines.append(f"model: {res['model']['source']} ({res['model']['note']})")
    lines.append("")
    for i, r in enumerate(rows):
        lines.append("  ".join(r[j].ljust(w[j]) for j in range(4)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w[j] for j in range(4)))
    return "\n".join(lines)


def markdown_table(res: dict[str, Any]) -> str:
    rows = table_rows(res)
    out = ["| measure | measured | target | |", "|---|---|---|---|"]
    for r in rows:
        out.append("| " + " | ".join(x.replace("|", "/") for x in r) + " |")
    return "\n".join(out)


__all__ = ["run_bench", "format_table", "markdown_table", "make_clip", "repeat_clip", "REQUIRED_KEYS",
           "SCALES", "TARGETS", "machine_info", "bench_decode", "bench_analysis", "bench_training",
           "bench_compute", "bench_memory", "bench_gui", "measure_analysis_memory"]
