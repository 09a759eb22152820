"""Weight-only int8 / int4 Linear layers (chatgpt_scratch/quantize.py) and inference.quantize_weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.generation import SamplingConfig, generate
from chatgpt_scratch.model import GPTModel
from chatgpt_scratch.quantize import Int4Linear, Int8Linear, quantize_linears
from chatgpt_scratch.usecases.inference import quantize_weights


def _linear(n_in: int, n_out: int, bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(n_in, n_out, bias=bias)


def test_int8_weights_are_within_half_a_step_of_float32_and_the_kernel_multiplies_by_them():
    lin = _linear(64, 40)
    q = Int8Linear(lin)
    assert q.weight_int8.dtype == torch.int8 and q.weight_int8.abs().max() <= 127
    step = q.scales[:, None]  # one scale per output row
    assert ((q.dequantized() - lin.weight).abs() <= step / 2 + 1e-7).all()
    x = torch.randn(2, 3, 64)
    expected = F.linear(x, q.dequantized(), lin.bias)
    assert torch.allclose(q(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_out", [48, 50])  # 50: not a multiple of the kernel's 16-row tiles (padded, cut)
def test_int4_groups_are_within_half_a_step_and_the_kernel_multiplies_by_them(n_out):
    lin = _linear(128, n_out)
    q = Int4Linear(lin, group_size=32)
    w = lin.weight.detach().view(n_out, 4, 32)
    step = ((w.amax(-1) - w.amin(-1)) / 15)[..., None]  # one step per group of 32 inputs
    err = (q.dequantized().view(n_out, 4, 32) - w).abs()
    assert (err <= step / 2 + 1e-6).all()
    x = torch.randn(5, 128)
    out = q(x)
    assert out.shape == (5, n_out)
    assert torch.allclose(out, F.linear(x, q.dequantized(), lin.bias), atol=1e-4, rtol=1e-4)


def test_int4_refuses_sizes_it_cannot_group():
    with pytest.raises(ValueError, match="multiple of the group size"):
        Int4Linear(_linear(48, 16), group_size=32)
    with pytest.raises(ValueError, match="group_size"):
        Int4Linear(_linear(64, 16), group_size=48)


def test_bfloat16_activations_give_the_float32_result_to_bf16_rounding():
    lin = _linear(64, 32)
    x = torch.randn(4, 64)
    for q in (Int8Linear(lin), Int4Linear(lin, 32)):
        assert q(x.bfloat16()).dtype == torch.bfloat16
        assert torch.allclose(q(x.bfloat16()).float(), q(x), atol=0.05, rtol=0.02)


def _tiny_model() -> GPTModel:
    torch.manual_seed(0)
    return GPTModel(PRESETS["test-tiny"]).eval()


def test_quantize_weights_copies_every_linear_and_leaves_the_original_alone():
    model = _tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for bits, kind in ((8, Int8Linear), (4, Int4Linear)):
        q = quantize_weights(model, bits=bits)
        assert not any(type(m) is nn.Linear for m in q.modules())
        assert isinstance(q.out_head, kind) and isinstance(q.trf_blocks[0].att.qkv, kind)
        assert q.tok_emb.weight.dtype == torch.float32  # embeddings and norms keep their dtype
    assert all(type(m) is not Int8Linear for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


# Stated tolerances, relative to the float32 logits' spread on the tiny model: int8 (per-row scales)
# moves them by well under 1%, int4 (16 levels per group of 32) by a few %.
@pytest.mark.parametrize("bits, tolerance", [(8, 0.01), (4, 0.08)])
def test_quantized_logits_stay_within_the_stated_tolerance_of_float32(bits, tolerance):
    model = _tiny_model()
    ids = torch.randint(0, model.cfg.vocab_size, (2, 30), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(ids)
        out = quantize_weights(model, bits=bits)(ids)
    assert (out - ref).abs().max() <= tolerance * (ref.max() - ref.min())


def test_int8_greedy_tokens_equal_float32_on_a_tiny_model():
    model = _tiny_model()
    prompt = [464, 3290, 318, 257]
    sampling = SamplingConfig(max_new_tokens=30)
    expected = list(generate(model, prompt, sampling, stop_ids=()))
    assert list(generate(quantize_weights(model, bits=8), prompt, sampling, stop_ids=())) == expected


def test_quantize_linears_rejects_other_widths():
    with pytest.raises(ValueError, match="bits must be 8 or 4"):
        quantize_linears(_tiny_model(), bits=2)


# --- TransposedLinear and inference.fast_cpu_linears: the same numbers in the faster CPU layout ------------

def test_transposed_linear_gives_the_linear_s_numbers():
    from chatgpt_scratch.quantize import TransposedLinear

    for bias in (True, False):
        lin = _linear(48, 80, bias=bias)
        t = TransposedLinear(lin.weight, lin.bias)
        assert t.weight_t.shape == (48, 80) and t.weight_t.is_contiguous()
        for x in (torch.randn(1, 1, 48), torch.randn(3, 7, 48)):  # a decode step and a prefill
            assert torch.allclose(t(x), lin(x), atol=1e-6, rtol=1e-6)


def test_onednn_linear_gives_the_linear_s_numbers_and_shares_the_weight():
    from chatgpt_scratch.quantize import ONEDNN_LINEAR, OneDNNLinear

    if ONEDNN_LINEAR is None:
        pytest.skip("this PyTorch build has no oneDNN linear")
    for bias in (True, False):
        lin = _linear(48, 80, bias=bias)
        o = OneDNNLinear(lin.weight, lin.bias)
        assert o.weight.data_ptr() == lin.weight.data_ptr()  # shared: a tied head stays tied
        for x in (torch.randn(1, 1, 48), torch.randn(3, 7, 48)):
            assert torch.allclose(o(x), lin(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["TransposedLinear", "OneDNNLinear"])
def test_fast_cpu_linears_keeps_the_model_s_tokens_and_the_embedding(kind):
    import copy

    from chatgpt_scratch import quantize
    from chatgpt_scratch.usecases.inference import fast_cpu_linears

    if kind == "OneDNNLinear" and quantize.ONEDNN_LINEAR is None:
        pytest.skip("this PyTorch build has no oneDNN linear")
    cls = getattr(quantize, kind)
    model = _tiny_model()
    reference = copy.deepcopy(model)
    emb = model.tok_emb.weight.detach().clone()
    fast_cpu_linears(model, min_gain=0.0, kinds=(cls,))  # min_gain 0: the candidate always replaces nn.Linear
    assert sum(isinstance(m, cls) for m in model.modules()) == 4 * model.cfg.n_layers + 1  # + the (tied) head
    assert not any(type(m) is nn.Linear for m in model.modules())
    assert torch.equal(model.tok_emb.weight, emb)  # the lookup keeps its own rows
    ids = torch.randint(0, model.cfg.vocab_size, (2, 12))
    with torch.inference_mode():
        assert torch.allclose(model(ids), reference(ids), atol=1e-5, rtol=1e-5)
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=20)
    assert list(generate(model, [1, 2, 3], sampling, stop_ids=())) == list(generate(reference, [1, 2, 3], sampling, stop_ids=()))


def test_fast_cpu_linears_keeps_nn_linear_unless_a_candidate_is_faster_by_min_gain():
    import copy

    from chatgpt_scratch.usecases.inference import fast_cpu_linears

    untouched = fast_cpu_linears(copy.deepcopy(_tiny_model()), min_gain=float("inf"))  # no candidate is that fast
    assert sum(type(m) is nn.Linear for m in untouched.modules()) == 4 * untouched.cfg.n_layers + 1
