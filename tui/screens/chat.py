"""Chat screen: pick a model, talk to it; replies stream in while the UI stays live.

The widgets own their parts (tui/widgets/chat_sidebar.py: model picker, sampling, saved conversations;
chat_panel.py: the messages, status line and message box; model_loader.py: loading with progress);
this screen joins them and drives the library's ChatConversation (send, regenerate, stop, new).

The model runs in a thread worker (ChatSession.send is an iterator of text pieces);
pieces are batched and appended to a Markdown widget at most ~20 times a second.
Conversations are kept in the shared SQLite store (chatgpt_scratch.storage.chat_store).
ctrl+up/ctrl+down (or a click) select a message; ctrl+y copies it (the last reply if none is selected).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Input, Markdown

from tui.screens.base import MainScreen
from tui.settings import FAST_DECODE
from tui.widgets.chat_log import ChatLog
from tui.widgets.chat_panel import ChatPanel
from tui.widgets.chat_sidebar import SAMPLING_FIELDS, ChatSidebar  # noqa: F401 (SAMPLING_FIELDS: public here too)
from tui.widgets.conversation_list import ConversationList
from tui.widgets.model_loader import ModelLoader
from tui.widgets.model_picker import ModelPicker
from tui.widgets.sampling_form import SamplingForm


class ChatScreen(MainScreen):
    MODE = "chat"
    fast_decode_failed = False  # a background compile failed in this run of the app: say so once

    class FastDecodeReady(Message):
        """The background compile for `session` ended: its step is loaded (error None), or why not."""

        def __init__(self, session: Any, error: str | None) -> None:
            super().__init__()
            self.session, self.error = session, error

    def __init__(self) -> None:
        super().__init__()
        from chatgpt_scratch.conversation import ChatConversation

        # The session, the store and the open conversation: the library's one chat object (the CLI's too).
        self.chat = ChatConversation(None, None)
        self.replying = False
        self.reply_widget: Markdown | None = None

    @property
    def session(self) -> Any:
        return self.chat.session

    @property
    def store(self) -> Any:
        return self.chat.store

    @property
    def last_reply_id(self) -> int | None:
        return self.chat.reply_id

    @property
    def selected_bubble(self) -> Markdown | None:
        return self.query_one(ChatLog).selected

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="chat-main"):
            yield ChatSidebar(self.chat, id="chat-side")
            yield ChatPanel(id="chat-center")
        yield ModelLoader(self.build_session, id="chat-loader")

    def on_mount(self) -> None:
        from chatgpt_scratch.storage.paths import checkpoints_dir  # stdlib only

        self.query_one("#chat-input", Input).focus()
        self.set_status(f"looking for models in {checkpoints_dir()}…")
        self.call_after_refresh(self.reload_models)  # after the first paint (the listing imports torch)
        self.call_after_refresh(self.query_one(ChatSidebar).open_store)

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
        if not infos or self.session is None:
            self.query_one(ChatPanel).show_help(not infos)

    @on(ModelPicker.Picked, "#chat-model")
    def model_picked(self, message: ModelPicker.Picked) -> None:
        self.load(message.path)  # the one asked for in Checkpoints, else the default, else the user's pick

    def load(self, path: Path) -> None:
        if self.replying:
            self.notify("Wait for the reply to finish (or press Esc) before switching models.", severity="warning")
            return
        self.query_one("#chat-log").loading = True
        self.query_one(ModelLoader).load(path)  # the status line says what loads and how far it is

    @staticmethod
    def build_session(path: Path) -> Any:
        """In the loader's worker: the chat session for the checkpoint, with a compiled decode step when
        Fast decode (F7, on by default) is on. When the step's package is cached, the loader loads it as its
        last stage (ChatSession.warm_up, well under a second); when not, the step is set aside
        (defer_compile), replies decode eagerly at once, and model_loaded compiles it in the background."""
        from chatgpt_scratch.chat import ChatSession
        from tui.settings import load_settings

        session = ChatSession.from_checkpoint(path, device="auto", compile=bool(load_settings().get(FAST_DECODE)))
        session.defer_compile()
        return session

    @work(exclusive=True, group="fast-decode", exit_on_error=False)
    async def compile_fast_decode(self, path: Path, session: Any) -> None:
        """Compile the set-aside step in another process (the UI thread stays free, and quitting or loading
        another model kills it rather than waiting), then load its package for `session` in a thread."""
        import asyncio

        from chatgpt_scratch.compiled_decode import compile_command

        process = await asyncio.create_subprocess_exec(*compile_command(path), stdin=asyncio.subprocess.DEVNULL,
                                                       stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.PIPE)
        try:
            _, err = await process.communicate()
        except asyncio.CancelledError:
            if process.returncode is None:
                process.kill()
                await process.wait()
            raise
        if process.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            error = lines[-1].removeprefix("error: ") if lines else f"exit status {process.returncode}"
        else:
            error = await asyncio.to_thread(session.load_compiled)
        self.post_message(self.FastDecodeReady(session, error))

    @on(FastDecodeReady)
    def fast_decode_ready(self, message: FastDecodeReady) -> None:
        if message.session is not self.session:
            return  # another model (or F7 off) since
        if message.error is not None:
            if not ChatScreen.fast_decode_failed:
                ChatScreen.fast_decode_failed = True
                self.notify(f"Fast decode could not compile here ({message.error}); replies run eagerly "
                            "(F7 turns Fast decode off).", severity="warning", markup=False)
            return
        self.take_back_compiled()  # while a reply is being written, reply_finished does it

    def take_back_compiled(self) -> None:
        """Between replies, the loaded compiled step goes back into the session (ChatSession.resume_compiled)."""
        if self.session is not None and self.session.resume_compiled():
            self.notify("Fast decode ready: replies now decode through a step compiled for this CPU.")

    def action_toggle_fast_decode(self) -> None:
        from tui.settings import load_settings, save_setting

        on_now = not load_settings().get(FAST_DECODE)
        save_setting(FAST_DECODE, on_now)
        self.notify("Fast decode on: each token runs through one step compiled for this CPU (1.5-3x faster; the "
                    "first compile, in the background, takes up to a minute)." if on_now
                    else "Fast decode off: the model runs eagerly.")
        if self.loaded_path is not None and not self.replying:
            self.query_one(ModelLoader).load(self.loaded_path)  # the same model, built the other way

    @on(ModelLoader.Progress, "#chat-loader")
    def loading(self, message: ModelLoader.Progress) -> None:
        self.set_status(message.text)

    @on(ModelLoader.Failed, "#chat-loader")
    def load_failed(self, message: ModelLoader.Failed) -> None:
        self.query_one("#chat-log").loading = False
        self.set_status(f"Could not load {message.path.name}: pick another model on the left.")

    @on(ModelLoader.Loaded, "#chat-loader")
    def model_loaded(self, message: ModelLoader.Loaded) -> None:
        path, session = message.path, message.model
        self.query_one("#chat-log").loading = False
        self.chat.use_session(session, keep_history=True)  # same conversation, the new model answers
        decoder = getattr(session.model, "decoder", None)
        if decoder is not None and decoder.error:
            self.notify(f"Fast decode could not compile here ({decoder.error}); replies run eagerly.",
                        severity="warning")
        self.query_one(ModelPicker).current = path
        self.app.set_model("chat", path, path.name.removesuffix(".safetensors"))
        kind = "instruct" if session.template is not None else "base (plain text continuation)"
        self.set_status(f"{path.name}: {kind}, context {session.context_length} tokens. Type a message."
                        + (" (Fast decode is compiling in the background.)" if session.compile_deferred else ""))
        if session.compile_deferred:
            self.compile_fast_decode(path, session)
        else:
            self.workers.cancel_group(self, "fast-decode")  # a compile for an earlier model is not needed now

    @on(ChatSidebar.ConversationOpened)
    def conversation_opened(self, message: ChatSidebar.ConversationOpened) -> None:
        log = self.query_one(ChatLog)
        log.clear_messages()
        for m in message.messages:
            log.add_bubble(m.role, m.content)
        self.set_status(f"reopened conversation {message.conversation_id} ({len(message.messages)} messages)")

    # --- sending -------------------------------------------------------------------------------

    def set_status(self, text: str) -> None:
        self.query_one(ChatPanel).set_status(text)

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
        self.take_back_compiled()  # if it was loaded while this reply was written
        if stats is not None and stats.finish == "empty" and self.reply_widget is not None:
            from chatgpt_scratch.chat import EMPTY_REPLY_NOTE

            # Never a blank bubble: say what happened, in the bubble itself (not stored as the reply).
            self.reply_widget.add_class("empty-reply")
            self.reply_widget.update(f"*({EMPTY_REPLY_NOTE})*")
        if new_conversation:
            self.query_one(ChatSidebar).refresh_conversations()

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
        self.query_one(ChatPanel).select_message(delta)

    def action_copy_message(self) -> None:
        """Copy the selected message, or the last reply when none is selected."""
        self.query_one(ChatPanel).copy_message(self.session)

    def action_rename_conversation(self) -> None:
        self.query_one(ChatSidebar).rename()

    def action_delete_conversation(self) -> None:
        if not self.replying:
            self.query_one(ChatSidebar).delete()

    @on(ConversationList.Deleted)
    def conversation_deleted(self) -> None:
        self.action_new_conversation()

    def action_export_conversation(self) -> None:
        self.query_one(ChatSidebar).export()

    def action_toggle_sidebar(self) -> None:
        side = self.query_one("#chat-side")
        side.display = not side.display
