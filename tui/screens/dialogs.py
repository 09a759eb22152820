"""Small modal dialogs that return a value with dismiss()."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

DIALOG_CSS = """
{cls} { align: center middle; }
{cls} > Vertical { width: 70; max-width: 95%; height: auto; border: thick $warning; background: $surface; padding: 1 2; }
{cls} Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
{cls} Button { margin-left: 1; }
{cls} .error { color: $error; height: auto; }
"""


class ConfirmDialog(ModalScreen[bool]):
    """Yes/no; Esc or No answers False."""

    BINDINGS = [Binding("escape", "answer(False)", "Cancel"), Binding("y", "answer(True)", "Yes")]
    DEFAULT_CSS = DIALOG_CSS.replace("{cls}", "ConfirmDialog")

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Content(self.question), id="confirm-question")  # names: not markup
            with Horizontal():
                yield Button("No", id="confirm-no")
                yield Button(self.yes, id="confirm-yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class _Question(ModalScreen[str | None]):
    """A question, the fields that answer it (compose_answer), then Cancel and OK (ids PREFIX-cancel,
    PREFIX-ok); Esc or Cancel answers None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    PREFIX = ""

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Content(self.question))  # names: not markup
            yield from self.compose_answer()
            with Horizontal():
                yield Button("Cancel", id=f"{self.PREFIX}-cancel")
                yield Button("OK", id=f"{self.PREFIX}-ok", variant="primary")

    def compose_answer(self) -> ComposeResult:
        yield from ()

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextPrompt(_Question):
    """Asks for one line of text (a new name, a folder); Esc cancels (None)."""

    DEFAULT_CSS = DIALOG_CSS.replace("{cls}", "TextPrompt")
    PREFIX = "prompt"

    def __init__(self, question: str, value: str = "", placeholder: str = "") -> None:
        super().__init__(question)
        self.value, self.placeholder = value, placeholder

    def compose_answer(self) -> ComposeResult:
        yield Input(self.value, placeholder=self.placeholder, id="prompt-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._answer()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "prompt-ok":
            self._answer()
        else:
            self.dismiss(None)

    def _answer(self) -> None:
        text = self.query_one("#prompt-input", Input).value.strip()
        self.dismiss(text or None)


class ChoicePrompt(_Question):
    """Pick one of several options, or type a path when allow_path is set."""

    DEFAULT_CSS = DIALOG_CSS.replace("{cls}", "ChoicePrompt")
    PREFIX = "choice"

    def __init__(self, question: str, options: list[tuple[str, str]], path_hint: str = "") -> None:
        super().__init__(question)
        self.options, self.path_hint = options, path_hint

    def compose_answer(self) -> ComposeResult:
        yield Select(self.options, value=self.options[0][1], allow_blank=False, id="choice-select")
        if self.path_hint:
            yield Input(placeholder=self.path_hint, id="choice-path")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id != "choice-ok":
            self.dismiss(None)
            return
        if self.path_hint:
            path = self.query_one("#choice-path", Input).value.strip()
            if path:
                self.dismiss(path)
                return
        self.dismiss(str(self.query_one("#choice-select", Select).value))
