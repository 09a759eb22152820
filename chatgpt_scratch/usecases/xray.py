"""Model X-ray: look inside the GPT while it reads a text.

One forward pass of the real model (the same `GPTModel` the app chats with)
gives everything the views need:

- tokens: the BPE pieces of the text, with spaces, newlines and partial UTF-8
  bytes made visible;
- next token: the model's distribution for the token after the text and what
  the sampling steps of `generation.py` (repetition penalty, temperature,
  top-k, top-p) do to it: these are the very functions generation samples with;
- attention: the weights softmax(QKᵀ/√d + causal mask) of every layer and head,
  recorded by the attention module itself (`MultiHeadAttention.record_weights`);
- logit lens: the residual stream after each block pushed through the model's
  own final norm and output head, to see the guess form through depth;
- loss: how surprised the model is by each token (cross-entropy), and the perplexity.

`xray(model, ids)` runs the pass once; the view functions below only slice its
result, so a UI can switch views or sampling settings without running the model again.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.generation import SamplingConfig, make_generator, pick_next_token, sampling_stages
from chatgpt_scratch.tokenizer import get_tokenizer

LOG2 = math.log(2.0)

# ----------------------------------------------------------------------------------------------
# Tokens


# Characters that would be invisible or break a one-line display.
_VISIBLE = {" ": "·", "\n": "↵", "\t": "⇥", "\r": "␍"}


def visible_text(piece: bytes) -> str:
    """A token's bytes as a readable label: '·' for a space, '↵' for a newline, <0xE2> for a partial UTF-8 byte.

    GPT-2's BPE works on bytes, so one emoji or accented letter can be split over
    several tokens, each holding bytes that are not a character on their own.
    """
    # surrogateescape turns each byte that is not part of a complete UTF-8 character into U+DC80..U+DCFF.
    out = []
    for ch in piece.decode("utf-8", errors="surrogateescape"):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"<0x{code - 0xDC00:02X}>")
        elif ch in _VISIBLE:
            out.append(_VISIBLE[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(f"<U+{code:04X}>")
        else:
            out.append(ch)
    return "".join(out)


def token_label(token_id: int) -> str:
    """The visible text of one token id."""
    return visible_text(get_tokenizer().decode_single_token_bytes(token_id))


@dataclass(frozen=True)
class TokenPiece:
    index: int  # position in the text
    id: int
    raw: bytes  # the token's bytes
    label: str  # visible_text(raw)


@dataclass(frozen=True)
class TokensView:
    text: str
    pieces: list[TokenPiece]

    @property
    def n_tokens(self) -> int:
        return len(self.pieces)

    @property
    def n_chars(self) -> int:
        return len(self.text)

    @property
    def chars_per_token(self) -> float:
        return self.n_chars / self.n_tokens if self.pieces else 0.0


def tokens_of_ids(ids: Sequence[int], text: str | None = None) -> TokensView:
    tok = get_tokenizer()
    pieces = []
    for i, token_id in enumerate(ids):
        raw = tok.decode_single_token_bytes(token_id)
        pieces.append(TokenPiece(i, int(token_id), raw, visible_text(raw)))
    if text is None:
        text = tok.decode(list(ids), errors="replace")
    return TokensView(text, pieces)


def tokenize(text: str) -> TokensView:
    """The text split into GPT-2 BPE tokens (`<|endoftext|>` written in the text is the special token)."""
    from chatgpt_scratch.tokenizer import encode

    return tokens_of_ids(encode(text), text)


# ----------------------------------------------------------------------------------------------
# One instrumented forward pass


class AttentionRecording:
    """Holds the attention weights the model's own attention modules recorded."""

    def __init__(self, modules: list) -> None:
        self._modules = modules
        self.weights: list[torch.Tensor] = []  # per layer: (batch, heads, n_q, n_k), filled on exit

    def collect(self) -> list[torch.Tensor]:
        missing = [i for i, m in enumerate(self._modules) if m.last_weights is None]
        if missing:
            raise RuntimeError(f"no attention weights were recorded for layers {missing}; did the model run?")
        self.weights = [m.last_weights for m in self._modules]
        return self.weights


@contextmanager
def recording_attention(model) -> Iterator[AttentionRecording]:
    """Turn on `record_weights` in every block's attention, and off again afterwards.

    with recording_attention(model) as rec:
        model(ids)
    rec.weights  # one (batch, heads, n_q, n_k) tensor per layer
    """
    modules = [block.att for block in model.trf_blocks]
    before = [m.record_weights for m in modules]
    for m in modules:
        m.record_weights, m.last_weights = True, None
    recording = AttentionRecording(modules)
    try:
        yield recording
        recording.collect()
    finally:
        for m, was in zip(modules, before):
            m.record_weights, m.last_weights = was, None  # don't keep big tensors alive on the model


@contextmanager
def capturing_residuals(model) -> Iterator[list[torch.Tensor]]:
    """Hooks that keep the residual stream: entering the first block, then after each block."""
    captured: list[torch.Tensor] = []
    first = model.trf_blocks[0].register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    handles = [first] + [block.register_forward_hook(lambda _m, _inp, out: captured.append(out.detach()))
                         for block in model.trf_blocks]
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


