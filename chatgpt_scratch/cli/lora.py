"""`chatgpt-scratch lora merge ADAPTER --out PATH`: fold a LoRA adapter into its base model;
`chatgpt-scratch lora ensemble A B ... --out PATH`: classifier adapters whose probabilities are averaged."""

from __future__ import annotations

import argparse
import sys

from chatgpt_scratch.cli.common import add_command, add_new_file_args


def register(subparsers) -> None:
    p = add_command(subparsers, "lora", help="work with LoRA adapters (merge one into its base model, or join classifiers into an ensemble)",
                    description="LoRA adapters (`lora-adapter` checkpoints, e.g. NAME.lora.safetensors from "
                    "finetune-instruct --lora-rank) hold only the low-rank weights and name their base model "
                    "(path + sha256).")
    sub = p.add_subparsers(dest="lora_command", metavar="ACTION", required=True)
    m = add_command(sub, "merge", run_merge, help="write base + adapter as one ordinary checkpoint",
                    description="Load the adapter's base model (checked by sha256), fold every adapter into its layer "
                    "(W + alpha/r * A B) and save a plain checkpoint of the adapter's model kind (e.g. instruct, with "
                    "its template), usable anywhere a full model is.",
                    examples=["chatgpt-scratch lora merge checkpoints/instruct-lora.lora.safetensors "
                              "--out checkpoints/instruct-merged"])
    m.add_argument("adapter", metavar="ADAPTER", help="a lora-adapter checkpoint")
    add_new_file_args(m, "the merged model")
    e = add_command(sub, "ensemble", run_ensemble, help="join classifier adapters into one file that averages them",
                    description="Write several classifier adapters of the same base model (e.g. finetune-spam "
                    "--lora-rank with other --seed values and the same --split-seed) into one adapter file. It "
                    "classifies by averaging the members' class probabilities: models trained apart err on "
                    "different messages, so the average errs less than each. It loads wherever a classifier does "
                    "(classify, the Spam screen) and costs one forward pass per member.",
                    examples=["chatgpt-scratch lora ensemble spam-a.lora.safetensors spam-b.lora.safetensors "
                              "spam-c.lora.safetensors --out checkpoints/spam-ensemble"])
    e.add_argument("adapters", nargs="+", metavar="ADAPTER", help="two or more classifier lora-adapter checkpoints")
    add_new_file_args(e, "the ensemble")
    e.add_argument("--rank", type=int, default=None, metavar="R",
                   help="store each member's updates at rank R at most (their best rank-R approximation, by SVD): "
                   "a smaller file that classifies almost as the full members do; check it with classify")


def run_merge(args: argparse.Namespace) -> int:
    from chatgpt_scratch.lora import merge_adapter_file

    out, kind = merge_adapter_file(args.adapter, args.out, overwrite=args.force)
    print(f"merged {args.adapter} into its base: {out} ({kind})", file=sys.stderr)
    return 0


def run_ensemble(args: argparse.Namespace) -> int:
    from chatgpt_scratch.lora import save_adapter_ensemble

    out = save_adapter_ensemble(args.out, args.adapters, rank=args.rank, overwrite=args.force)
    print(f"wrote {out}: an ensemble of {len(args.adapters)} classifier adapters (their probabilities averaged)",
          file=sys.stderr)
    return 0
