"""ChatSession: prompt format, history truncation, stop strings, stop(), regenerate."""

from __future__ import annotations

import queue
import threading

import pytest
import torch

from chatgpt_scratch.chat import ChatSession, Turn
from chatgpt_scratch.checkpoints import save_checkpoint
from chatgpt_scratch.config import GPTConfig
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.generation import SamplingConfig, generate_text
from chatgpt_scratch.model import GPTModel, to_classifier
from chatgpt_scratch.data.templates import ALPACA, PromptTemplate
from chatgpt_scratch.tokenizer import encode

TINY = GPTConfig(context_length=128, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)
REPLY = "Hello there."


@pytest.fixture(scope="module")
def random_model() -> GPTModel:
    torch.manual_seed(0)
    return GPTModel(TINY).eval()


@pytest.fixture(scope="module")
def hello_model() -> GPTModel:
    """A tiny model trained (40 steps, ~2 s) to answer the Alpaca prompt for "Hi" with
    "Hello there." and then start a new "### Instruction" turn, as instruct models do."""
    torch.manual_seed(0)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead on a shared machine
    model = GPTModel(TINY)
    ids = encode(ALPACA.prompt("Hi") + REPLY + "\n\n### Instruction:\nBye")
    x, y = torch.tensor([ids[:-1]]), torch.tensor([ids[1:]])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(torch_threads)
    model.eval()
    # The premise of the stop-string tests: without stop strings it really runs into a new turn.
    assert generate_text(model, ALPACA.prompt("Hi"), SamplingConfig(max_new_tokens=10)).startswith(
        REPLY + "\n\n### Instruction")
    return model


def greedy(n: int) -> SamplingConfig:
    return SamplingConfig(temperature=0.0, max_new_tokens=n)


# -- prompt format ---------------------------------------------------------------------------


def test_two_turn_alpaca_prompt_is_exactly_the_hand_written_text(random_model):
    session = ChatSession(random_model, ALPACA, greedy(8))
    session.set_history([("What is 2+2?", "4.")])
    expected = (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nWhat is 2+2?\n\n### Response:\n4."
        "\n\n"
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nAnd 3+3?\n\n### Response:\n"
    )
    assert session.format_conversation("And 3+3?") == expected
    plan = session.plan_prompt("And 3+3?")
    assert plan.ids == encode(expected) and plan.dropped_turns == 0


def test_base_model_prompt_is_the_plain_concatenation(random_model):
    session = ChatSession(random_model, None, greedy(8))
    session.set_history([("Once upon", " a time"), (" there", " was")])
    assert session.format_conversation(" a king") == "Once upon a time there was a king"


def test_greedy_reply_equals_generate_text_on_the_formatted_prompt(random_model):
    """The session adds nothing of its own to decoding: same tokens as the library's generate_text."""
    session = ChatSession(random_model, None, greedy(12))
    first = "".join(session.send("Every effort moves you"))
    assert first == generate_text(random_model, "Every effort moves you", greedy(12))
    second = "".join(session.send(" and then"))
    assert second == generate_text(random_model, "Every effort moves you" + first + " and then", greedy(12))
    assert [(t.user, t.assistant) for t in session.turns] == [("Every effort moves you", first), (" and then", second)]
    assert session.stats.new_tokens == 12 and session.stats.finish == "max_tokens"
    assert session.stats.prompt_tokens == len(encode("Every effort moves you" + first + " and then"))


# -- the context window ----------------------------------------------------------------------


def test_history_truncation_drops_the_oldest_turns_and_says_how_many(random_model):
    session = ChatSession(random_model, ALPACA, greedy(20))  # room for the reply: 20 -> prompt limit 108
    assert session.prompt_limit() == 128 - 20
    session.set_history([(f"question {i}", f"answer {i}") for i in range(5)])
    plan = session.plan_prompt("last one")
    # Each Alpaca turn is ~35 tokens, so only two earlier turns fit beside the new message.
    assert plan.dropped_turns == 3
    assert plan.text == session.format_conversation("last one", session.turns[3:])
    assert plan.text.startswith(ALPACA.prompt("question 3") + "answer 3")  # the newest turns are kept
    assert len(plan.ids) <= plan.limit < len(encode(session.format_conversation("last one", session.turns[2:])))
    # The reply reports it, and the conversation itself still holds every turn.
    "".join(session.send("last one"))
    assert session.stats.dropped_turns == 3 and session.stats.prompt_tokens == len(plan.ids)
    assert len(session.turns) == 6 and session.turns[0].user == "question 0"


def test_room_for_the_reply_is_capped_at_half_the_context(random_model):
    session = ChatSession(random_model, None, greedy(1000))
    assert session.prompt_limit() == 64


def test_a_message_too_long_for_the_context_is_an_error_not_a_silent_cut(random_model):
    session = ChatSession(random_model, ALPACA, greedy(20))
    session.set_history([("kept", "intact")])
    message = "word " * 100
    n = len(encode(ALPACA.prompt(message)))
    with pytest.raises(ScratchError) as err:
        session.send(message)
    assert str(err.value) == (
        f"the message is {n} tokens (with the prompt template) but this model reads at most 108 prompt tokens "
        "(context 128 minus 20 kept for the reply): shorten it or lower the reply length (max new tokens)"
    )
    assert [(t.user, t.assistant) for t in session.turns] == [("kept", "intact")]  # nothing lost or added


def test_empty_message_is_refused(random_model):
    with pytest.raises(ScratchError, match="the message is empty"):
        ChatSession(random_model, ALPACA, greedy(4)).send("  \n")