@dataclass
class XRay:
    """Everything the views read, from one forward pass over `ids` (float32, on the CPU)."""

    ids: list[int]
    logits: torch.Tensor = field(repr=False)  # (n_tokens, vocab): next-token scores at every position
    residuals: torch.Tensor = field(repr=False)  # (n_layers + 1, n_tokens, emb_dim): embeddings, then each block
    attention: torch.Tensor = field(repr=False)  # (n_layers, heads, n_tokens, n_tokens)
    model: object = field(repr=False)  # kept for the logit lens (final norm + head)

    @property
    def n_layers(self) -> int:
        return self.attention.shape[0]

    @property
    def n_heads(self) -> int:
        return self.attention.shape[1]


def check_language_model(model) -> None:
    if getattr(model.cfg, "n_classes", None) is not None:
        raise ScratchError("this is a classifier checkpoint; the X-ray needs a base or instruct (text) checkpoint")


@torch.no_grad()  # not inference_mode: callers may reuse these tensors in autograd code
def xray(model, ids: Sequence[int]) -> XRay:
    """Run the model once over ids, recording attention and the residual stream after each block."""
    check_language_model(model)
    ids = [int(i) for i in ids]
    if not ids:
        raise ScratchError("the text is empty; type some text to x-ray")
    if len(ids) > model.cfg.context_length:
        raise ScratchError(f"{len(ids)} tokens do not fit the model's context of {model.cfg.context_length}; "
                           "shorten the text")
    was_training = model.training
    model.eval()
    try:
        batch = torch.tensor([ids], dtype=torch.long, device=model.device)  # (1, n_tokens)
        with recording_attention(model) as rec, capturing_residuals(model) as residuals:
            logits = model(batch)  # (1, n_tokens, vocab)
    finally:
        model.train(was_training)
    stream = torch.cat(residuals, dim=0)  # (n_layers + 1, n_tokens, emb_dim)
    attention = torch.cat(rec.weights, dim=0)  # (n_layers, heads, n_tokens, n_tokens)
    return XRay(ids, logits[0].float().cpu(), stream.float().cpu(), attention.float().cpu(), model)


# ----------------------------------------------------------------------------------------------
# Next token: the distribution and what each sampling step does to it


def entropy_bits(probs: torch.Tensor) -> float:
    """Shannon entropy of a probability vector, in bits (0·log 0 counts as 0)."""
    p = probs[probs > 0].double()
    return float(-(p * p.log()).sum() / LOG2)


@dataclass(frozen=True)
class Stage:
    name: str  # "model", "repetition penalty", "temperature", "top-k", "top-p" or "greedy"
    probs: torch.Tensor  # (vocab,) float32, sums to 1
    survivors: int  # tokens with probability > 0
    entropy_bits: float


@dataclass(frozen=True)
class Candidate:
    rank: int  # 1 = most likely before the cuts
    id: int
    label: str
    stage_probs: dict[str, float]  # stage name -> this token's probability there

    @property
    def model_prob(self) -> float:
        return self.stage_probs["model"]

    @property
    def final_prob(self) -> float:
        return list(self.stage_probs.values())[-1]

    @property
    def survives(self) -> bool:
        return self.final_prob > 0.0

    @property
    def cut_by(self) -> str | None:
        """The first sampling step that gave this token probability 0 (None if it survives)."""
        return next((name for name, p in self.stage_probs.items() if p == 0.0), None)


@dataclass(frozen=True)
class NextTokenView:
    position: int  # index of the token the prediction follows
    sampling: SamplingConfig
    stages: list[Stage]  # model's softmax first, the distribution sampling draws from last
    candidates: list[Candidate]  # the top tokens, ranked as the filters rank them

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    @property
    def top(self) -> Candidate:
        """The most likely token that survives every filter (what greedy or 'pick top' takes)."""
        return max(self.candidates, key=lambda c: (c.final_prob, -c.rank))


def next_token_view(ray: XRay, sampling: SamplingConfig | None = None, top: int = 10,
                    position: int | None = None) -> NextTokenView:
    """The model's top candidates after `position` (default: the last token) under the sampling settings.

    The stages come from `generation.sampling_stages`, the same code `generate` samples with.
    Candidates are ranked by the logits the filters see (after the repetition penalty; with
    no penalty, this is simply the model's own ranking).
    """
    sampling = sampling or SamplingConfig()
    position = len(ray.ids) - 1 if position is None else position
    logits = ray.logits[position]  # (vocab,)
    history = ray.ids[:position + 1]
    stages = [Stage(name, probs, int((probs > 0).sum()), entropy_bits(probs))
              for name, probs in sampling_stages(logits, sampling, history)]
    penalised = [s for s in stages if s.name == "repetition penalty"]
    ranking = (penalised or stages)[0].probs
    order = torch.topk(ranking, min(top, ranking.shape[-1])).indices.tolist()
    candidates = [
        Candidate(rank, tid, token_label(tid), {s.name: float(s.probs[tid]) for s in stages})
        for rank, tid in enumerate(order, start=1)
    ]
    return NextTokenView(position, sampling, stages, candidates)


