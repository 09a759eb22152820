"""The Chat screen's centre: the conversation (ChatLog), the status line and the message box. It owns
what only shows or reads them: the first-run help when there is no model, the status line, moving the
message selection (ctrl+up / ctrl+down) and copying a message (ctrl+y)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Input, Label, Markdown

from tui.widgets.chat_log import ChatLog


def how_to_get_a_model(folder: Path) -> str:
    return f"""\
## No model to chat with yet

Chat needs a **base** or **instruct** checkpoint in `{folder}`. Two ways to get one:

1. **Import GPT-2** — press **4** (Checkpoints), then **i**, pick *gpt2-small (124M)*
   (downloads about 500 MB once). From a shell: `chatgpt-scratch import-gpt2 gpt2-small`.
2. **Train your own** — press **3** (Train): task *pretrain*, start from preset *cpu-mini*,
   data *the-verdict*; then task *instruction fine-tune* on it for a model that follows instructions.

It appears here as soon as it is saved.
"""


class ChatPanel(Vertical):
    def compose(self) -> ComposeResult:
        with ChatLog(id="chat-log"):
            yield Markdown("", id="chat-empty")
        yield Label("", id="chat-status")
        yield Input(placeholder="Message (Enter to send, Esc stops a reply)", id="chat-input")

    def set_status(self, text: str) -> None:
        self.query_one("#chat-status", Label).update(Content(text))  # Content: file names are not markup

    def show_help(self, show: bool) -> None:
        """The steps to get a model (no model yet), or nothing."""
        empty = self.query_one("#chat-empty", Markdown)
        empty.display = show
        if show:
            from chatgpt_scratch.storage.paths import checkpoints_dir

            empty.update(how_to_get_a_model(checkpoints_dir()))
            self.set_status("No model yet: see above.")

    def select_message(self, delta: int) -> None:
        """Move the selection through the messages (from the last one) and say which is selected."""
        log = self.query_one(ChatLog)
        bubbles = log.bubbles()
        if not bubbles:
            self.notify("No messages yet.", severity="warning")
            return
        if log.selected in bubbles:
            index = max(0, min(len(bubbles) - 1, bubbles.index(log.selected) + delta))
        else:
            index = len(bubbles) - 1
        log.select(bubbles[index])
        role = "your message" if bubbles[index].has_class("user") else "reply"
        self.set_status(f"{role} {index + 1} of {len(bubbles)} selected: ctrl+y copies it")

    def copy_message(self, session: Any) -> None:
        """Copy the selected message, or the session's last reply when none is selected."""
        selected = self.query_one(ChatLog).selected
        if selected is not None and selected.is_attached:  # not removed by /clear or regenerate
            self.app.copy_to_clipboard(selected.source)
            self.notify("Message copied to the clipboard.")
            return
        if session is None or not session.turns:
            self.notify("No reply to copy yet.", severity="warning")
            return
        self.app.copy_to_clipboard(session.turns[-1].assistant)
        self.notify("Last reply copied to the clipboard.")
