"""Adding clips to a library: files, folders, manifests; re-finding moved files."""

from __future__ import annotations

import csv
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Optional, Union

from ...dbguard import ensure_not_database, refusal
from ...errors import AVStudioError, DataError, MediaError
from ...progress import CancelToken, ProgressFn, check_cancel, emit
from ..stamps import now_iso
from .rows import (
    NOT_MEDIA_EXTENSIONS,
    ImportReport,
    PathLike,
    RefreshReport,
    _abspath,
    _int,
    _iter_files,
    _iter_media,
    _not_media_reason,
    _num,
    _parse_bool,
    _probe,
    _still_image,
    content_hash,
    is_media_file,
    parse_count,
)


class ImportMixin:
    """ClipLibrary's imports (a mixin of :class:`LibraryStore`)."""

    def import_folder(self, folder: PathLike, recursive: bool = True,
                      progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
                      batch_size: int = 50) -> ImportReport:
        """Add every video under ``folder``: every file FFmpeg reads as a video, whatever its name.

        Hidden files and folders are left out. Files already in the library are skipped
        (``skipped``); a file named as a video (:data:`MEDIA_EXTENSIONS`) that cannot be read is
        reported in ``failed``; every other file that is not a video (text and data files by
        their name, :data:`NOT_MEDIA_EXTENSIONS`, without asking FFmpeg; still images, audio
        only, what FFmpeg cannot read) in ``not_media`` with the reason; the import goes on.
        Commits every ``batch_size`` files, so a killed or cancelled import keeps what it
        committed (cancel raises :class:`Cancelled` after committing the files done so far).
        """
        root = _abspath(folder)
        if not os.path.exists(root):
            raise DataError(f"folder {root} does not exist")
        if not os.path.isdir(root):
            raise DataError(f"{root} is not a folder")
        files, not_media = [], []
        for f in _iter_files(root, recursive):
            ext = os.path.splitext(f)[1].lower()
            if refusal(f, "import") is not None:
                not_media.append((f, "the clip library itself (or one of its working files)"))
            elif ext in NOT_MEDIA_EXTENSIONS:
                not_media.append((f, f"not a video (a {ext} file)"))
            else:
                files.append(f)
        rep = self.import_files(files, progress=progress, cancel=cancel, batch_size=batch_size)
        rep.not_media[:0] = not_media
        return rep

    def import_files(self, paths: Iterable[PathLike], progress: Optional[ProgressFn] = None,
                     cancel: Optional[CancelToken] = None, batch_size: int = 50,
                     task: str = "import") -> ImportReport:
        """Add these files. One FFmpeg cannot read as a video is in ``failed`` when its name says
        video (:data:`MEDIA_EXTENSIONS`), else in ``not_media``."""
        files = [_abspath(p) for p in paths]
        report = ImportReport()
        pending: list[tuple] = []
        last_commit = time.monotonic()
        total = len(files)
        emit(progress, task, 0, total)
        try:
            for i, path in enumerate(files):
                check_cancel(cancel, "import")
                outcome = self._prepare_file(path)
                if isinstance(outcome, str):
                    if outcome == "skipped":
                        report.skipped += 1
                    elif is_media_file(path):
                        report.failed.append((path, outcome))
                    elif outcome == "file not found":  # gone meanwhile (a lock file, a temporary)
                        report.not_media.append((path, "gone before it could be read"))
                    else:
                        report.not_media.append((path, _not_media_reason(outcome)))
                else:
                    pending.append(outcome)
                if pending and (len(pending) >= batch_size or time.monotonic() - last_commit > 2.0):
                    batch, pending = pending, []
                    self._commit_files(batch, report)
                    last_commit = time.monotonic()
                emit(progress, task, i + 1, total, os.path.basename(path),
                     added=report.added + len(pending), failed=len(report.failed))
        finally:
            if pending:  # done, cancelled or interrupted: keep what was probed
                batch, pending = pending, []
                self._commit_files(batch, report)
        return report

    def _prepare_file(self, path: str) -> Union[str, tuple]:
        """Probe and hash a file outside any transaction. Returns a row tuple or a reason string."""
        with self._lock:
            known = self.conn.execute("SELECT id, missing FROM clips WHERE path = ?",
                                      (path,)).fetchone()
        if known is not None:
            if known["missing"] and os.path.isfile(path):
                with self._write() as conn:
                    conn.execute("UPDATE clips SET missing = 0, last_seen = ? WHERE id = ?",
                                 (now_iso(), known["id"]))
            return "skipped"
        if not os.path.isfile(path):
            return "file not found"
        try:
            info = _probe(path)
        except MediaError as exc:
            return str(exc)
        except AVStudioError as exc:
            return str(exc)
        except Exception as exc:  # a decoder hiccup on one file must not stop the import
            return f"cannot read media: {type(exc).__name__}: {exc}"
        if getattr(info, "has_video", True) is False:
            return "no video stream (the library holds audiovisual clips)"
        if _still_image(info):
            return "a still image, not a video"
        try:
            size = os.path.getsize(path)
            digest = content_hash(path, size)
        except OSError as exc:
            return f"cannot read file: {exc.strerror or exc}"
        except DataError as exc:
            return str(exc)
        return (path, digest, size, _num(getattr(info, "duration", None)),
                _int(getattr(info, "width", None)), _int(getattr(info, "height", None)),
                _num(getattr(info, "fps", None)), 1 if getattr(info, "has_audio", False) else 0)

    def _commit_files(self, rows: Sequence[tuple], report: ImportReport) -> None:
        stamp = now_iso()
        with self._write() as conn:
            for (path, digest, size, duration, width, height, fps, has_audio) in rows:
                if conn.execute("SELECT 1 FROM clips WHERE path = ?", (path,)).fetchone():
                    report.skipped += 1  # added meanwhile by another process
                    continue
                moved = self._moved_clip(conn, digest, size)
                if moved is not None:
                    conn.execute("UPDATE clips SET path = ?, missing = 0, last_seen = ? WHERE id = ?",
                                 (path, stamp, moved))
                    report.relinked += 1
                    continue
                conn.execute(
                    "INSERT INTO clips (path, content_hash, size, duration, width, height, fps,"
                    " has_audio, added_at, last_seen, missing) VALUES (?,?,?,?,?,?,?,?,?,?,0)",
                    (path, digest, size, duration, width, height, fps, has_audio, stamp, stamp))
                report.added += 1

    @staticmethod
    def _moved_clip(conn: sqlite3.Connection, digest: str, size: int) -> Optional[int]:
        """A clip with this fingerprint whose file is gone: the file we hold is that clip, moved."""
        for r in conn.execute("SELECT id, path FROM clips WHERE content_hash = ? AND size = ?"
                              " ORDER BY missing DESC, id", (digest, size)):
            if not os.path.exists(r["path"]):
                return int(r["id"])
        return None

    def import_manifest(self, csv_path: PathLike, who: str = "manifest",
                        progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
                        batch_size: int = 50) -> ImportReport:
        """Import a manifest CSV (header with at least ``path,count``).

        Relative paths are relative to the manifest's folder. New files are probed and added
        like :meth:`import_files`; every row with a count (0..16) becomes an annotation (unless
        the clip's current annotation already says the same). An empty count means unknown: the
        clip is imported without annotation. Optional columns: ``unsure`` (1/true/yes) and
        ``who`` (the annotator; ``who`` here is used where that column is absent or empty).
        Rows that cannot be used (bad count, file missing, not media) go to ``failed`` with
        their line number.
        """
        mpath = _abspath(csv_path)
        if not os.path.isfile(mpath):
            raise DataError(f"manifest {mpath} does not exist")
        ensure_not_database(mpath, "read as a manifest", DataError)
        base = os.path.dirname(mpath)
        try:
            with open(mpath, encoding="utf-8-sig", newline="") as fh:
                reader = csv.DictReader(fh)
                header = [h.strip().lower() for h in (reader.fieldnames or [])]
                if not header:
                    raise DataError(f"manifest {mpath} is empty (expected a header with path,count)")
                for col in ("path", "count"):
                    if col not in header:
                        raise DataError(f"manifest {mpath} has no '{col}' column "
                                        f"(header: {','.join(header)})")
                reader.fieldnames = header
                rows = [(reader.line_num, {k: (v or "") for k, v in r.items() if k is not None})
                        for r in reader]
        except UnicodeDecodeError:
            raise DataError(f"manifest {mpath} is not UTF-8 text") from None
        except csv.Error as exc:
            raise DataError(f"manifest {mpath} is not a valid CSV: {exc}") from None
        except OSError as exc:
            raise DataError(f"cannot read manifest {mpath}: {exc.strerror or exc}") from None

        report = ImportReport()
        entries: list[tuple[str, Optional[int], bool, str]] = []
        for line, r in rows:
            raw = r.get("path", "").strip()
            if not raw:
                report.failed.append((f"{mpath}:{line}", "empty path"))
                continue
            path = raw if os.path.isabs(os.path.expanduser(raw)) else os.path.join(base, raw)
            path = _abspath(path)
            try:
                count = parse_count(r.get("count"), "count")
            except DataError as exc:
                report.failed.append((path, f"line {line}: {exc}"))
                continue
            entries.append((path, count, _parse_bool(r.get("unsure")),
                            (r.get("who") or "").strip() or who))

        # add the clips (probing) first, then write the annotations in batches
        files = list(dict.fromkeys(p for p, *_ in entries))
        sub = self.import_files(files, progress=progress, cancel=cancel, batch_size=batch_size,
                                task="import")
        report.merge(sub)
        bad = {p for p, _ in sub.failed}
        todo = [e for e in entries if e[0] not in bad and e[1] is not None]
        for start in range(0, len(todo), max(1, batch_size)):
            check_cancel(cancel, "import")
            with self._write() as conn:
                for path, count, unsure, by in todo[start:start + batch_size]:
                    row = conn.execute("SELECT id FROM clips WHERE path = ?", (path,)).fetchone()
                    if row is None:  # moved meanwhile: relinked under another path
                        report.failed.append((path, "not in the library after import"))
                        continue
                    cur = self._current_annotation(conn, row["id"])
                    if (cur is not None and not cur["cleared"] and cur["count"] == count
                            and bool(cur["unsure"]) == unsure):
                        continue
                    self._insert_annotation(conn, row["id"], count, unsure, by)
                    report.annotated += 1
        return report

    def refresh_missing(self, search_in: Union[None, PathLike, Sequence[PathLike]] = None,
                        recursive: bool = True, progress: Optional[ProgressFn] = None,
                        cancel: Optional[CancelToken] = None) -> RefreshReport:
        """Flag clips whose file is gone; re-find moved files by content hash.

        A clip whose file exists is marked present (``last_seen`` updated). A clip whose file
        is gone is looked for among the media files under ``search_in`` (a folder or a list of
        folders) by size and content hash; if found, its path is updated (annotations follow),
        otherwise it is flagged ``missing``. Rows are never deleted.
        """
        with self._lock:
            rows = self.conn.execute(
                "SELECT id, path, content_hash, size, missing FROM clips ORDER BY id").fetchall()
        gone = [r for r in rows if not os.path.isfile(r["path"])]
        gone_ids = {g["id"] for g in gone}
        present = [r["id"] for r in rows if r["id"] not in gone_ids]
        report = RefreshReport(present=len(present))

        # candidate files (by size) under the search folders, not already some clip's path
        candidates: dict[int, list[str]] = {}
        if gone and search_in is not None:
            folders = [search_in] if isinstance(search_in, (str, os.PathLike)) else list(search_in)
            known = {r["path"] for r in rows}
            for folder in folders:
                root = _abspath(folder)
                if not os.path.isdir(root):
                    raise DataError(f"folder {root} does not exist")
                for f in _iter_media(root, recursive):
                    if f in known:
                        continue
                    try:
                        candidates.setdefault(os.path.getsize(f), []).append(f)
                    except OSError:
                        continue
        hashes: dict[str, str] = {}
        moves: list[tuple[int, str, str]] = []
        flagged: list[tuple[int, str]] = []
        taken: set[str] = set()
        for i, r in enumerate(gone):
            check_cancel(cancel, "refresh")
            new = None
            for f in candidates.get(r["size"], []) if r["size"] is not None else []:
                if f in taken:
                    continue
                if f not in hashes:
                    try:
                        hashes[f] = content_hash(f)
                    except (OSError, DataError):
                        continue
                if hashes[f] == r["content_hash"]:
                    new = f
                    break
            if new is not None:
                taken.add(new)
                moves.append((r["id"], r["path"], new))
            else:
                flagged.append((r["id"], r["path"]))
            emit(progress, "refresh", i + 1, len(gone), os.path.basename(r["path"]))

        stamp = now_iso()
        with self._write() as conn:
            for j in range(0, len(present), 500):
                chunk = present[j:j + 500]
                conn.execute(f"UPDATE clips SET missing = 0, last_seen = ? WHERE id IN "
                             f"({','.join('?' * len(chunk))})", [stamp, *chunk])
            for cid, old, new in moves:
                if conn.execute("SELECT 1 FROM clips WHERE path = ?", (new,)).fetchone():
                    flagged.append((cid, old))  # imported meanwhile under the new path
                    continue
                conn.execute("UPDATE clips SET path = ?, missing = 0, last_seen = ? WHERE id = ?",
                             (new, stamp, cid))
                report.relinked.append((old, new))
            for cid, _old in flagged:
                conn.execute("UPDATE clips SET missing = 1 WHERE id = ?", (cid,))
        report.missing = [old for _cid, old in flagged]
        return report
