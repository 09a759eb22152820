"""Train screen as a newcomer meets it (issue 14 #2, #3)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from textual.widgets import TabbedContent

from tests.tui.conftest import wait_until
from tui.app import ScratchApp


async def test_with_no_runs_the_train_screen_opens_on_the_form_and_the_tabs_switch(checkpoints_folder):
    app = ScratchApp(start="train", detect_device=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        tabs = screen.query_one("#train-tabs", TabbedContent)
        await wait_until(pilot, lambda: screen._listed_once, what="the runs listing")
        opened_on = tabs.active
        labels = [str(tab.label) for tab in tabs.query("ContentTab")]
        await pilot.click("#--content-tab-train-monitor-pane")  # the visible switch: a tab, no hidden key needed
        clicked = tabs.active
    assert opened_on == "train-form-pane"
    assert labels == ["New run", "Monitor"] and clicked == "train-monitor-pane"


async def test_with_runs_the_train_screen_opens_on_the_monitor(checkpoints_folder):
    run = Path(os.environ["CHATGPT_SCRATCH_RUNS"]) / "pretrain-20260101-000000"
    run.mkdir(parents=True)
    (run / "events.jsonl").write_text(json.dumps({"type": "start", "task": "pretrain", "total_steps": 4}) + "\n")
    app = ScratchApp(start="train", detect_device=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen._listed_once and screen.runs, what="the runs listing")
        await pilot.pause(0.1)
        active = screen.query_one("#train-tabs", TabbedContent).active
    assert active == "train-monitor-pane"
