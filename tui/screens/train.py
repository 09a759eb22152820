"""Train screen: a form that builds the CLI command, and a monitor that tails the runs' events.

A job is `chatgpt-scratch pretrain|finetune-spam|finetune-instruct|finetune-dpo ...`, started as its own
process session (closing the app leaves it running) and stopped with SIGINT (it saves and
exits). The monitor reads `<run>/events.jsonl`, so runs started from a shell show up too.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Button, DataTable, Log, Static, TabbedContent, TabPane

from tui import jobs
from tui.screens.base import MainScreen
from tui.train_form import DEFAULTS, FIELDS, TASKS, TrainForm, name_taken  # noqa: F401 (DEFAULTS, FIELDS: public here too)
from tui.widgets.loss_plot import LossPlot
from tui.widgets.row_table import RowTable
from tui.widgets.run_monitor import Monitor
from tui.widgets.train_form import TrainFormPanel, set_select  # noqa: F401 (set_select: public here too)

POLL_S = 0.25  # events are read (and the plot redrawn) at most 4 times a second
RUNS_REFRESH_S = 2.0


class TrainScreen(MainScreen):
    MODE = "train"
    CSS_PATH = "train.tcss"
    BINDINGS = [
        Binding("f6", "start", "Start"),
        Binding("f7", "stop", "Stop run"),
        Binding("f8", "resume", "Resume run"),
        Binding("ctrl+o", "toggle_tab", "Form/monitor"),
    ]

    class RunsListed(Message):
        """A worker read the runs folder (and the jobs started from here)."""

        def __init__(self, runs: list[jobs.RunSummary]) -> None:
            super().__init__()
            self.runs = runs

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[str, jobs.RunSummary] = {}
        self.selected: Path | None = None
        self.tail: jobs.EventTail | None = None
        self.monitor = Monitor()
        self.procs: dict[str, Any] = {}  # job name -> Popen of jobs started here (reaped when they end)
        self.announced: set[str] = set()  # runs whose failure was already notified
        self.procs_started: set[str] = set()  # names of the jobs started in this session
        self._runs_busy = False
        self._listed_once = False

    # --- layout --------------------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        # With no runs yet there is nothing to monitor: open on the form (the tabs above switch, as ctrl+o does).
        initial = "train-monitor-pane" if _may_have_runs() else "train-form-pane"
        with TabbedContent(id="train-tabs", initial=initial):
            with TabPane("New run", id="train-form-pane"):
                yield TrainFormPanel(id="train-form")
            with TabPane("Monitor", id="train-monitor-pane"):
                with Vertical(id="train-monitor"):
                    table = RowTable(id="train-runs", cursor_type="row", zebra_stripes=True)
                    self._step_column = table.add_columns("Run", "Task", "State", "Step", "Best val")[3]
                    yield table
                    with Horizontal(id="train-live"):
                        yield LossPlot(id="train-plot", title="loss")
                        with Vertical(id="train-side"):
                            yield Static("Select a run above.", id="train-metrics")
                            with Horizontal(id="train-buttons"):
                                yield Button("Stop", id="train-stop", variant="error", compact=True)
                                yield Button("Resume", id="train-resume", compact=True)
                    yield Log(id="train-samples", max_lines=500)

    @property
    def form(self) -> TrainForm:
        return self.query_one(TrainFormPanel).form

    def update_command(self) -> dict[str, str]:
        return self.query_one(TrainFormPanel).update_command()

    def fill_choices(self) -> None:
        self.query_one(TrainFormPanel).fill_choices()

    def on_mount(self) -> None:
        self.call_after_refresh(self.fill_choices)  # after the first paint (the listing imports torch)
        self.update_command()
        self.set_interval(POLL_S, self.poll_events)
        self.set_interval(RUNS_REFRESH_S, self.refresh_runs)
        self.refresh_runs()

    def on_screen_resume(self) -> None:
        self.fill_choices()
        self.refresh_runs()

    # --- starting a run --------------------------------------------------------------------------

    @on(TrainFormPanel.StartRequested)
    def start_requested(self) -> None:
        self.action_start()

    def action_start(self) -> None:
        errors = self.update_command()
        if errors:
            self.query_one(TabbedContent).active = "train-form-pane"
            self.notify("Fix the fields marked in red first.", severity="error")
            return

        form = self.form
        name = form.run_name()
        if name_taken(name):
            self.query_one(TabbedContent).active = "train-form-pane"
            self.notify(f"The name {name} is taken (a checkpoint or run has it); choose another output name.",
                        severity="error", markup=False)
            return
        args = self.query_one(TrainFormPanel).current_args()
        self.launch(args, name, form.task)
        form.new_default_name()
        self.update_command()

    def launch(self, args: list[str], name: str, task: str, run_dir: Path | None = None) -> None:
        from chatgpt_scratch.storage.paths import runs_dir

        try:
            proc = jobs.start_job(args, name, task=task, runs_folder=runs_dir(), run_dir=run_dir)
        except OSError as e:
            self.notify(f"cannot start the job: {e}", severity="error", markup=False)
            return
        self.procs[name] = proc
        self.procs_started.add(name)
        self.notify(f"Started {name} (pid {proc.pid}): {jobs.display_command(args)}", markup=False)
        self.query_one(TabbedContent).active = "train-monitor-pane"
        self.select_run(run_dir or jobs.jobs_dir(runs_dir()) / name)
        self.refresh_runs()

    # --- runs and the monitor ------------------------------------------------------------------

    def refresh_runs(self) -> None:
        if self._runs_busy:
            return
        self._runs_busy = True
        for key, proc in list(self.procs.items()):
            if proc.poll() is not None:  # reap finished children so they do not linger as zombies
                del self.procs[key]

        self.list_runs()

    # Not exclusive: a worker cancelled before it starts would never clear _runs_busy.
    @work(thread=True, group="train-runs", exit_on_error=False)
    def list_runs(self) -> None:
        try:
            runs = jobs.list_runs()
        finally:
            self._runs_busy = False
        self.post_message(self.RunsListed(runs))

    @on(RunsListed)
    def runs_listed(self, message: RunsListed) -> None:
        first, self._listed_once = not self._listed_once, True
        if first and not message.runs:  # folders that are not runs: still nothing to monitor
            self.query_one(TabbedContent).active = "train-form-pane"
        self.show_runs(message.runs)

    def show_runs(self, runs: list[jobs.RunSummary]) -> None:
        table = self.query_one("#train-runs", DataTable)
        self.runs = {str(r.path): r for r in runs}
        for r in runs:  # a job started in this session that died: say so once, with its last words
            if (r.state in ("failed", "interrupted") and r.log and str(r.path) not in self.announced
                    and Path(r.log).stem in self.procs_started):
                self.announced.add(str(r.path))
                last = jobs.tail_text(Path(r.log), 600).strip().splitlines()
                self.notify(f"{r.name} {r.state}: {last[-1] if last else 'no output'}", severity="error",
                            markup=False, timeout=10)
        keep = str(self.selected) if self.selected else None
        table.clear()
        for r in runs:
            step = "-" if r.step is None else (f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step))
            best = "-" if r.best_val is None else f"{r.best_val:.4f}"
            table.add_row(Text(r.name), r.task or "?", r.state, step, best, key=str(r.path))  # Text: not markup
        if keep not in self.runs and self.selected is not None and self.selected.parent.name == jobs.JOBS_SUBDIR:
            # A job started here got its run folder (its log is still the job's NAME.log): follow it there.
            linked = next((r for r in runs if r.log and Path(r.log).stem == self.selected.name), None)
            if linked is not None:
                self.select_run(linked.path)
                keep = str(linked.path)
        if keep in self.runs:
            with table.prevent(DataTable.RowHighlighted):
                table.move_cursor(row=table.get_row_index(keep))
        elif runs and self.selected is None:
            self.select_run(runs[0].path)
        self.update_metrics()

    @on(DataTable.RowHighlighted, "#train-runs")
    def run_highlighted(self, event: DataTable.RowHighlighted) -> None:
        # Only the user moves the selection; rebuilding the table every few seconds highlights row 0.
        if event.data_table.has_focus and event.row_key.value:
            path = Path(event.row_key.value)
            if path != self.selected:
                self.select_run(path)

    def select_run(self, run_dir: Path) -> None:
        self.selected = run_dir
        self.tail = jobs.EventTail(run_dir / jobs.EVENTS_FILE)
        self.monitor = Monitor()
        self.query_one("#train-plot", LossPlot).clear()
        self.query_one("#train-plot", LossPlot).title = f"loss: {run_dir.name}"
        self.query_one("#train-samples", Log).clear()
        self.poll_events()

    def poll_events(self) -> None:
        if self.tail is None:
            return
        events = self.tail.poll()
        if not events:
            return
        plot = self.query_one("#train-plot", LossPlot)
        run = self.selected.name if self.selected else ""
        if any(e.get("type") == "start" and e.get("task") == "spam" for e in events):
            plot.title = f"loss / accuracy: {run}"
        elif any(e.get("type") == "start" and e.get("task") == "dpo" for e in events):
            plot.title = f"DPO loss / reward margin / reward acc: {run}"
        plot.add_events(events)
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
                self.refresh_runs()
                if e["type"] == "error":
                    self.notify(f"{self.selected.name if self.selected else 'run'}: {e.get('message', 'failed')}",
                                severity="error", markup=False)
        self.update_metrics()

    def update_metrics(self) -> None:
        """The side panel. Its state is the runs list's (RunSummary.state: events and the process together),
        so the two never disagree; the events alone only decide while the run is not listed yet."""
        summary = self.runs.get(str(self.selected)) if self.selected else None
        state = summary.state if summary is not None else self.monitor.state
        text = self.monitor.render(state) if self.selected else Content("Select a run above.")
        if summary is not None and self.monitor.step is not None:
            self._show_step(summary, self.monitor.step, self.monitor.total_steps or summary.total_steps)
        if summary is not None and summary.state in ("interrupted", "failed", "error") and summary.log:
            log = jobs.tail_text(Path(summary.log), 600).strip().splitlines()
            if log:
                text += Content.from_markup("\n[red]$line[/red]", line=log[-1])
        self.query_one("#train-metrics", Static).update(text)

    def _show_step(self, summary: jobs.RunSummary, step: int, total: int | None) -> None:
        """The selected run's Step cell follows the events the plot reads (4 times a second, the list every 2 s)."""
        if summary.step is not None and step < summary.step:
            return
        table = self.query_one("#train-runs", DataTable)
        try:
            table.update_cell(str(summary.path), self._step_column, f"{step}/{total}" if total else str(step))
        except Exception:  # the row is being rebuilt
            pass

    def action_stop(self) -> None:
        summary = self.runs.get(str(self.selected)) if self.selected else None
        if summary is None:
            self.notify("Select a run first.", severity="warning")
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

    def action_resume(self) -> None:
        summary = self.runs.get(str(self.selected)) if self.selected else None
        if summary is None:
            self.notify("Select a run first.", severity="warning")
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
        # The CLI reloads the run's own flags from its run.json; --resume is all it needs.
        name = f"{summary.name}-resume-{datetime.now().strftime('%H%M%S')}"
        self.launch([task, "--resume", str(summary.path)], name, task, run_dir=summary.path)

    def action_toggle_tab(self) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = "train-form-pane" if tabs.active == "train-monitor-pane" else "train-monitor-pane"

    @on(Button.Pressed, "#train-stop")
    def stop_pressed(self) -> None:
        self.action_stop()

    @on(Button.Pressed, "#train-resume")
    def resume_pressed(self) -> None:
        self.action_resume()


def _may_have_runs() -> bool:
    """A cheap look before the first paint (the full listing runs in a worker): any folder in the runs folder."""
    from chatgpt_scratch.storage.paths import runs_dir

    try:
        return any(entry.is_dir() for entry in runs_dir().iterdir())
    except OSError:
        return False
