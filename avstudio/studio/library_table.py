"""What the clip library panel shows, without Qt: its columns, filters and sort order, each cell's
text and tooltip, the summary line, the player's line and the status note.

Rows are :class:`avstudio.data.library.ClipRow`; the GUI's table model only asks this module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from ..data.stamps import default_who as login_name

MAX_KEY_COUNT = 4  # the number keys annotate 0..4
ANNOTATION_KEYS = {f"annotate_{n}": str(n) for n in range(MAX_KEY_COUNT + 1)}
ANNOTATION_KEYS["annotate_unsure"] = "?"
LIBRARY_FILTER = "AV Studio library (*.avlib);;All files (*)"

COLUMNS = [  # key, header, tooltip
    ("name", "Clip", "File name (the full path in the tooltip)"),
    ("count", "Count", "Annotated number of audible sources (? = can't tell)"),
    ("unsure", "Unsure", "The annotator was not sure"),
    ("pred", "Pred.", "The counter's prediction"),
    ("rate", "Rate", "The counter's rate: its estimate of the expected number of sources; the prediction "
                     "is the rate rounded (1.94 and 1.51 both give 2, the second barely)"),
    ("stage", "Stage", "Curriculum stage: from the annotation, else (in italics) from the prediction"),
    ("duration", "Dur.", "Duration"),
    ("missing", "File", "Whether the file is where the library says"),
]
COL = {k: i for i, (k, _, _) in enumerate(COLUMNS)}
#: the widest text each narrow column shows (the name column gets the rest)
WIDEST = {"count": "00", "unsure": "unsure", "pred": "00", "rate": "0.00", "stage": "C10",
          "duration": "100.0 s", "missing": "missing"}

FILTERS = [  # label, filter, stage
    ("All clips", None, None),
    ("To annotate", "unannotated", None),
    ("Annotated", "annotated", None),
    ("Unsure", "unsure", None),
    ("Can't tell", "unknown", None),
    ("Disagrees with the prediction", "disagree", None),
    ("Missing files", "missing", None),
]


def default_who() -> str:
    """The annotator recorded with each change: $AVSTUDIO_WHO, else the login name."""
    return os.environ.get("AVSTUDIO_WHO") or login_name()


def stage_filters(stage_summary: dict[str, int]) -> list[tuple[str, tuple[Optional[str], Optional[str]]]]:
    """The filter choices after :data:`FILTERS`: one per curriculum stage (and "No stage")."""
    out = []
    for st, n in stage_summary.items():
        out.append((f"No stage ({n})", (None, "none")) if st == "unknown" else (f"Stage {st} ({n})", (None, st)))
    return out


def sort_key(col: str, r) -> Any:
    """The value a column sorts by (None sorts last in both directions)."""
    if col == "name":
        return Path(r.path).name.lower() + "\0" + r.path.lower()
    if col == "count":
        return None if not r.annotated else (-1 if r.count is None else r.count)
    if col == "unsure":
        return None if not r.annotated else int(r.unsure)
    if col == "pred":
        return r.predicted_count
    if col == "rate":
        return r.predicted_rate
    if col == "stage":
        return None if r.stage is None else int(r.stage[1:])
    if col == "duration":
        return r.duration
    if col == "missing":
        return int(r.missing)
    return None


def sorted_rows(rows: list, col: str, descending: bool = False) -> list:
    """``rows`` sorted by column ``col`` (by path within equal values); unknown values last."""
    known = [r for r in rows if sort_key(col, r) is not None]
    unknown = [r for r in rows if sort_key(col, r) is None]
    known.sort(key=lambda r: (sort_key(col, r), r.path), reverse=descending)
    unknown.sort(key=lambda r: r.path)
    return known + unknown


def cell_text(col: str, r) -> str:
    if col == "name":
        return Path(r.path).name
    if col == "count":
        if not r.annotated:
            return ""
        return "?" if r.count is None else str(r.count)
    if col == "unsure":
        return "unsure" if r.unsure else ""
    if col == "pred":
        return "" if r.predicted_count is None else str(r.predicted_count)
    if col == "rate":
        return "" if r.predicted_rate is None else f"{r.predicted_rate:.2f}"
    if col == "stage":
        return r.stage or ""
    if col == "duration":
        return "" if r.duration is None else f"{r.duration:.1f} s"
    if col == "missing":
        return "missing" if r.missing else ""
    return ""


def row_tooltip(r) -> str:
    lines = [r.path]
    if r.annotated:
        c = "can't tell" if r.count is None else f"{r.count} source{'s' if r.count != 1 else ''}"
        lines.append(f"annotated: {c}{' (unsure)' if r.unsure else ''} by {r.annotated_by} at {r.annotated_at}")
    else:
        lines.append("not annotated")
    if r.predicted_count is not None:
        rate = "" if r.predicted_rate is None else f" (the counter's rate {r.predicted_rate:.2f}, rounded)"
        lines.append(f"predicted: {r.predicted_count}{rate} by {Path(str(r.predicted_by)).name}")
    if r.missing:
        lines.append("the file is missing (File › Import folder finds moved files)")
    return "\n".join(lines)


def stage_is_predicted(r) -> bool:
    """The stage shown comes from the counter's prediction (shown in italics), not from a count."""
    return not (r.annotated and r.count is not None)


