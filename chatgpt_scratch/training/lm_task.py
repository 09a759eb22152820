"""Next-token prediction over a token array: the pretraining Task (book ch05)."""

from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np
import torch

from chatgpt_scratch.data.corpus import Run, window_starts, windows
from chatgpt_scratch.errors import ScratchError

Batch = tuple[torch.Tensor, torch.Tensor]


def repeat_spans(block: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy-curriculum window: span A of `block`, then the text that followed it (gap B), then A again,
    then the rest, cut back to len(block): A B A ... The second A can only be predicted by finding the
    first one and copying what came after each token there, which is what an induction head does; on
    natural text alone a small model meets that pattern too rarely to learn it in a CPU budget.
    A is 1/8 to 1/2 of the window (at least 8 tokens), B up to 1/8 of it (the distance from a question
    to the answer that restates it)."""
    n = len(block)
    a = int(rng.integers(max(n // 8, 8), max(n // 2, 9)))
    b = int(rng.integers(0, max(n // 8, 1)))
    span = block[:a]
    return np.concatenate([span, block[a:a + b], span, block[a + b:]])[:n]


class LMTask:
    """Sliding windows (context, stride) over train/val runs of `ids`; shuffled per epoch, last partial batch dropped.

    Batches: (inputs, targets), both (batch_size, context) int64. Loss: mean cross-entropy over all tokens.
    copy_fraction: this share of each training batch's windows are rewritten by `repeat_spans` (seeded by
    epoch and batch, so a resumed run sees the same batches); evaluation adds val_copy_loss, the loss on
    such windows of the validation text, which falls steeply once the model has learnt to copy.
    """

    name = "pretrain"
    checkpoint_kind = "base"
    best_metric = "val_loss"
    best_mode = "min"

    def __init__(self, ids: np.ndarray, train_runs: list[Run], val_runs: list[Run], context: int, stride: int,
                 batch_size: int, seed: int = 123, metadata: dict[str, Any] | None = None,
                 copy_fraction: float = 0.0):
        if batch_size < 1:
            raise ScratchError(f"--batch-size must be at least 1, got {batch_size}")
        if not 0.0 <= copy_fraction <= 1.0:
            raise ScratchError(f"--copy-fraction must be between 0 and 1, got {copy_fraction}")
        if copy_fraction and context < 32:
            raise ScratchError(f"--copy-fraction needs --context of at least 32, got {context}")
        self.copy_fraction = copy_fraction
        self.ids, self.context, self.batch_size, self.seed = ids, context, batch_size, seed
        self.train_starts = window_starts(train_runs, context, stride)
        self.val_starts = window_starts(val_runs, context, stride)
        if len(self.train_starts) == 0:
            raise ScratchError(f"the training split has fewer than {context + 1} tokens, not one window; "
                               "add text or lower --context")
        if val_runs and len(self.val_starts) == 0:
            raise ScratchError(f"the validation split has fewer than {context + 1} tokens, not one window; "
                               "raise --val-fraction or lower --context")
        self._metadata = {**(metadata or {}), "context": context, "stride": stride, "batch_size": batch_size,
                          "train_windows": len(self.train_starts), "val_windows": len(self.val_starts)}
        if copy_fraction:
            self._metadata["copy_fraction"] = copy_fraction

    def num_train_batches(self, world_size: int = 1) -> int:
        return len(self.train_starts) // (self.batch_size * world_size)

    def train_batches(self, epoch: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train_starts))
        global_batch = self.batch_size * world_size
        for b in range(self.num_train_batches(world_size)):
            lo = b * global_batch + rank * self.batch_size
            rng = np.random.default_rng([self.seed, epoch, b, rank]) if self.copy_fraction else None
            yield self._batch(self.train_starts[order[lo:lo + self.batch_size]], rng, self.copy_fraction)

    def _batch(self, starts: np.ndarray, rng: np.random.Generator | None = None, copy_fraction: float = 0.0) -> Batch:
        x, y = windows(self.ids, starts, self.context)
        if rng is not None and copy_fraction:
            block = np.concatenate([x, y[:, -1:]], axis=1)  # (n, context + 1)
            for row in np.flatnonzero(rng.random(len(block)) < copy_fraction):
                block[row] = repeat_spans(block[row], rng)
            x, y = np.ascontiguousarray(block[:, :-1]), np.ascontiguousarray(block[:, 1:])
        return torch.from_numpy(x), torch.from_numpy(y)

    def loss(self, model, batch: Batch) -> torch.Tensor:
        inputs, targets = batch  # (batch, context) each
        return model(inputs, targets=targets)  # head and loss in one (compiled) graph

    def tokens_in(self, batch: Batch) -> int:
        return batch[0].numel()

    def _mean_loss(self, model, starts: np.ndarray, max_batches: int | None, copy: bool = False) -> float:
        """The book's calc_loss_loader: the mean of per-batch mean losses over the first max_batches batches.
        copy: every window rewritten by `repeat_spans` (a fixed seed, so each evaluation sees the same ones)."""
        n = math.ceil(len(starts) / self.batch_size)
        n = n if max_batches is None else min(n, max_batches)
        device = next(model.parameters()).device
        total = 0.0
        for b in range(n):
            rng = np.random.default_rng([self.seed, b]) if copy else None
            batch = self._batch(starts[b * self.batch_size:(b + 1) * self.batch_size], rng, 1.0)
            x, y = (t.to(device) for t in batch)
            total += self.loss(model, (x, y)).item()
        return total / max(n, 1)

    def evaluate(self, model, max_batches: int | None) -> dict[str, float]:
        """val_loss (+ val_ppl from the Trainer) and train_eval_loss: the loss on the first training
        windows in eval mode (no dropout), the number the book prints as "Train loss"."""
        out: dict[str, float] = {}
        if len(self.val_starts):
            out["val_loss"] = self._mean_loss(model, self.val_starts, max_batches)
            if self.copy_fraction:
                out["val_copy_loss"] = self._mean_loss(model, self.val_starts, max_batches, copy=True)
        out["train_eval_loss"] = self._mean_loss(model, self.train_starts, max_batches)
        return out

    def metadata(self) -> dict[str, Any]:
        return dict(self._metadata)
