#!/usr/bin/env python3
"""Drive the running app in a tmux pane (scripts/tui_smoke.sh starts it) and check what a user sees.

At 120x40 and then at 80x24, on every screen: resize to the other size and back, read the keys its
footer shows (at a width where the whole footer fits) and press each one, except the keys that quit or
start long work (SKIP says which, and why). Every step is checked for

- a Python traceback, or an exception's type name in a notification, in the pane or in the app's stderr;
- the app exiting;
- text left over from what was on screen before (another screen, a dialog that closed, the other size):
  cells that still show the text they showed before the step although a clean redraw of the same screen
  at the same size (the terminal made one column wider and back: the app repaints every cell) shows
  something else there.

Each failure is one line `FAIL: <screen> <size> <step>: <what>`; the run goes on (unless the app is
gone) and exits 1 after them. Captures: OUT/<screen>-<cols>x<rows>.txt (the clean capture of each
screen on arrival), OUT/about-*.txt and OUT/welcome-*.txt (the dialogs), every step under OUT/steps/,
and OUT/report.txt (the footer keys pressed, skipped with why, the ones with no visible effect).

The functions above `class Pane` are pure (no tmux) and are tested in tests/tui/test_smoke_script.py.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

SIZES = [(120, 40), (80, 24)]
WIDE = 250  # columns at which every footer fits: the footer is read there, then the size goes back

# (mode, the key that opens it from anywhere, its label in the tab bar)
SCREENS = [
    ("chat", "F1", "1 Chat"),
    ("spam", "F2", "2 Spam"),
    ("train", "F3", "3 Train"),
    ("checkpoints", "F4", "4 Checkpoints"),
    ("xray", "F5", "5 X-ray"),
]

# Footer keys not pressed: (screen or None for every screen, key as the footer shows it, description, why).
SKIP = [
    (None, "^q", "Quit", "quits the app (pressed once, at the end, to check that it exits cleanly)"),
    ("train", "f6", "Start", "starts a training run (long work)"),
]

# What some keys must show (a key that does nothing visible fails here): (screen or None, description, regex).
EXPECT = [
    (None, "About", r"Data folders"),
    (None, "palette", r"Search for commands|Open Chat|Toggle light/dark"),
    ("spam", "Classify", r"(HAM|SPAM)\s+[0-9.]+\s*%"),
    ("checkpoints", "Delete", r"cannot be undone"),
]

ERROR_PATTERNS = [
    re.compile(r"Traceback \(most recent call last\)"),
    re.compile(r"\b[A-Z]\w*(?:Error|Exception): "),  # error_text() of an unexpected exception, in a notification
]

NAMED_KEYS = {
    "esc": "Escape", "enter": "Enter", "space": "Space", "tab": "Tab", "del": "DC", "delete": "DC",
    "ins": "IC", "insert": "IC", "home": "Home", "end": "End", "pgup": "PPage", "pgdn": "NPage",
    "backspace": "BSpace", "↑": "Up", "↓": "Down", "←": "Left", "→": "Right",
    "up": "Up", "down": "Down", "left": "Left", "right": "Right",
}
KEY_TOKEN = re.compile(r"\^\S+|f\d{1,2}|[a-z0-9]|[↑↓←→]|" + "|".join(k for k in NAMED_KEYS if len(k) > 1))


# --- reading a capture ---------------------------------------------------------------------------


def cells(line: str, width: int) -> list[str]:
    """One string per terminal cell (a wide character takes two: itself and ''), cut or padded to width."""
    out: list[str] = []
    for ch in line:
        if unicodedata.combining(ch) and out:
            out[-1] += ch
            continue
        out.append(ch)
        if unicodedata.east_asian_width(ch) in ("W", "F"):
            out.append("")
    return (out + [" "] * width)[:width]


def grid(lines: list[str], width: int, height: int) -> list[list[str]]:
    return [cells(line, width) for line in (lines + [""] * height)[:height]]


def active_tab(lines: list[str]) -> str | None:
    """The tab bar's highlighted label: the text above the bar's highlight (between ╸ and ╺)."""
    for i in range(1, min(len(lines), 8)):
        bar = lines[i]
        if "━" not in bar or set(bar.strip()) - set("━╸╺─ "):
            continue
        left = bar.find("╸")
        right = bar.find("╺", left + 1)
        if left < 0:
            continue
        right = len(bar) if right < 0 else right
        label = "".join(cells(lines[i - 1], len(bar))[left + 1:right]).strip()
        return label or None
    return None


def footer_line(lines: list[str]) -> str:
    nonblank = [line for line in lines if line.strip()]
    return nonblank[-1].rstrip() if nonblank else ""


def footer_complete(line: str) -> bool:
    """The compact footer fits when there is a gap before the command palette's part (▏^p palette)."""
    main, sep, _ = line.partition("▏")
    return bool(sep) and main.endswith("  ")


