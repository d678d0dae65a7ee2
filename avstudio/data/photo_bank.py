"""The media bank of the photographic world: real pictures of sounding things with their own
recordings, real photographs as backgrounds, real ambient recordings for off-screen sound.

Everything comes from Debian packages that ``scripts/setup.sh`` installs (nothing is
downloaded at run time):

* objects: ``qabcs-data`` (GPL) — pictures ``pics/<category>/<name>.png`` (RGBA, photographs
  and drawings of animals, instruments, food, toys, household things) each with the recording
  ``noises/<name>.ogg`` of the same name;
* backgrounds: the nature photographs of ``mate-backgrounds`` and the photographs of
  ``lomiri-wallpapers-16.04`` (abstract art and pictures showing animals are left out);
* ambience: ``btanks-data`` (city, countryside, forest, swamp), ``etw-data`` (football
  crowds) and ``gnome-shell-pomodoro-data`` (birds).

A missing package, a picture without its recording or a file that cannot be decoded costs
only that item: :func:`load_bank` returns the usable part and one line per problem. Other
Debian collections of photographed objects are deliberately *not* used here: they are kept as
independent checks of what we ship.

Held-out splits: every picture (with its recording) belongs to ``train``, ``val`` or ``test``
by a fixed hash of its name (:func:`split_of`: about 70/10/20 %), so a set made with
``pictures="test"`` shows pictures and plays recordings that training never saw (and ``val``
ones that are neither trained on nor reported, for choosing settings).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import AVStudioError, DataError

QABCS_ROOT = Path("/usr/share/qabcs/abcs/all")
BACKGROUND_ROOT = Path("/usr/share/backgrounds")
AMBIENT_ROOT = Path("/usr/share")
# Each root can be moved with an environment variable (read when the bank is loaded):
# AVSTUDIO_QABCS (a folder with pics/<category>/*.png and noises/*.ogg), AVSTUDIO_BACKGROUNDS
# and AVSTUDIO_AMBIENT (folders: every picture / sound file in them is used).
PACKAGES = ("qabcs-data", "mate-backgrounds", "lomiri-wallpapers-16.04", "btanks-data", "etw-data",
            "gnome-shell-pomodoro-data")

# photographs only (relative to BACKGROUND_ROOT); the package's abstract art and the two
# photographs that show animals (which would be silent look-alikes of our classes) are left out
BACKGROUNDS = (
    "mate/nature/Aqua.jpg", "mate/nature/Blinds.jpg", "mate/nature/Dune.jpg",
    "mate/nature/FreshFlower.jpg", "mate/nature/Garden.jpg", "mate/nature/GreenMeadow.jpg",
    "mate/nature/LadyBird.jpg", "mate/nature/RainDrops.jpg", "mate/nature/Storm.jpg",
    "mate/nature/TwoWings.jpg", "mate/nature/Wood.jpg", "mate/nature/YellowFlower.jpg",
    "Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Picture_0B_by_freespace.jpg",
    "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg", "aitzgorri_by_Aitzol_Berasategi.jpg",
    "analogpattern_by_Peter_Nerlich.jpg", "free_by_Peter_Nerlich.jpg",
    "greentock_by_Peter_Nerlich.jpg", "life_by_Aitzol_Berasategi.jpg",
    "picosdeeuropa_by_Aitzol_Berasategi.jpg", "seeding_by_Clements_Engelhardt.jpg",
    "sunset_by_Aitzol_Berasategi.jpg", "umang_by_Abhishek_Mudgal.jpg",
)

# off-screen ambience (relative to AMBIENT_ROOT): kind -> files
AMBIENT = {
    "city": ("games/btanks/data/sounds/ambient/city.ogg",),
    "countryside": ("games/btanks/data/sounds/ambient/country.ogg",),
    "forest": ("games/btanks/data/sounds/ambient/forest.ogg",),
    "swamp": ("games/btanks/data/sounds/ambient/swamp.ogg",),
    "crowd": tuple(f"games/etw/crowd/crowd{i:02d}.wav" for i in range(1, 18)),
    "birds": ("gnome-pomodoro/sounds/birds.ogg",),
}

# pictures that show the same kind of thing are one class (the rest: one class per name)
CLASS_OF = {
    "apples": "apple", "grand_piano": "piano", "western_concert_flute": "flute",
    "bass_drum": "drums", "squeezebox": "accordion", "electric_guitar": "guitar",
    "hand_organ": "organ", "kidney_beans": "beans", "paper_airplane": "airplane",
    "rocking_horse": "horse", "foal": "horse", "calf": "cow", "little_monkey": "monkey",
    "chimpanzee": "monkey", "quadrocopter": "helicopter", "steam_locomotive": "train",
    "volleyball": "ball", "football": "ball", "rubber_ball": "ball", "eagle-owl": "owl",
}

# instrument pictures that the General-MIDI instruments of the shapes world can play too
# (qabcs name -> class of avstudio.data.instruments)
GM_PARTNERS = {
    "accordion": "accordion", "squeezebox": "accordion", "guitar": "acoustic_guitar",
    "cello": "cello", "clarinet": "clarinet", "erhu": "erhu", "flute": "flute",
    "western_concert_flute": "flute", "saxophone": "saxophone", "trumpet": "trumpet",
    "violin": "violin", "xylophone": "xylophone",
}

SPLITS = ("train", "val", "test")


def split_of(name: str) -> str:
    """The fixed split of a picture, by a hash of its name: ``"test"`` (2 in 10: held out for
    the final numbers only), ``"val"`` (1 in 10: held out for choosing settings and checkpoints)
    or ``"train"`` (the rest)."""
    h = int(hashlib.sha1(name.encode("utf-8")).hexdigest()[:8], 16) % 10
    return "test" if h < 2 else ("val" if h == 2 else "train")


@dataclass(frozen=True)
class Item:
    name: str  # qabcs name (file stem)
    category: str  # animals, food, instrument, misc, toys
    cls: str  # class name (CLASS_OF, else the name)
    picture: str  # path of the PNG
    recording: str  # path of the OGG ("" for a picture without one)
    split: str  # "train" | "test"

    @property
    def gm_partner(self) -> Optional[str]:
        return GM_PARTNERS.get(self.name)


@dataclass
class Bank:
    items: list[Item]
    classes: list[str]  # every class name of the full bank, sorted (class ids are positions)
    problems: list[str]  # one line per unusable file
    backgrounds: list[str]
    ambient: dict[str, list[str]]
    silent: list[Item] = field(default_factory=list)  # pictures without a recording

    def pool(self, pictures: str, silent: bool = False) -> list[Item]:
        """The items of a split (``"train"``, ``"val"``, ``"test"`` or ``"all"``); with ``silent`` the
        pictures that have no recording (usable only as silent distractors)."""
        src = self.silent if silent else self.items
        if pictures == "all":
            return list(src)
        return [it for it in src if it.split == pictures]

    def class_id(self, cls: str) -> int:
        return self.classes.index(cls)


_BANK_LOCK = threading.Lock()
_BANKS: dict[tuple, Bank] = {}


def load_bank(root: Optional[os.PathLike] = None, backgrounds_root: Optional[os.PathLike] = None,
              ambient_root: Optional[os.PathLike] = None) -> Bank:
    """Scan the installed packages (cached per process). Raises DataError, naming the Debian
    packages to install, only when no object or no background at all is usable."""
    env_bg = os.environ.get("AVSTUDIO_BACKGROUNDS")
    env_amb = os.environ.get("AVSTUDIO_AMBIENT")
    root = Path(root) if root is not None else Path(os.environ.get("AVSTUDIO_QABCS") or QABCS_ROOT)
    broot = Path(backgrounds_root) if backgrounds_root is not None else Path(env_bg or BACKGROUND_ROOT)
    aroot = Path(ambient_root) if ambient_root is not None else Path(env_amb or AMBIENT_ROOT)
    custom_bg = backgrounds_root is not None or bool(env_bg)
    custom_amb = ambient_root is not None or bool(env_amb)
    key = (str(root), str(broot), str(aroot), custom_bg, custom_amb)
    with _BANK_LOCK:
        if key in _BANKS:
            return _BANKS[key]
    problems: list[str] = []
    items: list[Item] = []
    silent: list[Item] = []
    pics = root / "pics"
    noises = root / "noises"
    if not pics.is_dir():
        raise DataError(f"the photo world needs the pictures of Debian's qabcs-data ({pics} is missing): "
                        f"run `bash scripts/setup.sh` or `apt-get install {' '.join(PACKAGES)}`")
    for cat in sorted(p for p in pics.iterdir() if p.is_dir()):
        for png in sorted(cat.glob("*.png")):
            name = png.stem
            rec = noises / f"{name}.ogg"
            it = Item(name, cat.name, CLASS_OF.get(name, name), str(png), str(rec) if rec.is_file() else "",
                      split_of(name))
            (items if rec.is_file() else silent).append(it)
    if not items:
        raise DataError(f"no usable picture with its recording under {root} "
                        f"(install Debian's qabcs-data: `bash scripts/setup.sh`)")
    if silent:
        cats: dict[str, int] = {}
        for it in silent:
            cats[it.category] = cats.get(it.category, 0) + 1
        problems.append(f"{len(silent)} pictures have no recording under {noises} "
                        f"({', '.join(f'{c}: {n}' for c, n in sorted(cats.items()))}): they appear only as "
                        "silent distractors")
    if custom_bg:
        bgs = sorted(str(p) for p in broot.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        missing_bg = 0
    else:
        bgs = [str(broot / b) for b in BACKGROUNDS if (broot / b).is_file()]
        missing_bg = len(BACKGROUNDS) - len(bgs)
    if missing_bg:
        problems.append(f"{missing_bg} of {len(BACKGROUNDS)} background photographs are missing under {broot} "
                        "(packages mate-backgrounds, lomiri-wallpapers-16.04)")
    if not bgs:
        raise DataError(f"no background photograph found under {broot}: install Debian's mate-backgrounds "
                        "and lomiri-wallpapers-16.04 (`bash scripts/setup.sh`)")
    amb: dict[str, list[str]] = {}
    sources = AMBIENT
    if custom_amb:
        sources = {p.stem: (p.name,) for p in sorted(aroot.glob("*"))
                   if p.suffix.lower() in (".ogg", ".wav", ".flac", ".mp3")}
    for kind, files in sources.items():
        got = [str(aroot / f) for f in files if (aroot / f).is_file()]
        if got:
            amb[kind] = got
        else:
            problems.append(f"no ambient '{kind}' recording under {aroot} (synthetic wind is used instead)")
    classes = sorted({it.cls for it in items} | set(CLASS_OF.values()))
    classes = sorted(set(classes) | {it.cls for it in silent})
    bank = Bank(items, classes, problems, bgs, amb, silent)
    with _BANK_LOCK:
        _BANKS[key] = bank
    return bank


# --------------------------------------------------------------------------------------------
# Decoding (cached per process; every failure is one DataError line)
# --------------------------------------------------------------------------------------------


class _LRU:
    def __init__(self, size: int):
        self.size = size
        self.d: OrderedDict = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.d:
                self.d.move_to_end(key)
                return self.d[key]
        return None

    def put(self, key, value):
        with self.lock:
            self.d[key] = value
            self.d.move_to_end(key)
            while len(self.d) > self.size:
                self.d.popitem(last=False)
        return value


_PICTURES = _LRU(300)
_PHOTOS = _LRU(40)
_SOUNDS = _LRU(300)


@dataclass
class Picture:
    rgba: np.ndarray  # float32 [h, w, 4] in 0..1, cropped to the object (alpha > 0)
    fill: float  # share of the crop covered by alpha >= 0.5


def load_picture(path: str) -> Picture:
    """An RGBA picture cropped to its visible part (DataError when unreadable or empty)."""
    hit = _PICTURES.get(path)
    if hit is not None:
        return hit
    rgba = _imread(path, "picture")
    if rgba.shape[2] == 3:  # no alpha channel: the whole picture is the object
        rgba = np.concatenate([rgba, np.ones(rgba.shape[:2] + (1,), np.float32)], axis=2)
    a = rgba[..., 3]
    rows = np.nonzero((a > 0.02).any(axis=1))[0]
    cols = np.nonzero((a > 0.02).any(axis=0))[0]
    if rows.size < 4 or cols.size < 4:
        raise DataError(f"picture {path} has no visible object (its alpha channel is empty)")
    crop = np.ascontiguousarray(rgba[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
    fill = float((crop[..., 3] >= 0.5).mean())
    if fill < 0.02:
        raise DataError(f"picture {path} has almost no opaque pixel")
    return _PICTURES.put(path, Picture(crop, fill))


def load_photo(path: str, long_side: int = 1024) -> np.ndarray:
    """A background photograph as uint8 RGB [H, W, 3], its long side about ``long_side``
    (cached per process: about 2 MB each)."""
    key = (path, long_side)
    hit = _PHOTOS.get(key)
    if hit is not None:
        return hit
    import cv2

    img = _imread(path, "background photograph", reduce_to=long_side)
    arr = img[..., :3]
    s = long_side / max(arr.shape[:2])
    if s < 1:
        arr = cv2.resize(arr, (max(1, round(arr.shape[1] * s)), max(1, round(arr.shape[0] * s))),
                         interpolation=cv2.INTER_AREA)
    arr = np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return _PHOTOS.put(key, arr)


def _imread(path: str, what: str, reduce_to: Optional[int] = None) -> np.ndarray:
    """A picture file as float32 RGB or RGBA [h, w, 3|4] in 0..1 (OpenCV; DataError if unreadable).
    ``reduce_to``: a JPEG is decoded at 1/2, 1/4 or 1/8 scale while its long side stays above it."""
    import cv2

    if not os.path.isfile(path):
        raise DataError(f"{what} {path} does not exist")
    flags = cv2.IMREAD_UNCHANGED
    if reduce_to and path.lower().endswith((".jpg", ".jpeg")):
        try:
            h, w = _jpeg_size(path)
        except (OSError, ValueError):
            h = w = 0
        for f, fl in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if max(h, w) // f >= reduce_to:
                flags = fl
                break
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None or img.ndim < 2 or img.size == 0:
        raise DataError(f"{what} {path} cannot be read: not a picture OpenCV can decode (damaged?)")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    if img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    else:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
    return img.astype(np.float32) / np.float32(scale)


def _jpeg_size(path: str) -> tuple[int, int]:
    """(height, width) from a JPEG's SOF marker, without decoding it."""
    with open(path, "rb") as fh:
        data = fh.read(1 << 20)
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        seg = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            return int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
        i += 2 + seg
    raise ValueError("no SOF marker")


