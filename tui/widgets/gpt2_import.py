"""Importing GPT-2 from the Checkpoints screen: `chatgpt-scratch import-gpt2` as a subprocess (what a user
would type), its download progress read from the child's tqdm output and shown in a bar. When the
import ends the widget posts GPT2Import.Finished; an error goes to the App's notification."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.message import Message
from textual.widgets import Label, ProgressBar

from tui import jobs
from tui.workers import ReportsWorkerErrors

GPT2_SIZES = [("gpt2-small (124M)", "gpt2-small"), ("gpt2-medium (355M)", "gpt2-medium"),
              ("gpt2-large (774M)", "gpt2-large"), ("gpt2-xl (1558M)", "gpt2-xl")]


def import_target(source: str, checkpoints: Path) -> tuple[list[str], Path]:
    """The import-gpt2 arguments for a size name or a local model.safetensors, and the file it writes."""
    if source in {size for _, size in GPT2_SIZES}:
        name, args = source, ["import-gpt2", source]
    else:
        path = Path(source).expanduser()
        name = path.parent.name if path.stem == "model" and path.parent.name else path.stem
        args = ["import-gpt2", "--from", str(path)]
    out = checkpoints / f"{name or 'gpt2-imported'}.safetensors"
    return [*args, "--out", str(out)], out


class GPT2Import(ReportsWorkerErrors, Horizontal):
    """A label and a progress bar, hidden until an import runs (id `ckpt-progress-row` for the CSS)."""

    class Finished(Message):
        """The import wrote `path`."""

        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path

    def compose(self) -> ComposeResult:
        yield Label("", id="ckpt-progress-label")
        yield ProgressBar(total=100, id="ckpt-progress", show_eta=False)

    def start(self, source: str, args: list[str], out: Path) -> None:
        self.remove_class("hidden")
        self.query_one("#ckpt-progress-label", Label).update(Content(f"importing {source}… "))
        self.query_one(ProgressBar).update(total=100, progress=0)
        self._run(args, out)

    @work(thread=True, exit_on_error=False)
    def _run(self, args: list[str], out: Path) -> None:
        bar = self.query_one(ProgressBar)
        try:
            proc = subprocess.Popen([*jobs.cli_prefix(), *args], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            reader = _ProgressReader(proc, lambda pct: self.app.call_from_thread(bar.update, progress=pct))
            reader.run()
            code = proc.wait()
            if code != 0:
                from chatgpt_scratch.errors import ScratchError

                raise ScratchError(in_app_terms(reader.last_line() or f"import-gpt2 failed (exit {code})"))
            self.post_message(self.Finished(out))
        finally:
            self.app.call_from_thread(self.add_class, "hidden")


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


# The CLI's way round a failed download is a flag; in the app it is the dialog's path field.
APP_FALLBACK = "type the path of a local model.safetensors in the Import GPT-2 dialog (i) instead"


def in_app_terms(message: str) -> str:
    """An import-gpt2 error line as the app's user can act on it: no CLI flags they have no place to type."""
    return (message.replace("use --from FILE", APP_FALLBACK)
            .replace("give a local model.safetensors with --from FILE", APP_FALLBACK))
