"""What the Trainer needs to know about one kind of training.

The Trainer owns the loop (optimizer, schedule, clipping, accumulation, autocast,
eval/sample/save cadence, events, resume, DDP); a Task owns the data and the loss.

Rules a Task must keep for exact resume and DDP equivalence:
- `train_batches(epoch, rank, world_size)` yields the same batches in the same order for the same
  (seed, epoch): the Trainer resumes mid-epoch by skipping the batches already done. Use a generator
  seeded from (seed, epoch), never the global RNG.
- Under DDP each rank gets its share of every *global* batch: with per-rank batch size B, global
  batch g is made of the same examples a single process with batch size B·world_size would see at
  step g, and rank r takes rows [r·B, (r+1)·B). Then the averaged gradients match a single process.
- `loss` returns the mean over the batch (the Trainer divides by the number of micro-batches).

Optional hooks the Trainer uses when present:
- `sample(model, prompt, sampling) -> str | None`: text for a `sample` event (e.g. wrap the prompt in
  an instruction template). Without it, base models continue `prompt` greedily and classifiers skip samples.
- `step_metrics() -> dict`: extra fields for the next `step` event (e.g. DPO's train reward margin).
- `save_model(path, model, metadata) -> None`: write the checkpoint yourself (e.g. LoRA adapters only);
  default: checkpoints.save_checkpoint(path, model, checkpoint_kind, **metadata).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Protocol

import torch

from chatgpt_scratch.errors import ScratchError
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
        """Scalar mean loss for a batch already on the model's device (called under autocast)."""

    def tokens_in(self, batch: Batch) -> int:
        """Tokens the batch trains on (for tokens_seen and tokens/s)."""

    def evaluate(self, model: GPTModel, max_batches: int | None) -> dict[str, float]:
        """Validation metrics, e.g. {"val_loss": ..., "val_ppl": ...} or {..., "val_acc": ...}.

        Called on rank 0 only, in eval mode under torch.no_grad(); use a fixed set of batches
        (the first max_batches, in a fixed order) so evals are comparable across steps.
        """

    def metadata(self) -> dict[str, Any]:
        """Provenance for the checkpoint header: dataset path and sha256, labels, template, ..."""


class FineTuneTask:
    """What the fine-tune tasks (spam, instruct, DPO) share: their data; the batch size (at least 1); the seed
    that fixes each epoch's batch order; group_by_length (batches of similar lengths); extra fields for the
    checkpoint header; and lora_base, the --init file a LoRA adapter names (None: a full or merged model only)."""

    def __init__(self, data: Any, batch_size: int = 8, seed: int = 123, group_by_length: bool = False,
                 extra_metadata: dict[str, Any] | None = None, lora_base: str | Path | None = None):
        if batch_size < 1:
            raise ScratchError(f"--batch-size must be at least 1, got {batch_size}")
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.extra_metadata = dict(extra_metadata or {})
        self.lora_base = Path(lora_base) if lora_base is not None else None

    def save_model(self, path: Path, model: Any, metadata: dict[str, Any]) -> None:
        """Used by the Trainer for every save. Full fine-tune: a plain checkpoint of the task's kind.
        LoRA: the merged model at `path` and the adapter alone at NAME.lora.safetensors."""
        from chatgpt_scratch.lora import save_full_or_lora

        save_full_or_lora(path, model, self.checkpoint_kind, self.lora_base, **metadata)
