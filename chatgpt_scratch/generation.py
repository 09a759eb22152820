"""Turning a language model into a text generator: sampling and stopping, by hand.

The model gives one score (logit) per vocabulary entry for the next token. To
pick that token we reshape those scores step by step, each step a small pure
function so a UI can show what it does:

    logits ─► repetition penalty ─► temperature ─► top-k ─► top-p ─► softmax ─► pick

Temperature 0 means greedy: always the highest-scoring token (after the penalty).

Decoding with a KV cache feeds each new token alone and reuses the keys/values of
the earlier ones. It yields exactly the tokens that recomputing the whole
sequence would (a test checks this), including past the context window: there,
like the book's `generate`, the model sees only the last `context_length`
tokens. Positions are absolute (learned position embeddings), so once the window
slides every cached key is stale; we then re-prefill the window each step, which
costs what recomputation costs and stays exact. `window_stride=k` trades a little
context for speed: the window start then moves in jumps of k tokens (see
`window_start`), so the cache re-prefills once every k tokens; the no-cache path
uses the same windows, and the two still agree token for token.

Stop strings are matched on the decoded text. `stream_text` and `generate_text`
cut the text exactly before the stop string. The token iterator `generate`
holds back tokens while they could still be the start of a stop string, and
never yields a token that belongs to the stop string (a token that straddles
the boundary, holding text before the stop string and the start of it, is not
yielded either: token ids cannot be split).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch

from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.sampling import SamplingConfig  # noqa: F401 (public here too: the API names generation.SamplingConfig)
from chatgpt_scratch.tokenizer import ENDOFTEXT_ID, StreamDecoder, encode

# ----------------------------------------------------------------------------------------------
# Sampling settings


# SamplingConfig (and the declaration of its fields for the front ends) lives in sampling.py.


# ----------------------------------------------------------------------------------------------
# The sampling step: pure functions on logits (vocab,) or (batch, vocab)


def apply_repetition_penalty(logits: torch.Tensor, previous_ids: Sequence[int] | Sequence[Sequence[int]],
                             penalty: float) -> torch.Tensor:
    """CTRL's penalty: for tokens already seen, divide a positive logit by `penalty`, multiply a negative one.

    Both make a seen token less likely when penalty > 1 (dividing a negative logit would raise it).
    previous_ids: the ids so far, or one list per row for batched logits.
    """
    if penalty == 1.0:
        return logits
    rows = logits.view(-1, logits.shape[-1]).clone()  # (batch, vocab)
    flat = len(previous_ids) == 0 or not isinstance(previous_ids[0], Sequence)
    histories = [previous_ids] * rows.shape[0] if flat else previous_ids  # one flat list: the same for every row
    if len(histories) != rows.shape[0]:
        raise ValueError(f"{len(histories)} histories for {rows.shape[0]} rows of logits")
    for row, seen in zip(rows, histories):
        if len(seen) == 0:
            continue
        idx = torch.tensor(sorted(set(seen)), device=logits.device)
        scores = row[idx]
        row[idx] = torch.where(scores > 0, scores / penalty, scores * penalty)
    return rows.view_as(logits)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide by the temperature: < 1 sharpens the distribution, > 1 flattens it. (0 is handled as greedy.)"""
    return logits if temperature in (0.0, 1.0) else logits / temperature


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep exactly the k highest logits (ties broken by index), set the rest to -inf."""
    if k is None or k >= logits.shape[-1]:
        return logits
    keep = torch.topk(logits, k, dim=-1).indices
    filtered = torch.full_like(logits, -torch.inf)
    return filtered.scatter(-1, keep, logits.gather(-1, keep))


def top_p_filter(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability mass is >= p."""
    if p is None or p >= 1.0:
        return logits
    # Sort only the candidates still alive: after top-k that is k tokens, not the whole vocabulary.
    n_alive = int(torch.isfinite(logits).sum(dim=-1).max())
    sorted_logits, order = torch.topk(logits, max(n_alive, 1), dim=-1)  # descending
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # mass of the strictly more likely tokens
    keep_sorted = mass_before < p  # p not yet reached without this token (the top token is always kept)
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, -torch.inf)


