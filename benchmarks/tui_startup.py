"""Time to first paint of the TUI, and time until a model is ready on Chat, Spam and X-ray.

Starts `python -m chatgpt_scratch --SCREEN` as a user would (a fresh interpreter each run, in a
pseudo-terminal of 120x40), reads what it writes to the terminal, and records when text appears:

  first paint   the tab bar ("1 Chat") is on the screen
  loading       the status line first says what loads ("loading NAME, SIZE…")
  ready         the screen's ready text ("Type a message.", "press ctrl+enter", "characters per token")

Prints a table of the median and the range over --runs runs. Also `--importtime` prints the modules
imported before the app can paint (python -X importtime of `import tui.app`), slowest first.

    python benchmarks/tui_startup.py                   # chat, spam and xray, 3 runs each
    python benchmarks/tui_startup.py --screens chat --runs 5
    python benchmarks/tui_startup.py --importtime
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import signal
import statistics
import struct
import subprocess
import sys
import termios
import time

READY = {"chat": "Type a message.", "spam": "press ctrl+enter", "xray": "characters per token"}
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][AB0-9]|\x1b[=>]")


def launch(screen: str, timeout: float) -> dict[str, float]:
    """One run: seconds from the start of the process to each milestone (missing ones are absent)."""
    # What `chatgpt-scratch` does before the app (the CLI's parser imports every command module), then the app.
    code = ("import sys; from chatgpt_scratch.cli import build_parser; build_parser(); "
            "from tui.app import ScratchApp; ScratchApp(start=sys.argv[1]).run()")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the app in the pseudo-terminal
        os.environ["TERM"] = "xterm-256color"
        os.execv(sys.executable, [sys.executable, "-c", code, screen])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    start = time.perf_counter()
    seen, text = {}, b""
    marks = {"first paint": b"1 Chat", "loading": b"loading ", "ready": READY[screen].encode()}
    try:
        while time.perf_counter() - start < timeout and len(seen) < len(marks):
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                break
            text += chunk
            plain = ANSI.sub(b"", text)
            for name, mark in marks.items():
                if name not in seen and mark in plain:
                    seen[name] = time.perf_counter() - start
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
        os.close(fd)
    return seen


def importtime(top: int) -> None:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import tui.app"], capture_output=True,
                         text=True).stderr
    rows = []
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), int(parts[0].split(":")[1]), parts[2].rstrip()))
    total = max(r[0] for r in rows)
    print(f"import tui.app: {total / 1000:.0f} ms in all (cumulative, slowest first)")
    for cumulative, own, name in sorted(rows, reverse=True)[:top]:
        print(f"  {cumulative / 1000:7.1f} ms  (own {own / 1000:5.1f})  {name}")
    heavy = [n.strip() for _, _, n in rows if n.strip().split(".")[0] in ("torch", "tiktoken", "safetensors", "numpy")]
    print("heavy modules before first paint:", ", ".join(heavy) or "none")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--screens", default="chat,spam,xray")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per run")
    p.add_argument("--importtime", action="store_true", help="print the imports before first paint instead")
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args()
    if args.importtime:
        importtime(args.top)
        return 0
    print(f"{'screen':<8}{'milestone':<14}{'median s':>10}{'min s':>8}{'max s':>8}  runs")
    for screen in args.screens.split(","):
        results = [launch(screen, args.timeout) for _ in range(args.runs)]
        for name in ("first paint", "loading", "ready"):
            times = [r[name] for r in results if name in r]
            if times:
                print(f"{screen:<8}{name:<14}{statistics.median(times):10.2f}{min(times):8.2f}{max(times):8.2f}"
                      f"  {len(times)}/{len(results)}")
            else:
                print(f"{screen:<8}{name:<14}{'-':>10}{'-':>8}{'-':>8}  0/{len(results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
