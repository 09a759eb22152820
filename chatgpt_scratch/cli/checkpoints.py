"""`chatgpt-scratch checkpoints list [FOLDER]` and `checkpoints info PATH`: what is in the files, from headers only."""

from __future__ import annotations

import argparse
import json
import sys

from chatgpt_scratch.cli.common import add_command, add_new_file_args


def register(subparsers) -> None:
    p = add_command(subparsers, "checkpoints",
                    help="list checkpoints and show what is inside one (reads headers only: fast)",
                    description="Inspect .safetensors checkpoints without loading their weights.")
    sub = p.add_subparsers(dest="checkpoints_command", metavar="ACTION", required=True)

    ls = add_command(sub, "list", run_list, help="a table of the checkpoints in a folder",
                     description="One row per .safetensors file in FOLDER: name, kind, architecture, parameters, "
                     "file size, created, parent, best validation metric. Broken files are listed as such.",
                     examples="chatgpt-scratch checkpoints list --json | jq '.[].name'")
    ls.add_argument("folder", nargs="?", default=None, metavar="FOLDER",
                    help="folder to list (default: ./checkpoints or $CHATGPT_SCRATCH_CHECKPOINTS, then the built-in models)")
    ls.add_argument("--json", action="store_true", help="print a JSON list instead of a table")

    info = add_command(sub, "info", run_info, help="everything a checkpoint's header says",
                       description="Print a checkpoint's kind, architecture, parameter count and its full metadata "
                       "(provenance: parent, dataset, steps, validation metrics, labels, template, ...).",
                       examples="chatgpt-scratch checkpoints info checkpoints/gpt2-small.safetensors")
    info.add_argument("path", metavar="PATH", help="a .safetensors checkpoint")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")

    avg = add_command(sub, "average", run_average, help="write the average of the weights of 2+ models (a model soup)",
                      description="Average the weights of two or more models of one architecture and kind, "
                      "element by element, into a new checkpoint (a \"model soup\"). Fine-tunes of one starting "
                      "point, e.g. the same finetune-instruct run with other --seed values, often answer better "
                      "averaged than each does alone; check the result with evaluate-instruct (or classify). The "
                      "header keeps what the files agree on; what differs (seeds, each file's val metrics) is listed "
                      "per file under averaged_from.",
                      examples=["chatgpt-scratch checkpoints average runs/a.best.safetensors "
                                "runs/b.best.safetensors --out checkpoints/soup"])
    avg.add_argument("paths", nargs="+", metavar="CHECKPOINT", help="two or more model checkpoints")
    add_new_file_args(avg, "the average")


def _human_bytes(n: int) -> str:
    for unit in ("GB", "MB", "KB"):
        size = {"GB": 1 << 30, "MB": 1 << 20, "KB": 1 << 10}[unit]
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _metric(info) -> str:
    if info.metric_name is None:
        return "-"
    name = info.metric_name.removeprefix("val_")
    return f"{name} {info.metric_value:.4f}" if name == "loss" else f"{name} {info.metric_value:.2%}"


def run_list(args: argparse.Namespace) -> int:
    from chatgpt_scratch.system.terminal_text import printable
    from chatgpt_scratch.checkpoints import list_checkpoints
    from chatgpt_scratch.usecases.inference import kind_label
    from chatgpt_scratch.model import format_params
    from chatgpt_scratch.storage.paths import checkpoints_dir

    folder = args.folder or checkpoints_dir()
    infos = list_checkpoints(args.folder)  # no FOLDER: yours, then the built-in models
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2, default=str))
        return 0
    if not infos:
        print(f"no checkpoints in {folder} (get GPT-2 with `chatgpt-scratch import-gpt2 gpt2`, or train one)")
        return 0
    rows = [("NAME", "KIND", "ARCH", "PARAMS", "FILE", "CREATED", "PARENT", "BEST VAL")]
    for i in infos:
        if not i.ok:
            rows.append((printable(i.name), "BROKEN", "-", "-", _human_bytes(i.file_size), "-", "-", "-"))
            continue
        arch = i.preset or f"{i.config.n_layers}x{i.config.emb_dim}"
        if i.config.n_classes:
            arch += f" +{i.config.n_classes}-class head"
        created = (i.created or "-").replace("T", " ")[:16]
        parent = (i.parent or "-").rsplit("/", 1)[-1].removesuffix(".safetensors")
        name = f"{i.name} (built-in)" if i.builtin else i.name
        # Names and header text may hold anything (a hand-edited header, an odd file name): escaped.
        rows.append(tuple(printable(c) for c in (name, kind_label(i.metadata), arch, format_params(i.n_params),
                                                 _human_bytes(i.file_size), created, parent, _metric(i))))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    for i in infos:
        if not i.ok:
            print(printable(f"broken: {i.name}: {i.error}"))
    return 0


def run_info(args: argparse.Namespace) -> int:
    from chatgpt_scratch.checkpoints import a_kind, checkpoint_info
    from chatgpt_scratch.errors import ScratchError
    from chatgpt_scratch.storage.checkpoint_format import ensemble_size
    from chatgpt_scratch.usecases.inference import adapted_kind
    from chatgpt_scratch.model import format_params
    from chatgpt_scratch.system.terminal_text import printable

    info = checkpoint_info(args.path)
    if not info.ok:
        raise ScratchError(info.error)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2, default=str))
        return 0
    cfg = info.config
    print(printable(info.path))
    members = ensemble_size(info.metadata)
    print(printable(f"  kind         {info.kind}" + (f" of {info.metadata.get('base')} (merged, it makes "
                                                        f"{a_kind(adapted_kind(info.metadata))} model)"
                                                        if info.kind == "lora-adapter" else "")
                    + (f"; an ensemble of {members} adapters whose probabilities are averaged" if members else "")))
    print(f"  architecture {info.preset or 'custom'}: {cfg.n_layers} layers, width {cfg.emb_dim}, {cfg.n_heads} heads, "
          f"context {cfg.context_length}, vocab {cfg.vocab_size}"
          + (f" (padded to {cfg.padded_vocab_size} rows)" if cfg.padded_vocab_size != cfg.vocab_size else "")
          + (", tied embeddings" if cfg.tie_embeddings else "")
          + (f", {cfg.n_classes}-class head" if cfg.n_classes else ""))
    print(f"  parameters   {format_params(info.n_params)} ({info.n_params:,}), stored as {info.dtype}")
    print(f"  file size    {_human_bytes(info.file_size)}")
    if info.metric_name:
        print(f"  best val     {_metric(info)}")
    print("  metadata:")
    for key in sorted(info.metadata):
        if key == "config":
            continue
        value = info.metadata[key]
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        if len(text) > 200:
            text = text[:200] + f"... ({len(text)} chars)"
        print(f"    {printable(key)}: {printable(text)}")
    return 0


def run_average(args: argparse.Namespace) -> int:
    from chatgpt_scratch.checkpoints import average_checkpoints

    out = average_checkpoints(args.paths, args.out, overwrite=args.force)
    print(f"wrote {out}: the average of {len(args.paths)} models", file=sys.stderr)
    return 0
