"""`chatgpt-scratch import-gpt2 SIZE | --from FILE` and `chatgpt-scratch export-hf CHECKPOINT OUT_DIR`."""

from __future__ import annotations

import argparse
from pathlib import Path

from chatgpt_scratch.cli.common import add_command


def register(subparsers) -> None:
    p = add_command(subparsers, "import-gpt2", run_import,
                    help="turn OpenAI's GPT-2 weights (Hugging Face layout) into a checkpoint",
                    description="Download GPT-2 from huggingface.co (progress bar, resumable, size and sha256 "
                    "checked) or read a local Hugging Face model.safetensors, and save it as a 'base' checkpoint.",
                    examples=["chatgpt-scratch import-gpt2 gpt2",
                              "chatgpt-scratch import-gpt2 gpt2-medium --out checkpoints/medium.safetensors",
                              "chatgpt-scratch import-gpt2 --from ~/Downloads/gpt2/model.safetensors"])
    p.add_argument("size", nargs="?", metavar="SIZE",
                   help="gpt2 (124M), gpt2-medium (355M), gpt2-large (774M) or gpt2-xl (1558M); downloaded once "
                   "into checkpoints/downloads/")
    p.add_argument("--from", dest="from_file", metavar="FILE",
                   help="a local model.safetensors in the Hugging Face layout (a config.json beside it is read if present)")
    p.add_argument("--out", metavar="PATH",
                   help="where to save the checkpoint (default: checkpoints/gpt2-small.safetensors etc.)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")

    e = add_command(subparsers, "export-hf", run_export,
                    help="write a checkpoint in the Hugging Face GPT-2 layout (for transformers and other tools)",
                    description="Write OUT_DIR/model.safetensors, config.json and the GPT-2 tokenizer files, loadable "
                    "with transformers.GPT2LMHeadModel.from_pretrained(OUT_DIR). Base and instruct checkpoints only.",
                    examples="chatgpt-scratch export-hf checkpoints/instruct.safetensors exported/instruct")
    e.add_argument("checkpoint", metavar="CHECKPOINT", help="a base or instruct .safetensors checkpoint")
    e.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (created if needed)")


def run_import(args: argparse.Namespace) -> int:
    from chatgpt_scratch.checkpoints import save_checkpoint
    from chatgpt_scratch.errors import ScratchError
    from chatgpt_scratch.storage.gpt2_weights import import_gpt2_with_provenance, size_name
    from chatgpt_scratch.model import format_params
    from chatgpt_scratch.storage.paths import checkpoints_dir

    if (args.size is None) == (args.from_file is None):
        raise ScratchError("give either a GPT-2 SIZE (e.g. gpt2) or --from FILE, not both and not neither")
    out = Path(args.out) if args.out else None
    if args.size is not None:  # fail on a typo or an existing file before anything is downloaded
        out = out or checkpoints_dir() / f"{size_name(args.size)}.safetensors"
    if out is not None and out.exists() and not args.force:
        raise ScratchError(f"{out} already exists; choose another --out or add --force to overwrite it")
    imported = import_gpt2_with_provenance(Path(args.from_file) if args.from_file else args.size)
    if out is None:
        stem = imported.provenance.get("gpt2_size") or f"{Path(args.from_file).resolve().parent.name}-imported"
        out = checkpoints_dir() / f"{stem}.safetensors"
        if out.exists() and not args.force:
            raise ScratchError(f"{out} already exists; choose another --out or add --force to overwrite it")
    save_checkpoint(out, imported.model, kind="base", **imported.provenance)
    print(f"saved {imported.provenance.get('gpt2_size', 'GPT-2')} ({format_params(imported.model.num_parameters())} "
          f"parameters) to {out}")
    if args.size is not None:
        from chatgpt_scratch.storage.gpt2_weights import HF_NAMES, downloads_dir

        kept = downloads_dir() / HF_NAMES[size_name(args.size)]
        print(f"the downloaded original stays in {kept} (re-importing skips the download; delete it to free the space)")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from chatgpt_scratch.storage.gpt2_weights import export_checkpoint_hf

    out = export_checkpoint_hf(args.checkpoint, args.out_dir)
    print(f"wrote {out}/model.safetensors and config.json; load it with "
          f"transformers.GPT2LMHeadModel.from_pretrained({str(out)!r})")
    return 0
