"""Next-token prediction over a token array: the pretraining Task (book ch05)."""

from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np
import torch

from chatgpt_scratch.data.corpus import Run, window_starts, windows
from chatgpt_scratch.errors import ScratchError

Batch = tuple[torch.Tensor, torch.Tensor]


class LMTask:
    """Sliding windows (context, stride) over train/val runs of `ids`; shuffled per epoch, last partial batch dropped.

    Batches: (inputs, targets), both (batch_size, context) int64. Loss: mean cross-entropy over all tokens.
    """

    name = "pretrain"
    checkpoint_kind = "base"
    best_metric = "val_loss"
    best_mode = "min"

    def __init__(self, ids: np.ndarray, train_runs: list[Run], val_runs: list[Run], context: int, stride: int,
                 batch_size: int, seed: int = 123, metadata: dict[str, Any] | None = None):
        if batch_size < 1:
            raise ScratchError(f"--batch-size must be at least 1, got {batch_size}")
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

    def num_train_batches(self, world_size: int = 1) -> int:
        return len(self.train_starts) // (self.batch_size * world_size)

    def train_batches(self, epoch: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train_starts))
        global_batch = self.batch_size * world_size
        for b in range(self.num_train_batches(world_size)):
            lo = b * global_batch + rank * self.batch_size
            yield self._batch(self.train_starts[order[lo:lo + self.batch_size]])

    def _batch(self, starts: np.ndarray) -> Batch:
        x, y = windows(self.ids, starts, self.context)
        return torch.from_numpy(x), torch.from_numpy(y)

    def loss(self, model, batch: Batch) -> torch.Tensor:
        inputs, targets = batch  # (batch, context) each
        return model(inputs, targets=targets)  # head and loss in one (compiled) graph

    def tokens_in(self, batch: Batch) -> int:
        return batch[0].numel()

    def _mean_loss(self, model, starts: np.ndarray, max_batches: int | None) -> float:
        """The book's calc_loss_loader: the mean of per-batch mean losses over the first max_batches batches."""
        n = math.ceil(len(starts) / self.batch_size)
        n = n if max_batches is None else min(n, max_batches)
        device = next(model.parameters()).device
        total = 0.0
        for b in range(n):
            x, y = (t.to(device) for t in self._batch(starts[b * self.batch_size:(b + 1) * self.batch_size]))
            total += self.loss(model, (x, y)).item()
        return total / max(n, 1)

    def evaluate(self, model, max_batches: int | None) -> dict[str, float]:
        """val_loss (+ val_ppl from the Trainer) and train_eval_loss: the loss on the first training
        windows in eval mode (no dropout), the number the book prints as "Train loss"."""
        out: dict[str, float] = {}
        if len(self.val_starts):
            out["val_loss"] = self._mean_loss(model, self.val_starts, max_batches)
        out["train_eval_loss"] = self._mean_loss(model, self.train_starts, max_batches)
        return out

    def metadata(self) -> dict[str, Any]:
        return dict(self._metadata)
