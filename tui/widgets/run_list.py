"""The Train monitor's list of runs: lists them in a worker, keeps the selection across refreshes,
and lets the user mark runs to compare (space).

It announces what happened and leaves the decisions to the screen: `Listed` (a listing is ready),
`Picked` (the user moved to a run), `MarksChanged` (the runs marked for comparison)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from tui import jobs
from tui.widgets.row_table import RowTable
from tui.workers import ReportsWorkerErrors

MARK = "● "  # before the name of a run marked for comparison


class RunList(ReportsWorkerErrors, RowTable):
    BINDINGS = [Binding("space", "toggle_mark", "Mark to compare")]

    class Listed(Message):
        """A worker read the runs folder (and the jobs started from here)."""

        def __init__(self, runs: list[jobs.RunSummary]) -> None:
            super().__init__()
            self.runs = runs

    class Picked(Message):
        """The user moved the cursor to the run in `path`."""

        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path

    class MarksChanged(Message):
        """The runs marked for comparison changed (in the order they were marked)."""

        def __init__(self, marked: list[Path]) -> None:
            super().__init__()
            self.marked = marked

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.runs: dict[str, jobs.RunSummary] = {}  # row key (the run's path) -> its summary
        self.marked: list[str] = []
        self.listed_once = False
        self._busy = False
        self._step_column = self.add_columns("Run", "Task", "State", "Step", "Best val")[3]

    # --- listing -------------------------------------------------------------------------------

    def refresh_runs(self) -> None:
        if not self._busy:
            self._busy = True
            self.list_runs()

    # Not exclusive: a worker cancelled before it starts would never clear _busy.
    @work(thread=True, group="train-runs", exit_on_error=False)
    def list_runs(self) -> None:
        try:
            runs = jobs.list_runs()
        finally:
            self._busy = False
        self.post_message(self.Listed(runs))

    def show(self, runs: list[jobs.RunSummary], keep: Path | None) -> None:
        """Rebuild the rows; the cursor stays on `keep` (without posting Picked) when it is listed, or, while
        the user moves in the list, on the row they are on (its Picked may not have arrived yet)."""
        if self.has_focus and self.row_count:
            current = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
            keep = Path(current) if current and any(str(r.path) == current for r in runs) else keep
        self.listed_once = True
        self.runs = {str(r.path): r for r in runs}
        self.marked = [key for key in self.marked if key in self.runs]
        with self.prevent(DataTable.RowHighlighted):  # the rebuild highlights row 0: not the user's move
            self.clear()
            for r in runs:
                self.add_row(self._run_label(r), r.task or "?", r.state, _step_text(r.step, r.total_steps),
                             "-" if r.best_val is None else f"{r.best_val:.4f}", key=str(r.path))
        self.move_to(keep)

    def _run_label(self, run: jobs.RunSummary) -> Text:  # Text: a name is shown as written, never as markup
        return Text(MARK + run.name if str(run.path) in self.marked else run.name)

    def move_to(self, path: Path | None) -> None:
        if path is not None and str(path) in self.runs:
            with self.prevent(DataTable.RowHighlighted):
                self.move_cursor(row=self.get_row_index(str(path)))

    def show_step(self, path: Path, step: int, total: int | None) -> None:
        """A run's Step cell, from the events the plot reads (4 times a second; the listing every 2 s)."""
        summary = self.runs.get(str(path))
        if summary is None or (summary.step is not None and step < summary.step):
            return
        try:
            self.update_cell(str(path), self._step_column, _step_text(step, total or summary.total_steps))
        except Exception:  # the row is being rebuilt
            pass

    @on(DataTable.RowHighlighted)
    def row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        # Only the user moves the selection; rebuilding the table every few seconds highlights row 0.
        if self.has_focus and event.row_key.value:
            self.post_message(self.Picked(Path(event.row_key.value)))

    # --- marking runs to compare ---------------------------------------------------------------

    def action_toggle_mark(self) -> None:
        if not self.row_count:
            return
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        if key is None or key not in self.runs:
            return
        if key in self.marked:
            self.marked.remove(key)
        else:
            self.marked.append(key)
        self.update_cell(key, self.ordered_columns[0].key, self._run_label(self.runs[key]))
        self.post_message(self.MarksChanged([Path(k) for k in self.marked]))


def _step_text(step: int | None, total: int | None) -> str:
    if step is None:
        return "-"
    return f"{step}/{total}" if total else str(step)
