"""The one-token decode step of a GPTModel, compiled for the CPU by inductor (PyTorch's C++ code generator).

Decoding one token at batch 1 is a chain of matrix-vector products: its speed is the speed at which
the weights stream from memory, plus the cost of launching ~12 small kernels per layer. PyTorch's
eager CPU kernels reach about half of this machine's memory bandwidth on a matrix-vector product and
pay Python and dispatch costs per op; llama.cpp reaches nearly all of it. This module writes the step
out as plain tensor arithmetic, each Linear as a row-wise reduction `(W * x).sum(-1)`, and lets
inductor turn the whole step into one C++ function: vectorized, multi-threaded reductions that stream
each weight matrix once, with no Python between the layers.

How it is compiled: ahead of time first (`torch.export` + AOTInductor, torch >= 2.6) into a small package
without the weights, cached in inductor's folder per shape and precision (so every checkpoint of that shape
shares it, and a later process loads it in a fraction of a second); it is then called from C++, without
the Python wrapper that torch.compile runs around each call (~0.4 ms a token, a fifth of a 26M model's
step). Where that is unavailable, torch.compile (its code also cached on disk); where compiling fails
altogether, the eager model.

Weights (`weights=`), the activations always float32:
- float32: the model's own tensors (no copy).
- bfloat16: a bf16 copy of every Linear's weight: half the bytes per token; the products and sums stay
  float32, so only the weights are rounded (closer to float32 than running the whole model in bf16).
- int8: an int8 copy, one float32 scale per output row (w ≈ q·s): a quarter of the bytes.
Embeddings, norms and biases stay the model's float32 tensors.

Two details make the compiled code fast, and are why it is written this way:
- `realize_opcount_threshold=0`: inductor otherwise inlines a Linear's input (the layer norm) into the
  reduction that reads it, recomputing the norm for every weight element (1.3-1.4x slower).
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

import hashlib
import json
import math
import os
import platform
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from chatgpt_scratch.config import INFERENCE_PRECISIONS as DECODE_WEIGHTS
from chatgpt_scratch.quantize import int8_per_row

# inductor options for the step: keep every intermediate vector in its own buffer (see the module notes);
# no size asserts in the wrapper (dynamo's guards already check the inputs' shapes; ~3% a token on a small model)
INDUCTOR_OPTIONS = {"realize_opcount_threshold": 0, "size_asserts": False}
WARM_UP_NOTE = "compiling the decode step for this CPU (cached for later runs)"  # what a front end shows meanwhile


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
        return int8_per_row(w)
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


class _Linear(nn.Module):
    """One Linear as the step stores it: `weight` (bf16/int8/float32), per-row `scale` and `bias` (or None)."""

    def __init__(self, linear: nn.Module, weights: str, rows: int | None = None):
        super().__init__()
        weight, scale = pack_weight(linear_weight(linear)[:rows], weights)
        self.register_buffer("weight", weight)
        self.register_buffer("scale", scale)
        bias = getattr(linear, "bias", None)
        self.register_buffer("bias", None if bias is None else bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = matvec(self.weight, self.scale, x)
        return y if self.bias is None else y + self.bias


class _Norm(nn.Module):
    def __init__(self, norm: nn.Module):
        super().__init__()
        self.register_buffer("scale", norm.scale.detach().float())
        self.register_buffer("shift", norm.shift.detach().float())
        self.eps = norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.scale.shape, self.scale, self.shift, self.eps)


class _Layer(nn.Module):
    def __init__(self, block: nn.Module, weights: str):
        super().__init__()
        self.norm1, self.norm2 = _Norm(block.norm1), _Norm(block.norm2)
        self.qkv, self.out = _Linear(block.att.qkv, weights), _Linear(block.att.out_proj, weights)
        self.ff_in, self.ff_out = _Linear(block.ff.layers[0], weights), _Linear(block.ff.layers[2], weights)


class _DecodeStep(nn.Module):
    """The packed weights (buffers with stable names) and the pure step function that is compiled."""

    def __init__(self, model: nn.Module, weights: str):
        super().__init__()
        cfg = model.cfg
        self.n_heads, self.head_dim, self.emb_dim = cfg.n_heads, cfg.head_dim, cfg.emb_dim
        self.register_buffer("tok_emb", model.tok_emb.weight.detach().float())
        self.register_buffer("pos_emb", model.pos_emb.weight.detach().float())
        self.layers = nn.ModuleList(_Layer(block, weights) for block in model.trf_blocks)
        self.final_norm = _Norm(model.final_norm)
        self.head = _Linear(model.out_head, weights, rows=cfg.out_dim)  # padded vocabulary rows cut off

    def forward(self, token: torch.Tensor, position: torch.Tensor, past_keys: torch.Tensor,
                past_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """token, position: (1,) long; past_keys/values: (n_layers, heads, n_past, head_dim) float32.
        Returns (logits (vocab,), new keys and values (n_layers, heads, head_dim))."""
        heads, head_dim, width = self.n_heads, self.head_dim, self.emb_dim
        n_past = past_keys.shape[2]
        x = (self.tok_emb.index_select(0, token) + self.pos_emb.index_select(0, position))[0]  # (emb_dim,)
        new_keys, new_values = [], []
        for layer, p in enumerate(self.layers):
            q, k, v = p.qkv(p.norm1(x)).view(3, heads, head_dim).unbind(0)  # (heads, head_dim) each
            new_keys.append(k)
            new_values.append(v)
            keys, values = past_keys[layer], past_values[layer]  # (heads, n_past, head_dim)
            # the new token sees every earlier one and itself: the past through two small batched matmuls
            # (faster here than inductor's reduction over n_past), then its own key and value
            past_scores = torch.bmm(keys, q[:, :, None])[:, :, 0]  # (heads, n_past)
            scores = torch.cat([past_scores, (k * q).sum(-1, keepdim=True)], dim=1)
            weights = torch.softmax(scores / math.sqrt(head_dim), dim=-1)  # (heads, n_past + 1)
            past_context = torch.bmm(weights[:, None, :n_past], values)[:, 0]  # (heads, head_dim)
            context = past_context + weights[:, n_past:] * v
            x = x + p.out(context.reshape(width))
            x = x + p.ff_out(F.gelu(p.ff_in(p.norm2(x)), approximate="tanh"))
        return self.head(self.final_norm(x)), torch.stack(new_keys), torch.stack(new_values)


class CompiledDecoder:
    """Batch-1 decoding steps of `model` (a GPTModel on the CPU, float32) through one compiled function.

    `step(token, cache)` feeds one token after the `cache.length` tokens a KVCache holds (filled by the
    eager model's prefill), stores its keys and values there, and returns the next-token logits
    (1, vocab) in float32. The first step compiles (tens of seconds on 2 cores, once per shape and
    precision: the package is cached on disk) or loads the cached package; `warm_up()` does that now.
    """

    def __init__(self, model: nn.Module, weights: str = "float32"):
        if weights not in DECODE_WEIGHTS:
            raise ValueError(f"weights must be one of {', '.join(DECODE_WEIGHTS)}, got {weights!r}")
        if getattr(model.cfg, "n_classes", None) is not None:
            raise ValueError("a classifier has no decode step")
        self.model, self.weights = model, weights
        self.module = _DecodeStep(model, weights)
        # inputs -> [logits, keys, values]: made at the first step (see _compile)
        self.run: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None
        self.how = ""  # "ahead of time" (AOTInductor) or "torch.compile", once made
        self.aot_error: str | None = None  # why the ahead-of-time package could not be used, if it could not
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
            try:
                run = self.run or self._compile(cache)
                logits, keys, values = run([torch.tensor([token]), torch.tensor([n_past]), past_keys, past_values])
            except Exception as exc:  # no compiler, an unsupported build: say why once, then decode eagerly
                self.error = one_line(exc)
                return self._eager_step(token, cache)
            cache.all_keys[:, 0, :, n_past] = keys
            cache.all_values[:, 0, :, n_past] = values
        cache.length = n_past + 1
        return logits[None]

    def _compile(self, cache: Any) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
        """The compiled step: ahead of time (AOTInductor: called from C++, no Python wrapper, ~0.4 ms a token
        less), else torch.compile (dynamo marks the past's length dynamic: one compile for every length)."""
        try:
            self.run, self.how = aot_step(self.module, cache), "ahead of time"
            return self.run
        except Exception as exc:  # torch < 2.6, or AOTInductor failed here: torch.compile may still work
            self.aot_error = one_line(exc)
        compiled = torch.compile(self.module, fullgraph=True, dynamic=False, options=INDUCTOR_OPTIONS)

        def run(inputs: list[torch.Tensor]) -> list[torch.Tensor]:
            torch._dynamo.mark_dynamic(inputs[2], 2)
            torch._dynamo.mark_dynamic(inputs[3], 2)
            return list(compiled(*inputs))
        self.run, self.how = run, "torch.compile"
        return run

    @property
    def package_cached(self) -> bool:
        """True when the ahead-of-time package of this step's shape and precision is on disk already, so
        warm_up() loads it in well under a second instead of compiling for tens of seconds."""
        return aot_package_path(self.module).is_file()

    def _eager_step(self, token: int, cache: Any) -> torch.Tensor:
        with torch.inference_mode():
            hidden = self.model.hidden_states(torch.tensor([[token]], device=self.model.device), cache)
            return self.model.head(hidden[:, -1]).float()

    def warm_up(self, say: Callable[[str], None] | None = None) -> bool:
        """Compile now, on a throwaway cache (two past tokens; full length, as generation makes it, since
        its strides are part of what is compiled); `say` hears first what is happening. True when the
        compiled step works."""
        if say is not None:
            say(WARM_UP_NOTE)
        with torch.inference_mode():  # generation's cache is made under inference_mode too
            cache = self.model.new_cache(1)
        if cache.max_len < 3:
            return False
        cache.length = 2
        self.step(0, cache)
        return self.error is None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def aot_package_path(module: nn.Module) -> Path:
    """Where the ahead-of-time package of a step of this shape lives: inductor's cache folder, one file per
    (layer shapes and dtypes, this file's code, torch version, CPU architecture). The weights are not in it:
    every checkpoint of the same shape and precision shares it."""
    try:
        from torch._inductor.runtime.cache_dir_utils import cache_dir
        folder = Path(cache_dir())
    except ImportError:
        folder = Path(tempfile.gettempdir()) / "torchinductor"
    key = hashlib.sha256(json.dumps({
        "buffers": [(name, str(t.dtype), list(t.shape)) for name, t in module.named_buffers()],
        "code": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(), "torch": torch.__version__,
        "machine": platform.machine(), "options": INDUCTOR_OPTIONS,
    }, sort_keys=True).encode()).hexdigest()[:20]
    return folder / "chatgpt-scratch" / f"decode-step-{key}.pt2"


def aot_step(module: nn.Module, cache: Any) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
    """The step compiled ahead of time by AOTInductor (torch >= 2.6) into a package without its weights,
    made once per shape (export + compile, tens of seconds) and loaded from the package after that; the
    weights are handed to it as they are in memory (no copy)."""
    with warnings.catch_warnings():  # torch's own deprecation notices about its internals: not the user's to see
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return _aot_step(module, cache)


def _aot_step(module: nn.Module, cache: Any) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
    from torch._inductor import aoti_load_package

    path = aot_package_path(module)
    if path.is_file():
        try:
            return _load_package(aoti_load_package(str(path)), module)
        except Exception:  # a damaged package (a full disk, a crash while copying): made again below
            path.unlink(missing_ok=True)
    _make_package(module, cache, path)
    return _load_package(aoti_load_package(str(path)), module)


def _make_package(module: nn.Module, cache: Any, path: Path) -> None:
    from torch._inductor import aoti_compile_and_package

    past_keys, past_values = cache.all_keys[:, 0, :, :2], cache.all_values[:, 0, :, :2]
    n_past = torch.export.Dim("n_past", min=2, max=cache.max_len - 1)
    with torch.no_grad():
        program = torch.export.export(module, (torch.tensor([0]), torch.tensor([2]), past_keys, past_values),
                                      dynamic_shapes=(None, None, {2: n_past}, {2: n_past}))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.pt2")
    try:
        aoti_compile_and_package(program, package_path=str(partial), inductor_configs={
            **INDUCTOR_OPTIONS, "aot_inductor.package_constants_in_so": False})
        os.replace(partial, path)  # another process making the same package: either one wins, whole
    finally:
        partial.unlink(missing_ok=True)


def _load_package(runner: Any, module: nn.Module) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
    """The package's C++ entry point, with the step's weights handed over as they are in memory."""
    buffers = dict(module.named_buffers())
    runner.load_constants({name: buffers[name] for name in runner.get_constant_fqns()}, check_full_update=True,
                          user_managed=True)
    return runner.loader.boxed_run


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


def compile_command(checkpoint: str | Path) -> list[str]:
    """The command that compiles (and caches) the decode step a chat with `checkpoint` uses, in another
    process: what a front end runs in the background, so that neither its UI thread nor its exit waits on
    inductor (see main)."""
    import sys

    return [sys.executable, "-m", "chatgpt_scratch.compiled_decode", str(checkpoint)]


def main(argv: list[str] | None = None) -> int:
    """`python -m chatgpt_scratch.compiled_decode CHECKPOINT`: compile the decode step of a chat with
    CHECKPOINT (in its chat precision, as `chat --compile` uses it) into inductor's cache folder, where
    every later chat with a model of that shape loads it in well under a second. Exit 0 when it compiled,
    1 when compiling failed here, 2 for a checkpoint it cannot serve; each failure is one line on stderr."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m chatgpt_scratch.compiled_decode",
                                     description=main.__doc__.split("\n\n")[0] if main.__doc__ else None)
    parser.add_argument("checkpoint", help="a base or instruct checkpoint (or a lora-adapter of one)")
    args = parser.parse_args(argv)
    from chatgpt_scratch.chat import ChatSession
    from chatgpt_scratch.errors import ScratchError

    try:
        session = ChatSession.from_checkpoint(args.checkpoint, device="cpu", compile=True)
    except ScratchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    decoder = getattr(session.model, "decoder", None)
    if decoder is None:
        print(f"error: {args.checkpoint}: this model has no decode step to compile", file=sys.stderr)
        return 2
    if not decoder.warm_up():
        print(f"error: could not compile the decode step here: {decoder.error}", file=sys.stderr)
        return 1
    print(f"compiled ({decoder.how}, {decoder.weights} weights)"
          + (f": {aot_package_path(decoder.module)}" if decoder.how == "ahead of time" else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
