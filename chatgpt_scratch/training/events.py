"""Training events: one JSON object per line in `<run dir>/events.jsonl` (schema: docs/events.md).

The Trainer emits them; the progress bar, `--events -`, the loss plot and the TUI's Train
screen all read them, so this file is the single record of what a run did.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from chatgpt_scratch.errors import ScratchError

EVENT_TYPES = ("start", "step", "eval", "sample", "checkpoint", "done", "stopped", "error")
# The files of a run folder (runs/NAME-TIME/): what happened, and the command + flags that --resume reuses.
EVENTS_FILE = "events.jsonl"
RUN_FILE = "run.json"
TERMINAL_EVENTS = ("done", "stopped", "error")  # the last event of a run

Listener = Callable[[dict[str, Any]], None]


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null (a NaN loss is reported in an `error` event's message)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class EventLog:
    """Appends events to a JSONL file (flushed per line, so a tailing reader sees them at once),
    optionally mirrors them to a text stream (`--events -`), and calls listeners (progress bar)."""

    def __init__(self, path: str | Path | None, stream: TextIO | None = None,
                 listeners: list[Listener] | None = None):
        self.path = Path(path) if path is not None else None
        self.stream = stream
        self.listeners = list(listeners or [])
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        if type_ not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type_!r}")
        event = {"type": type_, "time": round(time.time(), 3), **{k: _clean(v) for k, v in fields.items()}}
        line = json.dumps(event, ensure_ascii=False)
        if self._file is not None:
            self._file.write(line + "\n")
            self._file.flush()
        if self.stream is not None:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except BrokenPipeError:  # `--events - | head`: keep training, stop streaming
                self.stream = None
        for listener in self.listeners:
            listener(event)
        return event

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "EventLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EventTail:
    """Reads the new complete JSON lines of an events.jsonl each time it is polled (the TUI follows a
    live run with it). A half-written last line is left for the next poll; a malformed line is skipped
    and counted, where `read_events` (for tools that need the whole record) refuses a damaged file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self.bad_lines = 0

    def poll(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        events = []
        for line in chunk[: end + 1].splitlines():
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                self.bad_lines += 1
                continue
            if isinstance(event, dict):
                events.append(event)
        return events


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All events of a run (a half-written last line, from a run still writing, is skipped)."""
    return list(iter_events(path))


def iter_events(path: str | Path) -> Iterator[dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        path = path / EVENTS_FILE
    if not path.is_file():
        raise ScratchError(f"no events file at {path}; pass a run folder that holds {EVENTS_FILE}")
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # still being written
                return
            raise ScratchError(f"{path} line {number} is not valid JSON; the events file is damaged") from None
        yield event


def stderr_is_tty() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
