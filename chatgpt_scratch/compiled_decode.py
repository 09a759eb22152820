"""The one-token decode step of a GPTModel, compiled for the CPU by torch.compile (inductor's C++ backend).

Decoding one token at batch 1 is a chain of matrix-vector products: its speed is the speed at which
the weights stream from memory, plus the cost of launching ~12 small kernels per layer. PyTorch's
eager CPU kernels reach about half of this machine's memory bandwidth on a matrix-vector product and
pay Python and dispatch costs per op; llama.cpp reaches nearly all of it. This module writes the step
out as plain tensor arithmetic, each Linear as a row-wise reduction `(W * x).sum(-1)`, and lets
inductor turn the whole step into one C++ function: vectorized, multi-threaded reductions that stream
each weight matrix once, with no Python between the layers.

Weights (`weights=`), the activations always float32:
- float32: the model's own tensors (no copy).
- bfloat16: a bf16 copy of every Linear's weight: half the bytes per token; the products and sums stay
  float32, so only the weights are rounded (closer to float32 than running the whole model in bf16).
- int8: an int8 copy, one float32 scale per output row (w ≈ q·s): a quarter of the bytes.
Embeddings, norms and biases stay the model's float32 tensors.

Two details make the compiled code fast, and are why it is written this way:
- `realize_opcount_threshold=0`: inductor otherwise inlines a Linear's input (the layer norm) into the
  reduction that reads it, recomputing the norm for every weight element (several times slower).
- The step does not write the KV cache; it returns each layer's new key and value and the caller stores
  them in one copy. Writing a graph input in place makes inductor copy the whole cache (functionalization).
  The cached keys/values are passed as a view of their first `length` positions, marked dynamic, so
  one compiled function serves every length and reads only the positions that are filled.

The prompt (prefill) still runs through the eager model into the same KVCache; only the one-token steps
after it run compiled. A step is the same function as the model's forward for one token (a test checks
logits and greedy tokens against the eager model); float32 differs only in the order of its sums.
If compiling fails (no C++ compiler, an unsupported build), the decoder says so once in `error` and
the caller's eager path runs instead.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from chatgpt_scratch.config import INFERENCE_PRECISIONS as DECODE_WEIGHTS

# inductor options for the step: keep every intermediate vector in its own buffer (see the module notes);
# no size asserts in the wrapper (dynamo's guards already check the inputs' shapes; ~3% a token on a small model)
INDUCTOR_OPTIONS = {"realize_opcount_threshold": 0, "size_asserts": False}


def linear_weight(linear: nn.Module) -> torch.Tensor:
    """A Linear's weight (out, in), also from the CPU layouts inference.fast_cpu_linears swaps in."""
    return linear.weight_t.t() if hasattr(linear, "weight_t") else linear.weight


