"""Model X-ray: every number the views show is checked against a direct computation."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from chatgpt_scratch.checkpoints import save_checkpoint
from chatgpt_scratch.cli import main
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.generation import SamplingConfig, generate, make_generator
from chatgpt_scratch.model import GPTModel, to_classifier
from chatgpt_scratch.tokenizer import encode
from chatgpt_scratch.usecases.xray_view import significant
from chatgpt_scratch.usecases.xray import (
    attention_matrix, choose_next, lens_logits, logit_lens, loss_view, next_token_view, recording_attention,
    token_label, tokenize, top_attended, visible_text, xray,
)

TEXT = "Every effort moves you forward, and the"


@pytest.fixture(scope="module")
def model() -> GPTModel:
    torch.manual_seed(0)
    m = GPTModel(PRESETS["test-tiny"])
    with torch.no_grad():  # a peaked distribution, so top-k and top-p cut something that matters
        m.out_head.weight.mul_(60.0)
    return m.eval()


@pytest.fixture(scope="module")
def ids() -> list[int]:
    return encode(TEXT)


@pytest.fixture(scope="module")
def ray(model, ids):
    return xray(model, ids)


# ---------------------------------------------------------------------------------------------- tokens


def test_tokens_make_whitespace_and_partial_bytes_visible():
    view = tokenize("Hi there\n\t🎉")
    assert [p.label for p in view.pieces] == ["Hi", "·there", "↵", "⇥", "<0xF0><0x9F>", "<0x8E>", "<0x89>"]
    assert [p.id for p in view.pieces] == encode("Hi there\n\t🎉")
    assert b"".join(p.raw for p in view.pieces).decode() == "Hi there\n\t🎉"
    assert view.n_tokens == 7 and view.n_chars == 11
    assert view.chars_per_token == pytest.approx(11 / 7)


def test_visible_text_keeps_whole_characters_and_marks_controls():
    assert visible_text("café ".encode()) == "café·"
    assert visible_text(b"\xc3") == "<0xC3>"  # half of 'é'
    assert visible_text(b"a\x00") == "a<U+0000>"
    assert token_label(50256) == "<|endoftext|>"


# ---------------------------------------------------------------------------------------------- attention


def test_attention_equals_softmax_of_scaled_scores_recomputed_from_the_qkv_weights(model, ray):
    cfg = model.cfg
    n, d, h = len(ray.ids), cfg.head_dim, cfg.n_heads
    causal = torch.triu(torch.full((n, n), -torch.inf), diagonal=1)  # -inf above the diagonal
    for layer, block in enumerate(model.trf_blocks):
        x = ray.residuals[layer]  # (n, emb): the stream entering this block
        normed = F.layer_norm(x, (cfg.emb_dim,), block.norm1.scale, block.norm1.shift, 1e-5)
        w_q, w_k, _ = block.att.qkv.weight.split(cfg.emb_dim, dim=0)
        b_q, b_k, _ = block.att.qkv.bias.split(cfg.emb_dim)
        q = (normed @ w_q.T + b_q).view(n, h, d).transpose(0, 1)  # (heads, n, head_dim)
        k = (normed @ w_k.T + b_k).view(n, h, d).transpose(0, 1)
        expected = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d) + causal, dim=-1)
        torch.testing.assert_close(ray.attention[layer], expected, atol=1e-5, rtol=1e-4)
        assert torch.all(ray.attention[layer].triu(diagonal=1) == 0)  # the causal triangle
        torch.testing.assert_close(attention_matrix(ray, layer, None), expected.mean(dim=0), atol=1e-5, rtol=1e-4)


def test_the_residual_stream_is_the_models_own(model, ray, ids):
    """The stream before block 0 is the embedding, and the final-norm of the last one gives the model's logits."""
    batch = torch.tensor([ids])
    with torch.no_grad():
        torch.testing.assert_close(ray.residuals[0], model.embed(batch)[0])
        torch.testing.assert_close(ray.logits, model(batch)[0])


