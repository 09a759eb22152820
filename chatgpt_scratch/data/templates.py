"""Prompt templates for instruction-tuned models.

A template turns an (instruction, input) pair into the prompt the model saw in
training, and tells where the response starts and which strings mean the model
has begun a new turn (so generation stops there). The template's name is stored
in an instruct checkpoint, so chat formats prompts exactly as training did.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatgpt_scratch.errors import ScratchError


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    preamble: str          # text before the instruction
    input_prefix: str      # put before a non-empty input
    response_prefix: str   # ends the prompt; the response follows it
    stop_strings: tuple[str, ...]  # the model starting a new turn

    def prompt(self, instruction: str, input: str = "") -> str:
        """Everything the model reads before it writes the response."""
        text = self.preamble + instruction
        if input:
            text += self.input_prefix + input
        return text + self.response_prefix

    def full_text(self, instruction: str, input: str, output: str) -> str:
        """Prompt and response together: one training example (before the end token)."""
        return self.prompt(instruction, input) + output


ALPACA = PromptTemplate(
    name="alpaca",
    preamble=(
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n### Instruction:\n"
    ),
    input_prefix="\n\n### Input:\n",
    response_prefix="\n\n### Response:\n",
    stop_strings=("### Instruction", "### Input", "### Response", "\n\nBelow is an instruction"),
)

# The book's exercise 7.1: Phi-3's chat markers, fewer prompt tokens.
PHI3 = PromptTemplate(
    name="phi3",
    preamble="<|user|>\n",
    input_prefix="\n",
    response_prefix="\n<|assistant|>:\n",
    stop_strings=("<|user|>", "<|assistant|>"),
)

TEMPLATES: dict[str, PromptTemplate] = {t.name: t for t in (ALPACA, PHI3)}


def get_template(name: str) -> PromptTemplate:
    if name not in TEMPLATES:
        raise ScratchError(f"unknown prompt template {name!r}; choose one of: {', '.join(TEMPLATES)}")
    return TEMPLATES[name]