def parse_footer(line: str) -> list[tuple[str, str]]:
    """[(key as shown, description)] of a compact footer line, e.g. 'esc Stop reply ^r Regenerate'."""
    items: list[tuple[str, str]] = []
    for part in line.split("▏"):
        words = part.split()
        key, desc = None, []
        for word in words:
            if KEY_TOKEN.fullmatch(word) and (key is None or desc):
                if key is not None:
                    items.append((key, " ".join(desc)))
                key, desc = word, []
            elif key is not None:
                desc.append(word)
        if key is not None and desc:
            items.append((key, " ".join(desc)))
    return items


def tmux_key(shown: str) -> tuple[str, bool] | None:
    """The tmux send-keys argument for a key as Textual's footer shows it, and whether it is literal."""
    if shown.startswith("^") and len(shown) > 1:
        base = shown[1:]
        if base in NAMED_KEYS:
            return f"C-{NAMED_KEYS[base]}", False
        return (f"C-{base.lower()}", False) if len(base) == 1 else None
    if re.fullmatch(r"f\d{1,2}", shown):
        return shown.upper(), False
    if shown in NAMED_KEYS:
        return NAMED_KEYS[shown], False
    if len(shown) == 1 and shown.isprintable():
        return shown, True
    return None


def skip_reason(screen: str, key: str, desc: str) -> str | None:
    for where, k, d, why in SKIP:
        if where in (None, screen) and k == key and desc.startswith(d):
            return why
    return None


def expected(screen: str, desc: str) -> str | None:
    for where, d, pattern in EXPECT:
        if where in (None, screen) and desc.startswith(d):
            return pattern
    return None


def shows(lines: list[str], pattern: str) -> bool:
    """Whether the capture shows `pattern`, also when the text wraps (lines joined, borders dropped)."""
    text = re.sub(r"[│┃▌▎▊▐]", " ", " ".join(lines))
    return re.search(pattern, re.sub(r"\s+", " ", text)) is not None


def toast_cells(lines: list[str], width: int) -> set[tuple[int, int]]:
    """The cells of notifications (Textual's toasts: a ▌ edge, then text to the right): they come and
    go on their own, so text there is never counted as left over."""
    out = set()
    for row, line in enumerate(lines):
        line_cells = cells(line, width)
        for col, ch in enumerate(line_cells):
            if ch == "▌" and col > width // 3:
                out.update((row, c) for c in range(col, width))
                break
    return out


def error_in(text: str) -> str | None:
    for pattern in ERROR_PATTERNS:
        match = pattern.search(text)
        if match:
            line = text[text.rfind("\n", 0, match.start()) + 1:].split("\n", 1)[0]
            return line.strip()[:160]
    return None


def leftover_runs(before: list[str], after: list[str], clean: list[str], size: tuple[int, int],
                  still: list[str] | None = None, min_alnum: int = 3) -> list[tuple[int, int, str]]:
    """Text `after` still shows from `before` in the same cells although a clean redraw shows something
    else there: runs of cells with after == before != clean (and after == still, a later capture before
    the redraw, so that text the app itself replaced meanwhile, a notification that timed out, does not
    count), with at least `min_alnum` letters or digits. Returns [(row, column, text)]."""
    width, height = size
    b, a, c = grid(before, width, height), grid(after, width, height), grid(clean, width, height)
    s = grid(still, width, height) if still is not None else a
    transient = toast_cells(after, width) | toast_cells(clean, width) | toast_cells(before, width)
    runs = []
    for row in range(height):
        start, text = None, []
        for col in range(width + 1):
            flagged = col < width and a[row][col] == b[row][col] and a[row][col] != c[row][col] \
                and s[row][col] == a[row][col] and (row, col) not in transient
            if flagged:
                if start is None:
                    start = col
                text.append(a[row][col])
            elif start is not None:
                joined = "".join(text)
                if sum(ch.isalnum() for ch in joined) >= min_alnum:
                    runs.append((row, start, joined.strip()))
                start, text = None, []
    return runs


