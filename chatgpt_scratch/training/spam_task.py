"""The spam-classification Task for the shared Trainer (book ch06), and the choice of trainable parts.

Data: a stratified train/val/test split of ham/spam messages, encoded once, batched with
dynamic padding (each batch padded to its own longest message). Loss: cross-entropy on the
pooled classifier logits (optionally class-weighted). Eval: val loss and accuracy.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from chatgpt_scratch.classify import POOL_CHOICES, ClassificationMetrics, classification_metrics, classifier_logits
from chatgpt_scratch.data.spam import (
    BALANCE_CHOICES, LABELS, EncodedMessage, Message, class_weights, collate, encode_messages, label_counts,
    load_messages, stratified_split, undersample,
)
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.training.task import FineTuneTask

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # ids (B, T), lengths (B,), labels (B,)

# Linear layers of a block that LoRA adapts; the fresh classifier head trains in full instead.
LORA_BLOCK_TARGETS = ("att.qkv", "att.out_proj", "ff.layers.0", "ff.layers.2")


# --- trainable parts --------------------------------------------------------------------------------


def parse_train_layers(spec: str, n_layers: int) -> int:
    """"head" -> 0 blocks, "last-N" -> N, "all" -> every block (and the embeddings); returns the block count."""
    if spec == "head":
        return 0
    if spec == "all":
        return n_layers
    match = re.fullmatch(r"last-(\d+)", spec)
    if not match:
        raise ScratchError(f"--train-layers must be head, last-N (e.g. last-1) or all; got {spec!r}")
    n = int(match.group(1))
    if not 1 <= n <= n_layers:
        raise ScratchError(f"--train-layers last-{n}: the model has {n_layers} blocks; use last-1 .. last-{n_layers}")
    return n


def set_trainable(model: nn.Module, train_layers: str = "last-1", lora_rank: int | None = None,
                  lora_alpha: float | None = None, lora_targets: tuple[str, ...] = LORA_BLOCK_TARGETS,
                  lora_norms: bool = False) -> list[str]:
    """Freeze the model, then unfreeze the chosen parts; returns the names of the trainable parameters.

    head: the classifier head only. last-N: the last N blocks + final norm + head (the book's
    default is last-1). all: everything. lora_rank: low-rank adapters on every block's linear
    layers (or `lora_targets`, e.g. with the token embedding), plus the full (fresh) head; with
    lora_norms also the LayerNorms and the position embedding (small); the base weights stay frozen.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    if lora_rank is not None:
        from chatgpt_scratch.lora import inject_lora

        inject_lora(model, lora_rank, lora_alpha if lora_alpha is not None else float(lora_rank),
                    targets=lora_targets,
                    train_also=("out_head",) + (("norm1", "norm2", "final_norm", "pos_emb") if lora_norms else ()))
    else:
        n_blocks = parse_train_layers(train_layers, len(model.trf_blocks))
        parts: list[nn.Module] = [model.out_head]
        if n_blocks:
            parts += [model.final_norm, *model.trf_blocks[len(model.trf_blocks) - n_blocks:]]
        if train_layers == "all":
            parts += [model.tok_emb, model.pos_emb]
        for part in parts:
            for p in part.parameters():
                p.requires_grad_(True)
    return [name for name, p in model.named_parameters() if p.requires_grad]


# --- data -------------------------------------------------------------------------------------------


@dataclass
class SpamData:
    """The three encoded splits plus how they were made (for the checkpoint's metadata)."""

    train: list[EncodedMessage]
    val: list[EncodedMessage]
    test: list[EncodedMessage]
    max_length: int
    info: dict[str, Any] = field(default_factory=dict)


