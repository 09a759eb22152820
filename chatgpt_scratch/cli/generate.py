"""`chatgpt-scratch generate --checkpoint PATH "prompt"`: stream a continuation to stdout."""

from __future__ import annotations

import argparse
import sys

from chatgpt_scratch.cli.common import add_checkpoint_arg, add_command, add_device_arg, add_sampling_args
from chatgpt_scratch.errors import ScratchError

DTYPES = ("float32", "bfloat16", "float16")


def register(subparsers) -> None:
    p = add_command(subparsers, "generate", run,
                    help="continue a prompt with a base or instruct checkpoint, streaming the text",
                    description="Continue PROMPT with the model in a checkpoint, printing tokens as they are made. "
                    "Greedy by default (--temperature 0); set --temperature with --top-k/--top-p to sample.",
                    examples='chatgpt-scratch generate --checkpoint checkpoints/gpt2.safetensors '
                    '--temperature 0.8 --top-k 40 --seed 1 "Every effort moves you"')
    p.add_argument("prompt", help='the prompt text; "-" reads it from stdin. A prompt longer than the model\'s '
                   "context is an error (the reply may run past the context: the model then sees its last "
                   "context-length tokens)")
    add_checkpoint_arg(p, "generate")
    add_sampling_args(p)
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop when this text appears (not printed); repeatable")
    add_device_arg(p)
    add_precision_args(p)


def add_precision_args(parser: argparse.ArgumentParser) -> None:
    """--dtype and --quantize: the faster CPU paths (see benchmarks/generate.py). Other commands may reuse this."""
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="weight precision (default float32); bfloat16 halves the memory traffic per token, "
                        "about 2x faster on a CPU with bf16 support")
    parser.add_argument("--quantize", choices=("none", "int8"), default="none",
                        help="int8: dynamic int8 quantization of the linear layers; CPU only (logits change slightly)")
    add_compile_arg(parser, "with --dtype/--quantize naming its weights (float32, bfloat16, int8)")


def add_compile_arg(parser: argparse.ArgumentParser, weights: str) -> None:
    """--compile: the compiled CPU decode step (compiled_decode.py); `weights` says where its precision comes from."""
    parser.add_argument("--compile", action="store_true",
                        help="CPU: decode each token through one step compiled for this CPU (inductor; needs a "
                        f"C++ compiler), 1.5-3x more tokens/s, {weights}; the prompt runs in float32. The first run "
                        "for a model shape compiles for up to a minute; later runs load it from inductor's cache "
                        "folder in under a second")


def require_cpu_for_compile(device) -> None:
    """--compile on a GPU: a one-line error (the compiled step is a CPU kernel)."""
    from chatgpt_scratch.system.device import resolve_device

    device = resolve_device(device) if isinstance(device, str) else device
    if device.type != "cpu":
        raise ScratchError(f"--compile speeds up decoding on the CPU only; drop it on {device.type}, or add --device cpu")


def warm_up_decoder(model, stream=None) -> None:
    """Compile a model's decode step now (if it has one), saying so on stderr: the wait comes before the
    first token, with its reason, and a failure is one line (generation then runs without it)."""
    import time

    decoder = getattr(model, "decoder", None)
    if decoder is None:
        return
    stream = stream or sys.stderr
    started = time.perf_counter()
    if decoder.warm_up(say=lambda note: print(f"{note} ...", end="", file=stream, flush=True)):
        print(f" {time.perf_counter() - started:.1f} s", file=stream, flush=True)
    else:
        print(f" failed, decoding without it ({decoder.error})", file=stream, flush=True)


def load_model_for_inference(path: str, device_name: str, dtype: str = "float32", quantize: str = "none",
                             kind: tuple[str, ...] = ("base", "instruct"), compile: bool = False):
    """Load a checkpoint (or lora-adapter) onto the device in the requested precision, with the faster CPU layout
    of each float Linear (inference.fast_cpu_linears), or (compile) in float32 with a compiled decode step whose
    weights are in that precision; returns (model, metadata)."""
    import torch

    from chatgpt_scratch.system.device import resolve_device
    from chatgpt_scratch.usecases.inference import load_for_inference

    device = resolve_device(device_name)
    if quantize == "int8" and device.type != "cpu":
        raise ScratchError("--quantize int8 runs on the CPU only; add --device cpu or drop --quantize")
    if compile:
        require_cpu_for_compile(device)
        if dtype == "float16":
            raise ScratchError("--compile decodes with float32, bfloat16 or int8 weights; use --dtype bfloat16")
        from chatgpt_scratch.compiled_decode import attach_decoder

        model, metadata = load_for_inference(path, device=device, dtype=torch.float32, kind=kind)
        attach_decoder(model, "int8" if quantize == "int8" else dtype)
        return model, metadata
    model, metadata = load_for_inference(path, device=device, dtype=getattr(torch, dtype), kind=kind)
    from chatgpt_scratch.usecases.inference import fast_cpu_linears, quantize_int8

    return (quantize_int8(model) if quantize == "int8" else fast_cpu_linears(model)), metadata


def run(args: argparse.Namespace) -> int:
    from chatgpt_scratch.generation import stream_text
    from chatgpt_scratch.sampling import sampling_from
    from chatgpt_scratch.tokenizer import encode

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    sampling = sampling_from(args)
    from chatgpt_scratch.cli.common import checkpoint_or_default

    args.checkpoint = checkpoint_or_default(args.checkpoint, "generate")
    model, _ = load_model_for_inference(args.checkpoint, args.device, args.dtype, args.quantize, compile=args.compile)
    ids = encode(prompt)
    context = model.cfg.context_length
    if len(ids) > context:  # one rule, as chat: a prompt is never cut silently
        raise ScratchError(f"the prompt is {len(ids)} tokens, longer than the model's {context}-token context; "
                           f"shorten it to at most {context} tokens (e.g. keep its end)")
    warm_up_decoder(model)
    out = sys.stdout
    for piece in stream_text(model, ids, sampling, stop_strings=args.stop):
        out.write(piece)
        out.flush()
    out.write("\n")
    out.flush()
    return 0
