"""A Select of checkpoints of the wanted kinds, filled by a header-only listing in a worker.

The picker also decides which model its screen should load, and says so with ModelPicker.Picked:
after each listing (the one the app asks for, else the one the screen holds if still listed, else the
library's default for these kinds) and when the user picks another one. The screen loads it and, once
loaded, sets `current`.

LoRA adapters are listed when the model they make (their header's model_kind) is a wanted kind,
labelled "name (lora → kind, preset)": the screens load them like full models (merged on load).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.content import Content
from textual.message import Message
from textual.widgets import Select

from tui.workers import ReportsWorkerErrors


class ModelPicker(ReportsWorkerErrors, Select[str]):
    """Lists checkpoints (and adapters) whose model kind is in `kinds` (in order of preference for the default);
    posts Picked for the model to load. `role` ('chat', 'spam') names the app's record of the model wanted."""

    def __init__(self, kinds: tuple[str, ...], *, id: str | None = None, prompt: str = "Pick a checkpoint",
                 role: str | None = None) -> None:
        super().__init__([], prompt=prompt, id=id, allow_blank=True)
        self.kinds, self.role = kinds, role
        self.paths: list[Path] = []
        self.loaded = False  # listed at least once
        self.current: Path | None = None  # the model the screen holds (it sets this when a load finished)

    class _About(Message):
        """A message from `picker`; `control` is the picker, so @on(ModelPicker.X, "#id") can match a screen's."""

        def __init__(self, picker: ModelPicker) -> None:
            super().__init__()
            self.picker = picker

        @property
        def control(self) -> ModelPicker:
            return self.picker

    class Listed(_About):
        """The picker's options were (re)filled from the checkpoints folder; `infos` are the models offered."""

        def __init__(self, picker: ModelPicker, infos: list[Any]) -> None:
            super().__init__(picker)
            self.infos = infos

    class Picked(_About):
        """The screen should load `path`: the user picked it, or a listing chose it."""

        def __init__(self, picker: ModelPicker, path: Path) -> None:
            super().__init__(picker)
            self.path = path

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
        if infos:
            self._choose(infos)

    def _choose(self, infos: list[Any]) -> None:
        """After a listing: the model the app asks for (`role`), else the one the screen holds if it is still
        listed, else the library's default for `kinds`; picked (shown and posted) unless the screen holds it."""
        wanted = self.app.state.model(self.role).path if self.role else None
        if wanted is None:
            from chatgpt_scratch.checkpoints import pick_default

            # The library's rule (the CLI's too): the first of `kinds`, a full model before an adapter, then
            # the best recorded val metric; the user's own before a built-in one.
            wanted = self.current if self.current in self.paths else pick_default(infos, self.kinds).path
        if wanted != self.current:
            self.select_path(wanted)
            self.post_message(self.Picked(self, wanted))

    @on(Select.Changed)
    def _user_picked(self, event: Select.Changed) -> None:
        if event.control is self and isinstance(event.value, str) and Path(event.value) != self.current:
            self.post_message(self.Picked(self, Path(event.value)))


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