def prepare_spam_data(path: str | Path, max_length: int, balance: str = "none", seed: int = 123,
                      fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
                      limit: int | None = None) -> SpamData:
    """Read, (optionally) undersample, split stratified and encode. `limit` keeps a stratified
    subset of that many messages first (quick trials and tests)."""
    from chatgpt_scratch.storage.fileio import sha256_file

    if balance not in BALANCE_CHOICES:
        raise ScratchError(f"--balance must be one of {', '.join(BALANCE_CHOICES)}; got {balance!r}")
    if max_length < 1:
        raise ScratchError(f"--max-length must be at least 1, got {max_length}")
    path = Path(path)
    messages: list[Message] = load_messages(path)
    total = label_counts(messages)
    if balance == "undersample":
        messages = undersample(messages, seed)
    if limit is not None and limit < len(messages):
        messages = stratified_split(messages, (limit / len(messages), 1 - limit / len(messages), 0.0), seed).train
    splits = stratified_split(messages, fractions, seed)
    if not splits.train or not splits.val:
        raise ScratchError(f"{path}: too few messages ({len(messages)}) for a train/val/test split")
    info = {
        "dataset": str(path),
        "dataset_sha256": sha256_file(path),
        "dataset_counts": dict(zip(LABELS, total)),
        "balance": balance,
        "split_seed": seed,
        "split_fractions": list(fractions),
        "split_sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "train_counts": dict(zip(LABELS, label_counts(splits.train))),
    }
    return SpamData(encode_messages(splits.train, max_length), encode_messages(splits.val, max_length),
                    encode_messages(splits.test, max_length), max_length, info)


def batches(examples: Sequence[EncodedMessage], batch_size: int) -> Iterator[Batch]:
    for start in range(0, len(examples), batch_size):
        yield collate(examples[start:start + batch_size])


# --- the task ---------------------------------------------------------------------------------------


