"""About / settings: where the data lives, the keys, the theme."""

from __future__ import annotations

import os

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Markdown

KEYS = """\
| Key | Does |
|---|---|
| F1 F2 F3 F4 F5 | Chat, Spam, Train, Checkpoints, X-ray: from every screen, also while typing |
| 1 2 3 4 5 | the same, when no text box has the focus (in a text box a digit is typed) |
| ctrl+p | command palette |
| ctrl+t | light / dark theme |
| F10 | this view; Esc or F10 closes it |
| ctrl+q | quit (training jobs keep running) |
"""


def folders_markdown() -> str:
    from chatgpt_scratch.storage import paths  # stdlib only: no torch

    def row(label: str, path, env: str) -> str:
        where = f"from ${env}" if env in os.environ else f"default; set ${env} to change"
        return f"- **{label}**: `{path.resolve()}` ({where})"

    rows = [
        row("Checkpoints", paths.checkpoints_dir(), "CHATGPT_SCRATCH_CHECKPOINTS"),
        row("Datasets", paths.datasets_dir(), "CHATGPT_SCRATCH_DATASETS"),
        row("Runs", paths.runs_dir(), "CHATGPT_SCRATCH_RUNS"),
        row("Chat history", paths.app_data_dir(), "CHATGPT_SCRATCH_HOME"),
    ]
    return "\n".join(rows)


class AboutScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "dismiss", "Close"), Binding("f10", "dismiss", "Close", show=False)]
    DEFAULT_CSS = """
    AboutScreen { align: center middle; }
    AboutScreen > Vertical { width: 90%; max-width: 110; height: 90%; border: thick $primary; background: $surface; }
    AboutScreen VerticalScroll { height: 1fr; }
    AboutScreen #about-buttons { height: 3; align-horizontal: right; }
    AboutScreen #about-buttons Horizontal { height: 3; width: auto; }
    AboutScreen #about-buttons Button { margin-left: 1; }
    """

    def compose(self) -> ComposeResult:
        from chatgpt_scratch import __version__

        text = (
            f"# chatgpt-scratch {__version__}\n\nA GPT built from scratch: chat, classify spam, train, "
            "manage checkpoints.\n\n## Data folders\n\n" + folders_markdown()
            + "\n\nThe app reads these variables when it starts.\n\n"
            "## Keys\n\n" + KEYS
        )
        with Vertical():
            with VerticalScroll():
                yield Markdown(text, id="about-text")
            with Vertical(id="about-buttons"):
                with Horizontal():
                    yield Button("Welcome panel", id="about-welcome")
                    yield Button("Light/dark theme", id="about-theme")

    @on(Button.Pressed, "#about-welcome")
    def welcome_pressed(self) -> None:
        self.app.action_welcome()

    @on(Button.Pressed, "#about-theme")
    def theme_pressed(self) -> None:
        self.app.action_toggle_theme()
