"""X-ray screen: watch the model read a text and decide on the next token.

Type a sentence and see its BPE tokens, the next-token distribution under your
sampling settings (which tokens survive temperature, top-k and top-p), the
attention of any layer and head, the logit lens and the per-token loss. Step
forward one token at a time (pick the top token or sample one).

The widgets own their parts (tui/widgets/xray_prompt.py: the prompt box and the token chips;
xray_tabs.py: the settings and the four views; model_loader.py: loading with progress); this screen
joins them: it asks for a computation when the text or a setting changes and shows the result.
All numbers come from chatgpt_scratch.usecases.xray and are laid out by usecases.xray_view (the rows
`chatgpt-scratch xray` prints), computed in a thread worker; torch is imported there, never at module
level, so opening the app stays fast. One lock serialises the model calls (attention recording is a
flag on the shared model), and a sequence number drops results that a newer request has overtaken.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Label

from chatgpt_scratch.storage.checkpoint_format import DEFAULT_KINDS  # stdlib only
from chatgpt_scratch.usecases.xray_view import token_stats
from tui.screens.base import MainScreen
from tui.widgets.model_loader import ModelLoader
from tui.widgets.model_picker import ModelPicker
from tui.widgets.xray_prompt import TokenChips, XrayPrompt
from tui.widgets.xray_tabs import XrayTabs
from tui.xray_compute import SAMPLING_FIELDS, ViewRequest, Views, compute_views, parse_sampling  # noqa: F401

DEFAULT_TEXT = "Every effort moves you"
NO_MODEL = ("No base or instruct checkpoint yet. Import GPT-2 in Checkpoints (4), or train one in Train (3); "
            "`chatgpt-scratch import-gpt2 --help`.")


class XrayScreen(MainScreen):
    MODE = "xray"

    class Computed(Message):
        """A worker ran the model (or reused its last pass) and computed every view."""

        def __init__(self, views: Views) -> None:
            super().__init__()
            self.views = views

    def __init__(self) -> None:
        super().__init__()
        self.model: Any = None
        self.ids: list[int] = []
        self.views: Views | None = None
        self.seq = 0
        self.lock = threading.Lock()
        self.generator: Any = None  # torch.Generator for "Sample", made in the worker

    # --- layout ------------------------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        with Vertical(id="xr-body"):
            with Horizontal(id="xr-top"):
                # No role: X-ray opens with the base model (the default rule, as `xray` does), not the chat's.
                picker = ModelPicker(DEFAULT_KINDS["xray"], id="xr-model", prompt="Pick a base or instruct model")
                picker.compact = True
                yield picker
                yield Button("Pick top ▶", id="xr-step-top", compact=True)
                yield Button("Sample ▶", id="xr-step-sample", compact=True)
                yield Button("◀ Back", id="xr-back", compact=True)
            yield XrayPrompt(DEFAULT_TEXT, id="xr-text", compact=True, placeholder="Type a sentence to x-ray")
            yield TokenChips("", id="xr-tokens")
            yield Label("", id="xr-status")
            yield XrayTabs(id="xr-views")
        yield ModelLoader(self.build_model, id="xr-loader")

    def on_mount(self) -> None:
        self.query_one(XrayPrompt).focus()
        self.set_status("Loading the list of models…")
        self.query_one(ModelPicker).reload()

    def on_screen_resume(self) -> None:
        if self.query_one(ModelPicker).loaded:
            self.query_one(ModelPicker).reload()

    def set_status(self, text: str) -> None:
        self.query_one("#xr-status", Label).update(Text(text))

    # --- models --------------------------------------------------------------------------------------

    @on(ModelPicker.Listed, "#xr-model")
    def models_listed(self, message: ModelPicker.Listed) -> None:
        if not message.infos:
            self.set_status(NO_MODEL)

    @on(ModelPicker.Picked, "#xr-model")
    def model_picked(self, message: ModelPicker.Picked) -> None:
        self.query_one(ModelLoader).load(message.path)

    def build_model(self, path: Path) -> Any:
        """In the loader's worker: the model, ready for the X-ray."""
        from chatgpt_scratch.system.device import resolve_device
        from chatgpt_scratch.usecases.inference import load_for_inference

        with self.lock:
            model, _ = load_for_inference(path, device=resolve_device("auto"), kind=DEFAULT_KINDS["xray"])
        return model.eval()

    @on(ModelLoader.Progress, "#xr-loader")
    def loading(self, message: ModelLoader.Progress) -> None:
        self.set_status(message.text)

    @on(ModelLoader.Failed, "#xr-loader")
    def load_failed(self, message: ModelLoader.Failed) -> None:
        self.set_status(f"Could not load {message.path.name}: pick another model above.")

    @on(ModelLoader.Loaded, "#xr-loader")
    def model_loaded(self, message: ModelLoader.Loaded) -> None:
        self.model = message.model
        self.query_one(ModelPicker).current = message.path
        self.views = None  # the last forward pass belongs to the previous model
        self.query_one(XrayTabs).configure(self.model.cfg.n_layers, self.model.cfg.n_heads)
        self.set_status(f"{message.path.name} ready.")
        self.retokenize(self.query_one(XrayPrompt).text)

    # --- input -----------------------------------------------------------------------------------------

    @on(XrayPrompt.Edited, "#xr-text")
    def text_edited(self, message: XrayPrompt.Edited) -> None:
        self.retokenize(message.text, force=message.force)

    @on(XrayTabs.SettingsChanged)
    def settings_changed(self) -> None:
        """Settings or selection changed: recompute the views from the last forward pass."""
        if self.model is not None and self.views is not None:
            self.compute()

    @on(TokenChips.Picked)
    def token_picked(self, message: TokenChips.Picked) -> None:
        """A click on a token chip: show that token's attention and logit lens."""
        self.query_one(XrayTabs).pick_token(message.index)

    @on(Button.Pressed, "#xr-step-top")
    def step_top_pressed(self) -> None:
        self.action_step("top")

    @on(Button.Pressed, "#xr-step-sample")
    def step_sample_pressed(self) -> None:
        self.action_step("sample")

    @on(Button.Pressed, "#xr-back")
    def back_pressed(self) -> None:
        self.action_back()

    def retokenize(self, text: str, force: bool = False) -> None:
        """The text changed: tokenize it afresh and run the model.

        A typing pause whose text is what the screen already shows (the box's first value, say) does
        nothing: recomputing would overtake a step (F6/F7) still in flight and drop it. Enter forces it.
        """
        from chatgpt_scratch.tokenizer import decode  # tiktoken only

        if self.model is None or (not force and self.views is not None and text == decode(self.ids)):
            return
        if not text:
            self.ids, self.views = [], None
            self.query_one(TokenChips).update("")
            self.set_status("Type some text to x-ray.")
            self.query_one(XrayTabs).clear()
            return

        def ids_of_text() -> list[int]:
            from chatgpt_scratch.tokenizer import encode

            return encode(text)

        self.compute(ids_of_text)

    # --- the work ----------------------------------------------------------------------------------

    def compute(self, make_ids=None, step: str | None = None, stepped: bool = False) -> None:
        """Run the model in a worker and redraw.

        make_ids: called in the worker for new ids (a new forward pass); step: 'top' or 'sample' appends
        a token; stepped: the ids came from stepping (show their text in the input).
        """
        if self.model is None:
            self.notify("Pick a model first.", severity="warning")
            return
        tabs = self.query_one(XrayTabs)
        sampling_kwargs, errors = tabs.sampling()
        if errors:
            self.set_status("Sampling settings: " + "; ".join(errors))
            return
        selection = tabs.selection()
        if isinstance(selection, str):
            self.set_status(selection)
            return
        self.seq += 1
        ray = self.views.ray if self.views else None
        self.run_compute(ViewRequest(self.seq, self.model, list(self.ids), ray, sampling_kwargs, make_ids, step,
                                     stepped, *selection))

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
        views = message.views
        if views.seq != self.seq:
            return  # a newer request is on its way
        self.ids, self.views = list(views.ray.ids), views
        if views.stepped:
            from chatgpt_scratch.tokenizer import decode  # tiktoken only; torch is already loaded by now

            # The ids' text, not re-tokenized (a decoded text may split differently); newlines show as ↵.
            self.query_one(XrayPrompt).show_text(decode(self.ids))
        self.query_one(TokenChips).show(views.tokens, views.token)
        self.set_status(token_stats(views.tokens, views.loss.perplexity))
        self.query_one(XrayTabs).show(views.tables)

    def action_step(self, mode: str) -> None:
        self.compute(step=mode)

    def action_back(self) -> None:
        """Drop the last token (undo a step)."""
        if len(self.ids) > 1:
            ids = self.ids[:-1]
            self.compute(lambda: ids, stepped=True)
