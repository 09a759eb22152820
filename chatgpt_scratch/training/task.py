"""What the Trainer needs to know about one kind of training.

The Trainer owns the loop (optimizer, schedule, clipping, accumulation, autocast,
eval/sample/save cadence, events, resume, DDP); a Task owns the data and the loss.
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol

import torch

from chatgpt_scratch.model import GPTModel

Batch = tuple[torch.Tensor, ...]


class Task(Protocol):
    name: str              # "pretrain" | "spam" | "instruct": recorded in events and metadata
    checkpoint_kind: str   # "base" | "classifier" | "instruct"
    best_metric: str       # the eval key that picks the best checkpoint, e.g. "val_loss" or "val_acc"
    best_mode: str         # "min" or "max"

    def train_batches(self, epoch: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        """This rank's share of the epoch's batches, in an order fixed by (seed, epoch): resume relies on it."""

    def num_train_batches(self, world_size: int = 1) -> int:
        """Batches per epoch for one rank."""

    def loss(self, model: GPTModel, batch: Batch) -> torch.Tensor:
        """Scalar mean loss for a batch already on the model's device."""

    def tokens_in(self, batch: Batch) -> int:
        """Tokens the batch trains on (for tokens_seen and tokens/s)."""

    def evaluate(self, model: GPTModel, max_batches: int | None) -> dict[str, float]:
        """Validation metrics, e.g. {"val_loss": ..., "val_ppl": ...} or {..., "val_acc": ...}."""

    def metadata(self) -> dict[str, Any]:
        """Provenance for the checkpoint header: dataset path and sha256, labels, template, ..."""
