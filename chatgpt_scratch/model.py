"""The GPT model: GPT-2's architecture written out in plain PyTorch.

Module names follow the book (tok_emb, trf_blocks, att, ff, norm1, ...), so its
chapters map line by line onto this file.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from chatgpt_scratch.attention import KVCache, MultiHeadAttention
from chatgpt_scratch.config import GPTConfig
from chatgpt_scratch.errors import ScratchError

IGNORE_INDEX = -100  # a target that takes no part in the loss (padding, masked prompt tokens)


class LayerNorm(nn.Module):
    """Normalise each token's features to mean 0, variance 1, then scale and shift (learned)."""

    def __init__(self, emb_dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Same as (x - mean) / sqrt(biased var + eps) * scale + shift, in one fused kernel.
        return F.layer_norm(x, self.scale.shape, self.scale, self.shift, self.eps)


class GELU(nn.Module):
    """GPT-2's GELU: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")


class FeedForward(nn.Module):
    """Expand each token to 4x the width, apply GELU, project back."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim),
            GELU(),
            nn.Linear(4 * cfg.emb_dim, cfg.emb_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: x + attention(norm(x)), then x + feed_forward(norm(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.norm1 = LayerNorm(cfg.emb_dim)
        self.att = MultiHeadAttention(
            d_in=cfg.emb_dim, d_out=cfg.emb_dim, context_length=cfg.context_length,
            dropout=cfg.drop_rate, num_heads=cfg.n_heads, qkv_bias=cfg.qkv_bias,
        )
        self.norm2 = LayerNorm(cfg.emb_dim)
        self.ff = FeedForward(cfg)
        self.drop_shortcut = nn.Dropout(cfg.drop_rate)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0,
                key_is_real: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_shortcut(self.att(self.norm1(x), cache, layer, key_is_real))
        return x + self.drop_shortcut(self.ff(self.norm2(x)))


class GPTModel(nn.Module):
    """Token + position embeddings, n_layers transformer blocks, final norm, output head.

    forward(idx) -> logits (batch, n_tokens, vocab_size), or (…, n_classes) for a classifier.
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.padded_vocab_size, cfg.emb_dim)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.trf_blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.final_norm = LayerNorm(cfg.emb_dim)
        # A classifier head has a bias (as in the book's ch06); the LM head has none.
        head_rows = cfg.n_classes if cfg.n_classes is not None else cfg.padded_vocab_size
        self.out_head = nn.Linear(cfg.emb_dim, head_rows, bias=cfg.n_classes is not None)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            # GPT-2: scale the projections that write into the residual stream by 1/√(2·n_layers).
            if name.endswith(("att.out_proj.weight", "ff.layers.2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))
        if cfg.tie_embeddings:
            self.out_head.weight = self.tok_emb.weight
        self.activation_checkpointing = False  # trade compute for training memory: see run_block

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None,
                attention_mask: torch.Tensor | None = None, targets: torch.Tensor | None = None) -> torch.Tensor:
        """idx: (batch, n_tokens) token ids.

        cache: continue after the cache.length tokens it already holds (and add these).
        attention_mask: (batch, cached + n_tokens), 1 for real tokens, 0 for left padding;
        padding is never attended to and does not advance the positions.
        targets: (batch, n_tokens) next-token ids, IGNORE_INDEX where there is none: return the mean
        cross-entropy (float32) instead of the logits. Inside the model, torch.compile fuses head and loss,
        so the (batch, n_tokens, vocab) logits are never copied to float32 in memory.
        """
        logits = self.head(self.hidden_states(idx, cache, attention_mask))
        if targets is None:
            return logits
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Output head: (…, emb_dim) -> (…, out_dim) logits. The rows of a padded vocabulary
        (cfg.vocab_multiple) are cut off here, so they are never predicted and get no gradient."""
        logits = self.out_head(hidden)
        return logits if logits.shape[-1] == self.cfg.out_dim else logits[..., :self.cfg.out_dim]

    def hidden_states(self, idx: torch.Tensor, cache: KVCache | None = None,
                      attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The final-norm output (batch, n_tokens, emb_dim), before the head."""
        x = self.embed(idx, cache, attention_mask)
        key_is_real = attention_mask.bool() if attention_mask is not None else None
        for layer in range(len(self.trf_blocks)):
            x = self.run_block(layer, x, cache, key_is_real)
        if cache is not None:
            cache.length += idx.shape[1]
        return self.final_norm(x)

    def run_block(self, layer: int, x: torch.Tensor, cache: KVCache | None = None,
                  key_is_real: torch.Tensor | None = None) -> torch.Tensor:
        """Transformer block `layer` on x (batch, n_tokens, emb_dim). With activation checkpointing
        (training only) just the block's input is kept, and backward runs the block again, with
        the same dropout masks: the same gradients for far less memory."""
        block = self.trf_blocks[layer]
        if self.activation_checkpointing and self.training and torch.is_grad_enabled() and cache is None:
            return checkpoint(block, x, None, layer, key_is_real, use_reentrant=False)
        return block(x, cache, layer, key_is_real)

    def embed(self, idx: torch.Tensor, cache: KVCache | None = None,
              attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Token + position embeddings (batch, n_tokens, emb_dim), with dropout."""
        n_tokens = idx.shape[1]
        start = cache.length if cache is not None else 0
        if start + n_tokens > self.cfg.context_length:
            raise ScratchError(
                f"{start + n_tokens} tokens do not fit the model's context of {self.cfg.context_length}; "
                "shorten the input"
            )
        if attention_mask is None:
            positions = torch.arange(start, start + n_tokens, device=idx.device)
        else:  # left padding: the first real token of each row is position 0
            positions = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)[:, -n_tokens:]
        return self.drop_emb(self.tok_emb(idx) + self.pos_emb(positions))

    def set_drop_rate(self, p: float) -> None:
        """Change the dropout of every layer (e.g. to continue training a checkpoint with another rate)."""
        self.cfg = self.cfg.with_(drop_rate=p)  # validates p
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.p = p
            elif isinstance(module, MultiHeadAttention):
                module.dropout = p

    def new_cache(self, batch: int = 1, max_len: int | None = None) -> KVCache:
        p = self.tok_emb.weight
        return KVCache(self.cfg.n_layers, batch, self.cfg.n_heads, max_len or self.cfg.context_length,
                       self.cfg.head_dim, device=p.device, dtype=p.dtype)

    @property
    def device(self) -> torch.device:
        return self.tok_emb.weight.device

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameter count; a tied embedding/head matrix counts once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def num_flop_parameters(self) -> int:
        """The N of MFU's 6·N FLOPs per token: the parameters used as matmul weights for every token,
        i.e. all but the position embedding (a lookup) and the rows of a padded vocabulary."""
        padding_rows = self.cfg.padded_vocab_size - self.cfg.vocab_size
        padded_matrices = 1 if self.cfg.tie_embeddings or self.cfg.n_classes is not None else 2  # emb (+ head)
        return (self.num_parameters() - self.pos_emb.weight.numel()
                - padding_rows * self.cfg.emb_dim * padded_matrices)

    def memory_bytes(self, dtype: torch.dtype = torch.float32) -> int:
        """Bytes the weights take in the given dtype (not counting activations or caches)."""
        return self.num_parameters() * torch.empty((), dtype=dtype).element_size()


def to_classifier(model: GPTModel, n_classes: int) -> GPTModel:
    """Swap the vocabulary head for a fresh n-class head (book ch06); the body is kept as is."""
    cfg = model.cfg.with_(n_classes=n_classes, tie_embeddings=False)
    model.cfg = cfg
    model.out_head = nn.Linear(cfg.emb_dim, n_classes).to(model.device)
    return model


def format_params(n: int) -> str:
    """124439808 -> '124.4M'."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def __getattr__(name: str):
    # quantize_int8 moved to inference.py (it prepares a trained model for CPU inference; the model file
    # holds the model). The old name keeps working for notebooks, with a DeprecationWarning.
    if name == "quantize_int8":
        import warnings

        from chatgpt_scratch.usecases.inference import quantize_int8

        warnings.warn("chatgpt_scratch.model.quantize_int8 moved to chatgpt_scratch.usecases.inference.quantize_int8",
                      DeprecationWarning, stacklevel=2)
        return quantize_int8
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
