"""Chat screen: pick a model, talk to it; replies stream in while the UI stays live.

The model runs in a thread worker (ChatSession.send is an iterator of text pieces);
pieces are batched and appended to a Markdown widget at most ~20 times a second.
Conversations are kept in the shared SQLite store (chatgpt_scratch.storage.chat_store).
ctrl+up/ctrl+down (or a click) select a message; ctrl+y copies it (the last reply if none is selected).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import Input, Label, Markdown, Select

from chatgpt_scratch.sampling import sampling_params
from tui.screens.base import MainScreen
from tui.widgets.chat_log import ChatLog
from tui.widgets.conversation_list import ConversationList
from tui.widgets.model_picker import ModelPicker
from tui.widgets.sampling_form import SamplingForm


# The sidebar's fields come from sampling.SAMPLING_PARAMS (the CLI's flags do too); these are the chat
# screen's starting values: varied replies rather than the library's greedy default. Blank = off.
CHAT_SAMPLING = {"temperature": "0.7", "top_k": "40", "top_p": "0.95", "max_new_tokens": "200",
                 "repetition_penalty": "1.1", "seed": ""}
SAMPLING_FIELDS = [(p.name, p.label, CHAT_SAMPLING[p.name]) for p in sampling_params(CHAT_SAMPLING)]


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


class ChatScreen(MainScreen):
    MODE = "chat"
    CSS_PATH = "chat.tcss"
    BINDINGS = [
        Binding("escape", "stop", "Stop reply"),
        Binding("ctrl+r", "regenerate", "Regenerate"),
        Binding("ctrl+n", "new_conversation", "New chat"),
        Binding("ctrl+y", "copy_message", "Copy msg"),
        Binding("ctrl+up", "select_message(-1)", "Pick msg"),
        Binding("ctrl+down", "select_message(1)", "Next msg", show=False),
        Binding("f6", "rename_conversation", "Rename chat"),
        Binding("ctrl+d", "delete_conversation", "Delete chat"),
        Binding("ctrl+e", "export_conversation", "Export"),
        Binding("ctrl+b", "toggle_sidebar", "Sidebar"),
    ]

    class ModelLoaded(Message):
        """A worker loaded the chat model at `path` (a ChatSession)."""

        def __init__(self, path: Path, session: Any) -> None:
            super().__init__()
            self.path, self.session = path, session

    class StoreOpened(Message):
        """A worker opened the chat database; `conversations` are its saved conversations."""

        def __init__(self, store: Any, conversations: list[Any]) -> None:
            super().__init__()
            self.store, self.conversations = store, conversations

    class ConversationOpened(Message):
        """A worker made saved conversation `conversation_id` the current one; its `messages` to show."""

        def __init__(self, conversation_id: int, messages: list[Any]) -> None:
            super().__init__()
            self.conversation_id, self.messages = conversation_id, messages

    def __init__(self) -> None:
        super().__init__()
        from chatgpt_scratch.conversation import ChatConversation

        # The session, the store and the open conversation: the library's one chat object (the CLI's too).
        self.chat = ChatConversation(None, None)
        self.loaded_path: Path | None = None
        self._loading_path: Path | None = None  # the model being loaded (the status line counts the seconds)
        self._loading_since = 0.0
        self._loading_timer: Any = None
        self.replying = False
        self.reply_widget: Markdown | None = None

    @property
    def session(self) -> Any:
        return self.chat.session

    @property
    def store(self) -> Any:
        return self.chat.store

    @property
    def conversation_id(self) -> int | None:
        return self.chat.conversation_id

    @property
    def last_reply_id(self) -> int | None:
        return self.chat.reply_id

    @property
    def selected_bubble(self) -> Markdown | None:
        return self.query_one(ChatLog).selected

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="chat-main"):
            with VerticalScroll(id="chat-side"):
                yield ModelPicker(("instruct", "base"), id="chat-model", prompt="Pick a model")
                yield Label("Sampling (next reply)", classes="side-title")
                yield SamplingForm(SAMPLING_FIELDS, id="chat-sampling")
                yield Label("Conversations", classes="side-title")
                yield ConversationList(id="chat-convs")
            with Vertical(id="chat-center"):
                with ChatLog(id="chat-log"):
                    yield Markdown("", id="chat-empty")
                yield Label("", id="chat-status")
                yield Input(placeholder="Message (Enter to send, Esc stops a reply)", id="chat-input")

    def on_mount(self) -> None:
        from chatgpt_scratch.storage.paths import checkpoints_dir  # stdlib only

        self.query_one("#chat-input", Input).focus()
        self.set_status(f"looking for models in {checkpoints_dir()}…")
        self.call_after_refresh(self.reload_models)  # after the first paint (the listing imports torch)
        self.call_after_refresh(self.open_store)

    def on_screen_resume(self) -> None:
        wanted = self.app.state.chat.path
        if wanted is not None and wanted != self.loaded_path:
            self.reload_models()
        elif self.query_one(ModelPicker).loaded:
            self.reload_models()

    # --- models --------------------------------------------------------------------------------

    def reload_models(self) -> None:
        self.query_one("#chat-model", ModelPicker).reload()

    @on(ModelPicker.Listed, "#chat-model")
    def models_listed(self, message: ModelPicker.Listed) -> None:
        infos = message.infos
        empty = self.query_one("#chat-empty", Markdown)
        if not infos:
            from chatgpt_scratch.storage.paths import checkpoints_dir

            empty.display = True
            empty.update(how_to_get_a_model(checkpoints_dir()))
            self.set_status("No model yet: see above.")
            return
        if self.session is None:
            empty.display = False
        wanted = self.app.state.chat.path
        if wanted is None and self.session is None:
            from chatgpt_scratch.checkpoints import pick_default

            # The library's rule (the CLI's too): instruct before base, a full model before an adapter,
            # then the best recorded val metric; the user's own before a built-in one.
            wanted = pick_default(infos, ("instruct", "base")).path
        if wanted is not None and wanted != self.loaded_path:
            self.query_one(ModelPicker).select_path(wanted)
            self.load(wanted)

    @on(Select.Changed, "#chat-model")
    def model_picked(self, event: Select.Changed) -> None:
        if event.value != Select.BLANK:
            self.load(Path(str(event.value)))

    def load(self, path: Path) -> None:
        if self.replying:
            self.notify("Wait for the reply to finish (or press Esc) before switching models.", severity="warning")
            return
        self.query_one("#chat-log").loading = True
        self._loading_since, self._loading_path = time.monotonic(), path
        self._show_loading()
        if self._loading_timer is None:
            self._loading_timer = self.set_interval(0.5, self._show_loading)
        self.load_session(path)

    def _show_loading(self) -> None:
        """While a model loads: which file, how big, and for how long so far (issue 14 #10)."""
        path = self._loading_path
        if path is None:
            return
        from tui.checkpoint_rows import human_size  # the size the Checkpoints screen shows

        try:
            size = f", {human_size(path.stat().st_size)}"
        except OSError:
            size = ""
        self.set_status(f"loading {path.name}{size}… {time.monotonic() - self._loading_since:.1f} s "
                        "(PyTorch starts once, then the weights are read)")

    def _loading_done(self) -> None:
        self._loading_path = None
        if self._loading_timer is not None:
            self._loading_timer.stop()
            self._loading_timer = None

    @work(thread=True, exclusive=True, group="chat-load", exit_on_error=False)
    def load_session(self, path: Path) -> None:
        from textual.worker import get_current_worker

        from chatgpt_scratch.chat import ChatSession

        try:
            session = ChatSession.from_checkpoint(path, device="auto")
        finally:
            self.app.call_from_thread(setattr, self.query_one("#chat-log"), "loading", False)
            if not get_current_worker().is_cancelled:
                self.app.call_from_thread(self._loading_done)
        if not get_current_worker().is_cancelled:  # a newer pick replaced this one
            self.post_message(self.ModelLoaded(path, session))

    @on(ModelLoaded)
    def model_loaded(self, message: ModelLoaded) -> None:
        path, session = message.path, message.session
        self.chat.use_session(session, keep_history=True)  # same conversation, the new model answers
        self.loaded_path = path
        self.app.set_model("chat", path, path.name.removesuffix(".safetensors"))
        kind = "instruct" if session.template is not None else "base (plain text continuation)"
        self.set_status(f"{path.name}: {kind}, context {session.context_length} tokens. Type a message.")

    # --- conversations store -------------------------------------------------------------------

    @work(thread=True, exit_on_error=False)
    def open_store(self) -> None:
        from chatgpt_scratch.storage.chat_store import ChatStore

        store = ChatStore()
        self.post_message(self.StoreOpened(store, store.list_conversations()))

    @on(StoreOpened)
    def store_opened(self, message: StoreOpened) -> None:
        self.chat.store = message.store
        convs = self.query_one(ConversationList)
        convs.store = message.store
        convs.show(message.conversations)

    def refresh_conversations(self) -> None:
        if self.store is None:
            return
        self.query_one(ConversationList).refresh_from(self.store)

    @on(ConversationList.Picked)
    def conversation_picked(self, message: ConversationList.Picked) -> None:
        if self.replying:
            self.notify("Wait for the reply to finish (or press Esc).", severity="warning")
            return
        self.open_conversation(message.conversation_id)

    @work(thread=True, exclusive=True, group="chat-open", exit_on_error=False)
    def open_conversation(self, conversation_id: int) -> None:
        messages = self.chat.open(conversation_id)  # the session's history becomes that conversation
        self.post_message(self.ConversationOpened(conversation_id, messages))

    @on(ConversationOpened)
    def conversation_opened(self, message: ConversationOpened) -> None:
        log = self.query_one(ChatLog)
        log.clear_messages()
        for m in message.messages:
            log.add_bubble(m.role, m.content)
        self.set_status(f"reopened conversation {message.conversation_id} ({len(message.messages)} messages)")

    # --- sending -------------------------------------------------------------------------------

    def set_status(self, text: str) -> None:
        self.query_one("#chat-status", Label).update(Content(text))

    @on(Input.Submitted, "#chat-input")
    def message_entered(self, event: Input.Submitted) -> None:
        self.send(event.value)

    def send(self, text: str) -> None:
        if not text.strip():
            return
        if self.replying:
            self.notify("A reply is still being written; press Esc to stop it.", severity="warning")
            return
        if self.session is None:
            self.notify("No model loaded yet: pick one in the list on the left (or see the steps shown).",
                        severity="warning")
            return
        pieces = self.start_reply(lambda: self.chat.send(text))  # checks the message fits before anything shows
        if pieces is None:
            return
        self.query_one("#chat-input", Input).value = ""
        self.query_one("#chat-empty").display = False
        self.query_one(ChatLog).add_bubble("user", text)
        self.stream(pieces)

    def start_reply(self, make_stream) -> Any | None:
        """The sidebar's sampling settings, then make_stream() (chat.send or chat.regenerate); None (after
        saying why) when a setting is invalid or the library refuses the message."""
        sampling = self.query_one(SamplingForm).read()
        if sampling is None:
            return None
        self.session.sampling = sampling
        from chatgpt_scratch.errors import ScratchError

        try:
            return make_stream()
        except ScratchError as e:
            self.notify(str(e), severity="error", markup=False)
            return None

    def stream(self, pieces) -> None:
        """Show a reply as it streams (in a worker); the library's ChatConversation saves the turn when it ends."""
        bubble = self.query_one(ChatLog).add_bubble("assistant", "")
        self.reply_widget = bubble
        self.replying = True
        self.set_status("writing… (Esc stops)")
        self.query_one(ChatLog).stream_reply(pieces, bubble, self.chat)

    @on(ChatLog.ReplyFinished)
    def reply_finished(self, message: ChatLog.ReplyFinished) -> None:
        new_conversation, stats = message.new_conversation, message.stats
        self.replying = False
        self.set_status(stats.summary() if stats else "stopped")
        if stats is not None and stats.finish == "empty" and self.reply_widget is not None:
            from chatgpt_scratch.chat import EMPTY_REPLY_NOTE

            # Never a blank bubble: say what happened, in the bubble itself (not stored as the reply).
            self.reply_widget.add_class("empty-reply")
            self.reply_widget.update(f"*({EMPTY_REPLY_NOTE})*")
        if new_conversation:
            self.refresh_conversations()

    # --- actions -------------------------------------------------------------------------------

    def action_stop(self) -> None:
        if self.replying and self.session is not None:
            self.session.stop()

    def action_regenerate(self) -> None:
        if self.session is None or self.replying:
            return
        if not self.session.turns:
            self.notify("Nothing to regenerate yet: send a message first.", severity="warning")
            return
        pieces = self.start_reply(self.chat.regenerate)
        if pieces is None:
            return
        bubbles = self.query("#chat-log .assistant")
        if bubbles:
            bubbles.last().remove()
        self.stream(pieces)

    def action_new_conversation(self) -> None:
        if self.replying:
            return
        self.chat.new()
        self.query_one(ChatLog).clear_messages()
        self.set_status("new conversation")
        self.query_one("#chat-input", Input).focus()

    def action_select_message(self, delta: int) -> None:
        """ctrl+up / ctrl+down move the selection through the messages (from the last one)."""
        log = self.query_one(ChatLog)
        bubbles = log.bubbles()
        if not bubbles:
            self.notify("No messages yet.", severity="warning")
            return
        if self.selected_bubble in bubbles:
            index = max(0, min(len(bubbles) - 1, bubbles.index(self.selected_bubble) + delta))
        else:
            index = len(bubbles) - 1
        log.select(bubbles[index])
        role = "your message" if bubbles[index].has_class("user") else "reply"
        self.set_status(f"{role} {index + 1} of {len(bubbles)} selected: ctrl+y copies it")

    def action_copy_message(self) -> None:
        """Copy the selected message, or the last reply when none is selected."""
        if self.selected_bubble is not None and self.selected_bubble.is_attached:  # not removed by /clear or regenerate
            self.app.copy_to_clipboard(self.selected_bubble.source)
            self.notify("Message copied to the clipboard.")
            return
        if self.session is None or not self.session.turns:
            self.notify("No reply to copy yet.", severity="warning")
            return
        self.app.copy_to_clipboard(self.session.turns[-1].assistant)
        self.notify("Last reply copied to the clipboard.")

    def _need_conversation(self) -> int | None:
        if self.conversation_id is None or self.store is None:
            self.notify("No saved conversation open: send a message or pick one on the left.", severity="warning")
            return None
        return self.conversation_id

    def action_rename_conversation(self) -> None:
        if (conv_id := self._need_conversation()) is not None:
            self.query_one(ConversationList).rename(self.store, conv_id)

    def action_delete_conversation(self) -> None:
        if (conv_id := self._need_conversation()) is not None and not self.replying:
            self.query_one(ConversationList).delete(self.store, conv_id)

    @on(ConversationList.Deleted)
    def conversation_deleted(self) -> None:
        self.action_new_conversation()

    def action_export_conversation(self) -> None:
        if (conv_id := self._need_conversation()) is not None:
            self.query_one(ConversationList).export(self.store, conv_id)

    def action_toggle_sidebar(self) -> None:
        side = self.query_one("#chat-side")
        side.display = not side.display
