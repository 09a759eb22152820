"""`chatgpt-scratch chat --checkpoint PATH`: talk to a model in the terminal.

Two modes, chosen by stdin:
- a terminal: a prompt_toolkit REPL (history, multi-line input, slash commands, Ctrl-C stops a reply);
- a pipe or file: one prompt per line, one reply per prompt on stdout, nothing else printed there.

The command logic lives in `ChatController` (no prompt_toolkit, no terminal), so the slash
commands and the saving are tested directly; prompt_toolkit is imported only by the REPL.
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from chatgpt_scratch.cli.common import add_checkpoint_arg, add_command, add_device_arg, add_sampling_args
from chatgpt_scratch.conversation import ChatConversation
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.sampling import SAMPLING_PARAMS, SamplingParam
from chatgpt_scratch.system.terminal_text import printable

if TYPE_CHECKING:
    from chatgpt_scratch.chat import ChatSession
    from chatgpt_scratch.storage.chat_store import ChatStore

KEYS_HELP = """\
keys:
  Enter            send the message
  Esc then Enter   insert a new line (Alt+Enter works in most terminals); pasted text keeps its lines
  Ctrl-C           while the model writes: stop the reply, keeping what it wrote; at the prompt: clear the line
  Ctrl-D           quit (on an empty line)
  Up / Down        earlier messages (input history is kept between sessions)"""

COMMANDS_HELP = """\
commands:
  /help                   this text
  /settings               show the model and the sampling settings
  /temperature X          0 = greedy (always the likeliest token); 0.7-1.0 = varied
  /top-k N                sample from the N likeliest tokens only (off: no limit)
  /top-p X                sample from the smallest set of tokens whose probability reaches X (off: no limit)
  /max-tokens N           longest reply, in tokens
  /repetition-penalty X   > 1 discourages repeating tokens (1 = off)
  /seed N                 same seed => same replies (off: random)
  /retry                  write the last reply again
  /clear                  start a new conversation (the old one stays saved)
  /history                this conversation so far;  /history all: the saved conversations
  /save FILE              write this conversation to FILE as Markdown
  /load CHECKPOINT        switch to another base or instruct checkpoint or adapter (starts a new conversation)
  /quit                   leave (or Ctrl-D)
  //text                  send a message that starts with a slash"""


def register(subparsers) -> None:
    p = add_command(
        subparsers, "chat", run,
        help="chat with a base or instruct checkpoint in the terminal (conversations are saved)",
        description=textwrap.fill(
            "Chat with the model in a checkpoint. An instruct checkpoint formats the conversation "
            "with the prompt template it was fine-tuned with (Alpaca or Phi-3); a base checkpoint just continues "
            "the text. A lora-adapter of either (NAME.lora.safetensors) works too: its base is loaded and the adapter "
            "merged in. The oldest turns are left out when the conversation outgrows the context window. "
            "Conversations are saved in a SQLite database (see --db).", 88) + "\n\n" + textwrap.fill(
            "With stdin from a pipe or a file there is no prompt: each line is one prompt and each reply goes to "
            "stdout, one per prompt (add --jsonl for replies that span lines).", 88),
        before=KEYS_HELP + "\n\n" + COMMANDS_HELP,
        examples=["chatgpt-scratch chat --checkpoint checkpoints/instruct.safetensors",
                  "printf 'Name a colour.\\nAnd another?\\n' | chatgpt-scratch chat --checkpoint "
                  "checkpoints/instruct.safetensors --jsonl"])
    add_checkpoint_arg(p, "chat")
    add_sampling_args(p)
    add_device_arg(p)
    from chatgpt_scratch.cli.generate import add_compile_arg

    add_compile_arg(p, "with its weights in the precision the checkpoint recommends for chat (chat_precision)")
    p.add_argument("--db", action="store_true", help="print the path of the chat database and exit")
    p.add_argument("--resume", type=int, default=None, metavar="ID",
                   help="continue saved conversation ID (`/history all` lists them)")
    p.add_argument("--no-save", action="store_true", help="do not save this conversation in the database")
    p.add_argument("--jsonl", action="store_true",
                   help='piped mode: write each reply as a JSON line {"prompt", "reply", "stats"} '
                   "(exact even when a reply spans several lines)")


