"""Look and feel: a dark theme (napari-like) for long sessions with video, colours, icons."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QApplication

from ..assets import resource

BG = "#1b1e24"
BG_ALT = "#232730"
BG_PLOT = "#14161b"
FG = "#dfe3ea"
FG_DIM = "#8d95a3"
ACCENT = "#4fb0c6"
PLAYHEAD = "#ff5a5f"
WAVE = (140, 190, 230)
WAVE_FILL = (90, 150, 200, 120)
COVER_DONE = (52, 150, 140, 255)
COVER_TODO = (60, 48, 52, 255)
BOX_MARK = (255, 196, 60)  # frames with boxes, on the timeline
BOX_UNTIED = (245, 245, 245)  # a box tied to no source (tied ones take their sound's colour)


def app_icon() -> QIcon:
    p = resource("icons", "avstudio.svg")
    return QIcon(str(p)) if p.exists() else QIcon()


def icon(name: str) -> QIcon:
    """The named icon; its disabled look is the icon at a third of its opacity (the style's own
    disabled look of our light icons is barely darker, and a control that cannot work must look
    off: it says why on hover)."""
    p = resource("icons", f"{name}.svg")
    if not p.exists():
        return QIcon()
    ic = QIcon(str(p))
    for size in (16, 24, 32):
        pm = ic.pixmap(size, size)
        dim = QPixmap(pm.size())
        dim.fill(Qt.GlobalColor.transparent)
        painter = QPainter(dim)
        painter.setOpacity(0.35)
        painter.drawPixmap(0, 0, pm)
        painter.end()
        ic.addPixmap(dim, QIcon.Mode.Disabled)
    return ic


def apply(app: QApplication) -> None:
    """Fusion style with a dark palette and the style sheet in resources/style.qss."""
    app.setStyle("Fusion")
    pal = QPalette()
    c = QColor
    pal.setColor(QPalette.ColorRole.Window, c(BG))
    pal.setColor(QPalette.ColorRole.WindowText, c(FG))
    pal.setColor(QPalette.ColorRole.Base, c("#15181d"))
    pal.setColor(QPalette.ColorRole.AlternateBase, c(BG_ALT))
    pal.setColor(QPalette.ColorRole.ToolTipBase, c("#2b303a"))
    pal.setColor(QPalette.ColorRole.ToolTipText, c(FG))
    pal.setColor(QPalette.ColorRole.Text, c(FG))
    pal.setColor(QPalette.ColorRole.Button, c("#2a2f38"))
    pal.setColor(QPalette.ColorRole.ButtonText, c(FG))
    pal.setColor(QPalette.ColorRole.BrightText, c("#ff6b6b"))
    pal.setColor(QPalette.ColorRole.Highlight, c(ACCENT))
    pal.setColor(QPalette.ColorRole.HighlightedText, c("#0d0f12"))
    pal.setColor(QPalette.ColorRole.Link, c(ACCENT))
    pal.setColor(QPalette.ColorRole.PlaceholderText, c(FG_DIM))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, c("#5c6370"))
    app.setPalette(pal)
    qss = resource("style.qss")
    if qss.exists():
        app.setStyleSheet(qss.read_text(encoding="utf-8"))
