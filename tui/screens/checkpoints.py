"""Checkpoints screen: every model file in the checkpoints folder, its details, and what you can do with it.

The widgets own their parts: CheckpointTable (the listing), CheckpointDetails (the header keys and the
run's loss curve), GPT2Import (the import job and its progress). The screen holds the actions: use a
model, rename, duplicate, delete, export, merge an adapter, import GPT-2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import DataTable, Label

from tui.checkpoint_rows import find_run_events, human_size  # noqa: F401 (find_run_events: public here too)
from tui.screens.base import MainScreen
from tui.screens.dialogs import ChoicePrompt, ConfirmDialog, TextPrompt
from tui.widgets.checkpoint_details import CheckpointDetails
from tui.widgets.checkpoint_table import CheckpointTable
from tui.widgets.gpt2_import import GPT2_SIZES, GPT2Import, import_target


class CheckpointsScreen(MainScreen):
    MODE = "checkpoints"

    class FileChanged(Message):
        """A file operation (rename, duplicate, delete, export, merge) finished: say `text`, select `select`."""

        def __init__(self, text: str, select: Path | None = None) -> None:
            super().__init__()
            self.text, self.select = text, select

    def compose_body(self) -> ComposeResult:
        with Vertical(id="ckpt-body"):
            yield Label("Loading checkpoints…", id="ckpt-folder")
            yield CheckpointTable(id="ckpt-table")
            yield GPT2Import(id="ckpt-progress-row", classes="hidden")
            yield CheckpointDetails(id="ckpt-details")

    @property
    def table(self) -> CheckpointTable:
        return self.query_one(CheckpointTable)

    @property
    def infos(self) -> dict[str, Any]:
        return self.table.infos

    def on_mount(self) -> None:
        self.call_after_refresh(self.action_refresh)  # after the first paint (the listing imports torch)

    def on_screen_resume(self) -> None:
        if self.infos:
            self.action_refresh()

    # --- listing -------------------------------------------------------------------------------

    def action_refresh(self, select: Path | None = None) -> None:
        self.table.reload(select)

    @on(CheckpointTable.Listed)
    def listed(self, message: CheckpointTable.Listed) -> None:
        infos, folder = message.infos, message.folder
        n_broken = sum(not i.ok for i in infos)
        n_builtin = sum(i.builtin for i in infos)
        label = f"{len(infos) - n_builtin} checkpoint(s) in {folder}"
        if n_builtin:
            label += f" · {n_builtin} built-in (read-only; d duplicates one)"
        if n_broken:
            label += f" · {n_broken} broken"
        if not infos:
            label = (f"No checkpoints in {folder}. Press i to import GPT-2, or train one in the Train screen (3).")
        self.query_one("#ckpt-folder", Label).update(Content(label))
        self.show_details()

    def selected_path(self) -> Path | None:
        return self.table.selected_path()

    def selected_info(self) -> Any | None:
        return self.table.selected_info()

    @on(DataTable.RowHighlighted, "#ckpt-table")
    def row_highlighted(self) -> None:
        self.show_details()

    @on(CheckpointTable.UseRequested)
    def use_requested(self) -> None:
        self.action_use("chat")

    def show_details(self) -> None:
        self.query_one(CheckpointDetails).show(self.selected_info())

    # --- actions -------------------------------------------------------------------------------

    def _need_selection(self) -> Any | None:
        info = self.selected_info()
        if info is None:
            self.notify("Select a checkpoint first.", severity="warning")
        return info

    def action_use(self, role: str) -> None:
        info = self._need_selection()
        if info is None:
            return
        if not info.ok:
            self.notify(info.error, severity="error", markup=False)
            return
        from chatgpt_scratch.checkpoints import a_kind
        from chatgpt_scratch.usecases.inference import adapted_kind

        wanted = {"chat": ("base", "instruct"), "spam": ("classifier",)}[role]
        kind = adapted_kind(info.metadata)  # a LoRA adapter counts as the model it makes
        if kind not in wanted:
            what = (f"a LoRA adapter of {a_kind(kind)} model" if info.kind == "lora-adapter"
                    else f"{a_kind(info.kind)} checkpoint")
            self.notify(f"{info.name} is {what}; {role} needs {' or '.join(wanted)}.",
                        severity="warning", markup=False)
            return
        self.app.use_checkpoint(role, info.path)

    def _refuse_builtin(self, info: Any, action: str) -> bool:
        """A built-in model cannot be renamed or deleted: say so at once, before any dialog."""
        if not info.builtin:
            return False
        from chatgpt_scratch.storage.builtin import builtin_message

        self.notify(builtin_message(info.path, action), severity="warning", markup=False)
        return True

    def _ask_then(self, action: str, dialog: Callable[[Any], Any],
                  operation: Callable[[Any, Any], tuple[str, Path | None]]) -> None:
        """The selected checkpoint (not a built-in one), the user's answer to `dialog(info)`, then
        `operation(info, answer)` as a file operation; an empty answer (Esc, No) does nothing."""
        info = self._need_selection()
        if info is None or self._refuse_builtin(info, action):
            return

        def answer(value: Any) -> None:
            if value:
                self.file_operation(lambda: operation(info, value))

        self.app.push_screen(dialog(info), answer)

    def action_rename(self) -> None:
        def rename(info: Any, name: str) -> tuple[str, Path]:
            from chatgpt_scratch.checkpoints import rename_checkpoint

            new = rename_checkpoint(info.path, name)
            return f"Renamed to {new.name}", new

        self._ask_then("rename", lambda info: TextPrompt(f"New name for {info.name}:", info.name), rename)

    def action_duplicate(self) -> None:
        info = self._need_selection()
        if info is None:
            return

        def work():
            from chatgpt_scratch.checkpoints import duplicate_checkpoint

            new = duplicate_checkpoint(info.path)
            return f"Copied to {new.name}", new

        self.file_operation(work)

    def action_delete(self) -> None:
        def delete(info: Any, _yes: bool) -> tuple[str, None]:
            from chatgpt_scratch.checkpoints import delete_checkpoint

            delete_checkpoint(info.path)
            return f"Deleted {info.name}", None

        self._ask_then("delete", lambda info: ConfirmDialog(f"Delete {info.name} ({human_size(info.file_size)})? "
                                                            "This cannot be undone.", yes="Delete"), delete)

    @work(thread=True, exit_on_error=False)
    def file_operation(self, operation: Callable[[], tuple[str, Path | None]]) -> None:
        """Run a library file operation off the UI thread; it returns (what to say, the row to select)."""
        self.post_message(self.FileChanged(*operation()))

    @on(FileChanged)
    def file_changed(self, message: FileChanged) -> None:
        self._done(message.text, message.select)

    def _done(self, message: str, select: Path | None = None) -> None:
        self.notify(message, markup=False)
        self.action_refresh(select=select)

    def action_export_hf(self) -> None:
        info = self._need_selection()
        if info is None:
            return
        default = str(info.path.parent / f"{info.name}-hf")

        def answer(folder: str | None) -> None:
            if not folder:
                return

            def work():
                from chatgpt_scratch.storage.gpt2_weights import export_checkpoint_hf

                return f"Exported to {export_checkpoint_hf(info.path, folder)}", info.path

            self.notify(f"Exporting {info.name}…", markup=False)
            self.file_operation(work)

        self.app.push_screen(TextPrompt("Export to the Hugging Face layout, in folder:", default), answer)

    def action_merge_lora(self) -> None:
        info = self._need_selection()
        if info is None:
            return
        if info.kind != "lora-adapter":
            self.notify("Select a LoRA adapter (kind lora-adapter) to merge it into its base.", severity="warning")
            return
        default = f"{info.name}-merged"

        def answer(name: str | None) -> None:
            if not name:
                return
            out = info.path.parent / name

            def work():
                from chatgpt_scratch.lora import merge_adapter_file

                path = merge_adapter_file(info.path, out)[0]
                return f"Merged into {path.name}", path

            self.file_operation(work)

        self.app.push_screen(TextPrompt(f"Merge {info.name} into its base; save the result as:", default), answer)

    def action_import_gpt2(self) -> None:
        def answer(choice: str | None) -> None:
            if choice:
                self.start_import(choice)

        self.app.push_screen(ChoicePrompt("Import OpenAI GPT-2 weights (downloads when online):", GPT2_SIZES,
                                          path_hint="…or a local model.safetensors path"), answer)

    def start_import(self, source: str) -> None:
        """Run `chatgpt-scratch import-gpt2` as a subprocess and show its download progress."""
        from chatgpt_scratch.storage.paths import checkpoints_dir

        args, out = import_target(source, checkpoints_dir())
        if out.exists():
            self.notify(f"{out.name} exists already; rename or delete it first.", severity="error", markup=False)
            return
        self.query_one(GPT2Import).start(source, args, out)

    @on(GPT2Import.Finished)
    def imported(self, message: GPT2Import.Finished) -> None:
        self._done(f"Imported {message.path.name}", message.path)
