"""Evaluation of instruct models: ROUGE-L, reference-response loss, the Ollama judge (fake server), files."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from chatgpt_scratch.cli import main
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.data.instruct import InstructionExample
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.usecases.evaluate_instruct import (
    JudgeUnavailable, clean_response, evaluate_instruct, judge_prompt, judge_responses, parse_judge, parse_score,
    read_responses, response_loss, rouge_l,
)
from chatgpt_scratch.model import GPTModel
from chatgpt_scratch.data.templates import ALPACA
from chatgpt_scratch.tokenizer import encode

EXAMPLES = [InstructionExample("Convert 45 kilometers to meters.", "", "45 kilometers is 45000 meters."),
            InstructionExample("Edit the following sentence for grammar.", "He go to the park every day.",
                               "He goes to the park every day.")]


def test_rouge_l_on_a_hand_computed_pair():
    # ref:  the cat sat on the mat            (6 words)
    # cand: a cat was sitting on the mat      (7 words; stems: a cat wa sit on the mat)
    # longest common subsequence: cat on the mat = 4 -> P = 4/7, R = 4/6, F = 2PR/(P+R) = 8/13
    (score,) = rouge_l(["The cat sat on the mat."], ["A cat was sitting on the mat"])
    assert score == pytest.approx(8 / 13)
    assert rouge_l(["same words here"], ["Same words, here!"]) == [pytest.approx(1.0)]
    assert rouge_l(["nothing shared"], ["completely different"]) == [0.0]


def test_response_loss_is_the_mean_negative_log_likelihood_of_the_reference_tokens():
    torch.manual_seed(0)
    model = GPTModel(PRESETS["test-tiny"]).eval()
    total, count = 0.0, 0
    for e in EXAMPLES:  # by hand: score each reference token (and the end token) given everything before it
        prompt = encode(ALPACA.prompt(e.instruction, e.input))
        answer = encode(e.output) + [50256]
        ids = torch.tensor([prompt + answer])
        logp = torch.log_softmax(model(ids[:, :-1]), dim=-1)[0]
        for j, token in enumerate(answer):
            total -= logp[len(prompt) - 1 + j, token].item()
            count += 1
    assert response_loss(model, EXAMPLES, ALPACA, batch_size=2) == pytest.approx(total / count, rel=1e-5)


def test_clean_response_and_score_parsing():
    assert clean_response("### Response:\n  The answer.  \n", ALPACA) == "The answer."
    assert clean_response("\nThe answer.", ALPACA) == "The answer."
    assert parse_score("85") == 85 and parse_score("Score: 100.") == 100 and parse_score("I'd say 7/10") == 7
    assert parse_score("no idea") is None and parse_score("1000") is None
    assert parse_judge("ollama") == "llama3" and parse_judge("ollama:phi3") == "phi3"
    with pytest.raises(ScratchError, match="--judge must be ollama or ollama:MODEL"):
        parse_judge("gpt4")


class FakeOllama:
    """A local stand-in serving Ollama's /api/chat shape: streamed JSON lines of message chunks."""

    def __init__(self, replies: list[str], status: int = 200):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, **body})
                if status != 200:
                    self.send_response(status)
                    self.end_headers()
                    self.wfile.write(b'{"error":"model \\"nope\\" not found, try pulling it first"}')
                    return
                reply = replies[(len(outer.requests) - 1) % len(replies)]
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.end_headers()
                half = len(reply) // 2
                for chunk, done in ((reply[:half], False), (reply[half:], True)):
                    line = {"model": body["model"], "message": {"role": "assistant", "content": chunk}, "done": done}
                    self.wfile.write((json.dumps(line) + "\n").encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_ollama():
    servers = []

    def start(replies, status=200):
        servers.append(FakeOllama(replies, status))
        return servers[-1]
    yield start
    for s in servers:
        s.close()


def test_judge_sends_the_books_prompt_and_reads_streamed_scores(fake_ollama):
    server = fake_ollama(["85", "I would rate it 40."])
    scores = judge_responses(EXAMPLES, ["45000 meters.", "He goes to the park."], "llama3", url=server.url)
    assert scores == [85, 40]
    first = server.requests[0]
    assert first["path"] == "/api/chat" and first["model"] == "llama3"
    assert first["options"] == {"seed": 123, "temperature": 0, "num_ctx": 2048}
    prompt = first["messages"][0]["content"]
    assert prompt == judge_prompt(EXAMPLES[0], "45000 meters.")
    assert prompt.startswith("Given the input `Below is an instruction that describes a task.")
    assert "and correct output `45 kilometers is 45000 meters.`, score the model response `45000 meters.`" in prompt
    assert prompt.endswith("Respond with the integer number only.")


def test_unreachable_judge_is_one_clear_message():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(JudgeUnavailable, match=rf"no Ollama server at http://127.0.0.1:{port} .*ollama serve"):
        judge_responses(EXAMPLES, ["a", "b"], "llama3", url=f"http://127.0.0.1:{port}")


def test_missing_judge_model_says_to_pull_it(fake_ollama):
    server = fake_ollama([], status=404)
    with pytest.raises(JudgeUnavailable, match=r"HTTP 404.*run `ollama pull nope`"):
        judge_responses(EXAMPLES, ["a", "b"], "nope", url=server.url)


def test_evaluate_writes_responses_and_keeps_scores_when_the_judge_is_down(tmp_path, fake_ollama):
    torch.manual_seed(0)
    model = GPTModel(PRESETS["test-tiny"]).eval()
    path = tmp_path / "out" / "responses.json"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    result = evaluate_instruct(model, EXAMPLES, ALPACA, responses_path=path, val_loss=1.0, max_new_tokens=5,
                               judge="ollama", judge_url=dead)
    saved = json.loads(path.read_text())
    assert [list(e) for e in saved] == [["instruction", "input", "output", "model_response"]] * 2
    assert [e["output"] for e in saved] == [e.output for e in EXAMPLES]
    assert result.judge_score is None and "no Ollama server" in result.judge_error
    assert result.rouge_l == pytest.approx(sum(result.per_entry_rouge_l) / 2)
    assert result.test_response_loss == pytest.approx(response_loss(model, EXAMPLES, ALPACA))

    server = fake_ollama(["70", "50"])
    result = evaluate_instruct(model, EXAMPLES, ALPACA, responses_path=path, max_new_tokens=5,
                               judge="ollama:tiny", judge_url=server.url)
    assert result.judge_score == 60.0 and result.judge_scored == 2
    assert [e["judge_score"] for e in json.loads(path.read_text())] == [70, 50]


def test_score_command_reads_the_books_response_file(dataset, capsys):
    path = dataset("instruction-data-with-response.json")
    examples, responses = read_responses(path)
    assert len(examples) == 110
    assert main(["evaluate-instruct", "--score", str(path)]) == 0
    out = capsys.readouterr().out
    expected = sum(rouge_l([e.output for e in examples], responses)) / 110
    assert f"ROUGE-L F1 {expected:.3f} over 110 responses" in out


def test_the_summary_names_the_split_that_answered(tmp_path):
    """`evaluate-instruct --split val` scores the val split and says so (it used to print "test responses")."""
    torch.manual_seed(0)
    model = GPTModel(PRESETS["test-tiny"]).eval()
    result = evaluate_instruct(model, EXAMPLES[:1], ALPACA, max_new_tokens=3, split="val")
    assert result.n_test == 1 and result.split == "val"
    assert [line.split(":")[0] for line in result.summary_lines()] == ["val responses"]
    with pytest.raises(ScratchError, match="the val split is empty"):
        evaluate_instruct(model, [], ALPACA, split="val")
