"""The sampling settings as a column of labelled fields, generated from the library's one declaration
(chatgpt_scratch.sampling.SAMPLING_PARAMS) and read with its one parse function."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Input, Label

from chatgpt_scratch.sampling import parse_sampling_text


class SamplingForm(Vertical):
    """One row per (name, label, default text) field; ids `#s-NAME` and `#s-NAME-error`."""

    DEFAULT_CSS = "SamplingForm { height: auto; }"

    def __init__(self, fields: list[tuple[str, str, str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fields = fields

    def compose(self) -> ComposeResult:
        for name, label, default in self.fields:
            with Horizontal(classes="field"):
                yield Label(label, classes="field-label")
                yield Input(default, id=f"s-{name}", classes="field-input", compact=True)
            yield Label("", id=f"s-{name}-error", classes="field-error")

    def read(self) -> Any | None:
        """A SamplingConfig from the fields, or None after marking what is wrong (and saying so)."""
        values = {name: self.query_one(f"#s-{name}", Input).value for name, _, _ in self.fields}
        kwargs, errors = parse_sampling_text(values)
        for name, _, _ in self.fields:
            self.show_error(name, errors.get(name, ""))
        if errors:
            self.notify("Fix the sampling settings marked in red.", severity="error")
            return None
        from chatgpt_scratch.errors import ScratchError
        from chatgpt_scratch.generation import SamplingConfig

        try:
            return SamplingConfig(**kwargs)
        except ScratchError as e:
            field_name = next((n for n, _, _ in self.fields if str(e).startswith(n)), None)
            if field_name:
                self.show_error(field_name, str(e).split(",")[0])
            self.notify(str(e), severity="error", markup=False)
            return None

    def show_error(self, name: str, message: str) -> None:
        label = self.query_one(f"#s-{name}-error", Label)
        label.update(Content(message))
        label.set_class(bool(message), "-shown")