def candidate_runs(before: list[str], after: list[str], known_clean: list[list[str]], size: tuple[int, int],
                   min_alnum: int = 3) -> bool:
    """Whether any cells of `after` equal `before` and differ from every clean capture known for this
    screen at this size (if none, no redraw is needed to know that nothing was left over)."""
    width, height = size
    b, a = grid(before, width, height), grid(after, width, height)
    cleans = [grid(c, width, height) for c in known_clean]
    transient = toast_cells(after, width)
    for row in range(height):
        count = 0
        for col in range(width + 1):
            same = col < width and a[row][col] == b[row][col] and (row, col) not in transient \
                and all(c[row][col] != a[row][col] for c in cleans)
            if same:
                count += a[row][col].isalnum()
                if count >= min_alnum:
                    return True
            else:
                count = 0
    return False


# --- the pane ------------------------------------------------------------------------------------


class AppGone(Exception):
    pass


@dataclass
class Pane:
    session: str
    stderr_log: Path
    size: tuple[int, int] = SIZES[0]
    stderr_offset: int = 0

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout

    def capture(self) -> list[str]:
        return self.tmux("capture-pane", "-p", "-t", self.session).rstrip("\n").split("\n")

    def send(self, key: str, literal: bool = False) -> None:
        self.tmux("send-keys", "-t", self.session, *(["-l"] if literal else []), key)

    def resize(self, size: tuple[int, int]) -> None:
        self.tmux("resize-window", "-t", self.session, "-x", str(size[0]), "-y", str(size[1]))
        self.size = size

    def settle(self, timeout: float = 6.0, first_change: float = 0.0, stable: int = 3,
               interval: float = 0.07) -> list[str]:
        """The capture once it stops changing (the same `stable` times in a row), waiting up to
        `first_change` seconds for it to change at all first (a key the app has not handled yet)."""
        start = time.monotonic()
        last = self.capture()
        if first_change:
            while time.monotonic() - start < first_change:
                time.sleep(interval)
                now = self.capture()
                if now != last:
                    last = now
                    break
        same = 1
        while same < stable and time.monotonic() - start < timeout:
            time.sleep(interval)
            now = self.capture()
            same = same + 1 if now == last else 1
            last = now
        return last

    def wait_for(self, test, timeout: float, interval: float = 0.1) -> list[str] | None:
        end = time.monotonic() + timeout
        while True:
            lines = self.capture()
            if test(lines):
                return lines
            if time.monotonic() > end:
                return None
            time.sleep(interval)

    def new_stderr(self) -> str:
        try:
            with open(self.stderr_log, "rb") as f:
                f.seek(self.stderr_offset)
                data = f.read()
        except OSError:
            return ""
        self.stderr_offset += len(data)
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", data.decode("utf-8", "replace"))


# --- the tour ------------------------------------------------------------------------------------


