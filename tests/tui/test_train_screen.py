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
        await wait_until(pilot, lambda: screen.run_list.listed_once, what="the runs listing")
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
        await wait_until(pilot, lambda: screen.run_list.listed_once and screen.runs, what="the runs listing")
        await pilot.pause(0.1)
        active = screen.query_one("#train-tabs", TabbedContent).active
    assert active == "train-monitor-pane"


def _panel_line(screen, label: str) -> str:
    text = str(screen.query_one("#train-metrics").render())
    return next(line for line in text.splitlines() if line.startswith(label))


async def test_the_side_panel_and_the_runs_list_show_one_state(checkpoints_folder, monkeypatch):
    """After a stop the list and the panel agree (and no old ETA stays); when the list learns the run was
    resumed, or failed, the panel follows it: one state, the runs list's."""
    from dataclasses import replace

    from textual.widgets import DataTable

    monkeypatch.setattr("tui.screens.train.RUNS_REFRESH_S", 60.0)  # only the test changes the list below
    run = Path(os.environ["CHATGPT_SCRATCH_RUNS"]) / "pretrain-20260101-000000"
    run.mkdir(parents=True)
    events = [{"type": "start", "task": "pretrain", "total_steps": 40, "step": 0}]
    events += [{"type": "step", "step": i, "train_loss": 5.0, "elapsed_s": float(i)} for i in range(1, 22)]
    events += [{"type": "stopped", "step": 21}]
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    app = ScratchApp(start="train", detect_device=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        table = screen.query_one("#train-runs", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1 and screen.monitor.step == 21, what="the run")
        await pilot.pause(0.1)
        listed = [str(c) for c in table.get_row_at(0)[2:4]]
        stopped = _panel_line(screen, "state"), _panel_line(screen, "ETA"), _panel_line(screen, "step")
        summary = screen.runs[str(run)]
        screen.show_runs([replace(summary, state="running")])  # resumed: the list says running
        resumed = _panel_line(screen, "state"), _panel_line(screen, "ETA")
        screen.show_runs([replace(summary, state="failed")])
        failed = _panel_line(screen, "state"), str(table.get_row_at(0)[2])
    assert listed == ["stopped", "21/40"]
    assert stopped == ("state  stopped", "ETA    -", "step   21/40")
    assert resumed == ("state  running", "ETA    19s")
    assert failed == ("state  failed", "failed")
