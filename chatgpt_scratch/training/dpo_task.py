"""Direct Preference Optimization (DPO): the step after instruction tuning (the book's bonus ch07 material;
Rafailov et al. 2023).

For a prompt x with a preferred response y_c and a dispreferred one y_r, the policy pi (the model being
trained) and a frozen reference pi_ref (the model DPO starts from):

    loss = -log sigmoid( beta * [ (log pi(y_c|x) - log pi_ref(y_c|x)) - (log pi(y_r|x) - log pi_ref(y_r|x)) ] )

where log pi(y|x) is the sum of the log-probabilities of the response tokens only (prompt and padding
masked), with the checkpoint's own prompt template and the end token after the response. The implicit
rewards are r = beta * (log pi - log pi_ref); the metrics are the reward margin r_c - r_r and the
reward accuracy (share of pairs with r_c > r_r).

The reference never changes, so its log-probabilities are computed once, before training
(`precompute_reference`), and kept with the data: no second copy of the weights is needed, with or
without LoRA (at the start of training a LoRA model *is* its base with the adapter off).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from chatgpt_scratch.data.instruct import BOOK_FRACTIONS, IGNORE_INDEX, TemplatedSplits, batch_order, split_examples
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.data.templates import PromptTemplate
from chatgpt_scratch.tokenizer import ENDOFTEXT_ID
from chatgpt_scratch.training.task import FineTuneTask

Batch = tuple[torch.Tensor, ...]


# --- data ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreferenceExample:
    instruction: str
    input: str
    chosen: str
    rejected: str
    output: str = ""  # a reference answer, when the file has one (the book's data does): scored after training

    def to_dict(self) -> dict[str, str]:
        return {"instruction": self.instruction, "input": self.input, "output": self.output or self.chosen}


def _check_preference_entry(entry: Any, where: str) -> PreferenceExample:
    if not isinstance(entry, dict):
        raise ScratchError(f"{where}: expected an object with instruction/input/chosen/rejected, "
                           f"got {type(entry).__name__}")
    for key in ("instruction", "chosen", "rejected"):
        if key not in entry:
            raise ScratchError(f"{where}: missing key {key!r} (each entry needs instruction, chosen and rejected; "
                               "input and output are optional)")
    for key in ("instruction", "input", "chosen", "rejected", "output"):
        value = entry.get(key, "")
        if value is None and key in ("input", "output"):
            continue
        if not isinstance(value, str):
            raise ScratchError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
    if not entry["chosen"].strip() or not entry["rejected"].strip():
        raise ScratchError(f"{where}: 'chosen' and 'rejected' must both be non-empty")
    return PreferenceExample(entry["instruction"], entry.get("input") or "", entry["chosen"], entry["rejected"],
                             entry.get("output") or "")


def load_preference_data(path: str | Path) -> list[PreferenceExample]:
    """Read and validate a whole preference file (a JSON list or JSON lines) before anything trains."""
    from chatgpt_scratch.data.instruct import _read_text, parse_instruction_text

    path = Path(path)
    return parse_instruction_text(_read_text(path), str(path), check=_check_preference_entry)


@dataclass
class EncodedPair:
    prompt: list[int]
    chosen: list[int]    # response tokens, the end token appended
    rejected: list[int]
    ref_chosen: float | None = None    # log pi_ref(chosen | prompt), once precomputed
    ref_rejected: float | None = None

    @property
    def length(self) -> int:
        return len(self.prompt) + max(len(self.chosen), len(self.rejected))


def encode_pairs(examples: Sequence[PreferenceExample], template: PromptTemplate) -> list[EncodedPair]:
    from chatgpt_scratch.tokenizer import get_tokenizer

    tok = get_tokenizer()
    prompts = tok.encode_ordinary_batch([template.prompt(e.instruction, e.input) for e in examples])
    chosen = tok.encode_ordinary_batch([e.chosen for e in examples])
    rejected = tok.encode_ordinary_batch([e.rejected for e in examples])
    return [EncodedPair(p, c + [ENDOFTEXT_ID], r + [ENDOFTEXT_ID]) for p, c, r in zip(prompts, chosen, rejected)]


@dataclass
class PreferenceData(TemplatedSplits[PreferenceExample, EncodedPair]):
    """The preference data's splits (the val pairs are encoded for the val DPO loss, the test split is answered)."""


