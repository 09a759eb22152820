"""X-ray screen: Pilot tests with a tiny real model; the screen must show the library's exact numbers.

The tests drive the app with asyncio.run, so no async pytest plugin is needed.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import torch
from textual.widgets import Input, Select, Static

from chatgpt_scratch.checkpoints import save_checkpoint
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.generation import SamplingConfig
from chatgpt_scratch.model import GPTModel, to_classifier
from chatgpt_scratch.tokenizer import decode, encode
from chatgpt_scratch.usecases.xray_view import significant
from chatgpt_scratch.usecases.xray import attention_matrix, loss_view, next_token_view, xray
from tui.app import ScratchApp
from tui.screens.xray import DEFAULT_TEXT, NO_MODEL, XrayScreen
from tui.widgets.xray_prompt import XrayPrompt

SCREEN_SAMPLING = SamplingConfig(temperature=1.0, top_k=40, top_p=0.95)  # the screen's default fields


def tiny_model() -> GPTModel:
    torch.manual_seed(0)
    model = GPTModel(PRESETS["test-tiny"])
    with torch.no_grad():  # a peaked distribution, so the filters cut visibly
        model.out_head.weight.mul_(60.0)
    return model.eval()


@pytest.fixture
def model() -> GPTModel:
    m = tiny_model()
    folder = Path(os.environ["CHATGPT_SCRATCH_CHECKPOINTS"])
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / "tiny.safetensors", m, "base")
    return m


async def settle(pilot, screen: XrayScreen, until=lambda s: s.views is not None, tries: int = 100) -> None:
    """Let the workers (list, load, compute) finish until `until(screen)` holds."""
    for _ in range(tries):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(0.05)
        if until(screen):
            await pilot.pause()
            return
    raise AssertionError("the X-ray screen did not finish its work")


def static_text(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def test_shows_the_libraries_top_token_and_cut_set(model):
    asyncio.run(_shows_the_libraries_top_token_and_cut_set(model))


async def _shows_the_libraries_top_token_and_cut_set(model):
    app = ScratchApp(start="xray")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, XrayScreen)
        await settle(pilot, screen)
        expected = next_token_view(xray(model, encode(DEFAULT_TEXT)), SCREEN_SAMPLING, top=10)
        shown = screen.views.next
        assert [c.id for c in shown.candidates] == [c.id for c in expected.candidates]
        assert [c.final_prob for c in shown.candidates] == pytest.approx([c.final_prob for c in expected.candidates])
        text = static_text(screen, "#xr-next")
        assert f"pick top: {expected.top.label!r} (id {expected.top.id})" in text
        assert f"top-p{expected.final.survivors:>22d}" in text

        # top-k 2: exactly two survivors on screen, the rest marked as cut by top-k
        box = screen.query_one("#xr-top_k", Input)
        box.value = "2"
        await settle(pilot, screen, until=lambda s: s.views.next.sampling.top_k == 2)
        rows = [line for line in static_text(screen, "#xr-next").splitlines() if line[:3].strip().isdigit()]
        assert len(rows) == 10
        assert all("cut by" not in r for r in rows[:2]) and all("cut by top-k" in r for r in rows[2:])
        two = next_token_view(xray(model, encode(DEFAULT_TEXT)), SamplingConfig(temperature=1.0, top_k=2, top_p=0.95))
        assert [c.id for c in two.candidates if c.survives] == [c.id for c in screen.views.next.candidates
                                                               if c.survives]

        # a field that is not a number: a message in the status line, the last good view stays
        seq = screen.seq
        screen.query_one("#xr-temperature", Input).value = "warm"
        await pilot.pause(0.1)
        assert str(screen.query_one("#xr-status").render()) == "Sampling settings: temp: a number"
        assert screen.seq == seq and screen.views.next.sampling.top_k == 2


def test_typing_retokenizes_and_loss_matches_the_library(model):
    asyncio.run(_typing_retokenizes_and_loss_matches_the_library(model))


async def _typing_retokenizes_and_loss_matches_the_library(model):
    app = ScratchApp(start="xray")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await settle(pilot, screen)
        text = "Hi there\n🎉"
        screen.query_one("#xr-text", Input).value = text
        ids = encode(text)
        await settle(pilot, screen, until=lambda s: s.ids == ids)
        chips = static_text(screen, "#xr-tokens")
        assert chips.split()[0::2] == ["Hi", "·there", "↵", "<0xF0><0x9F>", "<0x8E>", "<0x89>"]
        assert [int(i) for i in chips.split()[1::2]] == ids
        ppl = loss_view(xray(model, ids)).perplexity
        assert f"perplexity {significant(ppl)}" in static_text(screen, "#xr-loss")
        assert f"· perplexity {significant(ppl)}" in str(screen.query_one("#xr-status").render())


def test_step_forward_and_back(model):
    asyncio.run(_step_forward_and_back(model))


async def _step_forward_and_back(model):
    app = ScratchApp(start="xray")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await settle(pilot, screen)
        start = encode(DEFAULT_TEXT)
        top = int(model(torch.tensor([start]))[0, -1].argmax())
        await pilot.press("f6")  # pick top
        await settle(pilot, screen, until=lambda s: len(s.ids) == len(start) + 1)
        assert screen.ids == start + [top]
        assert screen.query_one("#xr-text", XrayPrompt).text == decode(start + [top])
        expected = next_token_view(xray(model, start + [top]), SCREEN_SAMPLING)
        assert screen.views.next.top.id == expected.top.id
        await pilot.press("f7")  # sample: some surviving token of that distribution
        await settle(pilot, screen, until=lambda s: len(s.ids) == len(start) + 2)
        assert expected.final.probs[screen.ids[-1]] > 0
        await pilot.press("f8")
        await pilot.press("f8")  # back twice
        await settle(pilot, screen, until=lambda s: s.ids == start)
        assert screen.query_one("#xr-text", XrayPrompt).text == DEFAULT_TEXT


def test_attention_view_for_a_chosen_layer_head_and_token(model):
    asyncio.run(_attention_view_for_a_chosen_layer_head_and_token(model))


async def _attention_view_for_a_chosen_layer_head_and_token(model):
    app = ScratchApp(start="xray")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await settle(pilot, screen)
        screen.query_one("#xr-tabs").active = "xr-tab-attention"
        screen.query_one("#xr-layer", Select).value = 0
        await settle(pilot, screen, until=lambda s: s.views.layer == 0)
        screen.query_one("#xr-head", Select).value = 2
        await settle(pilot, screen, until=lambda s: s.views.head == 2)
        screen.query_one("#xr-token", Input).value = "2"
        await settle(pilot, screen, until=lambda s: s.views.token == 2)
        ray = xray(model, encode(DEFAULT_TEXT))
        # the heatmap ends at the selected token: rows and columns 0..2
        torch.testing.assert_close(torch.tensor(screen.views.attention), attention_matrix(ray, 0, 2)[:3, :3])
        text = static_text(screen, "#xr-attention")
        assert "layer 0 · head 2" in text
        rows = [line for line in text.splitlines() if line[1:4].strip().isdigit()]
        assert [len(r[18:].rstrip()) for r in rows] == [2, 4, 6]  # the causal triangle
        assert rows[2].startswith("▶  2 ·moves")
        weights = attention_matrix(ray, 0, 2)[2, :3]
        heaviest = int(weights.argmax())
        assert f"{weights[heaviest]:.3f}" in text.split("attends most to:")[1].splitlines()[1]

        # clicking a token chip selects that token (" Every 6109 " is 12 cells, then " ·effort ")
        await pilot.click("#xr-tokens", offset=(14, 0))
        await settle(pilot, screen, until=lambda s: s.views.token == 1)
        assert screen.query_one("#xr-token", Input).value == "1"
        assert "▶  1 ·effort" in static_text(screen, "#xr-attention")


def test_only_a_classifier_says_how_to_get_a_model(tmp_path):
    asyncio.run(_only_a_classifier_says_how_to_get_a_model(tmp_path))


async def _only_a_classifier_says_how_to_get_a_model(tmp_path):
    folder = Path(os.environ["CHATGPT_SCRATCH_CHECKPOINTS"])
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_checkpoint(folder / "spam.safetensors", to_classifier(GPTModel(PRESETS["test-tiny"]), 2), "classifier",
                    labels=["ham", "spam"])
    app = ScratchApp(start="xray")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await settle(pilot, screen, until=lambda s: s.query_one("#xr-model").loaded)
        assert str(screen.query_one("#xr-status").render()) == NO_MODEL
        assert screen.model is None


async def _settled_for_snapshot(pilot) -> None:
    await settle(pilot, pilot.app.screen)
    pilot.app.screen.query_one("#xr-text", Input).cursor_blink = False  # a blinking cursor is not stable
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_snapshot(model, snap_compare, size):
    assert snap_compare(ScratchApp(start="xray"), terminal_size=size, run_before=_settled_for_snapshot)


def test_large_perplexity_is_shown_without_float_noise():
    """Two CPUs gave 1297174975780 and 1297177449951.99 for the same text: the screen must show one string."""
    assert significant(1297174975780.0) == significant(1297177449951.99) == "1.297e+12"
    assert significant(42.1234) == "42.12"
