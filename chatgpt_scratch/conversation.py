"""A chat that is saved as it happens: a ChatSession plus the conversation in the ChatStore.

Both front ends drive this one object (the CLI's REPL and the TUI's Chat screen), so what a saved
conversation holds is decided here once: a turn (the message and its reply, full or stopped early)
is written when its reply stream ends; a regenerated reply replaces the stored one; a new
conversation is created with the first message as its title. No store (--no-save) = nothing saved.

Thread use: the TUI iterates a reply stream in a worker thread; ChatStore opens its connection for
use from any thread, and one reply streams at a time (ChatSession's own lock).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from chatgpt_scratch.errors import ScratchError

if TYPE_CHECKING:
    from chatgpt_scratch.chat import ChatSession
    from chatgpt_scratch.storage.chat_store import ChatStore

TITLE_CHARS = 60


def conversation_title(message: str) -> str:
    """A new conversation's title: its first message on one line, cut to TITLE_CHARS."""
    return " ".join(message.split())[:TITLE_CHARS]


class ChatConversation:
    """The session, the store, and which stored conversation (and reply) the session's turns are."""

    def __init__(self, session: ChatSession | None, store: ChatStore | None = None) -> None:
        self.session = session
        self.store = store
        self.conversation_id: int | None = None
        self.reply_id: int | None = None  # the stored last reply (what regenerate replaces)
        self.save_error: str | None = None  # why saving stopped (the database failed), if it did
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")

    # -- replies ----------------------------------------------------------------------------

    def send(self, text: str) -> Iterator[str]:
        """Stream the reply to `text`; the turn is saved when the stream ends (also when stopped early).
        ScratchError at once (before anything streams) for an empty message or one that cannot fit."""
        return self._saved(self._need_session().send(text), replace=False)

    def regenerate(self) -> Iterator[str]:
        """Stream a new reply to the last message; it replaces the stored reply when the stream ends."""
        return self._saved(self._need_session().regenerate(), replace=True)

    def _need_session(self) -> ChatSession:
        if self.session is None:
            raise ScratchError("no model is loaded yet; pick a checkpoint first")
        return self.session

    def _saved(self, stream: Iterator[str], replace: bool) -> Iterator[str]:
        session = self.session
        before = session.turns[-1] if session.turns else None
        try:
            yield from stream
        finally:
            stream.close()  # the session records the turn (full or partial) when its stream closes
            after = session.turns[-1] if session.turns else None
            if after is not None and after is not before:  # a reply was really written
                self._save_turn(replace)

    def _save_turn(self, replace: bool) -> None:
        """Raises ChatStoreError (after the reply has streamed: the user has it) when the database fails;
        saving then stops for this conversation (`save_error` says why), the chat goes on."""
        from chatgpt_scratch.storage.chat_store import ChatStoreError

        if self.store is None:
            return
        try:
            self._write_turn(replace)
        except ChatStoreError as e:
            self.store = None
            self.save_error = f"{e}; the rest of this conversation is not saved"
            raise ChatStoreError(self.save_error) from None

    def _write_turn(self, replace: bool) -> None:
        turn = self.session.turns[-1]
        stats = turn.stats.to_dict() if turn.stats else None
        if self.conversation_id is None:
            self.conversation_id = self.store.create_conversation(conversation_title(turn.user),
                                                                  self.session.checkpoint)
        if replace and self.reply_id is not None:
            self.store.delete_message(self.reply_id)
        else:
            self.store.add_message(self.conversation_id, "user", turn.user)
        self.reply_id = self.store.add_message(self.conversation_id, "assistant", turn.assistant, stats)

    # -- which conversation -----------------------------------------------------------------

    def open(self, conversation_id: int) -> list[Any]:
        """Continue a saved conversation: its turns become the session's history. -> its messages."""
        if self.store is None:
            raise ScratchError("saved conversations need the database; this chat is not being saved")
        self.store.get_conversation(conversation_id)  # a clear error if it does not exist
        messages = self.store.get_messages(conversation_id)
        if self.session is not None:
            self.session.set_history(self.store.turns(conversation_id))
        self.conversation_id = conversation_id
        self.reply_id = next((m.id for m in reversed(messages) if m.role == "assistant"), None)
        return messages

    def new(self) -> None:
        """Start a new conversation (the current one stays saved)."""
        if self.session is not None:
            self.session.clear()
        self.conversation_id = None
        self.reply_id = None

    def use_session(self, session: ChatSession, keep_history: bool) -> None:
        """Switch models: keep_history carries the turns over (same conversation), else a new one starts."""
        if keep_history and self.session is not None:
            session.set_history([(t.user, t.assistant) for t in self.session.turns])
        self.session = session
        if not keep_history:
            self.new()

    def markdown(self) -> str:
        """The session's turns as the Markdown a saved conversation exports to."""
        from chatgpt_scratch.storage.chat_store import Conversation, Message, conversation_markdown

        turns = self.session.turns if self.session is not None else []
        title = conversation_title(turns[0].user) if turns else "Conversation"
        checkpoint = self.session.checkpoint if self.session is not None else None
        conv = Conversation(self.conversation_id or 0, title, checkpoint, self.started, self.started)
        messages = []
        for t in turns:
            messages.append(Message(0, conv.id, "user", t.user, ""))
            messages.append(Message(0, conv.id, "assistant", t.assistant, "", t.stats.to_dict() if t.stats else None))
        return conversation_markdown(conv, messages)
