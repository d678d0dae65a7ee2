"""The clip library's table: a Qt model over the library's rows; what each cell says comes
from :mod:`avstudio.studio.library_table`."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QStyledItemDelegate

from ..studio.library_table import COLUMNS, cell_text, elide_name, row_tooltip, sorted_rows, stage_is_predicted
from . import style

_ROOT = QModelIndex()  # the table's (invalid) root index


class ClipTableModel(QAbstractTableModel):
    """Rows of :class:`~avstudio.data.library.ClipRow`; sorted here, filtered by the library."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list = []
        self.current_id: Optional[int] = None  # the clip in the player
        self._sort: tuple[int, Qt.SortOrder] = (0, Qt.SortOrder.AscendingOrder)
        self._bold = QFont()
        self._bold.setBold(True)
        self._italic = QFont()
        self._italic.setItalic(True)

    # -- Qt model API ----------------------------------------------------------------------
    def rowCount(self, parent=_ROOT) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=_ROOT) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal:
            if role == Qt.ItemDataRole.DisplayRole:
                return COLUMNS[section][1]
            if role == Qt.ItemDataRole.ToolTipRole:
                return COLUMNS[section][2]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self.rows):
            return None
        r = self.rows[index.row()]
        col = COLUMNS[index.column()][0]
        if role == Qt.ItemDataRole.DisplayRole:
            return cell_text(col, r)
        if role == Qt.ItemDataRole.ToolTipRole:
            return row_tooltip(r)
        if role == Qt.ItemDataRole.UserRole:
            return r.id
        if role == Qt.ItemDataRole.TextAlignmentRole and col != "name":
            return int(Qt.AlignmentFlag.AlignCenter)
        if role == Qt.ItemDataRole.FontRole:
            if col == "name" and r.id == self.current_id:
                return self._bold
            if col == "count" and r.annotated:
                return self._bold
            if col == "stage" and r.stage is not None and stage_is_predicted(r):
                return self._italic
        if role == Qt.ItemDataRole.ForegroundRole:
            if r.missing:
                return QBrush(QColor("#e0787a"))
            if col in ("pred", "rate") or (col == "stage" and stage_is_predicted(r)):
                return QBrush(QColor(style.FG_DIM))
            if col == "unsure" and r.unsure:
                return QBrush(QColor("#e6c229"))
        if role == Qt.ItemDataRole.BackgroundRole and r.id == self.current_id:
            return QBrush(QColor(79, 176, 198, 60))
        return None

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        self._sort = (column, order)
        self.layoutAboutToBeChanged.emit()
        self.rows = sorted_rows(self.rows, COLUMNS[column][0], order == Qt.SortOrder.DescendingOrder)
        self.layoutChanged.emit()

    # -- updates ---------------------------------------------------------------------------
    def set_rows(self, rows: list) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()
        self.sort(*self._sort)

    def row_of(self, clip_id: Optional[int]) -> int:
        for i, r in enumerate(self.rows):
            if r.id == clip_id:
                return i
        return -1

    def update_clip(self, row) -> None:
        i = self.row_of(row.id)
        if i >= 0:
            self.rows[i] = row
            self.dataChanged.emit(self.index(i, 0), self.index(i, len(COLUMNS) - 1))

    def set_current(self, clip_id: Optional[int]) -> None:
        old = self.row_of(self.current_id)
        self.current_id = clip_id
        for i in {old, self.row_of(clip_id)}:
            if i >= 0:
                self.dataChanged.emit(self.index(i, 0), self.index(i, len(COLUMNS) - 1))

    def clip_at(self, row: int):
        return self.rows[row] if 0 <= row < len(self.rows) else None


class NameDelegate(QStyledItemDelegate):
    """The clip name column: :func:`~avstudio.studio.library_table.elide_name` instead of Qt's
    plain middle elision (which makes ``movie-hello.mp4`` and ``movie-dog.mp4`` one ``movi….mp4``)."""

    def initStyleOption(self, option, index) -> None:
        super().initStyleOption(option, index)
        width = option.rect.width() - 10  # the cell's text margins
        option.text = elide_name(option.text, width, option.fontMetrics.horizontalAdvance)
