"""The instruction fine-tuning Task for the shared Trainer (book ch07), full or with LoRA.

Data: validated entries, split (the book's 85/5/10), each encoded once (prompt + response).
Batches: the book's collate (data/instruct.py) over a per-epoch order fixed by (seed, epoch),
optionally grouping similar lengths. Loss: mean cross-entropy over the targets that are not
-100 (padding after the end token; prompt tokens with --mask-instructions).

Checkpoints are kind "instruct" with the template name in the header, so chat formats
prompts the way training did. With LoRA, every save writes the merged model (a plain
instruct checkpoint anyone can load) and the adapter alone beside it (NAME.lora.safetensors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from chatgpt_scratch.data.instruct import (
    BOOK_FRACTIONS, IGNORE_INDEX, EncodedExample, InstructionExample, TemplatedSplits, batch_order, collate,
    copy_augment, encode_examples, iterate_batches, load_instruction_data, split_examples,
)
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.data.templates import PromptTemplate
from chatgpt_scratch.training.task import FineTuneTask

Batch = tuple[torch.Tensor, torch.Tensor]  # inputs (B, T), targets (B, T)


@dataclass
class InstructData(TemplatedSplits[InstructionExample, EncodedExample]):
    """The instruction data's splits; the test split is encoded too (the loss of the reference answers)."""

    encoded_test: list[EncodedExample] = field(default_factory=list)


def prepare_instruct_data(path: str | Path, template: PromptTemplate,
                          fractions: tuple[float, float, float] = BOOK_FRACTIONS, split_seed: int | None = None,
                          limit: int | None = None, extra_train: str | Path | None = None,
                          extra_limit: int | None = None, extra_max_tokens: int | None = None,
                          copy_augment_k: int = 0, copy_augment_seed: int = 123, extra_skip: int = 0,
                          extra_copy_augment_k: int = 0) -> InstructData:
    """Load + validate the whole file (errors before any training), split, and encode every split once.

    limit: keep only the first N entries (quick trials, tests).
    extra_train: another instruction file whose entries (the first extra_limit of them) join the
    training split only, so val and test stay those of `path` (e.g. the book's split plus Alpaca).
    An extra entry whose instruction and input equal a val or test entry's is left out.
    extra_max_tokens: only extra entries whose whole example (prompt + response, in `template`) has at
    most this many tokens count; extra_limit then takes the first of those (short answers in the book's
    style, and no example cut off at --max-length). extra_skip drops the first N of those before extra_limit
    takes its share, so a later stage can train on the next slice.
    extra_copy_augment_k: that many copy-augmented variants of each extra entry kept, after them (seeded
    with copy_augment_seed too): the copying lesson on data whose answers are not the book's.
    copy_augment_k: add that many copy-augmented variants of each training entry of `path` whose
    response repeats a rare word of its prompt (data.instruct.copy_augment), before the extra entries.
    """
    from chatgpt_scratch.storage.fileio import sha256_file

    path = Path(path)
    examples = load_instruction_data(path)
    if limit is not None:
        examples = examples[:limit]
    splits = split_examples(examples, fractions, split_seed)
    train = list(splits.train)
    extra_info: dict[str, Any] = {}
    held_out = {_entry_key(e) for e in (*splits.val, *splits.test)}
    if copy_augment_k:
        variants = [e for e in copy_augment(splits.train, copy_augment_k, copy_augment_seed)
                    if _entry_key(e) not in held_out]
        train += variants
        extra_info.update(copy_augment=copy_augment_k, copy_augment_seed=copy_augment_seed,
                          copy_augment_entries=len(variants))
    if extra_train is not None:
        extra_path = Path(extra_train)
        extra = load_instruction_data(extra_path)
        too_long = 0
        if extra_max_tokens is not None:
            if extra_max_tokens < 1:
                raise ScratchError(f"--add-train-max-tokens must be at least 1, got {extra_max_tokens}")
            lengths = [len(e.ids) for e in encode_examples(extra, template)]
            fitting = [e for e, n in zip(extra, lengths) if n <= extra_max_tokens]
            too_long = len(extra) - len(fitting)
            extra = fitting
        if extra_skip < 0:
            raise ScratchError(f"--add-train-skip must be 0 or more, got {extra_skip}")
        extra = extra[extra_skip:]
        if extra_limit is not None:
            extra = extra[:extra_limit]
        extra = extra + copy_augment(extra, extra_copy_augment_k, copy_augment_seed)
        kept = [e for e in extra if _entry_key(e) not in held_out]
        train += kept
        extra_info |= {"extra_train": str(extra_path.resolve()), "extra_train_sha256": sha256_file(extra_path),
                      "extra_train_entries": len(kept), "extra_train_dropped_as_held_out": len(extra) - len(kept)}
        if extra_max_tokens is not None:
            extra_info.update(extra_train_max_tokens=extra_max_tokens, extra_train_dropped_as_too_long=too_long)
        if extra_skip:
            extra_info.update(extra_train_skipped=extra_skip)
        if extra_copy_augment_k:
            extra_info.update(extra_train_copy_augment=extra_copy_augment_k)
    data = InstructData(train, splits.val, splits.test, template,
                        encode_examples(train, template), encode_examples(splits.val, template),
                        encoded_test=encode_examples(splits.test, template))
    data.info = {
        "dataset": str(path.resolve()),
        "dataset_sha256": sha256_file(path),
        "dataset_entries": len(examples),
        "split_seed": split_seed,  # None: the file's order (the book's split)
        "split_fractions": list(fractions),
        "split_sizes": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        **extra_info,
    }
    return data


