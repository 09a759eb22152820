"""SMS spam data: read messages, split them stratified, and batch them with dynamic padding.

Formats (picked by the file's extension):
- anything else: the UCI SMS Spam Collection, one `label<TAB>text` per line. We split on the
  FIRST tab (tabs inside the text stay) instead of using a CSV reader: the book's pandas read
  merges some lines that hold quote characters.
- `.csv`: a header row with `text` and `label` columns (the csv module; quoted fields may span lines).
- `.jsonl` / `.json`: one JSON object per line with `text` and `label` keys.

Labels are "ham" (0) and "spam" (1), case-insensitive; "0"/"1" are accepted in CSV/JSONL too.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.tokenizer import ENDOFTEXT_ID

LABELS: tuple[str, ...] = ("ham", "spam")
PAD_ID = ENDOFTEXT_ID  # the book pads with <|endoftext|>; pads are never pooled, so the choice does not matter
BALANCE_CHOICES = ("none", "undersample", "weight")
_LABEL_IDS = {"ham": 0, "spam": 1, "0": 0, "1": 1}


@dataclass(frozen=True)
class Message:
    text: str
    label: int  # index into LABELS


def _label_id(raw: object, where: str) -> int:
    key = str(raw).strip().lower()
    if key not in _LABEL_IDS:
        raise ScratchError(f"{where}: label {str(raw)!r} is neither 'ham' nor 'spam'; fix or delete that line")
    return _LABEL_IDS[key]


def read_uci(path: str | Path) -> list[Message]:
    """`label<TAB>text` lines; blank lines skipped; a bad line gives an error naming its number."""
    path = Path(path)
    messages = []
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            label, tab, text = line.partition("\t")
            if not tab:
                raise ScratchError(f"{path}, line {number}: no tab; each line must be `ham<TAB>text` or `spam<TAB>text`")
            messages.append(Message(text, _label_id(label, f"{path}, line {number}")))
    return messages


def read_csv(path: str | Path) -> list[Message]:
    path = Path(path)
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or [])
        if not {"text", "label"} <= columns:
            raise ScratchError(f"{path}: a CSV needs `text` and `label` columns in its header row; found {sorted(columns)}")
        messages = []
        for row in reader:
            if not (row["text"] or "").strip() and not (row["label"] or "").strip():
                continue
            messages.append(Message(row["text"], _label_id(row["label"], f"{path}, line {reader.line_num}")))
    return messages


def read_jsonl(path: str | Path) -> list[Message]:
    path = Path(path)
    messages = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ScratchError(f"{where}: not valid JSON ({e.msg}); each line must be one object") from None
            if not isinstance(row, dict) or "text" not in row or "label" not in row:
                raise ScratchError(f"{where}: each line must be an object with `text` and `label` keys")
            messages.append(Message(str(row["text"]), _label_id(row["label"], where)))
    return messages


def load_messages(path: str | Path) -> list[Message]:
    """Read any supported format; an empty file or one with a single class is an error."""
    path = Path(path)
    if not path.is_file():
        raise ScratchError(f"spam data not found: {path}")
    suffix = path.suffix.lower()
    reader = {".csv": read_csv, ".jsonl": read_jsonl, ".json": read_jsonl}.get(suffix, read_uci)
    messages = reader(path)
    counts = label_counts(messages)
    if min(counts) == 0:
        raise ScratchError(f"{path}: needs both ham and spam messages; found {counts[0]} ham and {counts[1]} spam")
    return messages


def label_counts(messages: Iterable[Message]) -> list[int]:
    counts = [0] * len(LABELS)
    for m in messages:
        counts[m.label] += 1
    return counts


def undersample(messages: Sequence[Message], seed: int) -> list[Message]:
    """The book's balanced variant: keep a random subset of each class as large as the rarest class."""
    rng = random.Random(seed)
    by_label = [[m for m in messages if m.label == k] for k in range(len(LABELS))]
    n = min(len(group) for group in by_label)
    kept = [m for group in by_label for m in rng.sample(group, n)]
    rng.shuffle(kept)
    return kept


@dataclass
class SpamSplits:
    train: list[Message]
    val: list[Message]
    test: list[Message]


def stratified_split(messages: Sequence[Message], fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
                     seed: int = 123) -> SpamSplits:
    """Shuffle each class with the seed and cut it by `fractions`, so every split keeps the class ratio."""
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ScratchError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    rng = random.Random(seed)
    splits: list[list[Message]] = [[], [], []]
    for k in range(len(LABELS)):
        group = [m for m in messages if m.label == k]
        rng.shuffle(group)
        n_train = round(len(group) * fractions[0])
        n_val = round(len(group) * fractions[1])
        splits[0] += group[:n_train]
        splits[1] += group[n_train:n_train + n_val]
        splits[2] += group[n_train + n_val:]
    for part in splits:  # mix the classes so batches are not all-ham then all-spam
        rng.shuffle(part)
    return SpamSplits(*splits)


def class_weights(messages: Sequence[Message]) -> torch.Tensor:
    """Inverse-frequency weights (n / (n_classes · count)) for the loss: each class counts as much overall."""
    counts = label_counts(messages)
    n = sum(counts)
    return torch.tensor([n / (len(counts) * c) for c in counts], dtype=torch.float32)


@dataclass(frozen=True)
class EncodedMessage:
    ids: list[int]
    label: int


def encode_text(text: str, max_length: int) -> list[int]:
    """Token ids of one message, cut to its first max_length tokens; an empty message becomes one pad token."""
    from chatgpt_scratch.tokenizer import encode

    ids = encode(text, allow_endoftext=False)[:max_length]
    return ids or [PAD_ID]


def encode_messages(messages: Sequence[Message], max_length: int) -> list[EncodedMessage]:
    return [EncodedMessage(encode_text(m.text, max_length), m.label) for m in messages]


def pad_batch(sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence of THIS batch (dynamic padding) -> ids (B, T), lengths (B,).

    Padding to the batch's own longest message instead of the data set's longest one
    (the book pads everything to 120 tokens) makes an average SMS batch several times shorter.
    Right padding needs no attention mask: causal attention never lets a real token see the
    pads that come after it, and pooling reads only real positions (via lengths).
    """
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    ids = torch.full((len(sequences), int(lengths.max())), PAD_ID, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
    return ids, lengths


def collate(batch: Sequence[EncodedMessage]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (ids (B, T), lengths (B,), labels (B,))."""
    ids, lengths = pad_batch([e.ids for e in batch])
    return ids, lengths, torch.tensor([e.label for e in batch], dtype=torch.long)