# -- the command logic (no terminal involved) -------------------------------------------------


@dataclass
class CommandResult:
    text: str = ""  # what to show the user
    quit: bool = False
    reply: Iterator[str] | None = None  # /retry: a reply to stream, as for a message


def load_session(path: str, device: str = "auto", sampling=None, compile: bool = False) -> ChatSession:
    from chatgpt_scratch.chat import ChatSession

    session = ChatSession.from_checkpoint(path, device=device, sampling=sampling, compile=compile)
    if compile:
        from chatgpt_scratch.cli.generate import warm_up_decoder

        warm_up_decoder(session.model)
    return session


class ChatController(ChatConversation):
    """The REPL's chat: the library's ChatConversation (session + saving each turn as it happens, shared
    with the TUI) plus the slash commands."""

    def __init__(self, session: ChatSession, store: ChatStore | None, device: str = "auto",
                 loader: Callable[..., ChatSession] = load_session):
        super().__init__(session, store)
        self.device = device
        self.loader = loader

    def resume(self, conversation_id: int) -> int:
        """Continue a saved conversation (--resume ID); returns how many turns were read back."""
        if self.store is None:
            raise ScratchError("--resume needs the database; drop --no-save")
        self.open(conversation_id)
        return len(self.session.turns)

    # -- slash commands ---------------------------------------------------------------------

    def command(self, line: str) -> CommandResult:
        """Run one slash command line such as "/temperature 0.7". ScratchError for bad input."""
        try:
            words = shlex.split(line[1:])
        except ValueError as e:
            raise ScratchError(f"cannot read that command ({e}); put quotes around a name with spaces") from None
        if not words:
            raise ScratchError("an empty command; /help lists the commands")
        name, args = words[0].lower(), words[1:]
        handler = COMMANDS.get(name)
        if handler is None:
            raise ScratchError(f"unknown command /{name}; /help lists the commands")
        return handler(self, args)

    def _help(self, args: list[str]) -> CommandResult:
        return CommandResult(KEYS_HELP + "\n\n" + COMMANDS_HELP)

    def _quit(self, args: list[str]) -> CommandResult:
        return CommandResult(quit=True)

    def _settings(self, args: list[str]) -> CommandResult:
        s, session = self.session.sampling, self.session
        template = session.template.name if session.template else "none (base model: plain continuation)"
        lines = [
            f"checkpoint          {session.checkpoint or '(in memory)'}",
            f"prompt template     {template}",
            f"context             {session.context_length} tokens ({session.prompt_limit()} for the prompt)",
            f"temperature         {s.temperature}{' (greedy)' if s.greedy else ''}",
            f"top-k               {s.top_k if s.top_k is not None else 'off'}",
            f"top-p               {s.top_p if s.top_p is not None else 'off'}",
            f"max-tokens          {s.max_new_tokens}",
            f"repetition-penalty  {s.repetition_penalty}",
            f"seed                {s.seed if s.seed is not None else 'off (random)'}",
        ]
        if self.store is not None:
            lines.append(f"saved in            {self.store.path}"
                         + (f" (conversation {self.conversation_id})" if self.conversation_id else ""))
        return CommandResult("\n".join(lines))

    def _set(self, field: str, value) -> CommandResult:
        self.session.sampling = replace(self.session.sampling, **{field: value})  # validates the value
        shown = "off" if value is None else value
        return CommandResult(f"{field.replace('_', '-')} = {shown}")

    def _sampling(self, param: SamplingParam, args: list[str]) -> CommandResult:
        """/temperature 0.7, /top-k off, ...: one command per sampling.SAMPLING_PARAMS entry."""
        return self._set(param.name, _number(args, "/" + param.command, param.example, param.type,
                                             allow_off=param.optional))

    def _retry(self, args: list[str]) -> CommandResult:
        return CommandResult(reply=self.regenerate())

    def _clear(self, args: list[str]) -> CommandResult:
        self.new()
        return CommandResult("new conversation (the earlier one is saved; /history all lists them)"
                             if self.store is not None else "new conversation")

    def _history(self, args: list[str]) -> CommandResult:
        if args and args[0] == "all":
            return self._saved_conversations()
        if args:
            raise ScratchError("/history takes no argument, or 'all' for the saved conversations")
        turns = self.session.turns
        if not turns:
            return CommandResult("(no messages yet)")
        lines = []
        for i, turn in enumerate(turns, 1):
            lines += [f"[{i}] You: " + _indent(turn.user, 9), "    Model: " + _indent(turn.assistant, 11)]
        dropped = self.session.stats.dropped_turns if self.session.stats else 0
        if dropped:
            lines.append(f"(turns 1-{dropped} no longer fit in the context window: the model did not see them "
                         "for the last reply)")
        return CommandResult("\n".join(lines))

    def _saved_conversations(self) -> CommandResult:
        if self.store is None:
            raise ScratchError("conversations are not being saved (--no-save)")
        rows = self.store.list_conversations()
        if not rows:
            return CommandResult(f"no saved conversations in {self.store.path}")
        lines = [f"{c.id:>5}  {c.updated[:16].replace('T', ' ')}  {c.message_count:>3} msgs  {c.title}" for c in rows]
        return CommandResult("\n".join(lines) + "\n(continue one with: chatgpt-scratch chat --checkpoint PATH "
                             "--resume ID)")

    def _save(self, args: list[str]) -> CommandResult:
        if len(args) != 1:
            raise ScratchError("/save needs one file name, e.g. /save chat.md")
        path = Path(args[0]).expanduser()
        if not self.session.turns:
            raise ScratchError("nothing to save yet; send a message first")
        if path.exists():
            raise ScratchError(f"{path} already exists; choose another name (it is left as it is)")
        try:
            path.write_text(self.markdown(), encoding="utf-8")
        except OSError as e:
            raise ScratchError(f"cannot write {path}: {e.strerror}") from None
        return CommandResult(f"saved {len(self.session.turns)} turns to {path}")

    def _load(self, args: list[str]) -> CommandResult:
        if len(args) != 1:
            raise ScratchError("/load needs one checkpoint path, e.g. /load checkpoints/instruct.safetensors")
        session = self.loader(args[0], device=self.device, sampling=self.session.sampling)
        self.use_session(session, keep_history=False)
        return CommandResult(f"loaded {describe(session)}; a new conversation starts")


