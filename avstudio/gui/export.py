"""Exports, by one path: :meth:`Exporter.export` (``kind``: video, stems, sound, residual, pixel,
heatmaps) says what is missing, asks where to write (once, remembering the folder), then writes:
the video with its overlays burnt in runs as a job with a progress dialog, the rest at once."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

import numpy as np
from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QFileDialog, QProgressDialog

from ..errors import AVStudioError
from ..media import Mp4Writer, VideoReader, write_wav
from ..progress import check_cancel, emit
from ..studio.overlay import OverlaySettings
from ..studio.tasks import export_stems, stem_filename
from .jobs import Job
from .render import burn_in, make_overlay


def export_video_fn(path: str, out: str, heat: Optional[np.ndarray], done: Optional[np.ndarray],
                    settings: OverlaySettings, audio: Optional[np.ndarray], sample_rate: int,
                    marker: Optional[tuple[float, float]] = None, progress=None, cancel=None) -> str:
    """Write ``out`` (mp4): every frame of ``path`` with its overlay, and ``audio`` (the mix heard).

    ``heat`` [N, k, h, w] and ``done`` [N] are snapshots; frames without heatmaps are written
    without overlay. Raises Cancelled (the partial file removed) when ``cancel`` is set.
    """
    settings = copy.deepcopy(settings)
    with VideoReader(path) as vr:
        n = vr.frame_count
        fps = vr.fps
        writer = Mp4Writer(out, fps, sample_rate=sample_rate, audio=audio is not None)
        try:
            apos = 0
            for i, (idx, _t, rgb) in enumerate(vr.frames()):
                check_cancel(cancel, "export")
                ov = None
                if heat is not None and done is not None and 0 <= idx < len(done) and done[idx]:
                    ov = make_overlay(heat[idx].astype(np.float32), settings)
                writer.add_frame(burn_in(rgb, ov, marker))
                if audio is not None:
                    nxt = min(len(audio), int(round((i + 1) * sample_rate / fps)))
                    if nxt > apos:
                        writer.add_audio(audio[apos:nxt])
                        apos = nxt
                if i % 5 == 0:
                    emit(progress, "export", i + 1, n, f"frame {i + 1}/{n}")
            if audio is not None and apos < len(audio):
                writer.add_audio(audio[apos:])
            writer.close()
        except BaseException:
            writer.abort()
            raise
    emit(progress, "export", n, n, "done")
    return out


# kind -> (dialog title, default file name after the clip's stem, filter)
_FILES = {
    "video": ("Export video with overlays", "_overlay.mp4", "MP4 video (*.mp4)"),
    "residual": ("Export the residual", "_residual.wav", "WAV (*.wav)"),
    "pixel": ("Export the pixel's sound", "_pixel.wav", "WAV (*.wav)"),
    "heatmaps": ("Export heatmaps", "_heatmaps.npz", "NumPy (*.npz)"),
}


class Exporter(QObject):
    """The window's exports (File › Export…, the cluster panel's export buttons). A child of the
    window: the export job's signals go to its methods, dropped with it."""

    def __init__(self, win):
        super().__init__(win)
        self.win = win

    def _ask(self, kind: str, only: Optional[int]) -> Optional[str]:
        win, p = self.win, self.win.player
        if kind == "stems":
            return QFileDialog.getExistingDirectory(win, "Export stems to folder",
                                                    str(win.qsettings.value("export_dir", "") or "")) or None
        if kind == "sound":
            title, name, filt = f"Export sound {only + 1}", stem_filename(p.path, only), "WAV (*.wav)"
        else:
            title, suffix, filt = _FILES[kind]
            name = p.stem + suffix
        start = str(Path(str(win.qsettings.value("export_dir", "") or Path.home())) / name)
        out, _ = QFileDialog.getSaveFileName(win, title, start, filt)
        if out:
            win.qsettings.setValue("export_dir", str(Path(out).parent))
        return out or None

    def _missing(self, kind: str) -> Optional[str]:
        """Why there is nothing to export (an error dialog), or "" (nothing said), or None."""
        p = self.win.player
        if kind == "video" and p.path is None:
            return "Open a video first"
        if kind in ("stems", "sound") and p.stems is None:
            return f"No stems to export: {p.no_stems_reason()}"
        if kind == "heatmaps" and p.heatmap_export() is None:
            return f"No heatmaps to export: {p.no_sound}" if p.no_sound else "No heatmaps to export yet"
        if kind == "residual" and p.residual is None or kind == "pixel" and p.pixel_label() is None:
            return ""
        return None

    def export(self, kind: str, out: Optional[str] = None, only: Optional[int] = None):
        """Export ``kind`` to ``out`` (None: ask). Returns the job (video), the files (stems),
        the file written, or None (nothing to export, or the dialog was cancelled)."""
        win, p = self.win, self.win.player
        why = self._missing(kind)
        if why is not None:
            if why:
                win.error(why)
            return [] if kind == "stems" else None
        out = out or self._ask(kind, only)
        if not out:
            return [] if kind == "stems" else None
        if kind == "video":
            return self._video(out)
        try:
            if kind == "stems":
                files = export_stems(p.path, p.stems, p.stems_sr, out)
                win.statusBar().showMessage(f"Exported {len(files)} stem(s) to {out}", 6000)
                return files
            if kind == "heatmaps":
                data = p.heatmap_export()
                data.to_npz(out)
                n = len(data.frames)
                win.statusBar().showMessage(f"Exported {n} of {p.frame_count} frames (analysis not complete)"
                                            if n < p.frame_count else f"Exported {out}", 6000)
                return out
            audio, sr = {"sound": (p.stems[only] if only is not None else None, p.stems_sr),
                         "residual": (p.residual, p.stems_sr),
                         "pixel": ((p.pixel or {}).get("audio"), (p.pixel or {}).get("sr"))}[kind]
            write_wav(out, audio, sr)
        except (AVStudioError, OSError) as exc:
            win.error(f"Cannot write {out}: {exc}" if isinstance(exc, OSError) else str(exc), "Export failed")
            return [] if kind == "stems" else None
        if kind != "pixel":
            win.statusBar().showMessage(f"Exported {out}", 6000)
        return out

    def _video(self, out: str) -> Job:
        win, p = self.win, self.win.player
        if p.heat_done is not None and not p.heat_done.all():
            missing = int((~p.heat_done).sum())
            win.statusBar().showMessage(f"{missing} frames have no heatmap yet: they are exported without overlay",
                                        6000)
        sr = p.audio_data["sr"] if p.audio_data else win.OUTPUT_RATE
        audio = win.mixer.mixdown(p.video_start, p.duration, sr) if p.audio_data else None
        heat = p.heat.copy() if p.heat is not None else None
        done = p.heat_done.copy() if p.heat_done is not None else None
        job = Job("export", export_video_fn, p.path, out, heat, done, win.overlay_settings, audio, sr, p.marker)
        dlg = QProgressDialog(f"Exporting {Path(out).name}…", "Cancel", 0, 100, win)
        dlg.setWindowTitle("Export")
        dlg.setWindowModality(Qt.WindowModality.WindowModal)
        dlg.setMinimumDuration(300)
        dlg.setAutoClose(True)
        dlg.canceled.connect(job.cancel)
        job.dialog = dlg  # closed when this job ends, whichever export runs then
        job.progress.connect(self._on_progress)
        job.done.connect(self._on_done)
        job.failed.connect(self._on_failed)
        job.cancelled.connect(self._on_cancelled)
        self.dialog = dlg
        win.start_job("export", job)
        return job

    def _on_progress(self, ev) -> None:
        dlg = getattr(self.sender(), "dialog", None)
        if dlg is not None:
            dlg.setValue(int(100 * (ev.fraction or 0)))

    def _finish(self, msg: str) -> None:
        dlg = getattr(self.sender(), "dialog", None)
        if dlg is not None:
            dlg.reset()
            dlg.deleteLater()
        self.win.statusBar().showMessage(msg, 8000)

    def _on_done(self, result) -> None:
        self._finish(f"Exported {result}")
        self.win.exportFinished.emit(str(result))

    def _on_failed(self, msg: str) -> None:
        self._finish(f"Export failed: {msg}")
        self.win.error(msg, "Export failed")

    def _on_cancelled(self) -> None:
        self._finish("Export cancelled")