def _entry_key(example: InstructionExample) -> tuple[str, str]:
    """What makes two entries the same question: instruction and input, whitespace- and case-folded."""
    return (" ".join(example.instruction.split()).lower(), " ".join(example.input.split()).lower())


def masked_lm_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over targets != -100. logits (B, T, V), targets (B, T). A batch whose targets
    are all ignored (a prompt longer than --max-length, masked) gives 0, not NaN."""
    if not bool((targets != IGNORE_INDEX).any()):
        return logits.sum() * 0.0  # keeps the graph (and DDP) happy
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX,
                           reduction=reduction)


def instruct_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                  reduction: str = "mean") -> torch.Tensor:
    """masked_lm_loss(model(inputs), targets), computing the output head only where there is a target.

    The vocabulary head is most of a small GPT's compute (50,257 x emb_dim per token), and with
    --mask-instructions most positions are prompt (about 3/4 in the book's data), padding the rest
    of the ignored ones: skipping them gives the same loss for a fraction of the work. A model
    wrapped by DDP or torch.compile takes the plain path (its forward must run as a whole).
    """
    if hasattr(model, "_orig_mod") or not (hasattr(model, "hidden_states") and hasattr(model, "head")):
        return masked_lm_loss(model(inputs), targets, reduction)
    keep = targets != IGNORE_INDEX  # (B, T)
    hidden = model.hidden_states(inputs)  # (B, T, emb_dim)
    if not bool(keep.any()):
        return hidden.sum() * 0.0
    logits = model.head(hidden[keep])  # (n_kept, vocab)
    return F.cross_entropy(logits.float(), targets[keep], reduction=reduction)


def token_mean_loss(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    max_batches: int | None = None) -> float:
    """Loss per target token over (inputs, targets) batches (up to max_batches), in eval mode, no gradients.

    NaN when there is no target token at all (every response cut off by the context): not measurable,
    which a 0.0 would hide as a perfect score."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for i, (inputs, targets) in enumerate(batches):
                if max_batches is not None and i >= max_batches:
                    break
                inputs, targets = inputs.to(device), targets.to(device)
                total += instruct_loss(model, inputs, targets, reduction="sum").item()
                count += int((targets != IGNORE_INDEX).sum())
    finally:
        model.train(was_training)
    return total / count if count else float("nan")


class InstructTask(FineTuneTask):
    """Task protocol (training/task.py) for instruction fine-tuning."""

    name = "instruct"
    checkpoint_kind = "instruct"
    best_metric = "val_loss"
    best_mode = "min"

    def __init__(self, data: InstructData, batch_size: int = 8, max_length: int | None = None,
                 mask_instructions: bool = False, group_by_length: bool = False, seed: int = 123,
                 extra_metadata: dict[str, Any] | None = None, lora_base: str | Path | None = None):
        super().__init__(data, batch_size, seed, group_by_length, extra_metadata, lora_base)
        if max_length is not None and max_length < 2:
            raise ScratchError(f"--max-length must be at least 2, got {max_length}")
        self.max_length = max_length
        self.mask_instructions = mask_instructions
        self._train_lengths = [len(e.ids) for e in data.encoded_train]

    # Batches ---------------------------------------------------------------------------------------

    def num_train_batches(self, world_size: int = 1) -> int:
        total = math.ceil(len(self.data.encoded_train) / self.batch_size)
        return total if world_size == 1 else total // world_size

    def train_batches(self, epoch: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        """The epoch's batches in an order fixed by (seed, epoch); rank r takes every world_size-th one."""
        order = batch_order(self._train_lengths, self.batch_size, self.seed, epoch,
                            group_by_length=self.group_by_length)
        for i in range(self.num_train_batches(world_size)):
            chunk = order[i * world_size + rank]
            yield self.collate([self.data.encoded_train[j] for j in chunk])

    def collate(self, examples: Sequence[EncodedExample]) -> Batch:
        return collate(examples, self.max_length, self.mask_instructions)

    # Loss and metrics ------------------------------------------------------------------------------

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        inputs, targets = batch
        return instruct_loss(model, inputs, targets)

    def tokens_in(self, batch: Batch) -> int:
        return int((batch[1] != IGNORE_INDEX).sum())

    def mean_loss(self, model: nn.Module, examples: Sequence[EncodedExample], max_batches: int | None = None,
                  mask_instructions: bool | None = None) -> float:
        """Token-weighted mean loss over (up to max_batches of) examples, in eval mode."""
        mask = self.mask_instructions if mask_instructions is None else mask_instructions
        return token_mean_loss(getattr(model, "module", model),
                               iterate_batches(examples, self.batch_size, self.max_length, mask), max_batches)

    def evaluate(self, model: nn.Module, max_batches: int | None) -> dict[str, float]:
        """val_loss (the Trainer adds val_ppl) and train_eval_loss on the first training batches, as the book prints.

        With max_batches=None the whole validation split is used, and as many training batches
        as it has (not the whole training split: that would cost an epoch's forward passes).
        """
        val_batches = math.ceil(len(self.data.encoded_val) / self.batch_size)
        train_batches = max_batches if max_batches is not None else val_batches
        return {"val_loss": self.mean_loss(model, self.data.encoded_val, max_batches),
                "train_eval_loss": self.mean_loss(model, self.data.encoded_train, train_batches)}

    def sample(self, model: nn.Module, prompt: str, sampling) -> str:
        """The Trainer's periodic sample: the first validation instruction, formatted with the template."""
        from chatgpt_scratch.generation import generate_text

        example = self.data.val[0]
        text = self.data.template.prompt(example.instruction, example.input)
        return generate_text(getattr(model, "module", model), text, sampling,
                             stop_strings=self.data.template.stop_strings)

    def metadata(self) -> dict[str, Any]:
        return {
            "template": self.data.template.name,
            "mask_instructions": self.mask_instructions,
            "max_length": self.max_length,
            "batch_size": self.batch_size,
            "group_by_length": self.group_by_length,
            **self.data.info,
            **self.extra_metadata,
        }

    # Saving (LoRA) ----------------------------------------------------------------------------------

