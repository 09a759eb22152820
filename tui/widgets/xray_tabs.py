"""The X-ray screen's tabs: Next token (with the sampling fields), Attention (layer, head, token #), Logit
lens and Loss. Each pane shows a table laid out by chatgpt_scratch.usecases.xray_view, the rows the CLI
prints. A change of any setting posts XrayTabs.SettingsChanged; the screen recomputes the views."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, ScrollableContainer, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static, TabbedContent, TabPane

from tui.widgets.xray_views import table_text
from tui.xray_compute import SAMPLING_FIELDS, SETTINGS_SELECTOR, parse_sampling

PANES = {"next": "#xr-next", "attention": "#xr-attention", "lens": "#xr-lens", "loss": "#xr-loss"}


def _int(value: Any) -> int | None:
    # Unset selects hold a NoSelection marker (and Select.BLANK is False, equal to 0): test for ints.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class XrayTabs(Vertical):
    DEFAULT_CSS = "XrayTabs { height: 1fr; }"

    class SettingsChanged(Message):
        """A sampling field, the layer, the head or the token # changed."""

    def compose(self) -> ComposeResult:
        with TabbedContent(id="xr-tabs"):
            with TabPane("Next token", id="xr-tab-next"):
                with Horizontal(classes="xr-controls"):
                    for name, label, default in SAMPLING_FIELDS:
                        yield Label(label, classes="xr-field-label")
                        yield Input(default, id=f"xr-{name}", classes="xr-field", compact=True)
                with VerticalScroll(classes="xr-pane"):
                    yield Static("", id="xr-next")
            with TabPane("Attention", id="xr-tab-attention"):
                with Horizontal(classes="xr-controls"):
                    yield Label("layer", classes="xr-field-label")
                    yield Select([], id="xr-layer", allow_blank=True, prompt="-", compact=True)
                    yield Label("head", classes="xr-field-label")
                    yield Select([], id="xr-head", allow_blank=True, prompt="-", compact=True)
                    yield Label("token #", classes="xr-field-label")
                    yield Input("", id="xr-token", classes="xr-field", compact=True, placeholder="last (or click a token)")
                with ScrollableContainer(classes="xr-pane"):
                    yield Static("", id="xr-attention")
            with TabPane("Logit lens", id="xr-tab-lens"):
                with VerticalScroll(classes="xr-pane"):
                    yield Static("", id="xr-lens")
            with TabPane("Loss", id="xr-tab-loss"):
                with VerticalScroll(classes="xr-pane"):
                    yield Static("", id="xr-loss")

    @on(Input.Changed, SETTINGS_SELECTOR)
    @on(Select.Changed, "#xr-layer, #xr-head")
    def _changed(self, event: Input.Changed | Select.Changed) -> None:
        event.stop()
        self.post_message(self.SettingsChanged())

    def configure(self, n_layers: int, n_heads: int) -> None:
        """A model was loaded: its layers and heads to pick from (the last layer, the mean of heads)."""
        layer, head = self.query_one("#xr-layer", Select), self.query_one("#xr-head", Select)
        with layer.prevent(Select.Changed), head.prevent(Select.Changed):
            layer.set_options([(str(i), i) for i in range(n_layers)])
            layer.value = n_layers - 1
            head.set_options([("mean", -1)] + [(str(i), i) for i in range(n_heads)])
            head.value = -1

    def sampling(self) -> tuple[dict[str, Any], list[str]]:
        """The sampling fields as SamplingConfig keyword arguments, and one message per bad field."""
        return parse_sampling({name: self.query_one(f"#xr-{name}", Input).value for name, _, _ in SAMPLING_FIELDS})

    def selection(self) -> tuple[int | None, int | None, int | None] | str:
        """(layer, head or None for the mean, token index or None for the last), or what is wrong."""
        token_text = self.query_one("#xr-token", Input).value.strip()
        token = None
        if token_text:
            try:
                token = int(token_text)
            except ValueError:
                return "token #: a token index (0 = the first), or blank for the last token"
        head = _int(self.query_one("#xr-head", Select).value)
        return _int(self.query_one("#xr-layer", Select).value), (head if head is not None and head >= 0 else None), token

    def pick_token(self, index: int) -> None:
        self.query_one("#xr-token", Input).value = str(index)  # Input.Changed: SettingsChanged

    def show(self, tables: dict[str, Any]) -> None:
        for name, selector in PANES.items():
            self.query_one(selector, Static).update(table_text(tables[name]))

    def clear(self) -> None:
        for selector in PANES.values():
            self.query_one(selector, Static).update("")
