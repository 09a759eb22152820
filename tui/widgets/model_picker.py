"""A Select of checkpoints of the wanted kinds, filled by a header-only listing in a worker."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Select


class ModelPicker(Select[str]):
    """Lists checkpoints whose kind is in `kinds`; posts Select.Changed when the user picks one."""

    def __init__(self, kinds: tuple[str, ...], *, id: str | None = None, prompt: str = "Pick a checkpoint") -> None:
        super().__init__([], prompt=prompt, id=id, allow_blank=True)
        self.kinds = kinds
        self.paths: list[Path] = []
        self.loaded = False

    def reload(self, then=None) -> None:
        kinds = self.kinds

        def work():
            from chatgpt_scratch.checkpoints import list_checkpoints

            return [i for i in list_checkpoints() if i.ok and i.kind in kinds]

        def fill(infos) -> None:
            current = self.value if self.value != Select.BLANK else None
            self.paths = [i.path for i in infos]
            options = [(f"{i.name} ({i.kind}, {i.preset or 'custom'})", str(i.path)) for i in infos]
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