def test_recording_is_switched_off_afterwards_and_output_unchanged(model, ids):
    batch = torch.tensor([ids])
    with torch.no_grad():
        plain = model(batch)
        with recording_attention(model) as rec:
            recorded = model(batch)
    assert len(rec.weights) == model.cfg.n_layers
    assert all(not b.att.record_weights and b.att.last_weights is None for b in model.trf_blocks)
    torch.testing.assert_close(recorded, plain, atol=1e-5, rtol=1e-5)


def test_top_attended_are_the_heaviest_earlier_tokens(ray):
    row = ray.attention[1, 2, 5]  # layer 1, head 2, query token 5
    got = top_attended(ray, 1, 2, 5, k=3)
    assert [a.index for a in got] == torch.topk(row[:6], 3).indices.tolist()
    assert [a.weight for a in got] == pytest.approx(torch.topk(row[:6], 3).values.tolist())
    assert len(top_attended(ray, 0, None, 1, k=5)) == 2  # token 1 sees only tokens 0 and 1


def test_bad_layer_or_head_is_a_clear_error(ray):
    with pytest.raises(ScratchError, match=r"layer must be 0\.\.1, got 2"):
        attention_matrix(ray, 2, 0)
    with pytest.raises(ScratchError, match=r"head must be 0\.\.3 \(or mean\), got 4"):
        attention_matrix(ray, 0, 4)


# ---------------------------------------------------------------------------------------------- next token


def test_top_candidates_equal_topk_of_softmax(model, ids, ray):
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0, -1]
    probs = torch.softmax(logits, dim=-1)
    view = next_token_view(ray, SamplingConfig(temperature=1.0), top=10)
    expected = torch.topk(probs, 10)
    assert [c.id for c in view.candidates] == expected.indices.tolist()
    assert [c.model_prob for c in view.candidates] == pytest.approx(expected.values.tolist(), rel=1e-5)
    assert view.top.id == int(probs.argmax())


def test_top_k_survivors_are_exactly_the_k_best_and_renormalised(ray):
    view = next_token_view(ray, SamplingConfig(temperature=0.7, top_k=5), top=8)
    final = view.final.probs
    scaled = torch.softmax(ray.logits[-1] / 0.7, dim=-1)
    best5 = torch.topk(scaled, 5).indices
    assert set(torch.nonzero(final).flatten().tolist()) == set(best5.tolist())
    assert float(final.sum()) == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(final[best5], scaled[best5] / scaled[best5].sum())
    assert [c.survives for c in view.candidates] == [True] * 5 + [False] * 3
    assert [c.cut_by for c in view.candidates] == [None] * 5 + ["top-k"] * 3
    assert [s.survivors for s in view.stages] == [50257, 50257, 5]


def test_top_p_survivors_are_the_smallest_set_reaching_p(ray):
    p = 0.6
    view = next_token_view(ray, SamplingConfig(temperature=1.0, top_p=p))
    probs = torch.softmax(ray.logits[-1].double(), dim=-1)
    ranked = torch.sort(probs, descending=True)
    n_keep = int((ranked.values.cumsum(0) < p).sum()) + 1  # smallest prefix whose mass is >= p
    expected = set(ranked.indices[:n_keep].tolist())
    assert 1 < n_keep < 100  # the test model's distribution is peaked enough to make this meaningful
    assert set(torch.nonzero(view.final.probs).flatten().tolist()) == expected
    assert float(view.final.probs.sum()) == pytest.approx(1.0, abs=1e-6)
    assert view.final.survivors == n_keep


def test_entropy_is_in_bits(ray):
    view = next_token_view(ray, SamplingConfig(temperature=1.0, top_k=4))
    probs = view.final.probs.double()
    kept = probs[probs > 0]
    assert view.final.entropy_bits == pytest.approx(float(-(kept * kept.log2()).sum()), rel=1e-6)
    greedy = next_token_view(ray, SamplingConfig(temperature=0.0))
    assert greedy.final.name == "greedy" and greedy.final.survivors == 1 and greedy.final.entropy_bits == 0.0


