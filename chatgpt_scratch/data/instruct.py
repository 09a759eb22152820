"""Instruction data (book ch07): load and validate Alpaca-style entries, split, encode, and batch.

An entry is {"instruction": str, "input": str (optional, may be empty), "output": str}.
A file is either a JSON list of entries or JSON Lines (one entry per line). Everything is
checked before training starts: broken JSON names the line (JSONL) or the line and column
(JSON list); a missing key or a value of the wrong type names the entry.

Batching follows the book's `custom_collate_fn`:

    ids     = prompt tokens + response tokens + <|endoftext|>
    inputs  = ids[:-1] padded with 50256 to the longest row of the batch
    targets = ids[1:]  padded with -100: the first <|endoftext|> stays a target (the model
              must learn to stop), every padding position after it is ignored by the loss
    --mask-instructions: the targets that are prompt tokens become -100 too
    --max-length: rows are cut to that many tokens

The prompt and the response are tokenized separately and concatenated, so the prompt
tokens in training are exactly those that chat feeds the model at inference time.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Iterator, Sequence, TypeVar

import torch

from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.model import IGNORE_INDEX
from chatgpt_scratch.data.templates import PromptTemplate
from chatgpt_scratch.tokenizer import ENDOFTEXT_ID

PAD_ID = ENDOFTEXT_ID  # the book pads with <|endoftext|>
BOOK_FRACTIONS = (0.85, 0.05, 0.10)  # train / val / test
REQUIRED_KEYS = ("instruction", "output")


@dataclass(frozen=True)
class InstructionExample:
    instruction: str
    input: str
    output: str

    def to_dict(self) -> dict[str, str]:
        return {"instruction": self.instruction, "input": self.input, "output": self.output}


# --- loading and validation -----------------------------------------------------------------------


def _check_instruction_entry(entry: Any, where: str) -> InstructionExample:
    if not isinstance(entry, dict):
        raise ScratchError(f"{where}: expected an object with instruction/input/output, got {type(entry).__name__}")
    for key in REQUIRED_KEYS:
        if key not in entry:
            raise ScratchError(f"{where}: missing key {key!r} (each entry needs instruction and output; "
                               "input is optional)")
    for key in ("instruction", "input", "output"):
        value = entry.get(key, "")
        if value is None and key == "input":
            continue
        if not isinstance(value, str):
            raise ScratchError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
    return InstructionExample(entry["instruction"], entry.get("input") or "", entry["output"])


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise ScratchError(f"instruction data not found: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ScratchError(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None


def parse_instruction_text(text: str, source: str = "<data>", check=None) -> list:
    """A JSON list or JSON Lines of entries -> validated examples (ScratchError naming the bad spot).

    check(entry, where) validates one entry and builds its example (default: {instruction, input, output})."""
    _check_entry = check or _check_instruction_entry
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped:
        raise ScratchError(f"{source}: the file is empty; it needs a JSON list or JSON lines of "
                           "{instruction, input, output} entries")
    if stripped.startswith("["):
        try:
            entries = json.loads(stripped)
        except json.JSONDecodeError as e:
            # Line numbers count from the first non-blank character; report the file's own line.
            line = e.lineno + text[: len(text) - len(stripped)].count("\n")
            raise ScratchError(f"{source}: broken JSON at line {line}, column {e.colno}: {e.msg}") from None
        examples = [_check_entry(entry, f"{source}: entry {i}") for i, entry in enumerate(entries)]
    else:
        examples = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                raise ScratchError(f"{source}: broken JSON on line {lineno} (column {e.colno}): {e.msg}") from None
            examples.append(_check_entry(entry, f"{source}: line {lineno}"))
    if not examples:
        raise ScratchError(f"{source}: no entries found")
    return examples


def load_instruction_data(path: str | Path) -> list[InstructionExample]:
    """Read and validate a whole file before anything trains. Entry numbers in errors count from 0."""
    path = Path(path)
    return parse_instruction_text(_read_text(path), str(path))


# --- splitting ------------------------------------------------------------------------------------


@dataclass
class InstructionSplits:
    train: list[InstructionExample]
    val: list[InstructionExample]
    test: list[InstructionExample]


Example = TypeVar("Example")
Encoded = TypeVar("Encoded")


@dataclass
class TemplatedSplits(Generic[Example, Encoded]):
    """A fine-tuning data set: the three splits raw (for responses and scores) and encoded with `template`
    (for training), plus provenance (`info`). Instruction tuning and DPO each have one."""

    train: list[Example]
    val: list[Example]
    test: list[Example]
    template: PromptTemplate
    encoded_train: list[Encoded] = field(default_factory=list)
    encoded_val: list[Encoded] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def split_examples(examples: Sequence[InstructionExample], fractions: tuple[float, float, float] = BOOK_FRACTIONS,
                   seed: int | None = None) -> InstructionSplits:
    """Train/val/test by fractions, sized as the book does (train and test rounded down, val the rest).

    seed=None keeps the file's order, which is the book's split: for its 1,100 entries the
    test split is exactly the 110 entries of instruction-data-with-response.json. A seed
    shuffles first (the same seed always gives the same split).
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ScratchError(f"split fractions must be three numbers >= 0 that sum to 1, got {fractions}")
    order = list(examples)
    if seed is not None:
        random.Random(seed).shuffle(order)
    n_train = int(len(order) * fractions[0])
    n_test = int(len(order) * fractions[2])
    train, test, val = order[:n_train], order[n_train:n_train + n_test], order[n_train + n_test:]
    if not train or not val:
        raise ScratchError(f"{len(order)} entries are too few for a train/val/test split of {fractions}")
    return InstructionSplits(train, val, test)