COMMANDS: dict[str, Callable[[ChatController, list[str]], CommandResult]] = {
    "help": ChatController._help,
    "settings": ChatController._settings,
    **{p.command: (lambda self, args, p=p: self._sampling(p, args)) for p in SAMPLING_PARAMS},
    "retry": ChatController._retry,
    "clear": ChatController._clear,
    "history": ChatController._history,
    "save": ChatController._save,
    "load": ChatController._load,
    "quit": ChatController._quit,
    "exit": ChatController._quit,
}


def _number(args: list[str], command: str, example: str, kind: type, allow_off: bool = False):
    off = " (or 'off')" if allow_off else ""
    if len(args) != 1:
        raise ScratchError(f"{command} needs one value{off}, e.g. {command} {example}")
    if allow_off and args[0].lower() in ("off", "none"):
        return None
    try:
        return kind(args[0])
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ScratchError(f"{command} needs {what}{off}, e.g. {command} {example}; got {args[0]!r}") from None


def _indent(text: str, width: int) -> str:
    """Continuation lines of a multi-line message line up under its first line."""
    return text.replace("\n", "\n" + " " * width)


def describe(session: ChatSession) -> str:
    kind = f"instruct, {session.template.name} template" if session.template else "base model"
    return f"{session.checkpoint} ({kind}, context {session.context_length} tokens)"