def test_repetition_penalty_reranks_as_sampling_does(ray):
    seen = set(ray.ids)
    logits = ray.logits.clone()
    logits[-1, ray.ids[0]] = 100.0  # the model's favourite is a token already in the text
    ray = dataclasses.replace(ray, logits=logits)
    view = next_token_view(ray, SamplingConfig(temperature=1.0, repetition_penalty=1e6), top=10)
    assert [s.name for s in view.stages] == ["model", "repetition penalty"]
    penalised = view.stages[1].probs
    assert [c.id for c in view.candidates] == torch.topk(penalised, 10).indices.tolist()
    assert seen.isdisjoint(c.id for c in view.candidates)  # every token of the text is pushed out of the top 10
    assert int(view.stages[0].probs.argmax()) == ray.ids[0]  # ...though the model itself ranks it first


def test_step_forward_top_and_sample_pick_what_generate_picks(model, ids, ray):
    sampling = SamplingConfig(temperature=1.0, top_k=5, seed=7, max_new_tokens=1)
    assert choose_next(ray, sampling, "top") == int(ray.logits[-1].argmax())
    first = next(generate(model, ids, sampling, stop_ids=()))
    assert choose_next(ray, sampling, "sample", make_generator(7)) == first
    ray2 = xray(model, ids + [first])
    assert len(ray2.ids) == len(ids) + 1 and ray2.ids[-1] == first


# ---------------------------------------------------------------------------------------------- logit lens


def test_logit_lens_last_layer_is_the_models_prediction(model, ids, ray):
    rows = logit_lens(ray)
    assert [r.layer for r in rows] == [0, 1, 2]
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0]
    torch.testing.assert_close(lens_logits(ray)[-1], logits[-1])
    assert rows[-1].top_id == int(logits[-1].argmax())
    assert rows[-1].top_prob == pytest.approx(float(torch.softmax(logits[-1], -1).max()), rel=1e-5)
    assert logit_lens(ray, 2)[-1].top_id == int(logits[2].argmax())


def test_logit_lens_middle_layer_applies_final_norm_and_head_to_the_block_output(model, ids, ray):
    captured = {}
    handle = model.trf_blocks[0].register_forward_hook(lambda m, i, out: captured.setdefault("x", out))
    with torch.no_grad():
        model(torch.tensor([ids]))
        handle.remove()
        expected = model.out_head(model.final_norm(captured["x"][0, -1]))
    torch.testing.assert_close(lens_logits(ray)[1], expected)


# ---------------------------------------------------------------------------------------------- loss


def test_per_token_loss_is_cross_entropy_and_perplexity_its_exp_mean(model, ids, ray):
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0]
    expected = F.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="none")
    view = loss_view(ray)
    assert view.tokens[0].nats is None
    assert [t.nats for t in view.tokens[1:]] == pytest.approx(expected.tolist(), rel=1e-5)
    assert [t.bits for t in view.tokens[1:]] == pytest.approx((expected / math.log(2)).tolist(), rel=1e-5)
    assert view.perplexity == pytest.approx(math.exp(float(expected.mean())), rel=1e-5)
    assert view.perplexity == pytest.approx(math.exp(float(F.cross_entropy(logits[:-1], torch.tensor(ids[1:])))),
                                            rel=1e-5)


def test_one_token_has_no_perplexity(model):
    view = loss_view(xray(model, [464]))
    assert view.perplexity is None and len(view.tokens) == 1


# ---------------------------------------------------------------------------------------------- errors


def test_classifier_empty_and_too_long_inputs_are_clear_errors(model):
    with pytest.raises(ScratchError, match="the text is empty; type some text to x-ray"):
        xray(model, [])
    with pytest.raises(ScratchError, match="65 tokens do not fit the model's context of 64; shorten the text"):
        xray(model, [13] * 65)
    torch.manual_seed(0)
    classifier = to_classifier(GPTModel(PRESETS["test-tiny"]), 2)
    with pytest.raises(ScratchError, match="classifier checkpoint; the X-ray needs a base or instruct"):
        xray(classifier, [1, 2])


