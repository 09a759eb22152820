"""The Train monitor's view of one run: its loss plot, its metrics panel (with Stop and Resume), and
its samples; or, on demand, one metric of several runs on one plot.

It tails the run's events.jsonl POLL_S apart and folds them into the plot and the panel (Monitor).
It announces `Advanced` (the run's step moved: the runs list shows it) and `Ended` (a final event
arrived); its `summary` (the runs list's record of the run) decides the state the panel shows, so
the list and the panel never disagree. Comparing runs reads them in a worker through the library
(training/plots.compare_runs, as `chatgpt-scratch plot` does) and posts `Compared`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Button, Log, Static
from textual.worker import get_current_worker

from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.training.plots import METRICS, RunSeries, compare_runs
from tui import jobs
from tui.train_form import TASKS
from tui.widgets.loss_plot import LossPlot
from tui.widgets.run_monitor import Monitor
from tui.workers import ReportsWorkerErrors

POLL_S = 0.25  # events are read (and the plot redrawn) at most 4 times a second


class RunView(ReportsWorkerErrors, Vertical):
    class Advanced(Message):
        """The followed run reached `step` (of `total`)."""

        def __init__(self, path: Path, step: int, total: int | None) -> None:
            super().__init__()
            self.path, self.step, self.total = path, step, total

    class Ended(Message):
        """The followed run wrote its final event (done, stopped or error)."""

        def __init__(self, path: Path, event: dict[str, Any]) -> None:
            super().__init__()
            self.path, self.event = path, event

    class Compared(Message):
        """A worker read the compared runs' series (or found why they do not compare: `error`)."""

        def __init__(self, series: list[RunSeries], error: str = "") -> None:
            super().__init__()
            self.series, self.error = series, error

    class ResumeRequested(Message):
        """Resume was asked for a stopped run made by `task` (the screen starts the job)."""

        def __init__(self, summary: jobs.RunSummary, task: str) -> None:
            super().__init__()
            self.summary, self.task = summary, task

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_dir: Path | None = None
        self.summary: jobs.RunSummary | None = None  # the runs list's record of run_dir
        self.tail: jobs.EventTail | None = None
        self.monitor = Monitor()
        self.comparing: list[Path] | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="train-live"):
            yield LossPlot(id="train-plot", title="loss")
            with Vertical(id="train-side"):
                yield Static("Select a run above.", id="train-metrics")
                with Horizontal(id="train-buttons"):
                    yield Button("Stop", id="train-stop", variant="error", compact=True)
                    yield Button("Resume", id="train-resume", compact=True)
        yield Log(id="train-samples", max_lines=500)

    def on_mount(self) -> None:
        self.set_interval(POLL_S, self.poll)

    @property
    def plot(self) -> LossPlot:
        return self.query_one("#train-plot", LossPlot)

    # --- one run -------------------------------------------------------------------------------

    def follow(self, run_dir: Path, summary: jobs.RunSummary | None) -> None:
        self.run_dir, self.summary = run_dir, summary
        self.tail = jobs.EventTail(run_dir / jobs.EVENTS_FILE)
        self.monitor = Monitor()
        self.plot.clear(run_dir.name)
        self.query_one("#train-samples", Log).clear()
        self.poll()

    def poll(self) -> None:
        if self.tail is None or self.run_dir is None:
            return
        events = self.tail.poll()
        if not events:
            return
        self.plot.add_events(events)
        samples = self.query_one("#train-samples", Log)
        for e in events:
            self.monitor.add(e)
            if e.get("type") == "sample" and e.get("text"):
                text = " ".join(str(e["text"]).split())
                samples.write_line(f"step {e.get('step', '?')}: {text}")
            elif e.get("type") == "checkpoint":
                samples.write_line(f"saved {e.get('path')}")
            elif e.get("type") in jobs.TERMINAL_EVENTS:
                samples.write_line(f"run {e['type']}" + (f": {e.get('message')}" if e.get("message") else ""))
                self.post_message(self.Ended(self.run_dir, e))
        if self.monitor.step is not None:
            self.post_message(self.Advanced(self.run_dir, self.monitor.step, self.monitor.total_steps))
        self.show_panel()

    def show_panel(self, summary: jobs.RunSummary | None | bool = False) -> None:
        """The side panel. Its state is the runs list's (RunSummary.state: events and the process together),
        so the two never disagree; the events alone only decide while the run is not listed yet."""
        if summary is not False:
            self.summary = summary  # type: ignore[assignment]
        summary = self.summary
        state = summary.state if summary is not None else self.monitor.state
        text = self.monitor.render(state) if self.run_dir else Content("Select a run above.")
        if summary is not None and summary.state in ("interrupted", "failed", "error") and summary.log:
            log = jobs.tail_text(Path(summary.log), 600).strip().splitlines()
            if log:
                text += Content.from_markup("\n[red]$line[/red]", line=log[-1])
        self.query_one("#train-metrics", Static).update(text)

    # --- Stop and Resume -----------------------------------------------------------------------

    def _need_run(self) -> Any | None:
        """The selected run's summary, or None after saying to select one."""
        if self.summary is None:
            self.notify("Select a run first.", severity="warning")
        return self.summary

    @on(Button.Pressed, "#train-stop")
    def stop(self) -> None:
        summary = self._need_run()
        if summary is None:
            return
        # "starting": the runs list refreshes less often than the plot, so a job already
        # training may still be listed as starting; its pid is known either way.
        if summary.state not in ("running", "starting"):
            self.notify(f"{summary.name} is not running ({summary.state}).", severity="warning", markup=False)
            return
        if not summary.pid:  # an old run whose start event has no pid, or its process is not visible here
            self.notify(f"{summary.name}: its process is not known here; press Ctrl-C in its terminal to stop it.",
                        severity="warning", markup=False)
            return
        try:
            jobs.stop_job(summary.pid, summary.pid_start, summary.pid_argv)
        except ProcessLookupError:
            self.notify(f"{summary.name} has already ended.", severity="warning", markup=False)
            return
        self.notify(f"Stopping {summary.name}: it saves a checkpoint, then exits.", markup=False)

    @on(Button.Pressed, "#train-resume")
    def resume(self) -> None:
        summary = self._need_run()
        if summary is None:
            return
        if summary.state not in ("stopped", "interrupted", "error"):
            self.notify(f"{summary.name} is {summary.state}; only a stopped run can be resumed.",
                        severity="warning", markup=False)
            return
        task = summary.task or (summary.command[0] if summary.command else "")
        if task not in {v for _, v in TASKS}:
            self.notify("Cannot tell which command made this run (no run.json); resume it from a shell "
                        "with --resume.", severity="warning")
            return
        self.post_message(self.ResumeRequested(summary, task))

    # --- what the plot shows -------------------------------------------------------------------

    def next_metric(self) -> str:
        names = list(METRICS)
        metric = names[(names.index(self.plot.metric) + 1) % len(names)]
        self.plot.set_metric(metric)
        if self.comparing:
            self.load_comparison(self.comparing, metric)
        return metric

    def compare(self, runs: list[Path] | None) -> None:
        """Overlay `runs` on the plot (None: back to the followed run)."""
        self.comparing = runs
        if runs:
            self.load_comparison(runs, self.plot.metric)
        else:
            self.plot.compare(None)

    @work(thread=True, exclusive=True, group="run-compare", exit_on_error=False)
    def load_comparison(self, runs: list[Path], metric: str) -> None:
        try:
            message = self.Compared(compare_runs(runs, metric))
        except ScratchError as e:  # runs of two tasks, a metric none of them has: said, not raised
            message = self.Compared([], str(e))
        if not get_current_worker().is_cancelled:  # a newer request (another metric, other runs) wins
            self.post_message(message)

    @on(Compared)
    def compared(self, message: Compared) -> None:
        if self.comparing is None:  # switched off while the worker read
            return
        if message.error:
            self.comparing = None
            self.plot.compare(None)
            self.notify(message.error, severity="warning", markup=False)
            return
        self.plot.compare(message.series)

