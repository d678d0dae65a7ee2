"""Work-arounds for bugs of the Qt binding in use.

PySide6 6.12.0 on CPython < 3.12 returns borrowed references to the singletons it hands
back: every binding call that returns nothing (``update()``, ``setText()``,
``processEvents()``, ``QTimer.singleShot()``...) drops one reference to ``None``, and every
``signal.emit()`` one to ``True``. On 3.12+ these objects are immortal and nothing happens;
on 3.11 their counts fall with every call until CPython aborts with "Fatal Python error:
none_dealloc: deallocating None" (after ~20 s of playback here) or "bool_dealloc".

:func:`install_none_guard` detects the leak at start-up and, only then, gives ``None``,
``True`` and ``False`` a large reserve of references and tops them up from a daemon thread.
These objects are static and never freed, so extra references are harmless: this only keeps
CPython's bookkeeping from reaching zero. PySide6 <= 6.11.3 does not have the bug.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from typing import Optional

RESERVE = 1 << 24  # references added at start (~16 M leaked calls before the first top-up)
_SINGLETONS = (None, True, False)
_state: dict = {"installed": False, "baselines": None, "topups": 0, "leak_per_call": {}}
_lock = threading.Lock()


def _refcnt(obj):
    return ctypes.c_ssize_t.from_address(id(obj))


def measure_leaks(n: int = 200) -> dict[str, float]:
    """References lost per binding call: {"None": per void call, "True": per signal emit}."""
    from PySide6.QtCore import QCoreApplication, QObject, Signal

    class _Probe(QObject):
        sig = Signal(object)

    probe = _Probe()
    probe.sig.connect(lambda _x: None)
    out = {}
    before = sys.getrefcount(None)
    for _ in range(n):
        QCoreApplication.processEvents()  # returns nothing
    out["None"] = (before - sys.getrefcount(None)) / n
    before = sys.getrefcount(True)
    for _ in range(n):
        probe.sig.emit(0)
    out["True"] = (before - sys.getrefcount(True)) / n
    return out


def top_up() -> int:
    """Restore the singletons' reference counts to baseline + reserve. Returns what was added."""
    bases = _state["baselines"]
    if bases is None:
        return 0
    added = 0
    with _lock:
        for obj, base in zip(_SINGLETONS, bases, strict=True):
            rc = _refcnt(obj)
            deficit = base - rc.value
            if deficit > 0:
                rc.value += deficit
                added += deficit
        if added:
            _state["topups"] += 1
    return added


def install_none_guard(app=None, interval_ms: int = 500) -> bool:
    """Install the guard when the binding leaks references. Returns True if installed."""
    if _state["installed"]:
        return True
    if sys.version_info >= (3, 12):
        return False
    leaks = measure_leaks()
    _state["leak_per_call"] = leaks
    if max(leaks.values()) <= 0:
        return False
    with _lock:
        bases = []
        for obj in _SINGLETONS:
            rc = _refcnt(obj)
            rc.value += RESERVE
            bases.append(rc.value)
        _state["baselines"] = bases
    _state["installed"] = True
    # a daemon thread tops up (it works while the GUI thread is busy; worker threads leak too)
    th = threading.Thread(target=_loop, args=(interval_ms / 1000.0,), name="avstudio-refcount-guard",
                          daemon=True)
    th.start()
    return True


def _loop(interval: float) -> None:
    while True:
        time.sleep(interval)
        top_up()


def guard_state() -> dict:
    return dict(_state)


def current_deficit() -> Optional[int]:
    bases = _state["baselines"]
    if bases is None:
        return None
    return max(base - _refcnt(obj).value for obj, base in zip(_SINGLETONS, bases, strict=True))
