"""A Select of checkpoints of the wanted kinds, filled by a header-only listing in a worker.

LoRA adapters are listed when the model they make (their header's model_kind) is a wanted kind,
labelled "name (lora → kind, preset)": the screens load them like full models (merged on load).
"""

from __future__ import annotations

from pathlib import Path
from textual.content import Content
from textual.widgets import Select


class ModelPicker(Select[str]):
    """Lists checkpoints (and adapters) whose model kind is in `kinds`; posts Select.Changed on a pick."""

    def __init__(self, kinds: tuple[str, ...], *, id: str | None = None, prompt: str = "Pick a checkpoint") -> None:
        super().__init__([], prompt=prompt, id=id, allow_blank=True)
        self.kinds = kinds
        self.paths: list[Path] = []
        self.loaded = False

    def reload(self, then=None) -> None:
        kinds = self.kinds

        def work():
            from chatgpt_scratch.checkpoints import list_checkpoints
            from chatgpt_scratch.inference import adapted_kind

            return [i for i in list_checkpoints() if i.ok and adapted_kind(i.metadata) in kinds]

        def fill(infos) -> None:
            current = self.value if self.value != Select.BLANK else None
            self.paths = [i.path for i in infos]
            options = [(Content(option_label(i)), str(i.path)) for i in infos]  # file names: not markup
            with self.prevent(Select.Changed):
                self.set_options(options)
                if current in {str(p) for p in self.paths}:
                    self.value = current
            self.loaded = True
            if then is not None:
                then(infos)

        self.app.run_worker_thread(work, fill, name=f"list-{self.id}", group=f"list-{self.id}", exclusive=True)

    def select_path(self, path: Path) -> None:
        """Show `path` as picked without posting Changed (the screen loads it itself)."""
        with self.prevent(Select.Changed):
            if str(path) in {str(p) for p in self.paths}:
                self.value = str(path)


def option_label(info) -> str:
    """'name (instruct, gpt2-small)'; an adapter shows what it makes: 'name (lora → instruct, gpt2-small)'."""
    from chatgpt_scratch.inference import adapted_kind

    kind = info.kind if info.kind != "lora-adapter" else f"lora → {adapted_kind(info.metadata)}"
    builtin = ", built-in" if getattr(info, "builtin", False) else ""
    return f"{info.name} ({kind}, {info.preset or 'custom'}{builtin})"
