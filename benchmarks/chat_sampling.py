"""Which sampling settings make an instruct model answer best? ROUGE-L of its answers on held-out entries.

Greedy decoding (what the model card and `evaluate-instruct` score) is the peer. Each other setting is a
"T k p r" string (temperature, top-k, top-p, repetition penalty; "-" = off), run with several seeds, so the
table shows how much one draw varies. The Chat screen starts from the setting this picks on the val split
(tui/widgets/chat_sidebar.py, CHAT_SAMPLING); the test split checks it.

    python benchmarks/chat_sampling.py --checkpoint checkpoints/default-instruct.safetensors --split val
    python benchmarks/chat_sampling.py --split test --settings "0.7 40 0.95 1.1" "0.3 40 0.95 1.1"
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics

import torch

from chatgpt_scratch.chat import template_from_metadata
from chatgpt_scratch.data.instruct import load_instruction_data, split_examples
from chatgpt_scratch.generation import SamplingConfig
from chatgpt_scratch.usecases.evaluate_instruct import generate_responses, rouge_l
from chatgpt_scratch.usecases.inference import load_for_inference

DEFAULT_SETTINGS = ("0.7 40 0.95 1.1", "0.5 40 0.95 1.1", "0.3 40 0.95 1.1", "0.3 40 0.95 -", "0 - - 1.1")


def parse_setting(text: str) -> dict:
    """'0.3 40 0.95 1.1' -> SamplingConfig keyword arguments ('-' leaves that one off)."""
    parts = text.split()
    if len(parts) != 4:
        raise SystemExit(f"error: a setting is 'TEMPERATURE TOP_K TOP_P REPETITION_PENALTY' ('-' = off), got {text!r}")
    t, k, p, r = (None if x == "-" else x for x in parts)
    return {"temperature": float(t or 0), "top_k": int(k) if k else None, "top_p": float(p) if p else None,
            "repetition_penalty": float(r or 1.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="checkpoints/default-instruct.safetensors")
    parser.add_argument("--data", default="datasets/instruction-data.json", help="the book's instruction data")
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), metavar="'T K P R'")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--max-new-tokens", type=int, default=200, help="as the Chat screen (default: 200)")
    args = parser.parse_args()

    settings = {s: parse_setting(s) for s in args.settings}
    model, metadata = load_for_inference(args.checkpoint, device="cpu", kind=("instruct",))
    model = model.float().eval()
    template = template_from_metadata(metadata, args.checkpoint)
    examples = getattr(split_examples(load_instruction_data(args.data)), args.split)  # the book's 85/5/10
    references = [e.output for e in examples]

    def score(**kw) -> float:
        sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, **kw)
        return statistics.mean(rouge_l(references, generate_responses(model, examples, template, sampling=sampling)))

    greedy = score(temperature=0.0)
    print(f"{args.checkpoint}: {len(examples)} {args.split} entries of {args.data}, float32, up to "
          f"{args.max_new_tokens} new tokens, seeds {' '.join(map(str, args.seeds))}. CPU: {platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}.\n")
    print("| temperature | top-k | top-p | repetition penalty | ROUGE-L per seed | mean | vs greedy |")
    print("|---:|---:|---:|---:|---|---:|---:|")
    print(f"| 0 (greedy) | – | – | 1.0 | {greedy:.3f} | **{greedy:.3f}** | 0.000 |")
    for kw in settings.values():
        seeds = args.seeds if kw["temperature"] > 0 else [None]
        per = [score(**kw, seed=s) for s in seeds]
        mean = statistics.mean(per)
        print(f"| {kw['temperature']:g} | {kw['top_k'] or '–'} | {kw['top_p'] or '–'} | {kw['repetition_penalty']:g} | "
              f"{' '.join(f'{x:.3f}' for x in per)} | **{mean:.3f}** | {mean - greedy:+.3f} |", flush=True)


if __name__ == "__main__":
    main()
