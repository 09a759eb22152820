"""Train screen: a form that builds the CLI command, and a monitor of the runs.

A job is `chatgpt-scratch pretrain|finetune-spam|finetune-instruct|finetune-dpo ...`, started as its own
process session (closing the app leaves it running) and stopped with SIGINT (it saves and
exits). The monitor reads `<run>/events.jsonl`, so runs started from a shell show up too.

The widgets own their parts: TrainFormPanel (the form and its command), RunList (the runs, marks to
compare), RunView (the followed run's plot, panel and samples; the comparison of runs). The screen
starts, stops and resumes jobs, and ties the list to the view.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import TabbedContent, TabPane

from tui import jobs
from tui.screens.base import MainScreen
from tui.train_form import DEFAULTS, FIELDS, TrainForm, name_taken  # noqa: F401 (DEFAULTS, FIELDS: public here too)
from tui.widgets.run_list import RunList
from tui.widgets.run_monitor import Monitor
from tui.widgets.run_view import RunView
from tui.widgets.train_form import TrainFormPanel, set_select  # noqa: F401 (set_select: public here too)

RUNS_REFRESH_S = 2.0
MONITOR_ONLY = ("metric", "compare")  # the plot's keys: shown and active on the Monitor tab only


class TrainScreen(MainScreen):
    MODE = "train"

    def __init__(self) -> None:
        super().__init__()
        self.procs: dict[str, Any] = {}  # job name -> Popen of jobs started here (reaped when they end)
        self.announced: set[str] = set()  # runs whose failure was already notified
        self.procs_started: set[str] = set()  # names of the jobs started in this session

    # --- layout --------------------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        # With no runs yet there is nothing to monitor: open on the form (the tabs above switch, as ctrl+o does).
        initial = "train-monitor-pane" if _may_have_runs() else "train-form-pane"
        with TabbedContent(id="train-tabs", initial=initial):
            with TabPane("New run", id="train-form-pane"):
                yield TrainFormPanel(id="train-form")
            with TabPane("Monitor", id="train-monitor-pane"):
                with Vertical(id="train-monitor"):
                    yield RunList(id="train-runs")
                    yield RunView(id="train-view")

    @property
    def form(self) -> TrainForm:
        return self.query_one(TrainFormPanel).form

    @property
    def run_list(self) -> RunList:
        return self.query_one(RunList)

    @property
    def view(self) -> RunView:
        return self.query_one(RunView)

    # What the monitor shows, as the tests and the smoke script read it.
    @property
    def runs(self) -> dict[str, jobs.RunSummary]:
        return self.run_list.runs

    @property
    def selected(self) -> Path | None:
        return self.view.run_dir

    @property
    def monitor(self) -> Monitor:
        return self.view.monitor

    def update_command(self) -> dict[str, str]:
        return self.query_one(TrainFormPanel).update_command()

    def fill_choices(self) -> None:
        self.query_one(TrainFormPanel).fill_choices()

    def on_mount(self) -> None:
        self.call_after_refresh(self.fill_choices)  # after the first paint (the listing imports torch)
        self.update_command()
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
        for key, proc in list(self.procs.items()):
            if proc.poll() is not None:  # reap finished children so they do not linger as zombies
                del self.procs[key]
        self.run_list.refresh_runs()

    @on(RunList.Listed)
    def runs_listed(self, message: RunList.Listed) -> None:
        if not self.run_list.listed_once and not message.runs:  # folders that are not runs: nothing to monitor
            self.query_one(TabbedContent).active = "train-form-pane"
        self.show_runs(message.runs)

    def show_runs(self, runs: list[jobs.RunSummary]) -> None:
        for r in runs:  # a job started in this session that died: say so once, with its last words
            if (r.state in ("failed", "interrupted") and r.log and str(r.path) not in self.announced
                    and Path(r.log).stem in self.procs_started):
                self.announced.add(str(r.path))
                last = jobs.tail_text(Path(r.log), 600).strip().splitlines()
                self.notify(f"{r.name} {r.state}: {last[-1] if last else 'no output'}", severity="error",
                            markup=False, timeout=10)
        selected = self.selected
        self.run_list.show(runs, selected)
        if selected is not None and str(selected) not in self.runs and selected.parent.name == jobs.JOBS_SUBDIR:
            # A job started here got its run folder (its log is still the job's NAME.log): follow it there.
            linked = next((r for r in runs if r.log and Path(r.log).stem == selected.name), None)
            if linked is not None:
                self.select_run(linked.path)
        elif runs and selected is None:
            self.select_run(runs[0].path)
        view = self.view
        view.show_panel(self.runs.get(str(view.run_dir)) if view.run_dir else None)
        if view.run_dir is not None and view.monitor.step is not None:
            self.run_list.show_step(view.run_dir, view.monitor.step, view.monitor.total_steps)
        if view.comparing and any(self.runs.get(str(p)) and self.runs[str(p)].state in ("running", "starting")
                                  for p in view.comparing):
            view.compare(view.comparing)  # a compared run is still training: read its new points

    def select_run(self, run_dir: Path) -> None:
        self.run_list.move_to(run_dir)
        self.view.follow(run_dir, self.runs.get(str(run_dir)))

    @on(RunList.Picked)
    def run_picked(self, message: RunList.Picked) -> None:
        if message.path != self.selected:
            self.select_run(message.path)

    @on(RunView.Advanced)
    def run_advanced(self, message: RunView.Advanced) -> None:
        self.run_list.show_step(message.path, message.step, message.total)

    @on(RunView.Ended)
    def run_ended(self, message: RunView.Ended) -> None:
        self.refresh_runs()
        if message.event["type"] == "error":
            self.notify(f"{message.path.name}: {message.event.get('message', 'failed')}", severity="error",
                        markup=False)

    # --- the plot: a metric on demand, runs compared -------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in MONITOR_ONLY:  # False: off, and not in the footer (the form has no plot)
            tabs = self.query(TabbedContent).first(TabbedContent) if self.is_mounted else None
            return tabs is not None and tabs.active == "train-monitor-pane"
        return True

    @on(TabbedContent.TabActivated, "#train-tabs")
    def tab_activated(self) -> None:
        self.refresh_bindings()  # the plot's keys come and go with the Monitor tab

    def action_metric(self) -> None:
        self.view.next_metric()

    def action_compare(self) -> None:
        """Overlay the runs marked in the list (space) on one plot; again: back to the selected run."""
        view = self.view
        if view.comparing:
            view.compare(None)
            return
        marked = [Path(key) for key in self.run_list.marked]
        if len(marked) < 2:
            self.notify("Mark two or more runs of one task with space in the runs list, then press c.",
                        severity="warning")
            return
        view.compare(marked)

    @on(RunList.MarksChanged)
    def marks_changed(self, message: RunList.MarksChanged) -> None:
        if self.view.comparing:  # comparing already: show the runs marked now
            self.view.compare(message.marked if len(message.marked) >= 2 else None)

    # --- stopping and resuming (the view's buttons; the keys here) -----------------------------

    def action_stop(self) -> None:
        self.view.stop()

    def action_resume(self) -> None:
        self.view.resume()

    @on(RunView.ResumeRequested)
    def resume_requested(self, message: RunView.ResumeRequested) -> None:
        # The CLI reloads the run's own flags from its run.json; --resume is all it needs.
        summary = message.summary
        name = f"{summary.name}-resume-{datetime.now().strftime('%H%M%S')}"
        self.launch([message.task, "--resume", str(summary.path)], name, message.task, run_dir=summary.path)

    def action_toggle_tab(self) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = "train-form-pane" if tabs.active == "train-monitor-pane" else "train-monitor-pane"


def _may_have_runs() -> bool:
    """A cheap look before the first paint (the full listing runs in a worker): any folder in the runs folder."""
    from chatgpt_scratch.storage.paths import runs_dir

    try:
        return any(entry.is_dir() for entry in runs_dir().iterdir())
    except OSError:
        return False
