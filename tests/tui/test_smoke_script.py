"""scripts/tui_smoke.sh in a real terminal (tmux): every screen at 120x40 and 80x24, resized both ways,
every footer key pressed; no traceback, no text left over; a capture of each screen at each size.

The checks themselves (scripts/tui_smoke_check.py) are tested here on fabricated captures, so that a
leftover or a traceback they should catch is caught, and a clean screen is not flagged."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "tui_smoke.sh"


def _load_check():
    spec = importlib.util.spec_from_file_location("tui_smoke_check", ROOT / "scripts" / "tui_smoke_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up
    spec.loader.exec_module(module)
    return module


check = _load_check()

CHAT_FOOTER = ("esc Stop reply ^r Regenerate ^n New chat ^y Copy msg ^↑ Pick msg f6 Rename chat ^b Sidebar "
               "^q Quit f10 About          ▏^p palette ")
XRAY_FOOTER = "f6 Pick top ▶ f7 Sample ▶ f8 ◀ Back ^q Quit f10 About       ▏^p palette "


def screen(tab: str, body: list[str], footer: str, width: int = 60, height: int = 12) -> list[str]:
    """A capture as tmux gives it: header, tab bar with `tab` highlighted, body, footer on the last row."""
    labels = " 1 Chat  2 Spam  3 Train  4 Checkpoints  5 X-ray"
    start = labels.index(tab)
    bar = "━" * (start - 1) + "╸" + "━" * len(tab) + "╺" + "━" * (width - start - len(tab) - 1)
    lines = [" ⭘   chatgpt-scratch", labels, bar[:width]] + body
    return lines + [""] * (height - len(lines) - 1) + [footer]


CKPT = screen("4 Checkpoints", [" Name              Kind        Params   Size", " tiny-base         base        3.2M",
                                " tiny-spam         classifier  3.2M"], XRAY_FOOTER)
XRAY = screen("5 X-ray", [" tiny-base (base, test-tiny)", " Every effort moves you", "", " 4 tokens"], XRAY_FOOTER)


def test_footer_keys_are_read_and_mapped_to_tmux_keys():
    items = check.parse_footer(CHAT_FOOTER)
    assert items[:3] == [("esc", "Stop reply"), ("^r", "Regenerate"), ("^n", "New chat")]
    assert ("^↑", "Pick msg") in items and ("f10", "About") in items and items[-1] == ("^p", "palette")
    assert check.parse_footer(XRAY_FOOTER)[:3] == [("f6", "Pick top ▶"), ("f7", "Sample ▶"), ("f8", "◀ Back")]
    assert check.tmux_key("^↑") == ("C-Up", False)
    assert check.tmux_key("^r") == ("C-r", False)
    assert check.tmux_key("del") == ("DC", False)
    assert check.tmux_key("f10") == ("F10", False)
    assert check.tmux_key("s") == ("s", True)
    assert check.tmux_key("⌘x") is None  # a key it cannot press is a failure, not a silent skip
    assert check.footer_complete(CHAT_FOOTER) and not check.footer_complete("esc Stop reply ^r Regen▏^p palette")


def test_only_quit_and_long_work_are_skipped():
    assert check.skip_reason("chat", "^q", "Quit")
    assert check.skip_reason("train", "f6", "Start")
    assert check.skip_reason("xray", "f6", "Pick top ▶") is None
    assert check.skip_reason("checkpoints", "del", "Delete") is None


def test_active_tab_is_read_from_the_tab_bar():
    assert check.active_tab(CKPT) == "4 Checkpoints"
    assert check.active_tab(XRAY) == "5 X-ray"


def test_a_fabricated_leftover_is_caught_and_a_clean_screen_is_not():
    size = (60, 12)
    assert check.leftover_runs(CKPT, XRAY, XRAY, size) == []  # the switch drew every cell anew
    stale = list(XRAY)
    stale[3] = XRAY[3][:30].ljust(30) + CKPT[3][30:]  # "Params   Size" stays from Checkpoints
    runs = check.leftover_runs(CKPT, stale, XRAY, size)
    assert runs and any("Params" in text for _, _, text in runs)
    assert check.candidate_runs(CKPT, stale, [XRAY], size)
    assert not check.candidate_runs(CKPT, XRAY, [XRAY], size)


def test_text_the_app_replaced_meanwhile_is_not_a_leftover():
    size = (60, 12)
    stale = list(XRAY)
    stale[3] = XRAY[3][:30].ljust(30) + CKPT[3][30:]
    # The app repainted those cells itself before the clean redraw: not left over.
    assert check.leftover_runs(CKPT, stale, XRAY, size, still=XRAY) == []
    # A notification (a toast: ▌ then text) comes and goes on its own.
    toast = list(XRAY)
    toast[9] = " " * 30 + "▌ Select a run first."
    before = list(CKPT)
    before[9] = toast[9]
    assert check.leftover_runs(before, toast, XRAY, size) == []


def test_errors_are_found_in_a_capture():
    assert check.error_in("ok\nTraceback (most recent call last):\n  File") == "Traceback (most recent call last):"
    assert "AttributeError" in check.error_in("  ▌ AttributeError: 'NoneType' object has no attribute 'x'")
    assert check.error_in("Select a run first.\nerror: no such checkpoint") is None
    assert check.shows(["│ tiny-base: base. Type a", "│ message."], "Type a message")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_smoke_script_every_screen_both_sizes(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "OK: 0 failure(s)" in done.stdout
    assert "SKIP: train 'f6 Start': starts a training run" in done.stdout
    report = (tmp_path / "report.txt").read_text()
    for mode, _, label in check.SCREENS:
        for cols, rows in check.SIZES:
            capture = (tmp_path / f"{mode}-{cols}x{rows}.txt").read_text().rstrip("\n").split("\n")
            assert len(capture) == rows and max(len(line) for line in capture) <= cols
            assert check.active_tab(capture) == label, f"{mode}-{cols}x{rows}.txt shows {check.active_tab(capture)}"
            assert "▏^p palette" in check.footer_line(capture)
            assert f"{mode} {cols}x{rows}: " in report and "f10 About" in report.split(f"{mode} {cols}x{rows}: ")[1]
    for cols, rows in check.SIZES:
        assert "Data folders" in (tmp_path / f"about-{cols}x{rows}.txt").read_text()
        assert "Welcome" in (tmp_path / f"welcome-{cols}x{rows}.txt").read_text()
    assert "cannot be undone" in "".join(p.read_text() for p in (tmp_path / "steps").glob("*checkpoints*Delete*"))
    # The leftover check on two real captures: none between them, and one pasted in is caught.
    ckpt = (tmp_path / "checkpoints-120x40.txt").read_text().split("\n")
    chat = (tmp_path / "chat-120x40.txt").read_text().split("\n")
    assert check.leftover_runs(ckpt, chat, chat, (120, 40)) == []
    row = next(i for i, line in enumerate(ckpt) if i > 3 and "tiny-spam" in line)  # a table row
    stale = list(chat)
    stale[row] = ckpt[row]
    assert any("tiny-spam" in text for _, _, text in check.leftover_runs(ckpt, stale, chat, (120, 40)))
