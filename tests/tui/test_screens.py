"""Pilot tests: the real app driven by keys, with tiny real models in the per-test data folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Markdown, TextArea

from tests.tui.conftest import wait_until
from tui.app import ScratchApp


def _idle(app) -> bool:
    return not [w for w in app.workers if w.is_running]


def set_greedy(screen, max_new_tokens: int) -> None:
    """Greedy sampling in the chat sidebar (replies comparable with the library's), focus on the input."""
    for name, value in [("temperature", "0"), ("top_k", ""), ("top_p", ""),
                        ("max_new_tokens", str(max_new_tokens)), ("repetition_penalty", "1.0")]:
        screen.query_one(f"#s-{name}", Input).value = value
    screen.query_one("#chat-input", Input).focus()


PROMPT = 'Hello [/b] [x="y'  # markup-like text must stay text everywhere it is shown


async def test_chat_streams_a_reply_and_stores_it(tiny_base):
    from chatgpt_scratch.chat import ChatSession
    from chatgpt_scratch.storage.chat_store import ChatStore
    from chatgpt_scratch.generation import SamplingConfig

    app = ScratchApp(detect_device=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.session is not None, what="the model to load")
        set_greedy(screen, max_new_tokens=6)
        screen.query_one("#chat-input", Input).value = PROMPT
        await pilot.press("enter")
        await wait_until(pilot, lambda: not screen.replying and screen.last_reply_id is not None, what="the reply")
        bubbles = list(screen.query("#chat-log .bubble").results(Markdown))
        shown = [b.source for b in bubbles]
        status = str(screen.query_one("#chat-status").render())
        titles = [str(label.render()) for label in screen.query("#chat-convs Label")]

    # The same greedy reply the library gives for the same checkpoint and prompt.
    reference = ChatSession.from_checkpoint(tiny_base, device="cpu",
                                            sampling=SamplingConfig(temperature=0.0, max_new_tokens=6))
    expected = "".join(reference.send(PROMPT))
    assert expected  # a base model continues the text
    assert shown == [PROMPT, expected]
    assert titles == [PROMPT]  # the conversation list shows the text as typed, brackets and all
    assert "6 tokens" in status and "tok/s" in status
    store = ChatStore()
    [conversation] = store.list_conversations()
    messages = store.get_messages(conversation.id)
    assert [(m.role, m.content) for m in messages] == [("user", PROMPT), ("assistant", expected)]
    assert messages[1].stats["new_tokens"] == 6


async def test_chat_copies_the_selected_message_not_only_the_last_reply(tiny_base):
    app = ScratchApp(detect_device=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.session is not None, what="the model to load")
        set_greedy(screen, max_new_tokens=5)
        previous = None
        for text in ("Hello", "Tell me more"):
            await pilot.press(*text, "enter")
            await wait_until(pilot, lambda: not screen.replying and screen.last_reply_id not in (None, previous),
                             what="the reply")
            previous = screen.last_reply_id
        first_reply, last_reply = screen.session.turns[0].assistant, screen.session.turns[1].assistant
        await pilot.press("ctrl+y")  # nothing selected: the last reply
        await pilot.pause()
        copied_last = app.clipboard
        await pilot.press("ctrl+up", "ctrl+up", "ctrl+up")  # last reply -> 2nd message -> first reply
        await pilot.pause()
        selected = screen.selected_bubble
        await pilot.press("ctrl+y")
        await pilot.pause()
        copied_first = app.clipboard
        await pilot.press("ctrl+up", "ctrl+up", "ctrl+down")  # clamps at the first message, then back one
        await pilot.pause()
        await pilot.press("ctrl+y")
        await pilot.pause()
        copied_after_moves = app.clipboard
        footer_keys = {b.key: b.description for b in screen.BINDINGS if b.show}
    assert first_reply and first_reply != last_reply
    assert copied_last == last_reply
    assert selected.has_class("assistant") and selected.has_class("-selected")
    assert copied_first == first_reply
    assert copied_after_moves == first_reply
    assert footer_keys["ctrl+y"] == "Copy msg" and footer_keys["ctrl+up"] == "Pick msg"


async def test_command_palette_opens_a_screen(checkpoints_folder):
    from tui.screens.train import TrainScreen

    app = ScratchApp(detect_device=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"Open Train")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, TrainScreen), what="the Train screen")
        assert app.current_mode == "train"


