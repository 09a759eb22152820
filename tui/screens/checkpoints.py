"""Checkpoints screen: every model file in the checkpoints folder, its details, and what you can do with it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import DataTable, Label, ProgressBar, Static

from chatgpt_scratch.inference import kind_label
from tui import jobs
from tui.screens.base import MainScreen
from tui.screens.dialogs import ChoicePrompt, ConfirmDialog, TextPrompt
from tui.widgets.loss_plot import LossPlot

COLUMNS = ("Name", "Kind", "Preset", "Params", "Size", "Created", "Parent", "Best val")
GPT2_SIZES = [("gpt2-small (124M)", "gpt2-small"), ("gpt2-medium (355M)", "gpt2-medium"),
              ("gpt2-large (774M)", "gpt2-large"), ("gpt2-xl (1558M)", "gpt2-xl")]


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def human_count(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}K"
    return str(n)


def metric_text(info: Any) -> str:
    if info.metric_name is None:
        return "-"
    if info.metric_name == "val_acc":
        return f"acc {info.metric_value:.1%}"
    return f"loss {info.metric_value:.3f}"


def row_for(info: Any) -> tuple[str, ...]:
    if not info.ok:
        return (info.name, "BROKEN", "-", "-", human_size(info.file_size), "-", "-", "-")
    created = (info.created or "-")[:16].replace("T", " ")
    preset = info.preset or info.metadata.get("preset") or "custom"  # pretraining may shrink the context
    name = f"{info.name} (built-in)" if info.builtin else info.name
    return (name, kind_label(info.metadata), preset, human_count(info.n_params),
            human_size(info.file_size), created, Path(info.parent).name if info.parent else "-", metric_text(info))


def find_run_events(checkpoint: Path, metadata: dict[str, Any]) -> Path | None:
    """The events.jsonl of the run that wrote this checkpoint, if it is still there."""
    for key in ("run_dir", "run"):
        value = metadata.get(key)
        if isinstance(value, str) and (Path(value) / jobs.EVENTS_FILE).is_file():
            return Path(value) / jobs.EVENTS_FILE
    from chatgpt_scratch.paths import runs_dir

    folder = runs_dir()
    if not folder.is_dir():
        return None
    target = checkpoint.resolve()
    steps = metadata.get("steps")  # several runs may have written to this path: the one that wrote this file
    for run in sorted(folder.iterdir(), reverse=True):  # newest first (names end in the start time)
        events = run / jobs.EVENTS_FILE
        if not events.is_file():
            continue
        for e in jobs.read_events(events):
            if (e.get("type") == "checkpoint" and e.get("path") and Path(e["path"]).resolve() == target
                    and (steps is None or e.get("step") == steps)):
                return events
    return None


class CheckpointsScreen(MainScreen):
    MODE = "checkpoints"
    CSS_PATH = "checkpoints.tcss"
    BINDINGS = [
        Binding("enter", "use('chat')", "Chat with it"),
        Binding("s", "use('spam')", "Use for spam"),
        Binding("r", "rename", "Rename"),
        Binding("d", "duplicate", "Duplicate"),
        Binding("delete,x", "delete", "Delete"),
        Binding("i", "import_gpt2", "Import GPT-2"),
        Binding("e", "export_hf", "Export HF"),
        Binding("m", "merge_lora", "Merge LoRA"),
        Binding("f9,ctrl+r", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.infos: dict[str, Any] = {}  # row key (path) -> CheckpointInfo

    def compose_body(self) -> ComposeResult:
        with Vertical(id="ckpt-body"):
            yield Label("Loading checkpoints…", id="ckpt-folder")
            table = DataTable(id="ckpt-table", cursor_type="row", zebra_stripes=True)
            table.add_columns(*COLUMNS)
            yield table
            with Horizontal(id="ckpt-progress-row", classes="hidden"):
                yield Label("", id="ckpt-progress-label")
                yield ProgressBar(total=100, id="ckpt-progress", show_eta=False)
            with Horizontal(id="ckpt-details"):
                with VerticalScroll(id="ckpt-meta-scroll"):
                    yield Static("", id="ckpt-meta")
                yield LossPlot(id="ckpt-plot", title="run loss")

    def on_mount(self) -> None:
        self.call_after_refresh(self.action_refresh)  # after the first paint (the listing imports torch)

    def on_screen_resume(self) -> None:
        if self.infos:
            self.action_refresh()

    # --- listing -------------------------------------------------------------------------------

    def action_refresh(self, select: Path | None = None) -> None:
        def work():
            from chatgpt_scratch.checkpoints import list_checkpoints
            from chatgpt_scratch.paths import checkpoints_dir

            return checkpoints_dir(), list_checkpoints()  # the user's folder, then the built-in models

        self.app.run_worker_thread(work, lambda result: self.show_list(*result, select=select),
                                   name="list-checkpoints", group="ckpt-list", exclusive=True)

    def show_list(self, folder: Path, infos: list[Any], select: Path | None = None) -> None:
        table = self.query_one("#ckpt-table", DataTable)
        current = self.selected_path()
        table.clear()
        self.infos = {}
        for info in infos:
            key = str(info.path)
            self.infos[key] = info
            table.add_row(*map(Text, row_for(info)), key=key)  # Text: a str cell would be parsed as markup
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
        want = str(select) if select else (str(current) if current else None)
        if want in self.infos:
            table.move_cursor(row=table.get_row_index(want))
        if infos:
            self.show_details()
        else:
            self.query_one("#ckpt-meta", Static).update("")

    def selected_path(self) -> Path | None:
        table = self.query_one("#ckpt-table", DataTable)
        if table.row_count == 0:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - no row under the cursor
            return None
        return Path(key) if key else None

    def selected_info(self) -> Any | None:
        path = self.selected_path()
        return self.infos.get(str(path)) if path else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_details()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_use("chat")  # Enter on a row (the table takes the key before the screen's binding)

    def show_details(self) -> None:
        info = self.selected_info()
        meta = self.query_one("#ckpt-meta", Static)
        plot = self.query_one("#ckpt-plot", LossPlot)
        if info is None:
            meta.update("")
            return
        if not info.ok:
            meta.update(Content.from_markup("[b]$name[/b]\n[red]$error[/red]", name=info.name, error=info.error))
            plot.set_series({})
            return
        # Header values are anyone's text (a cut-off JSON list, a path): $variables, never parsed as markup.
        lines = [Content.from_markup("[b]$name[/b]  ($kind, $dtype)\nfile: $path", name=info.name,
                                     kind=info.kind, dtype=info.dtype or "-", path=str(info.path))]
        for key, value in sorted(info.metadata.items()):
            text = value if isinstance(value, str) else json.dumps(value)
            if len(text) > 300:
                text = text[:300] + "…"
            lines.append(Content.from_markup("[b]$key[/b]: $text", key=key, text=text))
        meta.update(Content("\n").join(lines))
        path = info.path

        def work():
            events = find_run_events(path, info.metadata)
            return jobs.read_events(events) if events else []

        self.app.run_worker_thread(work, plot.set_events, name="ckpt-curve", group="ckpt-curve", exclusive=True)

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
        from chatgpt_scratch.inference import adapted_kind

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
        from chatgpt_scratch.builtin import builtin_message

        self.notify(builtin_message(info.path, action), severity="warning", markup=False)
        return True

    def action_rename(self) -> None:
        info = self._need_selection()
        if info is None or self._refuse_builtin(info, "rename"):
            return

        def answer(name: str | None) -> None:
            if not name:
                return

            def work():
                from chatgpt_scratch.checkpoints import rename_checkpoint

                return rename_checkpoint(info.path, name)

            self.app.run_worker_thread(work, lambda new: self._done(f"Renamed to {new.name}", new), name="rename")

        self.app.push_screen(TextPrompt(f"New name for {info.name}:", info.name), answer)

    def action_duplicate(self) -> None:
        info = self._need_selection()
        if info is None:
            return

        def work():
            from chatgpt_scratch.checkpoints import duplicate_checkpoint

            return duplicate_checkpoint(info.path)

        self.app.run_worker_thread(work, lambda new: self._done(f"Copied to {new.name}", new), name="duplicate")

    def action_delete(self) -> None:
        info = self._need_selection()
        if info is None or self._refuse_builtin(info, "delete"):
            return

        def answer(yes: bool | None) -> None:
            if not yes:
                return

            def work():
                from chatgpt_scratch.checkpoints import delete_checkpoint

                delete_checkpoint(info.path)

            self.app.run_worker_thread(work, lambda _: self._done(f"Deleted {info.name}"), name="delete")

        self.app.push_screen(ConfirmDialog(f"Delete {info.name} ({human_size(info.file_size)})? "
                                           "This cannot be undone.", yes="Delete"), answer)

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
                from chatgpt_scratch.gpt2_weights import export_checkpoint_hf

                return export_checkpoint_hf(info.path, folder)

            self.notify(f"Exporting {info.name}…", markup=False)
            self.app.run_worker_thread(work, lambda out: self.notify(f"Exported to {out}", markup=False),
                                       name="export-hf")

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

                return merge_adapter_file(info.path, out)[0]

            self.app.run_worker_thread(work, lambda path: self._done(f"Merged into {path.name}", path), name="merge")

        self.app.push_screen(TextPrompt(f"Merge {info.name} into its base; save the result as:", default), answer)

    def action_import_gpt2(self) -> None:
        def answer(choice: str | None) -> None:
            if choice:
                self.start_import(choice)

        self.app.push_screen(ChoicePrompt("Import OpenAI GPT-2 weights (downloads when online):", GPT2_SIZES,
                                          path_hint="…or a local model.safetensors path"), answer)

    def start_import(self, source: str) -> None:
        """Run `chatgpt-scratch import-gpt2` as a subprocess and show its download progress."""
        from chatgpt_scratch.paths import checkpoints_dir

        is_file = source not in {size for _, size in GPT2_SIZES}
        if is_file:
            path = Path(source).expanduser()
            name = path.parent.name if path.stem == "model" and path.parent.name else path.stem
            args = ["import-gpt2", "--from", str(path)]
        else:
            name = source
            args = ["import-gpt2", source]
        out = checkpoints_dir() / f"{name or 'gpt2-imported'}.safetensors"
        if out.exists():
            self.notify(f"{out.name} exists already; rename or delete it first.", severity="error", markup=False)
            return
        args += ["--out", str(out)]
        row = self.query_one("#ckpt-progress-row")
        row.remove_class("hidden")
        self.query_one("#ckpt-progress-label", Label).update(Content(f"importing {source}… "))
        bar = self.query_one("#ckpt-progress", ProgressBar)
        bar.update(total=100, progress=0)

        def work():
            try:
                proc = subprocess.Popen([*jobs.cli_prefix(), *args], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                reader = _ProgressReader(proc, lambda pct: self.app.call_from_thread(bar.update, progress=pct))
                reader.run()
                code = proc.wait()
                if code != 0:
                    from chatgpt_scratch.errors import ScratchError

                    raise ScratchError(reader.last_line() or f"import-gpt2 failed (exit {code})")
                return out
            finally:
                self.app.call_from_thread(row.add_class, "hidden")

        self.app.run_worker_thread(work, lambda path: self._done(f"Imported {path.name}", path), name="import-gpt2")


class _ProgressReader:
    """Reads a child's tqdm output (\\r-separated updates) and reports the last percentage seen."""

    PERCENT = re.compile(rb"(\d{1,3})%\|")

    def __init__(self, proc: subprocess.Popen, report) -> None:
        self.proc = proc
        self.report = report
        self.lines: list[str] = []

    def run(self) -> None:
        buf = b""
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(4096) if hasattr(self.proc.stdout, "read1") else self.proc.stdout.read(4096):
            buf += chunk
            parts = re.split(rb"[\r\n]", buf)
            buf = parts.pop()
            for part in parts:
                if not part.strip():
                    continue
                m = self.PERCENT.search(part)
                if m:
                    self.report(min(100, int(m.group(1))))
                else:
                    self.lines.append(part.decode("utf-8", "replace"))

    def last_line(self) -> str:
        for line in reversed(self.lines):
            if line.strip():
                return line.strip().removeprefix("error: ")
        return ""
