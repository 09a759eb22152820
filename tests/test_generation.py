"""Generation: the sampling filters, KV-cache decoding, stopping rules, streaming and batching."""

from __future__ import annotations

import pytest
import torch

from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.generation import (
    SamplingConfig,
    StopStringScanner,
    apply_repetition_penalty,
    generate,
    generate_batch,
    generate_text,
    next_token_distribution,
    sampling_stages,
    stream_text,
    window_start,
)
from chatgpt_scratch.model import GPTModel, to_classifier
from chatgpt_scratch.tokenizer import ENDOFTEXT_ID, decode, encode

CONTEXT = PRESETS["test-tiny"].context_length  # 64


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> GPTModel:
    """A tiny model with a small vocabulary: decoding tests run hundreds of steps."""
    torch.manual_seed(123)
    return GPTModel(PRESETS["test-tiny"].with_(vocab_size=512)).eval()


@pytest.fixture(scope="module")
def text_model() -> GPTModel:
    """A tiny model with GPT-2's vocabulary, for tests that decode text."""
    torch.manual_seed(123)
    return GPTModel(PRESETS["test-tiny"]).eval()


def run(model, prompt, use_cache=True, stop_ids=(), **sampling) -> list[int]:
    return list(generate(model, prompt, SamplingConfig(**sampling), stop_ids=stop_ids, use_cache=use_cache))


PROMPT = list(range(100, 130))  # 30 tokens


# --- the sampling step --------------------------------------------------------------------------


@pytest.mark.parametrize("bad, message", [
    (dict(temperature=-0.5), "temperature must be a number >= 0 (0 means greedy), got -0.5"),
    (dict(temperature=float("nan")), "temperature must be a number >= 0"),
    (dict(top_k=0), "top_k must be a whole number >= 1 (or unset), got 0"),
    (dict(top_p=0.0), "top_p must be in (0, 1] (or unset), got 0.0"),
    (dict(top_p=1.5), "top_p must be in (0, 1] (or unset), got 1.5"),
    (dict(repetition_penalty=0.0), "repetition_penalty must be a number > 0 (1 = off), got 0.0"),
    (dict(max_new_tokens=-1), "max_new_tokens must be a whole number >= 0, got -1"),
])
def test_sampling_config_rejects_nonsense(bad, message):
    with pytest.raises(ScratchError) as e:
        SamplingConfig(**bad)
    assert str(e.value).startswith(message)


def test_greedy_distribution_is_one_hot_at_argmax():
    logits = torch.randn(3, 1000, generator=torch.Generator().manual_seed(0))
    probs = next_token_distribution(logits, SamplingConfig(temperature=0.0), [[], [], []])
    assert torch.equal(probs.argmax(-1), logits.argmax(-1))
    assert torch.equal(probs.sum(-1), torch.ones(3))
    assert int((probs > 0).sum()) == 3


@pytest.mark.parametrize("k", [1, 5, 50])
def test_top_k_keeps_exactly_k_most_likely(k):
    logits = torch.randn(2000, generator=torch.Generator().manual_seed(k))
    probs = next_token_distribution(logits, SamplingConfig(temperature=1.0, top_k=k))
    kept = set((probs > 0).nonzero().flatten().tolist())
    assert kept == set(torch.topk(logits, k).indices.tolist())
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-6)
    # Renormalised softmax over the survivors.
    expected = torch.softmax(logits[sorted(kept)], dim=-1)
    assert torch.allclose(probs[sorted(kept)], expected, atol=1e-6)


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.999])
def test_top_p_keeps_smallest_set_reaching_p(p):
    logits = torch.randn(500, generator=torch.Generator().manual_seed(7)) * 2
    full = torch.softmax(logits, dim=-1).tolist()
    order = sorted(range(len(full)), key=lambda i: -full[i])
    # Reference: walk down the sorted list until the mass reaches p.
    mass, expected = 0.0, set()
    for i in order:
        expected.add(i)
        mass += full[i]
        if mass >= p:
            break
    probs = next_token_distribution(logits, SamplingConfig(temperature=1.0, top_p=p))
    kept = set((probs > 0).nonzero().flatten().tolist())
    assert kept == expected
    assert sum(full[i] for i in kept) >= p - 1e-6
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_temperature_scales_logits():
    logits = torch.tensor([1.0, 2.0, 3.0])
    probs = next_token_distribution(logits, SamplingConfig(temperature=0.5))
    assert torch.allclose(probs, torch.softmax(logits / 0.5, dim=-1))


