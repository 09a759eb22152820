"""`chatgpt-scratch xray --checkpoint PATH "text"`: the Model X-ray views as plain text.

The numbers come from chatgpt_scratch.usecases.xray (one forward pass of the real model);
this module only draws them with unicode bars and shade characters.
"""

from __future__ import annotations

import argparse
import sys

from chatgpt_scratch.cli.common import add_checkpoint_arg, add_device_arg, add_sampling_args
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.usecases.xray_view import SHADE_LEGEND, bar, column_numbers, describe_sampling, fit, percent, shade

VIEWS = ("tokens", "next", "attention", "lens", "loss")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "xray",
        help="look inside the model: tokens, next-token distribution, attention, logit lens, per-token loss",
        description="Run a base or instruct checkpoint over TEXT and show what it does: the BPE tokens, "
        "the next-token distribution and how temperature, top-k and top-p cut it, the attention weights "
        "of a layer and head, the top guess after each block (logit lens) and each token's loss.",
        epilog='example: chatgpt-scratch xray --checkpoint checkpoints/gpt2.safetensors --view next '
        '--temperature 0.8 --top-k 40 "Every effort moves you"',
    )
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
    p.set_defaults(func=run)


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
    layer = ray.n_layers - 1 if args.layer is None else args.layer
    token = len(ray.ids) - 1 if args.token is None else args.token
    if not 0 <= token < len(ray.ids):
        raise ScratchError(f"--token must be 0..{len(ray.ids) - 1} for this text, got {token}")
    views = VIEWS if args.view == "all" else (args.view,)
    sections = []
    for view in views:
        if view == "tokens":
            sections.append(render_tokens(ray, text))
        elif view == "next":
            sections.append(render_next(ray, sampling, args.top))
        elif view == "attention":
            sections.append(render_attention(ray, layer, head, token))
        elif view == "lens":
            sections.append(render_lens(ray, token))
        else:
            sections.append(render_loss(ray))
    print("\n\n".join(sections))
    return 0


def parse_head(value: str) -> int | None:
    if value == "mean":
        return None
    try:
        return int(value)
    except ValueError:
        raise ScratchError(f"--head must be a head number (0-based) or 'mean', got {value!r}") from None


# ----------------------------------------------------------------------------------------------
# The views


def render_tokens(ray, text: str) -> str:
    from chatgpt_scratch.usecases.xray import tokens_of_ids

    view = tokens_of_ids(ray.ids, text)
    lines = [f"TOKENS  {view.n_tokens} tokens · {view.n_chars} characters · "
             f"{view.chars_per_token:.2f} characters per token",
             "│" + "│".join(p.label for p in view.pieces) + "│", "",
             "   #      id  token"]
    lines += [f"{p.index:4d}  {p.id:6d}  {p.label}" for p in view.pieces]
    return "\n".join(lines)


def render_next(ray, sampling, top: int) -> str:
    from chatgpt_scratch.usecases.xray import next_token_view, token_label

    view = next_token_view(ray, sampling, top=top)
    after = token_label(ray.ids[view.position])
    lines = [f"NEXT TOKEN  after token {view.position} {after!r} · {describe_sampling(sampling)}",
             "  step                 tokens kept   entropy"]
    lines += [f"  {s.name:<20} {s.survivors:11d}   {s.entropy_bits:6.2f} bits" for s in view.stages]
    lines += ["", f"   #  {'token':<14}{'id':>6}  {'model p':<31}  {'after sampling steps':<31}"]
    p_max = max(c.model_prob for c in view.candidates) or 1.0
    f_max = max(c.final_prob for c in view.candidates) or 1.0
    for c in view.candidates:
        final = (f"{bar(c.final_prob / f_max, 22)} {percent(c.final_prob)}" if c.survives
                 else f"{'cut by ' + c.cut_by:<22}       -")
        lines.append(f"  {c.rank:2d}  {fit(c.label, 14)}{c.id:6d}  {bar(c.model_prob / p_max, 22)} "
                     f"{percent(c.model_prob)}  {final}")
    lines.append(f"  pick top: {view.top.label!r} (id {view.top.id})")
    return "\n".join(lines)


def render_attention(ray, layer: int, head: int | None, token: int) -> str:
    from chatgpt_scratch.usecases.xray import attention_matrix, token_label, top_attended

    matrix = attention_matrix(ray, layer, head)  # (n, n)
    which = "mean of heads" if head is None else f"head {head}"
    lines = [f"ATTENTION  layer {layer} · {which}  (row = a token, columns = the tokens it attends to; "
             "blank = future, masked)", f"  weight: {SHADE_LEGEND}"]
    labels = [fit(token_label(t), 12) for t in ray.ids]
    shown = range(max(0, token + 1 - 40), token + 1)  # about 40 columns of two cells fit, ending at the token
    lines += [" " * 18 + header for header in column_numbers(shown)]
    for q in shown:
        cells = []
        for k in shown:
            if k > q:
                cells.append("  ")
            else:
                cells.append(shade(float(matrix[q, k])) * 2)
        marker = "▶" if q == token else " "
        lines.append(f"{marker}{q:3d} {labels[q]} {''.join(cells)}")
    lines.append(f"  token {token} {token_label(ray.ids[token])!r} attends most to:")
    lines += [f"    {a.index:3d} {fit(a.label, 14)} {bar(a.weight, 20)} {a.weight:.3f}"
              for a in top_attended(ray, layer, head, token, k=5)]
    return "\n".join(lines)


def render_lens(ray, token: int) -> str:
    from chatgpt_scratch.usecases.xray import logit_lens, token_label

    rows = logit_lens(ray, token)
    final = rows[-1]
    lines = [f"LOGIT LENS  at token {token} {token_label(ray.ids[token])!r}: the top next-token guess "
             "after each block (final norm + output head on the residual stream)",
             f"  {'stream':<12}{'top guess':<16}{'p':>8}   p of final guess {final.top_label!r}"]
    peak = max(r.final_prob for r in rows) or 1.0
    for r in rows:
        name = "embeddings" if r.layer == 0 else f"block {r.layer - 1}"
        lines.append(f"  {name:<12}{fit(r.top_label, 16)}{percent(r.top_prob)}   "
                     f"{bar(r.final_prob / peak, 16)} {percent(r.final_prob)}")
    return "\n".join(lines)


def render_loss(ray) -> str:
    from chatgpt_scratch.usecases.xray import loss_view

    view = loss_view(ray)
    worst = max((t.nats for t in view.tokens if t.nats is not None), default=1.0) or 1.0
    lines = ["LOSS  how surprised the model is by each token (cross-entropy of its prediction from the tokens before)",
             f"     #  {'token':<14}{'nats':>7}{'bits':>7}  {'p':>8}  surprise"]
    for t in view.tokens:
        if t.nats is None:
            lines.append(f"  {t.index:4d}  {fit(t.label, 14)}{'-':>7}{'-':>7}  {'-':>8}  (first token: nothing predicts it)")
        else:
            lines.append(f"  {t.index:4d}  {fit(t.label, 14)}{t.nats:7.2f}{t.bits:7.2f}  {percent(t.prob)}  "
                         f"{bar(t.nats / worst, 24)}")
    if view.perplexity is None:
        lines.append("  perplexity: needs at least two tokens")
    else:
        lines.append(f"  perplexity {view.perplexity:.2f}  (mean loss {view.mean_nats:.3f} nats = "
                     f"{view.mean_bits:.3f} bits per token over {len(view.tokens) - 1} predicted tokens)")
    return "\n".join(lines)
