"""Judging an instruction-tuned model on held-out entries (book ch07, section 7.7-7.8).

1. Responses: greedy generation for every test entry, cut at <|endoftext|> or where the model
   starts a new turn (the template's stop strings), saved as a JSON list shaped like the book's
   instruction-data-with-response.json: {instruction, input, output, model_response}.
2. Automatic scores: the loss and perplexity of the *reference* responses given their prompts
   (prompt tokens masked: how surprised the model is by the right answer), and ROUGE-L F1 of
   each model response against its reference (Google's `rouge-score`, stemmed).
3. Optionally a judge: a larger local model served by Ollama scores each response 0-100, with
   the book's prompt (`--judge ollama[:MODEL]`, default model llama3).
"""

from __future__ import annotations

import json
import math
import os
import re
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from torch import nn

from chatgpt_scratch.data.instruct import InstructionExample
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.storage.fileio import write_text_atomic
from chatgpt_scratch.data.templates import ALPACA, PromptTemplate

DEFAULT_JUDGE_MODEL = "llama3"  # the book's choice (8B)
DEFAULT_OLLAMA_URL = "http://localhost:11434"


# --- responses ----------------------------------------------------------------------------------


def clean_response(text: str, template: PromptTemplate) -> str:
    """What the book keeps of a generation: no leftover response marker, no surrounding whitespace."""
    marker = template.response_prefix.strip()
    if marker and text.lstrip().startswith(marker):
        text = text.lstrip()[len(marker):]
    return text.strip()


def generate_responses(model: nn.Module, examples: Sequence[InstructionExample], template: PromptTemplate,
                       max_new_tokens: int = 256, batch_size: int = 8,
                       progress: Callable[[int], None] | None = None, sampling: Any = None) -> list[str]:
    """Greedy responses for each example (batched; each row stops on its own), in order; `sampling` (a
    SamplingConfig) draws them another way instead (benchmarks/chat_sampling.py)."""
    from chatgpt_scratch.generation import SamplingConfig, generate_batch
    from chatgpt_scratch.tokenizer import decode, encode

    sampling = sampling or SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens)
    prompts = [encode(template.prompt(e.instruction, e.input), allow_endoftext=False) for e in examples]
    responses: list[str] = []
    for start in range(0, len(prompts), batch_size):
        rows = generate_batch(model, prompts[start:start + batch_size], sampling,
                              stop_strings=template.stop_strings)
        responses += [clean_response(decode(row), template) for row in rows]
        if progress is not None:
            progress(len(rows))
    return responses


