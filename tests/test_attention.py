"""Attention: each textbook class computes its formula, and the fast module equals the textbook stack."""

from __future__ import annotations

import math

import pytest
import torch

from chatgpt_scratch.attention import (
    CausalAttention,
    MultiHeadAttention,
    MultiHeadAttentionWrapper,
    SelfAttentionV1,
    SelfAttentionV2,
)

# The book's running example: "Your journey starts with one step", 3-d embeddings.
INPUTS = torch.tensor([
    [0.43, 0.15, 0.89],  # Your
    [0.55, 0.87, 0.66],  # journey
    [0.57, 0.85, 0.64],  # starts
    [0.22, 0.58, 0.33],  # with
    [0.77, 0.25, 0.10],  # one
    [0.05, 0.80, 0.55],  # step
])


def test_self_attention_v1_hand_computed():
    att = SelfAttentionV1(2, 2)
    with torch.no_grad():
        for w in (att.W_query, att.W_key, att.W_value):
            w.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # q = k = v = x; scores = I / √2; each row softmax([1/√2, 0]) = [σ(1/√2), 1 - σ(1/√2)].
    a = 1 / (1 + math.exp(-1 / math.sqrt(2)))
    expected = torch.tensor([[a, 1 - a], [1 - a, a]])
    assert torch.allclose(att(x), expected, atol=1e-6)


def test_self_attention_v1_matches_the_book():
    torch.manual_seed(123)
    out = SelfAttentionV1(3, 2)(INPUTS)
    book = torch.tensor([[0.2996, 0.8053], [0.3061, 0.8210], [0.3058, 0.8203],
                         [0.2948, 0.7939], [0.2927, 0.7891], [0.2990, 0.8040]])
    assert torch.allclose(out, book, atol=1e-4)


def test_self_attention_v2_matches_the_book_and_v1_with_copied_weights():
    torch.manual_seed(789)
    v2 = SelfAttentionV2(3, 2)
    book = torch.tensor([[-0.0739, 0.0713], [-0.0748, 0.0703], [-0.0749, 0.0702],
                         [-0.0760, 0.0685], [-0.0763, 0.0679], [-0.0754, 0.0693]])
    assert torch.allclose(v2(INPUTS), book, atol=1e-4)
    v1 = SelfAttentionV1(3, 2)
    with torch.no_grad():  # nn.Linear keeps W transposed: (d_out, d_in)
        v1.W_query.copy_(v2.W_query.weight.T)
        v1.W_key.copy_(v2.W_key.weight.T)
        v1.W_value.copy_(v2.W_value.weight.T)
    assert torch.allclose(v1(INPUTS), v2(INPUTS), atol=1e-6)


def test_causal_attention_is_masked_softmax_formula():
    torch.manual_seed(0)
    att = CausalAttention(3, 4, context_length=6, dropout=0.0).eval()
    batch = torch.stack([INPUTS, INPUTS.flip(0)])  # (2, 6, 3)
    q, k, v = att.W_query(batch), att.W_key(batch), att.W_value(batch)
    expected = torch.empty(2, 6, 4)
    for b in range(2):
        for i in range(6):  # token i attends to tokens 0..i only
            w = torch.softmax(q[b, i] @ k[b, : i + 1].T / math.sqrt(4), dim=-1)
            expected[b, i] = w @ v[b, : i + 1]
    assert torch.allclose(att(batch), expected, atol=1e-6)
    # The first token sees only itself: its output is its own value.
    assert torch.allclose(att(batch)[:, 0], v[:, 0], atol=1e-6)


def fast_from_wrapper(wrapper: MultiHeadAttentionWrapper, d_in: int, d_out: int, heads: int, bias: bool,
                      context_length: int) -> MultiHeadAttention:
    """A fast MultiHeadAttention holding the wrapper's weights: each head's rows go into the fused qkv."""
    fast = MultiHeadAttention(d_in, d_out, context_length, dropout=0.0, num_heads=heads, qkv_bias=bias)
    hd = d_out // heads
    with torch.no_grad():
        for h, head in enumerate(wrapper.heads):
            for block, lin in enumerate((head.W_query, head.W_key, head.W_value)):
                rows = slice(block * d_out + h * hd, block * d_out + (h + 1) * hd)
                fast.qkv.weight[rows] = lin.weight
                if bias:
                    fast.qkv.bias[rows] = lin.bias
        fast.out_proj.load_state_dict(wrapper.out_proj.state_dict())
    return fast


@pytest.mark.parametrize("bias", [False, True])
def test_fast_multi_head_equals_textbook_wrapper(bias):
    torch.manual_seed(1)
    d_in, d_out, heads, ctx = 6, 8, 4, 10
    wrapper = MultiHeadAttentionWrapper(d_in, d_out, ctx, dropout=0.3, num_heads=heads, qkv_bias=bias).eval()
    fast = fast_from_wrapper(wrapper, d_in, d_out, heads, bias, ctx).eval()
    x = torch.randn(3, 7, d_in)
    assert torch.allclose(fast(x), wrapper(x), atol=1e-6)
    fast.record_weights = True  # the explicit softmax path
    assert torch.allclose(fast(x), wrapper(x), atol=1e-6)


def test_record_weights_path_equals_sdpa_and_weights_are_causal():
    torch.manual_seed(2)
    att = MultiHeadAttention(16, 16, context_length=12, dropout=0.0, num_heads=4).eval()
    x = torch.randn(2, 9, 16)
    fast = att(x)
    att.record_weights = True
    explicit = att(x)
    assert torch.allclose(fast, explicit, atol=1e-6)
    w = att.last_weights  # (batch, heads, n_queries, n_keys)
    assert w.shape == (2, 4, 9, 9)
    assert torch.allclose(w.sum(-1), torch.ones(2, 4, 9), atol=1e-6)
    assert torch.all(w.triu(diagonal=1) == 0)
    assert torch.all(w[..., torch.ones(9, 9, dtype=torch.bool).tril()] > 0)  # every earlier token gets some weight


def test_kv_cache_chunks_equal_one_pass_and_padding_keys_are_ignored():
    from chatgpt_scratch.attention import KVCache

    torch.manual_seed(3)
    att = MultiHeadAttention(16, 16, context_length=12, dropout=0.0, num_heads=2).eval()
    x = torch.randn(1, 8, 16)
    cache = KVCache(1, 1, 2, 12, 8)
    parts = []
    for chunk in (x[:, :3], x[:, 3:4], x[:, 4:8]):
        parts.append(att(chunk, cache, 0))
        cache.length += chunk.shape[1]
    assert torch.allclose(torch.cat(parts, dim=1), att(x), atol=1e-6)

    # Two padding keys in front change nothing for the real tokens, on both paths.
    padded = torch.cat([torch.randn(1, 2, 16), x[:, :5]], dim=1)
    real = torch.tensor([[False, False, True, True, True, True, True]])
    unpadded = att(x[:, :5])
    for record in (False, True):
        att.record_weights = record
        assert torch.allclose(att(padded, key_is_real=real)[:, 2:], unpadded, atol=1e-6)
    assert torch.all(att.last_weights[..., 2:, :2] == 0)  # real queries give padding keys no weight
