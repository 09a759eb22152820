"""Pilot test: the Chat, Spam and X-ray pickers offer LoRA adapters of their kind, labelled as adapters,
and the screens use them exactly as the library does."""

from __future__ import annotations

import torch
from textual.widgets import Select, TextArea

from tests.tui.conftest import FIXED_CREATED, wait_until
from tui.app import ScratchApp


def _adapters(tiny_base, folder):
    """An instruct and a classifier adapter on tiny-base (B moved off zero, as training would)."""
    from chatgpt_scratch.checkpoints import load_checkpoint
    from chatgpt_scratch.lora import inject_lora, save_lora_adapter
    from chatgpt_scratch.model import to_classifier

    g = torch.Generator().manual_seed(3)
    paths = {}
    for name, kind in (("chat.lora", "instruct"), ("spam.lora", "classifier")):
        model, _ = load_checkpoint(tiny_base)
        extra = {"template": "alpaca"} if kind == "instruct" else {"labels": ["ham", "spam"]}
        if kind == "classifier":
            to_classifier(model, 2)
        inject_lora(model, rank=2, alpha=4, train_also=("out_head",) if kind == "classifier" else ())
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if pname.endswith("lora_B"):
                    p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        paths[kind] = save_lora_adapter(folder / f"{name}.safetensors", model, tiny_base, model_kind=kind,
                                        created=FIXED_CREATED, **extra)
    return paths


def _shown(picker) -> str:
    """The label the Select shows for its current value."""
    return str(picker.query_one("SelectCurrent #label").render())


async def test_pickers_offer_adapters_of_their_kind_and_screens_use_them(tiny_base, checkpoints_folder):
    from chatgpt_scratch.chat import ChatSession
    from chatgpt_scratch.classify import SpamClassifier
    from chatgpt_scratch.generation import SamplingConfig
    from chatgpt_scratch.usecases.inference import load_for_inference
    from tests.tui.test_screens import set_greedy

    adapters = _adapters(tiny_base, checkpoints_folder)
    message = "WINNER!! Claim your free prize now"
    app = ScratchApp(detect_device=False)
    async with app.run_test(size=(110, 30)) as pilot:
        chat = app.screen
        # No full instruct model here: the chat screen prefers the instruct adapter over the base.
        await wait_until(pilot, lambda: chat.session is not None, what="the chat model to load")
        chat_picker = chat.query_one("#chat-model", Select)
        chat_paths, chat_label = list(chat_picker.paths), _shown(chat_picker)
        set_greedy(chat, max_new_tokens=6)
        await pilot.press(*"Hi", "enter")
        await wait_until(pilot, lambda: not chat.replying and chat.last_reply_id is not None, what="the reply")
        reply, template = chat.session.turns[0].assistant, chat.session.template

        await pilot.press("f2")
        spam = app.screen
        await wait_until(pilot, lambda: getattr(spam, "classifier", None) is not None, what="the classifier")
        spam_picker = spam.query_one("#spam-model", Select)
        spam_paths, spam_label = list(spam_picker.paths), _shown(spam_picker)
        spam.query_one("#spam-input", TextArea).text = message
        await pilot.press("ctrl+j")
        await wait_until(pilot, lambda: spam.results, what="the prediction")
        shown_probs = spam.classifier.classify([message])[0].probs

        await pilot.press("f5")
        xray = app.screen
        await wait_until(pilot, lambda: getattr(xray, "model", None) is not None, what="the X-ray model")
        xray_paths, xray_loaded = list(xray.query_one("#xr-model", Select).paths), xray.loaded_path
        xray_model = xray.model

    assert chat_paths == [adapters["instruct"], tiny_base]  # sorted by name; no classifier
    assert chat_label == "chat.lora (lora → instruct, test-tiny)"
    expected = ChatSession.from_checkpoint(adapters["instruct"], device="cpu",
                                           sampling=SamplingConfig(temperature=0.0, max_new_tokens=6))
    assert template is expected.template and template is not None
    assert reply and reply == "".join(expected.send("Hi"))

    assert spam_paths == [adapters["classifier"]] and spam_label == "spam.lora (lora → classifier, test-tiny)"
    assert shown_probs == SpamClassifier.load(adapters["classifier"], device="cpu").classify([message])[0].probs

    assert xray_paths == [adapters["instruct"], tiny_base]
    # X-ray opens with the library's default *base* model (as `chatgpt-scratch xray` does), not the chat's
    from chatgpt_scratch.checkpoints import list_checkpoints, pick_default
    default = pick_default(list_checkpoints(), ("base", "instruct"))
    assert default is not None and default.path == tiny_base
    assert xray_loaded == default.path
    merged, _ = load_for_inference(default.path)
    ids = torch.tensor([[5, 17, 300, 2]])
    with torch.no_grad():
        assert torch.equal(xray_model(ids), merged(ids))