def _sampling_steps(logits: torch.Tensor, sampling: SamplingConfig,
                    previous_ids: Sequence[int] | Sequence[Sequence[int]]) -> Iterator[tuple[str, torch.Tensor]]:
    """The logits after each step that the settings switch on, in the order sampling applies them."""
    logits = apply_repetition_penalty(logits.float(), previous_ids, sampling.repetition_penalty)
    if sampling.repetition_penalty != 1.0:
        yield "repetition penalty", logits
    if sampling.greedy:
        yield "greedy", torch.full_like(logits, -torch.inf).scatter(-1, logits.argmax(dim=-1, keepdim=True), 0.0)
        return
    if sampling.temperature != 1.0:
        logits = apply_temperature(logits, sampling.temperature)
        yield "temperature", logits
    if sampling.top_k is not None:
        logits = top_k_filter(logits, sampling.top_k)
        yield "top-k", logits
    if sampling.top_p is not None:
        logits = top_p_filter(logits, sampling.top_p)
        yield "top-p", logits


def sampling_stages(logits: torch.Tensor, sampling: SamplingConfig,
                    previous_ids: Sequence[int] | Sequence[Sequence[int]] = ()) -> list[tuple[str, torch.Tensor]]:
    """The probability distribution after each step, for showing how each filter reshapes it.

    Returns [(stage name, probs)], from the model's raw softmax to the final distribution
    that `next_token_distribution` returns. Probabilities are float32 and sum to 1.
    """
    stages = [("model", logits.float())] + list(_sampling_steps(logits, sampling, previous_ids))
    return [(name, torch.softmax(stage_logits, dim=-1)) for name, stage_logits in stages]


def next_token_distribution(logits: torch.Tensor, sampling: SamplingConfig,
                            previous_ids: Sequence[int] | Sequence[Sequence[int]] = ()) -> torch.Tensor:
    """Probabilities (float32, same shape as logits) the next token is drawn from.

    Greedy (temperature 0) gives a one-hot vector at the argmax of the penalised logits.
    """
    final = logits.float()
    for _, final in _sampling_steps(logits, sampling, previous_ids):
        pass
    return torch.softmax(final, dim=-1)


def pick_next_token(logits: torch.Tensor, sampling: SamplingConfig,
                    previous_ids: Sequence[int] | Sequence[Sequence[int]],
                    generator: torch.Generator) -> torch.Tensor:
    """One token id per row: (batch, vocab) logits -> (batch,) ids."""
    if sampling.greedy:  # no need to build the full distribution
        return apply_repetition_penalty(logits.float(), previous_ids, sampling.repetition_penalty).argmax(dim=-1)
    probs = next_token_distribution(logits, sampling, previous_ids)
    # Draw on the CPU with our own generator: the same seed gives the same text on any device,
    # and the global RNG (which training relies on) is never touched.
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)


def make_generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()  # fresh entropy from the OS
    else:
        generator.manual_seed(seed)
    return generator


# ----------------------------------------------------------------------------------------------
# Decoding loops


