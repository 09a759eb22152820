"""The Chat screen's sidebar: the model picker, the sampling settings of the next reply and the saved
conversations. It owns the conversation store: it opens it in a worker, reopens a picked conversation
into the library's ChatConversation (posting ChatSidebar.ConversationOpened), and renames, deletes
and exports the open one (ConversationList asks first)."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Label

from chatgpt_scratch.storage.checkpoint_format import DEFAULT_KINDS  # stdlib only
from chatgpt_scratch.sampling import sampling_params
from tui.widgets.conversation_list import ConversationList
from tui.widgets.model_picker import ModelPicker
from tui.widgets.sampling_form import SamplingForm
from tui.workers import ReportsWorkerErrors

# The sidebar's fields come from sampling.SAMPLING_PARAMS (the CLI's flags do too); these are the chat
# screen's starting values: varied replies (ctrl+r draws another) rather than the library's greedy default.
# Blank = off. Temperature 0.3 without a repetition penalty answered best of the settings
# benchmarks/chat_sampling.py tried on the book's val entries with the built-in model (ROUGE-L 0.657, 3 seeds;
# 0.628 at 0.7 with penalty 1.1, the earlier start; greedy 0.651): the book's answers repeat the question's words.
CHAT_SAMPLING = {"temperature": "0.3", "top_k": "40", "top_p": "0.95", "max_new_tokens": "200",
                 "repetition_penalty": "1.0", "seed": ""}
SAMPLING_FIELDS = [(p.name, p.label, CHAT_SAMPLING[p.name]) for p in sampling_params(CHAT_SAMPLING)]


class ChatSidebar(ReportsWorkerErrors, VerticalScroll):
    class ConversationOpened(Message):
        """Saved conversation `conversation_id` is now the current one; its `messages` to show."""

        def __init__(self, conversation_id: int, messages: list[Any]) -> None:
            super().__init__()
            self.conversation_id, self.messages = conversation_id, messages

    class _StoreOpened(Message):
        def __init__(self, store: Any, conversations: list[Any]) -> None:
            super().__init__()
            self.store, self.conversations = store, conversations

    def __init__(self, chat: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chat = chat  # the library's ChatConversation (session, store, open conversation), the screen's too

    def compose(self) -> ComposeResult:
        yield ModelPicker(DEFAULT_KINDS["chat"], id="chat-model", prompt="Pick a model", role="chat")
        yield Label("Sampling (next reply)", classes="side-title")
        yield SamplingForm(SAMPLING_FIELDS, id="chat-sampling")
        yield Label("Conversations", classes="side-title")
        yield ConversationList(id="chat-convs")

    # --- the store -----------------------------------------------------------------------------

    @work(thread=True, exit_on_error=False)
    def open_store(self) -> None:
        from chatgpt_scratch.storage.chat_store import ChatStore

        store = ChatStore()
        self.post_message(self._StoreOpened(store, store.list_conversations()))

    @on(_StoreOpened)
    def _store_opened(self, message: _StoreOpened) -> None:
        message.stop()
        self.chat.store = message.store
        convs = self.query_one(ConversationList)
        convs.store = message.store
        convs.show(message.conversations)

    def refresh_conversations(self) -> None:
        if self.chat.store is not None:
            self.query_one(ConversationList).refresh_from(self.chat.store)

    # --- the open conversation -----------------------------------------------------------------

    @on(ConversationList.Picked)
    def _picked(self, message: ConversationList.Picked) -> None:
        message.stop()
        if self.screen.replying:
            self.notify("Wait for the reply to finish (or press Esc).", severity="warning")
            return
        self.open_conversation(message.conversation_id)

    @work(thread=True, exclusive=True, group="chat-open", exit_on_error=False)
    def open_conversation(self, conversation_id: int) -> None:
        messages = self.chat.open(conversation_id)  # the session's history becomes that conversation
        self.post_message(self.ConversationOpened(conversation_id, messages))

    def _need_conversation(self) -> int | None:
        if self.chat.conversation_id is None or self.chat.store is None:
            self.notify("No saved conversation open: send a message or pick one on the left.", severity="warning")
            return None
        return self.chat.conversation_id

    def rename(self) -> None:
        if (conv_id := self._need_conversation()) is not None:
            self.query_one(ConversationList).rename(self.chat.store, conv_id)

    def delete(self) -> None:
        """Asks first; ConversationList.Deleted reaches the screen, which starts a new conversation."""
        if (conv_id := self._need_conversation()) is not None:
            self.query_one(ConversationList).delete(self.chat.store, conv_id)

    def export(self) -> None:
        if (conv_id := self._need_conversation()) is not None:
            self.query_one(ConversationList).export(self.chat.store, conv_id)

