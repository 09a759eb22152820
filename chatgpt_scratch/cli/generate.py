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
                        help="int8: dynamic int8 quantization of the linear layers; CPU only, the fastest CPU path "
                        "(logits change slightly)")


def load_model_for_inference(path: str, device_name: str, dtype: str = "float32", quantize: str = "none",
                             kind: tuple[str, ...] = ("base", "instruct")):
    """Load a checkpoint (or lora-adapter) onto the device in the requested precision, with the faster CPU layout
    of each float Linear (inference.fast_cpu_linears); returns (model, metadata)."""
    import torch

    from chatgpt_scratch.system.device import resolve_device
    from chatgpt_scratch.usecases.inference import load_for_inference

    device = resolve_device(device_name)
    if quantize == "int8" and device.type != "cpu":
        raise ScratchError("--quantize int8 runs on the CPU only; add --device cpu or drop --quantize")
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
    model, _ = load_model_for_inference(args.checkpoint, args.device, args.dtype, args.quantize)
    ids = encode(prompt)
    context = model.cfg.context_length
    if len(ids) > context:  # one rule, as chat: a prompt is never cut silently
        raise ScratchError(f"the prompt is {len(ids)} tokens, longer than the model's {context}-token context; "
                           f"shorten it to at most {context} tokens (e.g. keep its end)")
    out = sys.stdout
    for piece in stream_text(model, ids, sampling, stop_strings=args.stop):
        out.write(piece)
        out.flush()
    out.write("\n")
    out.flush()
    return 0
