"""`chatgpt-scratch lora merge ADAPTER --out PATH`: fold a LoRA adapter into its base model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "lora",
        help="work with LoRA adapters (merge one into its base model)",
        description="LoRA adapters (`lora-adapter` checkpoints, e.g. NAME.lora.safetensors from "
        "finetune-instruct --lora-rank) hold only the low-rank weights and name their base model "
        "(path + sha256).",
    )
    sub = p.add_subparsers(dest="lora_command", metavar="ACTION", required=True)
    m = sub.add_parser(
        "merge",
        help="write base + adapter as one ordinary checkpoint",
        description="Load the adapter's base model (checked by sha256), fold every adapter into its layer "
        "(W + alpha/r * A B) and save a plain checkpoint of the adapter's model kind (e.g. instruct, with its "
        "template), usable anywhere a full model is.",
        epilog="example:\n  chatgpt-scratch lora merge checkpoints/instruct-lora.lora.safetensors "
        "--out checkpoints/instruct-merged",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m.add_argument("adapter", metavar="ADAPTER", help="a lora-adapter checkpoint")
    m.add_argument("--out", required=True, metavar="PATH", help="where to write the merged model (.safetensors added)")
    m.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    m.set_defaults(func=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    from chatgpt_scratch.checkpoints import KINDS, save_checkpoint
    from chatgpt_scratch.errors import ScratchError
    from chatgpt_scratch.lora import load_lora_adapter

    out = Path(args.out)
    if out.suffix != ".safetensors":
        out = out.with_name(out.name + ".safetensors")
    if out.exists() and not args.force:
        raise ScratchError(f"{out} already exists; choose another --out or add --force")
    model, meta = load_lora_adapter(args.adapter, merge=True)
    kind = meta.get("model_kind") if meta.get("model_kind") in KINDS else "base"
    skip = {"format", "kind", "config", "tokenizer", "created", "base", "base_sha256", "lora_layers", "model_kind"}
    extra = {k: v for k, v in meta.items() if k not in skip}
    save_checkpoint(out, model, kind, merged_from=str(Path(args.adapter).resolve()), **{
        **extra, "parent": meta.get("base")})
    print(f"merged {args.adapter} into its base {meta.get('base')}: {out} ({kind})", file=sys.stderr)
    return 0
