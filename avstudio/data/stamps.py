"""Who and when, as the clip library records them: the annotator's default name and UTC
timestamps (shared by :mod:`.library` and :mod:`.library_boxes`)."""

from __future__ import annotations

import getpass
from datetime import datetime, timezone


def now_iso() -> str:
    """UTC timestamp as stored in the library (ISO 8601, milliseconds, ``Z``)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def default_who() -> str:
    """The login name of the user (unknown when there is none)."""
    try:
        return getpass.getuser() or "unknown"
    except Exception:  # no user name in this environment
        return "unknown"
