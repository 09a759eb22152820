"""Lower precision on trained weights: how much do bf16 and int8 change what an instruct model says?

The float32 model is the peer. On the test split of an instruction file (the book's 85/5/10 split),
for each precision:
- teacher-forced: the mean loss of the reference responses, and how often the top-1 next token
  equals float32's at every response position;
- free-running: greedy replies (up to --new-tokens) that are identical to float32's, and tokens/s.

--compiled adds the compiled decode step (compiled_decode.py, what `chat --compile` and the Chat screen's
Fast decode run) with float32, bf16 and int8 weights: its teacher-forced columns come from the eager model
with the weights the step multiplies by (compiled_decode.weights_as_multiplied: the same function), its
replies and tokens/s from generation with the compiled step (compiled before the timing starts).

    python benchmarks/quantize_fidelity.py --checkpoint checkpoints/instruct.best.safetensors \
        --data ../shared/datasets/instruction-data.json --limit 30
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
import torch.nn.functional as F

from chatgpt_scratch.chat import template_from_metadata
from chatgpt_scratch.data.instruct import encode_examples, load_instruction_data, split_examples
from chatgpt_scratch.generation import SamplingConfig, generate
from chatgpt_scratch.usecases.inference import fast_cpu_linears, load_for_inference, quantize_int8, quantize_weights
from chatgpt_scratch.tokenizer import ENDOFTEXT_ID


def teacher_forced(model, examples) -> tuple[float, list[torch.Tensor]]:
    """Mean loss over response tokens (+ the end token), and the top-1 prediction at each of them."""
    total, count, top1 = 0.0, 0, []
    with torch.inference_mode():
        for e in examples:
            ids = torch.tensor([e.ids + [ENDOFTEXT_ID]])
            logits = model(ids[:, :-1])[0, e.prompt_length - 1:].float()  # predictions of the response tokens
            targets = ids[0, e.prompt_length:]
            total += F.cross_entropy(logits, targets, reduction="sum").item()
            count += len(targets)
            top1.append(logits.argmax(-1))
    return total / count, top1


def free_running(model, examples, n_new: int) -> tuple[list[list[int]], float]:
    sampling = SamplingConfig(max_new_tokens=n_new)  # greedy
    replies, n_tokens, start = [], 0, time.perf_counter()
    for e in examples:
        replies.append(list(generate(model, e.ids[:e.prompt_length], sampling)))
        n_tokens += len(replies[-1])
    return replies, n_tokens / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="an instruct checkpoint (or a lora-adapter of one)")
    p.add_argument("--data", required=True, help="the instruction file it was trained on")
    p.add_argument("--limit", type=int, default=30, help="test entries to use (default: %(default)s)")
    p.add_argument("--new-tokens", type=int, default=64, help="greedy reply length limit (default: %(default)s)")
    p.add_argument("--weight-only", action="append", default=[], choices=("int8", "int8-bf16", "int4", "int4-bf16"),
                   help="also a weight-only row (repeatable): int8 per row or int4 in groups, float32 or bf16 activations")
    p.add_argument("--compiled", action="store_true",
                   help="also the compiled decode step's rows (float32, bf16 and int8 weights)")
    p.add_argument("--group-size", type=int, default=32, help="int4 group size (default: %(default)s)")
    p.add_argument("--out", default=None, help="also write the table (Markdown) to this file")
    args = p.parse_args()

    fp32, meta = load_for_inference(args.checkpoint, dtype=torch.float32, kind="instruct")
    template = template_from_metadata(meta, args.checkpoint)
    test = split_examples(load_instruction_data(args.data)).test[:args.limit]
    examples = encode_examples(test, template)
    # As chat runs them: float32 and bf16 with each Linear in the faster CPU layout (the same numbers).
    models = {"float32": fast_cpu_linears(load_for_inference(args.checkpoint, dtype=torch.float32)[0]),
              "bfloat16": fast_cpu_linears(load_for_inference(args.checkpoint, dtype=torch.bfloat16)[0]),
              "int8 (dynamic, linears)": quantize_int8(load_for_inference(args.checkpoint)[0])}
    for spec in args.weight_only:  # e.g. int8-bf16, int4-bf16: weight-only kernels (chatgpt_scratch/quantize.py)
        bits, _, activations = spec.partition("-")
        grouping = f"groups of {args.group_size}" if bits == "int4" else "per row"
        models[f"{bits} weight-only ({grouping}), {activations or 'float32'} act."] = \
            quantize_weights(fp32, bits=int(bits.removeprefix("int")), group_size=args.group_size,
                             dtype=torch.bfloat16 if activations == "bf16" else torch.float32)

    scored = {}  # name -> the eager model that computes what a compiled row's step computes
    if args.compiled:
        from chatgpt_scratch.compiled_decode import attach_decoder, weights_as_multiplied

        for weights in ("float32", "bfloat16", "int8"):
            name = f"{weights} weights, compiled decode step"
            models[name] = load_for_inference(args.checkpoint, dtype=torch.float32)[0]
            attach_decoder(models[name], weights, warm_up=True)
            scored[name] = weights_as_multiplied(models[name], weights)

    results = {}
    for name, model in models.items():
        loss, top1 = teacher_forced(scored.get(name, model), examples)
        replies, speed = free_running(model, examples, args.new_tokens)
        results[name] = (loss, top1, replies, speed)
        print(f"  {name}: loss {loss:.4f}, {speed:.1f} tokens/s", flush=True)

    ref_loss, ref_top1, ref_replies, ref_speed = results["float32"]
    n_positions = sum(len(t) for t in ref_top1)
    load = os.getloadavg()
    lines = [f"{args.checkpoint}: {len(examples)} test entries of {args.data}, {n_positions} response tokens, "
             f"greedy replies up to {args.new_tokens} tokens. "
             f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
             f"{torch.__version__}, load average {load[0]:.2f}.", "",
             "| precision | reference loss | top-1 = float32 | replies = float32 | tokens/s | vs float32 |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, (loss, top1, replies, speed) in results.items():
        same_top1 = sum(int((a == b).sum()) for a, b in zip(top1, ref_top1))
        same_replies = sum(a == b for a, b in zip(replies, ref_replies))
        lines.append(f"| {name} | {loss:.4f} | {100 * same_top1 / n_positions:.2f}% | {same_replies}/{len(replies)} | "
                     f"{speed:.1f} | {speed / ref_speed:.2f}x |")
    print("\n" + "\n".join(lines))
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
