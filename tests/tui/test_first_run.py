"""A fresh install: no models of the user's own, only the built-in ones (a temp bundle of tiny real
models here). Every screen opens ready, built-ins are marked and protected, an empty reply is explained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from textual.widgets import DataTable, Input, Markdown

from tests.tui.conftest import wait_until
from tui.app import ScratchApp


@pytest.fixture
def bundle(tmp_path, monkeypatch) -> Path:
    from chatgpt_scratch.checkpoints import save_checkpoint
    from chatgpt_scratch.config import PRESETS
    from chatgpt_scratch.model import GPTModel, to_classifier

    folder = tmp_path / "bundle" / "checkpoints"
    torch.manual_seed(0)
    save_checkpoint(folder / "default-base.safetensors", GPTModel(PRESETS["test-tiny"]), val_loss=4.0)
    save_checkpoint(folder / "default-instruct.safetensors", GPTModel(PRESETS["test-tiny"]), kind="instruct",
                    template="alpaca", val_loss=2.0)
    save_checkpoint(folder / "default-spam.safetensors", to_classifier(GPTModel(PRESETS["test-tiny"]), 2),
                    kind="classifier", labels=["ham", "spam"], val_acc=0.95)
    monkeypatch.setenv("CHATGPT_SCRATCH_BUNDLED", str(tmp_path / "bundle"))
    return folder


async def test_every_screen_opens_with_its_builtin_model(bundle):
    app = ScratchApp(detect_device=False)
    async with app.run_test(size=(120, 40)) as pilot:
        chat = app.screen
        await wait_until(pilot, lambda: chat.session is not None, what="the chat model")
        assert chat.loaded_path == bundle / "default-instruct.safetensors"
        assert not chat.query_one("#chat-empty").display  # no "no model yet" text
        await pilot.press("f2")
        spam = app.screen
        await wait_until(pilot, lambda: getattr(spam, "classifier", None) is not None, what="the classifier")
        assert spam.loaded_path == bundle / "default-spam.safetensors"
        await pilot.press("f5")
        xray = app.screen
        await wait_until(pilot, lambda: getattr(xray, "model", None) is not None, what="the x-ray model")
        assert xray.loaded_path == bundle / "default-base.safetensors"


async def test_checkpoints_screen_marks_builtins_and_refuses_to_delete_them(bundle):
    target = bundle / "default-base.safetensors"
    before = target.read_bytes()
    app = ScratchApp(detect_device=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f4")
        screen = app.screen
        table = screen.query_one("#ckpt-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 3, what="the listing")
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert names == ["default-base (built-in)", "default-instruct (built-in)", "default-spam (built-in)"]
        table.focus()
        table.move_cursor(row=0)
        await pilot.press("x")
        await pilot.pause(0.2)
        assert app.screen is screen  # no confirmation dialog was opened
        messages = [n.message for n in app._notifications]
        assert any("cannot delete default-base.safetensors: it is a built-in model" in m for m in messages)
        await pilot.press("r")
        await pilot.pause(0.2)
        assert app.screen is screen
        messages = [n.message for n in app._notifications]
        assert any("cannot rename default-base.safetensors" in m for m in messages)
    assert target.read_bytes() == before


async def test_an_empty_reply_is_explained_not_a_blank_bubble(bundle, monkeypatch):
    import chatgpt_scratch.generation as generation
    from chatgpt_scratch.chat import EMPTY_REPLY_NOTE
    from chatgpt_scratch.tokenizer import get_tokenizer

    newline = get_tokenizer().encode("\n\n")

    def only_blank_lines(model, ids, sampling, **kwargs):  # what an undertrained instruct model does
        yield from newline  # then stops, as at an end token

    monkeypatch.setattr(generation, "generate", only_blank_lines)
    app = ScratchApp(detect_device=False)
    async with app.run_test(size=(120, 40)) as pilot:
        chat = app.screen
        await wait_until(pilot, lambda: chat.session is not None, what="the chat model")
        chat.query_one("#s-max_new_tokens", Input).value = "8"  # test-tiny reads 64 tokens in all
        chat.query_one("#chat-input", Input).value = "Name a colour."
        await pilot.press("enter")
        await wait_until(pilot, lambda: not chat.replying and chat.last_reply_id is not None, what="the reply")
        await pilot.pause(0.1)
        bubble = list(chat.query("#chat-log .assistant").results(Markdown))[-1]
        status = str(chat.query_one("#chat-status").render())
    assert bubble.source == f"*({EMPTY_REPLY_NOTE})*"
    assert EMPTY_REPLY_NOTE in status