def load_sound(path: str, sample_rate: int, trim_db: float = -45.0) -> np.ndarray:
    """A recording as mono float32 at ``sample_rate``, leading/trailing silence trimmed."""
    key = (path, sample_rate)
    hit = _SOUNDS.get(key)
    if hit is not None:
        return hit
    from ..media import read_audio

    try:
        y = read_audio(path, sample_rate)
    except AVStudioError as exc:
        raise DataError(f"recording {path} cannot be decoded: {exc}") from None
    y = np.asarray(y, np.float32)
    if y.size == 0 or not np.isfinite(y).all():
        raise DataError(f"recording {path} holds no usable sound")
    peak = float(np.abs(y).max())
    if peak < 1e-4:
        raise DataError(f"recording {path} is silent")
    hop = max(1, sample_rate // 100)
    m = len(y) // hop
    if m > 2:
        e = np.sqrt(np.square(y[: m * hop]).reshape(m, hop).mean(axis=1) + 1e-12)
        on = np.nonzero(20 * np.log10(e / e.max()) > trim_db)[0]
        if on.size:
            y = y[max(0, on[0] - 1) * hop:min(m, on[-1] + 2) * hop]
    return _SOUNDS.put(key, np.ascontiguousarray(y))


_DURATIONS = _LRU(64)


def sound_duration(path: str) -> float:
    """Duration (s) of a recording, from its header (cached; DataError when unreadable)."""
    hit = _DURATIONS.get(path)
    if hit is not None:
        return hit
    from ..media import probe

    try:
        info = probe(path)
    except AVStudioError as exc:
        raise DataError(f"recording {path} cannot be read: {exc}") from None
    if not info.has_audio or not info.duration:
        raise DataError(f"recording {path} has no audio track")
    return _DURATIONS.put(path, float(info.duration))


def read_sound_range(path: str, sample_rate: int, start: float, seconds: float) -> np.ndarray:
    """``seconds`` of a recording from ``start`` (mono float32; shorter at its end)."""
    from ..media import read_audio

    try:
        return np.asarray(read_audio(path, sample_rate, start, start + seconds), np.float32)
    except AVStudioError as exc:
        raise DataError(f"recording {path} cannot be decoded: {exc}") from None


def usable(items: Sequence[Item]) -> tuple[list[Item], list[str]]:
    """The items whose picture and recording decode, and one line per item that does not."""
    ok, bad = [], []
    for it in items:
        try:
            load_picture(it.picture)
            load_sound(it.recording, 16000)
        except DataError as exc:
            bad.append(str(exc))
            continue
        ok.append(it)
    return ok, bad


__all__ = ["Bank", "Item", "Picture", "load_bank", "load_picture", "load_photo", "load_sound", "split_of",
           "usable", "PACKAGES", "BACKGROUNDS", "AMBIENT", "CLASS_OF", "GM_PARTNERS"]