def summary_text(st: dict, shown: int) -> str:
    """The line above the table: clips, length, annotated, to do, unsure, missing, predicted,
    stages, and how many the filter shows."""
    stages = "  ".join(f"{k} {v}" for k, v in st["stages"].items() if k != "unknown")
    secs = st.get("seconds", st["hours"] * 3600)
    length = f"{secs:.0f} s" if secs < 120 else f"{secs / 60:.0f} min" if secs < 7200 else f"{st['hours']:.1f} h"
    parts = [f"{st['clips']} clips ({length})", f"{st['annotated']} annotated", f"{st['unannotated']} to do"]
    if st["unsure"]:
        parts.append(f"{st['unsure']} unsure")
    if st["missing"]:
        parts.append(f"{st['missing']} missing")
    if st["predicted"]:
        parts.append(f"{st['predicted']} predicted")
    return (" · ".join(parts) + (f"\nStages: {stages}" if stages else "")
            + (f"\nShowing {shown}" if shown != st["clips"] else ""))


def key_note(st: dict, keys_on: bool) -> str:
    """The status bar's library note."""
    txt = f"Library: {st.get('annotated', 0)}/{st.get('clips', 0)} annotated"
    if keys_on:
        txt += "  ·  keys 0–4 count, ? unsure, N next"
    return txt


def player_line(r, player_has_clip: bool) -> str:
    """The annotation bar's line about the clip in the player (rich text); ``r`` its row (None:
    the clip is not in the library)."""
    if r is None:
        return ("The clip in the player is not in this library. Double-click a clip to open it."
                if player_has_clip else "Double-click a clip to open it in the player")
    if not r.annotated:
        state = "not annotated"
        if r.predicted_count is not None:
            state += f" (counter: {r.predicted_count}"
            state += f", rate {r.predicted_rate:.2f})" if r.predicted_rate is not None else ")"
    elif r.count is None:
        state = "can't tell"
    else:
        state = f"<b>{r.count}</b> source{'s' if r.count != 1 else ''}" + (" (unsure)" if r.unsure else "")
    return f"In the player: <b>{Path(r.path).name}</b> — {state}"


def skipped_note(rep) -> tuple[str, str]:
    """(the panel's line, its tooltip) about the files an import skipped as not videos, grouped
    by why (the tooltip: every file); ("", "") when none was."""
    from ..data.library import summarize_skipped

    items = getattr(rep, "not_media", [])
    if not items:
        return "", ""
    return ("Skipped, not videos: " + "; ".join(summarize_skipped(items)),
            "\n".join(f"{p}: {why}" for p, why in items))


def elide_name(name: str, width: float, measure) -> str:
    """``name`` fitted into ``width`` (``measure(text)`` gives a text's width): whole if it fits,
    else its middle elided while the extension stays whole, keeping as much of both ends of the
    stem as fits (a little more of the end, where clips of one series differ):
    ``movie-hello.mp4`` -> ``movi…llo.mp4``, never a ``movi….mp4`` that hides which clip it is."""
    import os

    if measure(name) <= width:
        return name
    stem, ext = os.path.splitext(name)
    if len(ext) > 6:  # not an extension: elide the whole name
        stem, ext = name, ""
    best = "…" + ext
    lo, hi = 0, len(stem)
    while lo <= hi:  # the most stem characters that fit, split 2:3 between head and tail
        n = (lo + hi) // 2
        head = n * 2 // 5
        cand = stem[:head] + "…" + stem[len(stem) - (n - head):] + ext
        if measure(cand) <= width:
            best, lo = cand, n + 1
        else:
            hi = n - 1
    return best


def import_report(rep) -> tuple[str, str]:
    """(status line, details of the files not imported: "" when all were) of an import."""
    msg = f"Imported {rep.added} clip{'s' if rep.added != 1 else ''}"
    extra = []
    if rep.skipped:
        extra.append(f"{rep.skipped} already there")
    if rep.annotated:
        extra.append(f"{rep.annotated} counts")
    if rep.relinked:
        extra.append(f"{rep.relinked} moved files found again")
    if rep.failed:
        extra.append(f"{len(rep.failed)} not imported")
    not_media = getattr(rep, "not_media", [])
    if not_media:
        extra.append(f"{len(not_media)} other file{'s' if len(not_media) != 1 else ''} skipped")
    if extra:
        msg += " (" + ", ".join(extra) + ")"
    details = ""
    if rep.failed:
        lines = "\n".join(f"{Path(p).name}: {why}" for p, why in rep.failed[:12])
        more = f"\n… and {len(rep.failed) - 12} more" if len(rep.failed) > 12 else ""
        details = f"{msg}.\n\n{lines}{more}"
    return msg, details
