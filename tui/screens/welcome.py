"""The welcome panel, shown once on the first launch: what each screen is for and which model each
one opens with (the user's best of the right kind, else the built-in default). Enter closes it; the
app remembers that in its settings (tui/settings.py) and does not show it again (About can)."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Label, Markdown

from tui.workers import ReportsWorkerErrors

# Each screen: (mode, key, name, what it is for, the command whose default model it opens with).
SCREENS = [
    ("chat", "1", "Chat", "talk to an instruction-tuned model; Esc stops a reply, ctrl+r regenerates", "chat"),
    ("spam", "2", "Spam", "paste messages, one a line: each is labelled spam or ham", "classify"),
    ("train", "3", "Train", "pretrain or fine-tune with a form that shows the command; watch the loss live, "
                            "compare runs", None),
    ("checkpoints", "4", "Checkpoints", "your models: use, rename, copy, delete, export, merge LoRA, "
                                        "import GPT-2", None),
    ("xray", "5", "X-ray", "see inside the model: tokens, next-token probabilities, attention", "xray"),
]
CLOSE_KEY = "enter"


def default_models(commands: list[str]) -> dict[str, Any]:
    """command -> the CheckpointInfo its screen opens with (None: no model of that kind), by the library's
    rule (pick_default over the user's folder and the built-in models, the kinds of DEFAULT_KINDS)."""
    from chatgpt_scratch.checkpoints import list_checkpoints, pick_default
    from chatgpt_scratch.storage.checkpoint_format import DEFAULT_KINDS

    infos = list_checkpoints()
    return {command: pick_default(infos, DEFAULT_KINDS[command]) for command in commands}


def welcome_markdown(has_xray: bool, models: dict[str, Any] | None) -> str:
    lines = ["# Welcome to chatgpt-scratch", "",
             "A GPT built from scratch, in your terminal. Five screens, one key each "
             "(F1-F5 from anywhere; 1-5 when no text box has the focus):", ""]
    for mode, key, name, purpose, command in SCREENS:
        if mode == "xray" and not has_xray:
            continue
        line = f"- **{key} {name}**: {purpose}."
        if command is not None:
            line += f" Model: {_model_text(models, command)}."
        lines.append(line)
    lines += ["", "F10 shows the data folders and the keys; ctrl+p the command palette; ctrl+q quits "
              "(training jobs keep running). Each screen's keys are in its footer."]
    return "\n".join(lines)


def _model_text(models: dict[str, Any] | None, command: str) -> str:
    if models is None:
        return "being looked up"
    info = models.get(command)
    if info is None:
        return "none yet (train one in Train, or import GPT-2 in Checkpoints)"
    return f"`{info.name}` ({'built-in' if info.builtin else 'yours'})"


class WelcomeScreen(ReportsWorkerErrors, ModalScreen[None]):
    BINDINGS = [Binding(CLOSE_KEY, "dismiss", "Start"), Binding("escape", "dismiss", "Close", show=False)]
    DEFAULT_CSS = """
    WelcomeScreen { align: center middle; }
    WelcomeScreen > Vertical { width: 90%; max-width: 100; height: auto; max-height: 90%;
                               border: thick $primary; background: $surface; }
    WelcomeScreen VerticalScroll { height: auto; max-height: 1fr; }
    WelcomeScreen #welcome-close { dock: bottom; height: 1; width: 1fr; content-align: center middle;
                                   text-style: bold; color: $accent; }
    """

    class ModelsFound(Message):
        """A worker found the model each screen opens with."""

        def __init__(self, models: dict[str, Any]) -> None:
            super().__init__()
            self.models = models

    def compose(self) -> ComposeResult:
        with Vertical():
            # Docked at the bottom: at 80x24 the text scrolls, the way out stays in sight.
            yield Label("Press Enter to start · F10 About shows this again",
                        id="welcome-close")
            with VerticalScroll():
                yield Markdown(welcome_markdown(self.app.has_xray, None), id="welcome-text")

    def on_mount(self) -> None:
        self.find_models()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def find_models(self) -> None:
        commands = [command for mode, *_, command in SCREENS if command and (mode != "xray" or self.app.has_xray)]
        self.post_message(self.ModelsFound(default_models(commands)))

    @on(ModelsFound)
    def models_found(self, message: ModelsFound) -> None:
        self.query_one("#welcome-text", Markdown).update(welcome_markdown(self.app.has_xray, message.models))

