#!/usr/bin/env python3
"""AV Studio's small real test set: videos from Debian packages, cut into clips, with box
annotations of the sounding objects (resources/real_footage.json). See docs/real_footage.md.

    python scripts/real_footage.py all DIR            fetch + build + score (the one command)
    python scripts/real_footage.py fetch DIR          apt-get download + dpkg -x into DIR/pkgs
    python scripts/real_footage.py build DIR          cut DIR/clips/*.mp4, make DIR/real.avlib
    python scripts/real_footage.py score DIR [--model M ...]    default: every model under models/
    python scripts/real_footage.py export-boxes DIR   (annotators) the library's boxes back into
                                                      resources/real_footage.json

Each clip of the resource file names the Debian package that ships its video, the path inside
that package, the segment cut from it and the file's sha256 (a package that changed its video
is refused, so the boxes always sit on the frames they were drawn on). Fetching needs apt
(Debian or a derivative) and the network; ~56 MB of packages.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESOURCE = REPO / "resources" / "real_footage.json"
sys.path.insert(0, str(REPO))


def load_set() -> dict:
    return json.loads(RESOURCE.read_text(encoding="utf-8"))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_path(root: Path, origin: dict) -> Path:
    return root / "pkgs" / origin["package"] / origin["path"]


def fetch(root: Path) -> None:
    data = load_set()
    pkgs = sorted({c["origin"]["package"] for c in data["clips"]})
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for p in pkgs:
        dest = root / "pkgs" / p
        if dest.is_dir() and any(dest.iterdir()):
            continue
        have = sorted(debs.glob(f"{p}_*.deb"))
        if not have:
            print(f"[real] apt-get download {p}", flush=True)
            r = subprocess.run(["apt-get", "download", p], cwd=debs, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"real_footage: cannot download Debian package {p}: {r.stderr.strip().splitlines()[-1:]}"
                         " (is apt configured, with `apt-get update` done?)")
            have = sorted(debs.glob(f"{p}_*.deb"))
        dest.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(have[-1]), str(dest)], check=True)
    bad = []
    for c in data["clips"]:
        o = c["origin"]
        f = source_path(root, o)
        if not f.is_file():
            bad.append(f"{o['package']} has no {o['path']}")
        elif sha256(f) != o["sha256"]:
            bad.append(f"{o['package']}'s {o['path']} is not the file the boxes were drawn on "
                       f"(sha256 differs; annotated on version {o['version']})")
    if bad:
        sys.exit("real_footage: " + "; ".join(sorted(set(bad))))
    print(f"[real] {len(pkgs)} packages in {root / 'pkgs'}, every source file checked", flush=True)


def cut(src: Path, dst: Path, start: float, end: float) -> None:
    """Frames [round(start*fps), round(end*fps)) of ``src`` and their sound, as an mp4 at the
    same frame rate (every frame kept, so frame i of the clip is frame start_index + i)."""
    from avstudio.media import Mp4Writer, VideoReader, probe, read_audio

    info = probe(src)
    with VideoReader(src) as vr:
        fps = vr.fps
        a = int(round(start * fps))
        b = min(vr.frame_count, int(round(end * fps)))
        t0 = max(0.0, vr.time_of_index(a))
        sr = 48000
        audio = read_audio(src, sr, start=t0, end=t0 + (b - a) / fps) if info.has_audio else None
        tmp = dst.with_suffix(".part.mp4")
        with Mp4Writer(tmp, fps=fps, sample_rate=sr, audio=audio is not None, crf=16, preset="medium") as w:
            if audio is not None:
                w.add_audio(audio)
            for _i, _t, rgb in vr.frames(a, b):
                w.add_frame(rgb)
    os.replace(tmp, dst)


def build(root: Path) -> Path:
    from avstudio.data.box_formats import import_boxes
    from avstudio.data.library import ClipLibrary

    data = load_set()
    (root / "clips").mkdir(parents=True, exist_ok=True)
    for c in data["clips"]:
        dst = root / c["path"]
        if not dst.exists():
            o = c["origin"]
            print(f"[real] cutting {dst.name} from {o['package']}:{o['path']} {o['start']:.2f}-{o['end']:.2f} s",
                  flush=True)
            cut(source_path(root, o), dst, float(o["start"]), float(o["end"]))
    lib_path = root / "real.avlib"
    with ClipLibrary(lib_path) as lib:
        rep = lib.import_files([root / c["path"] for c in data["clips"]])
        if rep.failed:
            sys.exit("real_footage: " + "; ".join(f"{p}: {r}" for p, r in rep.failed))
        br = import_boxes(lib, RESOURCE, base=root, who="real_footage.json")
        if br.skipped:
            sys.exit("real_footage: " + "; ".join(f"{w}: {r}" for w, r in br.skipped))
        s = lib.stats()
    print(f"[real] {lib_path}: {s['clips']} clips, {s['boxes']} boxes on {s['box_frames']} frames", flush=True)
    return lib_path


def shipped_models() -> list[str]:
    out = []
    for d in sorted((REPO / "models").iterdir()):
        if d.is_dir() and any(d.glob("*.safetensors")):
            out.append(str(d))
    return out


def score(root: Path, models: list[str] | None) -> None:
    models = models or shipped_models()
    cmd = [sys.executable, "-m", "avstudio", "eval", "--library", str(root / "real.avlib"),
           "--out", str(root / "scores.json"), "--table", str(root / "scores.md")]
    for m in models:
        cmd += ["--model", m]
    print("[real] " + " ".join(cmd), flush=True)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL)
    if r.returncode != 0:
        sys.exit(r.returncode)
    print(f"[real] scores: {root / 'scores.json'}, table: {root / 'scores.md'}", flush=True)


def export_boxes(root: Path) -> None:
    """Write the boxes drawn in DIR/real.avlib back into the resource file, keeping each clip's
    origin and notes (paths stay relative to DIR)."""
    import tempfile

    from avstudio.data.box_formats import export_avstudio
    from avstudio.data.library import ClipLibrary

    data = load_set()
    with ClipLibrary(root / "real.avlib", create=False) as lib, tempfile.TemporaryDirectory() as td:
        out = Path(td) / "boxes.json"
        export_avstudio(lib, out, base=root)
        exported = {c["path"]: c for c in json.loads(out.read_text())["clips"]}
    for c in data["clips"]:
        e = exported.get(c["path"])
        c["frames"] = [] if e is None else e["frames"]
        if e is not None:
            for k in ("duration", "fps", "width", "height"):
                c[k] = e[k]
    tmp = RESOURCE.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, RESOURCE)
    n = sum(len(c["frames"]) for c in data["clips"])
    print(f"[real] {RESOURCE}: {n} annotated frames on {sum(1 for c in data['clips'] if c['frames'])} clips")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("all", "fetch", "build", "score", "export-boxes"):
        p = sub.add_parser(name)
        p.add_argument("dir", metavar="DIR", help="working folder (packages, clips, library, scores)")
        if name in ("all", "score"):
            p.add_argument("--model", action="append", help="MODEL (repeat; default: every model under models/)")
    a = ap.parse_args(argv)
    root = Path(a.dir).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    if a.cmd in ("all", "fetch"):
        fetch(root)
    if a.cmd in ("all", "build"):
        build(root)
    if a.cmd in ("all", "score"):
        score(root, a.model)
    if a.cmd == "export-boxes":
        export_boxes(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