def pack_weight(weight: torch.Tensor, weights: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(matrix as stored for the step, per-row float32 scale or None) for one Linear weight (out, in)."""
    w = weight.detach()
    if weights == "float32":
        return w.float().contiguous(), None  # the model's own tensor when it is float32 and row-major
    if weights == "bfloat16":
        return w.to(torch.bfloat16).contiguous(), None
    if weights == "int8":
        w = w.float()
        scale = (w.abs().amax(dim=1) / 127).clamp(min=torch.finfo(torch.float32).tiny)
        return torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale
    raise ValueError(f"weights must be one of {', '.join(DECODE_WEIGHTS)}, got {weights!r}")


def matvec(weight: torch.Tensor, scale: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """W·x for W (out, in) of any stored dtype and x (in,) float32: a row-wise reduction in float32."""
    y = (weight.float() * x).sum(-1)
    return y if scale is None else y * scale


def weights_as_multiplied(model: nn.Module, weights: str) -> nn.Module:
    """An eager copy of `model` whose Linear weights are what a decode step with these `weights` multiplies by
    (bf16-rounded, or int8 times its scale; the head untied from the embedding): the function the compiled
    step computes, for measuring its losses or checking it."""
    import copy

    reference = copy.deepcopy(model)
    reference.out_head.weight = nn.Parameter(reference.out_head.weight.detach().clone())  # the lookup keeps float32
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, nn.Linear):
                w, scale = pack_weight(module.weight, weights)
                module.weight.copy_(w.float() * (1.0 if scale is None else scale[:, None]))
    return reference


class _DecodeStep(nn.Module):
    """The packed weights and the pure step function that torch.compile turns into one kernel."""

    def __init__(self, model: nn.Module, weights: str):
        super().__init__()
        cfg = model.cfg
        self.n_heads, self.head_dim, self.emb_dim = cfg.n_heads, cfg.head_dim, cfg.emb_dim
        self.eps = model.final_norm.eps
        self.tok_emb, self.pos_emb = model.tok_emb.weight.detach().float(), model.pos_emb.weight.detach().float()
        self.final_norm = (model.final_norm.scale.detach().float(), model.final_norm.shift.detach().float())
        self.head = pack_weight(linear_weight(model.out_head)[:cfg.out_dim], weights)  # padded vocabulary rows cut off
        bias = lambda linear: None if linear.bias is None else linear.bias.detach().float()  # noqa: E731
        self.layers = []
        for block in model.trf_blocks:
            ff_in, ff_out = block.ff.layers[0], block.ff.layers[2]
            self.layers.append({
                "norm1": (block.norm1.scale.detach().float(), block.norm1.shift.detach().float()),
                "norm2": (block.norm2.scale.detach().float(), block.norm2.shift.detach().float()),
                "qkv": pack_weight(linear_weight(block.att.qkv), weights), "qkv_bias": bias(block.att.qkv),
                "out": pack_weight(linear_weight(block.att.out_proj), weights), "out_bias": bias(block.att.out_proj),
                "ff_in": pack_weight(linear_weight(ff_in), weights), "ff_in_bias": bias(ff_in),
                "ff_out": pack_weight(linear_weight(ff_out), weights), "ff_out_bias": bias(ff_out),
            })

    def forward(self, token: torch.Tensor, position: torch.Tensor, past_keys: torch.Tensor,
                past_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """token, position: (1,) long; past_keys/values: (n_layers, heads, n_past, head_dim) float32.
        Returns (logits (vocab,), new keys and values (n_layers, heads, head_dim))."""
        heads, head_dim, width = self.n_heads, self.head_dim, self.emb_dim
        n_past = past_keys.shape[2]
        x = (self.tok_emb.index_select(0, token) + self.pos_emb.index_select(0, position))[0]  # (emb_dim,)
        new_keys, new_values = [], []
        for layer, p in enumerate(self.layers):
            h = F.layer_norm(x, (width,), *p["norm1"], self.eps)
            qkv = matvec(*p["qkv"], h)
            if p["qkv_bias"] is not None:
                qkv = qkv + p["qkv_bias"]
            q, k, v = qkv.view(3, heads, head_dim).unbind(0)  # (heads, head_dim) each
            new_keys.append(k)
            new_values.append(v)
            keys, values = past_keys[layer], past_values[layer]  # (heads, n_past, head_dim)
            # the new token sees every earlier one and itself: scores over the past, then its own
            # the past through two small batched matmuls (faster here than inductor's reduction over n_past)
            past_scores = torch.bmm(keys, q[:, :, None])[:, :, 0]  # (heads, n_past)
            scores = torch.cat([past_scores, (k * q).sum(-1, keepdim=True)], dim=1)
            weights = torch.softmax(scores / math.sqrt(head_dim), dim=-1)  # (heads, n_past + 1)
            past_context = torch.bmm(weights[:, None, :n_past], values)[:, 0]  # (heads, head_dim)
            context = past_context + weights[:, n_past:] * v
            x = x + matvec(*p["out"], context.reshape(width)) + p["out_bias"]
            h = F.layer_norm(x, (width,), *p["norm2"], self.eps)
            h = F.gelu(matvec(*p["ff_in"], h) + p["ff_in_bias"], approximate="tanh")
            x = x + matvec(*p["ff_out"], h) + p["ff_out_bias"]
        x = F.layer_norm(x, (width,), *self.final_norm, self.eps)
        return matvec(*self.head, x), torch.stack(new_keys), torch.stack(new_values)


class CompiledDecoder:
    """Batch-1 decoding steps of `model` (a GPTModel on the CPU, float32) through one compiled function.

    `step(token, cache)` feeds one token after the `cache.length` tokens a KVCache holds (filled by the
    eager model's prefill), stores its keys and values there, and returns the next-token logits
    (1, vocab) in float32. The first step compiles (seconds to tens of seconds; inductor caches the code
    on disk, so later processes load it in a few); `warm_up()` does that ahead of time.
    """

    def __init__(self, model: nn.Module, weights: str = "float32", compile: bool = True):
        if weights not in DECODE_WEIGHTS:
            raise ValueError(f"weights must be one of {', '.join(DECODE_WEIGHTS)}, got {weights!r}")
        if getattr(model.cfg, "n_classes", None) is not None:
            raise ValueError("a classifier has no decode step")
        self.model, self.weights = model, weights
        self.module = _DecodeStep(model, weights)
        self.run = torch.compile(self.module, fullgraph=True, dynamic=False, options=INDUCTOR_OPTIONS) \
            if compile else self.module
        self.error: str | None = None  # why compiling failed; the eager model then runs every step
        self.context = model.cfg.context_length  # the cache length generation makes and the step is compiled for
        self._lock = threading.Lock()  # one compile at a time (warm_up in a thread, a step in another)

    def __deepcopy__(self, memo: dict) -> None:
        return None  # a copy of the model (copy.deepcopy) decodes eagerly until it gets its own decoder

    def step(self, token: int, cache: Any) -> torch.Tensor:
        n_past = cache.length
        if self.error is not None or n_past < 2 or tuple(cache.all_keys.shape[1:4:2]) != (1, self.context) \
                or cache.all_keys.dtype != torch.float32:
            return self._eager_step(token, cache)  # 0/1 past tokens: a shape inductor would compile again
        # Everything under inference_mode, as generation runs: tensors made outside it carry another
        # dispatch key, which would compile the step a second time.
        with self._lock, torch.inference_mode():
            past_keys, past_values = cache.all_keys[:, 0, :, :n_past], cache.all_values[:, 0, :, :n_past]
            torch._dynamo.mark_dynamic(past_keys, 2)  # one compiled step for every length
            torch._dynamo.mark_dynamic(past_values, 2)
            try:
                logits, keys, values = self.run(torch.tensor([token]), torch.tensor([n_past]), past_keys, past_values)
            except Exception as exc:  # no compiler, an unsupported build: say why once, then decode eagerly
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                self.error = f"{type(exc).__name__}: {message}"[:300]
                return self._eager_step(token, cache)
            cache.all_keys[:, 0, :, n_past] = keys
            cache.all_values[:, 0, :, n_past] = values
        cache.length = n_past + 1
        return logits[None]

    def _eager_step(self, token: int, cache: Any) -> torch.Tensor:
        with torch.inference_mode():
            hidden = self.model.hidden_states(torch.tensor([[token]], device=self.model.device), cache)
            return self.model.head(hidden[:, -1]).float()

    def warm_up(self) -> bool:
        """Compile now, on a throwaway cache (two past tokens; full length, as generation makes it, since
        its strides are part of what is compiled); True when the compiled step works."""
        with torch.inference_mode():  # generation's cache is made under inference_mode too
            cache = self.model.new_cache(1)
        if cache.max_len < 3:
            return False
        cache.length = 2
        self.step(0, cache)
        return self.error is None


def attach_decoder(model: nn.Module, weights: str = "float32", warm_up: bool = False) -> CompiledDecoder | None:
    """Give a float32 CPU GPTModel a CompiledDecoder (`model.decoder`), which generation's batch-1 loop then
    uses for every step after the prompt; returns it (None for a model it cannot serve: a classifier,
    another device or dtype). warm_up: compile now rather than at the first step."""
    params = next(model.parameters(), None)
    if params is None or params.device.type != "cpu" or params.dtype != torch.float32 \
            or getattr(model.cfg, "n_classes", None) is not None:
        return None
    decoder = CompiledDecoder(model, weights)
    model.decoder = decoder
    if warm_up:
        decoder.warm_up()
    return decoder
