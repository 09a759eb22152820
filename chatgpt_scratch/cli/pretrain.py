"""`chatgpt-scratch pretrain`: next-token training on your own text (book ch05), from scratch or from a checkpoint."""

from __future__ import annotations

import argparse

from chatgpt_scratch.cli.train_common import add_trainer_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain", help="pretrain a GPT on .txt files (from a preset, or continue a checkpoint)",
        description="Pretrain a GPT on plain text: next-token prediction over sliding windows (book ch05). "
        "Writes OUT.safetensors (last), OUT.best.safetensors (best val loss), OUT.loss.png, and "
        "runs/NAME-TIME/events.jsonl. Ctrl-C saves and stops; --resume RUN continues exactly. "
        "Multi-GPU: torchrun --nproc_per_node=N -m chatgpt_scratch pretrain ...")
    p.add_argument("--data", nargs="+", metavar="PATH",
                   help="text files, folders of .txt files, or a dataset name (the-verdict); "
                   "each file is one document, joined with <|endoftext|>")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--preset", metavar="NAME", help="start from fresh weights with this architecture "
                       "(test-tiny, cpu-mini, cpu-small, gpt2-small, ...)")
    start.add_argument("--init", metavar="CHECKPOINT", help="continue pretraining a base checkpoint")
    p.add_argument("--context", type=int, default=256, help="tokens per training window (<= the model's context; default: %(default)s)")
    p.add_argument("--stride", type=int, default=None, help="step between window starts (default: --context)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of the corpus held out for validation (default: %(default)s)")
    p.add_argument("--val-data", nargs="+", metavar="PATH", default=None,
                   help="validate on these files or folders instead of a share of --data (all of --data then trains)")
    p.add_argument("--val-split", choices=("chunks", "tail"), default="chunks",
                   help="chunks: seeded random chunks of 16 x context tokens; tail: the last part (as the book) (default: %(default)s)")
    p.add_argument("--split-seed", type=int, default=None, metavar="N",
                   help="seed of the chunks held out (default: --seed); keep it when a run continues an --init "
                   "model with a new --seed, so its val chunks stay text the model never trained on")
    p.add_argument("--drop-rate", type=float, default=None,
                   help="dropout (default: the preset's, or the checkpoint's with --init)")
    p.add_argument("--qkv-bias", choices=("on", "off"), default=None, help="bias in the q/k/v projections "
                   "(default: the preset's; the book's ch05 uses off)")
    p.add_argument("--untied", action="store_true", help="separate output head (the book's GPTModel) "
                   "instead of sharing the token embedding")
    p.add_argument("--vocab-multiple", type=int, default=None, metavar="N",
                   help="round the embedding and head rows up to a multiple of N (64: 50,257 -> 50,304, "
                   "friendlier to GPU matmul kernels); the extra rows are never predicted and export-hf drops them "
                   "(default: the preset's, 1)")
    p.add_argument("--init-style", choices=("gpt2", "book"), default="gpt2",
                   help="fresh weights: gpt2 = N(0, 0.02), residual projections scaled by 1/sqrt(2 x layers) "
                   "(GPT-2, nanoGPT); book = PyTorch's default nn.Linear/nn.Embedding init, as the book's GPTModel (default: %(default)s)")
    p.add_argument("--copy-fraction", type=float, default=0.0, metavar="F",
                   help="copy curriculum: this share of training windows repeat a span of their own text "
                   "(A B A), so a small model learns to copy from its context early; adds val_copy_loss "
                   "(default: %(default)s)")
    add_trainer_args(p, "pretrain")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from chatgpt_scratch.cli.train_common import prepare_resume, run_training, seed_everything

    args = prepare_resume(args)
    from chatgpt_scratch.errors import ScratchError

    if not args.data:
        raise ScratchError("pretrain needs --data PATH... (text files or folders)")
    if not args.preset and not args.init:
        raise ScratchError("pretrain needs --preset NAME (fresh weights) or --init CHECKPOINT (continue one)")
    seed_everything(args.seed)
    model, parent = _build_model(args)
    task = _build_task(args, model.cfg.context_length)
    metadata = {"parent": parent, "preset": args.preset}
    run_training(task, model, args, metadata=metadata)
    return 0


