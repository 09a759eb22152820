"""The Checkpoints screen's details: every header key of the selected checkpoint, and the loss curve of
the run that wrote it (found and read in a worker, which posts `CurveRead`)."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Static
from textual.worker import get_current_worker

from tui import jobs
from tui.checkpoint_rows import details_content, find_run_events
from tui.widgets.loss_plot import LossPlot
from tui.workers import ReportsWorkerErrors


class CheckpointDetails(ReportsWorkerErrors, Horizontal):
    class CurveRead(Message):
        """A worker read the events of the run that wrote the checkpoint (none: [])."""

        def __init__(self, events: list[dict[str, Any]]) -> None:
            super().__init__()
            self.events = events

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="ckpt-meta-scroll"):
            yield Static("", id="ckpt-meta")
        yield LossPlot(id="ckpt-plot", title="run loss")

    def show(self, info: Any | None) -> None:
        meta = self.query_one("#ckpt-meta", Static)
        if info is None:
            meta.update("")
            return
        meta.update(details_content(info))
        if not info.ok:
            self.query_one("#ckpt-plot", LossPlot).set_series({})
            return
        self.load_curve(info)

    @work(thread=True, exclusive=True, group="ckpt-curve", exit_on_error=False)
    def load_curve(self, info: Any) -> None:
        """The loss curve of the run that wrote the checkpoint, if that run is still there."""
        events = find_run_events(info.path, info.metadata)
        read = jobs.read_events(events) if events else []
        if not get_current_worker().is_cancelled:  # another row was selected meanwhile: its curve wins
            self.post_message(self.CurveRead(read))

    @on(CurveRead)
    def curve_read(self, message: CurveRead) -> None:
        self.query_one("#ckpt-plot", LossPlot).set_events(message.events)