# -- stopping --------------------------------------------------------------------------------


def test_reply_stops_when_the_model_starts_a_new_instruction_and_never_shows_it(hello_model):
    session = ChatSession(hello_model, ALPACA, greedy(30))
    pieces = list(session.send("Hi"))
    assert "".join(pieces) == REPLY  # no "### Instruction", no trailing blank lines
    assert not any("#" in p for p in pieces)
    assert session.turns[-1].assistant == REPLY
    assert session.stats.finish == "stop_string"


def test_a_stop_string_in_the_middle_of_a_random_reply(random_model):
    """Whatever the model writes, the reply is the text before the template's stop string."""
    full = generate_text(random_model, ALPACA.prompt("x"), greedy(16))
    stop = full[len(full) // 2:len(full) // 2 + 3]
    template = PromptTemplate("t", ALPACA.preamble, ALPACA.input_prefix, ALPACA.response_prefix, (stop,))
    session = ChatSession(random_model, template, greedy(16))
    reply = "".join(session.send("x"))
    assert reply == full[:full.find(stop)].rstrip()
    assert stop not in reply


def test_stop_from_another_thread_keeps_the_partial_reply(random_model):
    full = generate_text(random_model, "Tell me a story", greedy(40))
    session = ChatSession(random_model, None, greedy(40))
    pieces: queue.Queue = queue.Queue()
    resume = threading.Event()

    def worker():  # how the TUI consumes a reply: in a thread worker
        for piece in session.send("Tell me a story"):
            pieces.put(piece)
            resume.wait(timeout=10)  # let the main thread call stop() while the reply is mid-way
        pieces.put(None)

    thread = threading.Thread(target=worker)
    thread.start()
    first = pieces.get(timeout=30)
    session.stop()
    resume.set()
    thread.join(timeout=30)
    rest = []
    while (p := pieces.get_nowait()) is not None:
        rest.append(p)
    written = first + "".join(rest)
    assert rest == []  # stopped right after the piece being written
    assert session.turns[-1].assistant == written == full[:len(written)]
    assert len(written) < len(full)
    assert session.stats.finish == "stopped" and session.stats.new_tokens == 1


def test_stop_between_asking_and_streaming_still_stops_and_does_not_linger(random_model):
    session = ChatSession(random_model, None, greedy(20))
    stream = session.send("Hello")
    session.stop()  # e.g. a click on "stop" before the UI's worker thread got going
    reply = "".join(stream)
    assert session.stats.finish == "stopped" and session.stats.new_tokens == 1
    assert session.turns[-1].assistant == reply
    "".join(session.send("more"))
    assert session.stats.finish == "max_tokens" and session.stats.new_tokens == 20


def test_a_reader_that_quits_early_keeps_what_it_saw(random_model):
    session = ChatSession(random_model, None, greedy(20))
    stream = session.send("Hello")
    seen = [next(stream), next(stream)]
    stream.close()  # e.g. Ctrl-C in the CLI unwinds the loop that reads the stream
    assert session.turns[-1].assistant == "".join(seen)
    assert session.stats.finish == "stopped"
    # The session is free again: the next message works.
    assert "".join(session.send("again")) == session.turns[-1].assistant


def test_only_one_reply_at_a_time(random_model):
    session = ChatSession(random_model, None, greedy(10))
    first = session.send("one")
    next(first)
    with pytest.raises(ScratchError, match="a reply is still being written"):
        next(session.send("two"))
    first.close()
    assert [t.user for t in session.turns] == ["one"]


# -- regenerate, clear -----------------------------------------------------------------------


def test_regenerate_replaces_the_last_reply(random_model):
    session = ChatSession(random_model, None, SamplingConfig(temperature=1.0, max_new_tokens=6, seed=7))
    first = "".join(session.send("Hello"))
    again = "".join(session.regenerate())
    assert [(t.user, t.assistant) for t in session.turns] == [("Hello", again)]
    assert again != first  # a new draw; the seed still makes the pair reproducible
    replay = ChatSession(random_model, None, SamplingConfig(temperature=1.0, max_new_tokens=6, seed=7))
    assert ("".join(replay.send("Hello")), "".join(replay.regenerate())) == (first, again)
    greedy_session = ChatSession(random_model, None, greedy(10))
    assert "".join(greedy_session.send("Hello")) == "".join(greedy_session.regenerate())


def test_regenerate_without_a_reply_and_clear(random_model):
    session = ChatSession(random_model, ALPACA, greedy(4))
    with pytest.raises(ScratchError, match="no reply to regenerate yet"):
        session.regenerate()
    session.turns.append(Turn("a", "b"))
    session.clear()
    assert session.turns == [] and session.format_conversation("q") == ALPACA.prompt("q")


# -- checkpoints -----------------------------------------------------------------------------


def test_from_checkpoint_uses_the_template_stored_in_an_instruct_checkpoint(tmp_path, hello_model):
    path = save_checkpoint(tmp_path / "hello.safetensors", hello_model, kind="instruct", template="alpaca")
    session = ChatSession.from_checkpoint(path, device="cpu", sampling=greedy(30))
    assert session.template == ALPACA and session.checkpoint == str(path)
    assert "".join(session.send("Hi")) == REPLY


def test_from_checkpoint_refuses_a_classifier(tmp_path, random_model):
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "spam.safetensors", to_classifier(GPTModel(TINY), 2), kind="classifier",
                           labels=["ham", "spam"])
    with pytest.raises(ScratchError, match=r"is a 'classifier' checkpoint, but this needs an 'instruct' or 'base' one"):
        ChatSession.from_checkpoint(path, device="cpu")
