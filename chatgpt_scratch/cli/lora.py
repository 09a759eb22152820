"""`chatgpt-scratch lora merge ADAPTER --out PATH`: fold a LoRA adapter into its base model."""

from __future__ import annotations

import argparse
import sys

from chatgpt_scratch.cli.common import add_command


def register(subparsers) -> None:
    p = add_command(subparsers, "lora", help="work with LoRA adapters (merge one into its base model)",
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
    m.add_argument("--out", required=True, metavar="PATH", help="where to write the merged model (.safetensors added)")
    m.add_argument("--force", action="store_true", help="overwrite PATH if it exists")


def run_merge(args: argparse.Namespace) -> int:
    from chatgpt_scratch.lora import merge_adapter_file

    out, kind = merge_adapter_file(args.adapter, args.out, overwrite=args.force)
    print(f"merged {args.adapter} into its base: {out} ({kind})", file=sys.stderr)
    return 0
