"""The X-ray screen's requests and computation, off the UI thread: the sampling fields and their parse,
then from a request (text ids, sampling, the selected layer/head/token, an optional step) to Views,
the library's numbers and the tables chatgpt_scratch.usecases.xray_view lays out from them (the rows the CLI
prints). The model work itself is the library's (chatgpt_scratch.usecases.xray); this module only chooses
what to ask it. No widgets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from chatgpt_scratch.sampling import parse_sampling_text, sampling_params
from chatgpt_scratch.usecases.xray_view import Shown, lay_out

# The Next-token tab's fields, from sampling.SAMPLING_PARAMS (as the CLI's flags): the model's own
# distribution (temperature 1) with the usual cuts to show. Blank top-k / top-p = off.
XRAY_SAMPLING = {"temperature": "1.0", "top_k": "40", "top_p": "0.95", "repetition_penalty": "1.0"}
SAMPLING_FIELDS = [(p.name, p.short_label, XRAY_SAMPLING[p.name]) for p in sampling_params(XRAY_SAMPLING)]

SETTING_INPUTS = {f"xr-{name}" for name, _, _ in SAMPLING_FIELDS} | {"xr-token"}
SETTINGS_SELECTOR = ", ".join(f"#{i}" for i in sorted(SETTING_INPUTS))


def parse_sampling(values: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Text fields -> SamplingConfig keyword arguments (sampling.parse_sampling_text), plus one message per field."""
    kwargs, problems = parse_sampling_text(values)
    errors = []
    for param in sampling_params(problems):
        need = "required" if problems[param.name] == "required" else f"a {problems[param.name]}"
        errors.append(f"{param.short_label}: {need}{' or blank' if param.optional else ''}")
    return kwargs, errors


@dataclass
class Views(Shown):
    """What the worker hands the UI: the library's views and their tables (xray_view.Shown), and for what."""

    seq: int = 0
    stepped: bool = False  # the ids grew or shrank by stepping, not by typing: show their text in the input
    ray: Any = None  # chatgpt_scratch.usecases.xray.XRay, kept to recompute views without a new forward pass


@dataclass
class ViewRequest:
    seq: int  # the screen's request number: a newer one makes this one stale
    model: Any
    ids: list[int]
    ray: Any  # the last forward pass to reuse, or None
    sampling_kwargs: dict[str, Any]
    make_ids: Callable[[], list[int]] | None  # new ids (a new forward pass), computed in the worker
    step: str | None  # 'top' or 'sample' appends a token
    stepped: bool  # the ids came from stepping (show their text in the input)
    layer: int | None
    head: int | None
    token: int | None


def compute_views(request: ViewRequest, generator: Any = None) -> Views:
    """Run (or reuse) the forward pass and compute every view. ScratchError for a step with no text yet
    or a token index outside the text."""
    from chatgpt_scratch.usecases import xray as X
    from chatgpt_scratch.errors import ScratchError
    from chatgpt_scratch.generation import SamplingConfig

    sampling = SamplingConfig(**request.sampling_kwargs)
    ids, ray = request.ids, request.ray
    if request.make_ids is not None:
        ids, ray = request.make_ids(), None
    if request.step is not None:
        if ray is None:
            raise ScratchError("nothing to step from yet; type some text")
        ids = ray.ids + [X.choose_next(ray, sampling, request.step, generator)]
        ray = None
    if ray is None:
        ray = X.xray(request.model, ids)
    shown = lay_out(ray, sampling, request.layer, request.head, request.token)  # the CLI's tables too
    return Views(**vars(shown), seq=request.seq, stepped=request.step is not None or request.stepped, ray=ray)
