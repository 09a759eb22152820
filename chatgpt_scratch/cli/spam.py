"""`chatgpt-scratch finetune-spam` (turn a GPT into a ham/spam classifier) and `chatgpt-scratch classify`."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from chatgpt_scratch.cli.common import add_checkpoint_arg, add_command, add_device_arg, args_device

_BALANCE = ("none", "undersample", "weight")
_POOL = ("last-token", "mean")


def register(subparsers) -> None:
    _register_finetune(subparsers)
    _register_classify(subparsers)


# --- finetune-spam ----------------------------------------------------------------------------------


def _register_finetune(subparsers) -> None:
    from chatgpt_scratch.cli.train_common import add_trainer_args

    p = add_command(subparsers, "finetune-spam", run_finetune)
    p.add_argument("--data", default="sms-spam", metavar="PATH|NAME",
                   help="a UCI/CSV/JSONL file, or `sms-spam` (the UCI SMS Spam Collection, downloaded with its "
                   "hash checked if it is not in the datasets folder) (default: sms-spam)")
    start = p.add_mutually_exclusive_group()  # one is required, except with --resume
    start.add_argument("--init", metavar="CHECKPOINT", help="start from this checkpoint (a pretrained base model)")
    start.add_argument("--preset", metavar="NAME", help="start from random weights of this architecture "
                       "(e.g. test-tiny, cpu-mini, gpt2-small): a baseline with no pretraining")
    p.add_argument("--balance", choices=_BALANCE, default="none",
                   help="none: keep the natural ~13%% spam; undersample: drop ham down to the spam count before "
                   "splitting (the book's balanced set); weight: keep all data, weight the loss by inverse class "
                   "frequency (default: none)")
    p.add_argument("--train-layers", default="last-1", metavar="head|last-N|all",
                   help="what trains: the head only, the last N blocks + final norm + head, or everything "
                   "(default: last-1, as in the book)")
    p.add_argument("--lora-rank", type=int, default=None, metavar="R",
                   help="train low-rank adapters of rank R on every block's linear layers (plus the head) "
                   "instead of --train-layers; the saved classifier has them merged in, and with --init the "
                   "adapter alone is saved too (OUT.lora.safetensors, usable with classify)")
    p.add_argument("--lora-alpha", type=float, default=None, metavar="A",
                   help="LoRA scaling numerator: updates are scaled by A/R (default: A = R)")
    p.add_argument("--lora-targets", default="qkv,out_proj,ff", metavar="LIST",
                   help="with --lora-rank: the adapted layers, a comma list of qkv, out_proj, ff, emb (emb: a low-rank "
                   "change of the token embedding's rows) (default: qkv,out_proj,ff)")
    p.add_argument("--lora-norms", action="store_true",
                   help="with --lora-rank: also train the LayerNorms and the position embedding (a few KB)")
    p.add_argument("--pool", choices=_POOL, default="last-token",
                   help="which hidden state classifies: the last real (non-padding) token, or the mean over "
                   "real tokens (default: last-token)")
    p.add_argument("--max-length", type=int, default=None, metavar="N",
                   help="keep the first N tokens of each message (default: the model's context length)")
    p.add_argument("--group-by-length", action="store_true",
                   help="batch messages of similar length together (less padding, but batches then tend "
                   "to be all ham or all spam); default: plain random batches")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="use a stratified subset of N messages (quick trials)")
    p.add_argument("--split-seed", type=int, default=None, metavar="N",
                   help="seed of the stratified 70/10/20 split (default: --seed); keep it fixed to compare "
                   "training seeds on the same val and test messages")
    # The book's ch06 settings: batch 8, 5 epochs at lr 5e-5, weight decay 0.1; evals on the whole
    # validation split (eval_batches None), so val accuracy is exact and comparable between evals.
    add_trainer_args(p, "finetune-spam")


def _build_model(args: argparse.Namespace):
    import torch

    from chatgpt_scratch.checkpoints import load_checkpoint
    from chatgpt_scratch.config import get_preset
    from chatgpt_scratch.data.spam import LABELS
    from chatgpt_scratch.errors import ScratchError
    from chatgpt_scratch.model import GPTModel, to_classifier

    if args.init:
        model, meta = load_checkpoint(args.init, dtype=torch.float32, kind=("base", "instruct", "classifier"))
        if meta.get("kind") == "classifier" and meta.get("labels") != list(LABELS):
            raise ScratchError(f"{args.init} classifies {meta.get('labels')}, not {list(LABELS)}; "
                               "start from a base model instead")
        parent = str(args.init)
    else:
        model, parent = GPTModel(get_preset(args.preset)), None
    if model.cfg.n_classes is None:
        to_classifier(model, len(LABELS))
    return model, parent


def run_finetune(args: argparse.Namespace) -> int:
    """fine-tune a GPT into a ham/spam classifier (book ch06)

    Swap the model's vocabulary head for a 2-class head and train it on SMS messages (UCI `label<TAB>text` file,
    or CSV/JSONL with text,label columns). The data is split stratified 70/10/20 with --split-seed (default:
    --seed); val loss and accuracy are logged at every eval, the best checkpoint by val accuracy is kept, and
    at the end accuracy, spam precision/recall/F1 and the confusion matrix on the test split are printed and
    stored in the checkpoint's metadata.

    examples:
      chatgpt-scratch finetune-spam --data sms-spam --init checkpoints/gpt2-small.safetensors --out checkpoints/spam
      chatgpt-scratch finetune-spam --data SMSSpamCollection --init checkpoints/base.safetensors --train-layers all --epochs 3 --out checkpoints/spam-all
      chatgpt-scratch finetune-spam --data my.csv --init base.safetensors --lora-rank 16 --out checkpoints/spam-lora
    """
    from chatgpt_scratch.classify import SpamClassifier
    from chatgpt_scratch.cli.train_common import prepare_resume, run_training, seed_everything
    from chatgpt_scratch.data.registry import resolve_dataset
    from chatgpt_scratch.errors import ScratchError
    from chatgpt_scratch.model import format_params
    from chatgpt_scratch.training.spam_task import SpamTask, prepare_spam_data, set_trainable

    args = prepare_resume(args)  # --resume RUN: that run's own flags
    if not args.init and not args.preset:
        raise ScratchError("finetune-spam needs --init CHECKPOINT (a pretrained base) or --preset NAME")
    seed_everything(args.seed)  # the fresh head's initial weights
    if args.lora_rank is not None and args.lora_rank < 1:
        raise ScratchError(f"--lora-rank must be at least 1, got {args.lora_rank}")
    data_path = resolve_dataset(args.data)
    model, parent = _build_model(args)
    context = model.cfg.context_length
    max_length = args.max_length or context
    if max_length > context:
        raise ScratchError(f"--max-length {max_length} is longer than the model's context ({context}); "
                           f"use at most {context}")
    from chatgpt_scratch.storage.fileio import describe_non_utf8, non_utf8_lines

    try:
        bad = non_utf8_lines(Path(data_path).read_bytes()) if Path(data_path).is_file() else []
    except OSError:
        bad = []  # load_messages says what is wrong with the file
    if bad:
        print(describe_non_utf8(bad, str(data_path)), file=sys.stderr)
    split_seed = args.seed if getattr(args, "split_seed", None) is None else args.split_seed
    data = prepare_spam_data(data_path, max_length, args.balance, split_seed, limit=args.limit)
    from chatgpt_scratch.lora import parse_targets

    # The head is the classifier's own, trained in full: not an adapter target here.
    targets = parse_targets(args.lora_targets, groups=("qkv", "out_proj", "ff", "emb"))
    trainable = set_trainable(model, args.train_layers, args.lora_rank, args.lora_alpha, targets, args.lora_norms)
    n_trainable = sum(p.numel() for n, p in model.named_parameters() if n in set(trainable))
    what = f"LoRA rank {args.lora_rank} + head" if args.lora_rank else args.train_layers
    sizes = data.info["split_sizes"]
    print(f"data: {data_path} -> train {sizes['train']}, val {sizes['val']}, test {sizes['test']} messages "
          f"(balance {args.balance}); training {what}: {format_params(n_trainable)} of "
          f"{format_params(model.num_parameters())} parameters", file=sys.stderr)
    task = SpamTask(data, batch_size=args.batch_size, seed=args.seed, pool=args.pool,
                    weighted=args.balance == "weight", group_by_length=getattr(args, "group_by_length", False),
                    extra_metadata={"train_layers": None if args.lora_rank else args.train_layers},
                    lora_base=args.init if args.lora_rank else None)
    result = run_training(task, model, args, metadata={"parent": parent})
    if result.status != "done" or result.checkpoint is None:
        return 0  # stopped (run_training said how to resume), or a DDP rank other than 0
    # Test metrics of the best checkpoint by val accuracy (the one to use), printed and written into
    # its header. The test split is looked at once, for the model that was chosen without it.
    from chatgpt_scratch.checkpoints import update_metadata

    best = result.best_checkpoint or result.checkpoint
    metrics = task.test_metrics(SpamClassifier.load(best, device=args_device(args)).model)
    update_metadata(best, test_metrics=metrics.to_dict(), test_acc=metrics.accuracy)
    print(f"test split, {best}:\n{metrics.format()}")
    return 0


# --- classify -----------------------------------------------------------------------------------------


def _register_classify(subparsers) -> None:
    p = add_command(subparsers, "classify", run_classify)
    add_checkpoint_arg(p, "classify")
    p.add_argument("texts", nargs="+", metavar="TEXT|-|FILE", help="messages, or - for stdin, or a file")
    p.add_argument("--json", action="store_true", help="print one JSON object per message")
    p.add_argument("--batch-size", type=int, default=32, help="messages per forward pass (default: 32)")
    add_device_arg(p)
    p.set_defaults(device="cpu")


PATH_SUFFIXES = (".txt", ".csv", ".jsonl", ".tsv", ".json")


def _is_file(arg: str) -> bool:
    try:  # a message longer than the system's file-name limit is not a file (and must not crash)
        return Path(arg).is_file()
    except (OSError, ValueError):
        return False


def looks_like_path(arg: str) -> bool:
    """One word with a `/` or a data-file ending (`mesages.txt`, `data/sms.csv`): meant as a file.
    A message has spaces, so "Call 0800/123 now" is not a path."""
    stripped = arg.strip()
    return bool(stripped) and not any(c.isspace() for c in stripped) and len(stripped.encode()) <= 4096 and (
        "/" in stripped or stripped.lower().endswith(PATH_SUFFIXES))


def _decoded_lines(data: bytes, source: str) -> list[str]:
    from chatgpt_scratch.storage.fileio import describe_non_utf8, non_utf8_lines

    bad = non_utf8_lines(data)
    if bad:
        print(describe_non_utf8(bad, source), file=sys.stderr)
    return [line for line in data.decode("utf-8", errors="replace").splitlines() if line.strip()]


def _read_texts(args: argparse.Namespace) -> tuple[list[str], bool]:
    """-> (messages, whether they came from a stream/file and so deserve a table)."""
    from chatgpt_scratch.errors import ScratchError

    if len(args.texts) == 1 and args.texts[0] == "-":
        return _decoded_lines(sys.stdin.buffer.read(), "stdin"), True
    if len(args.texts) == 1 and _is_file(args.texts[0]):
        path = Path(args.texts[0])
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ScratchError(f"cannot read {path}: {e.strerror}") from None
        return _decoded_lines(data, str(path)), True
    for arg in args.texts:
        if looks_like_path(arg) and not _is_file(arg):
            raise ScratchError(f"no such file: {arg}; check its name (to classify that text itself, "
                               f"pipe it in: echo {shlex.quote(arg)} | chatgpt-scratch classify -)")
    return list(args.texts), len(args.texts) > 1


def run_classify(args: argparse.Namespace) -> int:
    """label messages as ham or spam with a fine-tuned classifier

    Classify TEXT with a `classifier` checkpoint (made by finetune-spam) or a lora-adapter of one. One TEXT
    prints its label and probability; several, or `-` (stdin) or a FILE (one message per line; blank lines
    skipped), print a table.

    examples:
      chatgpt-scratch classify --checkpoint checkpoints/spam.best.safetensors "You won a prize! Call now"
      cat messages.txt | chatgpt-scratch classify --checkpoint checkpoints/spam.best.safetensors - --json
    """
    from chatgpt_scratch.classify import SpamClassifier
    from chatgpt_scratch.errors import ScratchError

    from chatgpt_scratch.system.terminal_text import printable

    texts, as_table = _read_texts(args)
    if not texts:
        raise ScratchError("no messages to classify (the input was empty)")
    from chatgpt_scratch.cli.common import checkpoint_or_default

    args.checkpoint = checkpoint_or_default(args.checkpoint, "classify")
    classifier = SpamClassifier.load(args.checkpoint, device=args.device)
    predictions = classifier.classify(texts, batch_size=args.batch_size)
    if args.json:
        for text, pred in zip(texts, predictions):
            print(json.dumps({"text": text, "label": pred.label, "probability": round(pred.probability, 6),
                              "probs": {k: round(v, 6) for k, v in pred.probs.items()}}, ensure_ascii=False))
    elif not as_table:
        print(f"{predictions[0].label} {predictions[0].probability:.1%}")
    else:
        width = max(len(label) for label in classifier.labels)
        print(f"{'LABEL':<{width}}  {'PROB':>6}  MESSAGE")
        for text, pred in zip(texts, predictions):
            shown = text if len(text) <= 70 else text[:69] + "…"
            print(f"{pred.label:<{width}}  {pred.probability:>6.1%}  {printable(shown)}")
    return 0
