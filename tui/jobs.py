"""Training runs as the TUI sees them: folders under runs_dir() with an events.jsonl.

Pure Python (no torch, no textual) so the Train screen can list and tail runs
instantly, and tests can drive it directly. A job is the same CLI command a user
would type; it runs in its own session (start_new_session=True) so closing the
app never kills it, and stopping it is a SIGINT (the trainer saves and exits 0). A run started
from a shell is stopped the same way, through the pid its `start` event records.
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

from chatgpt_scratch.system import procinfo
from chatgpt_scratch.training.events import EVENTS_FILE, RUN_FILE, TERMINAL_EVENTS, EventTail  # noqa: F401
from chatgpt_scratch.training.plots import smooth  # noqa: F401 (the one EMA of the curves; public here too)

JOB_FILE = "tui-job.json"  # written by the TUI beside events.jsonl: pid + command of a job it started
JOBS_SUBDIR = ".tui-jobs"  # RUNS/.tui-jobs/NAME.json + NAME.log: jobs the TUI started
# A run with no terminal event whose events file has not changed for this long (and whose process
# we cannot see) is reported as "interrupted" rather than "running".
STALE_AFTER_S = 120.0


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """Every complete event of a run so far, damaged lines skipped (the screens never fail on one)."""
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
    pid_start: int | None = None  # the process's start time (/proc/PID/stat field 22): with argv, who pid is
    pid_argv: list[str] = field(default_factory=list)
    checkpoint: str | None = None
    error: str | None = None
    command: list[str] = field(default_factory=list)
    log: str | None = None  # the job's output (jobs started from the TUI)


def pid_alive(pid: int | None) -> bool:
    if not procinfo.valid_pid(pid):  # -1 or 0 would mean "any child" / "the whole group" to the os calls
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


def is_training_process(pid: int | None, start: int | None = None, argv: list[str] | None = None) -> bool:
    """True if pid is alive and is the very process recorded as (start, argv): a pid from an old events
    file may since have been reused by another program (or be the app, a chat session, another run),
    which must never be signalled. See procinfo.same_process."""
    return pid_alive(pid) and procinfo.same_process(pid, start, argv)


def read_job_file(run_dir: Path) -> dict[str, Any]:
    return _read_json(run_dir / JOB_FILE)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


_EVENTS_CACHE: dict[Path, tuple[tuple[int, int], list[dict[str, Any]]]] = {}


def _cached_events(path: Path) -> list[dict[str, Any]]:
    """The runs list is refreshed every few seconds: re-read an events file only when it changed."""
    try:
        st = path.stat()
    except OSError:
        return []
    key = (st.st_size, st.st_mtime_ns)
    hit = _EVENTS_CACHE.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    events = read_events(path)
    _EVENTS_CACHE[path] = (key, events)
    return events


def summarize_run(run_dir: str | Path, now: float | None = None) -> RunSummary:
    run_dir = Path(run_dir)
    events = _cached_events(run_dir / EVENTS_FILE)
    job = read_job_file(run_dir)
    run_doc = _read_json(run_dir / RUN_FILE)  # written by the CLI: {"command": "pretrain", "args": {...}}
    summary = RunSummary(name=run_dir.name, path=run_dir, state="starting", command=_str_list(job.get("command")))
    summary.task = str(job.get("task") or run_doc.get("command") or "")
    summary.log = job.get("log")
    pid = _int(job.get("pid"))
    job_identity = (_int(job.get("pid_start")), _str_list(job.get("argv")))
    start_pid = None  # the trainer's own pid (rank 0) from the latest `start`: also set for shell runs
    start_identity: tuple[int | None, list[str]] = (None, [])
    for e in events:
        kind = e.get("type")
        if kind == "start":
            start_pid = _int(e.get("pid"))
            start_identity = (_int(e.get("pid_start")), _str_list(e.get("argv")))
            summary.total_steps = _int(e.get("total_steps")) or summary.total_steps
            summary.checkpoint = e.get("checkpoint") or summary.checkpoint
            summary.state = "running"
        elif kind == "step":
            summary.step = _int(e.get("step"))
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
            summary.error = (str(e.get("message") or "") or None) if kind == "error" else None
    summary.pid = pid if is_training_process(pid, *job_identity) else None
    if summary.pid is not None:
        summary.pid_start, summary.pid_argv = job_identity
    if summary.state not in TERMINAL_EVENTS and start_pid and is_training_process(start_pid, *start_identity):
        summary.pid = start_pid  # e.g. started from a shell, or resumed there after the TUI started it
        summary.pid_start, summary.pid_argv = start_identity
    known_pid = pid or start_pid
    if summary.state not in TERMINAL_EVENTS:
        events_file = run_dir / EVENTS_FILE
        if summary.pid is not None:
            summary.state = "running" if events else "starting"
        elif known_pid:
            # We started it and it is gone without a final event: it crashed or was killed.
            summary.state = "interrupted"
        elif events_file.exists():
            age = (now or time.time()) - events_file.stat().st_mtime
            summary.state = "running" if age < STALE_AFTER_S else "interrupted"
    if summary.state not in ("running", "starting"):
        summary.pid, summary.pid_start, summary.pid_argv = None, None, []
    return summary


def jobs_dir(runs_folder: Path) -> Path:
    return runs_folder / JOBS_SUBDIR


def link_jobs(runs_folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Tie each job started here to the run folder its CLI made (`NAME-TIMESTAMP`), once it exists.

    The CLI picks the folder name; the TUI gives every new job a unique output NAME, so the
    folder that starts with NAME- and was made after the launch is its run. Returns the job
    records (path, record) still without a run folder.
    """
    folder = jobs_dir(runs_folder)
    if not folder.is_dir():
        return []
    unlinked = []
    for record_path in sorted(folder.glob("*.json")):
        record = _read_json(record_path)
        if not record or record.get("run_dir"):
            continue
        name, started = record.get("name", ""), float(record.get("started", 0))
        for d in runs_folder.iterdir():
            if not d.is_dir() or not d.name.startswith(f"{name}-") or (d / JOB_FILE).exists():
                continue
            if not (d / RUN_FILE).exists() or d.stat().st_mtime < started - 5:
                continue
            record["run_dir"] = str(d)
            (d / JOB_FILE).write_text(json.dumps(record))
            record_path.write_text(json.dumps(record))
            break
        else:
            unlinked.append((record_path, record))
    return unlinked


