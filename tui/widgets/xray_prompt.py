"""The X-ray screen's text row: the prompt box and the token chips under it.

XrayPrompt is a one-line Input that shows a newline as ↵ (and a tab as ⇥): a raw newline written into a
terminal line moves the cursor down, and the rest of the box's line blanked the statistics under it
(issue 14 #6). `text` is what the user means (↵ back to a newline). It posts XrayPrompt.Edited once
typing pauses, or at once on Enter. TokenChips shows the tokens; a click on one posts TokenChips.Picked.
"""

from __future__ import annotations

from typing import Any

from textual import on
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Input, Static

from chatgpt_scratch.usecases.xray_view import prompt_shown, prompt_text
from tui.widgets.xray_views import render_chips

TYPING_PAUSE_S = 0.25  # retokenize once typing pauses this long


class XrayPrompt(Input):
    class Edited(Message):
        """The user changed the text (`force`: Enter, recompute even if the tokens are the same)."""

        def __init__(self, prompt: XrayPrompt, text: str, force: bool) -> None:
            super().__init__()
            self.prompt, self.text, self.force = prompt, text, force

        @property
        def control(self) -> XrayPrompt:
            return self.prompt

    def __init__(self, text: str = "", **kwargs: Any) -> None:
        super().__init__(prompt_shown(text), **kwargs)
        self._typing: Timer | None = None

    @property
    def text(self) -> str:
        return prompt_text(self.value)

    def show_text(self, text: str) -> None:
        """Show `text` (newlines as ↵) without posting Edited: it came from stepping, not from typing."""
        with self.prevent(Input.Changed):
            self.value = prompt_shown(text)
            self.cursor_position = len(self.value)

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        event.stop()
        if self._typing is not None:
            self._typing.stop()
        self._typing = self.set_timer(TYPING_PAUSE_S, lambda: self.post_message(self.Edited(self, self.text, False)))

    @on(Input.Submitted)
    def _entered(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.Edited(self, self.text, True))


class TokenChips(Static):
    class Picked(Message):
        """The user clicked the chip of token `index`."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def show(self, tokens: Any, selected: int | None) -> None:
        self.update(render_chips(tokens, selected))

    def action_pick(self, index: int) -> None:
        self.post_message(self.Picked(index))