# --- copy augmentation ---------------------------------------------------------------------------

_WORD = re.compile(r"\b[A-Za-z][a-z]{2,}\b")
_COMMON = frozenset(
    "the and for are was were that this with from into what which who whom whose how why when where is be has "
    "have had not but can will would should could its it's his her their they them you your our out about than "
    "then there these those does did done each other some such only very more most also any all one two three".split())
COPY_AUGMENT_MAX_DF = 5  # a word in at most this many entries is content ("chlorine"), not template ("sentence")


def copy_augment(examples: Sequence[InstructionExample], k: int, seed: int = 123,
                 max_df: int = COPY_AUGMENT_MAX_DF) -> list[InstructionExample]:
    """k variants of each entry whose response repeats a rare word of its prompt, that word swapped for another.

    "What is the capital of Denmark?" -> "The capital of Denmark is Copenhagen." teaches a small model
    the book's answer format, but it learns the format faster than it learns to copy, and answers
    "The capital of Rome is Amsterdam." In a variant every rare word (in at most `max_df` entries) that
    prompt and response share is replaced, the same way in both, by another word of the data
    ("... capital of Theatre?" -> "The capital of Theatre is Copenhagen."): the only way to get it right
    is to copy from the prompt. Seeded: the same entries, k and seed give the same variants.
    """
    if k < 0:
        raise ScratchError(f"--copy-augment must be 0 or more, got {k}")
    if k == 0:
        return []

    prompt_words = [set(_WORD.findall(f"{e.instruction} {e.input}")) for e in examples]
    answer_words = [set(_WORD.findall(e.output)) for e in examples]
    df = Counter(w for p, a in zip(prompt_words, answer_words) for w in p | a)
    pool = sorted(w for w in df if w.lower() not in _COMMON)
    rng = random.Random(seed)
    out: list[InstructionExample] = []
    for e, p, a in zip(examples, prompt_words, answer_words):
        shared = sorted(w for w in p & a if w.lower() not in _COMMON and df[w] <= max_df)
        if not shared:
            continue
        pattern = re.compile(r"\b(" + "|".join(map(re.escape, shared)) + r")\b")
        for _ in range(k):
            swap = {w: _same_case(rng.choice(pool), w) for w in shared}
            out.append(InstructionExample(*(pattern.sub(lambda m: swap[m.group(1)], text)
                                            for text in (e.instruction, e.input, e.output))))
    return out


def _same_case(word: str, like: str) -> str:
    """`word` capitalised like `like`: upper first letter for upper, lower for lower."""
    if like[0].isupper():
        return word[0].upper() + word[1:]
    return word[0].lower() + word[1:] if word[0].isupper() else word


# --- encoding and batching ------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodedExample:
    ids: list[int]        # prompt + response tokens, without the end token
    prompt_length: int    # how many of `ids` are the prompt


