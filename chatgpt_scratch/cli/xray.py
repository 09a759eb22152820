"""`chatgpt-scratch xray --checkpoint PATH "text"`: the Model X-ray views as plain text.

The numbers come from chatgpt_scratch.usecases.xray (one forward pass of the real model);
their layout (rows, columns, headers, number formats) is chatgpt_scratch.usecases.xray_view's, which
the TUI's X-ray screen shows too; this module parses the flags and prints the laid-out tables as text.
"""

from __future__ import annotations

import argparse
import sys

from chatgpt_scratch.cli.common import add_checkpoint_arg, add_command, add_device_arg, add_sampling_args
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.usecases.xray_view import SHADE_LEGEND, bar, column_numbers, fit, lay_out, percent, shade  # noqa: F401

VIEWS = ("tokens", "next", "attention", "lens", "loss")


def register(subparsers) -> None:
    p = add_command(subparsers, "xray", run,
                    help="look inside the model: tokens, next-token distribution, attention, logit lens, "
                    "per-token loss",
                    description="Run a base or instruct checkpoint over TEXT and show what it does: the BPE "
                    "tokens, the next-token distribution and how temperature, top-k and top-p cut it, the attention "
                    "weights of a layer and head, the top guess after each block (logit lens) and each token's loss.",
                    examples='chatgpt-scratch xray --checkpoint checkpoints/gpt2.safetensors --view next '
                    '--temperature 0.8 --top-k 40 "Every effort moves you"')
    p.add_argument("text", help='the text to x-ray; "-" reads it from stdin')
    add_checkpoint_arg(p, "xray")
    p.add_argument("--view", choices=(*VIEWS, "all"), default="all", help="which view to print (default: all)")
    p.add_argument("--layer", type=int, default=None, metavar="L",
                   help="attention layer, 0-based (default: the last layer)")
    p.add_argument("--head", default="mean", metavar="H",
                   help="attention head, 0-based, or 'mean' for the mean over heads (default: mean)")
    p.add_argument("--token", type=int, default=None, metavar="I",
                   help="token index (0-based) whose attention and logit lens are shown (default: the last token)")
    p.add_argument("--top", type=int, default=10, metavar="N", help="how many next-token candidates to list (default 10)")
    add_sampling_args(p, ("temperature", "top_k", "top_p", "repetition_penalty"), temperature=1.0)
    p.add_argument("--as-instruction", action="store_true",
                   help="wrap TEXT in the instruct checkpoint's prompt template, as chat does")
    add_device_arg(p)


def run(args: argparse.Namespace) -> int:
    from chatgpt_scratch.chat import template_from_metadata
    from chatgpt_scratch.system.device import resolve_device
    from chatgpt_scratch.usecases.inference import load_for_inference
    from chatgpt_scratch.sampling import sampling_from
    from chatgpt_scratch.tokenizer import encode
    from chatgpt_scratch.usecases.xray import xray

    head = parse_head(args.head)
    if args.top < 1:
        raise ScratchError(f"--top must be at least 1, got {args.top}")
    sampling = sampling_from(args)
    text = sys.stdin.read() if args.text == "-" else args.text
    from chatgpt_scratch.cli.common import checkpoint_or_default

    args.checkpoint = checkpoint_or_default(args.checkpoint, "xray")
    model, metadata = load_for_inference(args.checkpoint, device=resolve_device(args.device),
                                         kind=("base", "instruct"))
    if args.as_instruction:
        template = template_from_metadata(metadata, args.checkpoint)
        if template is None:
            raise ScratchError("--as-instruction needs an instruct checkpoint; this is a base checkpoint")
        text = template.prompt(text)
    ray = xray(model, encode(text))
    # The rows, columns and formats are xray_view's, the same the TUI's X-ray screen shows; here as text.
    shown = lay_out(ray, sampling, args.layer, head, args.token, top=args.top, text=text, flag_names=True)
    views = VIEWS if args.view == "all" else (args.view,)
    print("\n\n".join(shown.tables[view].text for view in views))
    return 0


def parse_head(value: str) -> int | None:
    if value == "mean":
        return None
    try:
        return int(value)
    except ValueError:
        raise ScratchError(f"--head must be a head number (0-based) or 'mean', got {value!r}") from None
