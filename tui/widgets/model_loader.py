"""Loading a model off the UI thread, saying what is loading and how far it is (issue 14 #10).

The Chat, Spam and X-ray screens each own one ModelLoader (an invisible widget) and give it the library
call that builds their model. Its worker goes through the stages a first load really spends its time on
and posts ModelLoader.Progress twice a second with a one-line status, then ModelLoader.Loaded (or
ModelLoader.Failed; the error itself becomes the App's notification):

  loading tiny-base.safetensors, 12.4 MB… 0.5 s · starting PyTorch (once per session)
  loading tiny-base.safetensors, 12.4 MB… 1.5 s · reading the weights 8.0 MB of 12.4 MB
  loading tiny-base.safetensors, 12.4 MB… 1.6 s · building the model (base, test-tiny, 3.2M parameters)

Reading the file first, in chunks, is what lets it count megabytes: the library's load then finds the
bytes in the page cache. torch is imported here in the worker, never at module level.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

from textual import on, work
from textual.message import Message
from textual.widget import Widget

from tui.workers import ReportsWorkerErrors

CHUNK = 4 << 20  # read the weights 4 MiB at a time
TICK_S = 0.5  # the status line's seconds move on this often


class ModelLoader(ReportsWorkerErrors, Widget):
    """Loads `build(path)` in a worker; a newer load() replaces an older one still running."""

    DEFAULT_CSS = "ModelLoader { display: none; }"

    class _About(Message):
        """A message about loading `path`; `control` is the loader, so @on(..., "#id") can pick a screen's."""

        def __init__(self, loader: ModelLoader, path: Path) -> None:
            super().__init__()
            self.loader, self.path = loader, path

        @property
        def control(self) -> ModelLoader:
            return self.loader

    class Progress(_About):
        """Still loading `path`: `text` is the status line to show."""

        def __init__(self, loader: ModelLoader, path: Path, text: str) -> None:
            super().__init__(loader, path)
            self.text = text

    class Loaded(_About):
        """`model` (what build returned) is ready, from `path`."""

        def __init__(self, loader: ModelLoader, path: Path, model: Any) -> None:
            super().__init__(loader, path)
            self.model = model

    class Failed(_About):
        """Loading `path` failed (the App shows the error)."""

    class _Stage(Message):
        def __init__(self, path: Path, stage: str) -> None:
            super().__init__()
            self.path, self.stage = path, stage

    def __init__(self, build: Callable[[Path], Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.build = build
        self.path: Path | None = None  # the model being loaded, None when idle
        self.stage = ""
        self.stages: list[str] = []  # the stages of the last load, in order
        self._since = 0.0
        self._size = ""
        self._timer: Any = None


    def load(self, path: Path) -> None:
        from tui.checkpoint_rows import human_size  # the size the Checkpoints screen shows

        if path == self.path:
            return  # already loading it (a second listing picked it again): one load, one clock
        try:
            self._size = f", {human_size(path.stat().st_size)}"
        except OSError:
            self._size = ""
        self.path, self._since, self.stages = path, time.monotonic(), []
        self.stage = "starting"
        if self._timer is None:
            self._timer = self.set_interval(TICK_S, self._tell)
        self._tell()
        self._load(path)

    def status(self) -> str:
        if self.path is None:
            return ""
        return f"loading {self.path.name}{self._size}… {time.monotonic() - self._since:.1f} s · {self.stage}"

    def _tell(self) -> None:
        if self.path is not None:
            self.post_message(self.Progress(self, self.path, self.status()))

    @on(_Stage)
    def _staged(self, message: _Stage) -> None:
        message.stop()
        if message.path == self.path:
            self.stage = message.stage
            self.stages.append(message.stage)
            self._tell()

    def _done(self) -> None:
        self.path = None
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    @work(thread=True, exclusive=True, group="model-load", exit_on_error=False)
    def _load(self, path: Path) -> None:
        from textual.worker import get_current_worker

        worker = get_current_worker()

        def say(stage: str) -> None:
            if not worker.is_cancelled:
                self.post_message(self._Stage(path, stage))

        try:
            if "torch" not in sys.modules:
                say("starting PyTorch (once per session)")
                import torch  # noqa: F401  (the first import takes most of a first load)
            say("reading the header")
            about = describe(path)
            read_weights(path, say)
            say(f"building the model{about}")
            model = self.build(path)
            if callable(getattr(model, "warm_up", None)):  # e.g. a chat session compiling its decode step
                model.warm_up(say)
        except BaseException:
            if not worker.is_cancelled:
                self.app.call_from_thread(self._finish, path, None, failed=True)
            raise  # the App turns it into a notification
        if not worker.is_cancelled:  # a newer load replaced this one
            self.app.call_from_thread(self._finish, path, model)

    def _finish(self, path: Path, model: Any, failed: bool = False) -> None:
        # On the UI thread: a message made in a worker thread has no sender, and @on(..., "#id") skips those.
        self._done()
        self.post_message(self.Failed(self, path) if failed else self.Loaded(self, path, model))


def describe(path: Path) -> str:
    """' (base, test-tiny, 3.2M parameters)' from the header alone; '' if it cannot be read."""
    from chatgpt_scratch.checkpoints import checkpoint_info
    from tui.checkpoint_rows import human_count

    info = checkpoint_info(path)
    if not info.ok:
        return ""
    return f" ({info.kind}, {info.preset or 'custom'}, {human_count(info.n_params)} parameters)"


def read_weights(path: Path, say: Callable[[str], None], every_s: float = 0.1) -> None:
    """Read the file through once, saying how many MB so far (at most every `every_s`, and at the end)."""
    from tui.checkpoint_rows import human_size

    try:
        total = path.stat().st_size
        with open(path, "rb") as f:
            done, last = 0, 0.0
            while chunk := f.read(CHUNK):
                done += len(chunk)
                if time.monotonic() - last >= every_s or done >= total:
                    say(f"reading the weights {human_size(done)} of {human_size(total)}")
                    last = time.monotonic()
    except OSError:
        return  # the library's load says what is wrong with the file
