"""The main window's status bar: persistent notes (no sound device, no model) on the left, the
library's line, the model and the audio output on the right; temporary messages above them."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel

from . import style


class StatusLine:
    def __init__(self, win):
        bar = win.statusBar()
        self.bar = bar
        self.note = QLabel()
        self.note.setObjectName("statusNote")
        self.library = QLabel("")
        self.library.setObjectName("statusLibrary")
        self.model = QLabel()
        self.model.setObjectName("statusModel")
        self.audio_icon = QLabel()
        self.audio = QLabel()
        self.audio.setObjectName("statusAudio")
        bar.addWidget(self.note, 1)
        bar.addPermanentWidget(self.model)
        bar.addPermanentWidget(self.audio_icon)
        bar.addPermanentWidget(self.audio)
        bar.addPermanentWidget(self.library)  # the clip library's line (library_panel.py)

    def set_notes(self, notes: list[str]) -> None:
        self.note.setText("   ·   ".join(notes))
        self.note.setToolTip("\n".join(notes))

    def set_audio(self, output, muted: bool) -> None:
        if not getattr(output, "available", False):
            txt, ic = "silent", "silent"
        elif muted:
            txt, ic = "muted", "silent"
        else:
            txt, ic = getattr(output, "device_name", "sound"), "sound"
        self.audio_icon.setPixmap(style.icon(ic).pixmap(16, 16))
        self.audio.setText(txt)
        self.audio.setToolTip(output.status)
        self.audio_icon.setToolTip(output.status)

    def message(self, text: str, ms: int = 0) -> None:
        self.bar.showMessage(text, ms)