def size_name(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


@dataclass
class Smoke:
    pane: Pane
    out: Path
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: dict[tuple[str, str, str], str] = field(default_factory=dict)
    pressed: dict[str, list[str]] = field(default_factory=dict)
    footers: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    clean: dict[tuple[str, tuple[int, int]], list[list[str]]] = field(default_factory=dict)
    timings: dict[str, tuple[float, int]] = field(default_factory=dict)
    whole_footers: dict[tuple[str, str], str] = field(default_factory=dict)  # a footer cut at the edge -> read whole
    step_no: int = 0
    screen: str = "start"
    footer_gap: int = 1  # columns between the footer's end and the right edge (measured at the start)
    latency: float = 0.3  # seconds the app takes to redraw after a resize (a moving average)

    @property
    def react(self) -> float:
        """How long to wait for a key to change the screen before taking it to have changed nothing."""
        return min(1.5, max(0.25, 2.5 * self.latency))

    # --- bookkeeping ---------------------------------------------------------------------------

    def fail(self, step: str, what: str) -> None:
        line = f"FAIL: {self.screen} {size_name(self.pane.size)} {step}: {what}"
        self.failures.append(line)
        print(line, flush=True)

    def save(self, name: str, lines: list[str]) -> Path:
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def save_step(self, step: str, lines: list[str]) -> Path:
        self.step_no += 1
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", step).strip("_")
        return self.save(f"steps/{self.step_no:03d}-{self.screen}-{size_name(self.pane.size)}-{slug}.txt", lines)

    def check(self, step: str, lines: list[str]) -> None:
        """The checks every capture gets: the app still runs, no traceback in the pane or its stderr."""
        text = "\n".join(lines)
        if "APP-EXITED-" in text:
            self.save_step(step + "-exited", lines)
            self.fail(step, "the app exited: " + (error_in(text) or footer_line(lines)))
            raise AppGone
        error = error_in(text)
        if error:
            path = self.save_step(step + "-error", lines)
            self.fail(step, f"error on screen: {error} (see {path})")
        error = error_in(self.pane.new_stderr())
        if error:
            self.fail(step, f"error in the app's stderr: {error}")

    # --- leftovers -----------------------------------------------------------------------------

    def resize(self, size: tuple[int, int], step: str) -> list[str]:
        """Resize the terminal and wait until the app has drawn at the new size (its footer reaches the
        right edge as it did at the start), then until the pane settles; fail if it never does."""
        started = time.monotonic()
        self.pane.resize(size)
        drawn = self.pane.wait_for(lambda ls: self.footer_spans(ls, size[0]), timeout=8, interval=0.03)
        if drawn is not None:  # how long the app takes to react, to know how long to wait for a key
            self.latency = 0.7 * self.latency + 0.3 * (time.monotonic() - started)
        if drawn is None:
            lines = self.pane.capture()
            self.check(step, lines)
            path = self.save_step(step + "-not-redrawn", lines)
            self.fail(step, f"the app did not draw at {size_name(size)} within 8 s (footer {footer_line(lines)!r};"
                            f" see {path.name})")
        lines = self.pane.settle(timeout=5)
        self.check(step, lines)
        self.time("resize", started)
        return lines

    def footer_spans(self, lines: list[str], width: int) -> bool:
        line = footer_line(lines)
        return len(cells(line, len(line) + 2)[:len(line)]) == width - self.footer_gap and "▏" in line

    def time(self, kind: str, started: float) -> None:
        spent, count = self.timings.get(kind, (0.0, 0))
        self.timings[kind] = (spent + time.monotonic() - started, count + 1)

    def redraw(self) -> list[str]:
        """A clean capture: one column wider and back, so the app repaints every cell."""
        started = time.monotonic()
        width, height = self.pane.size
        self.resize((width + 1, height), "redraw")
        lines = self.resize((width, height), "redraw")
        self.time("redraw (for the leftover check)", started)
        return lines

    def check_leftovers(self, step: str, before: list[str], after: list[str], what: str,
                        also_clean: list[str] | None = None) -> list[str]:
        """`after` (settled) follows `before`: fail if it still shows any of before's text that a clean
        redraw does not. No redraw is made when every cell that kept its text shows what a clean capture
        of this screen at this size (or `also_clean`, a checked capture from just before) shows there.
        Returns the capture to go on with (the clean one, when one was made)."""
        key = (self.screen, self.pane.size)
        known = self.clean.setdefault(key, [])
        references = known + ([also_clean] if also_clean is not None else [])
        if known and not candidate_runs(before, after, references, self.pane.size):
            return after
        still = self.pane.capture()
        clean = self.redraw()
        self.check(step + " redraw", clean)
        runs = leftover_runs(before, after, clean, self.pane.size, still=still)
        for _ in range(3):  # a loaded machine: the app may still be drawing (a model that finishes loading
            if not runs:  # rewrites the title line). Let it settle and look again, up to three times.
                break
            time.sleep(1.5)
            still = self.pane.settle(timeout=6)
            clean = self.redraw()
            runs = leftover_runs(before, still, clean, self.pane.size, still=still)
        known.append(clean)
        del known[:-6]
        if runs:
            a = self.save_step(step + "-leftover", after)
            c = self.save_step(step + "-clean", clean)
            shown = "; ".join(f"row {r + 1} col {col + 1} {text!r}" for r, col, text in runs[:4])
            more = f" (+{len(runs) - 4} more)" if len(runs) > 4 else ""
            self.fail(step, f"text left over from {what}: {shown}{more} (see {a.name}, clean {c.name})")
        return clean

    # --- moving around -------------------------------------------------------------------------

    def go(self, mode: str, before: list[str]) -> list[str]:
        """Open screen `mode` with its F-key; check for leftovers of what was shown; a clean capture."""
        previous = self.screen
        fkey, label = next((f, l) for m, f, l in SCREENS if m == mode)
        self.screen = mode
        self.pane.send(fkey)
        lines = self.pane.wait_for(lambda ls: active_tab(ls) == label, timeout=15)
        if lines is None:
            lines = self.pane.capture()
            self.check(fkey, lines)
            self.save_step(f"{fkey}-not-reached", lines)
            self.fail(fkey, f"the {label} tab is not active after {fkey} (active: {active_tab(lines)})")
            return lines
        lines = self.pane.settle(timeout=8)
        self.check(fkey, lines)
        return self.check_leftovers(f"{fkey} (from {previous})", before, lines, f"the {previous} screen")

    def back_to(self, mode: str, label: str) -> list[str]:
        """After a key: close whatever it opened (Escape), and come back to this screen if it left."""
        lines = self.pane.capture()
        self.pane.send("Escape")
        lines = self.pane.settle(timeout=4, first_change=self.react)
        if active_tab(lines) != label:
            fkey = next(f for m, f, _ in SCREENS if m == mode)
            self.pane.send(fkey)
            lines = self.pane.wait_for(lambda ls: active_tab(ls) == label, timeout=10) or self.pane.capture()
            lines = self.pane.settle(timeout=6)
        return lines

    def resize_both_ways(self, lines: list[str]) -> list[str]:
        """To the other size and back, each checked against a clean redraw; the capture at home size."""
        home = self.pane.size
        other = next(s for s in SIZES if s != home)
        for target in (other, home):
            after = self.resize(target, f"resize to {size_name(target)}")
            lines = self.check_leftovers(f"resize to {size_name(target)}", lines, after,
                                         "the screen before the resize (a line that did not redraw)")
        return lines

    def read_footer(self, lines: list[str]) -> tuple[str, list[str]]:
        """The whole footer (read at WIDE columns when it does not fit), and the capture to go on with."""
        line = footer_line(lines)
        if footer_complete(line):
            return line, lines
        shown = line.split("▏")[0].rstrip()
        for (screen, _), whole in self.whole_footers.items():  # read whole before (at either size)
            if screen == self.screen and whole.split("▏")[0].startswith(shown):
                self.note_cut_footer(line, whole)
                return whole, lines
        home, visible = self.pane.size, line
        line = footer_line(self.resize((WIDE, home[1]), f"footer read at {WIDE} columns"))
        self.whole_footers[(self.screen, visible)] = line
        back = self.resize(home, f"resize back from {WIDE} columns")
        self.note_cut_footer(visible, line)
        return line, self.check_leftovers(f"resize from {WIDE} columns", lines, back,
                                          f"the screen at {WIDE} columns")

    def note_cut_footer(self, visible: str, whole: str) -> None:
        """Say which keys a footer cut at the right edge does not show (a user cannot see them)."""
        shown = visible.split("▏")[0]
        hidden = [f"{k} {d}" for k, d in parse_footer(whole) if f"{k} {d}" not in shown and d != "palette"]
        note = (f"{self.screen} {size_name(self.pane.size)}: the footer is cut at the right edge; "
                f"not shown: {', '.join(hidden) or 'none'}")
        if hidden and note not in self.notes:
            self.notes.append(note)

    # --- pressing the footer's keys ------------------------------------------------------------

    def press_footer_keys(self, lines: list[str]) -> list[str]:
        mode, label = self.screen, next(l for m, _, l in SCREENS if m == self.screen)
        size = size_name(self.pane.size)
        done: set[tuple[str, str]] = set()
        for _ in range(40):
            footer, lines = self.read_footer(lines)
            seen = self.footers.setdefault((mode, size), [])
            if footer.rstrip() not in seen:
                seen.append(footer.rstrip())
            items = parse_footer(footer)
            if not items:
                self.fail("footer", f"no keys read from the footer line {footer!r}")
                return lines
            todo = [(k, d) for k, d in items if (k, d) not in done]
            if not todo:
                return lines
            key, desc = todo[0]
            done.add((key, desc))
            why = skip_reason(mode, key, desc)
            if why:
                if (mode, key, desc) not in self.skipped:
                    self.skipped[(mode, key, desc)] = why
                    print(f"SKIP: {mode} '{key} {desc}': {why}", flush=True)
                continue
            sent = tmux_key(key)
            if sent is None:
                self.fail(key, f"the footer shows key {key!r} ({desc}) that this script cannot press")
                continue
            step = f"key {key} ({desc})"
            self.pressed.setdefault(f"{mode} {size}", []).append(f"{key} {desc}")
            before, started = lines, time.monotonic()
            self.pane.send(*sent)
            # A key that starts a reply changes the screen until it ends: Escape (next) stops it.
            after = self.pane.settle(timeout=4, first_change=self.react)
            self.save_step(step, after)
            self.check(step, after)
            pattern = expected(mode, desc)
            if pattern and not shows(after, pattern):  # a loaded machine may take longer to show it
                after = self.pane.wait_for(lambda shown: shows(shown, pattern), timeout=6) or self.pane.capture()
            if pattern and not shows(after, pattern):
                self.fail(step, f"the key did not show what it is for (no /{pattern}/ on screen)")
            if after == before:
                self.notes.append(f"{mode} {size} '{key} {desc}': no visible change")
            gone_to = next((m for m, _, l in SCREENS if l == active_tab(after) and m != mode), None)
            if gone_to:  # the key opened another screen: check it for this screen's text
                self.screen = gone_to
                self.check_leftovers(step, before, after, f"the {mode} screen")
                self.screen = mode
            if desc.startswith("About") and shows(after, EXPECT[0][2]):
                self.save(f"about-{size}.txt", after)
                if self.pane.size == SIZES[0]:  # resized under the dialog once per screen
                    after = self.about_resized(after)
            lines = self.back_to(mode, label)
            self.check(step + " then Escape", lines)
            if active_tab(lines) != label:
                self.fail(step, f"could not come back to {label} (active tab {active_tab(lines)!r})")
                return lines
            lines = self.check_leftovers(f"{step} then Escape", after, lines, f"what '{key} {desc}' showed",
                                         also_clean=before)
            self.time("footer keys (each with Escape after it, and its checks)", started)
        self.fail("footer", "more than 40 keys: stopped pressing")
        return lines

    def about_resized(self, shown: list[str]) -> list[str]:
        """With About open: to the other size and back (a dialog over a screen, resized)."""
        home = self.pane.size
        other = next(s for s in SIZES if s != home)
        lines = self.resize(other, f"About open, resize to {size_name(other)}")
        if not (self.out / f"about-{size_name(other)}.txt").exists():
            self.save(f"about-{size_name(other)}.txt", lines)
        return self.resize(home, f"About open, resize to {size_name(home)}")

    # --- the run -------------------------------------------------------------------------------

    def welcome(self) -> list[str]:
        """The first launch's welcome panel, if the app shows one: captured at both sizes, dismissed."""
        lines = self.pane.wait_for(lambda ls: active_tab(ls) is not None and "▏" in footer_line(ls), timeout=30)
        if lines is None:
            lines = self.pane.capture()
            self.check("start", lines)
            self.fail("start", "no tab bar and footer on screen 30 s after the start")
            raise AppGone
        self.screen = "chat"
        self.footer_gap = self.pane.size[0] - len(footer_line(lines))
        lines = self.pane.settle(timeout=3)
        shown = self.pane.wait_for(lambda ls: "Welcome" in "\n".join(ls), timeout=3)
        if shown is None:
            self.notes.append("no welcome panel on the first launch")
            return lines
        self.screen = "welcome"
        home = self.pane.size
        lines = self.pane.settle(timeout=4)
        self.check("start", lines)
        self.save(f"welcome-{size_name(home)}.txt", lines)
        for size in [s for s in SIZES if s != home] + [home]:
            after = self.resize(size, f"resize to {size_name(size)}")
            if size != home:
                self.save(f"welcome-{size_name(size)}.txt", after)
            lines = after
        self.screen = "chat"
        self.pane.send("Enter")
        after = self.pane.wait_for(lambda ls: "Welcome" not in "\n".join(ls), timeout=5) or self.pane.capture()
        after = self.pane.settle(timeout=4)
        self.check("Enter (close the welcome panel)", after)
        return self.check_leftovers("Enter (close the welcome panel)", lines, after, "the welcome panel")

    def setup(self, lines: list[str], first: bool) -> list[str]:
        """What a user does first on some screens, so that their keys have something to act on."""
        if self.screen == "chat" and first:
            ready = self.pane.wait_for(lambda ls: shows(ls, "Type a message"), timeout=30)
            if ready is None:
                self.fail("load", "no 'Type a message' 30 s after opening Chat")
                return self.pane.capture()
            self.pane.send("Hello there", literal=True)
            self.pane.send("Enter")
            time.sleep(1.0)
            self.pane.send("Escape")  # stop the reply: what was written stays, and the status says so
            done = self.pane.wait_for(lambda ls: shows(ls, "tok/s"), timeout=30)
            if done is None:
                self.fail("Enter (send 'Hello there'), Escape", "no reply ended ('tok/s') within 30 s")
            lines = self.pane.settle(timeout=5)
            self.check("reply", lines)
            self.save_step("reply", lines)
        if self.screen == "spam":
            self.pane.send("WINNER! Claim your free prize now", literal=True)
            self.pane.send("F6")
            done = self.pane.wait_for(lambda ls: shows(ls, EXPECT[2][2]), timeout=30)
            if done is None:
                self.fail("F6 (classify a message)", "no HAM/SPAM result within 30 s")
            lines = self.pane.settle(timeout=5)
            self.check("classify", lines)
            self.save_step("classified", lines)
        return lines

    def run(self) -> int:
        started = time.monotonic()
        try:
            lines = self.welcome()
            for size in SIZES:
                if self.pane.size != size:
                    after = self.resize(size, f"resize to {size_name(size)}")
                    lines = self.check_leftovers(f"resize to {size_name(size)}", lines, after,
                                                 "the screen before the resize")
                for i, (mode, _, _) in enumerate(SCREENS):
                    if not (mode == "chat" and self.screen == "chat" and size == SIZES[0]):
                        lines = self.go(mode, lines)
                    else:
                        lines = self.check_leftovers("start", lines, self.pane.settle(), "the start")
                    lines = self.setup(lines, first=size == SIZES[0])
                    lines = self.resize_both_ways(lines)
                    self.save(f"{mode}-{size_name(size)}.txt", lines)  # after its setup, checked, mostly clean
                    lines = self.press_footer_keys(lines)
            self.screen = SCREENS[-1][0]
            self.pane.send("C-q")
            gone = self.pane.wait_for(lambda ls: "APP-EXITED-" in "\n".join(ls), timeout=15)
            lines = gone or self.pane.capture()
            self.save("exit.txt", lines)
            error = error_in("\n".join(lines)) or error_in(self.pane.new_stderr())
            if error:
                self.fail("^q", f"error at exit: {error}")
            if gone is None or "APP-EXITED-0" not in "\n".join(lines):
                self.fail("^q", "the app did not exit cleanly (no APP-EXITED-0 in the pane)")
        except AppGone:
            pass
        self.write_report(time.monotonic() - started)
        return 1 if self.failures else 0

    def write_report(self, seconds: float) -> None:
        lines = [f"tui smoke run: {len(SCREENS)} screens at {', '.join(map(size_name, SIZES))}, {seconds:.0f} s", ""]
        lines += ["Footers (read whole):"] + [f"  {m} {s}: {' '.join(f.split())}"
                                              for (m, s), fs in self.footers.items() for f in fs]
        lines += ["", "Keys pressed:"] + [f"  {where}: {', '.join(keys)}" for where, keys in self.pressed.items()]
        lines += ["", "Keys skipped:"] + [f"  {m} '{k} {d}': {why}" for (m, k, d), why in self.skipped.items()]
        lines += ["", "Time spent (seconds, count; the kinds overlap):"]
        lines += [f"  {kind}: {spent:.1f} s, {count}" for kind, (spent, count) in self.timings.items()]
        lines += [f"  the app's redraw after a resize: {self.latency:.2f} s (moving average)"]
        lines += ["", "Notes:"] + [f"  {n}" for n in self.notes]
        lines += ["", "Failures:"] + ([f"  {f}" for f in self.failures] or ["  none"])
        self.save("report.txt", lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--session", required=True, help="the tmux session the app runs in")
    parser.add_argument("--out", required=True, type=Path, help="folder for the captures")
    parser.add_argument("--stderr-log", required=True, type=Path, help="the app's stderr, as a file")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    pane = Pane(args.session, args.stderr_log)
    width, height = (int(v) for v in pane.tmux("display-message", "-p", "-t", args.session,
                                               "#{window_width} #{window_height}").split())
    pane.size = (width, height)
    smoke = Smoke(pane, args.out)
    code = smoke.run()
    print(f"{'OK' if code == 0 else 'FAILED'}: {len(smoke.failures)} failure(s); "
          f"{sum(len(k) for k in smoke.pressed.values())} key presses; report {args.out / 'report.txt'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
