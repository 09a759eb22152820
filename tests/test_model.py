"""The GPT model: its parts compute their formulas, caches and padding change nothing, sizes match GPT-2."""

from __future__ import annotations

import math

import pytest
import torch

from chatgpt_scratch.attention import MultiHeadAttentionWrapper
from chatgpt_scratch.config import PRESETS, GPTConfig, get_preset
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.model import GELU, IGNORE_INDEX, GPTModel, LayerNorm, format_params, to_classifier

TINY = PRESETS["test-tiny"].with_(vocab_size=300)


@pytest.fixture(scope="module")
def model() -> GPTModel:
    torch.manual_seed(0)
    return GPTModel(TINY).eval()


def test_gelu_is_the_tanh_formula():
    x = torch.linspace(-6, 6, 1001)
    formula = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    assert torch.allclose(GELU()(x), formula, atol=1e-6)


def test_layer_norm_is_the_books_mean_var_formula():
    torch.manual_seed(0)
    norm = LayerNorm(10)
    with torch.no_grad():
        norm.scale.normal_()
        norm.shift.normal_()
    x = torch.randn(3, 4, 10) * 5 + 2
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    expected = norm.scale * (x - mean) / torch.sqrt(var + 1e-5) + norm.shift
    assert torch.allclose(norm(x), expected, atol=1e-5)


def test_model_equals_textbook_blocks_with_copied_weights(model):
    """Rebuild the forward pass from the book's pieces (multi-head wrapper of causal heads) and compare."""
    cfg = model.cfg
    idx = torch.randint(0, cfg.vocab_size, (2, 11), generator=torch.Generator().manual_seed(1))
    hd = cfg.head_dim
    with torch.no_grad():
        x = model.tok_emb(idx) + model.pos_emb(torch.arange(11))
        for block in model.trf_blocks:
            book = MultiHeadAttentionWrapper(cfg.emb_dim, cfg.emb_dim, cfg.context_length, 0.0, cfg.n_heads,
                                             qkv_bias=cfg.qkv_bias).eval()
            for h, head in enumerate(book.heads):
                for part, lin in enumerate((head.W_query, head.W_key, head.W_value)):
                    rows = slice(part * cfg.emb_dim + h * hd, part * cfg.emb_dim + (h + 1) * hd)
                    lin.weight.copy_(block.att.qkv.weight[rows])
                    lin.bias.copy_(block.att.qkv.bias[rows])
            book.out_proj.load_state_dict(block.att.out_proj.state_dict())
            x = x + book(block.norm1(x))
            x = x + block.ff(block.norm2(x))
        expected = model.out_head(model.final_norm(x))
        assert torch.allclose(model(idx), expected, atol=1e-5)


