"""Self-attention, from the book's first sketch to the fast module the model runs.

Read top to bottom, this file is chapter 3 of *Build a Large Language Model (From
Scratch)*: each class adds one idea. The last one, `MultiHeadAttention`, is what
`GPTModel` uses; a test checks it computes the same function as the textbook
`MultiHeadAttentionWrapper` stack when given the same weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttentionV1(nn.Module):
    """Scaled dot-product attention with trainable weights held as raw matrices."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.W_query = nn.Parameter(torch.rand(d_in, d_out))
        self.W_key = nn.Parameter(torch.rand(d_in, d_out))
        self.W_value = nn.Parameter(torch.rand(d_in, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (n_tokens, d_in)
        queries, keys, values = x @ self.W_query, x @ self.W_key, x @ self.W_value
        scores = queries @ keys.T  # (n_tokens, n_tokens): how well each query matches each key
        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)
        return weights @ values  # (n_tokens, d_out): each row a weighted mix of the values


class SelfAttentionV2(nn.Module):
    """The same, with nn.Linear layers (better initialisation, optional bias)."""

    def __init__(self, d_in: int, d_out: int, qkv_bias: bool = False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        queries, keys, values = self.W_query(x), self.W_key(x), self.W_value(x)
        weights = torch.softmax(queries @ keys.T / keys.shape[-1] ** 0.5, dim=-1)
        return weights @ values


class CausalAttention(nn.Module):
    """Batched attention where a token may only look at itself and earlier tokens, with dropout."""

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float, qkv_bias: bool = False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)
        # 1 above the diagonal = a future token, hidden from the query.
        self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length), diagonal=1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, n_tokens, d_in)
        n_tokens = x.shape[1]
        queries, keys, values = self.W_query(x), self.W_key(x), self.W_value(x)
        scores = queries @ keys.transpose(1, 2)  # (batch, n_tokens, n_tokens)
        scores = scores.masked_fill(self.mask.bool()[:n_tokens, :n_tokens], -torch.inf)
        weights = self.dropout(torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1))
        return weights @ values


class MultiHeadAttentionWrapper(nn.Module):
    """Several causal heads side by side, outputs concatenated, then projected (as GPT-2 does)."""

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float, num_heads: int, qkv_bias: bool = False):
        super().__init__()
        if d_out % num_heads:
            raise ValueError("d_out must be divisible by num_heads")
        head_dim = d_out // num_heads
        self.heads = nn.ModuleList(
            CausalAttention(d_in, head_dim, context_length, dropout, qkv_bias) for _ in range(num_heads)
        )
        self.out_proj = nn.Linear(d_out, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(torch.cat([head(x) for head in self.heads], dim=-1))


class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated once.

    Decoding token t then costs one query against t cached keys instead of
    recomputing all t tokens through every layer. All layers share one tensor each for keys and
    values, (n_layers, batch, heads, max_len, head_dim), zero-filled (so a kernel that reads past
    `length` reads zeros, never garbage); `keys[layer]` and `values[layer]` are views of it.
    """

    def __init__(self, n_layers: int, batch: int, n_heads: int, max_len: int, head_dim: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.all_keys = torch.zeros((n_layers, batch, n_heads, max_len, head_dim), device=device, dtype=dtype)
        self.all_values = torch.zeros_like(self.all_keys)
        self._views()
        self.max_len = max_len
        self.length = 0  # tokens cached; the model advances it after all layers ran

    def _views(self) -> None:
        # one select per layer (not unbind: its views may not be written in place under autograd)
        self.keys = [self.all_keys[layer] for layer in range(len(self.all_keys))]
        self.values = [self.all_values[layer] for layer in range(len(self.all_values))]

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new (batch, heads, n_new, head_dim) keys/values; return all keys/values so far."""
        end = self.length + k.shape[2]
        self.keys[layer][:, :, self.length:end] = k
        self.values[layer][:, :, self.length:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the given batch rows (batched generation drops finished rows)."""
        self.all_keys, self.all_values = self.all_keys[:, rows], self.all_values[:, rows]
        self._views()


def attention_mask(n_queries: int, n_keys: int, key_is_real: torch.Tensor | None, device) -> torch.Tensor:
    """Boolean mask, True = may attend: causal (queries are the last n_queries positions), minus padding keys.

    key_is_real: (batch, n_keys) bool or None. Returns (n_q, n_k) or (batch, 1, n_q, n_k).
    A query always sees itself, so a padding query's row is never empty (no NaN).
    """
    offset = n_keys - n_queries
    causal = torch.ones(n_queries, n_keys, dtype=torch.bool, device=device).tril(diagonal=offset)
    if key_is_real is None:
        return causal
    itself = torch.eye(n_queries, n_keys, dtype=torch.bool, device=device).roll(offset, dims=1)
    return causal & (key_is_real[:, None, None, :] | itself)


class MultiHeadAttention(nn.Module):
    """Fast causal multi-head attention: one fused QKV matmul, PyTorch's fused kernel, a KV cache.

    Set `record_weights = True` to compute the attention weights explicitly
    (softmax(QKᵀ/√d + mask)) and keep them in `last_weights` for inspection.
    """

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float, num_heads: int, qkv_bias: bool = False):
        super().__init__()
        if d_out % num_heads:
            raise ValueError("d_out must be divisible by num_heads")
        self.num_heads, self.head_dim = num_heads, d_out // num_heads
        self.context_length = context_length
        self.qkv = nn.Linear(d_in, 3 * d_out, bias=qkv_bias)  # [W_query | W_key | W_value]
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = dropout
        self.record_weights = False
        self.last_weights: torch.Tensor | None = None  # (batch, heads, n_queries, n_keys)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0,
                key_is_real: torch.Tensor | None = None) -> torch.Tensor:
        batch, n_tokens, _ = x.shape
        # (batch, n_tokens, 3*d_out) -> three tensors of (batch, heads, n_tokens, head_dim)
        q, k, v = self.qkv(x).view(batch, n_tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = cache.write(layer, k, v)
        n_keys = k.shape[2]
        dropout = self.dropout if self.training else 0.0

        if self.record_weights:
            mask = attention_mask(n_tokens, n_keys, key_is_real, x.device)
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
            weights = torch.softmax(scores.masked_fill(~mask, -torch.inf), dim=-1)
            self.last_weights = weights.detach()
            context = F.dropout(weights, dropout, self.training) @ v
        elif key_is_real is None and n_tokens == n_keys:
            context = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        elif key_is_real is None and n_tokens == 1:
            context = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)  # one new token sees all
        else:
            mask = attention_mask(n_tokens, n_keys, key_is_real, x.device)
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)

        context = context.transpose(1, 2).reshape(batch, n_tokens, self.num_heads * self.head_dim)
        return self.out_proj(context)
