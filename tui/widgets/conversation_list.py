"""The saved conversations, newest first: picking one posts ConversationList.Picked; rename, delete and
export ask in a dialog and act on the chat store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.content import Content
from textual.message import Message
from textual.widgets import Label, ListItem, ListView

from tui.workers import ReportsWorkerErrors


class ConversationList(ReportsWorkerErrors, ListView):
    class Picked(Message):
        """The user picked saved conversation `conversation_id`."""

        def __init__(self, conversation_id: int) -> None:
            super().__init__()
            self.conversation_id = conversation_id

    class Deleted(Message):
        """A conversation was deleted (the screen starts a new one)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store: Any = None  # the ChatStore, once a worker has opened it

    def show(self, conversations: list[Any]) -> None:
        self.clear()
        for conv in conversations:
            # Content, not a str: a title is anyone's text, never markup.
            self.append(ListItem(Label(Content(conv.title)), name=str(conv.id)))

    @on(ListView.Selected)
    def _picked(self, event: ListView.Selected) -> None:
        event.stop()
        if event.item is not None and event.item.name is not None:
            self.post_message(self.Picked(int(event.item.name)))

    def refresh_from(self, store: Any) -> None:
        """List the store's conversations again (in a worker: the database may be slow)."""
        self.store = store
        self._list(store)

    @work(thread=True, exclusive=True, group="chat-convs", exit_on_error=False)
    def _list(self, store: Any) -> None:
        conversations = store.list_conversations()
        self.app.call_from_thread(self.show, conversations)

    def rename(self, store: Any, conv_id: int) -> None:
        from tui.screens.dialogs import TextPrompt

        def answer(name: str | None) -> None:
            if name:
                store.rename(conv_id, name)
                self.refresh_from(store)

        self.app.push_screen(TextPrompt("New title for this conversation:", store.get_conversation(conv_id).title),
                             answer)

    def delete(self, store: Any, conv_id: int) -> None:
        from tui.screens.dialogs import ConfirmDialog

        def answer(yes: bool | None) -> None:
            if yes:
                store.delete(conv_id)
                self.post_message(self.Deleted())
                self.refresh_from(store)

        self.app.push_screen(ConfirmDialog("Delete this conversation and all its messages?", yes="Delete"), answer)

    def export(self, store: Any, conv_id: int) -> None:
        from tui.screens.dialogs import TextPrompt

        def answer(path: str | None) -> None:
            if not path:
                return
            out = Path(path).expanduser()
            try:
                out.write_text(store.export_markdown(conv_id), encoding="utf-8")
            except OSError as e:
                self.notify(f"cannot write {out}: {e.strerror}", severity="error", markup=False)
                return
            self.notify(f"Exported to {out}", markup=False)

        self.app.push_screen(TextPrompt("Export this conversation as Markdown to:",
                                        str(Path.cwd() / f"conversation-{conv_id}.md")), answer)

