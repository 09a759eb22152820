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


class TextPrompt(ModalScreen[str | None]):
    """Asks for one line of text (a new name, a folder); Esc cancels (None)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = DIALOG_CSS.replace("{cls}", "TextPrompt")

    def __init__(self, question: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Content(self.question))
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input")
            with Horizontal():
                yield Button("Cancel", id="prompt-cancel")
                yield Button("OK", id="prompt-ok", variant="primary")

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

    def action_cancel(self) -> None:
        self.dismiss(None)


class ChoicePrompt(ModalScreen[str | None]):
    """Pick one of several options, or type a path when allow_path is set."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = DIALOG_CSS.replace("{cls}", "ChoicePrompt")

    def __init__(self, question: str, options: list[tuple[str, str]], path_hint: str = "") -> None:
        super().__init__()
        self.question = question
        self.options = options
        self.path_hint = path_hint

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Content(self.question))
            yield Select(self.options, value=self.options[0][1], allow_blank=False, id="choice-select")
            if self.path_hint:
                yield Input(placeholder=self.path_hint, id="choice-path")
            with Horizontal():
                yield Button("Cancel", id="choice-cancel")
                yield Button("OK", id="choice-ok", variant="primary")

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

    def action_cancel(self) -> None:
        self.dismiss(None)
