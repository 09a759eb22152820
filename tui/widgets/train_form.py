"""The New-run form: one row per field (with its error line), the command it builds, and Start.

The widget owns its behaviour: it fills the start/data choices in a worker, keeps `form` (a
TrainForm) in step with what is typed, marks invalid fields and shows the command. Start (the
button) posts TrainFormPanel.StartRequested; the screen decides what to do with it."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import Button, Input, Label, Select, Static
from textual.widgets.select import InvalidSelectValueError

from tui import jobs
from tui.train_form import DEFAULTS, DEVICES, FIELDS, NEEDS_CHECKPOINT, PRESETS, START_KINDS, TASKS, TrainForm
from tui.workers import ReportsWorkerErrors


def set_select(select: Select, value: str) -> None:
    """Show `value` if it is one of the options, without posting Changed."""
    with select.prevent(Select.Changed):
        try:
            select.value = value
        except InvalidSelectValueError:
            pass


class TrainFormPanel(ReportsWorkerErrors, VerticalScroll):
    class StartRequested(Message):
        """The user pressed Start."""

    class ChoicesListed(Message):
        """A worker listed the checkpoints (for "start from") and the known datasets."""

        def __init__(self, infos: list[Any], datasets: list[str]) -> None:
            super().__init__()
            self.infos, self.datasets = infos, datasets

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.form = TrainForm(values=dict(DEFAULTS["pretrain"], out=""))
        self.contexts: dict[str, int] = {}  # checkpoint path -> its context length

    def compose(self) -> ComposeResult:
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
            placeholder = "default: task-N (the run folder adds the date)" if name == "out" else ""
            if name == "max_steps":
                placeholder = "blank: use epochs"
            if name == "extra":
                placeholder = "e.g. --warmup 100 --compile --dtype bfloat16"
            yield from self._row(name, label, Input(value, placeholder=placeholder, id=f"f-{name}", compact=True))
        yield from self._row("device", "device", Select([(d, d) for d in DEVICES], value="auto",
                                                        allow_blank=False, id="f-device", compact=True))
        yield Label("Command (run it in a shell to train without the app):", classes="cmd-title")
        yield Static("", id="train-command")
        yield Button("Start training (F6)", id="train-start", variant="success")

    def _row(self, name: str, label: str, widget) -> ComposeResult:
        with Horizontal(classes="form-row"):
            yield Label(label, classes="form-label")
            yield widget
        yield Label("", id=f"e-{name}", classes="form-error")

    # --- choices ---------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="train-choices", exit_on_error=False)
    def fill_choices(self) -> None:
        from chatgpt_scratch.checkpoints import list_checkpoints
        from chatgpt_scratch.data.registry import REGISTRY

        self.post_message(self.ChoicesListed(list_checkpoints(), list(REGISTRY)))

    @on(ChoicesListed)
    def choices_listed(self, message: ChoicesListed) -> None:
        infos, datasets = message.infos, message.datasets
        self.contexts = {str(i.path): i.config.context_length for i in infos if i.ok and i.config}
        start = self.query_one("#f-start", Select)
        task = self.form.task
        options = [] if task in NEEDS_CHECKPOINT else [(f"preset {p} (new model)", f"preset:{p}") for p in PRESETS]
        kinds = START_KINDS[task]
        offered = [i for i in infos if i.ok and i.kind in kinds]
        options += [(Content(f"{i.name} ({i.kind}{', built-in' if i.builtin else ''})"), f"checkpoint:{i.path}")
                    for i in offered]
        current = start.value
        with start.prevent(Select.Changed):
            start.set_options(options)
            values = {v for _, v in options}
            if current in values:
                start.value = current
            elif options:
                start.value = self._default_start(options, offered)
        self.form.start = str(start.value) if start.value != Select.BLANK else ""
        known = self.query_one("#f-data-known", Select)
        with known.prevent(Select.Changed):
            current = known.value
            known.set_options([(d, d) for d in datasets])
        set_select(known, current if current in datasets else DEFAULTS[self.form.task]["data"])
        self.update_command()

    def _default_start(self, options: list[tuple[Any, str]], offered: list[Any]) -> str:
        if self.form.task == "pretrain":
            return "preset:cpu-mini"  # trains in minutes on a laptop CPU
        if self.form.task in NEEDS_CHECKPOINT:
            from chatgpt_scratch.checkpoints import pick_default

            best = pick_default(offered, START_KINDS[self.form.task])  # the library's rule: the best instruct model
            if best is not None:
                return f"checkpoint:{best.path}"
        checkpoints = [v for _, v in options if v.startswith("checkpoint:")]
        return checkpoints[0] if checkpoints else options[0][1]

    # --- editing ---------------------------------------------------------------------------------

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

    @on(Select.Changed)
    @on(Input.Changed)
    def field_changed(self, event) -> None:
        if event.control.id not in ("f-task", "f-start", "f-device"):
            self.update_command()

    @on(Button.Pressed, "#train-start")
    def start_pressed(self) -> None:
        self.post_message(self.StartRequested())

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
        """Validate, mark the fields in error, show the command; -> the errors by field."""
        form = self.read_form()
        errors = form.validate()
        for name in [n for n, _, _ in FIELDS] + ["start", "data", "task", "device", "data-path"]:
            for label in self.query(f"#e-{name}").results(Label):  # a row this form may not have
                label.update(Content(errors.get(name, "")))
                label.set_class(name in errors, "-shown")
        command = self.query_one("#train-command", Static)
        if errors:
            command.update("[dim](fix the fields marked in red)[/dim]")
        else:
            command.update(Content(jobs.display_command(self.current_args())))
        return errors

    def current_args(self) -> list[str]:
        from chatgpt_scratch.storage.paths import checkpoints_dir

        return self.form.args(self.form.run_name(), checkpoints_dir(), self.start_context())

    def start_context(self) -> int | None:
        """The context length of the model the run starts from (the training window must fit in it)."""
        kind, _, value = self.form.start.partition(":")
        if kind == "preset":
            from chatgpt_scratch.config import PRESETS as MODEL_PRESETS  # no torch in config.py

            cfg = MODEL_PRESETS.get(value)
            return cfg.context_length if cfg else None
        return self.contexts.get(value)

