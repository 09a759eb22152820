"""Training runs as the TUI sees them: folders under runs_dir() with an events.jsonl.

Pure Python (no torch, no textual) so the Train screen can list and tail runs
instantly, and tests can drive it directly. A job is the same CLI command a user
would type; it runs in its own session (start_new_session=True) so closing the
app never kills it, and stopping it is a SIGINT (the trainer saves and exits 0).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"
JOB_FILE = "tui-job.json"  # written by the TUI beside events.jsonl: pid + command of a job it started
TERMINAL_EVENTS = ("done", "stopped", "error")
# A run with no terminal event whose events file has not changed for this long (and whose process
# we cannot see) is reported as "interrupted" rather than "running".
STALE_AFTER_S = 120.0


class EventTail:
    """Reads the new complete JSON lines of an events.jsonl each time it is polled.

    A half-written last line is left for the next poll; a malformed line is skipped and counted.
    """

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
    return EventTail(path).poll()


@dataclass
class RunSummary:
    """What the runs list shows for one run folder."""

    name: str
    path: Path
    state: str  # running | done | stopped | error | interrupted | starting
    task: str = ""
    step: int | None = None
    total_steps: int | None = None
    last_train_loss: float | None = None
    best_val: float | None = None
    pid: int | None = None
    checkpoint: str | None = None
    error: str | None = None
    command: list[str] = field(default_factory=list)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A finished child we started is a zombie until reaped; treat it as gone.
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(")")[-1].split()[0] == "Z":
                return False
    except OSError:
        pass
    return True


def read_job_file(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / JOB_FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def summarize_run(run_dir: str | Path, now: float | None = None) -> RunSummary:
    run_dir = Path(run_dir)
    events = read_events(run_dir / EVENTS_FILE)
    job = read_job_file(run_dir)
    summary = RunSummary(name=run_dir.name, path=run_dir, state="starting", command=list(job.get("command", [])))
    summary.task = str(job.get("task", ""))
    pid = job.get("pid")
    for e in events:
        kind = e.get("type")
        if kind in ("start", "config", "run"):
            summary.task = str(e.get("task", summary.task) or summary.task)
            summary.total_steps = _int(e.get("total_steps", e.get("max_steps"))) or summary.total_steps
            pid = e.get("pid", pid)
        elif kind == "step":
            summary.step = _int(e.get("step"))
            summary.total_steps = _int(e.get("total_steps", e.get("max_steps"))) or summary.total_steps
            summary.last_train_loss = _float(e.get("train_loss"))
        elif kind == "eval":
            metric = _float(e.get("val_acc")) if "val_acc" in e else _float(e.get("val_loss"))
            if metric is not None:
                better = max if "val_acc" in e else min
                summary.best_val = metric if summary.best_val is None else better(summary.best_val, metric)
        elif kind == "checkpoint":
            summary.checkpoint = str(e.get("path"))
        if kind in TERMINAL_EVENTS:
            summary.state = kind
            summary.error = str(e.get("message", e.get("error", ""))) or None if kind == "error" else None
    summary.pid = _int(pid)
    if summary.state not in TERMINAL_EVENTS:
        events_file = run_dir / EVENTS_FILE
        if pid_alive(summary.pid):
            summary.state = "running"
        elif summary.pid and job:
            # We started it and it is gone without a final event: it crashed or was killed.
            summary.state = "interrupted"
        elif events_file.exists():
            age = (now or time.time()) - events_file.stat().st_mtime
            summary.state = "running" if age < STALE_AFTER_S else "interrupted"
    return summary


def list_runs(folder: str | Path | None = None) -> list[RunSummary]:
    """Every run folder (one with events.jsonl or a TUI job file), newest first."""
    if folder is None:
        from chatgpt_scratch.paths import runs_dir

        folder = runs_dir()
    folder = Path(folder)
    if not folder.is_dir():
        return []
    dirs = [d for d in folder.iterdir() if d.is_dir() and ((d / EVENTS_FILE).exists() or (d / JOB_FILE).exists())]
    dirs.sort(key=lambda d: _mtime(d), reverse=True)
    return [summarize_run(d) for d in dirs]


def _mtime(d: Path) -> float:
    for name in (EVENTS_FILE, JOB_FILE):
        try:
            return (d / name).stat().st_mtime
        except OSError:
            continue
    return 0.0


def cli_prefix() -> list[str]:
    """How to run the CLI: the same interpreter, so the job sees the same install."""
    return [sys.executable, "-m", "chatgpt_scratch"]


def display_command(args: list[str]) -> str:
    """The command as a user would type it."""
    return shlex.join(["chatgpt-scratch", *args])


def start_job(args: list[str], run_dir: Path, task: str = "") -> subprocess.Popen:
    """Start `chatgpt-scratch ARGS` detached from the app; its output goes to run_dir/output.log."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log = open(run_dir / "output.log", "ab")
    try:
        proc = subprocess.Popen(
            [*cli_prefix(), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # closing the TUI (SIGHUP/SIGINT to its group) must not stop the job
        )
    finally:
        log.close()
    job = {"pid": proc.pid, "command": args, "task": task, "started": time.time()}
    (run_dir / JOB_FILE).write_text(json.dumps(job))
    return proc


def stop_job(pid: int) -> None:
    """Graceful stop: SIGINT makes the trainer save a checkpoint and exit 0."""
    os.kill(pid, signal.SIGINT)


def tail_text(path: Path, max_bytes: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def smooth(values: list[float], alpha: float = 0.1) -> list[float]:
    """Exponential moving average, bias-corrected so the first points are not pulled toward 0."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = (1 - alpha) * avg + alpha * v
        out.append(avg / (1 - (1 - alpha) ** i))
    return out


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def _float(v: Any) -> float | None:
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None