def pending_jobs(unlinked: list[tuple[Path, dict[str, Any]]]) -> list[RunSummary]:
    """Jobs started here whose run folder does not exist (yet): starting, or failed before training."""
    out = []
    for record_path, record in unlinked:
        pid = _int(record.get("pid"))
        start, argv = _int(record.get("pid_start")), _str_list(record.get("argv"))
        alive = is_training_process(pid, start, argv)
        out.append(RunSummary(name=str(record.get("name", record_path.stem)), path=record_path.with_suffix(""),
                              state="starting" if alive else "failed", task=str(record.get("task", "")),
                              pid=pid if alive else None, pid_start=start if alive else None,
                              pid_argv=argv if alive else [], command=_str_list(record.get("command")),
                              log=record.get("log")))
    return out


def list_runs(folder: str | Path | None = None) -> list[RunSummary]:
    """Every run folder (one with events.jsonl, run.json or a TUI job file) and every job started
    here that has no run folder (yet), newest first."""
    if folder is None:
        from chatgpt_scratch.storage.paths import runs_dir

        folder = runs_dir()
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pending = pending_jobs(link_jobs(folder))
    dirs = [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")
            and any((d / f).exists() for f in (EVENTS_FILE, JOB_FILE, RUN_FILE))]
    runs = pending + [summarize_run(d) for d in dirs]
    # A run folder by its newest file; a pending job (RUNS/.tui-jobs/NAME) by its record NAME.json.
    runs.sort(key=lambda r: _mtime(r.path, (EVENTS_FILE, RUN_FILE, JOB_FILE)) if r.path.is_dir()
              else _mtime(r.path.parent, (r.path.name + ".json",)), reverse=True)
    return runs


def _mtime(folder: Path, names: tuple[str, ...]) -> float:
    """The modification time of the first of `names` that exists in `folder` (0 if none does)."""
    for name in names:
        try:
            return (folder / name).stat().st_mtime
        except OSError:
            continue
    return 0.0


def cli_prefix() -> list[str]:
    """How to run the CLI: the same interpreter, so the job sees the same install."""
    return [sys.executable, "-m", "chatgpt_scratch"]


def display_command(args: list[str]) -> str:
    """The command as a user would type it."""
    return shlex.join(["chatgpt-scratch", *args])


def start_job(args: list[str], name: str, task: str = "", runs_folder: Path | None = None,
              run_dir: Path | None = None) -> subprocess.Popen:
    """Start `chatgpt-scratch ARGS` detached from the app.

    Its record (pid, command) and output log go to RUNS/.tui-jobs/NAME.*; `run_dir` is given when
    resuming (the folder is known), else link_jobs finds it once the CLI has made it.
    """
    if runs_folder is None:
        from chatgpt_scratch.storage.paths import runs_dir

        runs_folder = runs_dir()
    folder = jobs_dir(runs_folder)
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"{name}.log"
    log = open(log_path, "ab")
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
    # Who the job is: its start time and exact arguments, so a later stop can never signal another
    # process that has been given the same pid.
    record = {"pid": proc.pid, "pid_start": procinfo.start_ticks(proc.pid), "argv": [*cli_prefix(), *args],
              "command": args, "task": task, "started": time.time(), "name": name,
              "log": str(log_path), "run_dir": str(run_dir) if run_dir else None}
    (folder / f"{name}.json").write_text(json.dumps(record))
    if run_dir is not None:
        (run_dir / JOB_FILE).write_text(json.dumps(record))
    return proc


def stop_job(pid: int, start: int | None = None, argv: list[str] | None = None) -> None:
    """Graceful stop: SIGINT makes the trainer save a checkpoint and exit 0.

    `start` and `argv` are what the run recorded about its process (RunSummary.pid_start/pid_argv).
    Raises ProcessLookupError unless pid is alive and is that very process (checked first, so a
    pid the system has reused for something else, or a nonsense pid, is left alone).
    """
    if not is_training_process(pid, start, argv):
        raise ProcessLookupError(pid)
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


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError, OverflowError):
        return None


def _str_list(v: Any) -> list[str]:
    return [str(a) for a in v] if isinstance(v, list) else []


def _float(v: Any) -> float | None:
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None
