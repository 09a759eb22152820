"""Spam classification with a fine-tuned GPT: pooling, classifier forward pass, metrics, and the
`SpamClassifier` use-case that the CLI and the TUI call.

A classifier checkpoint (kind "classifier") is a GPTModel whose head maps emb_dim -> n_classes;
its metadata holds the class `labels`, the `pool` mode and the `max_length` it was trained with.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from chatgpt_scratch.errors import ScratchError

POOL_CHOICES = ("last-token", "mean")


# --- pooling and the classifier forward pass ------------------------------------------------------


def pool_hidden(hidden: torch.Tensor, lengths: torch.Tensor, pool: str = "last-token") -> torch.Tensor:
    """(B, T, D) hidden states of right-padded rows + real lengths (B,) -> one vector per row (B, D).

    last-token: the last REAL token, which (causal attention) is the only one that has read the
    whole message; the book's ablation shows it beats taking position -1, which may be a pad.
    mean: the average over the real tokens only.
    """
    if pool == "last-token":
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows, lengths.to(hidden.device) - 1]
    if pool == "mean":
        positions = torch.arange(hidden.shape[1], device=hidden.device)
        real = (positions[None, :] < lengths.to(hidden.device)[:, None]).to(hidden.dtype)  # (B, T)
        return (hidden * real[..., None]).sum(dim=1) / real.sum(dim=1, keepdim=True)
    raise ScratchError(f"unknown pooling {pool!r}; choose one of {', '.join(POOL_CHOICES)}")


def _frozen(*modules: nn.Module) -> bool:
    return not any(p.requires_grad for m in modules for p in m.parameters())


def frozen_prefix_length(model: nn.Module) -> int:
    """How many leading stages have no trainable parameter: 0 = the embeddings train, 1 = the
    embeddings are frozen, 1 + k = the embeddings and the first k blocks are frozen."""
    if not _frozen(model.tok_emb, model.pos_emb):
        return 0
    n = 1
    for block in model.trf_blocks:
        if not _frozen(block):
            break
        n += 1
    return n


class ClassifierEnsemble(nn.Module):
    """Classifiers of one shape whose class probabilities are averaged (lora.save_adapter_ensemble builds the
    file). Models trained apart (other seeds) err on different messages, so their mean errs less than each.

    classifier_logits gives it as log(mean softmax): logits whose softmax is the members' mean probability,
    so everything that reads logits (SpamClassifier, accuracy) works unchanged. Inference only.
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if len(members) < 2:
            raise ScratchError("an ensemble needs at least two members")
        self.members = nn.ModuleList(members)
        self.cfg = members[0].cfg

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    def num_parameters(self) -> int:
        return sum(m.num_parameters() for m in self.members)


def classifier_logits(model: nn.Module, ids: torch.Tensor, lengths: torch.Tensor,
                      pool: str = "last-token") -> torch.Tensor:
    """ids (B, T) right-padded, lengths (B,) -> class logits (B, n_classes).

    The frozen prefix (embeddings and leading blocks whose weights do not train) runs under
    torch.no_grad(): no graph is recorded there and none of its activations are kept, so the
    backward pass stops at the first trainable block. With the book's default (only the last
    block, final norm and head train) that drops the backward work of 11 of 12 blocks (about
    2/3 of their cost) and their activation memory: this is what makes last-block fine-tuning
    fast. Autograd alone would also skip that prefix, since neither its weights nor its input
    ids need a gradient; no_grad states it and guarantees it (benchmarks/finetune_spam.py
    measures both). Right padding needs no attention mask: with causal attention a real token
    never sees the pads after it.
    """
    model = getattr(model, "module", model)  # DDP wraps the model; we drive its parts directly
    if isinstance(model, ClassifierEnsemble):
        probs = torch.stack([torch.softmax(classifier_logits(m, ids, lengths, pool).float(), dim=-1)
                             for m in model.members]).mean(dim=0)
        return probs.log()
    n_frozen = frozen_prefix_length(model) if torch.is_grad_enabled() else 0
    with torch.no_grad() if n_frozen else contextlib.nullcontext():
        x = model.embed(ids)  # (B, T, emb_dim)
        for block in model.trf_blocks[:max(n_frozen - 1, 0)]:
            x = block(x)
    for layer in range(max(n_frozen - 1, 0), len(model.trf_blocks)):
        x = model.run_block(layer, x)
    pooled = pool_hidden(model.final_norm(x), lengths, pool)  # (B, emb_dim)
    # Pooling before the head equals pooling the per-token logits (the head is linear), at 1/T the cost.
    return model.head(pooled)


