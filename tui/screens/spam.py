"""Spam screen: pick a classifier, paste a message (or many lines), see label and probability."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Button, DataTable, Label, ProgressBar, Static, TextArea

from chatgpt_scratch.storage.checkpoint_format import DEFAULT_KINDS  # stdlib only
from tui.screens.base import MainScreen
from tui.widgets.model_loader import ModelLoader
from tui.widgets.model_picker import ModelPicker
from tui.widgets.row_table import RowTable

NO_CLASSIFIER = (
    "No classifier checkpoint yet. Make one in the Train screen (3): task 'spam fine-tune', "
    "or run `chatgpt-scratch finetune-spam --help`."
)


class SpamScreen(MainScreen):
    MODE = "spam"

    class Classified(Message):
        """A worker classified `texts` (one prediction each) in `seconds`."""

        def __init__(self, texts: list[str], predictions: list[Any], seconds: float) -> None:
            super().__init__()
            self.texts, self.predictions, self.seconds = texts, predictions, seconds

    def __init__(self) -> None:
        super().__init__()
        self.classifier: Any = None
        self.results: list[tuple[str, float, str]] = []  # (label, probability, text) of the last classification

    def compose_body(self) -> ComposeResult:
        with Vertical(id="spam-body"):
            with Horizontal(id="spam-top"):
                yield ModelPicker(DEFAULT_KINDS["classify"], id="spam-model", prompt="Pick a classifier", role="spam")
                yield Button("Classify", id="spam-classify", variant="primary")
            yield Label("", id="spam-status")
            yield TextArea(id="spam-input", soft_wrap=True, show_line_numbers=False,
                           placeholder="Type or paste a message; several lines = one message per line")
            with Horizontal(id="spam-result"):
                yield Static("", id="spam-label")
                yield ProgressBar(total=100, show_eta=False, show_percentage=True, id="spam-bar")
            table = RowTable(id="spam-table", cursor_type="row", zebra_stripes=True)
            table.add_columns("Label", "Prob.", "Message")
            yield table
        yield ModelLoader(self.build_classifier, id="spam-loader")

    def on_mount(self) -> None:
        self.query_one("#spam-input", TextArea).focus()
        self.call_after_refresh(self.reload_models)  # after the first paint (the listing imports torch)

    def on_screen_resume(self) -> None:
        if self.query_one(ModelPicker).loaded:
            self.reload_models()

    def reload_models(self) -> None:
        picker = self.query_one("#spam-model", ModelPicker)
        picker.reload()

    @on(ModelPicker.Listed, "#spam-model")
    def models_listed(self, message: ModelPicker.Listed) -> None:
        if not message.infos:
            self.query_one("#spam-status", Label).update(NO_CLASSIFIER)

    @on(ModelPicker.Picked, "#spam-model")
    def model_picked(self, message: ModelPicker.Picked) -> None:
        self.load(message.path)

    def load(self, path: Path) -> None:
        self.query_one("#spam-result").loading = True
        self.query_one(ModelLoader).load(path)

    @staticmethod
    def build_classifier(path: Path) -> Any:
        """In the loader's worker: the classifier."""
        from chatgpt_scratch.classify import SpamClassifier

        return SpamClassifier.load(path, device="auto")

    @on(ModelLoader.Progress, "#spam-loader")
    def loading(self, message: ModelLoader.Progress) -> None:
        self.query_one("#spam-status", Label).update(Content(message.text))

    @on(ModelLoader.Failed, "#spam-loader")
    def load_failed(self, message: ModelLoader.Failed) -> None:
        self.query_one("#spam-result").loading = False
        self.query_one("#spam-status", Label).update(Content(f"Could not load {message.path.name}: pick another."))

    @on(ModelLoader.Loaded, "#spam-loader")
    def classifier_loaded(self, message: ModelLoader.Loaded) -> None:
        path, classifier = message.path, message.model
        self.query_one("#spam-result").loading = False
        self.classifier = classifier
        self.query_one(ModelPicker).current = path
        self.app.set_model("spam", path, path.name.removesuffix(".safetensors"))
        self.query_one("#spam-status", Label).update(Content(
            f"{path.name}: labels {', '.join(classifier.labels)}. Type a message, press ctrl+enter (or F6)."))

    @on(Button.Pressed, "#spam-classify")
    def classify_pressed(self) -> None:
        self.action_classify()

    def action_classify(self) -> None:
        text = self.query_one("#spam-input", TextArea).text
        texts = [line.strip() for line in text.splitlines() if line.strip()]
        if not texts:
            self.notify("Type or paste a message first.", severity="warning")
            return
        if self.classifier is None:
            self.notify("Pick a classifier checkpoint first." if self.query_one(ModelPicker).paths
                        else NO_CLASSIFIER, severity="warning", markup=False)
            return
        self.classify(self.classifier, texts)

    @work(thread=True, exclusive=True, group="spam-classify", exit_on_error=False)
    def classify(self, classifier: Any, texts: list[str]) -> None:
        from textual.worker import get_current_worker

        start = time.perf_counter()
        predictions = classifier.classify(texts)
        if not get_current_worker().is_cancelled:
            self.post_message(self.Classified(texts, predictions, time.perf_counter() - start))

    @on(Classified)
    def classified(self, message: Classified) -> None:
        self.show(message.texts, message.predictions, message.seconds)

    def show(self, texts: list[str], predictions: list[Any], seconds: float = 0.0) -> None:
        first = predictions[0]
        style = "bold red" if first.label.lower() == "spam" else "bold green"
        what = "" if len(texts) == 1 else f" (first of {len(texts)} lines)"
        self.query_one("#spam-label", Static).update(Content.assemble(
            (first.label.upper(), style), f" {first.probability:.1%}{what}"))
        self.query_one("#spam-bar", ProgressBar).update(total=100, progress=round(first.probability * 100, 1))
        self.query_one("#spam-status", Label).update(Content(
            f"{len(texts)} message{'s' if len(texts) > 1 else ''} classified in {seconds * 1000:.0f} ms "
            f"with {self.loaded_path.name if self.loaded_path else 'the model'}"))
        table = self.query_one("#spam-table", DataTable)
        # The table is this classification's: one row per line of the box, in its order. Older results kept
        # below a new batch read as part of it (issue 14 #8).
        self.results = [(p.label, p.probability, t) for t, p in zip(texts, predictions)]
        table.clear()
        for label, prob, text in self.results[:500]:
            # Text, not a str: a DataTable parses str cells as markup, and messages are anyone's text.
            table.add_row(label, f"{prob:.1%}", Text(text if len(text) <= 200 else text[:200] + "…"))

    def action_clear(self) -> None:
        self.query_one("#spam-input", TextArea).clear()
