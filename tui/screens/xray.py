"""X-ray screen: watch the model read a text and decide on the next token.

Type a sentence and see its BPE tokens, the next-token distribution under your
sampling settings (which tokens survive temperature, top-k and top-p), the
attention of any layer and head, the logit lens and the per-token loss. Step
forward one token at a time (pick the top token or sample one).

All numbers come from chatgpt_scratch.usecases.xray, computed in a thread worker; torch is
imported there, never at module level, so opening the app stays fast. One lock
serialises the model calls (attention recording is a flag on the shared model),
and a sequence number drops results that a newer request has overtaken.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, ScrollableContainer, Vertical, VerticalScroll
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Button, Input, Label, Select, Static, TabbedContent, TabPane

from chatgpt_scratch.usecases.xray_view import significant
from tui.screens.base import MainScreen
from tui.widgets.model_picker import ModelPicker
from tui.xray_compute import (SAMPLING_FIELDS, SETTINGS_SELECTOR, ViewRequest, Views,  # noqa: F401
                              compute_views, parse_sampling)
from tui.widgets.xray_views import render_attention, render_chips, render_lens, render_loss, render_next

DEFAULT_TEXT = "Every effort moves you"
TYPING_PAUSE_S = 0.25  # recompute once typing pauses this long
# Chip backgrounds, picked by a hash of the token id (dark enough for white text).
NO_MODEL = ("No base or instruct checkpoint yet. Import GPT-2 in Checkpoints (4), or train one in Train (3); "
            "`chatgpt-scratch import-gpt2 --help`.")

class XrayScreen(MainScreen):
    MODE = "xray"
    CSS_PATH = "xray.tcss"
    BINDINGS = [
        # F1-F5 switch screens (app bindings), so stepping starts at F6.
        Binding("f6", "step('top')", "Pick top ▶"),
        Binding("f7", "step('sample')", "Sample ▶"),
        Binding("f8", "back", "◀ Back"),
    ]

    class ModelLoaded(Message):
        """A worker loaded the model at `path`."""

        def __init__(self, path: Path, model: Any) -> None:
            super().__init__()
            self.path, self.model = path, model

    class Computed(Message):
        """A worker ran the model (or reused its last pass) and computed every view."""

        def __init__(self, views: Views) -> None:
            super().__init__()
            self.views = views

    def __init__(self) -> None:
        super().__init__()
        self.model: Any = None
        self.loaded_path: Path | None = None
        self.ids: list[int] = []
        self.views: Views | None = None
        self.seq = 0
        self.lock = threading.Lock()
        self.generator: Any = None  # torch.Generator for "Sample", made in the worker
        self.typing_timer: Timer | None = None

    # --- layout ------------------------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        with Vertical(id="xr-body"):
            with Horizontal(id="xr-top"):
                picker = ModelPicker(("base", "instruct"), id="xr-model", prompt="Pick a base or instruct model")
                picker.compact = True
                yield picker
                yield Button("Pick top ▶", id="xr-step-top", compact=True)
                yield Button("Sample ▶", id="xr-step-sample", compact=True)
                yield Button("◀ Back", id="xr-back", compact=True)
            yield Input(DEFAULT_TEXT, id="xr-text", compact=True, placeholder="Type a sentence to x-ray")
            yield Static("", id="xr-tokens")
            yield Label("", id="xr-status")
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

    def on_mount(self) -> None:
        self.query_one("#xr-text", Input).focus()
        self.set_status("Loading the list of models…")
        self.reload_models()

    def on_screen_resume(self) -> None:
        if self.query_one(ModelPicker).loaded:
            self.reload_models()

    def set_status(self, text: str) -> None:
        self.query_one("#xr-status", Label).update(Text(text))

    # --- models --------------------------------------------------------------------------------------

    def reload_models(self) -> None:
        self.query_one("#xr-model", ModelPicker).reload()

    @on(ModelPicker.Listed, "#xr-model")
    def models_listed(self, message: ModelPicker.Listed) -> None:
        infos = message.infos
        if not infos:
            self.set_status(NO_MODEL)
            return
        paths = [i.path for i in infos]
        wanted = self.loaded_path  # X-ray opens with the base model (the default rule), not the chat's
        if wanted not in paths:
            from chatgpt_scratch.checkpoints import pick_default

            wanted = pick_default(infos, ("base", "instruct")).path  # the base model first, as `xray` does
        if wanted is None:
            self.set_status("Pick a model above.")
        elif wanted != self.loaded_path:
            self.query_one(ModelPicker).select_path(wanted)
            self.load(wanted)

    @on(Select.Changed, "#xr-model")
    def model_picked(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and Path(event.value) != self.loaded_path:
            self.load(Path(event.value))

    @on(Select.Changed, "#xr-layer, #xr-head")
    def attention_picked(self) -> None:
        self.refresh_views()

    def load(self, path: Path) -> None:
        self.set_status(f"Loading {path.name}…")
        self.load_model(path)

    @work(thread=True, exclusive=True, group="xray-load", exit_on_error=False)
    def load_model(self, path: Path) -> None:
        from textual.worker import get_current_worker

        from chatgpt_scratch.system.device import resolve_device
        from chatgpt_scratch.usecases.inference import load_for_inference

        with self.lock:
            model, _ = load_for_inference(path, device=resolve_device("auto"), kind=("base", "instruct"))
        if not get_current_worker().is_cancelled:  # a newer pick replaced this one
            self.post_message(self.ModelLoaded(path, model.eval()))

    @on(ModelLoaded)
    def model_loaded(self, message: ModelLoaded) -> None:
        model, path = message.model, message.path
        self.model, self.loaded_path = model, path
        self.views = None  # the last forward pass belongs to the previous model
        cfg = model.cfg
        layer = self.query_one("#xr-layer", Select)
        head = self.query_one("#xr-head", Select)
        with layer.prevent(Select.Changed), head.prevent(Select.Changed):
            layer.set_options([(str(i), i) for i in range(cfg.n_layers)])
            layer.value = cfg.n_layers - 1
            head.set_options([("mean", -1)] + [(str(i), i) for i in range(cfg.n_heads)])
            head.value = -1
        self.retokenize()

    # --- input -----------------------------------------------------------------------------------------

    @on(Input.Changed, "#xr-text")
    def text_typed(self) -> None:
        if self.typing_timer is not None:
            self.typing_timer.stop()
        self.typing_timer = self.set_timer(TYPING_PAUSE_S, self.retokenize)

    @on(Input.Changed, SETTINGS_SELECTOR)
    def setting_typed(self) -> None:
        self.refresh_views()

    @on(Input.Submitted, "#xr-text")
    def text_entered(self) -> None:
        self.retokenize(force=True)

    @on(Button.Pressed, "#xr-step-top")
    def step_top_pressed(self) -> None:
        self.action_step("top")

    @on(Button.Pressed, "#xr-step-sample")
    def step_sample_pressed(self) -> None:
        self.action_step("sample")

    @on(Button.Pressed, "#xr-back")
    def back_pressed(self) -> None:
        self.action_back()

    def retokenize(self, force: bool = False) -> None:
        """The text changed: tokenize it afresh and run the model.

        A typing pause whose text is what the screen already shows (the box's first value, say) does
        nothing: recomputing would overtake a step (F6/F7) still in flight and drop it. Enter forces it.
        """
        from chatgpt_scratch.tokenizer import decode  # tiktoken only

        text = self.query_one("#xr-text", Input).value
        if self.model is None or (not force and self.views is not None and text == decode(self.ids)):
            return
        if not text:
            self.ids = []
            self.views = None
            self.draw_empty()
            return

        def ids_of_text() -> list[int]:
            from chatgpt_scratch.tokenizer import encode

            return encode(text)

        self.compute(ids_of_text)

    def sampling_request(self) -> dict[str, Any] | None:
        values = {name: self.query_one(f"#xr-{name}", Input).value for name, _, _ in SAMPLING_FIELDS}
        kwargs, errors = parse_sampling(values)
        if errors:
            self.set_status("Sampling settings: " + "; ".join(errors))
            return None
        return kwargs

    def selection(self) -> tuple[int | None, int | None, int | None] | None:
        """(layer, head or None for the mean, token index or None for the last); None if the token # is bad."""
        layer = self.query_one("#xr-layer", Select).value
        head = self.query_one("#xr-head", Select).value
        token_text = self.query_one("#xr-token", Input).value.strip()
        token = None
        if token_text:
            try:
                token = int(token_text)
            except ValueError:
                self.set_status("token #: a token index (0 = the first), or blank for the last token")
                return None
        # Unset selects hold a NoSelection marker (and Select.BLANK is False, equal to 0): test for ints.
        layer = layer if isinstance(layer, int) and not isinstance(layer, bool) else None
        head = head if isinstance(head, int) and not isinstance(head, bool) and head >= 0 else None
        return layer, head, token

    # --- the work ----------------------------------------------------------------------------------

    def compute(self, make_ids=None, step: str | None = None, stepped: bool = False) -> None:
        """Run the model in a worker and redraw.

        make_ids: called in the worker for new ids (a new forward pass); step: 'top' or 'sample' appends
        a token; stepped: the ids came from stepping (show their text in the input).
        """
        if self.model is None:
            self.notify("Pick a model first.", severity="warning")
            return
        sampling_kwargs, selection = self.sampling_request(), self.selection()
        if sampling_kwargs is None or selection is None:
            return
        self.seq += 1
        seq, model, ray = self.seq, self.model, (self.views.ray if self.views else None)
        ids = list(self.ids)
        layer, head, token = selection

        request = ViewRequest(seq, model, ids, ray, sampling_kwargs, make_ids, step, stepped, layer, head, token)
        self.run_compute(request)

    @work(thread=True, group="xray-compute", exit_on_error=False)
    def run_compute(self, request: ViewRequest) -> None:
        with self.lock:  # one model pass at a time, in the order asked
            if request.seq != self.seq:
                return  # overtaken by a newer request while waiting
            if request.step == "sample" and self.generator is None:
                from chatgpt_scratch.generation import make_generator

                self.generator = make_generator(None)
            views = compute_views(request, self.generator)
        self.post_message(self.Computed(views))

    @on(Computed)
    def computed(self, message: Computed) -> None:
        self.show(message.views)

    def refresh_views(self) -> None:
        """Settings or selection changed: recompute the views from the last forward pass."""
        if self.model is not None and self.views is not None:
            self.compute()

    def action_step(self, mode: str) -> None:
        self.compute(step=mode)

    def action_select_token(self, index: int) -> None:
        """A click on a token chip: show that token's attention and logit lens."""
        self.query_one("#xr-token", Input).value = str(index)  # Input.Changed recomputes the views

    def action_back(self) -> None:
        """Drop the last token (undo a step)."""
        if len(self.ids) > 1:
            ids = self.ids[:-1]
            self.compute(lambda: ids, stepped=True)

    def set_text(self, ids: list[int]) -> None:
        """Show the ids' text in the input without re-tokenizing it (a decoded text may split differently)."""
        from chatgpt_scratch.tokenizer import decode  # tiktoken only; torch is already loaded by now

        box = self.query_one("#xr-text", Input)
        with box.prevent(Input.Changed):
            box.value = decode(ids)
            box.cursor_position = len(box.value)

    # --- drawing -------------------------------------------------------------------------------------

    def show(self, views: Views | None) -> None:
        if views is None or views.seq != self.seq:
            return  # a newer request is on its way
        self.ids, self.views = list(views.ray.ids), views
        if views.stepped:
            self.set_text(self.ids)
        self.query_one("#xr-tokens", Static).update(render_chips(views.tokens, views.token))
        loss = views.loss
        ppl = "-" if loss.perplexity is None else significant(loss.perplexity)
        self.set_status(f"{views.tokens.n_tokens} tokens · {views.tokens.n_chars} characters · "
                        f"{views.tokens.chars_per_token:.2f} characters per token · perplexity {ppl}")
        self.query_one("#xr-next", Static).update(render_next(views.next))
        self.query_one("#xr-attention", Static).update(render_attention(views))
        self.query_one("#xr-lens", Static).update(render_lens(views))
        self.query_one("#xr-loss", Static).update(render_loss(loss))

    def draw_empty(self) -> None:
        self.query_one("#xr-tokens", Static).update("")
        self.set_status("Type some text to x-ray.")
        for box in ("#xr-next", "#xr-attention", "#xr-lens", "#xr-loss"):
            self.query_one(box, Static).update("")