def test_repetition_penalty_is_ctrl_style():
    logits = torch.tensor([2.0, -2.0, 1.0, -1.0])
    penalised = apply_repetition_penalty(logits, [0, 1, 0], penalty=2.0)
    # Seen tokens 0 (positive: divided) and 1 (negative: multiplied); 2 and 3 untouched.
    assert penalised.tolist() == [1.0, -4.0, 1.0, -1.0]
    assert logits.tolist() == [2.0, -2.0, 1.0, -1.0]  # input not modified
    # Greedy applies the penalty too: 2.0 / 2 = 1.0 loses to 1.5.
    probs = next_token_distribution(torch.tensor([2.0, 1.5]), SamplingConfig(repetition_penalty=2.0), [0])
    assert probs.tolist() == [0.0, 1.0]


def test_sampling_stages_end_with_the_distribution():
    logits = torch.randn(2, 300, generator=torch.Generator().manual_seed(1))
    sampling = SamplingConfig(temperature=0.7, top_k=40, top_p=0.8, repetition_penalty=1.3)
    history = [[1, 2, 3], [4]]
    stages = sampling_stages(logits, sampling, history)
    assert [name for name, _ in stages] == ["model", "repetition penalty", "temperature", "top-k", "top-p"]
    assert torch.equal(stages[-1][1], next_token_distribution(logits, sampling, history))
    for _, probs in stages:
        assert torch.allclose(probs.sum(-1), torch.ones(2), atol=1e-5)
    # Each filter only removes tokens.
    alive = [(probs > 0).sum().item() for _, probs in stages]
    assert alive == sorted(alive, reverse=True) and alive[-1] <= 2 * 40


# --- decoding --------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampling", [
    dict(),
    dict(temperature=1.0, seed=5),
    dict(temperature=0.8, top_k=20, top_p=0.9, repetition_penalty=1.2, seed=11),
])
def test_kv_cache_equals_full_recomputation_past_the_window(model, sampling):
    # 30 prompt tokens + 80 new tokens run well past the 64-token context.
    cached = run(model, PROMPT, use_cache=True, max_new_tokens=80, **sampling)
    full = run(model, PROMPT, use_cache=False, max_new_tokens=80, **sampling)
    assert len(cached) == 80
    assert cached == full


def test_window_start():
    assert [window_start(n, 8) for n in (0, 8, 9, 20)] == [0, 0, 1, 12]  # the book: the last 8 tokens
    assert [window_start(n, 8, stride=4) for n in (8, 9, 12, 13, 16, 17)] == [0, 4, 4, 8, 8, 12]
    for n in range(100):
        start = window_start(n, 8, stride=3)
        assert n - start <= 8 and start % 3 == 0 and (start == 0 or n - (start - 3) > 8)  # smallest such start


