"""A conversation with a GPT: the use-case the chat CLI and the TUI's chat screen share.

An instruct model was trained on single (instruction -> response) examples in one
prompt template. To hold a conversation we show it the earlier turns in that same
format, one after another, and end with the new message and the response prefix:

    <template.prompt(user 1)><assistant 1>\\n\\n<template.prompt(user 2)><assistant 2>\\n\\n<template.prompt(new)>

Each turn repeats the template's preamble because that is exactly the text the model
learned to answer; the blank line between turns is what Alpaca's stop string
"\\n\\nBelow is an instruction" expects a new turn to look like. A base model (no
template) just continues the concatenated text.

The model sees at most `context_length` tokens, and the reply needs room too, so
the oldest turns are dropped from the prompt until it fits (they stay in the
conversation; `stats.dropped_turns` says how many were left out). The new message
itself is never cut: if it alone does not fit, `send` raises a ScratchError.

Threading: `send()` is a generator meant to be consumed by one thread (a Textual
thread worker, or the CLI's main thread); `stop()` may be called from any other
thread and ends the reply after the current token, keeping what was written.

    session = ChatSession.from_checkpoint("checkpoints/instruct.safetensors", device="auto")
    for piece in session.send("Name three colours."):   # in the worker thread
        show(piece)                                     # e.g. post a message to the UI
    session.stop()                                      # from the UI thread, at any time
    session.stats.summary()   # '42 tokens, 35.1 tok/s, prompt 180/1024 tokens'
    session.turns             # [Turn(user, assistant, stats)], the partial reply included if stopped

Saving conversations is chat_store.ChatStore's job (the CLI's ChatController shows how).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.data.templates import PromptTemplate, get_template
from chatgpt_scratch.tokenizer import ENDOFTEXT_ID, StreamDecoder, get_tokenizer

TURN_SEPARATOR = "\n\n"  # between one turn's response and the next turn's prompt


@dataclass
class ReplyStats:
    """What one reply cost and how the prompt was fitted into the context window."""

    new_tokens: int = 0  # tokens the model drew (including any that began a stop string)
    seconds: float = 0.0  # wall time from the first model call to the last token
    first_token_s: float = 0.0  # time to the first token (mostly reading the prompt)
    prompt_tokens: int = 0  # tokens of the prompt the model read
    prompt_limit: int = 0  # most prompt tokens allowed (context minus room kept for the reply)
    context_length: int = 0
    dropped_turns: int = 0  # earlier turns left out of the prompt to make it fit
    # "end" (end token), "stop_string", "max_tokens", "stopped" (stop() / interrupted), or "empty": the
    # model ended its reply before writing any visible text (an undertrained model often does)
    finish: str = ""
    decoder: str = ""  # "compiled, int8 weights" when a compiled decode step made the tokens (--compile)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tokens_per_s": round(self.tokens_per_s, 2)}

    def summary(self) -> str:
        """One line for a status bar: '42 tokens, 35.1 tok/s, prompt 180/1024 tokens, 2 old turns dropped'."""
        text = (f"{self.new_tokens} tokens, {self.tokens_per_s:.1f} tok/s"
                + (f" ({self.decoder})" if self.decoder else "")
                + f", prompt {self.prompt_tokens}/{self.context_length} tokens")
        if self.dropped_turns:
            text += f", {self.dropped_turns} oldest turn{'s' if self.dropped_turns > 1 else ''} left out"
        if self.finish == "empty":
            text += ", " + EMPTY_REPLY_NOTE
        elif self.finish == "stopped":
            text += ", stopped early"
        elif self.finish == "max_tokens":
            text += ", hit the token limit"
        return text


EMPTY_REPLY_NOTE = ("the model wrote no text (it ended its reply at once); it may need more training, "
                    "or try a higher temperature")


@dataclass
class Turn:
    user: str
    assistant: str
    stats: ReplyStats | None = None


@dataclass
class PromptPlan:
    """The prompt for the next reply: its token ids and how it was fitted."""

    text: str
    ids: list[int]
    dropped_turns: int  # how many of the earliest turns are not in it
    limit: int  # the most prompt tokens allowed


@dataclass(eq=False)  # a live session: compared by identity (and hashable, e.g. as a dict key in a UI)
class ChatSession:
    """A conversation with one model. See the module notes for the prompt format and threading."""

    model: Any  # GPTModel (any object with .cfg.context_length that generation.generate accepts)
    template: PromptTemplate | None  # None: a base model, plain text continuation
    sampling: Any = None  # generation.SamplingConfig; None = its defaults (greedy)
    tokenizer: Any = None  # tiktoken.Encoding; None = GPT-2's
    turns: list[Turn] = field(default_factory=list)
    checkpoint: str | None = None  # the file the model came from, if any
    stats: ReplyStats | None = None  # of the latest reply

    def __post_init__(self) -> None:
        from chatgpt_scratch.generation import SamplingConfig

        self.sampling = self.sampling or SamplingConfig()
        self.tokenizer = self.tokenizer or get_tokenizer()
        self._stop = threading.Event()
        self._busy = threading.Lock()  # one reply at a time
        self._replies = 0  # replies drawn so far: varies the seed per reply (see _reply_sampling)
        self._set_aside: Any = None  # a compiled decode step waiting for its package (defer_compile)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", sampling: Any = None,
                        dtype: Any = None, compile: bool = False) -> ChatSession:
        """Load a base or instruct checkpoint (or a lora-adapter of one); an instruct one brings the
        template it was trained with.

        dtype=None on a CPU uses the precision the checkpoint recommends for chat (`chat_precision` in its
        header: the fastest one whose greedy replies matched float32's on its test entries, measured by
        scripts/model_cards.py for the built-in model); otherwise the saved dtype. compile (CPU, dtype None):
        decode each token through a compiled step in that precision (compiled_decode.py), 1.5-3x faster; it
        compiles at the first reply, or ahead with `session.model.decoder.warm_up()`."""
        from chatgpt_scratch.system.device import resolve_device
        from chatgpt_scratch.usecases.inference import apply_chat_precision, load_for_inference

        device = resolve_device(device)
        model, metadata = load_for_inference(path, device=device, dtype=dtype, kind=("instruct", "base"))
        if dtype is None:
            model = apply_chat_precision(model, metadata, device, compile=compile)
        return cls(model, template_from_metadata(metadata, path), sampling, checkpoint=str(path))

    def warm_up(self, say: Callable[[str], None] | None = None) -> str | None:
        """Compile the model's decode step now, if it has one (compile=True), rather than at the first reply;
        `say` hears what is happening first. Returns why compiling failed (replies then decode without it)."""
        decoder = getattr(self.model, "decoder", None)
        if decoder is None:
            return None
        decoder.warm_up(say)
        return decoder.error

    def defer_compile(self) -> bool:
        """If this session's compiled decode step (compile=True) has no cached package yet, set it aside:
        replies decode eagerly meanwhile (the same float32 model) instead of the first one waiting tens of
        seconds for the compile. A front end then compiles the package in another process
        (compiled_decode.compile_command) and calls load_compiled() and resume_compiled(). True when set aside."""
        decoder = getattr(self.model, "decoder", None)
        if decoder is None or decoder.error is not None or decoder.package_cached:
            return False
        self._set_aside, self.model.decoder = decoder, None
        return True

    @property
    def compile_deferred(self) -> bool:
        """A compiled decode step is set aside (defer_compile) and not back yet."""
        return self._set_aside is not None

    def load_compiled(self) -> str | None:
        """Load the set-aside step from its package (compiling it here if the package is still missing);
        any thread, also while a reply is written. Returns why it failed, None when it works."""
        decoder = self._set_aside
        if decoder is None:
            return None
        decoder.warm_up()
        return decoder.error

    def resume_compiled(self) -> bool:
        """Between replies, put the loaded step back: the next replies decode through it. False while a
        reply is being written (call again after it), or when there is no working step to put back."""
        decoder = self._set_aside
        if decoder is None or decoder.run is None or decoder.error is not None:
            return False
        if not self._busy.acquire(blocking=False):
            return False
        try:
            self.model.decoder, self._set_aside = decoder, None
        finally:
            self._busy.release()
        return True

    @property
    def context_length(self) -> int:
        return int(self.model.cfg.context_length)

    # -- the prompt ---------------------------------------------------------------------------

    def format_conversation(self, message: str, turns: Iterable[Turn] | None = None) -> str:
        """The text the model reads: the given turns (default: all), then `message`, ready for the reply."""
        turns = self.turns if turns is None else list(turns)
        if self.template is None:
            return "".join(t.user + t.assistant for t in turns) + message
        parts = [self.template.prompt(t.user) + t.assistant for t in turns]
        return TURN_SEPARATOR.join([*parts, self.template.prompt(message)])

    def prompt_limit(self) -> int:
        """Most prompt tokens: the context minus room for the reply (max_new_tokens, at most half the context).

        Capping the room at half keeps some history when max_new_tokens is as long as the context; a
        reply that then outgrows the window still works (generation slides the window).
        """
        return self.context_length - min(self.sampling.max_new_tokens, self.context_length // 2)

    def plan_prompt(self, message: str) -> PromptPlan:
        """Fit the conversation into the context by leaving out the oldest turns; never cut `message`."""
        limit = self.prompt_limit()
        alone = self._encode(self.format_conversation(message, turns=()))
        if len(alone) > limit:
            raise ScratchError(
                f"the message is {len(alone)} tokens (with the prompt template) but this model reads at most "
                f"{limit} prompt tokens (context {self.context_length} minus {self.context_length - limit} kept "
                "for the reply): shorten it or lower the reply length (max new tokens)"
            )
        # Drop the oldest turn until it fits. Tokenizing the whole text each time is exact (BPE can
        # merge across turn boundaries) and cheap next to running the model.
        for first in range(len(self.turns) + 1):
            text = self.format_conversation(message, self.turns[first:])
            ids = alone if first == len(self.turns) else self._encode(text)
            if len(ids) <= limit:
                return PromptPlan(text, ids, dropped_turns=first, limit=limit)
        raise AssertionError("unreachable: the message alone fits")

    def _encode(self, text: str) -> list[int]:
        # What the user types is text: a typed "<|endoftext|>" stays text, not the end token.
        return self.tokenizer.encode(text, allowed_special=set(), disallowed_special=())

    # -- replying -----------------------------------------------------------------------------

    def send(self, message: str) -> Iterator[str]:
        """Stream the reply to `message` as text pieces; the turn is stored when the stream ends.

        Stops at the end token, when the model starts a new turn (a template stop string, never
        yielded), after max_new_tokens, or on stop(). Whatever was yielded is kept as the reply,
        also when the consumer stops iterating or an exception (Ctrl-C) interrupts it.
        """
        if not message.strip():
            raise ScratchError("the message is empty; type something to send")
        plan = self.plan_prompt(message)  # raises here, before anything streams, if it cannot fit
        self._forget_old_stop()
        return self._stream(message, plan)

    def regenerate(self) -> Iterator[str]:
        """Drop the last reply and stream a new one for the same message (a new draw unless greedy)."""
        if not self.turns:
            raise ScratchError("there is no reply to regenerate yet; send a message first")
        message = self.turns[-1].user
        saved, self.turns = self.turns, self.turns[:-1]
        try:
            plan = self.plan_prompt(message)
        finally:
            self.turns = saved
        self._forget_old_stop()
        return self._stream(message, plan, replace_last=True)

    def _forget_old_stop(self) -> None:
        # Cleared when a reply is asked for, not when it starts streaming: a stop() that comes
        # between the two (a quick click in the UI) still stops it.
        if not self._busy.locked():
            self._stop.clear()

    def stop(self) -> None:
        """End the reply being written (safe from any thread); what was written so far is kept."""
        self._stop.set()

    def clear(self) -> None:
        """Forget the conversation (the model and settings stay)."""
        self.turns = []
        self.stats = None

    def set_history(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Continue an earlier conversation, e.g. one read back from the chat store."""
        self.turns = [Turn(user, assistant) for user, assistant in pairs]

    def _reply_sampling(self):
        # A fixed seed makes a whole conversation reproducible, yet each reply (and each
        # regenerate) is a fresh draw rather than the same random numbers again.
        if self.sampling.seed is None:
            return self.sampling
        return replace(self.sampling, seed=self.sampling.seed + self._replies)

    def _stream(self, message: str, plan: PromptPlan, replace_last: bool = False) -> Iterator[str]:
        from chatgpt_scratch.generation import StopStringScanner, generate

        if not self._busy.acquire(blocking=False):
            raise ScratchError("a reply is still being written; stop it or wait for it to finish")
        if replace_last:  # only now that the new reply really starts
            self.turns.pop()
        decoder = getattr(self.model, "decoder", None)
        stats = ReplyStats(prompt_tokens=len(plan.ids), prompt_limit=plan.limit,
                           context_length=self.context_length, dropped_turns=plan.dropped_turns,
                           decoder=f"compiled, {decoder.weights} weights" if decoder and not decoder.error else "")
        sampling = self._reply_sampling()
        self._replies += 1
        stop_strings = self.template.stop_strings if self.template else ()
        written: list[str] = []  # the pieces yielded: exactly what the reader saw
        trim = self.template is not None  # trailing blank space before a new turn is not part of a reply
        held = ""  # trailing whitespace waiting to see if more text follows
        tokens = generate(self.model, plan.ids, sampling, stop_ids=(ENDOFTEXT_ID,))
        decoder, scanner = StreamDecoder(self.tokenizer), StopStringScanner(stop_strings)
        start = time.perf_counter()
        stats.finish = "end"
        try:
            for token in tokens:
                stats.new_tokens += 1
                if stats.new_tokens == 1:
                    stats.first_token_s = time.perf_counter() - start
                text, hit = scanner.feed(decoder.push(token))
                text, held = _hold_trailing_space(held + text, trim)
                if text:
                    written.append(text)
                    yield text
                if hit:
                    stats.finish = "stop_string"
                    break
                if self._stop.is_set():
                    stats.finish = "stopped"
                    break
            else:
                if stats.new_tokens >= sampling.max_new_tokens:
                    stats.finish = "max_tokens"
                tail, hit = scanner.feed(decoder.flush())
                tail = held + tail + ("" if hit else scanner.finish())
                tail = tail.rstrip() if trim else tail
                if tail:
                    written.append(tail)
                    yield tail
        except BaseException:  # GeneratorExit (the reader stopped), KeyboardInterrupt, errors
            stats.finish = "stopped"
            raise
        finally:
            tokens.close()
            stats.seconds = time.perf_counter() - start
            reply = "".join(written)
            if not reply.strip() and stats.finish != "stopped":
                stats.finish = "empty"
            self.turns.append(Turn(message, reply.rstrip() if trim else reply, stats))
            self.stats = stats
            self._stop.clear()
            self._busy.release()


def _hold_trailing_space(text: str, trim: bool) -> tuple[str, str]:
    """Split off trailing whitespace to hold back (so a reply never ends in blank lines)."""
    if not trim:
        return text, ""
    body = text.rstrip()
    return body, text[len(body):]


def template_from_metadata(metadata: dict[str, Any], path: str | Path = "checkpoint") -> PromptTemplate | None:
    """An instruct checkpoint names its template; a base checkpoint has none (plain continuation)."""
    if metadata.get("kind") != "instruct":
        return None
    name = metadata.get("template")
    if isinstance(name, dict):  # a template stored in full rather than by name
        name = name.get("name")
    if not name:
        raise ScratchError(f"{path} is an instruct checkpoint without a 'template' in its metadata; "
                           "re-save it with the template it was fine-tuned with (alpaca or phi3)")
    return get_template(str(name))