def split_input(text: str) -> tuple[str, str]:
    """("command", line) for a slash command, ("message", text) otherwise; "//x" sends "/x"."""
    stripped = text.strip()
    if stripped.startswith("//"):
        return "message", stripped[1:]
    if stripped.startswith("/"):
        return "command", stripped
    return "message", text


# -- running it --------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from chatgpt_scratch.storage.chat_store import ChatStore, default_db_path

    if args.db:
        print(default_db_path())
        return 0
    from chatgpt_scratch.cli.common import checkpoint_or_default

    args.checkpoint = checkpoint_or_default(args.checkpoint, "chat")
    from chatgpt_scratch.sampling import sampling_from

    sampling = sampling_from(args)
    if args.compile:
        from chatgpt_scratch.cli.generate import require_cpu_for_compile

        require_cpu_for_compile(args.device)
    session = load_session(args.checkpoint, device=args.device, sampling=sampling, compile=args.compile)
    store = None
    if not args.no_save:
        try:
            store = ChatStore()
        except ScratchError as e:  # a damaged or locked database must not stop the chat; it is left untouched
            print(f"error: {printable(e)}; chatting without saving (--no-save hides this)", file=sys.stderr)
    if not sys.stdin.isatty() and hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="surrogateescape")  # a latin-1 line must not end the chat (run_piped notes it)
    try:
        controller = ChatController(session, store, device=args.device,
                                    loader=functools.partial(load_session, compile=args.compile))  # /load keeps it
        if args.resume is not None:
            n = controller.resume(args.resume)
            if sys.stdin.isatty():
                print(f"continuing conversation {args.resume} ({n} turns)")
        if sys.stdin.isatty():
            return run_interactive(controller)
        return run_piped(controller, sys.stdin, sys.stdout, sys.stderr, jsonl=args.jsonl)
    finally:
        if store is not None:
            store.close()


def run_piped(controller: ChatController, stdin: TextIO, stdout: TextIO, stderr: TextIO, jsonl: bool) -> int:
    """Each non-empty line is a prompt; each prompt gets exactly one reply (or one error) on stdout.

    A slash command (`/temperature 1.0`, `/retry`, `/quit`) is a command, as in the REPL: it is never
    sent to the model or saved; what it says goes to stderr (stdout holds replies only). A line that is
    not UTF-8 is answered with the undecodable bytes as U+FFFD, and a note on stderr says so.
    """
    from chatgpt_scratch.storage.chat_store import ChatStoreError, clean_text

    failed = 0
    for number, raw in enumerate(stdin, 1):
        prompt = raw.rstrip("\r\n")
        if not prompt.strip():
            continue
        cleaned = clean_text(prompt)
        if cleaned != prompt:
            print(f"note: line {number} is not UTF-8; its undecodable bytes were read as \ufffd", file=stderr)
            prompt = cleaned
        try:
            kind, value = split_input(prompt)
            if kind == "command":
                result = controller.command(value)
                if result.text:
                    print(result.text, file=stderr)
                if result.quit:
                    break
                if result.reply is None:
                    continue
                reply = result.reply
            else:
                prompt = value
                reply = controller.send(prompt)
        except ScratchError as e:
            failed += 1
            print(f"error: {printable(e)}", file=stderr)
            stdout.write(json.dumps({"prompt": prompt, "error": str(e)}) + "\n" if jsonl else "\n")
            stdout.flush()
            continue
        pieces: list[str] = []
        problem: ScratchError | None = None
        try:
            for piece in reply:
                pieces.append(piece)
                if not jsonl:
                    stdout.write(piece)
                    stdout.flush()
        except ChatStoreError as e:  # the reply is complete and reaches the user; only saving failed
            problem = e
        except ScratchError as e:
            problem = e
        text = "".join(pieces)
        if jsonl:
            stats = controller.session.stats.to_dict() if controller.session.stats else None
            record = {"prompt": prompt, "reply": text, "stats": stats} if pieces or problem is None else \
                {"prompt": prompt, "error": str(problem)}
            stdout.write(json.dumps(record) + "\n")
        else:
            stdout.write("\n")  # one line per prompt, even an empty reply (the note says why)
        stdout.flush()
        if problem is not None:
            failed += 1
            print(f"error: {printable(problem)}", file=stderr)
            continue
        stats = controller.session.stats
        if stats is not None and stats.finish == "empty":
            from chatgpt_scratch.chat import EMPTY_REPLY_NOTE  # here: `--help` must not import the tokenizer

            print(f"note: no reply to {printable(prompt[:40])!r}: {EMPTY_REPLY_NOTE}", file=stderr)
    return 1 if failed else 0