def prepare_preference_data(path: str | Path, template: PromptTemplate, split_seed: int | None = None,
                            limit: int | None = None) -> PreferenceData:
    """Load + validate, split 85/5/10 as the book (file order: the book's own test entries), encode."""
    from chatgpt_scratch.storage.fileio import sha256_file

    path = Path(path)
    examples = load_preference_data(path)
    if limit is not None:
        examples = examples[:limit]
    splits = split_examples(examples, BOOK_FRACTIONS, split_seed)
    if not splits.train or not splits.val:
        raise ScratchError(f"{path}: too few entries ({len(examples)}) for a train/val/test split")
    data = PreferenceData(splits.train, splits.val, splits.test, template,
                          encode_pairs(splits.train, template), encode_pairs(splits.val, template))
    data.info = {"dataset": str(path.resolve()), "dataset_sha256": sha256_file(path), "dataset_entries": len(examples),
                 "split_seed": split_seed,
                 "split_sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)}}
    return data


def collate_pairs(pairs: Sequence[EncodedPair], max_length: int | None = None) -> Batch:
    """-> inputs (2B, T), targets (2B, T) with only response tokens as targets (chosen rows first, then
    rejected), and the reference log-probabilities (2B,) (NaN where not precomputed).

    A row longer than max_length keeps its first max_length tokens (the prompt first)."""
    # The instruct collate with the prompt masked: each row is prompt + response + end token, and only
    # the response tokens (with the end token) are targets. Chosen rows first, then rejected.
    from chatgpt_scratch.data.instruct import EncodedExample, collate

    rows = [EncodedExample(p.prompt + response[:-1], len(p.prompt))  # collate appends the end token
            for responses in ([p.chosen for p in pairs], [p.rejected for p in pairs])
            for p, response in zip(pairs, responses)]
    inputs, targets = collate(rows, max_length, mask_instructions=True)
    ref = torch.tensor([p.ref_chosen if p.ref_chosen is not None else math.nan for p in pairs]
                       + [p.ref_rejected if p.ref_rejected is not None else math.nan for p in pairs],
                       dtype=torch.float32)
    return inputs, targets, ref


# --- the loss -----------------------------------------------------------------------------------------


def sequence_logprobs(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(rows,) sum over target positions != IGNORE_INDEX of log p(target | prefix), in float32.

    The vocabulary head (most of a small GPT's compute) runs only where there is a target, as in
    instruct_loss; a model wrapped by DDP or torch.compile takes the plain path."""
    keep = targets != IGNORE_INDEX  # (rows, T)
    if hasattr(model, "_orig_mod") or not (hasattr(model, "hidden_states") and hasattr(model, "head")):
        logits = model(inputs).float()  # (rows, T, vocab)
        safe = targets.masked_fill(~keep, 0)
        token_logp = torch.log_softmax(logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
        return (token_logp * keep).sum(dim=-1)
    hidden = model.hidden_states(inputs)  # (rows, T, emb_dim)
    logits = model.head(hidden[keep]).float()  # (n_kept, vocab)
    token_logp = torch.log_softmax(logits, dim=-1).gather(-1, targets[keep].unsqueeze(-1)).squeeze(-1)
    rows = keep.nonzero()[:, 0]
    return torch.zeros(inputs.shape[0], dtype=token_logp.dtype, device=inputs.device).index_add(0, rows, token_logp)


@dataclass
class DPOOutput:
    loss: torch.Tensor          # scalar mean over pairs
    chosen_rewards: torch.Tensor    # (B,) beta * (log pi - log pi_ref) of the chosen responses
    rejected_rewards: torch.Tensor  # (B,)

    @property
    def margin(self) -> float:
        return float((self.chosen_rewards - self.rejected_rewards).mean())

    @property
    def accuracy(self) -> float:
        return float((self.chosen_rewards > self.rejected_rewards).float().mean())


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> DPOOutput:
    """The DPO objective from summed response log-probabilities (each (B,))."""
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    return DPOOutput(loss, chosen_rewards.detach(), rejected_rewards.detach())


def batch_dpo(model: nn.Module, batch: Batch, beta: float) -> DPOOutput:
    inputs, targets, ref = batch
    if torch.isnan(ref).any():
        raise ScratchError("DPO needs the reference log-probabilities first (DPOTask.precompute_reference)")
    logp = sequence_logprobs(model, inputs, targets)
    half = inputs.shape[0] // 2
    return dpo_loss(logp[:half], logp[half:], ref[:half], ref[half:], beta)


# --- the task -----------------------------------------------------------------------------------------


class DPOTask(FineTuneTask):
    """Task protocol (training/task.py) for preference tuning; saves instruct checkpoints."""

    name = "dpo"
    checkpoint_kind = "instruct"
    best_metric = "val_loss"   # the DPO loss on the val pairs (so the plots and pickers read it like any loss)
    best_mode = "min"
    loss_is_lm = False         # no perplexity: the DPO loss is not a per-token cross-entropy

    def __init__(self, data: PreferenceData, beta: float = 0.1, batch_size: int = 8, max_length: int | None = None,
                 seed: int = 123, lora_base: str | Path | None = None):
        if not beta > 0:
            raise ScratchError(f"--beta must be above 0, got {beta}")
        super().__init__(data, batch_size, seed, lora_base=lora_base)
        self.beta, self.max_length = beta, max_length
        self._lengths = [p.length for p in data.encoded_train]
        self._window: list[tuple[float, float]] = []  # (margin, accuracy) per micro-batch since the last step event

    @torch.no_grad()
    def precompute_reference(self, model: nn.Module, progress=None) -> None:
        """log pi_ref of every train and val response, with `model` as the frozen reference (eval mode)."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        pairs = self.data.encoded_train + self.data.encoded_val
        try:
            for start in range(0, len(pairs), self.batch_size):
                chunk = pairs[start:start + self.batch_size]
                inputs, targets, _ = collate_pairs(chunk, self.max_length)
                logp = sequence_logprobs(model, inputs.to(device), targets.to(device)).cpu()
                for j, pair in enumerate(chunk):
                    pair.ref_chosen, pair.ref_rejected = float(logp[j]), float(logp[len(chunk) + j])
                if progress is not None:
                    progress(min(start + self.batch_size, len(pairs)), len(pairs))
        finally:
            model.train(was_training)

    # Batches
    def num_train_batches(self, world_size: int = 1) -> int:
        total = math.ceil(len(self.data.encoded_train) / self.batch_size)
        return total if world_size == 1 else total // world_size

    def train_batches(self, epoch: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        order = batch_order(self._lengths, self.batch_size, self.seed, epoch)
        for i in range(self.num_train_batches(world_size)):
            yield collate_pairs([self.data.encoded_train[j] for j in order[i * world_size + rank]], self.max_length)

    def tokens_in(self, batch: Batch) -> int:
        return int((batch[1] != IGNORE_INDEX).sum())

    # Loss and metrics
    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        out = batch_dpo(model, batch, self.beta)
        self._window.append((out.margin, out.accuracy))
        return out.loss

    def step_metrics(self) -> dict[str, float]:
        """Extra fields for the Trainer's step event: the training reward margin and accuracy since the last one."""
        if not self._window:
            return {}
        margins, accs = zip(*self._window)
        self._window = []
        return {"reward_margin": round(sum(margins) / len(margins), 4),
                "reward_acc": round(sum(accs) / len(accs), 4)}

    def _metrics(self, model: nn.Module, pairs: Sequence[EncodedPair], max_batches: int | None) -> dict[str, float]:
        device = next(model.parameters()).device
        losses, chosen, rejected = [], [], []
        for i, start in enumerate(range(0, len(pairs), self.batch_size)):
            if max_batches is not None and i >= max_batches:
                break
            batch = tuple(t.to(device) for t in collate_pairs(pairs[start:start + self.batch_size], self.max_length))
            out = batch_dpo(model, batch, self.beta)
            losses.append(float(out.loss) * len(out.chosen_rewards))
            chosen.append(out.chosen_rewards.float().cpu())
            rejected.append(out.rejected_rewards.float().cpu())
        c, r = torch.cat(chosen), torch.cat(rejected)
        return {"loss": sum(losses) / len(c), "reward_margin": float((c - r).mean()),
                "reward_acc": float((c > r).float().mean())}

    def evaluate(self, model: nn.Module, max_batches: int | None) -> dict[str, float]:
        model = getattr(model, "module", model)
        val = self._metrics(model, self.data.encoded_val, max_batches)
        n_val_batches = math.ceil(len(self.data.encoded_val) / self.batch_size)
        train = self._metrics(model, self.data.encoded_train, max_batches or n_val_batches)
        return {"val_loss": val["loss"], "val_reward_margin": val["reward_margin"], "val_reward_acc": val["reward_acc"],
                "train_eval_loss": train["loss"], "train_reward_margin": train["reward_margin"],
                "train_reward_acc": train["reward_acc"]}

    def sample(self, model: nn.Module, prompt: str, sampling) -> str:
        from chatgpt_scratch.generation import generate_text

        example = self.data.val[0]
        return generate_text(getattr(model, "module", model), self.data.template.prompt(example.instruction,
                             example.input), sampling, stop_strings=self.data.template.stop_strings)

    def metadata(self) -> dict[str, Any]:
        return {"template": self.data.template.name, "dpo_beta": self.beta, "max_length": self.max_length,
                "batch_size": self.batch_size, **self.data.info}

