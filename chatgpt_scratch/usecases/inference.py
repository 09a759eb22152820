"""One loader for every place that runs a model (chat, classify, generate, xray, evaluate, the TUI): its own module
because it joins checkpoints.py and lora.py, and lora.py already depends on checkpoints.py.

A `lora-adapter` file is accepted wherever a full model of its adapted kind is (its header's
`model_kind`): the base is found and checked (sha256) by lora.load_lora_adapter, the adapter is
merged in (W + alpha/r·A·B, so it generates as fast as the base), and the caller gets the same
(model, metadata) pair a full checkpoint gives, with `kind` set to the adapted kind. An ensemble file
(several classifier adapters, `lora ensemble`) gives a classify.ClassifierEnsemble of its merged members.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chatgpt_scratch.storage.checkpoint_format import MODEL_KINDS, adapted_kind, ensemble_size, kind_label  # noqa: F401 (their home is the format)
from chatgpt_scratch.config import INFERENCE_PRECISIONS as CHAT_PRECISIONS  # the name callers use here
from chatgpt_scratch.errors import ScratchError

# Keys callers read (chat template; classifier labels, pooling and length) that an adapter header may
# lack; taken from the base's header when the base is already a model of the adapted kind.
INHERITED_KEYS = ("template", "labels", "pool", "max_length")


def load_for_inference(path: str | Path, device: Any = "cpu", dtype: Any = None,
                       kind: str | tuple[str, ...] | None = None) -> tuple[Any, dict[str, Any]]:
    """load_checkpoint for full models; for a lora-adapter, its base with the adapter merged in.

    `kind` names the model kinds the caller can use (an adapter is judged by the kind it makes);
    dtype=None keeps the saved dtype. Returns (model in eval mode on `device`, metadata).
    """
    from chatgpt_scratch.checkpoints import load_checkpoint, read_metadata, require_kind

    path = Path(path)
    header = read_metadata(path)  # header only; a missing or broken file fails here with its own message
    if header.get("kind") != "lora-adapter":
        return load_checkpoint(path, device=device, dtype=dtype, kind=kind)

    from chatgpt_scratch.lora import find_base, load_adapter_ensemble, load_lora_adapter

    model_kind = adapted_kind(header)
    if model_kind is None:
        raise ScratchError(f"{path}: the adapter header's model_kind {header.get('model_kind')!r} is not one of "
                           f"{', '.join(MODEL_KINDS)}; the file was edited or is damaged")
    # Checked before the base is hashed and loaded: a wrong kind fails at once.
    require_kind({"kind": model_kind}, kind, f"{path} (a LoRA adapter)")
    if ensemble_size(header):  # several classifier adapters whose probabilities are averaged
        model, adapter_meta = load_adapter_ensemble(path)
    else:
        model, adapter_meta = load_lora_adapter(path, device="cpu", merge=True)  # base missing / changed: its errors
    metadata = {**adapter_meta, "kind": model_kind, "config": model.cfg.to_json(), "lora_adapter": str(path.resolve())}
    missing = [k for k in INHERITED_KEYS if k not in metadata]
    if missing:
        base_meta = read_metadata(find_base(path, adapter_meta["base"]))
        if base_meta.get("kind") == model_kind:
            metadata |= {k: base_meta[k] for k in missing if k in base_meta}
    return model.to(device=device, dtype=dtype).eval(), metadata


def quantize_int8(model: Any) -> Any:
    """A CPU inference copy whose Linear layers (attention, feed-forward, output head) hold int8 weights.

    PyTorch's dynamic quantization: weights stored as int8 per output channel, activations
    quantized on the fly. A quarter of the float32 memory traffic per token, so decoding,
    which is bound by memory bandwidth, runs several times faster; logits change slightly.
    The original model is left untouched. CPU only; inference only.
    """
    import warnings

    import torch
    from torch import nn
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        quantized = quantize_dynamic(model.float().cpu(), {nn.Linear}, dtype=torch.qint8)
    return quantized.eval()


def quantize_weights(model: Any, bits: int = 8, group_size: int = 32, dtype: Any = None) -> Any:
    """A CPU inference copy whose Linear layers hold weight-only int8 (per row) or int4 (per group) weights.

    Unlike `quantize_int8`, the activations are never quantized: the packed weights are multiplied by
    the float activations in PyTorch's weight-only kernels (see chatgpt_scratch/quantize.py). dtype: the
    activations' dtype (and that of embeddings, norms, biases); default float32. The original model is
    left untouched. CPU only; inference only.
    """
    import copy

    import torch

    from chatgpt_scratch.quantize import quantize_linears

    copied = copy.deepcopy(model).to(device="cpu", dtype=dtype or torch.float32)  # deepcopy keeps a tied head tied
    return quantize_linears(copied, bits, group_size).to(dtype or torch.float32).eval()  # scales: cast once, not per token


def fast_cpu_linears(model: Any, min_gain: float = 1.15, repeats: int = 7, kinds: tuple | None = None) -> Any:
    """Swap, in place, each Linear of an inference model (float32 or bf16, on the CPU) for the kernel that
    multiplies one token fastest on this machine; returns the model. The numbers stay those of nn.Linear.

    The candidates (chatgpt_scratch/quantize.py): nn.Linear itself (MKL for float32), TransposedLinear (the
    weight stored (in, out): long vector updates instead of short dot products) and OneDNNLinear (oneDNN's
    linear, as torch.compile's CPU backend calls it). Which wins depends on the CPU, the dtype and the
    matrix's shape, so each distinct (shape, dtype) is timed once at batch 1, the candidates interleaved,
    the median of `repeats` rounds (a fraction of a second in all; the vocabulary head dominates); a
    candidate replaces nn.Linear only when it is at least `min_gain` times faster (0: the fastest other
    candidate always does); `kinds` limits the candidates (default: both). A tied head shares the
    embedding's matrix (OneDNNLinear) or gets a transposed copy of it (TransposedLinear). Nothing changes on
    a GPU.
    """
    import statistics
    import time

    import torch
    from torch import nn

    from chatgpt_scratch.quantize import ONEDNN_LINEAR, OneDNNLinear, TransposedLinear

    params = list(model.parameters())
    if not params or params[0].device.type != "cpu":
        return model
    choices: dict[tuple, Any] = {}

    def replacement(linear: nn.Linear) -> nn.Module:
        """The module to run `linear` with: itself, or the candidate kind that won for its shape."""
        w, b = linear.weight.detach(), None if linear.bias is None else linear.bias.detach()
        key = (tuple(w.shape), w.dtype, b is not None)
        if key in choices:
            return linear if choices[key] is nn.Linear else choices[key](w, b)
        wanted = kinds or (TransposedLinear, OneDNNLinear)
        candidates = {nn.Linear: linear}
        candidates |= {kind: kind(w, b) for kind in wanted if kind is not OneDNNLinear or ONEDNN_LINEAR is not None}
        x = torch.randn(1, 1, w.shape[1], dtype=w.dtype)
        times: dict[Any, list[float]] = {kind: [] for kind in candidates}
        with torch.inference_mode():
            for module in candidates.values():  # warm up (a kernel's first call may set up)
                module(x)
            started = time.perf_counter()  # then size a round to about a millisecond of nn.Linear
            linear(x)
            calls = max(1, int(1e-3 / max(time.perf_counter() - started, 1e-6)))
            for _ in range(repeats):
                for kind, module in candidates.items():
                    started = time.perf_counter()
                    for _ in range(calls):
                        module(x)
                    times[kind].append(time.perf_counter() - started)
        median = {kind: statistics.median(t) for kind, t in times.items()}
        best = min((kind for kind in median if kind is not nn.Linear), key=median.get, default=nn.Linear)
        choices[key] = best if median[nn.Linear] >= min_gain * median[best] else nn.Linear
        return candidates[choices[key]]  # the timed module itself (no second copy of a transposed head)

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and child.weight.dtype in (torch.float32, torch.bfloat16):
                module = replacement(child)
                if module is not child:
                    setattr(parent, name, module)
    return model


def apply_chat_precision(model: Any, metadata: dict[str, Any], device: Any, compile: bool = False) -> Any:
    """On a CPU, run the model in the precision its header recommends for chat (`chat_precision`), if any,
    with the faster layout for each float Linear (fast_cpu_linears). compile: instead, keep the model in
    float32 for the prompt and give it a compiled decode step with its weights in the precision the header
    recommends for that step (`compiled_precision`, else `chat_precision`)
    (compiled_decode.attach_decoder; compile it with `model.decoder.warm_up()` or at the first token)."""
    import torch

    wanted = metadata.get("chat_precision")
    if torch.device(device).type != "cpu":
        return model
    if compile:
        from chatgpt_scratch.compiled_decode import attach_decoder

        # The compiled step rounds only the weights, so its own measured pick (`compiled_precision`) may be
        # lower than the eager one; a header without it falls back on chat_precision.
        weights = metadata.get("compiled_precision", wanted)
        model = model.float()
        attach_decoder(model, weights if weights in CHAT_PRECISIONS else "float32")
        return model
    if wanted == "int8":
        return quantize_int8(model)
    if wanted in CHAT_PRECISIONS:
        model = model.to(dtype=getattr(torch, wanted))
    return fast_cpu_linears(model)
