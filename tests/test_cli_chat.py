"""`chatgpt-scratch chat`: piped mode through a real subprocess, slash commands, saving, the REPL keys."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from chatgpt_scratch.chat import ChatSession
from chatgpt_scratch.storage.chat_store import ChatStore, default_db_path
from chatgpt_scratch.checkpoints import save_checkpoint
from chatgpt_scratch.cli import main
from chatgpt_scratch.cli.chat import ChatController, run_interactive, run_piped, split_input
from chatgpt_scratch.config import GPTConfig
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.generation import SamplingConfig, generate_text
from chatgpt_scratch.model import GPTModel, to_classifier
from chatgpt_scratch.data.templates import ALPACA

REPO = Path(__file__).resolve().parents[1]
TINY = GPTConfig(context_length=128, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)


def greedy(n: int) -> SamplingConfig:
    return SamplingConfig(temperature=0.0, max_new_tokens=n)


@pytest.fixture(scope="module")
def model() -> GPTModel:
    torch.manual_seed(0)
    return GPTModel(TINY).eval()


@pytest.fixture
def base_ckpt(tmp_path, model) -> Path:
    return save_checkpoint(tmp_path / "tiny.safetensors", model, kind="base")


@pytest.fixture
def controller(model, tmp_path):
    store = ChatStore(tmp_path / "chat.db")
    yield ChatController(ChatSession(model, ALPACA, greedy(6), checkpoint="tiny.safetensors"), store, device="cpu")
    store.close()


# -- piped mode -------------------------------------------------------------------------------


def test_piped_stdin_through_a_real_subprocess_gives_one_reply_per_line_and_saves_them(base_ckpt, model, tmp_path):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}  # CHATGPT_SCRATCH_HOME is the test's (conftest)
    result = subprocess.run(
        [sys.executable, "-m", "chatgpt_scratch", "chat", "--checkpoint", str(base_ckpt),
         "--max-new-tokens", "8", "--device", "cpu"],
        input="Every effort moves you\n\nand then\n", capture_output=True, text=True, encoding="utf-8",
        env=env, cwd=REPO, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # A base model continues the whole conversation text; the blank line was skipped.
    first = generate_text(model, "Every effort moves you", greedy(8))
    second = generate_text(model, "Every effort moves you" + first + "and then", greedy(8))
    assert result.stdout == first + "\n" + second + "\n"
    with ChatStore(default_db_path()) as store:
        [conv] = store.list_conversations()
        assert conv.checkpoint == str(base_ckpt) and conv.title == "Every effort moves you"
        rows = [(m.role, m.content) for m in store.get_messages(conv.id)]
        assert rows == [("user", "Every effort moves you"), ("assistant", first),
                        ("user", "and then"), ("assistant", second)]
        assert store.get_messages(conv.id)[1].stats["new_tokens"] == 8


def test_piped_jsonl_and_a_failing_prompt_keeps_one_answer_per_line(controller):
    stdin = io.StringIO("Hi\n" + "word " * 200 + "\nBye\n")
    stdout, stderr = io.StringIO(), io.StringIO()
    code = run_piped(controller, stdin, stdout, stderr, jsonl=True)
    lines = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert code == 1 and len(lines) == 3
    assert [line["prompt"].strip() for line in lines] == ["Hi", ("word " * 200).strip(), "Bye"]
    assert lines[0]["reply"] == controller.session.turns[0].assistant
    assert lines[1]["error"].startswith("the message is ") and "reply" not in lines[1]
    assert lines[2]["reply"] == controller.session.turns[1].assistant
    assert lines[2]["stats"]["prompt_tokens"] == controller.session.stats.prompt_tokens
    assert stderr.getvalue().count("error: the message is ") == 1


def test_db_flag_prints_the_database_path(capsys, tmp_path):
    assert main(["chat", "--db"]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'home' / 'chat.db'}\n"


def test_a_classifier_checkpoint_is_a_one_line_error(tmp_path, capsys):
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "spam.safetensors", to_classifier(GPTModel(TINY), 2), kind="classifier")
    assert main(["chat", "--checkpoint", str(path), "--device", "cpu"]) == 1
    assert capsys.readouterr().err == (
        f"error: {path} is a 'classifier' checkpoint, but this needs an 'instruct' or 'base' one\n")


def test_no_model_anywhere_is_explained(capsys):
    assert main(["chat"]) == 1  # no --checkpoint, none of the user's own, built-ins off (conftest)
    assert capsys.readouterr().err == (
        "error: chat: no instruct or base model found in the checkpoints folder and no built-in one; "
        "pass --checkpoint PATH (`chatgpt-scratch checkpoints list` shows yours)\n")


# -- slash commands ---------------------------------------------------------------------------


def test_sampling_commands_change_the_session_settings(controller):
    c = controller
    assert c.command("/temperature 0.7").text == "temperature = 0.7"
    assert c.command("/top-k 40").text == "top-k = 40"
    assert c.command("/top-p 0.9").text == "top-p = 0.9"
    assert c.command("/max-tokens 12").text == "max-new-tokens = 12"
    assert c.command("/repetition-penalty 1.2").text == "repetition-penalty = 1.2"
    assert c.command("/seed 3").text == "seed = 3"
    assert c.session.sampling == SamplingConfig(temperature=0.7, top_k=40, top_p=0.9, max_new_tokens=12,
                                                repetition_penalty=1.2, seed=3)
    c.command("/top-k off")
    c.command("/SEED off")
    assert (c.session.sampling.top_k, c.session.sampling.seed) == (None, None)


@pytest.mark.parametrize("line, message", [
    ("/temperature hot", "/temperature needs a number, e.g. /temperature 0.7; got 'hot'"),
    ("/temperature", "/temperature needs one value, e.g. /temperature 0.7"),
    ("/temperature -1", "temperature must be a number >= 0 (0 means greedy), got -1.0"),
    ("/top-k 2.5", "/top-k needs a whole number (or 'off'), e.g. /top-k 40; got '2.5'"),
    ("/top-p 2", "top_p must be in (0, 1] (or unset), got 2.0"),
    ("/max-tokens -3", "max_new_tokens must be a whole number >= 0, got -3"),
    ("/frobnicate", "unknown command /frobnicate; /help lists the commands"),
    ("/save", "/save needs one file name, e.g. /save chat.md"),
    ("/load", "/load needs one checkpoint path, e.g. /load checkpoints/instruct.safetensors"),
])
def test_bad_commands_say_what_to_do_and_change_nothing(controller, line, message):
    before = controller.session.sampling
    with pytest.raises(ScratchError) as err:
        controller.command(line)
    assert str(err.value) == message
    assert controller.session.sampling == before


def test_help_quit_and_input_splitting(controller):
    assert "Esc then Enter   insert a new line" in controller.command("/help").text
    assert "/top-p X" in controller.command("/help").text
    assert controller.command("/quit").quit and controller.command("/exit").quit
    assert split_input("/temperature 1") == ("command", "/temperature 1")
    assert split_input("//etc/hosts is a file") == ("message", "/etc/hosts is a file")
    assert split_input("hello /there") == ("message", "hello /there")


def test_each_turn_is_saved_as_it_goes_and_clear_starts_a_new_conversation(controller):
    c = controller
    first = "".join(c.send("Hi"))
    store = c.store
    [conv] = store.list_conversations()
    assert [(m.role, m.content) for m in store.get_messages(conv.id)] == [("user", "Hi"), ("assistant", first)]
    assert "[1] You: Hi" in c.command("/history").text
    c.command("/clear")
    assert c.session.turns == [] and c.command("/history").text == "(no messages yet)"
    "".join(c.send("Again"))
    assert [x.title for x in store.list_conversations()] == ["Again", "Hi"]
    assert "2 msgs  Hi" in c.command("/history all").text


def test_an_interrupted_reply_is_saved_as_far_as_it_got(controller):
    controller.command("/max-tokens 20")
    stream = controller.send("Hi")
    partial = next(stream) + next(stream)
    stream.close()  # what Ctrl-C does to the loop printing the reply
    messages = controller.store.get_messages(controller.conversation_id)
    assert messages[-1].content == partial.rstrip() == controller.session.turns[-1].assistant
    assert messages[-1].stats["finish"] == "stopped"


def test_retry_replaces_the_saved_reply(controller):
    controller.command("/temperature 1.0")
    controller.command("/seed 5")
    first = "".join(controller.send("Hi"))
    again = "".join(controller.command("/retry").reply)
    assert again != first
    rows = [(m.role, m.content) for m in controller.store.get_messages(controller.conversation_id)]
    assert rows == [("user", "Hi"), ("assistant", again)]


def test_save_writes_markdown_and_never_overwrites(controller, tmp_path):
    reply = "".join(controller.send("Hi"))
    out = tmp_path / "chat.md"
    assert controller.command(f"/save {out}").text == f"saved 1 turns to {out}"
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Hi\n\n- Checkpoint: `tiny.safetensors`\n")
    assert f"## You\n\nHi\n\n## Model\n\n{reply}\n" in text
    with pytest.raises(ScratchError, match="already exists; choose another name"):
        controller.command(f"/save {out}")
    assert out.read_text(encoding="utf-8") == text


def test_load_switches_checkpoint_and_keeps_the_settings(controller, base_ckpt):
    "".join(controller.send("Hi"))
    controller.command("/temperature 0.5")
    result = controller.command(f"/load {base_ckpt}")
    assert result.text == f"loaded {base_ckpt} (base model, context 128 tokens); a new conversation starts"
    assert controller.session.template is None and controller.session.turns == []
    assert controller.session.sampling.temperature == 0.5 and controller.conversation_id is None


def test_resume_continues_a_saved_conversation(controller, model):
    first = "".join(controller.send("Hi"))
    cid = controller.conversation_id
    other = ChatController(ChatSession(model, ALPACA, greedy(6)), controller.store)
    assert other.resume(cid) == 1
    plan = other.session.plan_prompt("Next")
    assert plan.text == ALPACA.prompt("Hi") + first + "\n\n" + ALPACA.prompt("Next")
    "".join(other.send("Next"))
    assert len(controller.store.get_messages(cid)) == 4


# -- the prompt_toolkit REPL ------------------------------------------------------------------


def test_repl_keys_enter_sends_esc_enter_adds_a_line_ctrl_d_quits(controller, capsys):
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    with create_pipe_input() as pipe:
        pipe.send_text("Hello\x1b\rworld\r")  # Hello, Esc+Enter, world, Enter
        pipe.send_text("/temperature 0.3\r")
        pipe.send_text("\x04")  # Ctrl-D on the empty line
        assert run_interactive(controller, pt_input=pipe, pt_output=DummyOutput()) == 0
    [turn] = controller.session.turns
    assert turn.user == "Hello\nworld"
    assert controller.session.sampling.temperature == 0.3
    assert "temperature = 0.3" in capsys.readouterr().out
    messages = controller.store.get_messages(controller.conversation_id)
    assert [m.content for m in messages] == ["Hello\nworld", turn.assistant]