async def test_checkpoints_screen_sends_an_adapter_to_the_screen_of_its_kind(tiny_base, checkpoints_folder):
    from textual.widgets import DataTable

    adapters = _adapters(tiny_base, checkpoints_folder)
    app = ScratchApp(start="checkpoints", detect_device=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        table = screen.query_one("#ckpt-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 3, what="the table")
        table.focus()
        names = [str(table.get_row_at(i)[0]) for i in range(3)]
        assert str(table.get_row_at(names.index("spam.lora"))[1]) == "lora→classifier"  # the kind it makes
        table.move_cursor(row=names.index("spam.lora"))
        await pilot.press("enter")  # chat with it: refused, this adapter makes a classifier
        await pilot.pause(0.2)
        refused = [n.message for n in app._notifications]
        stayed = app.screen is screen
        await pilot.press("s")  # use for spam: accepted
        spam = app.screen
        await wait_until(pilot, lambda: getattr(spam, "loaded_path", None) is not None, what="the classifier")
        loaded = spam.loaded_path
    assert stayed and "spam.lora is a LoRA adapter of a 'classifier' model; chat needs base or instruct." in refused
    assert loaded == adapters["classifier"]


async def test_checkpoints_screen_merges_an_adapter_exactly_as_the_cli_does(tiny_base, checkpoints_folder, tmp_path):
    """M on the Checkpoints screen and `lora merge` call one library function: same weights, same header
    (parent = the base, merged_from = the adapter, kind = the one the adapter makes)."""
    from textual.widgets import DataTable, Input

    from chatgpt_scratch.checkpoints import load_checkpoint
    from chatgpt_scratch.cli import main
    from tui.screens.dialogs import TextPrompt

    adapters = _adapters(tiny_base, checkpoints_folder)
    assert main(["lora", "merge", str(adapters["classifier"]), "--out", str(tmp_path / "by-cli")]) == 0
    app = ScratchApp(start="checkpoints", detect_device=False)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one("#ckpt-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 3, what="the table")
        table.focus()
        names = [str(table.get_row_at(i)[0]) for i in range(3)]
        table.move_cursor(row=names.index("spam.lora"))
        await pilot.press("m")
        await wait_until(pilot, lambda: isinstance(app.screen, TextPrompt), what="the merge prompt")
        app.screen.query_one("#prompt-input", Input).value = "by-tui"
        await pilot.press("enter")
        await wait_until(pilot, lambda: any("Merged" in n.message for n in app._notifications), what="the merge")
    by_tui, tui_meta = load_checkpoint(checkpoints_folder / "by-tui.safetensors")
    by_cli, cli_meta = load_checkpoint(tmp_path / "by-cli.safetensors")
    assert tui_meta["kind"] == cli_meta["kind"] == "classifier"
    assert tui_meta["parent"] == cli_meta["parent"] == str(tiny_base.resolve())
    assert tui_meta["merged_from"] == cli_meta["merged_from"] == str(adapters["classifier"].resolve())
    assert {k: v for k, v in tui_meta.items() if k != "created"} == {k: v for k, v in cli_meta.items() if k != "created"}
    ids = torch.tensor([[464, 3290, 318, 257, 1332]])
    with torch.no_grad():
        assert torch.equal(by_tui(ids), by_cli(ids))
