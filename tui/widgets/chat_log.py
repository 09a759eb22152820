"""The conversation as message bubbles (Markdown): one selected for copying, and a reply streamed into
its bubble by a thread worker that posts ReplyChunk messages and, at the end, ReplyFinished."""

from __future__ import annotations

import time
from typing import Any

from textual import on, work
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Markdown

from tui.workers import ReportsWorkerErrors

FLUSH_EVERY_S = 0.05  # the bubble grows at most 20 times a second


class ChatLog(ReportsWorkerErrors, VerticalScroll):
    """Bubbles of class `bubble user` / `bubble assistant`; `#chat-empty` (first-run help) stays first."""

    class ReplyChunk(Message):
        """More text of the reply being written into `bubble`."""

        def __init__(self, bubble: Markdown, text: str) -> None:
            super().__init__()
            self.bubble, self.text = bubble, text

    class ReplyFinished(Message):
        """The reply ended (done, stopped or failed) and its turn is saved; `stats` of the reply."""

        def __init__(self, new_conversation: bool, stats: Any) -> None:
            super().__init__()
            self.new_conversation, self.stats = new_conversation, stats

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.selected: Markdown | None = None  # the message ctrl+y copies (None: the last reply)

    def add_bubble(self, role: str, text: str) -> Markdown:
        bubble = Markdown(text, classes=f"bubble {role}")
        self.mount(bubble)
        self.scroll_end(animate=False)
        return bubble

    def clear_messages(self) -> None:
        for child in list(self.children):
            if child.id != "chat-empty":
                child.remove()
        self.query_one("#chat-empty").display = False

    def bubbles(self) -> list[Markdown]:
        return list(self.query(".bubble").results(Markdown))

    def select(self, bubble: Markdown | None) -> None:
        if self.selected is not None:
            self.selected.remove_class("-selected")
        self.selected = bubble
        if bubble is not None:
            bubble.add_class("-selected")
            self.scroll_to_widget(bubble, animate=False)

    def on_click(self, event) -> None:
        # A click anywhere inside a message selects it.
        widget = event.widget
        while widget is not None and widget is not self:
            if isinstance(widget, Markdown) and widget.has_class("bubble"):
                self.select(widget)
                return
            widget = widget.parent

    @work(thread=True, group="chat-reply", exit_on_error=False)
    def stream_reply(self, pieces, bubble: Markdown, chat: Any) -> None:
        """Iterate `pieces` (a ChatConversation reply stream) off the UI thread; the library saves the turn
        when the stream closes. Never blocks the UI."""
        conversation_before = chat.conversation_id
        try:
            buf, last = "", time.monotonic()
            for piece in pieces:
                buf += piece
                if time.monotonic() - last >= FLUSH_EVERY_S:
                    self.post_message(self.ReplyChunk(bubble, buf))
                    buf, last = "", time.monotonic()
            if buf:
                self.post_message(self.ReplyChunk(bubble, buf))
        finally:
            pieces.close()  # saves the turn now, also when the loop above failed
            self.post_message(self.ReplyFinished(chat.conversation_id != conversation_before, chat.session.stats))

    @on(ReplyChunk)
    async def _append(self, message: ReplyChunk) -> None:
        message.stop()
        await message.bubble.append(message.text)
        self.scroll_end(animate=False)