# --- metrics --------------------------------------------------------------------------------------


@dataclass
class ClassificationMetrics:
    """Scores with `positive` (spam) as the positive class; confusion[true][predicted]."""

    accuracy: float
    precision: float
    recall: float
    f1: float
    confusion: list[list[int]]
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self, labels: Sequence[str] = ("ham", "spam"), positive: int = 1) -> str:
        name = labels[positive]
        lines = [
            f"accuracy  {self.accuracy:.2%}  ({self.n} messages)",
            f"precision {self.precision:.2%}  (of messages called {name}, how many are {name})",
            f"recall    {self.recall:.2%}  (of {name} messages, how many were caught)",
            f"f1        {self.f1:.2%}",
            "confusion (rows: true, columns: predicted)",
            " " * 12 + "".join(f"{label:>8}" for label in labels),
        ]
        for label, row in zip(labels, self.confusion):
            lines.append(f"{label:>12}" + "".join(f"{count:>8}" for count in row))
        return "\n".join(lines)


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int = 2,
                           positive: int = 1) -> ClassificationMetrics:
    """Accuracy, and precision/recall/F1 of the positive class, from a confusion matrix counted by hand.
    A ratio with nothing to divide (no positive predictions, say) is 0, as sklearn's zero_division=0."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    confusion = [[0] * n_classes for _ in range(n_classes)]
    for t, p in zip(y_true, y_pred):
        confusion[int(t)][int(p)] += 1
    n = len(y_true)
    tp = confusion[positive][positive]
    predicted_pos = sum(confusion[t][positive] for t in range(n_classes))
    actual_pos = sum(confusion[positive])
    precision = tp / predicted_pos if predicted_pos else 0.0
    recall = tp / actual_pos if actual_pos else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    correct = sum(confusion[k][k] for k in range(n_classes))
    return ClassificationMetrics(correct / n if n else 0.0, precision, recall, f1, confusion, n)


# --- the use-case ---------------------------------------------------------------------------------


@dataclass
class Prediction:
    label: str                 # the most probable label
    probability: float         # its probability
    probs: dict[str, float]    # every label's probability


class SpamClassifier:
    """A fine-tuned classifier checkpoint, ready to label messages (CPU is plenty)."""

    def __init__(self, model: nn.Module, labels: Sequence[str], pool: str = "last-token",
                 max_length: int | None = None, metadata: dict[str, Any] | None = None):
        if model.cfg.n_classes != len(labels):
            raise ScratchError(f"the model has {model.cfg.n_classes} outputs but {len(labels)} labels {list(labels)}")
        self.model = model.eval()
        self.labels = list(labels)
        self.pool = pool
        self.max_length = min(max_length or model.cfg.context_length, model.cfg.context_length)
        self.metadata = metadata or {}

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "SpamClassifier":
        """Load a kind-"classifier" checkpoint (or a lora-adapter of a classifier); any other kind is a
        one-line ScratchError naming the kind needed."""
        from chatgpt_scratch.system.device import resolve_device
        from chatgpt_scratch.usecases.inference import load_for_inference

        if isinstance(device, str):
            device = resolve_device(device)
        model, meta = load_for_inference(path, device=device, dtype=torch.float32, kind="classifier")
        labels = meta.get("labels") or []
        if not isinstance(labels, list) or len(labels) != model.cfg.n_classes:
            raise ScratchError(f"{path}: its metadata has labels {labels!r}, which do not fit its "
                               f"{model.cfg.n_classes}-class head; the file was edited or is damaged")
        return cls(model, labels, meta.get("pool", "last-token"), meta.get("max_length"), meta)

    def classify(self, texts: Sequence[str], batch_size: int = 32) -> list[Prediction]:
        """One Prediction per text, in order. Texts are batched by length so little padding is computed."""
        from chatgpt_scratch.data.spam import encode_text, pad_batch

        for i, text in enumerate(texts):
            if not text.strip():
                raise ScratchError(f"message {i + 1} is empty; there is nothing to classify")
        encoded = [encode_text(t, self.max_length) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        results: list[Prediction | None] = [None] * len(texts)
        device = self.model.device
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                ids, lengths = pad_batch([encoded[i] for i in chunk])
                logits = classifier_logits(self.model, ids.to(device), lengths.to(device), self.pool)
                probs = torch.softmax(logits.float(), dim=-1).cpu()  # (B, n_classes)
                for row, i in enumerate(chunk):
                    p = probs[row].tolist()
                    best = max(range(len(p)), key=p.__getitem__)
                    results[i] = Prediction(self.labels[best], p[best], dict(zip(self.labels, p)))
        return results  # type: ignore[return-value]
