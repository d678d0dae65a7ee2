"""Source classes of the synthetic benchmark: what each one looks like and how it sounds.

Each class has a LOOK (shape, colour, texture; drawn by :mod:`avstudio.data.synth_draw`) and a
SOUND. The ten MUSIC-like instruments (plus a violin) are rendered by default from a General-MIDI
soundfont with fluidsynth (real attacks and releases); when pyfluidsynth, libfluidsynth or the
soundfont is missing, they fall back to hand-made additive timbres with class-specific spectra,
envelopes and vibrato. Three classes are always hand-made: ``drums`` (percussive noise),
``theremin`` (a gliding tone with strong vibrato) and ``bird`` (chirps).

A source's notes are composed from the random generator *before* any rendering, so a given
seed gives the same notes and onsets whatever backend renders them.

Qt-free, numpy only (plus the optional ``fluidsynth`` module).
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np

from ..errors import DataError

BLOCK = 64  # fluidsynth renders in 64-sample blocks: note times are put on this grid
REF_RMS = 0.1  # every rendered source is normalised to this RMS over its active part (-20 dBFS)

BACKENDS = ("auto", "fluidsynth", "handmade")

# --------------------------------------------------------------------------------------------
# Class specifications
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timbre:
    """A hand-made timbre: harmonic stack + envelope (the fallback of soundfont classes)."""

    harmonics: tuple[float, ...] = (1.0,)  # amplitude of partial k+1
    ratios: Optional[tuple[float, ...]] = None  # partial frequency ratios (None: 1, 2, 3...)
    attack: float = 0.03  # s
    decay: float = 0.2  # s, towards `sustain`
    sustain: float = 0.8  # 0..1
    release: float = 0.1  # s
    pluck: float = 0.0  # > 0: exponential decay rate (1/s) of the fundamental, partials faster
    vibrato: tuple[float, float] = (0.0, 0.0)  # (rate Hz, depth cents)
    vibrato_delay: float = 0.15  # s before the vibrato fades in
    noise: float = 0.0  # breath / bow noise (share of the amplitude)
    detune: float = 0.0  # cents: a second, detuned copy (accordion reeds)


@dataclass(frozen=True)
class SourceClass:
    """One source class: its look and its sound."""

    name: str
    kind: str  # "gm" (soundfont program, hand-made fallback) | "drums" | "theremin" | "bird"
    program: Optional[int]  # General-MIDI program (0-based) for kind == "gm"
    # sound
    pitch: tuple[int, int]  # MIDI note range
    tempo: tuple[float, float]  # beats per minute
    rhythm: tuple[tuple[float, float], ...]  # (note length in beats, weight)
    legato: tuple[float, float]  # sounding share of a note's slot
    rest_prob: float  # chance that a slot is a rest
    velocity: tuple[int, int]
    chord_prob: float = 0.0
    vibrato_cc: int = 0  # MIDI CC1 (mod wheel) value for soundfont vibrato
    slide: float = 0.0  # semitones of a pitch-bend slide into each note (erhu)
    timbre: Timbre = field(default_factory=Timbre)
    # look
    shape: str = "circle"
    color: tuple[float, float, float] = (1.0, 0.0, 0.0)
    color2: tuple[float, float, float] = (0.5, 0.0, 0.0)
    texture: str = "solid"  # solid | stripes | checks | dots | gradient
    texture_angle: float = 0.0  # degrees
    texture_period: float = 0.6  # in object radii

    @property
    def handmade_only(self) -> bool:
        return self.kind != "gm"


def _rgb(h: str) -> tuple[float, float, float]:
    h = h.lstrip("#")
    return tuple(round(int(h[i:i + 2], 16) / 255.0, 4) for i in (0, 2, 4))  # type: ignore[return-value]


_SUSTAINED = ((0.5, 2.5), (1.0, 3.0), (1.5, 1.0), (2.0, 1.2))
_MEDIUM = ((0.5, 3.5), (1.0, 3.5), (0.25, 0.7), (1.5, 0.8), (2.0, 0.6))
_FAST = ((0.25, 2.0), (0.5, 4.0), (1.0, 2.0), (0.75, 0.5))

CLASSES: list[SourceClass] = [
    SourceClass(
        "accordion", "gm", 21, pitch=(55, 79), tempo=(80, 120), rhythm=_MEDIUM, legato=(0.8, 0.95),
        rest_prob=0.15, velocity=(75, 110), chord_prob=0.35,
        timbre=Timbre(harmonics=(1, .7, .8, .5, .45, .35, .3, .2, .15, .12), attack=0.04, decay=0.1,
                      sustain=0.9, release=0.08, detune=6.0),
        shape="square", color=_rgb("d92b2b"), color2=_rgb("f2e6d0"), texture="stripes",
        texture_angle=0, texture_period=0.5),
    SourceClass(
        "acoustic_guitar", "gm", 24, pitch=(45, 74), tempo=(90, 140), rhythm=_FAST, legato=(0.9, 1.0),
        rest_prob=0.12, velocity=(70, 115), chord_prob=0.2,
        timbre=Timbre(harmonics=(1, .8, .55, .4, .3, .25, .18, .12, .08), attack=0.003, sustain=1.0,
                      release=0.06, pluck=2.5),
        shape="heart", color=_rgb("e8892a"), color2=_rgb("5a3210"), texture="dots",
        texture_period=0.7),
    SourceClass(
        "cello", "gm", 42, pitch=(36, 62), tempo=(66, 100), rhythm=_SUSTAINED, legato=(0.85, 0.98),
        rest_prob=0.12, velocity=(70, 105), vibrato_cc=50,
        timbre=Timbre(harmonics=tuple(1.0 / k * (1.6 if 3 <= k <= 5 else 1.0) for k in range(1, 15)),
                      attack=0.09, decay=0.2, sustain=0.85, release=0.12, vibrato=(5.0, 18.0),
                      noise=0.02),
        shape="ellipse", color=_rgb("8c2d14"), color2=_rgb("d9a066"), texture="gradient",
        texture_angle=90),
    SourceClass(
        "clarinet", "gm", 71, pitch=(50, 77), tempo=(70, 115), rhythm=_MEDIUM, legato=(0.75, 0.95),
        rest_prob=0.15, velocity=(70, 105),
        timbre=Timbre(harmonics=(1, .05, .6, .04, .35, .03, .2, .02, .12, .01, .06), attack=0.04,
                      decay=0.15, sustain=0.85, release=0.06, noise=0.01),
        shape="capsule", color=_rgb("7a3fc4"), color2=_rgb("d8c4f2"), texture="checks",
        texture_period=0.55),
    SourceClass(
        "erhu", "gm", 110, pitch=(62, 86), tempo=(66, 100), rhythm=_SUSTAINED, legato=(0.85, 0.98),
        rest_prob=0.12, velocity=(70, 105), vibrato_cc=80, slide=0.8,
        timbre=Timbre(harmonics=tuple((1.0 / k) * (1.5 if k in (2, 3, 6) else 1.0) for k in range(1, 13)),
                      attack=0.07, decay=0.2, sustain=0.85, release=0.1, vibrato=(6.0, 35.0),
                      vibrato_delay=0.08, noise=0.03),
        shape="hexagon", color=_rgb("14a098"), color2=_rgb("0a4a46"), texture="stripes",
        texture_angle=45, texture_period=0.45),
    SourceClass(
        "flute", "gm", 73, pitch=(67, 93), tempo=(75, 120), rhythm=_MEDIUM, legato=(0.75, 0.95),
        rest_prob=0.15, velocity=(65, 100),
        timbre=Timbre(harmonics=(1, .35, .12, .05, .02), attack=0.06, decay=0.2, sustain=0.8,
                      release=0.08, vibrato=(5.0, 12.0), noise=0.08),
        shape="ring", color=_rgb("7cc8f0"), color2=_rgb("e8f6ff"), texture="solid"),
    SourceClass(
        "saxophone", "gm", 65, pitch=(49, 76), tempo=(80, 130), rhythm=_MEDIUM, legato=(0.7, 0.95),
        rest_prob=0.15, velocity=(75, 115),
        timbre=Timbre(harmonics=(1, .9, .7, .6, .5, .4, .35, .25, .2, .15), attack=0.03, decay=0.15,
                      sustain=0.8, release=0.07, vibrato=(5.0, 10.0), noise=0.02),
        shape="star", color=_rgb("e6b817"), color2=_rgb("7a5a00"), texture="dots",
        texture_period=0.5),
    SourceClass(
        "trumpet", "gm", 56, pitch=(55, 80), tempo=(85, 130), rhythm=_MEDIUM, legato=(0.6, 0.9),
        rest_prob=0.18, velocity=(80, 120),
        timbre=Timbre(harmonics=(1, .9, .85, .75, .6, .5, .4, .3, .25, .2, .15, .1), attack=0.025,
                      decay=0.1, sustain=0.85, release=0.06),
        shape="triangle", color=_rgb("f2e64d"), color2=_rgb("b38600"), texture="gradient",
        texture_angle=0),
    SourceClass(
        "tuba", "gm", 58, pitch=(29, 53), tempo=(66, 104), rhythm=_SUSTAINED, legato=(0.6, 0.9),
        rest_prob=0.15, velocity=(80, 115),
        timbre=Timbre(harmonics=(1, .6, .35, .2, .1, .05), attack=0.06, decay=0.15, sustain=0.85,
                      release=0.1),
        shape="circle", color=_rgb("2a4fd9"), color2=_rgb("9fb4ff"), texture="checks",
        texture_period=0.6),
    SourceClass(
        "violin", "gm", 40, pitch=(55, 88), tempo=(70, 120), rhythm=_MEDIUM, legato=(0.85, 0.98),
        rest_prob=0.12, velocity=(70, 110), vibrato_cc=60,
        timbre=Timbre(harmonics=tuple(1.0 / k ** 0.9 for k in range(1, 17)), attack=0.06, decay=0.2,
                      sustain=0.85, release=0.1, vibrato=(6.0, 25.0), noise=0.02),
        shape="diamond", color=_rgb("d93f9e"), color2=_rgb("ffd6ee"), texture="gradient",
        texture_angle=135),
    SourceClass(
        "xylophone", "gm", 13, pitch=(65, 96), tempo=(100, 150), rhythm=_FAST, legato=(0.9, 1.0),
        rest_prob=0.1, velocity=(75, 120),
        timbre=Timbre(harmonics=(1, .35, .12), ratios=(1.0, 3.0, 6.2), attack=0.001, sustain=1.0,
                      release=0.05, pluck=7.0, noise=0.05),
        shape="cross", color=_rgb("3fbf4a"), color2=_rgb("0f5a16"), texture="stripes",
        texture_angle=90, texture_period=0.5),
    SourceClass(
        "drums", "drums", None, pitch=(36, 36), tempo=(85, 140), rhythm=((0.5, 1.0),), legato=(1, 1),
        rest_prob=0.1, velocity=(70, 120),
        shape="pentagon", color=_rgb("8fa61c"), color2=_rgb("e6f2a6"), texture="checks",
        texture_period=0.45),
    SourceClass(
        "theremin", "theremin", None, pitch=(60, 84), tempo=(62, 96), rhythm=_SUSTAINED,
        legato=(0.85, 1.0), rest_prob=0.15, velocity=(80, 110),
        shape="crescent", color=_rgb("30d9a0"), color2=_rgb("0b5c42"), texture="gradient",
        texture_angle=45),
    SourceClass(
        "bird", "bird", None, pitch=(0, 0), tempo=(60, 60), rhythm=((1.0, 1.0),), legato=(1, 1),
        rest_prob=0.0, velocity=(70, 120),
        shape="chevron", color=_rgb("f27a6b"), color2=_rgb("fff0e0"), texture="dots",
        texture_period=0.45),
]

CLASS_NAMES = [c.name for c in CLASSES]
_ALIASES = {"guitar": "acoustic_guitar", "acoustic guitar": "acoustic_guitar", "sax": "saxophone",
            "drum": "drums", "percussion": "drums", "whistle": "bird", "chirp": "bird"}


def class_index(name_or_id: Union[int, str, SourceClass]) -> int:
    """Index of a class in :data:`CLASSES` from its index, name (a few aliases too) or spec."""
    if isinstance(name_or_id, SourceClass):
        return CLASSES.index(name_or_id)
    if isinstance(name_or_id, (int, np.integer)):
        i = int(name_or_id)
        if not 0 <= i < len(CLASSES):
            raise DataError(f"class id {i} is out of range (0..{len(CLASSES) - 1})")
        return i
    key = str(name_or_id).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, _ALIASES.get(key.replace("_", " "), key))
    if key in CLASS_NAMES:
        return CLASS_NAMES.index(key)
    raise DataError(f"unknown source class '{name_or_id}' (known: {', '.join(CLASS_NAMES)})")


# --------------------------------------------------------------------------------------------
# Composition: notes and onsets (backend independent)
# --------------------------------------------------------------------------------------------

MODES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "pentatonic": (0, 2, 4, 7, 9),
    "minor_pentatonic": (0, 3, 5, 7, 10),
}
MODE_NAMES = tuple(MODES)


@dataclass
class Note:
    start: int  # sample, on the BLOCK grid
    length: int  # samples the note is held (note-off at start + length)
    pitch: float  # MIDI note number (hand-made classes may use fractional pitches)
    velocity: int
    chord: tuple[float, ...] = ()  # extra pitches struck with it
    extra: dict = field(default_factory=dict)  # per-kind parameters (drum voice, chirp sweep...)


def random_key(rng: np.random.Generator) -> tuple[int, str]:
    """A (root pitch class, mode) pair, e.g. (2, "minor")."""
    return int(rng.integers(0, 12)), str(MODE_NAMES[int(rng.integers(0, len(MODE_NAMES)))])


def _q(t: float, sr: int) -> int:
    return int(round(t * sr / BLOCK)) * BLOCK


def compose(spec: SourceClass, rng: np.random.Generator, duration: float, sample_rate: int,
            key: Optional[tuple[int, str]] = None, tempo: Optional[float] = None) -> list[Note]:
    """The notes of one source (its onsets are the notes' starts).

    A phrase with too few onsets for the pulses to mean anything (fewer than one per 1.2 s,
    at most 3 asked) is composed again from the same generator.
    """
    if key is None:
        key = random_key(rng)
    need = max(1, min(3, int(duration / 1.2)))
    notes: list[Note] = []
    for _ in range(8):
        notes = _compose_once(spec, rng, duration, sample_rate, key, tempo)
        if len(onsets_of(notes, sample_rate)) >= need:
            break
    return notes


def _compose_once(spec: SourceClass, rng: np.random.Generator, duration: float, sample_rate: int,
                  key: tuple[int, str], tempo: Optional[float]) -> list[Note]:
    if spec.kind == "drums":
        return _compose_drums(spec, rng, duration, sample_rate, tempo)
    if spec.kind == "bird":
        return _compose_bird(spec, rng, duration, sample_rate)
    root, mode = key
    scale = MODES.get(mode, MODES["major"])
    lo, hi = spec.pitch
    pitches = [p for p in range(lo, hi + 1) if (p - root) % 12 in scale]
    bpm = float(tempo) if tempo else float(rng.uniform(*spec.tempo))
    beat = 60.0 / bpm
    durs = np.array([d for d, _ in spec.rhythm])
    w = np.array([w for _, w in spec.rhythm], dtype=float)
    w /= w.sum()
    t = float(rng.uniform(0.0, min(0.6, 0.15 * duration)))
    idx = int(rng.integers(len(pitches) // 4, max(len(pitches) // 4 + 1, 3 * len(pitches) // 4)))
    # a longer pause somewhere in the phrase (a stretch where this source is silent)
    pause_at = float(rng.uniform(0.3, 0.75) * duration) if duration >= 2.5 and rng.random() < 0.4 else None
    steps = np.array([-4, -2, -1, 0, 1, 2, 4])
    step_p = np.array([0.06, 0.2, 0.24, 0.06, 0.24, 0.14, 0.06])
    notes: list[Note] = []
    end = duration - 0.06
    while t < end:
        slot = float(durs[rng.choice(len(durs), p=w)]) * beat
        if pause_at is not None and t >= pause_at:
            t += float(rng.uniform(0.3, 0.8))
            pause_at = None
            continue
        if notes and rng.random() < spec.rest_prob:
            t += slot
            continue
        idx = idx + int(rng.choice(steps, p=step_p))
        if idx < 0:
            idx = -idx
        if idx >= len(pitches):
            idx = 2 * (len(pitches) - 1) - idx
        idx = int(np.clip(idx, 0, len(pitches) - 1))
        vel = int(rng.integers(spec.velocity[0], spec.velocity[1] + 1))
        leg = float(rng.uniform(*spec.legato))
        chord: tuple[float, ...] = ()
        if spec.chord_prob and rng.random() < spec.chord_prob:
            chord = tuple(float(pitches[j]) for j in (idx - 2, idx - 4) if 0 <= j < len(pitches))
        start = _q(t, sample_rate)
        length = max(BLOCK, _q(slot * leg, sample_rate))
        notes.append(Note(start, length, float(pitches[idx]), vel, chord))
        t += slot
    if not notes:  # very short clips: at least one note
        notes.append(Note(_q(0.02, sample_rate), max(BLOCK, _q(0.5 * duration, sample_rate)),
                          float(pitches[len(pitches) // 2]), int(np.mean(spec.velocity))))
    return notes


def _compose_drums(spec, rng, duration, sr, tempo=None) -> list[Note]:
    bpm = float(tempo) if tempo else float(rng.uniform(*spec.tempo))
    step = 60.0 / bpm / 2  # eighth notes
    # one-bar pattern of 8 eighths: 0 rest, 1 kick, 2 snare, 3 hat
    pattern = np.zeros(8, int)
    pattern[[0, 4]] = 1
    pattern[[2, 6]] = 2
    for j in range(8):
        if pattern[j] == 0 and rng.random() < 0.55:
            pattern[j] = 3
        elif pattern[j] == 0 and rng.random() < 0.25:
            pattern[j] = 1
    t = float(rng.uniform(0.0, min(0.5, 0.15 * duration)))
    pause_at = float(rng.uniform(0.3, 0.75) * duration) if duration >= 2.5 and rng.random() < 0.5 else None
    notes = []
    j = 0
    while t < duration - 0.05:
        if pause_at is not None and t >= pause_at:
            t += float(rng.uniform(0.4, 1.0))
            pause_at = None
            continue
        voice = int(pattern[j % 8])
        if voice and (not notes or rng.random() >= spec.rest_prob):
            vel = int(rng.integers(*spec.velocity)) - (25 if voice == 3 else 0)
            notes.append(Note(_q(t, sr), _q(0.1, sr), 36.0, max(30, vel),
                              extra={"voice": ("kick", "snare", "hat")[voice - 1],
                                     "tone": float(rng.uniform(0.85, 1.2))}))
        j += 1
        t += step
    if not notes:
        notes.append(Note(_q(0.02, sr), _q(0.1, sr), 36.0, 100, extra={"voice": "snare", "tone": 1.0}))
    return notes


def _compose_bird(spec, rng, duration, sr) -> list[Note]:
    nyq = 0.45 * sr
    notes = []
    t = float(rng.uniform(0.0, min(0.5, 0.15 * duration)))
    while t < duration - 0.08:
        n = int(rng.integers(2, 6))
        f0 = float(rng.uniform(1500, 3500))
        f1 = f0 * float(rng.choice([0.6, 0.75, 1.3, 1.6]))
        dur = float(rng.uniform(0.05, 0.14))
        gap = float(rng.uniform(0.05, 0.11))
        for _ in range(n):
            if t >= duration - 0.06:
                break
            a, b = min(f0 * rng.uniform(0.95, 1.05), nyq), min(f1 * rng.uniform(0.95, 1.05), nyq)
            notes.append(Note(_q(t, sr), max(BLOCK, _q(dur, sr)), 0.0,
                              int(rng.integers(*spec.velocity)), extra={"f0": float(a), "f1": float(b)}))
            t += dur + gap
        t += float(rng.uniform(0.3, 1.0))
    if not notes:
        notes.append(Note(_q(0.02, sr), _q(0.08, sr), 0.0, 100, extra={"f0": min(2000.0, nyq), "f1": min(3000.0, nyq)}))
    return notes


def onsets_of(notes: Sequence[Note], sample_rate: int, min_gap: float = 0.03) -> np.ndarray:
    """Note starts in seconds (float64, sorted, starts closer than ``min_gap`` merged)."""
    starts = sorted({n.start for n in notes})
    out: list[float] = []
    for s in starts:
        t = s / sample_rate
        if not out or t - out[-1] >= min_gap:
            out.append(t)
    return np.asarray(out, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------

_SOUNDFONTS = (
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
_fluid_state: dict = {}
_fluid_lock = threading.Lock()


def find_soundfont() -> Optional[str]:
    """The General-MIDI soundfont to use: $AVSTUDIO_SOUNDFONT, else a Debian default."""
    env = os.environ.get("AVSTUDIO_SOUNDFONT")
    if env:
        return env if os.path.isfile(env) else None
    for p in _SOUNDFONTS:
        if os.path.isfile(p):
            return p
    return None


def _fluid():
    """(fluidsynth module, write_float C function or None, soundfont path) or None if unusable."""
    key = os.environ.get("AVSTUDIO_SOUNDFONT", "")
    if key in _fluid_state:
        return _fluid_state[key]
    state = None
    sf = find_soundfont()
    if sf is not None:
        try:
            import fluidsynth  # type: ignore

            if not hasattr(fluidsynth, "Synth"):
                raise ImportError("not pyfluidsynth")
            wf = None
            lib = getattr(fluidsynth, "_fl", None)
            if lib is not None and hasattr(lib, "fluid_synth_write_float"):
                wf = lib.fluid_synth_write_float
                wf.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                               ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
                wf.restype = ctypes.c_int
            state = (fluidsynth, wf, sf)
        except (ImportError, OSError, AttributeError):
            state = None
    _fluid_state[key] = state
    return state


def reset_backend_cache() -> None:
    """Forget what was found about fluidsynth (tests; after installing a soundfont)."""
    _fluid_state.clear()


def resolve_backend(backend: str = "auto") -> str:
    """"fluidsynth" or "handmade" for a requested backend ("auto" picks fluidsynth if usable)."""
    if backend not in BACKENDS:
        raise DataError(f"unknown synth backend '{backend}' (use one of {', '.join(BACKENDS)})")
    if backend == "handmade":
        return "handmade"
    ok = _fluid() is not None
    if backend == "fluidsynth" and not ok:
        raise DataError("the fluidsynth backend needs pyfluidsynth, libfluidsynth and a General-MIDI "
                        "soundfont (e.g. Debian's timgm6mb-soundfont, or $AVSTUDIO_SOUNDFONT); "
                        "use the handmade backend instead")
    return "fluidsynth" if ok else "handmade"


def backend_info(backend: str) -> dict:
    """What the sidecar records about a resolved backend."""
    if backend == "fluidsynth":
        st = _fluid()
        return {"backend": "fluidsynth", "soundfont": os.path.basename(st[2]) if st else None}
    return {"backend": "handmade", "soundfont": None}


class _FluidHost:
    """A per-process holder of the loaded soundfont, shared by throw-away synths.

    Fluidsynth voices keep state (filters) from note to note, so a synth that rendered one
    source would render the next one slightly differently. Each source therefore gets a fresh
    synth; the soundfont (~30 ms to load) is loaded once and lent to it
    (``fluid_synth_add_sfont`` / ``fluid_synth_remove_sfont``, documented for this use).
    """

    def __init__(self, fs, lib, sf_path: str):
        self.fs, self.lib, self.sf_path = fs, lib, sf_path
        self.pid = os.getpid()
        self.sfont = None
        self.holder = None
        need = ("fluid_synth_get_sfont_by_id", "fluid_synth_add_sfont", "fluid_synth_remove_sfont",
                "fluid_set_log_function")
        if lib is not None and all(hasattr(lib, n) for n in need):
            lib.fluid_synth_get_sfont_by_id.argtypes = [ctypes.c_void_p, ctypes.c_int]
            lib.fluid_synth_get_sfont_by_id.restype = ctypes.c_void_p
            lib.fluid_synth_add_sfont.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
            lib.fluid_synth_add_sfont.restype = ctypes.c_int
            lib.fluid_synth_remove_sfont.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
            lib.fluid_synth_remove_sfont.restype = ctypes.c_int
            lib.fluid_set_log_function.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
            lib.fluid_set_log_function.restype = ctypes.c_void_p
            holder = self._new_synth(16000)
            sfid = holder.sfload(sf_path)
            if sfid >= 0:
                sfont = lib.fluid_synth_get_sfont_by_id(holder.synth, sfid)
                if sfont:
                    self.holder, self.sfont = holder, sfont
            if self.holder is None:
                holder.delete()

    def _new_synth(self, sr: int):
        return self.fs.Synth(gain=0.5, samplerate=float(sr), channels=16,
                             **{"synth.reverb.active": 0, "synth.chorus.active": 0})

    def open(self, sr: int):
        """(synth, sfont id) ready for program_select."""
        synth = self._new_synth(sr)
        if self.sfont is not None:
            sfid = self.lib.fluid_synth_add_sfont(synth.synth, self.sfont)
        else:
            sfid = synth.sfload(self.sf_path)
        if sfid < 0:
            synth.delete()
            raise DataError(f"cannot load soundfont {self.sf_path}")
        return synth, sfid

    def close(self, synth) -> None:
        if self.sfont is not None:
            # removing the soundfont re-selects presets on every channel and warns about each
            self.lib.fluid_set_log_function(2, None, None)  # FLUID_WARN: silent
            self.lib.fluid_synth_remove_sfont(synth.synth, self.sfont)
        synth.delete()


_hosts: dict = {}


def _fluid_host() -> _FluidHost:
    fs, _, sf_path = _fluid()
    key = (os.getpid(), sf_path)
    host = _hosts.get(key)
    if host is None:
        host = _hosts[key] = _FluidHost(fs, getattr(fs, "_fl", None), sf_path)
    return host


def _render_fluidsynth(spec: SourceClass, notes: Sequence[Note], n: int, sr: int) -> np.ndarray:
    """Render the notes with a fresh synth (see :class:`_FluidHost`): the result is a function
    of the notes alone, whatever was rendered before in the process."""
    _, wf, _ = _fluid()
    events: list[tuple[int, int, str, tuple]] = []  # (sample, order, what, args)
    bend_per_semi = 4096  # default pitch-wheel range: 2 semitones
    for nt in notes:
        keys = [int(round(nt.pitch))] + [int(round(p)) for p in nt.chord]
        if spec.slide:
            steps = 5
            for s in range(steps):
                frac = 1.0 - s / steps
                events.append((nt.start + s * BLOCK * 2, 0, "bend", (int(-spec.slide * frac * bend_per_semi),)))
            events.append((nt.start + steps * BLOCK * 2, 0, "bend", (0,)))
        for k in keys:
            events.append((nt.start, 1, "on", (k, nt.velocity)))
            events.append((nt.start + nt.length, -1, "off", (k,)))
    events.sort(key=lambda e: (e[0], e[1]))
    out = np.zeros((2, n), dtype=np.float32)
    with _fluid_lock:
        host = _fluid_host()
        synth, sfid = host.open(sr)
        try:
            synth.program_select(0, sfid, 0, int(spec.program or 0))
            if spec.vibrato_cc:
                synth.cc(0, 1, int(spec.vibrato_cc))
            pos = 0

            def advance(upto: int) -> None:
                nonlocal pos
                upto = min(upto, n)
                if upto <= pos:
                    return
                m = upto - pos
                if wf is not None:
                    wf(synth.synth, m, out[0, pos:].ctypes.data, 0, 1, out[1, pos:].ctypes.data, 0, 1)
                else:  # int16 interleaved stereo
                    s16 = np.asarray(synth.get_samples(m), dtype=np.int16).reshape(-1, 2)
                    out[:, pos:upto] = s16.T.astype(np.float32) / 32768.0
                pos = upto

            for t, _, what, args in events:
                if t >= n:
                    break
                advance(t)
                if what == "on":
                    synth.noteon(0, *args)
                elif what == "off":
                    synth.noteoff(0, *args)
                else:
                    synth.pitch_bend(0, *args)
            advance(n)
        finally:
            host.close(synth)
    return out.mean(axis=0)


def _adsr(length: int, hold: int, sr: int, tb: Timbre) -> np.ndarray:
    t = np.arange(length, dtype=np.float32) / sr
    if tb.pluck > 0:
        env = np.exp(-t * tb.pluck).astype(np.float32)
        env *= np.minimum(1.0, t / max(tb.attack, 1e-4))
    else:
        a = max(tb.attack, 1e-4)
        env = np.where(t < a, t / a, tb.sustain + (1 - tb.sustain) * np.exp(-(t - a) / max(tb.decay, 1e-3)))
        env = env.astype(np.float32)
    if hold < length:
        rel = np.exp(-(t[hold:] - t[hold]) / max(tb.release / 4.0, 1e-3)).astype(np.float32)
        env[hold:] = env[hold] * rel if hold > 0 else 0.0
    return env


def _tone(f0: float, length: int, sr: int, tb: Timbre, rng: np.random.Generator,
          glide_from: Optional[float] = None) -> np.ndarray:
    """One note of a harmonic (or inharmonic) stack, without its envelope."""
    t = np.arange(length, dtype=np.float64) / sr
    f = np.full(length, f0)
    if glide_from is not None:
        g = np.clip(t / 0.07, 0, 1)
        f = glide_from * (f0 / glide_from) ** g
    rate, cents = tb.vibrato
    if cents:
        ramp = np.clip((t - tb.vibrato_delay) / 0.2, 0, 1)
        f = f * 2.0 ** (cents / 1200.0 * ramp * np.sin(2 * np.pi * rate * t + rng.uniform(0, 6.28)))
    phase = 2 * np.pi * np.cumsum(f) / sr
    ratios = tb.ratios or tuple(range(1, len(tb.harmonics) + 1))
    y = np.zeros(length)
    nyq = 0.45 * sr
    for k, (r, a) in enumerate(zip(ratios, tb.harmonics)):
        if f0 * r >= nyq or a <= 0:
            continue
        part = a * np.sin(r * phase + rng.uniform(0, 6.28))
        if tb.pluck > 0 and k > 0:
            part *= np.exp(-t * tb.pluck * (r ** 0.7 - 1.0))
        y += part
        if tb.detune:
            y += a * 0.8 * np.sin(r * phase * 2.0 ** (tb.detune / 1200.0) + rng.uniform(0, 6.28))
    if tb.noise:
        nz = rng.standard_normal(length)
        nz = np.convolve(nz, np.ones(4) / 4, mode="same")  # a little softer than white
        y += tb.noise * np.sqrt(len(tb.harmonics)) * nz
    return y


def _midi_hz(p: float) -> float:
    return 440.0 * 2.0 ** ((p - 69.0) / 12.0)


def _render_handmade(spec: SourceClass, notes: Sequence[Note], n: int, sr: int,
                     rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, dtype=np.float64)
    if spec.kind == "drums":
        for nt in notes:
            _add(out, nt.start, _drum_hit(nt, sr, rng))
        return out.astype(np.float32)
    if spec.kind == "bird":
        for nt in notes:
            L = nt.length
            t = np.arange(L) / sr
            f = nt.extra["f0"] * (nt.extra["f1"] / nt.extra["f0"]) ** (t / (L / sr))
            ph = 2 * np.pi * np.cumsum(f) / sr
            env = np.sin(np.pi * np.arange(L) / L) ** 2
            y = (np.sin(ph) + 0.15 * np.sin(2 * ph)) * env * (nt.velocity / 127.0)
            _add(out, nt.start, y)
        return out.astype(np.float32)
    if spec.kind == "theremin":
        tb = Timbre(harmonics=(1, .25, .08), attack=0.08, decay=0.3, sustain=0.9, release=0.15,
                    vibrato=(float(rng.uniform(5.0, 7.0)), float(rng.uniform(30, 55))), vibrato_delay=0.05)
        prev = None
        for nt in notes:
            rel = int(tb.release * sr)
            L = nt.length + rel
            f0 = _midi_hz(nt.pitch)
            glide = prev if prev is not None and rng.random() < 0.6 else None
            y = _tone(f0, L, sr, tb, rng, glide_from=glide) * _adsr(L, nt.length, sr, tb)
            _add(out, nt.start, y * (nt.velocity / 127.0) ** 1.5)
            prev = f0
        return out.astype(np.float32)
    tb = spec.timbre
    for nt in notes:
        rel = int(max(tb.release, 0.02) * sr)
        L = nt.length + rel
        env = _adsr(L, nt.length, sr, tb)
        amp = (nt.velocity / 127.0) ** 1.5
        glide = _midi_hz(nt.pitch - spec.slide) if spec.slide else None
        for p in (nt.pitch,) + tuple(nt.chord):
            y = _tone(_midi_hz(p), L, sr, tb, rng, glide_from=glide if p == nt.pitch else None)
            _add(out, nt.start, y * env * amp)
    return out.astype(np.float32)


def _add(out: np.ndarray, start: int, y: np.ndarray) -> None:
    end = min(len(out), start + len(y))
    if end > start:
        out[start:end] += y[: end - start]


def _drum_hit(nt: Note, sr: int, rng: np.random.Generator) -> np.ndarray:
    voice, tone = nt.extra.get("voice", "snare"), nt.extra.get("tone", 1.0)
    amp = (nt.velocity / 127.0) ** 1.2
    if voice == "kick":
        L = int(0.35 * sr)
        t = np.arange(L) / sr
        f = 45 * tone + 110 * tone * np.exp(-t / 0.03)
        y = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.12)
        y[: int(0.004 * sr)] += 0.5 * rng.standard_normal(int(0.004 * sr))
        return amp * y
    if voice == "snare":
        L = int(0.25 * sr)
        t = np.arange(L) / sr
        nz = rng.standard_normal(L)
        nz = nz - np.convolve(nz, np.ones(3) / 3, mode="same")  # brighter
        body = np.sin(2 * np.pi * 185 * tone * t) * np.exp(-t / 0.04)
        return amp * (0.9 * nz * np.exp(-t / 0.07) + 0.6 * body)
    L = int(0.08 * sr)
    t = np.arange(L) / sr
    nz = rng.standard_normal(L)
    nz = np.diff(nz, prepend=0.0)  # high-passed
    return amp * 0.45 * nz * np.exp(-t / (0.02 * tone))


def active_rms(x: np.ndarray, sample_rate: int, floor_db: float = -30.0) -> float:
    """RMS over the active part of a signal (50 ms frames within ``floor_db`` of the loudest)."""
    hop = max(1, int(0.05 * sample_rate))
    m = len(x) // hop
    if m == 0:
        return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    fr = np.square(x[: m * hop].astype(np.float64)).reshape(m, hop).mean(axis=1)
    top = fr.max()
    if top <= 0:
        return 0.0
    act = fr[fr >= top * 10 ** (floor_db / 10.0)]
    return float(np.sqrt(act.mean()))


@dataclass
class SourceAudio:
    wave: np.ndarray  # float32 [N], active RMS = REF_RMS
    onsets: np.ndarray  # float64 seconds
    notes: list[Note]
    backend: str  # "fluidsynth" | "handmade"


def render_source(class_id: Union[int, str], rng: np.random.Generator, duration: float,
                  sample_rate: int, backend: str = "auto", key: Optional[tuple[int, str]] = None,
                  tempo: Optional[float] = None) -> SourceAudio:
    """Compose and render one source of a class; the wave is normalised to REF_RMS."""
    spec = CLASSES[class_index(class_id)]
    n = int(round(duration * sample_rate))
    notes = compose(spec, rng, duration, sample_rate, key=key, tempo=tempo)
    used = "handmade"
    # noise/phases of the hand-made timbres come from a generator derived from the composition
    # generator, so what is drawn for the notes does not depend on the backend
    sub = np.random.default_rng(rng.integers(0, 2 ** 63))
    if spec.kind == "gm" and resolve_backend(backend) == "fluidsynth":
        wave = _render_fluidsynth(spec, notes, n, sample_rate)
        used = "fluidsynth"
    else:
        wave = _render_handmade(spec, notes, n, sample_rate, sub)
    fade = min(n, int(0.01 * sample_rate))
    if fade:
        wave[n - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    r = active_rms(wave, sample_rate)
    if r > 0:
        wave = wave * np.float32(REF_RMS / r)
    return SourceAudio(wave.astype(np.float32), onsets_of(notes, sample_rate), notes, used)


def render_source_audio(class_id: Union[int, str], rng: np.random.Generator, duration: float,
                        sample_rate: int = 16000, backend: str = "auto",
                        key: Optional[tuple[int, str]] = None) -> tuple[np.ndarray, np.ndarray]:
    """One source of a class: ``(wave float32 [N], onsets float64 seconds)``.

    The wave is loudness-normalised (RMS over its active part = -20 dBFS). ``backend`` is
    "auto" (fluidsynth when usable, else hand-made), "fluidsynth" or "handmade".
    """
    src = render_source(class_id, rng, duration, sample_rate, backend=backend, key=key)
    return src.wave, src.onsets


# --------------------------------------------------------------------------------------------
# Off-screen noise
# --------------------------------------------------------------------------------------------

NOISE_KINDS = ("pink", "brown", "hum", "wind")


def offscreen_noise(rng: np.random.Generator, n: int, sample_rate: int, kind: Optional[str] = None) -> tuple[np.ndarray, str]:
    """A background noise belonging to no object, RMS = REF_RMS (scale it by the level)."""
    if kind is None:
        kind = str(NOISE_KINDS[int(rng.integers(0, len(NOISE_KINDS)))])
    if n == 0:
        return np.zeros(0, np.float32), kind
    if kind in ("pink", "brown", "wind"):
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1.0 / sample_rate)
        f[0] = f[1] if n > 1 else 1.0
        shape = 1.0 / np.sqrt(f) if kind == "pink" else 1.0 / f
        if kind == "wind":
            shape = shape * np.exp(-f / 600.0)
        y = np.fft.irfft(spec * shape, n)
        if kind == "wind":
            t = np.arange(n) / sample_rate
            y *= 1.0 + 0.6 * np.sin(2 * np.pi * rng.uniform(0.15, 0.5) * t + rng.uniform(0, 6.28))
    else:  # mains hum + a little hiss
        t = np.arange(n) / sample_rate
        base = float(rng.choice([50.0, 60.0]))
        y = sum((0.6 ** k) * np.sin(2 * np.pi * base * (k + 1) * t + rng.uniform(0, 6.28)) for k in range(6))
        y = y + 0.05 * rng.standard_normal(n)
    y = y - y.mean()
    r = float(np.sqrt(np.mean(y ** 2)))
    if r > 0:
        y = y * (REF_RMS / r)
    return y.astype(np.float32), kind