def encode_examples(examples: Sequence[InstructionExample], template: PromptTemplate) -> list[EncodedExample]:
    """Tokenize every example once (tiktoken's batch encoder, several threads).

    `<|endoftext|>` written inside the data stays plain text: only the end token the
    collate appends means "stop".
    """
    from chatgpt_scratch.tokenizer import get_tokenizer

    tok = get_tokenizer()
    prompts = tok.encode_ordinary_batch([template.prompt(e.instruction, e.input) for e in examples])
    responses = tok.encode_ordinary_batch([e.output for e in examples])
    return [EncodedExample(p + r, len(p)) for p, r in zip(prompts, responses)]


def collate(batch: Sequence[EncodedExample], max_length: int | None = None, mask_instructions: bool = False,
            pad_id: int = PAD_ID, ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """-> inputs (B, T), targets (B, T); T = the longest row's token count, at most max_length (dynamic padding)."""
    if not batch:
        raise ValueError("empty batch")
    rows = [ex.ids + [ENDOFTEXT_ID] for ex in batch]  # the end token the model learns to emit
    width = max(len(r) for r in rows) - 1  # inputs drop the last token, targets the first
    if max_length is not None:
        width = min(width, max_length)
    inputs = torch.full((len(batch), width), pad_id, dtype=torch.long)
    targets = torch.full((len(batch), width), ignore_index, dtype=torch.long)
    for i, (ex, row) in enumerate(zip(batch, rows)):
        n = min(len(row) - 1, width)
        inputs[i, :n] = torch.tensor(row[:n])
        targets[i, :n] = torch.tensor(row[1:n + 1])  # ends with the end token unless truncated
        if mask_instructions:
            # targets[j] is token j+1: tokens 1..prompt_length-1 are prompt, so targets[:prompt_length-1].
            targets[i, : max(ex.prompt_length - 1, 0)] = ignore_index
    return inputs, targets


def book_collate(batch, pad_token_id=50256, ignore_index=-100, allowed_max_length=None):
    """The book's ch07 custom_collate_fn, verbatim apart from the device: the readable reference.

    `collate` above computes the same tensors (a test checks it on real entries) while also
    masking prompts and skipping the per-row nonzero search.
    """
    batch_max_length = max(len(item) + 1 for item in batch)
    inputs_lst, targets_lst = [], []
    for item in batch:
        new_item = item.copy()
        new_item += [pad_token_id]
        padded = new_item + [pad_token_id] * (batch_max_length - len(new_item))
        inputs = torch.tensor(padded[:-1])
        targets = torch.tensor(padded[1:])
        mask = targets == pad_token_id
        indices = torch.nonzero(mask).squeeze()
        if indices.numel() > 1:
            targets[indices[1:]] = ignore_index
        if allowed_max_length is not None:
            inputs = inputs[:allowed_max_length]
            targets = targets[:allowed_max_length]
        inputs_lst.append(inputs)
        targets_lst.append(targets)
    return torch.stack(inputs_lst), torch.stack(targets_lst)


def batch_order(lengths: Sequence[int], batch_size: int, seed: int, epoch: int = 0,
                shuffle: bool = True, group_by_length: bool = False) -> list[list[int]]:
    """Indices of each batch of one epoch, fixed by (seed, epoch).

    group_by_length: shuffle, then sort by length inside windows of 50 batches and cut
    those into batches (similar lengths together, so less padding), then shuffle the
    batches, so the order still changes every epoch.
    """
    n = len(lengths)
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(n))
    if shuffle:
        rng.shuffle(order)
    if group_by_length:
        window = batch_size * 50
        order = [i for s in range(0, n, window) for i in sorted(order[s:s + window], key=lambda j: lengths[j])]
    batches = [order[s:s + batch_size] for s in range(0, n, batch_size)]
    if group_by_length and shuffle:
        rng.shuffle(batches)
    return batches


def iterate_batches(examples: Sequence[EncodedExample], batch_size: int, max_length: int | None = None,
                    mask_instructions: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches in order (for evaluation)."""
    for start in range(0, len(examples), batch_size):
        yield collate(examples[start:start + batch_size], max_length, mask_instructions)


def padding_fraction(examples: Sequence[EncodedExample], batches: Sequence[Sequence[int]]) -> float:
    """Share of input positions that are padding for this batching (what grouping by length saves)."""
    real = total = 0
    for b in batches:
        lengths = [len(examples[i].ids) for i in b]
        real += sum(lengths)
        total += max(lengths) * len(lengths)
    return 1 - real / max(total, 1)