def _build_model(args: argparse.Namespace):
    from chatgpt_scratch.checkpoints import load_checkpoint
    from chatgpt_scratch.config import get_preset
    from chatgpt_scratch.errors import ScratchError
    from chatgpt_scratch.model import GPTModel

    if args.init:
        shaping = {"--qkv-bias": args.qkv_bias is not None, "--untied": args.untied,
                   "--vocab-multiple": args.vocab_multiple is not None, "--init-style": args.init_style != "gpt2"}
        if given := [flag for flag, used in shaping.items() if used]:
            raise ScratchError(f"{', '.join(given)} shape{'s' if len(given) == 1 else ''} a new model (--preset); "
                               f"--init {args.init} continues a checkpoint as it is: drop "
                               f"{'it' if len(given) == 1 else 'them'}")
        model, _ = load_checkpoint(args.init, kind="base")
        if args.drop_rate is not None:
            model.set_drop_rate(args.drop_rate)
        return model.float(), str(args.init)
    cfg = get_preset(args.preset)
    changes = {}
    if args.drop_rate is not None:
        changes["drop_rate"] = args.drop_rate
    if args.qkv_bias is not None:
        changes["qkv_bias"] = args.qkv_bias == "on"
    if args.untied:
        changes["tie_embeddings"] = False
    if args.vocab_multiple is not None:
        changes["vocab_multiple"] = args.vocab_multiple
    if args.context > cfg.context_length:
        changes["context_length"] = args.context
    elif args.context < cfg.context_length:
        changes["context_length"] = args.context  # as the book's ch05: a 124M model at context 256
    model = GPTModel(cfg.with_(**changes))
    if args.init_style == "book":
        from torch import nn

        for module in model.modules():  # the book builds its model from plain layers with their default init
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.reset_parameters()
    return model, None


def _build_task(args: argparse.Namespace, model_context: int):
    from chatgpt_scratch.data.corpus import load_corpus, split_runs
    from chatgpt_scratch.errors import ScratchError
    from chatgpt_scratch.training.lm_task import LMTask

    if args.context > model_context:
        raise ScratchError(f"--context {args.context} is longer than the model's context of {model_context}; "
                           "lower --context")
    corpus = load_corpus(args.data)
    if getattr(args, "val_data", None):
        # A held-out set of your own: appended after the training tokens, each side one run.
        import numpy as np

        held_out = load_corpus(args.val_data)
        shared = [str(f) for f, h in zip(held_out.files, held_out.sha256) if h in set(corpus.sha256)]
        if shared:
            raise ScratchError(f"--val-data {shared[0]} is also in --data: a validation set must be text "
                               "the model does not train on")
        ids = np.concatenate([corpus.ids, held_out.ids])
        train, val = [(0, corpus.n_tokens)], [(corpus.n_tokens, len(ids))]
        meta = {**corpus.metadata(), "val_datasets": held_out.metadata()["datasets"],
                "val_tokens": held_out.n_tokens}
    else:
        ids = corpus.ids
        split_seed = args.seed if getattr(args, "split_seed", None) is None else args.split_seed
        train, val = split_runs(corpus.n_tokens, args.val_fraction, split_seed, chunk_tokens=16 * args.context,
                                mode=args.val_split)
        meta = {**corpus.metadata(), "val_fraction": args.val_fraction, "val_split": args.val_split,
                "split_seed": split_seed}
    return LMTask(ids, train, val, context=args.context, stride=args.stride or args.context,
                  batch_size=args.batch_size, seed=args.seed, metadata=meta,
                  copy_fraction=getattr(args, "copy_fraction", 0.0))