def window_start(n_tokens: int, context: int, stride: int = 1) -> int:
    """Index of the first token the model sees when the sequence holds n_tokens.

    The smallest multiple of `stride` that leaves at most `context` tokens. With stride 1
    this is the book's crop to the last `context` tokens; with a larger stride the window
    jumps ahead by `stride` tokens at a time and may see fewer than `context` tokens.
    """
    if n_tokens <= context:
        return 0
    return -(-(n_tokens - context) // stride) * stride  # ceil((n - context) / stride) * stride


def _check_stride(stride: int, context: int) -> None:
    if not isinstance(stride, int) or not 1 <= stride <= context:
        raise ScratchError(f"window_stride must be a whole number from 1 to the context length ({context}), got {stride!r}")


def _check_model(model) -> None:
    if getattr(model.cfg, "n_classes", None) is not None:
        raise ScratchError("this model has a classification head and cannot generate text; use a base or instruct checkpoint")


def _last_logits(model, idx: torch.Tensor, cache=None, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of the last position only (batch, vocab): the head is skipped for the other positions."""
    hidden = model.hidden_states(idx, cache, attention_mask)  # (batch, n_tokens, emb_dim)
    return model.head(hidden[:, -1])


@torch.inference_mode()
def _token_stream(model, prompt_ids: Sequence[int], sampling: SamplingConfig,
                  stop_ids: Iterable[int], use_cache: bool, window_stride: int = 1) -> Iterator[int]:
    """New token ids, one at a time, until a stop id (not yielded) or max_new_tokens."""
    _check_model(model)
    _check_stride(window_stride, model.cfg.context_length)
    context = model.cfg.context_length

    def window(tokens: list[int]) -> list[int]:  # what the model sees: the book crops from the left
        return tokens[window_start(len(tokens), context, window_stride):]
    stop_ids = set(stop_ids)
    ids = list(prompt_ids) or [ENDOFTEXT_ID]  # GPT-2 starts unconditional text after <|endoftext|>
    generator = make_generator(sampling.seed)
    device = model.device

    def as_batch(tokens: Sequence[int]) -> torch.Tensor:
        return torch.tensor([list(tokens)], dtype=torch.long, device=device)  # (1, n_tokens)

    if sampling.max_new_tokens == 0:
        return
    was_training = model.training
    model.eval()  # no dropout while generating (training calls this for its sample text)
    try:
        seen = window(ids)  # a prompt longer than the context is cropped from the left
        cache = None
        decoder = getattr(model, "decoder", None) if use_cache else None  # compiled_decode.attach_decoder
        if use_cache:  # the compiled step is made for one cache shape: the whole context
            cache = model.new_cache(1, max_len=None if decoder else min(context, len(seen) + sampling.max_new_tokens))
        logits = _last_logits(model, as_batch(seen), cache)
        for step in range(sampling.max_new_tokens):
            token = int(pick_next_token(logits, sampling, [ids], generator)[0])
            if token in stop_ids:
                return
            ids.append(token)
            yield token
            if step == sampling.max_new_tokens - 1:
                return
            if not use_cache:
                logits = _last_logits(model, as_batch(window(ids)))
            elif cache.length < context and decoder is not None:
                logits = decoder.step(token, cache)
            elif cache.length < context:  # the window start has not moved: append to the cache
                logits = _last_logits(model, as_batch([token]), cache)
            else:  # window full: positions shift, cached keys are stale; re-prefill the new window
                cache.length = 0
                logits = _last_logits(model, as_batch(window(ids)), cache)
    finally:
        model.train(was_training)


def generate(model, prompt_ids: Sequence[int], sampling: SamplingConfig | None = None,
             stop_ids: Iterable[int] = (ENDOFTEXT_ID,), stop_strings: Sequence[str] = (),
             use_cache: bool = True, window_stride: int = 1) -> Iterator[int]:
    """Yield new token ids as the model makes them.

    Stops at a token in `stop_ids` (not yielded), after `max_new_tokens`, or when the
    decoded text contains one of `stop_strings` (tokens of the stop string are not
    yielded; see the module notes). Prompts longer than the context are cropped from
    the left; an empty prompt starts after <|endoftext|>. window_stride: see `window_start`.
    """
    sampling = sampling or SamplingConfig()
    tokens = _token_stream(model, prompt_ids, sampling, stop_ids, use_cache, window_stride)
    if not any(stop_strings):
        yield from tokens
        return
    watch = StopStringWatch(stop_strings)
    try:
        for token in tokens:
            ready, stopped = watch.push(token)
            yield from ready
            if stopped:
                return
        yield from watch.finish()
    finally:
        tokens.close()  # restores the model's train/eval mode at once


def stream_text(model, prompt_ids: Sequence[int], sampling: SamplingConfig | None = None,
                stop_ids: Iterable[int] = (ENDOFTEXT_ID,), stop_strings: Sequence[str] = (),
                use_cache: bool = True, window_stride: int = 1) -> Iterator[str]:
    """Yield the new text in pieces as it is made, never splitting a UTF-8 character, cut before a stop string."""
    sampling = sampling or SamplingConfig()
    tokens = _token_stream(model, prompt_ids, sampling, stop_ids, use_cache, window_stride)
    decoder, scanner = StreamDecoder(), StopStringScanner(stop_strings)
    try:
        for token in tokens:
            text, stopped = scanner.feed(decoder.push(token))
            if text:
                yield text
            if stopped:
                return
        text, stopped = scanner.feed(decoder.flush())
        text += "" if stopped else scanner.finish()
        if text:
            yield text
    finally:
        tokens.close()


def generate_text(model, prompt: str, sampling: SamplingConfig | None = None,
                  stop_strings: Sequence[str] = (), stop_ids: Iterable[int] = (ENDOFTEXT_ID,),
                  use_cache: bool = True, window_stride: int = 1) -> str:
    """Tokenize the prompt, generate, and return the new text (without the prompt)."""
    return "".join(stream_text(model, encode(prompt), sampling, stop_ids, stop_strings, use_cache, window_stride))


@torch.inference_mode()
def _batch_token_rows(model, prompts: Sequence[Sequence[int]], sampling: SamplingConfig,
                      stop_ids: Iterable[int], stop_strings: Sequence[str], window_stride: int = 1) -> list[list[int]]:
    """Greedy or sampled decoding of several prompts at once; each row stops on its own."""
    _check_model(model)
    _check_stride(window_stride, model.cfg.context_length)
    context = model.cfg.context_length
    stop_ids = set(stop_ids)
    device = model.device
    generator = make_generator(sampling.seed)
    histories = [list(p) or [ENDOFTEXT_ID] for p in prompts]  # prompt + new tokens, per row
    out: list[list[int]] = [[] for _ in prompts]  # what each row returns (its stop string held back)
    watches = [StopStringWatch(stop_strings) if any(stop_strings) else None for _ in prompts]
    active = list(range(len(prompts)))  # rows still generating, in batch order

    def prefill(made: int) -> tuple[object, torch.Tensor, torch.Tensor]:
        """Left-pad the active rows' last windows into one batch; run them into a fresh cache."""
        windows = [histories[r][window_start(len(histories[r]), context, window_stride):] for r in active]
        width = max(len(w) for w in windows)
        idx = torch.tensor([[0] * (width - len(w)) + w for w in windows], device=device)  # pad id: masked, any id works
        mask = torch.tensor([[0] * (width - len(w)) + [1] * len(w) for w in windows], device=device)
        cache = model.new_cache(len(active), max_len=min(context, width + sampling.max_new_tokens - made))
        return cache, mask, _last_logits(model, idx, cache, mask)

    was_training = model.training
    model.eval()
    try:
        if sampling.max_new_tokens == 0:
            return out
        cache, mask, logits = prefill(made=0)  # logits: (n_active, vocab)
        for step in range(sampling.max_new_tokens):
            picked = pick_next_token(logits, sampling, [histories[r] for r in active], generator).tolist()
            keep = []  # positions in the batch of rows that go on
            for pos, (row, token) in enumerate(zip(active, picked)):
                if token in stop_ids:
                    continue
                histories[row].append(token)
                if watches[row] is None:
                    out[row].append(token)
                else:
                    ready, stopped = watches[row].push(token)
                    out[row].extend(ready)
                    if stopped:
                        watches[row] = None  # done: nothing held back to release
                        continue
                keep.append(pos)
            if not keep or step == sampling.max_new_tokens - 1:
                break
            if len(keep) < len(active):  # drop finished rows from the batch and the cache
                rows = torch.tensor(keep, device=device)
                cache.select(rows)
                mask = mask[rows]
                active = [active[pos] for pos in keep]
            if cache.length < cache.max_len:
                mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
                last = torch.tensor([[histories[r][-1]] for r in active], device=device)  # (n_active, 1)
                logits = _last_logits(model, last, cache, mask)
            else:  # cache full: the window slides, re-prefill (drops padding that is no longer needed)
                cache, mask, logits = prefill(made=step + 1)
    finally:
        model.train(was_training)
    for row, watch in enumerate(watches):  # rows that ended without meeting a stop string
        if watch is not None:
            out[row].extend(watch.finish())
    return out


def generate_batch(model, prompts: Sequence[Sequence[int]], sampling: SamplingConfig | None = None,
                   stop_ids: Iterable[int] = (ENDOFTEXT_ID,), stop_strings: Sequence[str] = (),
                   window_stride: int = 1) -> list[list[int]]:
    """Generate for several prompts at once (left-padded batch); returns the new ids of each row.

    Each row stops on its own (stop id, stop string, with the same rules as `generate`)
    and finished rows leave the batch and its cache. Greedy rows equal what `generate`
    gives for that prompt alone. Sampled rows share one random stream, so they differ
    from sampling each prompt alone with the same seed.
    """
    sampling = sampling or SamplingConfig()
    if not prompts:
        return []
    if len(prompts) == 1 and getattr(model, "decoder", None) is not None:  # one row: the compiled decode step
        return [list(generate(model, prompts[0], sampling, stop_ids, stop_strings, window_stride=window_stride))]
    return _batch_token_rows(model, prompts, sampling, stop_ids, stop_strings, window_stride)


# ----------------------------------------------------------------------------------------------
# Stop strings


class StopStringScanner:
    """Text arrives in pieces; release only what cannot be the start of a stop string.

    feed(piece) -> (text now safe to show, whether a stop string was found).
    On a match, the text before the stop string is released and the rest is dropped.
    """

    def __init__(self, stop_strings: Sequence[str]):
        self.stops = [s for s in stop_strings if s]
        self.longest = max((len(s) for s in self.stops), default=0)
        self.text = ""
        self.released = 0  # characters of self.text already handed out
        self.stopped = False

    def feed(self, piece: str) -> tuple[str, bool]:
        if self.stopped:
            return "", True
        search_from = max(0, len(self.text) - self.longest + 1)
        self.text += piece
        if not self.stops:
            return self._release(len(self.text)), False
        hits = [i for s in self.stops if (i := self.text.find(s, search_from)) >= 0]
        if hits:
            self.stopped = True
            return self._release(min(hits)), True
        return self._release(len(self.text) - self._held_back()), False

    def finish(self) -> str:
        """End of generation: the held-back tail was not a stop string after all."""
        return "" if self.stopped else self._release(len(self.text))

    def _held_back(self) -> int:
        """Length of the longest tail of the text that is a proper prefix of some stop string."""
        for n in range(min(self.longest - 1, len(self.text) - self.released), 0, -1):
            tail = self.text[-n:]
            if any(s.startswith(tail) for s in self.stops):
                return n
        return 0

    def _release(self, end: int) -> str:
        out, self.released = self.text[self.released:end], max(self.released, end)
        return out


class StopStringWatch:
    """The token-id side of StopStringScanner: holds back ids until their text is safe.

    push(id) -> (ids now safe to yield, stopped). A token's text may complete only with
    a later token (a multi-byte character split across tokens); it waits until then.
    """

    def __init__(self, stop_strings: Sequence[str]):
        self.decoder = StreamDecoder()
        self.scanner = StopStringScanner(stop_strings)
        self.chars = 0  # characters decoded so far
        self.pending: list[list] = []  # [token id, char offset where its text ends, or None]

    def push(self, token: int) -> tuple[list[int], bool]:
        piece = self.decoder.push(token)
        self.pending.append([token, None])
        if piece:
            self.chars += len(piece)
            for entry in self.pending:
                if entry[1] is None:
                    entry[1] = self.chars
        _, stopped = self.scanner.feed(piece)
        # Before a stop string: only tokens that end at or before its start.
        return self._take_until(self.scanner.released), stopped

    def finish(self) -> list[int]:
        out = [token for token, _ in self.pending]
        self.pending = []
        return out

    def _take_until(self, offset: int) -> list[int]:
        n = 0
        while n < len(self.pending) and self.pending[n][1] is not None and self.pending[n][1] <= offset:
            n += 1
        out = [token for token, _ in self.pending[:n]]
        del self.pending[:n]
        return out