async def test_chat_without_checkpoints_says_how_to_get_one(checkpoints_folder):
    app = ScratchApp(detect_device=False)
    async with app.run_test(size=(100, 30)) as pilot:
        empty = app.screen.query_one("#chat-empty", Markdown)
        await wait_until(pilot, lambda: "No model" in empty.source, what="the empty-state text")
        text = empty.source
    assert "chatgpt-scratch import-gpt2 gpt2-small" in text
    assert "press **3** (Train)" in text
    assert str(checkpoints_folder) in text


async def test_spam_screen_shows_the_label_the_classifier_gives(tiny_classifier):
    from chatgpt_scratch.classify import SpamClassifier

    message = "WINNER!! Claim your free prize now, call 09061701461"
    other = 'see you at lunch [/b] [foo="bar'  # markup-like text stays text (it once crashed a table)
    expected = SpamClassifier.load(tiny_classifier, device="cpu").classify([message, other])
    app = ScratchApp(start="spam", detect_device=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.classifier is not None, what="the classifier to load")
        screen.query_one("#spam-input", TextArea).text = f"{message}\n{other}"
        await pilot.press("ctrl+j")
        await wait_until(pilot, lambda: screen.results, what="the prediction")
        label = str(screen.query_one("#spam-label").render())
        table = screen.query_one("#spam-table", DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        header = app.sub_title
    first = expected[0]
    assert label.startswith(f"{first.label.upper()} {first.probability:.1%}")
    assert rows == [[p.label, f"{p.probability:.1%}", t] for p, t in zip(expected, [message, other])]
    assert "spam: tiny-spam" in header


async def test_delete_asks_first_and_only_deletes_on_yes(tiny_base, tiny_classifier):
    from tui.screens.dialogs import ConfirmDialog

    app = ScratchApp(start="checkpoints", detect_device=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        table = screen.query_one("#ckpt-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 2, what="the table")
        table.focus()
        assert screen.selected_path() == tiny_base  # sorted by name: tiny-base first
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the confirmation")
        assert tiny_base.exists()
        await pilot.press("escape")  # No
        await pilot.pause(0.2)
        assert tiny_base.exists() and table.row_count == 2
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the confirmation")
        await pilot.click("#confirm-yes")
        await wait_until(pilot, lambda: table.row_count == 1, what="the row to go")
        remaining = str(table.get_row_at(0)[0])
    assert not tiny_base.exists()
    assert tiny_classifier.exists() and remaining == "tiny-spam"


async def test_spam_screen_opens_with_the_most_accurate_classifier(tiny_classifier, checkpoints_folder):
    import torch

    from chatgpt_scratch.checkpoints import save_checkpoint
    from chatgpt_scratch.config import PRESETS
    from chatgpt_scratch.model import GPTModel

    torch.manual_seed(2)  # "a-..." sorts first but is less accurate than tiny-spam (0.875)
    save_checkpoint(checkpoints_folder / "a-spam.safetensors", GPTModel(PRESETS["test-tiny"].with_(n_classes=2)),
                    kind="classifier", labels=["ham", "spam"], val_acc=0.5)
    app = ScratchApp(start="spam", detect_device=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.classifier is not None, what="a classifier to load")
        loaded = screen.loaded_path
    assert loaded == tiny_classifier


async def test_header_values_that_look_like_markup_are_shown_as_written(checkpoints_folder):
    # A pretraining header lists its files as JSON; the panel cuts it at 300 characters, leaving an
    # open '[{"' that Textual's markup parser once read as a tag (crashing the screen).
    import torch

    from chatgpt_scratch.checkpoints import save_checkpoint
    from chatgpt_scratch.config import PRESETS
    from chatgpt_scratch.model import GPTModel

    torch.manual_seed(0)
    datasets = [{"path": f"/data/[set {i}]/book.txt", "sha256": "ab" * 32} for i in range(5)]
    odd = 'odd [x="y'  # a file name is anyone's text too
    save_checkpoint(checkpoints_folder / f"{odd}.safetensors", GPTModel(PRESETS["test-tiny"]), datasets=datasets,
                    note='a [foo="bar [/b] C:\\x\\')
    app = ScratchApp(start="checkpoints", detect_device=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        table = screen.query_one("#ckpt-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1, what="the table")
        name = str(table.get_row_at(0)[0])
        meta = screen.query_one("#ckpt-meta").render()
        await pilot.press("f1")  # the chat screen's model picker lists it too
        chat = app.screen
        await wait_until(pilot, lambda: chat.session is not None, what="the model to load")
        picked = str(chat.query_one("#chat-model SelectCurrent #label").render())
        alive = app.is_running
    assert name == odd and alive
    assert 'datasets: [{"path": "/data/[set 0]/book.txt"' in meta.plain
    assert 'note: a [foo="bar [/b] C:\\x\\' in meta.plain and f"{odd}  (base" in meta.plain
    assert picked.startswith(f"{odd} (base")


async def test_broken_checkpoint_is_listed_and_using_it_notifies(checkpoints_folder, tiny_base):
    broken = checkpoints_folder / "cut-short.safetensors"
    broken.write_bytes(tiny_base.read_bytes()[:1000])
    app = ScratchApp(start="checkpoints", detect_device=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        table = screen.query_one("#ckpt-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 2, what="the table")
        table.focus()
        assert [str(c) for c in table.get_row_at(0)[:2]] == ["cut-short", "BROKEN"]
        await pilot.press("enter")  # use for chat
        await pilot.pause(0.2)
        messages = [n.message for n in app._notifications]
        assert app.screen is screen  # still here, no crash, no switch
    assert any("truncated" in m for m in messages)


async def test_export_to_hugging_face_then_import_it_back(tiny_base, checkpoints_folder, tmp_path):
    """e exports the selected model; i imports a local model.safetensors (a subprocess of the CLI)."""
    import torch

    from chatgpt_scratch.checkpoints import load_checkpoint
    from tui.screens.dialogs import ChoicePrompt, TextPrompt

    export_dir = tmp_path / "exported"
    app = ScratchApp(start="checkpoints", detect_device=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        table = screen.query_one("#ckpt-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1, what="the table")
        table.focus()
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, TextPrompt), what="the export prompt")
        app.screen.query_one("#prompt-input", Input).value = str(export_dir)
        await pilot.press("enter")
        await wait_until(pilot, lambda: any("Exported" in n.message for n in app._notifications), what="export")
        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, ChoicePrompt), what="the import prompt")
        app.screen.query_one("#choice-path", Input).value = str(export_dir / "model.safetensors")
        await pilot.click("#choice-ok")
        imported = checkpoints_folder / "exported.safetensors"  # named after the folder of model.safetensors
        await wait_until(pilot, lambda: str(imported) in screen.infos, timeout=120, what="the imported row")
        row = [str(c) for c in table.get_row(str(imported))]
    assert row[:3] == ["exported", "base", "test-tiny"]
    # The same header file `chatgpt-scratch export-hf` writes (one library function behind both).
    import json

    from chatgpt_scratch.cli import main

    assert main(["export-hf", str(tiny_base), str(tmp_path / "by-cli")]) == 0
    by_tui = json.loads((export_dir / "chatgpt_scratch.json").read_text())
    by_cli = json.loads((tmp_path / "by-cli" / "chatgpt_scratch.json").read_text())
    assert by_tui == by_cli and by_tui["exported_from"] == str(tiny_base)
    original, _ = load_checkpoint(tiny_base)
    back, _ = load_checkpoint(imported)
    ids = torch.tensor([[464, 3290, 318, 257, 1332]])
    with torch.no_grad():
        torch.testing.assert_close(back(ids), original(ids))


async def test_train_form_shows_errors_beside_fields_and_starts_nothing(tiny_base):
    app = ScratchApp(start="train", detect_device=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen  # no runs yet: the Train screen opens on the New-run form
        screen.query_one("#f-lr", Input).value = "fast"
        screen.query_one("#f-batch_size", Input).value = "0"
        await pilot.pause(0.1)
        await pilot.press("f6")
        await pilot.pause(0.2)
        lr_error = str(screen.query_one("#e-lr").render())
        batch_error = str(screen.query_one("#e-batch_size").render())
        command = str(screen.query_one("#train-command").render())
    assert lr_error == "a number"
    assert batch_error == "must be > 0"
    assert "fix the fields" in command
    assert not screen.procs


async def test_runs_started_elsewhere_are_listed_and_the_selection_survives_refreshes(tmp_path, monkeypatch):
    """A run made by the CLI (run.json + events) shows with its curve; refreshing the list keeps the selection."""
    import json
    import os
    import subprocess
    import sys

    from tui import jobs

    runs = Path(os.environ["CHATGPT_SCRATCH_RUNS"])
    cli_run = runs / "pretrain-20260101-000000"
    cli_run.mkdir(parents=True)
    (cli_run / "run.json").write_text(json.dumps({"command": "pretrain", "args": {}}))
    events = [{"type": "start", "total_steps": 4, "step": 0}]
    events += [{"type": "step", "step": i, "train_loss": 5.0 - i, "elapsed_s": i} for i in range(1, 5)]
    events += [{"type": "eval", "step": 4, "val_loss": 1.5}, {"type": "done", "step": 4}]
    (cli_run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    # A newer job started by the app that died before making its run folder: listed first.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (runs / jobs.JOBS_SUBDIR).mkdir()
    (runs / jobs.JOBS_SUBDIR / "broken.json").write_text(json.dumps({"pid": dead.pid, "name": "broken",
                                                                    "task": "pretrain", "command": ["pretrain"]}))
    monkeypatch.setattr("tui.screens.train.RUNS_REFRESH_S", 0.2)
    app = ScratchApp(start="train", detect_device=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        table = screen.query_one("#train-runs", DataTable)
        await wait_until(pilot, lambda: table.row_count == 2, what="the runs")
        rows = [[str(c) for c in table.get_row_at(i)[:4]] for i in range(2)]
        screen.select_run(cli_run)
        refreshes = 0

        def count(_=None):
            nonlocal refreshes
            refreshes += 1

        original = screen.show_runs
        monkeypatch.setattr(screen, "show_runs", lambda r: (original(r), count()))
        await wait_until(pilot, lambda: refreshes >= 3, what="three refreshes of the list")
        selected = screen.selected
        plot = screen.query_one("#train-plot")
        train, val, state = list(plot.train), list(plot.val), screen.monitor.state
    assert rows == [["broken", "pretrain", "failed", "-"], ["pretrain-20260101-000000", "pretrain", "done", "4/4"]]
    assert selected == cli_run
    assert train == [(float(i), 5.0 - i) for i in range(1, 5)] and val == [(4.0, 1.5)]
    assert state == "done"


CORPUS = (
    "I had always thought Jack Gisburn rather a cheap genius--though a good fellow enough--so it was no "
    "great surprise to me to hear that, in the height of his glory, he had dropped his painting, married a "
    "rich widow, and established himself in a villa on the Riviera. "
) * 40


@pytest.mark.slow
async def test_real_training_job_plots_stops_and_leaves_a_checkpoint(tmp_path, checkpoints_folder):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    app = ScratchApp(start="train", detect_device=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen  # no runs yet: the Train screen opens on the New-run form
        await wait_until(pilot, lambda: screen.form.start == "preset:cpu-mini", what="the form")
        screen.query_one("#f-start").value = "preset:test-tiny"
        for name, value in [("max_steps", "500"), ("context", "16"), ("batch_size", "2"), ("eval_every", "3"),
                            ("sample_every", "0"), ("out", "tui-test")]:
            screen.query_one(f"#f-{name}", Input).value = value
        screen.query_one("#f-data", Input).value = str(corpus)
        await pilot.pause(0.1)
        command = str(screen.query_one("#train-command").render())
        await pilot.press("f6")
        plot = screen.query_one("#train-plot")
        # Redraws are throttled (a few per second), so the drawing may trail the data by a beat.
        await wait_until(pilot, lambda: len(plot.train) >= 3 and plot.val and plot.redraws >= 1, timeout=120,
                         what="train and val points drawn on the plot")
        await pilot.press("f7")  # stop: SIGINT, the job saves and exits
        await wait_until(pilot, lambda: screen.monitor.state == "stopped", timeout=60, what="the stopped event")
        steps_done = screen.monitor.step
        await pilot.press("f4")
        table = app.screen.query_one("#ckpt-table", DataTable)
        out = checkpoints_folder / "tui-test.safetensors"
        await wait_until(pilot, lambda: str(out) in app.screen.infos, timeout=30, what="the checkpoint row")
        info = app.screen.infos[str(out)]
        row = [str(c) for c in table.get_row(str(out))]
    assert command.startswith("chatgpt-scratch pretrain --preset test-tiny --data ")
    assert f"--out {out}" in command
    assert info.kind == "base" and info.metadata["preset"] == "test-tiny"
    assert 3 <= steps_done < 500  # it really stopped early, and saved where it stopped
    assert info.metadata["saved_because"] == "stopped" and info.metadata["steps"] == steps_done
    assert row[1:3] == ["base", "test-tiny"]


async def test_chat_screen_and_cli_repl_save_a_conversation_the_same_way(tiny_base, tmp_path):
    """Both front ends drive the library's ChatConversation: a long first message makes the same title,
    a regenerated reply replaces the stored one, and the stored rows (roles, texts, checkpoint) match."""
    from chatgpt_scratch.chat import ChatSession
    from chatgpt_scratch.storage.chat_store import ChatStore
    from chatgpt_scratch.cli.chat import ChatController
    from chatgpt_scratch.generation import SamplingConfig

    message = "Tell me a long story about a painter who\nnever finished a single picture in his life"
    app = ScratchApp(detect_device=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.session is not None and screen.store is not None, what="the model")
        set_greedy(screen, max_new_tokens=4)
        screen.query_one("#chat-input", Input).value = message
        await pilot.press("enter")
        await wait_until(pilot, lambda: not screen.replying and screen.last_reply_id is not None, what="the reply")
        await pilot.press("ctrl+r")  # sets `replying` at once (the reply streams in a worker)
        await wait_until(pilot, lambda: not screen.replying, what="the regenerated reply")
    tui_store = ChatStore()
    [tui_conv] = tui_store.list_conversations()
    tui_rows = [(m.role, m.content) for m in tui_store.get_messages(tui_conv.id)]

    cli_store = ChatStore(tmp_path / "cli.db")
    session = ChatSession.from_checkpoint(tiny_base, device="cpu",
                                          sampling=SamplingConfig(temperature=0.0, max_new_tokens=4))
    controller = ChatController(session, cli_store, device="cpu")
    "".join(controller.send(message))
    "".join(controller.command("/retry").reply)
    [cli_conv] = cli_store.list_conversations()
    cli_rows = [(m.role, m.content) for m in cli_store.get_messages(cli_conv.id)]
    assert tui_conv.title == cli_conv.title == " ".join(message.split())[:60]
    assert tui_conv.checkpoint == cli_conv.checkpoint == str(tiny_base)
    assert [role for role, _ in tui_rows] == ["user", "assistant"] and tui_rows == cli_rows


async def test_a_failing_worker_becomes_one_notification(tmp_path):
    """Screens run blocking work in @work thread workers; a ScratchError there is shown as its message
    (the App's one place for worker errors), the app keeps running."""
    app = ScratchApp(start="spam", detect_device=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        screen.load(tmp_path / "missing.safetensors")
        await wait_until(pilot, lambda: any("not found" in n.message for n in app._notifications),
                         what="the error notification")
        messages = [n.message for n in app._notifications]
        still_running = app.is_running and app.screen is screen
    assert still_running and any(m.startswith("checkpoint not found") for m in messages)


async def test_chat_conversations_are_renamed_exported_and_deleted(tiny_base, tmp_path):
    """F6 renames, ctrl+e exports as Markdown, ctrl+d deletes (after a confirmation) the open conversation."""
    from chatgpt_scratch.storage.chat_store import ChatStore
    from tui.screens.dialogs import ConfirmDialog, TextPrompt

    app = ScratchApp(detect_device=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.session is not None and screen.store is not None, what="the model")
        set_greedy(screen, max_new_tokens=3)
        await pilot.press(*"Hello", "enter")
        await wait_until(pilot, lambda: not screen.replying and screen.last_reply_id is not None, what="the reply")
        titles = lambda: [str(label.render()) for label in screen.query("#chat-convs Label")]  # noqa: E731
        await wait_until(pilot, lambda: titles() == ["Hello"], what="the conversation in the list")
        await pilot.press("f6")
        await wait_until(pilot, lambda: isinstance(app.screen, TextPrompt), what="the rename prompt")
        app.screen.query_one("#prompt-input", Input).value = "Greeting"
        await pilot.press("enter")
        await wait_until(pilot, lambda: titles() == ["Greeting"], what="the new title")
        app.set_focus(None)  # the message box keeps ctrl+e for itself (end of line)
        await pilot.press("ctrl+e")
        await wait_until(pilot, lambda: isinstance(app.screen, TextPrompt), what="the export prompt")
        app.screen.query_one("#prompt-input", Input).value = str(tmp_path / "chat.md")
        await pilot.press("enter")
        await wait_until(pilot, lambda: (tmp_path / "chat.md").exists(), what="the export")
        await pilot.press("ctrl+d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the confirmation")
        await pilot.click("#confirm-yes")
        await wait_until(pilot, lambda: titles() == [], what="the deleted conversation")
        new_conversation = screen.chat.conversation_id is None
    assert "Greeting" in (tmp_path / "chat.md").read_text() and "Hello" in (tmp_path / "chat.md").read_text()
    assert new_conversation and ChatStore().list_conversations() == []
