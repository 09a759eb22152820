"""Train screen: a form that builds the CLI command, and a monitor that tails the runs' events.

A job is `chatgpt-scratch pretrain|finetune-spam|finetune-instruct ...`, started as its own
process session (closing the app leaves it running) and stopped with SIGINT (it saves and
exits). The monitor reads `<run>/events.jsonl`, so runs started from a shell show up too.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import (Button, DataTable, Input, Label, Log, Select, Static, TabbedContent, TabPane)

from textual.widgets.select import InvalidSelectValueError

from tui import jobs
from tui.screens.base import MainScreen
from tui.widgets.loss_plot import LossPlot

TASKS = [("Pretrain (next-token)", "pretrain"), ("Spam fine-tune (classifier)", "finetune-spam"),
         ("Instruction fine-tune", "finetune-instruct")]
PRESETS = ["cpu-mini", "cpu-small", "test-tiny", "gpt2-small"]  # the ones worth training from scratch here
DEVICES = ["auto", "cpu", "cuda", "mps"]
POLL_S = 0.25  # events are read (and the plot redrawn) at most 4 times a second
RUNS_REFRESH_S = 2.0



def _flag_text(value: Any) -> str:
    """A default as the form shows it: 4e-4 (as typed on a command line), 8, or blank for None."""
    if value is None:
        return ""
    if isinstance(value, float) and 0 < abs(value) < 1e-3:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _form_defaults(command: str, data: str, **watching: str) -> dict[str, str]:
    """The form's starting values: the command's own defaults (training/config.COMMAND_DEFAULTS, shared with
    the CLI), then `watching`: what the form changes for a run one watches live (more epochs of a small
    corpus, evals and samples often enough to see the curve move)."""
    from chatgpt_scratch.training.config import trainer_defaults

    d = trainer_defaults(command)
    values = {name: _flag_text(d[name]) for name in ("epochs", "max_steps", "batch_size", "lr", "eval_every",
                                                     "sample_every")}
    return {"data": data, "context": "", "lora_rank": "0", "extra": "", **values, **watching}


DEFAULTS: dict[str, dict[str, str]] = {
    "pretrain": _form_defaults("pretrain", "the-verdict", epochs="10", eval_every="5", sample_every="20"),
    "finetune-spam": _form_defaults("finetune-spam", "sms-spam"),
    "finetune-instruct": _form_defaults("finetune-instruct", "instruction-data", sample_every="50"),
}
FIELDS = [  # (name, label, kind) kind: int | int? | int0 | float | name | flags
    ("epochs", "epochs", "int"),
    ("context", "context", "int?"),
    ("max_steps", "max steps", "int?"),
    ("batch_size", "batch size", "int"),
    ("lr", "learning rate", "float"),
    ("eval_every", "eval every", "int0"),
    ("sample_every", "sample every", "int0"),
    ("lora_rank", "LoRA rank", "int0"),
    ("out", "output name", "name"),
    ("extra", "more flags", "flags"),  # any other CLI flags, checked by the CLI's own parser
]


@dataclass
class TrainForm:
    """The form's values as text, and what they become on the command line."""

    task: str = "pretrain"
    start: str = "preset:cpu-mini"  # "preset:NAME" or "checkpoint:PATH"
    data: str = "the-verdict"  # a registry name or a path
    device: str = "auto"
    values: dict[str, str] = field(default_factory=dict)

    def validate(self) -> dict[str, str]:
        """Per-field error messages; empty when the form is good."""
        errors: dict[str, str] = {}
        for name, _, kind in FIELDS:
            text = self.values.get(name, "").strip()
            if kind == "int?" and not text:
                continue
            if kind == "name":
                if text and ("/" in text or text.startswith(".") or " " in text):
                    errors[name] = "a plain name: no '/', spaces or leading dot"
                continue
            if kind == "flags":
                try:
                    shlex.split(text)
                except ValueError as e:
                    errors[name] = str(e)
                continue
            try:
                number = float(text) if kind == "float" else int(text)
            except ValueError:
                errors[name] = "a number" if kind == "float" else "a whole number"
                continue
            if kind in ("int", "int?", "float") and number <= 0:
                errors[name] = "must be > 0"
            elif kind == "int0" and number < 0:
                errors[name] = "must be >= 0 (0 = off)"
        if name_errors := self._start_error():
            errors["start"] = name_errors
        if not self.data.strip():
            errors["data"] = "pick a dataset or give a path"
        elif ("/" in self.data or self.data.startswith(".")) and not Path(self.data).expanduser().exists():
            errors["data"] = f"no such file: {self.data}"
        if (self.task == "pretrain" and "lora_rank" not in errors
                and self.values.get("lora_rank", "0").strip() not in ("", "0")):
            errors["lora_rank"] = "LoRA is for fine-tuning; use 0 to pretrain"
        if not errors and self.values.get("extra", "").strip():
            from chatgpt_scratch.cli import argument_error

            if problem := argument_error(self.args("check", Path("checkpoints"))):
                errors["extra"] = problem
        return errors

    def _start_error(self) -> str | None:
        kind, _, value = self.start.partition(":")
        if kind == "checkpoint" and not Path(value).is_file():
            return f"checkpoint not found: {value}"
        if kind not in ("preset", "checkpoint"):
            return "pick a preset or a checkpoint"
        return None

    default_name: str = ""

    def new_default_name(self) -> None:
        self.default_name = f"{self.task}-{datetime.now().strftime('%m%d-%H%M%S')}"

    def run_name(self) -> str:
        out = self.values.get("out", "").strip().removesuffix(".safetensors")
        if not self.default_name:
            self.new_default_name()
        return out or self.default_name

    def args(self, name: str, checkpoints: Path, model_context: int | None = None) -> list[str]:
        """The CLI arguments (after `chatgpt-scratch`); the checkpoint is written to CHECKPOINTS/NAME.safetensors."""
        v = {k: s.strip() for k, s in self.values.items()}
        kind, _, start = self.start.partition(":")
        args = [self.task]
        args += ["--preset", start] if kind == "preset" else ["--init", start]
        args += ["--data", self.data.strip()]
        if v.get("max_steps"):
            args += ["--max-steps", v["max_steps"]]
        else:
            args += ["--epochs", v["epochs"]]
        context = v.get("context") or (str(min(256, model_context)) if model_context else "")
        if context:
            args += ["--context" if self.task == "pretrain" else "--max-length", context]
        args += ["--batch-size", v["batch_size"], "--lr", v["lr"], "--eval-every", v["eval_every"]]
        if self.task != "finetune-spam" and v.get("sample_every", "0") != "0":
            args += ["--sample-every", v["sample_every"]]
        if self.task != "pretrain" and v.get("lora_rank", "0") not in ("", "0"):
            args += ["--lora-rank", v["lora_rank"]]
        args += ["--device", self.device, "--out", str(checkpoints / f"{name}.safetensors")]
        return args + shlex.split(v.get("extra", ""))  # last: they override the fields above


