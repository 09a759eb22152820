"""A Select of checkpoints of the wanted kinds, filled by a header-only listing in a worker.

LoRA adapters are listed when the model they make (their header's model_kind) is a wanted kind,
labelled "name (lora → kind, preset)": the screens load them like full models (merged on load).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import work
from textual.content import Content
from textual.message import Message
from textual.widgets import Select


class ModelPicker(Select[str]):
    """Lists checkpoints (and adapters) whose model kind is in `kinds`; posts Select.Changed on a pick."""

    def __init__(self, kinds: tuple[str, ...], *, id: str | None = None, prompt: str = "Pick a checkpoint") -> None:
        super().__init__([], prompt=prompt, id=id, allow_blank=True)
        self.kinds = kinds
        self.paths: list[Path] = []
        self.loaded = False

    class Listed(Message):
        """The picker's options were (re)filled from the checkpoints folder; `infos` are the models offered."""

        def __init__(self, picker: ModelPicker, infos: list[Any]) -> None:
            super().__init__()
            self.picker, self.infos = picker, infos

        @property
        def control(self) -> ModelPicker:  # so @on(ModelPicker.Listed, "#id") can match the picker
            return self.picker

    @work(thread=True, exclusive=True, exit_on_error=False)
    def reload(self) -> None:
        """List the checkpoints again (headers only, in a worker); the options change, then Listed is posted."""
        from chatgpt_scratch.checkpoints import list_checkpoints
        from chatgpt_scratch.usecases.inference import adapted_kind

        infos = [i for i in list_checkpoints() if i.ok and adapted_kind(i.metadata) in self.kinds]
        self.app.call_from_thread(self._fill, infos)

    def _fill(self, infos: list[Any]) -> None:
        current = self.value if self.value != Select.BLANK else None
        self.paths = [i.path for i in infos]
        options = [(Content(option_label(i)), str(i.path)) for i in infos]  # file names: not markup
        with self.prevent(Select.Changed):
            self.set_options(options)
            if current in {str(p) for p in self.paths}:
                self.value = current
        self.loaded = True
        self.post_message(self.Listed(self, infos))

    def on_worker_state_changed(self, event) -> None:
        # This widget's worker reports here (the event does not bubble): the App turns errors into a notification.
        self.app.on_worker_state_changed(event)

    def select_path(self, path: Path) -> None:
        """Show `path` as picked without posting Changed (the screen loads it itself)."""
        with self.prevent(Select.Changed):
            if str(path) in {str(p) for p in self.paths}:
                self.value = str(path)


def option_label(info) -> str:
    """'name (instruct, gpt2-small)'; an adapter shows what it makes: 'name (lora → instruct, gpt2-small)'."""
    from chatgpt_scratch.usecases.inference import adapted_kind

    kind = info.kind if info.kind != "lora-adapter" else f"lora → {adapted_kind(info.metadata)}"
    builtin = ", built-in" if getattr(info, "builtin", False) else ""
    return f"{info.name} ({kind}, {info.preset or 'custom'}{builtin})"
