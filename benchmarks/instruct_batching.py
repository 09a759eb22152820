"""Instruction batching: our collate vs the book's, padding with and without length grouping,
and the loss with the output head computed only where there is a target vs everywhere.

    python benchmarks/instruct_batching.py [--data PATH] [--preset cpu-mini] [--batches 10]

Prints one table; each row times the peer in the same run and gives the ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from chatgpt_scratch.config import get_preset
from chatgpt_scratch.data.instruct import (
    batch_order, book_collate, collate, encode_examples, load_instruction_data, padding_fraction, split_examples,
)
from chatgpt_scratch.model import GPTModel
from chatgpt_scratch.data.templates import ALPACA
from chatgpt_scratch.training.instruct_task import instruct_loss, masked_lm_loss

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "instruction-data.json"


def timed(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--preset", default="cpu-mini")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batches", type=int, default=10, help="training steps timed for the loss rows")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    train = split_examples(load_instruction_data(args.data)).train
    encoded = encode_examples(train, ALPACA)
    plain = batch_order([len(e.ids) for e in encoded], args.batch_size, seed=1)
    grouped = batch_order([len(e.ids) for e in encoded], args.batch_size, seed=1, group_by_length=True)

    ours = timed(lambda: [collate([encoded[i] for i in b]) for b in plain])
    book = timed(lambda: [book_collate([encoded[i].ids for i in b]) for b in plain])
    rows = [("collate one epoch (s)", "book custom_collate_fn", book, ours)]
    pad_plain, pad_grouped = padding_fraction(encoded, plain), padding_fraction(encoded, grouped)

    torch.manual_seed(0)
    model = GPTModel(get_preset(args.preset))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def steps(loss_fn, mask: bool) -> None:
        for b in grouped[: args.batches]:
            inputs, targets = collate([encoded[i] for i in b], model.cfg.context_length, mask_instructions=mask)
            loss = loss_fn(inputs, targets)
            opt.zero_grad()
            loss.backward()
            opt.step()

    full = lambda x, y: masked_lm_loss(model(x), y)  # noqa: E731
    fast = lambda x, y: instruct_loss(model, x, y)  # noqa: E731
    for mask in (False, True):
        t_full = timed(lambda: steps(full, mask), repeats=1)
        t_fast = timed(lambda: steps(fast, mask), repeats=1)
        label = "masked prompts" if mask else "unmasked"
        rows.append((f"{args.batches} train steps, {label} (s)", "head on every position", t_full, t_fast))

    print(f"data: {len(encoded)} training entries, batch {args.batch_size}, model {args.preset}, "
          f"{torch.get_num_threads()} threads")
    print(f"padding: {pad_plain:.1%} of input positions shuffled, {pad_grouped:.1%} grouped by length")
    print(f"{'measure':<36} {'peer':<26} {'peer':>9} {'ours':>9} {'speed-up':>9}")
    for name, peer, t_peer, t_ours in rows:
        print(f"{name:<36} {peer:<26} {t_peer:>9.3f} {t_ours:>9.3f} {t_peer / t_ours:>8.2f}x")


if __name__ == "__main__":
    main()