def run_interactive(controller: ChatController, pt_input=None, pt_output=None) -> int:
    """The REPL. pt_input/pt_output: prompt_toolkit Input/Output to use instead of the terminal (tests)."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.formatted_text import FormattedText
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings
    from prompt_toolkit.shortcuts import print_formatted_text

    from chatgpt_scratch.storage.paths import app_data_dir

    def note(text: str) -> None:
        print_formatted_text(FormattedText([("ansibrightblack", text)]), output=pt_output)

    bindings = KeyBindings()

    @bindings.add("enter")
    def _submit(event) -> None:
        event.current_buffer.validate_and_handle()

    @bindings.add("escape", "enter")  # Esc then Enter, or Alt+Enter
    def _newline(event) -> None:
        event.current_buffer.insert_text("\n")

    history_file = app_data_dir() / "chat_input_history"
    history_file.parent.mkdir(parents=True, exist_ok=True)
    prompt = PromptSession(history=FileHistory(str(history_file)), multiline=True, key_bindings=bindings,
                           prompt_continuation=lambda width, line, wrapped: "." * (width - 1) + " ",
                           input=pt_input, output=pt_output)
    note(f"chatting with {describe(controller.session)}")
    note("Enter sends, Esc+Enter adds a line, Ctrl-C stops a reply, Ctrl-D quits, /help lists commands")
    dropped_seen = controller.session.stats.dropped_turns if controller.session.stats else 0
    while True:
        try:
            text = prompt.prompt("you> ")
        except KeyboardInterrupt:  # Ctrl-C at the prompt: drop the line, like a shell
            continue
        except EOFError:  # Ctrl-D
            return 0
        if not text.strip():
            continue
        kind, value = split_input(text)
        try:
            if kind == "command":
                result = controller.command(value)
                if result.text:
                    print(result.text)
                if result.quit:
                    return 0
                if result.reply is None:
                    continue
                reply = result.reply
            else:
                reply = controller.send(value)
            _stream_to_terminal(controller, reply)
        except ScratchError as e:
            print(f"error: {e}")
            continue
        stats = controller.session.stats
        if stats is None:
            continue
        note(f"[{stats.summary()}]")
        if stats.dropped_turns > dropped_seen:
            note(f"note: the conversation outgrew the {stats.context_length}-token context; the "
                 f"{stats.dropped_turns} oldest turn(s) are no longer shown to the model")
        dropped_seen = stats.dropped_turns


def _stream_to_terminal(controller: ChatController, reply: Iterator[str]) -> None:
    """Print the reply as it comes; Ctrl-C asks the session to stop after the current token."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, lambda *_: controller.session.stop()) if in_main else None
    try:
        for piece in reply:
            sys.stdout.write(piece)
            sys.stdout.flush()
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
        sys.stdout.write("\n")
        sys.stdout.flush()