def test_training_mode_is_restored(ids):
    m = GPTModel(PRESETS["test-tiny"]).train()
    xray(m, ids)
    assert m.training


# ---------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def checkpoint(model, tmp_path):
    return save_checkpoint(tmp_path / "tiny.safetensors", model, "base")


def test_cli_next_view_lists_the_libraries_top_tokens_and_cuts(checkpoint, ray, capsys):
    assert main(["xray", "--checkpoint", str(checkpoint), TEXT, "--view", "next", "--top", "4",
                 "--temperature", "0.7", "--top-k", "2"]) == 0
    out = capsys.readouterr().out
    view = next_token_view(ray, SamplingConfig(temperature=0.7, top_k=2), top=4)
    rows = [line for line in out.splitlines() if line[:4].strip().isdigit()]
    assert [int(line.split()[0]) for line in rows] == [1, 2, 3, 4]
    for line, c in zip(rows, view.candidates):
        assert f" {c.id} " in f" {line} " and c.label[:13] in line
    assert "cut by top-k" in rows[2] and "cut by top-k" in rows[3]
    assert f"pick top: {view.top.label!r} (id {view.top.id})" in out


def test_cli_all_views_and_loss_perplexity(checkpoint, ray, capsys):
    assert main(["xray", "--checkpoint", str(checkpoint), TEXT, "--layer", "0", "--head", "3", "--token", "4"]) == 0
    out = capsys.readouterr().out
    for title in ("TOKENS  8 tokens · 39 characters · 4.88 characters per token", "NEXT TOKEN", "ATTENTION  layer 0 · head 3",
                  "LOGIT LENS  at token 4", "LOSS"):
        assert title in out
    assert f"perplexity {significant(loss_view(ray).perplexity)}" in out  # xray_view's format, the TUI's too
    assert "│Every│·effort│·moves│·you│·forward│,│·and│·the│" in out


def test_cli_attention_heatmap_has_the_causal_triangle(checkpoint, capsys):
    assert main(["xray", "--checkpoint", str(checkpoint), "one two three", "--view", "attention"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line[1:4].strip().isdigit()]
    assert len(rows) == 3
    cells = [line[18:] for line in rows]  # 2 characters per key token
    assert [len(c.rstrip()) for c in cells] == [2, 4, 6]  # row q fills keys 0..q, the future is blank


def test_cli_rejects_a_classifier_in_one_line(tmp_path, capsys):
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "spam.safetensors", to_classifier(GPTModel(PRESETS["test-tiny"]), 2),
                           "classifier", labels=["ham", "spam"])
    assert main(["xray", "--checkpoint", str(path), "hello"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "'classifier' checkpoint" in err


def test_cli_bad_head_and_token_are_one_line_errors(checkpoint, capsys):
    assert main(["xray", "--checkpoint", str(checkpoint), "hello there", "--head", "x"]) == 1
    assert capsys.readouterr().err == "error: --head must be a head number (0-based) or 'mean', got 'x'\n"
    assert main(["xray", "--checkpoint", str(checkpoint), "hello there", "--token", "5"]) == 1
    assert capsys.readouterr().err == "error: --token must be 0..1 for this text, got 5\n"


def test_cli_as_instruction_wraps_the_text_in_the_checkpoints_template(model, tmp_path, capsys):
    from chatgpt_scratch.data.templates import get_template

    path = save_checkpoint(tmp_path / "instruct.safetensors", model, "instruct", template="alpaca")
    assert main(["xray", "--checkpoint", str(path), "Name a colour.", "--as-instruction", "--view", "tokens"]) == 0
    n = len(encode(get_template("alpaca").prompt("Name a colour.")))
    assert capsys.readouterr().out.startswith(f"TOKENS  {n} tokens")
    base = save_checkpoint(tmp_path / "base.safetensors", model, "base")
    assert main(["xray", "--checkpoint", str(base), "Name a colour.", "--as-instruction"]) == 1
    assert capsys.readouterr().err == "error: --as-instruction needs an instruct checkpoint; this is a base checkpoint\n"