def test_kv_cache_chunks_equal_full_forward(model):
    idx = torch.randint(0, TINY.vocab_size, (2, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(idx)
        cache = model.new_cache(batch=2)
        chunks = [model(idx[:, a:b], cache) for a, b in ((0, 7), (7, 8), (8, 9), (9, 20))]
    assert cache.length == 20
    assert torch.allclose(torch.cat(chunks, dim=1), full, atol=1e-5)


def test_left_padded_batch_rows_equal_single_rows(model):
    g = torch.Generator().manual_seed(3)
    rows = [torch.randint(0, TINY.vocab_size, (n,), generator=g) for n in (4, 9, 6)]
    width = 9
    idx = torch.stack([torch.cat([torch.zeros(width - len(r), dtype=torch.long), r]) for r in rows])
    mask = torch.stack([torch.cat([torch.zeros(width - len(r)), torch.ones(len(r))]) for r in rows]).long()
    nxt = torch.tensor([[7], [8], [9]])
    with torch.no_grad():
        cache = model.new_cache(batch=3)
        batch_logits = model(idx, cache, attention_mask=mask)
        mask2 = torch.cat([mask, torch.ones(3, 1, dtype=torch.long)], dim=1)
        step_logits = model(nxt, cache, attention_mask=mask2)  # one cached decoding step
        for i, r in enumerate(rows):
            single = model(torch.cat([r, nxt[i]])[None])
            assert torch.allclose(batch_logits[i, width - len(r):], single[0, :-1], atol=1e-5)
            assert torch.allclose(step_logits[i, 0], single[0, -1], atol=1e-5)


def meta_model(cfg: GPTConfig) -> GPTModel:
    with torch.device("meta"):  # shapes only: counting 1.5B parameters costs no memory
        return GPTModel(cfg)


@pytest.mark.parametrize("name, count", [
    ("gpt2-small", 124_439_808), ("gpt2-medium", 354_823_168),
    ("gpt2-large", 774_030_080), ("gpt2-xl", 1_557_611_200),
])
def test_gpt2_parameter_counts(name, count):
    # The counts transformers reports for GPT2LMHeadModel (embedding and head tied).
    assert meta_model(PRESETS[name]).num_parameters() == count


def test_the_books_untied_figures():
    book_cfg = PRESETS["gpt2-small"].with_(tie_embeddings=False, qkv_bias=False)
    m = meta_model(book_cfg)
    assert m.num_parameters() == 163_009_536  # ch04: "Total number of parameters: 163,009,536"
    assert m.num_parameters() - m.out_head.weight.numel() == 124_412_160  # "... considering weight tying"
    assert format_params(m.num_parameters()) == "163.0M"


def test_memory_estimate():
    m = meta_model(PRESETS["gpt2-small"])
    assert m.memory_bytes() == 124_439_808 * 4
    assert m.memory_bytes(torch.bfloat16) == 124_439_808 * 2
    assert meta_model(PRESETS["gpt2-small"].with_(tie_embeddings=False, qkv_bias=False)).memory_bytes() / 2**20 \
        == pytest.approx(621.83, abs=0.01)  # the book's "Total size of the model: 621.83 MB"


def test_to_classifier_outputs_one_score_per_class():
    torch.manual_seed(0)
    m = GPTModel(TINY).eval()
    idx = torch.randint(0, TINY.vocab_size, (2, 7))
    with torch.no_grad():
        body = m.hidden_states(idx)
        clf = to_classifier(m, 3)
        assert clf(idx).shape == (2, 7, 3)
        assert torch.equal(clf.hidden_states(idx), body)  # the body is kept
    assert clf.cfg.n_classes == 3 and clf.out_head.bias is not None


def test_loss_inside_the_model_equals_cross_entropy_of_its_logits(model):
    """forward(targets=) is the training path (one graph for torch.compile); it must be the plain loss,
    with IGNORE_INDEX targets left out, and gradients must match too."""
    torch.manual_seed(1)
    idx = torch.randint(0, TINY.vocab_size, (3, 9))
    targets = torch.randint(0, TINY.vocab_size, (3, 9))
    targets[0, 4:] = IGNORE_INDEX
    logits = model(idx)
    keep = targets != IGNORE_INDEX
    expected = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    got = model(idx, targets=targets)
    assert got.dtype == torch.float32 and got.ndim == 0
    torch.testing.assert_close(got, expected)
    (g_expected,) = torch.autograd.grad(expected, model.tok_emb.weight)
    (g_got,) = torch.autograd.grad(got, model.tok_emb.weight)
    torch.testing.assert_close(g_got, g_expected)


def test_padded_vocabulary_computes_the_same_and_never_predicts_its_extra_rows():
    cfg = TINY.with_(vocab_multiple=64)  # 300 -> 320 rows
    assert cfg.padded_vocab_size == 320 and TINY.padded_vocab_size == 300
    torch.manual_seed(0)
    padded = GPTModel(cfg)
    assert padded.tok_emb.weight.shape[0] == 320 and padded.out_head.weight.shape[0] == 320
    plain = GPTModel(TINY)
    state = {k: (v[:300] if k in ("tok_emb.weight", "out_head.weight") else v) for k, v in padded.state_dict().items()}
    plain.load_state_dict(state)
    idx = torch.randint(0, 300, (2, 9))
    targets = torch.randint(0, 300, (2, 9))
    logits = padded(idx)
    assert logits.shape == (2, 9, 300)  # the padding rows are cut off: never sampled
    torch.testing.assert_close(logits, plain(idx))
    loss = padded(idx, targets=targets)
    torch.testing.assert_close(loss, plain(idx, targets=targets))
    loss.backward()
    assert padded.tok_emb.weight.grad[300:].abs().max() == 0  # no gradient: the extra rows stay as they are
    assert padded.num_flop_parameters() == plain.num_flop_parameters()
    tied = TINY.with_(vocab_multiple=64, tie_embeddings=True)  # TINY is untied: check the tied count too
    assert GPTModel(tied).num_flop_parameters() == GPTModel(tied.with_(vocab_multiple=1)).num_flop_parameters()


def test_set_drop_rate_reaches_every_dropout():
    torch.manual_seed(0)
    m = GPTModel(TINY)  # drop_rate 0: training-mode forwards are deterministic
    idx = torch.randint(0, TINY.vocab_size, (1, 9))
    m.train()
    assert torch.equal(m(idx), m(idx))
    m.set_drop_rate(0.5)
    assert m.cfg.drop_rate == 0.5 and not torch.equal(m(idx), m(idx))
    assert {mod.p for mod in m.modules() if isinstance(mod, torch.nn.Dropout)} == {0.5}
    assert all(b.att.dropout == 0.5 for b in m.trf_blocks)
    with pytest.raises(ScratchError, match="drop_rate must be in"):
        m.set_drop_rate(1.5)


def test_activation_checkpointing_gives_the_same_gradients_for_far_less_saved_memory():
    cfg = TINY.with_(drop_rate=0.1, n_layers=4)  # dropout on: the recomputed blocks must reuse its masks
    idx = torch.randint(0, cfg.vocab_size, (2, 24), generator=torch.Generator().manual_seed(3))
    results = {}
    for recompute in (False, True):
        torch.manual_seed(0)
        m = GPTModel(cfg).train()
        m.activation_checkpointing = recompute
        weights = {p.untyped_storage().data_ptr() for p in m.parameters()}
        kept = {}  # the distinct storages autograd keeps for the backward pass

        def remember(t: torch.Tensor) -> torch.Tensor:
            kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(remember, lambda t: t):
            torch.manual_seed(1)
            loss = m(idx, targets=idx)
        loss.backward()
        saved = sum(n for ptr, n in kept.items() if ptr not in weights)
        results[recompute] = (loss.detach(), {n: p.grad for n, p in m.named_parameters()}, saved)
    (loss_a, grads_a, mem_a), (loss_b, grads_b, mem_b) = results[False], results[True]
    torch.testing.assert_close(loss_b, loss_a, rtol=0, atol=0)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=0, atol=1e-6)
    assert mem_b < 0.5 * mem_a


def test_too_long_input_is_a_clear_error(model):
    with pytest.raises(ScratchError) as e:
        model(torch.zeros(1, TINY.context_length + 1, dtype=torch.long))
    assert str(e.value) == "65 tokens do not fit the model's context of 64; shorten the input"
    cache = model.new_cache()
    with torch.no_grad():
        model(torch.zeros(1, 60, dtype=torch.long), cache)
    with pytest.raises(ScratchError, match="68 tokens do not fit"):
        model(torch.zeros(1, 8, dtype=torch.long), cache)


@pytest.mark.parametrize("changes, message", [
    (dict(emb_dim=30, n_heads=4), "model config: emb_dim (30) must be divisible by n_heads (4)"),
    (dict(n_layers=0), "model config: n_layers must be a positive integer, got 0"),
    (dict(drop_rate=1.0), "model config: drop_rate must be in [0, 1), got 1.0"),
    (dict(n_classes=1), "model config: n_classes must be at least 2, got 1"),
])
def test_config_validation_messages(changes, message):
    with pytest.raises(ScratchError) as e:
        PRESETS["test-tiny"].with_(**changes)
    assert str(e.value) == message


def test_config_json_roundtrip_and_errors():
    cfg = PRESETS["cpu-mini"]
    assert GPTConfig.from_json(cfg.to_json()) == cfg
    # vocab_multiple is written only when set: an unpadded model's header is what older versions read
    assert "vocab_multiple" not in cfg.to_json()
    padded = cfg.with_(vocab_multiple=64)
    assert GPTConfig.from_json(padded.to_json()) == padded
    with pytest.raises(ScratchError, match=r"unknown keys \['flash'\]"):
        GPTConfig.from_json('{"flash": true}')
    with pytest.raises(ScratchError, match="unknown preset 'gpt5'"):
        get_preset("gpt5")
    assert get_preset("124M") == PRESETS["gpt2-small"]
