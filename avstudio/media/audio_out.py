"""Audio output for playback (Qt-free): a sounddevice stream, or a silent sink with a wall clock.

Both kinds share one interface, so playback code never branches on whether there is a
sound card::

    out = open_output(16000, channels=1, source=my_source)   # my_source(n) -> float32 [n]
    print(out.status)            # e.g. "No audio output device found: playing silently"
    out.start()
    ...  t = out.position_seconds  # the audio clock: drive the video from it
    out.stop(); out.close()

``source(nframes)`` is called from the audio thread with the number of frames wanted and
returns float32 ``[n]`` (mono, repeated to every channel) or ``[n, channels]``; a shorter
array is padded with silence (and ``None`` is silence). ``position_samples`` counts the
samples handed to the device (for the silent sink: elapsed wall time x rate), the clock
the GUI syncs frames to; subtract ``latency`` for what is being heard right now.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Optional

import numpy as np

Source = Callable[[int], Optional[np.ndarray]]

STATUS_OK = "Playing through {name}"
STATUS_DISABLED = "Audio disabled (--no-audio)"
STATUS_NO_DEVICE = "No audio output device found: playing silently"
STATUS_NO_PORTAUDIO = "No audio output (PortAudio library not found: {why}): playing silently"
STATUS_OPEN_FAILED = "Cannot open the audio output ({why}): playing silently"


def _import_sounddevice():
    """The sounddevice module, or raise ImportError/OSError (libportaudio missing)."""
    import sounddevice  # noqa: PLC0415 - optional, may raise OSError without libportaudio

    return sounddevice


def list_output_devices() -> list[dict]:
    """Output devices PortAudio sees: dicts with index, name, channels, default_samplerate,
    hostapi and default (bool). Empty when there is no sound card or no PortAudio."""
    try:
        sd = _import_sounddevice()
        devices = sd.query_devices()
        try:
            default_out = sd.default.device[1]
        except Exception:
            default_out = -1
        apis = sd.query_hostapis()
    except Exception:
        return []
    out = []
    for i, d in enumerate(devices):
        if int(d.get("max_output_channels", 0)) <= 0:
            continue
        api = d.get("hostapi", 0)
        out.append({
            "index": i,
            "name": d.get("name", f"device {i}"),
            "channels": int(d.get("max_output_channels", 0)),
            "default_samplerate": float(d.get("default_samplerate", 0) or 0),
            "hostapi": apis[api]["name"] if 0 <= api < len(apis) else str(api),
            "default": i == default_out,
        })
    return out


def _fit(data, frames: int, channels: int) -> np.ndarray:
    """``data`` from a source as float32 ``[frames, channels]`` (padded/trimmed)."""
    out = np.zeros((frames, channels), np.float32)
    if data is None:
        return out
    a = np.asarray(data, dtype=np.float32)
    if a.ndim == 1:
        n = min(frames, a.shape[0])
        out[:n] = a[:n, None]
    elif a.ndim == 2:
        if a.shape[1] not in (channels, 1) and a.shape[0] in (channels, 1):
            a = a.T  # [C, N] given
        n = min(frames, a.shape[0])
        c = min(channels, a.shape[1])
        out[:n, :c] = a[:n, :c]
        if a.shape[1] == 1 and channels > 1:
            out[:n] = a[:n, :1]
    return out


class AudioOutput:
    """Common interface of :class:`SoundDeviceOutput` and :class:`SilentOutput`."""

    available: bool = False
    status: str = ""

    def __init__(self, sample_rate: int, channels: int = 1, source: Optional[Source] = None):
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.source = source
        self.error: Optional[BaseException] = None  # last exception raised by the source
        self._lock = threading.Lock()

    def set_source(self, source: Optional[Source]) -> None:
        self.source = source

    @property
    def position_samples(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def position_seconds(self) -> float:
        return self.position_samples / float(self.sample_rate)

    @property
    def latency(self) -> float:
        return 0.0

    @property
    def active(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def reset(self, position_samples: int = 0) -> None:
        """Set the clock (e.g. after a seek). Works while running or stopped."""
        raise NotImplementedError  # pragma: no cover

    def start(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _pull(self, frames: int) -> np.ndarray:
        src = self.source
        if src is None:
            return np.zeros((frames, self.channels), np.float32)
        try:
            return _fit(src(frames), frames, self.channels)
        except Exception as exc:  # never let a source error kill the audio thread
            self.error = exc
            return np.zeros((frames, self.channels), np.float32)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.sample_rate} Hz x{self.channels}: {self.status}>"


class SilentOutput(AudioOutput):
    """No sound: the clock follows wall time (``time.monotonic``) while started.

    A background thread still pulls from ``source`` at the playback rate (data discarded) so
    code that feeds audio behaves as with a real device.
    """

    available = False

    def __init__(self, sample_rate: int, channels: int = 1, source: Optional[Source] = None,
                 status: str = STATUS_NO_DEVICE, block_seconds: float = 0.02,
                 consume: bool = True):
        super().__init__(sample_rate, channels, source)
        self.status = status
        self.block_seconds = float(block_seconds)
        self.consume = consume
        self._base = 0  # samples accumulated before the current run
        self._t0: Optional[float] = None  # monotonic time of start, None when stopped
        self._consumed = 0
        self._thread: Optional[threading.Thread] = None
        self._wake = threading.Event()

    @property
    def position_samples(self) -> int:
        with self._lock:
            if self._t0 is None:
                return self._base
            return self._base + int((time.monotonic() - self._t0) * self.sample_rate)

    @property
    def active(self) -> bool:
        return self._t0 is not None

    def reset(self, position_samples: int = 0) -> None:
        with self._lock:
            self._base = int(position_samples)
            self._consumed = int(position_samples)
            if self._t0 is not None:
                self._t0 = time.monotonic()

    def start(self) -> None:
        with self._lock:
            if self._t0 is not None:
                return
            self._t0 = time.monotonic()
            self._consumed = self._base
        if self.consume and (self._thread is None or not self._thread.is_alive()):
            self._wake.clear()
            self._thread = threading.Thread(target=self._run, name="avstudio-silent-audio",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while self.active:
            self._wake.wait(self.block_seconds)
            if not self.active:
                break
            target = self.position_samples
            n = target - self._consumed
            if n > 0:
                self._consumed = target
                if self.source is not None:
                    self._pull(n)

    def stop(self) -> None:
        with self._lock:
            if self._t0 is None:
                return
            self._base += int((time.monotonic() - self._t0) * self.sample_rate)
            self._t0 = None
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=1.0)
        self._thread = None

    def close(self) -> None:
        self.stop()


class SoundDeviceOutput(AudioOutput):
    """Playback through PortAudio (``sounddevice.OutputStream`` with a pull callback)."""

    available = True

    def __init__(self, sample_rate: int, channels: int = 1, source: Optional[Source] = None,
                 device=None, latency="low", blocksize: int = 0, _sd=None):
        super().__init__(sample_rate, channels, source)
        sd = _sd or _import_sounddevice()
        self._sd = sd
        self._pos = 0
        self._stream = sd.OutputStream(samplerate=self.sample_rate, channels=self.channels,
                                       dtype="float32", device=device, latency=latency,
                                       blocksize=blocksize, callback=self._callback)
        try:
            info = sd.query_devices(self._stream.device)
            name = info.get("name", "the audio device")
        except Exception:
            name = "the audio device"
        self.device_name = name
        self.status = STATUS_OK.format(name=name)

    def _callback(self, outdata, frames, time_info, status) -> None:  # audio thread
        outdata[:] = self._pull(frames)
        self._pos += frames

    @property
    def position_samples(self) -> int:
        return self._pos

    @property
    def latency(self) -> float:
        try:
            lat = self._stream.latency
            return float(lat if not isinstance(lat, (tuple, list)) else lat[-1])
        except Exception:
            return 0.0

    @property
    def active(self) -> bool:
        try:
            return bool(self._stream.active)
        except Exception:
            return False

    def reset(self, position_samples: int = 0) -> None:
        self._pos = int(position_samples)

    def start(self) -> None:
        if not self.active:
            self._stream.start()

    def stop(self) -> None:
        try:
            if self.active:
                self._stream.stop()
        except Exception:
            pass

    def close(self) -> None:
        self.stop()
        try:
            self._stream.close()
        except Exception:
            pass


def open_output(sample_rate: int, channels: int = 1, device=None, enabled: bool = True,
                source: Optional[Source] = None, latency="low") -> AudioOutput:
    """The best available output: a :class:`SoundDeviceOutput`, else a :class:`SilentOutput`
    whose ``status`` says why (disabled, no PortAudio, no device, device failed to open).

    ``AVSTUDIO_NO_AUDIO=1`` in the environment disables audio as ``enabled=False`` does.
    """
    if not enabled or os.environ.get("AVSTUDIO_NO_AUDIO", "").strip() not in ("", "0"):
        return SilentOutput(sample_rate, channels, source, status=STATUS_DISABLED)
    try:
        sd = _import_sounddevice()
    except (OSError, ImportError) as exc:
        why = " ".join(str(exc).split()) or type(exc).__name__
        return SilentOutput(sample_rate, channels, source,
                            status=STATUS_NO_PORTAUDIO.format(why=why))
    if not list_output_devices():
        return SilentOutput(sample_rate, channels, source, status=STATUS_NO_DEVICE)
    try:
        return SoundDeviceOutput(sample_rate, channels, source, device=device, latency=latency,
                                 _sd=sd)
    except Exception as exc:  # PortAudioError, ValueError (bad device / rate), ...
        why = " ".join(str(exc).split()) or type(exc).__name__
        return SilentOutput(sample_rate, channels, source, status=STATUS_OPEN_FAILED.format(why=why))
