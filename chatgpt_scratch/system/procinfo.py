"""Who a process is, beyond its pid: a pid is reused by the system once its process ends, so a
pid written in an events file days ago may now belong to an editor, a shell or another run.

A process is identified by (pid, start time, command line). The start time is field 22 of
/proc/PID/stat (clock ticks after boot), which differs for every process that ever held the
pid; the command line says it is this run's trainer, not the app or a chat session. Where there
is no /proc (macOS) both are None and callers fall back to what they can check.
"""

from __future__ import annotations

import os
import sys


def valid_pid(pid: object) -> bool:
    """A real process id: an int > 1 (0, -1 and negative numbers mean process *groups* to os.kill,
    and -1 to os.waitpid means any child; 1 is init). bool is not a pid."""
    return isinstance(pid, int) and not isinstance(pid, bool) and 1 < pid < 2**31


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks after boot."""
    if not valid_pid(pid):
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # The command name (field 2) is in parentheses and may itself hold spaces or ')'.
        return int(stat[stat.rindex(b")") + 1:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def cmdline(pid: int) -> list[str] | None:
    """The process's arguments as it was started (argv[0] included), or None where unknown."""
    if not valid_pid(pid):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [a.decode("utf-8", "surrogateescape") for a in raw.split(b"\0")[:-1]] if raw else None


def own_identity() -> dict:
    """What a trainer records about itself in its `start` event: pid, pid_start and argv."""
    pid = os.getpid()
    return {"pid": pid, "pid_start": start_ticks(pid), "argv": cmdline(pid) or [sys.executable, *sys.argv]}


def same_process(pid: object, start: object, argv: object) -> bool:
    """True only if `pid` is alive *and* is the process recorded as (start, argv).

    With /proc: the start time must be recorded and equal, and the recorded argv must equal the
    live command line (or be its tail: a record may leave out the interpreter). Without /proc we
    cannot tell a reused pid apart, so liveness must do.
    """
    if not valid_pid(pid):
        return False
    if not os.path.isdir("/proc/self"):
        try:
            os.kill(pid, 0)  # type: ignore[arg-type]
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    live_start = start_ticks(pid)  # type: ignore[arg-type]
    if live_start is None or not isinstance(start, int) or isinstance(start, bool) or live_start != start:
        return False
    live_argv = cmdline(pid)  # type: ignore[arg-type]
    if not live_argv or not isinstance(argv, (list, tuple)) or not argv:
        return False
    argv = [str(a) for a in argv]
    return live_argv == argv or (len(argv) < len(live_argv) and live_argv[-len(argv):] == argv)