def choose_next(ray: XRay, sampling: SamplingConfig, mode: str = "top",
                generator: torch.Generator | None = None) -> int:
    """The token to append when stepping forward: 'top' = the most likely survivor, 'sample' = drawn as generate draws."""
    logits = ray.logits[-1][None]  # (1, vocab)
    if mode == "top":
        return int(pick_next_token(logits, SamplingConfig(repetition_penalty=sampling.repetition_penalty),
                                   [ray.ids], make_generator(0))[0])
    if mode == "sample":
        return int(pick_next_token(logits, sampling, [ray.ids], generator or make_generator(sampling.seed))[0])
    raise ScratchError(f"unknown step mode {mode!r}; use 'top' or 'sample'")


# ----------------------------------------------------------------------------------------------
# Attention


def attention_matrix(ray: XRay, layer: int, head: int | None = None) -> torch.Tensor:
    """(n_tokens, n_tokens) weights of one head, or the mean over heads when head is None.

    Row q holds how much query token q attends to each key token; keys after q are 0 (causal).
    """
    if not 0 <= layer < ray.n_layers:
        raise ScratchError(f"layer must be 0..{ray.n_layers - 1}, got {layer}")
    if head is None:
        return ray.attention[layer].mean(dim=0)
    if not 0 <= head < ray.n_heads:
        raise ScratchError(f"head must be 0..{ray.n_heads - 1} (or mean), got {head}")
    return ray.attention[layer, head]


@dataclass(frozen=True)
class Attended:
    index: int
    id: int
    label: str
    weight: float


def top_attended(ray: XRay, layer: int, head: int | None, query: int, k: int = 5) -> list[Attended]:
    """The tokens that token `query` attends to most, heaviest first."""
    if not 0 <= query < len(ray.ids):
        raise ScratchError(f"token index must be 0..{len(ray.ids) - 1}, got {query}")
    row = attention_matrix(ray, layer, head)[query, :query + 1]  # only earlier tokens and itself
    weights, keys = torch.topk(row, min(k, row.shape[0]))
    return [Attended(int(i), ray.ids[int(i)], token_label(ray.ids[int(i)]), float(w))
            for w, i in zip(weights, keys)]


# ----------------------------------------------------------------------------------------------
# Logit lens


@dataclass(frozen=True)
class LensRow:
    layer: int  # 0 = embeddings only, L = after block L
    top_id: int
    top_label: str
    top_prob: float
    final_prob: float  # probability given here to the model's final prediction


@torch.no_grad()  # not inference_mode: callers may reuse these tensors in autograd code
def lens_logits(ray: XRay, position: int | None = None) -> torch.Tensor:
    """(n_layers + 1, vocab) logits from the residual stream at one position, through final norm + head."""
    position = len(ray.ids) - 1 if position is None else position
    model = ray.model
    p = model.out_head.weight
    stream = ray.residuals[:, position].to(device=p.device, dtype=p.dtype)  # (n_layers + 1, emb_dim)
    return model.head(model.final_norm(stream)).float().cpu()


def logit_lens(ray: XRay, position: int | None = None) -> list[LensRow]:
    """The top next-token guess after the embeddings and after each block, at `position` (default: last)."""
    probs = torch.softmax(lens_logits(ray, position), dim=-1)  # (n_layers + 1, vocab)
    final_id = int(probs[-1].argmax())
    rows = []
    for layer, p in enumerate(probs):
        top_id = int(p.argmax())
        rows.append(LensRow(layer, top_id, token_label(top_id), float(p[top_id]), float(p[final_id])))
    return rows


# ----------------------------------------------------------------------------------------------
# Loss


@dataclass(frozen=True)
class TokenLoss:
    index: int
    id: int
    label: str
    nats: float | None  # None for the first token: nothing before it predicts it

    @property
    def bits(self) -> float | None:
        return None if self.nats is None else self.nats / LOG2

    @property
    def prob(self) -> float | None:
        return None if self.nats is None else math.exp(-self.nats)


@dataclass(frozen=True)
class LossView:
    tokens: list[TokenLoss]
    mean_nats: float | None  # over the predicted tokens (all but the first)

    @property
    def perplexity(self) -> float | None:
        return None if self.mean_nats is None else math.exp(self.mean_nats)

    @property
    def mean_bits(self) -> float | None:
        return None if self.mean_nats is None else self.mean_nats / LOG2


def loss_view(ray: XRay) -> LossView:
    """Per-token surprise: token t's loss is the cross-entropy of the prediction made at t-1."""
    targets = torch.tensor(ray.ids[1:], dtype=torch.long)
    losses = F.cross_entropy(ray.logits[:-1], targets, reduction="none").tolist() if len(ray.ids) > 1 else []
    tokens = [TokenLoss(0, ray.ids[0], token_label(ray.ids[0]), None)]
    tokens += [TokenLoss(i, tid, token_label(tid), loss)
               for i, (tid, loss) in enumerate(zip(ray.ids[1:], losses), start=1)]
    mean = sum(losses) / len(losses) if losses else None
    return LossView(tokens, mean)