def with_responses(examples: Sequence[InstructionExample], responses: Sequence[str],
                   key: str = "model_response") -> list[dict[str, str]]:
    return [{**e.to_dict(), key: r} for e, r in zip(examples, responses)]


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON via a temp file + rename, so a crash never leaves half a file."""
    return write_text_atomic(path, json.dumps(data, indent=4, ensure_ascii=False) + "\n")


def read_responses(path: str | Path, key: str = "model_response") -> tuple[list[InstructionExample], list[str]]:
    """A responses file (ours or the book's) -> examples and responses; ScratchError naming a bad entry."""
    from chatgpt_scratch.data.instruct import parse_instruction_text

    path = Path(path)
    if not path.is_file():
        raise ScratchError(f"responses file not found: {path}")
    text = path.read_text(encoding="utf-8")
    examples = parse_instruction_text(text, str(path))  # validates, naming the bad line or entry
    stripped = text.lstrip("\ufeff \t\r\n")
    entries = json.loads(stripped) if stripped.startswith("[") else [
        json.loads(line) for line in text.splitlines() if line.strip()]
    responses = []
    for i, entry in enumerate(entries):
        if not isinstance(entry.get(key), str):
            raise ScratchError(f"{path}: entry {i} has no string {key!r}")
        responses.append(entry[key])
    return examples, responses


# --- automatic scores -----------------------------------------------------------------------------


def rouge_l(references: Sequence[str], candidates: Sequence[str]) -> list[float]:
    """ROUGE-L F1 per pair (longest common subsequence of words, Porter-stemmed, case-folded)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [scorer.score(ref, cand)["rougeL"].fmeasure for ref, cand in zip(references, candidates)]


def response_loss(model: nn.Module, examples: Sequence[InstructionExample], template: PromptTemplate,
                  batch_size: int = 8, max_length: int | None = None) -> float:
    """Mean cross-entropy per token of the reference responses (and their end token) given the prompts."""
    from chatgpt_scratch.data.instruct import encode_examples, iterate_batches
    from chatgpt_scratch.training.instruct_task import token_mean_loss

    max_length = max_length or model.cfg.context_length
    return token_mean_loss(model, iterate_batches(encode_examples(examples, template), batch_size, max_length,
                                                  mask_instructions=True))


# --- Ollama judge ---------------------------------------------------------------------------------


class JudgeUnavailable(ScratchError):
    """No Ollama server answered; the rest of the evaluation stands."""


def parse_judge(spec: str) -> str:
    """"ollama" -> the default model; "ollama:MODEL" -> MODEL."""
    kind, _, model = spec.partition(":")
    if kind != "ollama":
        raise ScratchError(f"--judge must be ollama or ollama:MODEL (e.g. ollama:llama3), got {spec!r}")
    return model or DEFAULT_JUDGE_MODEL


def judge_prompt(example: InstructionExample, response: str) -> str:
    """The book's scoring prompt (section 7.8)."""
    entry_text = ALPACA.prompt(example.instruction, example.input).removesuffix(ALPACA.response_prefix)
    return (f"Given the input `{entry_text}` "
            f"and correct output `{example.output}`, "
            f"score the model response `{response}`"
            " on a scale from 0 to 100, where 100 is the best score. "
            "Respond with the integer number only.")


def query_ollama(prompt: str, model: str, url: str = DEFAULT_OLLAMA_URL, timeout: float = 120.0) -> str:
    """POST /api/chat (the book's query_model): deterministic options, streamed JSON lines joined."""
    payload = json.dumps({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "options": {"seed": 123, "temperature": 0, "num_ctx": 2048},
    }).encode("utf-8")
    request = urllib.request.Request(url.rstrip("/") + "/api/chat", data=payload, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (local server)
            text = ""
            for line in response:
                if line.strip():
                    message = json.loads(line)
                    text += message.get("message", {}).get("content", "")
            return text
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace").strip()[:200]
        raise JudgeUnavailable(f"the Ollama server at {url} refused the request (HTTP {e.code}: {detail}); "
                               f"is the model pulled? run `ollama pull {model}`") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise JudgeUnavailable(f"no Ollama server at {url} ({reason}); start one with `ollama serve` "
                               f"and `ollama pull {model}`, or leave out --judge") from None


def parse_score(text: str) -> int | None:
    """The first whole number 0-100 in the judge's reply, or None."""
    match = re.search(r"\b(100|\d{1,2})\b", text)
    return int(match.group(1)) if match else None


def judge_responses(examples: Sequence[InstructionExample], responses: Sequence[str], model: str,
                    url: str | None = None, progress: Callable[[int], None] | None = None) -> list[int | None]:
    """0-100 per response (None where the reply held no number). JudgeUnavailable if no server answers."""
    url = url or os.environ.get("OLLAMA_HOST", DEFAULT_OLLAMA_URL)
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    scores: list[int | None] = []
    for example, response in zip(examples, responses):
        scores.append(parse_score(query_ollama(judge_prompt(example, response), model, url)))
        if progress is not None:
            progress(1)
    return scores


# --- the whole evaluation ----------------------------------------------------------------------


@dataclass
class InstructEvaluation:
    n_test: int
    val_loss: float | None
    val_ppl: float | None
    test_response_loss: float
    test_response_ppl: float
    rouge_l: float                     # mean ROUGE-L F1 over the test entries
    judge_model: str | None = None
    judge_score: float | None = None   # mean 0-100 over the parsed scores
    judge_scored: int = 0
    judge_error: str | None = None
    responses_path: str | None = None
    per_entry_rouge_l: list[float] = field(default_factory=list)
    split: str = "test"                # which split answered (the scores and n_test are of this split)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: a loss that could not be measured (NaN) is null."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    def summary_lines(self) -> list[str]:
        lines = []
        if self.val_loss is not None:
            lines.append(f"val loss {self.val_loss:.3f} (perplexity {self.val_ppl:.1f})")
        if math.isfinite(self.test_response_loss):
            loss = f"loss {self.test_response_loss:.3f} (perplexity {self.test_response_ppl:.1f})"
        else:  # every reference answer was cut off: no token to score
            loss = "loss not measurable (no reference-answer token fits in the context)"
        lines.append(f"{self.split} responses: {loss}, ROUGE-L F1 {self.rouge_l:.3f} over {self.n_test}")
        if self.judge_score is not None:
            lines.append(f"judge {self.judge_model}: mean score {self.judge_score:.1f}/100 "
                         f"({self.judge_scored} of {self.n_test} scored)")
        elif self.judge_error:
            lines.append(f"judge skipped: {self.judge_error}")
        if self.responses_path:
            lines.append(f"responses: {self.responses_path}")
        return lines


def _ppl(loss: float) -> float:
    return math.exp(min(loss, 700.0))


def evaluate_instruct(model: nn.Module, test: Sequence[InstructionExample], template: PromptTemplate,
                      responses_path: str | Path | None = None, val_loss: float | None = None,
                      max_new_tokens: int = 256, batch_size: int = 8, judge: str | None = None,
                      judge_url: str | None = None, progress: Callable[[str, int, int], None] | None = None,
                      split: str = "test") -> InstructEvaluation:
    """Generate responses for `test`, save them, and score them (see the module notes)."""
    if not test:
        raise ScratchError(f"the {split} split is empty; nothing to evaluate (use more data or a larger {split} fraction)")
    judge_model = parse_judge(judge) if judge else None

    def step(stage: str, total: int) -> Callable[[int], None] | None:
        if progress is None:
            return None
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            progress(stage, done[0], total)
        return advance

    responses = generate_responses(model, test, template, max_new_tokens, batch_size,
                                   progress=step("responses", len(test)))
    if responses_path is not None:
        write_json_atomic(responses_path, with_responses(test, responses))
    loss = response_loss(model, test, template, batch_size)
    rouge = rouge_l([e.output for e in test], responses)
    result = InstructEvaluation(
        n_test=len(test), val_loss=val_loss, val_ppl=_ppl(val_loss) if val_loss is not None else None,
        test_response_loss=loss, test_response_ppl=_ppl(loss), rouge_l=sum(rouge) / len(rouge),
        judge_model=judge_model, responses_path=str(responses_path) if responses_path else None,
        per_entry_rouge_l=rouge, split=split,
    )
    if judge_model is not None:
        try:
            scores = judge_responses(test, responses, judge_model, judge_url, progress=step("judge", len(test)))
        except JudgeUnavailable as e:
            result.judge_error = str(e)
        else:
            valid = [s for s in scores if s is not None]
            result.judge_scored = len(valid)
            result.judge_score = sum(valid) / len(valid) if valid else None
            if responses_path is not None:
                write_json_atomic(responses_path, [{**entry, "judge_score": s} for entry, s in
                                                   zip(with_responses(test, responses), scores)])
    return result
