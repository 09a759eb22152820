"""A DataTable of rows whose Home/End move the row cursor (Textual's scroll sideways in a row table), so a
key that acts on "the selected row" (d, r, Delete) acts on the row the user sees highlighted."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable


class RowTable(DataTable):
    BINDINGS = [
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
    ]