@dataclass
class Monitor:
    """What the metrics panel shows, folded from the selected run's events."""

    total_steps: int | None = None
    start_step: int = 0
    step: int | None = None
    epoch: float | None = None
    lr: float | None = None
    tokens_per_s: float | None = None
    elapsed_s: float | None = None
    train_loss: float | None = None
    best_val: float | None = None
    best_acc: float | None = None
    mfu: float | None = None
    device: str | None = None
    state: str = ""
    message: str = ""

    def add(self, e: dict[str, Any]) -> None:
        kind = e.get("type")
        if kind == "start":
            self.total_steps = e.get("total_steps") or self.total_steps
            self.start_step = int(e.get("step") or 0)
            amp = e.get("amp_dtype")
            self.device = f"{e.get('device')}, {amp} autocast" if amp and amp != "float32" else e.get("device")
            self.state = "running"
        elif kind == "step":
            for key in ("step", "epoch", "lr", "tokens_per_s", "elapsed_s", "train_loss", "mfu"):
                if e.get(key) is not None:
                    setattr(self, key, e[key])
        elif kind == "eval":
            if isinstance(e.get("val_loss"), (int, float)):
                self.best_val = e["val_loss"] if self.best_val is None else min(self.best_val, e["val_loss"])
            if isinstance(e.get("val_acc"), (int, float)):
                self.best_acc = e["val_acc"] if self.best_acc is None else max(self.best_acc, e["val_acc"])
        elif kind in jobs.TERMINAL_EVENTS:
            self.state = kind
            self.message = str(e.get("message", "")) if kind == "error" else ""

    def eta_s(self) -> float | None:
        if not (self.total_steps and self.step and self.elapsed_s):
            return None
        done = self.step - self.start_step
        if done <= 0:
            return None
        return (self.total_steps - self.step) * self.elapsed_s / done

    def render(self) -> Content:
        """The metrics panel. Run state, device and messages are $variables: shown as written, never as markup."""
        def fmt(v, spec="", none="-"):
            return none if v is None else format(v, spec)

        eta = self.eta_s()
        lines = [
            "[b]state[/b]  $state",
            f"[b]step[/b]   {fmt(self.step)}/{fmt(self.total_steps)}",
            f"[b]epoch[/b]  {fmt(self.epoch, '.2f')}",
            f"[b]loss[/b]   {fmt(self.train_loss, '.4f')}",
            f"[b]lr[/b]     {fmt(self.lr, '.2e')}",
            f"[b]tok/s[/b]  {fmt(self.tokens_per_s, ',.0f')}",
            f"[b]ETA[/b]    {'-' if eta is None else _duration(eta)}",
            f"[b]best val[/b] {fmt(self.best_val, '.4f')}" + (
                f" acc {self.best_acc:.1%}" if self.best_acc is not None else ""),
        ]
        if self.mfu is not None:
            lines.append(f"[b]MFU[/b]    {self.mfu:.1%}")
        if self.device:
            lines.append("[b]device[/b] $device")
        if self.message:
            lines.append("[red]$message[/red]")
        return Content.from_markup("\n".join(lines), state=self.state or "-", device=self.device or "",
                                   message=self.message)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class TrainScreen(MainScreen):
    MODE = "train"
    CSS_PATH = "train.tcss"
    BINDINGS = [
        Binding("f6", "start", "Start"),
        Binding("f7", "stop", "Stop run"),
        Binding("f8", "resume", "Resume run"),
        Binding("ctrl+o", "toggle_tab", "Form/monitor"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.form = TrainForm(values=dict(DEFAULTS["pretrain"], out=""))
        self.runs: dict[str, jobs.RunSummary] = {}
        self.selected: Path | None = None
        self.tail: jobs.EventTail | None = None
        self.monitor = Monitor()
        self.procs: dict[str, Any] = {}  # job name -> Popen of jobs started here (reaped when they end)
        self.contexts: dict[str, int] = {}  # checkpoint path -> its context length
        self.announced: set[str] = set()  # runs whose failure was already notified
        self.procs_started: set[str] = set()  # names of the jobs started in this session
        self._runs_busy = False

    # --- layout --------------------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        with TabbedContent(id="train-tabs", initial="train-monitor-pane"):
            with TabPane("New run", id="train-form-pane"):
                with VerticalScroll(id="train-form"):
                    yield from self._row("task", "task", Select(TASKS, value="pretrain", allow_blank=False,
                                                                id="f-task", compact=True))
                    yield from self._row("start", "start from", Select([], prompt="preset or checkpoint",
                                                                       id="f-start", compact=True))
                    yield from self._row("data", "data", Select([], prompt="known dataset", id="f-data-known",
                                                                compact=True))
                    yield from self._row("data-path", "…or a path", Input(placeholder="path to a file", id="f-data",
                                                                           compact=True))
                    for name, label, _ in FIELDS:
                        value = "" if name == "out" else DEFAULTS["pretrain"][name]
                        placeholder = "default: task-date-time" if name == "out" else ""
                        if name == "max_steps":
                            placeholder = "blank: use epochs"
                        if name == "extra":
                            placeholder = "e.g. --warmup 100 --compile --dtype bfloat16"
                        yield from self._row(name, label, Input(value, placeholder=placeholder, id=f"f-{name}",
                                                                  compact=True))
                    yield from self._row("device", "device", Select([(d, d) for d in DEVICES], value="auto",
                                                                    allow_blank=False, id="f-device", compact=True))
                    yield Label("Command (run it in a shell to train without the app):", classes="cmd-title")
                    yield Static("", id="train-command")
                    yield Button("Start training (F6)", id="train-start", variant="success")
            with TabPane("Monitor", id="train-monitor-pane"):
                with Vertical(id="train-monitor"):
                    table = DataTable(id="train-runs", cursor_type="row", zebra_stripes=True)
                    table.add_columns("Run", "Task", "State", "Step", "Best val")
                    yield table
                    with Horizontal(id="train-live"):
                        yield LossPlot(id="train-plot", title="loss")
                        with Vertical(id="train-side"):
                            yield Static("Select a run above.", id="train-metrics")
                            with Horizontal(id="train-buttons"):
                                yield Button("Stop", id="train-stop", variant="error", compact=True)
                                yield Button("Resume", id="train-resume", compact=True)
                    yield Log(id="train-samples", max_lines=500)

    def _row(self, name: str, label: str, widget) -> ComposeResult:
        with Horizontal(classes="form-row"):
            yield Label(label, classes="form-label")
            yield widget
        yield Label("", id=f"e-{name}", classes="form-error")

    def on_mount(self) -> None:
        self.call_after_refresh(self.fill_choices)  # after the first paint (the listing imports torch)
        self.update_command()
        self.set_interval(POLL_S, self.poll_events)
        self.set_interval(RUNS_REFRESH_S, self.refresh_runs)
        self.refresh_runs()

    def on_screen_resume(self) -> None:
        self.fill_choices()
        self.refresh_runs()

    # --- the form ------------------------------------------------------------------------------

    def fill_choices(self) -> None:
        def work():
            from chatgpt_scratch.checkpoints import list_checkpoints
            from chatgpt_scratch.data.registry import REGISTRY

            return list_checkpoints(), list(REGISTRY)

        def fill(result) -> None:
            infos, datasets = result
            self.contexts = {str(i.path): i.config.context_length for i in infos if i.ok and i.config}
            start = self.query_one("#f-start", Select)
            options = [(f"preset {p} (new model)", f"preset:{p}") for p in PRESETS]
            # Pretraining continues a base model; fine-tuning starts from a base or instruct one.
            kinds = ("base",) if self.form.task == "pretrain" else ("base", "instruct")
            options += [(Content(f"{i.name} ({i.kind})"), f"checkpoint:{i.path}") for i in infos
                        if i.ok and i.kind in kinds]
            current = start.value
            with start.prevent(Select.Changed):
                start.set_options(options)
                values = {v for _, v in options}
                start.value = current if current in values else self._default_start(options)
            self.form.start = str(start.value) if start.value != Select.BLANK else ""
            known = self.query_one("#f-data-known", Select)
            with known.prevent(Select.Changed):
                current = known.value
                known.set_options([(d, d) for d in datasets])
            set_select(known, current if current in datasets else DEFAULTS[self.form.task]["data"])
            self.update_command()

        self.app.run_worker_thread(work, fill, name="train-choices", group="train-choices", exclusive=True)

    def _default_start(self, options: list[tuple[str, str]]) -> str:
        if self.form.task == "pretrain":
            return "preset:cpu-mini"  # trains in minutes on a laptop CPU
        checkpoints = [v for _, v in options if v.startswith("checkpoint:")]
        return checkpoints[0] if checkpoints else options[0][1]

    @on(Select.Changed, "#f-task")
    def task_picked(self, event: Select.Changed) -> None:
        if event.value != Select.BLANK:
            self.form.task = str(event.value)
            for name, _, _ in FIELDS:
                if name != "out":
                    self.query_one(f"#f-{name}", Input).value = DEFAULTS[self.form.task][name]
            set_select(self.query_one("#f-data-known", Select), DEFAULTS[self.form.task]["data"])
            self.query_one("#f-data", Input).value = ""  # a file for one task rarely fits another
            self.fill_choices()
        self.update_command()

    @on(Select.Changed, "#f-start")
    def start_picked(self, event: Select.Changed) -> None:
        if event.value != Select.BLANK:
            self.form.start = str(event.value)
        self.update_command()

    @on(Select.Changed, "#f-device")
    def device_picked(self, event: Select.Changed) -> None:
        self.form.device = str(event.value)
        self.update_command()

    @on(Select.Changed, "#train-form Select")
    @on(Input.Changed, "#train-form Input")
    def form_changed(self, event) -> None:
        if event.control.id not in ("f-task", "f-start", "f-device"):
            self.update_command()

    def read_form(self) -> TrainForm:
        form = self.form
        form.values = {name: self.query_one(f"#f-{name}", Input).value for name, _, _ in FIELDS}
        path = self.query_one("#f-data", Input).value.strip()
        known = self.query_one("#f-data-known", Select).value
        form.data = path or ("" if known == Select.BLANK else str(known))
        start = self.query_one("#f-start", Select).value
        form.start = "" if start == Select.BLANK else str(start)
        return form

    def update_command(self) -> dict[str, str]:
        form = self.read_form()
        errors = form.validate()
        for name in [n for n, _, _ in FIELDS] + ["start", "data", "task", "device", "data-path"]:
            try:
                label = self.query_one(f"#e-{name}", Label)
                label.update(Content(errors.get(name, "")))
                label.set_class(name in errors, "-shown")
            except Exception:  # noqa: BLE001 - a row this form does not have
                pass
        command = self.query_one("#train-command", Static)
        if errors:
            command.update("[dim](fix the fields marked in red)[/dim]")
        else:
            command.update(Content(jobs.display_command(self.current_args())))
        return errors

    def current_args(self) -> list[str]:
        from chatgpt_scratch.paths import checkpoints_dir

        return self.form.args(self.form.run_name(), checkpoints_dir(), self.start_context())

    def start_context(self) -> int | None:
        """The context length of the model the run starts from (the training window must fit in it)."""
        kind, _, value = self.form.start.partition(":")
        if kind == "preset":
            from chatgpt_scratch.config import PRESETS  # no torch in config.py

            cfg = PRESETS.get(value)
            return cfg.context_length if cfg else None
        return self.contexts.get(value)

    def action_start(self) -> None:
        errors = self.update_command()
        if errors:
            self.query_one(TabbedContent).active = "train-form-pane"
            self.notify("Fix the fields marked in red first.", severity="error")
            return
        from chatgpt_scratch.paths import checkpoints_dir, runs_dir

        form = self.form
        name = form.run_name()
        if (checkpoints_dir() / f"{name}.safetensors").exists() or (jobs.jobs_dir(runs_dir()) / f"{name}.json").exists():
            self.query_one(TabbedContent).active = "train-form-pane"
            self.notify(f"The name {name} is taken (a checkpoint or run has it); choose another output name.",
                        severity="error", markup=False)
            return
        args = self.current_args()
        self.launch(args, name, form.task)
        form.new_default_name()
        self.update_command()

    def launch(self, args: list[str], name: str, task: str, run_dir: Path | None = None) -> None:
        from chatgpt_scratch.paths import runs_dir

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

        def work():
            try:
                return jobs.list_runs()
            finally:
                self._runs_busy = False

        # Not exclusive: a cancelled-before-start worker would never clear _runs_busy.
        self.app.run_worker_thread(work, self.show_runs, name="list-runs", group="train-runs")

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
        if self.selected is not None and str(self.selected) in self.runs and not self.monitor.state:
            self.monitor.state = self.runs[str(self.selected)].state
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
        if any(e.get("type") == "start" and e.get("task") == "spam" for e in events):
            plot.title = f"loss / accuracy: {self.selected.name if self.selected else ''}"
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
        summary = self.runs.get(str(self.selected)) if self.selected else None
        if summary is not None and summary.state not in ("running", "starting") and self.monitor.state in (
                "", "running"):
            self.monitor.state = summary.state
        text = self.monitor.render() if self.selected else Content("Select a run above.")
        if summary is not None and summary.state in ("interrupted", "failed", "error") and summary.log:
            log = jobs.tail_text(Path(summary.log), 600).strip().splitlines()
            if log:
                text += Content.from_markup("\n[red]$line[/red]", line=log[-1])
        self.query_one("#train-metrics", Static).update(text)

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

    @on(Button.Pressed, "#train-start")
    def start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#train-stop")
    def stop_pressed(self) -> None:
        self.action_stop()

    @on(Button.Pressed, "#train-resume")
    def resume_pressed(self) -> None:
        self.action_resume()


def set_select(select: Select, value: str) -> None:
    """Show `value` if it is one of the options, without posting Changed."""
    with select.prevent(Select.Changed):
        try:
            select.value = value
        except InvalidSelectValueError:
            pass