class SpamTask(FineTuneTask):
    """Task protocol (training/task.py) for ham/spam classification."""

    name = "spam"
    checkpoint_kind = "classifier"
    best_metric = "val_acc"
    best_mode = "max"

    def __init__(self, data: SpamData, batch_size: int = 8, seed: int = 123, pool: str = "last-token",
                 weighted: bool = False, group_by_length: bool = False,
                 extra_metadata: dict[str, Any] | None = None, lora_base: str | Path | None = None):
        if pool not in POOL_CHOICES:
            raise ScratchError(f"--pool must be one of {', '.join(POOL_CHOICES)}; got {pool!r}")
        super().__init__(data, batch_size, seed, group_by_length, extra_metadata, lora_base)
        self.pool = pool
        # --balance weight: inverse-frequency class weights, from the training split only.
        self.weights = class_weights([Message("", e.label) for e in data.train]) if weighted else None

    # Batches ---------------------------------------------------------------------------------------

    def num_train_batches(self, world_size: int = 1) -> int:
        if world_size == 1:  # the last batch may be short
            return math.ceil(len(self.data.train) / self.batch_size)
        # DDP: only whole global batches (batch_size rows on every rank), so the ranks never differ.
        return len(self.data.train) // (self.batch_size * world_size)

    def global_batches(self, epoch: int, world_size: int = 1) -> list[list[int]]:
        """The epoch's global batches (indices into the training split), fixed by (seed, epoch).

        Shuffle; then, with group_by_length, sort each window of 32 global batches by message
        length and shuffle the batches themselves: a batch then holds messages of similar length,
        so dynamic padding adds few pad tokens (SMS lengths range from 1 to ~200 tokens), while
        every message is still seen once per epoch in a random batch order. Off by default: spam
        messages are longer than ham, so such batches are often all one class, which made
        training noisier; and the speed gain was small (benchmarks/finetune_spam.py).
        """
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        n, size = len(self.data.train), self.batch_size * world_size
        order = torch.randperm(n, generator=g).tolist()
        if self.group_by_length:
            window = size * 32
            order = [i for start in range(0, n, window)
                     for i in sorted(order[start:start + window], key=lambda i: len(self.data.train[i].ids))]
        groups = [order[start:start + size] for start in range(0, n, size)]
        groups = groups[:self.num_train_batches(world_size)]
        if self.group_by_length:
            groups = [groups[i] for i in torch.randperm(len(groups), generator=g).tolist()]
        return groups

    def train_batches(self, epoch: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        """Rank r takes rows [r·B, (r+1)·B) of every global batch, so W ranks with batch B see
        exactly what one process with batch B·W would (training/task.py's DDP rule)."""
        for group in self.global_batches(epoch, world_size):
            rows = group[rank * self.batch_size:(rank + 1) * self.batch_size]
            yield collate([self.data.train[j] for j in rows])

    # Loss and metrics ------------------------------------------------------------------------------

    def logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        ids, lengths, _ = batch
        return classifier_logits(model, ids, lengths, self.pool)  # (B, n_classes)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        logits = self.logits(model, batch)
        weight = self.weights.to(logits.device) if self.weights is not None else None
        return F.cross_entropy(logits.float(), batch[2], weight=weight)

    def tokens_in(self, batch: Batch) -> int:
        return int(batch[1].sum())

    def _predict(self, model: nn.Module, examples: Sequence[EncodedMessage], max_batches: int | None
                 ) -> tuple[float, list[int], list[int]]:
        """Mean loss, true labels, predicted labels over (up to max_batches of) examples, in eval mode."""
        wrapped = getattr(model, "module", model)
        was_training = wrapped.training
        wrapped.eval()
        device = next(wrapped.parameters()).device
        total_loss, n, y_true, y_pred = 0.0, 0, [], []
        try:
            with torch.inference_mode():
                if max_batches is not None:  # a fixed subset: the first max_batches batches' worth
                    examples = examples[:max_batches * self.batch_size]
                # Sorted by length, batches carry almost no padding; the metrics do not depend on order.
                examples = sorted(examples, key=lambda e: len(e.ids))
                for ids, lengths, labels in batches(examples, self.batch_size):
                    ids, lengths, labels = ids.to(device), lengths.to(device), labels.to(device)
                    logits = classifier_logits(wrapped, ids, lengths, self.pool).float()
                    total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
                    n += len(labels)
                    y_true += labels.tolist()
                    y_pred += logits.argmax(dim=-1).tolist()
        finally:
            wrapped.train(was_training)
        return total_loss / max(n, 1), y_true, y_pred

    def evaluate(self, model: nn.Module, max_batches: int | None) -> dict[str, float]:
        loss, y_true, y_pred = self._predict(model, self.data.val, max_batches)
        return {"val_loss": loss, "val_acc": classification_metrics(y_true, y_pred).accuracy}

    def test_metrics(self, model: nn.Module, split: str = "test") -> ClassificationMetrics:
        """Accuracy, spam precision/recall/F1 and the confusion matrix on a whole split."""
        _, y_true, y_pred = self._predict(model, getattr(self.data, split), None)
        return classification_metrics(y_true, y_pred)

    def save_model(self, path: str | Path, model: nn.Module, metadata: dict[str, Any]) -> None:
        """Trainer hook: save a plain classifier. LoRA adapters are folded into a copy first
        (W + scaling·A·B), so the file loads like any classifier and runs at full speed; with a base
        file (--init) the adapter alone is written beside it too, as NAME.lora.safetensors."""
        from chatgpt_scratch.checkpoints import save_checkpoint
        from chatgpt_scratch.lora import has_lora, lora_layers, merge_lora, save_merged_and_adapter

        model = getattr(model, "module", model)
        if not has_lora(model):
            save_checkpoint(path, model, self.checkpoint_kind, **metadata)
            return
        first = next(iter(lora_layers(model).values()))
        merged_only = {"lora_rank": first.rank, "lora_alpha": first.alpha, "lora_merged": True}
        if self.lora_base is not None:
            save_merged_and_adapter(path, model, self.checkpoint_kind, self.lora_base, merged_only, **metadata)
        else:
            save_checkpoint(path, merge_lora(copy.deepcopy(model)), self.checkpoint_kind, **metadata, **merged_only)

    def metadata(self) -> dict[str, Any]:
        return {
            "labels": list(LABELS),
            "pool": self.pool,
            "max_length": self.data.max_length,
            "batch_size": self.batch_size,
            "group_by_length": self.group_by_length,
            **self.data.info,
            **self.extra_metadata,
        }
