"""Snapshot tests: each screen at 80x24 and 120x40 (pytest-textual-snapshot).

Deterministic on purpose: fixed checkpoint dates, data folders named relative to a temp cwd,
and the header's device left at "auto" (no hardware detection). After an intended change of
the look, regenerate with `pytest tests/tui/test_snapshots.py --snapshot-update` and review the SVGs.
"""

from __future__ import annotations

import pytest

from tests.tui.conftest import wait_until
from tui.app import ScratchApp

SIZES = [(80, 24), (120, 40)]


def settled(condition=None):
    """run_before: wait until the screen's workers are done (and `condition(app)` holds)."""

    async def run_before(pilot) -> None:
        app = pilot.app
        await pilot.pause(0.2)
        await wait_until(pilot, lambda: not [w for w in app.workers if w.is_running], what="idle workers")
        if condition is not None:
            await wait_until(pilot, lambda: condition(app), what="the screen to fill")
        for widget in app.screen.query("Input, TextArea"):
            widget.cursor_blink = False  # a blinking cursor is on or off depending on timing
        await pilot.pause(0.3)

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_chat_screen(relative_data_dirs, tiny_base, snap_compare, size):
    app = ScratchApp(start="chat", detect_device=False)
    assert snap_compare(app, terminal_size=size, run_before=settled(lambda a: a.screen.session is not None))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_chat_screen_without_models(relative_data_dirs, snap_compare, size):
    app = ScratchApp(start="chat", detect_device=False)
    assert snap_compare(app, terminal_size=size,
                        run_before=settled(lambda a: "No model" in a.screen.query_one("#chat-empty").source))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_spam_screen(relative_data_dirs, tiny_classifier, snap_compare, size):
    app = ScratchApp(start="spam", detect_device=False)
    assert snap_compare(app, terminal_size=size, run_before=settled(lambda a: a.screen.classifier is not None))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_train_screen_monitor(relative_data_dirs, snap_compare, size):
    async def to_monitor(pilot) -> None:
        await settled()(pilot)
        await pilot.press("ctrl+o")  # no runs: the screen opens on the form
        await settled()(pilot)

    app = ScratchApp(start="train", detect_device=False)
    assert snap_compare(app, terminal_size=size, run_before=to_monitor)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_train_screen_form(relative_data_dirs, tiny_base, snap_compare, size):
    async def fill(pilot) -> None:  # no runs: the screen opens on the form
        await settled()(pilot)
        pilot.app.screen.query_one("#f-out").value = "demo"
        await settled()(pilot)

    app = ScratchApp(start="train", detect_device=False)
    assert snap_compare(app, terminal_size=size, run_before=fill)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_checkpoints_screen(relative_data_dirs, tiny_base, tiny_classifier, snap_compare, size):
    async def focus_table(pilot) -> None:
        await settled(lambda a: a.screen.query_one("#ckpt-table").row_count == 2)(pilot)
        pilot.app.screen.query_one("#ckpt-table").focus()
        await settled()(pilot)

    app = ScratchApp(start="checkpoints", detect_device=False)
    assert snap_compare(app, terminal_size=size, run_before=focus_table)


def test_about_at_80x24(relative_data_dirs, snap_compare, monkeypatch):
    """The About box fits 80x24: keys table readable, scrollable, and it says how to close it."""
    # The folders are absolute paths (a per-test temp folder here): fixed text, so the snapshot is stable.
    monkeypatch.setattr("tui.screens.about.folders_markdown", lambda: "- **Checkpoints**: `checkpoints`")
    async def open_about(pilot) -> None:
        await settled()(pilot)
        await pilot.press("f10")
        await settled()(pilot)

    app = ScratchApp(start="spam", detect_device=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=open_about)


def test_xray_after_about_checkpoints_and_a_resize(relative_data_dirs, tiny_base, snap_compare):
    """The path of issue 14 #4: About and Checkpoints at 120x40, then a resize to 80x24 and X-ray. Nothing
    of the earlier screens may be left (the X-ray prompt row, the column titles)."""
    from textual.widgets import Input

    async def walk(pilot) -> None:
        await pilot.press("f10")
        await pilot.pause(0.2)
        await pilot.press("escape")
        await settled()(pilot)
        await pilot.resize_terminal(80, 24)
        await pilot.press("f5")
        await settled(lambda a: getattr(a.screen, "views", None) is not None)(pilot)
        pilot.app.screen.query_one("#xr-text", Input).cursor_blink = False

    app = ScratchApp(start="checkpoints", detect_device=False)
    assert snap_compare(app, terminal_size=(120, 40), run_before=walk)
