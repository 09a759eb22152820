"""AdamW with decay on weight matrices only, and the warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: matrices of Linear layers decay; biases, norm scales/shifts and embeddings do not.

    Decaying a LayerNorm scale pulls it toward 0 (not toward its init of 1), and decaying
    embeddings shrinks rare tokens' vectors that get few gradient updates: both hurt (GPT-2, nanoGPT).
    Frozen parameters (requires_grad False) are left out; a tied head counts once (as the embedding).
    """
    embedding_params = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (no_decay if p.ndim < 2 or id(p) in embedding_params else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float,
                    betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    groups = [g for g in param_groups(model, weight_decay) if g["params"]]
    on_cuda = next(model.parameters()).is_cuda
    # fused=True is one kernel for all parameters on CUDA; the default foreach path elsewhere.
    return torch.optim.AdamW(groups, lr=lr, betas=betas, **({"fused": True} if on_cuda else {}))


def lr_at(step: int, total_steps: int, lr: float, warmup_steps: int = 0, min_lr: float | None = None) -> float:
    """Learning rate for optimizer step `step` (0-based).

    Linear warmup: lr·(step+1)/warmup for the first `warmup_steps` steps; then cosine decay
    from lr to min_lr at the last step. min_lr None means no decay (a constant lr, as in the book's ch05).
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if min_lr is None:
        return lr
    decay_steps = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))
