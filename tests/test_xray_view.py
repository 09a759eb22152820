"""usecases/xray_view: the one layout of the X-ray views (rows, columns, headers, formats) and the prompt
box's visible newlines. The TUI and the CLI both print these tables (tests/tui/test_chat_spam_xray_loading.py
compares their output)."""

from __future__ import annotations

import pytest
import torch

from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.generation import SamplingConfig
from chatgpt_scratch.model import GPTModel
from chatgpt_scratch.tokenizer import encode
from chatgpt_scratch.usecases.xray import next_token_view, xray
from chatgpt_scratch.usecases.xray_view import (HEATMAP_TOKENS, heatmap_window, lay_out, prompt_shown, prompt_text,
                                                significant, token_stats)


@pytest.fixture(scope="module")
def ray():
    torch.manual_seed(0)
    return xray(GPTModel(PRESETS["test-tiny"]).eval(), encode("Every effort moves you forward, and the"))


def test_next_table_rows_are_the_candidates_in_rank_order_with_their_cuts(ray):
    sampling = SamplingConfig(temperature=0.7, top_k=2)
    shown = lay_out(ray, sampling, top=5)
    rows = shown.tables["next"].rows()
    view = next_token_view(ray, sampling, top=5)
    assert [int(r.split()[0]) for r in rows] == [1, 2, 3, 4, 5]
    assert [f" {c.id} " in f" {r} " for r, c in zip(rows, view.candidates)] == [True] * 5
    assert ["cut by top-k" in r for r in rows] == [False, False, True, True, True]
    assert all(len(r) <= 76 for r in rows)  # fits the TUI pane at 80 columns


def test_attention_rows_form_the_causal_triangle_and_the_window_ends_at_the_token(ray):
    shown = lay_out(ray, SamplingConfig(), layer=0, head=1, token=3)
    rows = shown.tables["attention"].rows()
    assert [r[:5] for r in rows] == ["   0 ", "   1 ", "   2 ", "▶  3 "]
    assert [len(r[18:]) for r in rows] == [2, 4, 6, 8]
    assert heatmap_window(100) == range(100 - HEATMAP_TOKENS + 1, 101)


def test_loss_table_and_stats_use_one_number_format(ray):
    shown = lay_out(ray, SamplingConfig())
    ppl = shown.loss.perplexity
    assert f"perplexity {significant(ppl)}" in shown.tables["loss"].text
    assert token_stats(shown.tokens, ppl).endswith(f"· perplexity {significant(ppl)}")
    assert token_stats(shown.tokens, None).endswith("· perplexity -")
    assert len(shown.tables["loss"].rows()) == len(ray.ids)


def test_a_token_outside_the_text_is_one_error_named_for_each_front_end(ray):
    from chatgpt_scratch.errors import ScratchError

    with pytest.raises(ScratchError, match=r"^--token must be 0\.\.7 for this text, got 9$"):
        lay_out(ray, SamplingConfig(), token=9, flag_names=True)
    with pytest.raises(ScratchError, match=r"^token # must be 0\.\.7 for this text$"):
        lay_out(ray, SamplingConfig(), token=9)


def test_the_prompt_box_shows_newlines_as_arrows_and_means_them_again():
    text = "line one\nline two\r\n\tend"
    shown = prompt_shown(text)
    assert "\n" not in shown and "\r" not in shown and "\t" not in shown
    assert shown == "line one↵line two␍↵⇥end"
    assert prompt_text(shown) == text
