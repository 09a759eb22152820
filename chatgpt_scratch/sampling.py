"""The sampling settings, declared once: the SamplingConfig dataclass and, for each of its fields, what a
front end needs to offer it (flag and command name, type, help, label, an example), plus the one function
that turns text a user typed into SamplingConfig arguments.

The CLI builds its --temperature/--top-k/... flags and chat's /temperature-style commands from
SAMPLING_PARAMS; the TUI builds its sidebar fields from it. Pure Python (no torch): `--help` and the
TUI's first paint stay fast. `generation` re-exports SamplingConfig (its public home in the API).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Iterable, Mapping

from chatgpt_scratch.errors import ScratchError


@dataclass
class SamplingConfig:
    """How to pick each next token. The defaults are greedy decoding of up to 256 tokens."""

    temperature: float = 0.0  # 0 = greedy (argmax); higher = flatter, more random
    top_k: int | None = None  # keep only the k most likely tokens (when sampling)
    top_p: float | None = None  # keep the smallest set of most likely tokens whose mass reaches p (when sampling)
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in prompt or output (CTRL-style)
    max_new_tokens: int = 256
    seed: int | None = None  # same seed, same model, same prompt => same text

    def __post_init__(self) -> None:
        if not _is_number(self.temperature) or not math.isfinite(self.temperature) or self.temperature < 0:
            raise ScratchError(f"temperature must be a number >= 0 (0 means greedy), got {self.temperature!r}")
        if self.top_k is not None and (not _is_int(self.top_k) or self.top_k < 1):
            raise ScratchError(f"top_k must be a whole number >= 1 (or unset), got {self.top_k!r}")
        if self.top_p is not None and (not _is_number(self.top_p) or not 0.0 < self.top_p <= 1.0):
            raise ScratchError(f"top_p must be in (0, 1] (or unset), got {self.top_p!r}")
        if (not _is_number(self.repetition_penalty) or not math.isfinite(self.repetition_penalty)
                or self.repetition_penalty <= 0):
            raise ScratchError(f"repetition_penalty must be a number > 0 (1 = off), got {self.repetition_penalty!r}")
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 0:
            raise ScratchError(f"max_new_tokens must be a whole number >= 0, got {self.max_new_tokens!r}")
        if self.seed is not None and not _is_int(self.seed):
            raise ScratchError(f"seed must be a whole number (or unset), got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass(frozen=True)
class SamplingParam:
    """One SamplingConfig field as the front ends offer it. Bounds are checked by SamplingConfig itself."""

    name: str          # the SamplingConfig field
    type: type         # int or float
    optional: bool     # None allowed (blank field, "off" command, flag left out) = no limit / random
    help: str          # for --help and the chat command list
    metavar: str
    command: str       # chat's slash command: /temperature, /max-tokens, ...
    example: str       # a good value to show in messages
    label: str         # a form field's label
    short_label: str   # the same in a narrow sidebar

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def default(self) -> Any:
        return _DEFAULTS[self.name]


_DEFAULTS = {f.name: f.default for f in fields(SamplingConfig)}

SAMPLING_PARAMS: tuple[SamplingParam, ...] = (
    SamplingParam("temperature", float, False, "0 = greedy (always the likeliest token); higher = more random",
                  "T", "temperature", "0.7", "temperature", "temp"),
    SamplingParam("top_k", int, True, "sample only from the K most likely tokens", "K", "top-k", "40",
                  "top-k", "top-k"),
    SamplingParam("top_p", float, True, "sample only from the smallest set of tokens whose probability "
                  "reaches P (nucleus)", "P", "top-p", "0.9", "top-p", "top-p"),
    SamplingParam("max_new_tokens", int, False, "stop after N new tokens", "N", "max-tokens", "200",
                  "max new tokens", "max new"),
    SamplingParam("repetition_penalty", float, False, "> 1 discourages tokens already in the text (1 = off)",
                  "R", "repetition-penalty", "1.2", "rep. penalty", "rep.pen."),
    SamplingParam("seed", int, True, "same seed => same text", "SEED", "seed", "42", "seed", "seed"),
)
PARAMS_BY_NAME = {p.name: p for p in SAMPLING_PARAMS}
assert set(PARAMS_BY_NAME) == set(_DEFAULTS), "every SamplingConfig field is declared once here"


def sampling_params(names: Iterable[str] | None = None) -> list[SamplingParam]:
    """The declarations of `names` (in that order), or all of them."""
    return list(SAMPLING_PARAMS) if names is None else [PARAMS_BY_NAME[n] for n in names]


def parse_value(param: SamplingParam, text: str) -> Any:
    """One typed value -> its Python value (None for blank/"off" where allowed). ValueError says what it needs."""
    text = text.strip()
    if param.optional and text.lower() in ("", "off", "none"):
        return None
    if not text:
        raise ValueError("required")
    try:
        return param.type(text)
    except ValueError:
        raise ValueError("whole number" if param.type is int else "number") from None


def parse_sampling_text(values: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Text fields by field name -> (SamplingConfig keyword arguments, field name -> problem).

    A problem is "required", "number" or "whole number"; the ranges are SamplingConfig's to check.
    """
    kwargs: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, text in values.items():
        try:
            kwargs[name] = parse_value(PARAMS_BY_NAME[name], text)
        except ValueError as e:
            errors[name] = str(e)
    return kwargs, errors


def sampling_from(source: Any, base: SamplingConfig | None = None) -> SamplingConfig:
    """A SamplingConfig from an object (argparse Namespace) with any of the fields; the rest from `base`."""
    base = base or SamplingConfig()
    given = {p.name: getattr(source, p.name) for p in SAMPLING_PARAMS if hasattr(source, p.name)}
    return SamplingConfig(**{**{f.name: getattr(base, f.name) for f in fields(SamplingConfig)}, **given})
