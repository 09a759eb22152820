"""The Checkpoints screen's table: lists the checkpoints folder (and the built-in models) in a worker,
one row per file, and keeps the row the user had (or the one asked for) selected.

It announces `Listed` once the rows are in (the screen shows the folder line and the details) and
`UseRequested` on Enter (the table takes the key before the screen's binding)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.message import Message
from textual.widgets import DataTable

from tui.checkpoint_rows import COLUMNS, row_for
from tui.widgets.row_table import RowTable
from tui.workers import ReportsWorkerErrors


class CheckpointTable(ReportsWorkerErrors, RowTable):
    class Read(Message):
        """A worker listed the checkpoints of `folder` (and the built-in ones)."""

        def __init__(self, folder: Path, infos: list[Any], select: Path | None) -> None:
            super().__init__()
            self.folder, self.infos, self.select = folder, infos, select

    class Listed(Message):
        """The rows show the listing of `folder`."""

        def __init__(self, folder: Path, infos: list[Any]) -> None:
            super().__init__()
            self.folder, self.infos = folder, infos

    class UseRequested(Message):
        """Enter on a row: use that model (in Chat)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.infos: dict[str, Any] = {}  # row key (path) -> CheckpointInfo
        self.add_columns(*COLUMNS)

    @work(thread=True, exclusive=True, group="ckpt-list", exit_on_error=False)
    def reload(self, select: Path | None = None) -> None:
        from chatgpt_scratch.checkpoints import list_checkpoints
        from chatgpt_scratch.storage.paths import checkpoints_dir

        # The user's folder, then the built-in models.
        self.post_message(self.Read(checkpoints_dir(), list_checkpoints(), select))

    @on(Read)
    def read(self, message: Read) -> None:
        message.stop()
        current = self.selected_path()
        self.clear()
        self.infos = {}
        for info in message.infos:
            key = str(info.path)
            self.infos[key] = info
            self.add_row(*map(Text, row_for(info)), key=key)  # Text: a str cell would be parsed as markup
        want = str(message.select) if message.select else (str(current) if current else None)
        if want in self.infos:
            self.move_cursor(row=self.get_row_index(want))
        self.post_message(self.Listed(message.folder, message.infos))

    def selected_path(self) -> Path | None:
        if self.row_count == 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - no row under the cursor
            return None
        return Path(key) if key else None

    def selected_info(self) -> Any | None:
        path = self.selected_path()
        return self.infos.get(str(path)) if path else None

    @on(DataTable.RowSelected)
    def row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(self.UseRequested())

