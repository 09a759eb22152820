"""Spam fine-tuning speed on CPU: the book's ch06 setting (GPT-2 124M architecture, last block +
final norm + head trained, balanced data, batch 8), ours against the book's way, same batches, same run.

    python benchmarks/finetune_spam.py [--data PATH] [--batches 20] [--epoch]

Variants, each timed on the SAME training batches (forward + backward + AdamW step):
  ours          random batches with dynamic padding (each batch padded to its own longest
                message), last real token pooled, frozen prefix under torch.no_grad() (the defaults)
  ours-grouped  ours with --group-by-length: batches of similar-length messages, fewer pads
  ours-grad     ours without the no_grad prefix (only requires_grad=False on frozen weights)
  book          the book's data loader: random batches, every message padded to the longest
                training message, logits of position -1, frozen weights by requires_grad=False
  all-layers    ours, but every layer trains (what freezing saves)
Eval: ours (dynamic padding, inference_mode) against the book's (padded, no_grad) on the val split.
With --epoch, a full training epoch of ours is also timed (not extrapolated).
Weights are random: speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from chatgpt_scratch.classify import classifier_logits
from chatgpt_scratch.config import get_preset
from chatgpt_scratch.data.spam import PAD_ID
from chatgpt_scratch.model import GPTModel, to_classifier
from chatgpt_scratch.training.spam_task import SpamTask, batches, prepare_spam_data, set_trainable

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "SMSSpamCollection"


def pad_to(batch, length: int):
    """The book's SpamDataset: every message padded to one fixed length."""
    ids, lengths, labels = batch
    fixed = torch.full((ids.shape[0], length), PAD_ID, dtype=torch.long)
    fixed[:, :ids.shape[1]] = ids
    return fixed, lengths, labels


def book_logits(model, batch):
    return model(batch[0])[:, -1, :]  # the book's ch06: the last position, a pad for most messages


def ours_logits(model, batch):
    return classifier_logits(model, batch[0], batch[1], "last-token")


def ours_without_no_grad(model, batch):
    # Same as classifier_logits with the frozen prefix NOT under no_grad: autograd decides alone.
    ids, lengths, _ = batch
    x = model.embed(ids)
    for block in model.trf_blocks:
        x = block(x)
    x = model.final_norm(x)
    return model.out_head(x[torch.arange(len(lengths)), lengths - 1])


def time_training(model, variants, n_batches: int) -> dict[str, float]:
    """Seconds per batch (forward + backward + AdamW step) of each variant, timed round-robin
    (batch i of every variant, then batch i+1, ...) so that load from other processes on a shared
    machine hits all variants alike. Two warm-up rounds are not counted."""
    model.train()
    optimizers = {}
    for name, _, _, spec in variants:
        set_trainable(model, spec)
        optimizers[name] = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5)
    times: dict[str, list[float]] = {name: [] for name, *_ in variants}
    for i in range(n_batches + 2):
        for name, batch_list, fn, spec in variants:
            set_trainable(model, spec)
            batch = batch_list[i % len(batch_list)]
            t = time.perf_counter()
            loss = F.cross_entropy(fn(model, batch), batch[2])
            loss.backward()
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
            if i >= 2:
                times[name].append(time.perf_counter() - t)
    return {name: sum(v) / len(v) for name, v in times.items()}


def time_eval(model, batch_list, logits_fn, context) -> float:
    model.eval()
    with context():
        logits_fn(model, batch_list[0])  # warm-up
    t = time.perf_counter()
    with context():
        for batch in batch_list:
            logits_fn(model, batch).argmax(-1)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--preset", default="gpt2-small")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batches", type=int, default=20, help="training batches timed per variant (plus 2 warm-up rounds)")
    ap.add_argument("--eval-batches", type=int, default=10)
    ap.add_argument("--epoch", action="store_true", help="also time one full training epoch of ours")
    ap.add_argument("--skip", nargs="*", default=[], help="variants to skip (e.g. all-layers)")
    args = ap.parse_args()

    torch.manual_seed(0)
    cfg = get_preset(args.preset).with_(drop_rate=0.0)
    data = prepare_spam_data(args.data, max_length=cfg.context_length, balance="undersample", seed=123)
    task = SpamTask(data, batch_size=args.batch_size, seed=123)
    grouped_task = SpamTask(data, batch_size=args.batch_size, seed=123, group_by_length=True)
    longest = max(len(e.ids) for e in data.train)
    train = list(task.train_batches(0))
    grouped_train = list(grouped_task.train_batches(0))
    timed, grouped_timed = train[:args.batches + 2], grouped_train[:args.batches + 2]
    val = list(batches(data.val, args.batch_size))[:args.eval_batches]
    val_sorted = list(batches(sorted(data.val, key=lambda e: len(e.ids)), args.batch_size))[:args.eval_batches]
    padded_tokens = {"ours": sum(b[0].numel() for b in train),
                     "ours-grouped": sum(b[0].numel() for b in grouped_train),
                     "book": len(data.train) * longest}
    real_tokens = sum(len(e.ids) for e in data.train)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}")
    print(f"model: {args.preset} architecture ({cfg.n_layers} blocks, emb {cfg.emb_dim}); balanced train split "
          f"{len(data.train)} messages = {len(train)} batches of {args.batch_size}")
    print(f"tokens per epoch: {real_tokens:,} real; with padding: " + ", ".join(
        f"{k} {v:,} ({v / real_tokens:.2f}x)" for k, v in padded_tokens.items()) + "\n")

    model = to_classifier(GPTModel(cfg), 2)
    variants = [
        ("ours", timed, ours_logits, "last-1"),
        ("ours-grouped", grouped_timed, ours_logits, "last-1"),
        ("ours-grad", timed, ours_without_no_grad, "last-1"),
        ("book", [pad_to(b, longest) for b in timed], book_logits, "last-1"),
        ("all-layers", timed, ours_logits, "all"),
    ]
    variants = [v for v in variants if v[0] not in args.skip]
    results = time_training(model, variants, args.batches)
    set_trainable(model, "last-1")

    eval_ours = time_eval(model, val_sorted, ours_logits, torch.inference_mode)
    eval_book = time_eval(model, [pad_to(b, longest) for b in val], book_logits, torch.no_grad)

    n = len(train)
    print(f"\ntraining, {args.batches} batches timed per variant (s/batch, and one epoch of {n} batches extrapolated)")
    print("(ours-grouped times a sample of length-grouped batches, so its s/batch is noisier)")
    print(f"{'variant':<14}{'s/batch':>9}{'epoch (min)':>13}{'vs ours':>9}")
    for name, sec in results.items():
        print(f"{name:<14}{sec:>9.3f}{sec * n / 60:>13.1f}{sec / results['ours']:>8.2f}x")
    print(f"\neval, {len(val)} val batches: ours (sorted by length, dynamic padding, inference_mode) {eval_ours:.2f} s, "
          f"book (padded, no_grad) {eval_book:.2f} s: {eval_book / eval_ours:.2f}x")
    if args.epoch:
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5)
        t = time.perf_counter()
        for batch in train:
            loss = task.loss(model, batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        print(f"\nfull epoch of ours, measured: {len(train)} batches in {(time.perf_counter() - t) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