@pytest.mark.parametrize("stride", [7, CONTEXT // 4, CONTEXT])
def test_strided_window_cache_equals_recomputation(model, stride):
    sampling = SamplingConfig(max_new_tokens=80, temperature=0.9, top_k=30, seed=3)
    cached = list(generate(model, PROMPT, sampling, stop_ids=(), window_stride=stride))
    full = list(generate(model, PROMPT, sampling, stop_ids=(), use_cache=False, window_stride=stride))
    assert cached == full and len(cached) == 80
    prompts = [PROMPT, [1, 2, 3]]
    greedy = SamplingConfig(max_new_tokens=70)
    singles = [list(generate(model, p, greedy, stop_ids=(), window_stride=stride)) for p in prompts]
    assert generate_batch(model, prompts, greedy, stop_ids=(), window_stride=stride) == singles


def test_window_stride_must_fit_the_context(model):
    with pytest.raises(ScratchError, match=r"window_stride must be a whole number from 1 to the context length \(64\), got 0"):
        list(generate(model, PROMPT, window_stride=0))


def test_no_cache_path_is_the_books_crop_and_argmax(model):
    # The reference: the book's generate_text_simple (crop to the context, argmax of the last logits).
    ids = list(PROMPT)
    with torch.no_grad():
        for _ in range(80):
            logits = model(torch.tensor([ids[-CONTEXT:]]))[:, -1]
            ids.append(int(logits.argmax(-1)))
    assert run(model, PROMPT, max_new_tokens=80) == ids[len(PROMPT):]


def test_same_seed_same_tokens_and_global_rng_untouched(model):
    state = torch.get_rng_state()
    a = run(model, PROMPT, temperature=1.0, max_new_tokens=30, seed=42)
    b = run(model, PROMPT, temperature=1.0, max_new_tokens=30, seed=42)
    c = run(model, PROMPT, temperature=1.0, max_new_tokens=30, seed=43)
    assert a == b
    assert a != c
    assert torch.equal(torch.get_rng_state(), state)


def test_max_new_tokens(model):
    assert len(run(model, PROMPT, max_new_tokens=7)) == 7
    assert run(model, PROMPT, max_new_tokens=0) == []


def test_long_prompt_is_cropped_from_the_left(model):
    long_prompt = [i % 512 for i in range(3 * CONTEXT)]
    assert run(model, long_prompt, max_new_tokens=10) == run(model, long_prompt[-CONTEXT:], max_new_tokens=10)
    assert run(model, long_prompt, max_new_tokens=10, use_cache=False) == run(model, long_prompt[-CONTEXT:], max_new_tokens=10)


def test_stops_at_a_stop_id_without_yielding_it(model):
    free = run(model, PROMPT, max_new_tokens=20)
    stop = free[5]
    first = free.index(stop)
    assert run(model, PROMPT, max_new_tokens=20, stop_ids=(stop,)) == free[:first]


def eot_model() -> GPTModel:
    """A model that always predicts <|endoftext|>: constant final hidden state, head row 50256 aligned with it."""
    torch.manual_seed(0)
    m = GPTModel(PRESETS["test-tiny"]).eval()
    with torch.no_grad():
        m.final_norm.scale.zero_()
        m.final_norm.shift.fill_(1.0)
        m.out_head.weight[ENDOFTEXT_ID].fill_(10.0)
    return m


def test_stops_at_endoftext_by_default():
    m = eot_model()
    assert list(generate(m, [1, 2, 3], SamplingConfig(max_new_tokens=5))) == []
    assert list(generate(m, [1, 2, 3], SamplingConfig(max_new_tokens=5), stop_ids=())) == [ENDOFTEXT_ID] * 5


def test_generation_uses_eval_mode_and_restores_train_mode():
    torch.manual_seed(0)
    m = GPTModel(PRESETS["test-tiny"].with_(drop_rate=0.5))
    m.eval()
    expected = run(m, PROMPT, max_new_tokens=15)
    m.train()
    assert run(m, PROMPT, max_new_tokens=15) == expected  # no dropout while generating
    assert m.training


def test_classifier_cannot_generate():
    m = to_classifier(GPTModel(PRESETS["test-tiny"]), 2)
    with pytest.raises(ScratchError, match="classification head"):
        run(m, PROMPT, max_new_tokens=3)


# --- stop strings and streaming --------------------------------------------------------------------


def test_stop_string_scanner_holds_back_possible_starts():
    s = StopStringScanner(["\nUser:"])
    assert s.feed("Hel") == ("Hel", False)
    assert s.feed("lo\nUs") == ("lo", False)  # "\nUs" might begin "\nUser:"
    assert s.feed("x") == ("\nUsx", False)  # it did not
    assert s.feed("\nUse") == ("", False)
    assert s.feed("r: more") == ("", True)
    assert s.finish() == ""
    t = StopStringScanner(["END", "xyz"])
    assert t.feed("abcxy") == ("abc", False)
    assert t.finish() == "xy"


def test_stop_string_cuts_text_and_tokens(text_model):
    sampling = SamplingConfig(max_new_tokens=40)
    prompt = encode("The cat sat on")
    tokens = list(generate(text_model, prompt, sampling, stop_ids=()))
    text = decode(tokens)
    stop = text[20:24]  # crosses token boundaries somewhere in the middle
    cut = text[: text.index(stop)]

    assert generate_text(text_model, "The cat sat on", sampling, stop_strings=[stop], stop_ids=()) == cut
    assert "".join(stream_text(text_model, prompt, sampling, stop_ids=(), stop_strings=["zzz-never", stop])) == cut
    kept = list(generate(text_model, prompt, sampling, stop_ids=(), stop_strings=[stop]))
    # The yielded tokens: the longest prefix of the stream whose text ends before the stop string.
    assert kept == tokens[: len(kept)]
    assert cut.startswith(decode(kept))
    assert not cut.startswith(decode(tokens[: len(kept) + 1]))


def test_unmatched_stop_string_changes_nothing(text_model):
    sampling = SamplingConfig(max_new_tokens=25)
    tokens = list(generate(text_model, PROMPT, sampling, stop_ids=()))
    assert list(generate(text_model, PROMPT, sampling, stop_ids=(), stop_strings=["\x00never"])) == tokens
    assert "".join(stream_text(text_model, PROMPT, sampling, stop_ids=(), stop_strings=["\x00never"])) == decode(tokens)


def test_empty_prompt_starts_after_endoftext(text_model):
    sampling = SamplingConfig(max_new_tokens=5)
    assert generate_text(text_model, "", sampling, stop_ids=()) == decode(run(text_model, [ENDOFTEXT_ID], max_new_tokens=5))


# --- batches ---------------------------------------------------------------------------------------


def test_batch_rows_equal_single_generation(model):
    prompts = [[5, 6, 7], PROMPT, [9], [i % 500 for i in range(CONTEXT + 10)]]
    sampling = SamplingConfig(max_new_tokens=60)  # the 30-token row and the long row slide past the window
    singles = [run(model, p, max_new_tokens=60) for p in prompts]
    assert generate_batch(model, prompts, sampling, stop_ids=()) == singles


def test_batch_rows_stop_on_their_own(model):
    prompts = [[5, 6, 7], PROMPT, [9, 10]]
    singles = [run(model, p, max_new_tokens=30) for p in prompts]
    stop = singles[1][4]  # row 1 stops early; the others go on (unless they also make it)
    expected = [row[: row.index(stop)] if stop in row else row for row in singles]
    assert len(expected[1]) < 30
    assert generate_batch(model, prompts, SamplingConfig(max_new_tokens=30), stop_ids=(stop,)) == expected


def test_batch_stop_strings_match_single_generation(text_model):
    prompts = [encode("Once upon"), encode("The cat sat on")]
    sampling = SamplingConfig(max_new_tokens=30)
    text = decode(run(text_model, prompts[1], max_new_tokens=30))
    stop = text[15:18]
    singles = [list(generate(text_model, p, sampling, stop_ids=(), stop_strings=[stop])) for p in prompts]
    assert generate_batch(text_model, prompts, sampling, stop_ids=(), stop_strings=[stop]) == singles
