"""The Train monitor's plot on demand (issue 14 #5): the m key shows val loss, val perplexity, the learning
rate; runs marked with space and compared with c share one plot, each its own marker and colour, the
legend naming them, with the very series `chatgpt-scratch plot` draws (training/plots.compare_runs)."""

from __future__ import annotations

import os
from pathlib import Path

from textual.widgets import DataTable

from chatgpt_scratch.training.plots import compare_runs
from tests.test_plots import write_run
from tests.tui.conftest import wait_until
from tui.app import ScratchApp


def _runs() -> Path:
    return Path(os.environ["CHATGPT_SCRATCH_RUNS"])


def _labels(plot) -> list[str]:
    return [label for label, _, _ in plot.legend]


async def test_the_metric_key_shows_val_loss_val_perplexity_and_the_learning_rate(checkpoints_folder):
    run = write_run(_runs(), "pretrain", [5.0, 4.0, 3.5, 3.0], name="pretrain-1")
    app = ScratchApp(start="train", detect_device=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        plot = screen.query_one("#train-plot")
        await wait_until(pilot, lambda: _labels(plot) == ["train", "train (smoothed)", "val"], what="the losses")
        keys_on_monitor = {b.binding.key for b in screen.active_bindings.values()}  # what the footer shows
        shown = []
        for _ in range(4):
            await pilot.press("m")
            await wait_until(pilot, lambda: plot.metric in plot.shown_title or plot.shown_title.startswith(
                ("val", "learning", "loss")) and not plot._dirty, what="the redraw")
            shown.append((plot.metric, _labels(plot), plot.shown_title))
        lr_points = [(x, y) for x, y in plot.curves.series("lr")]
        await pilot.press("ctrl+o")  # the form: the plot's keys leave the footer
        await pilot.pause(0.2)
        keys_on_form = {b.binding.key for b in screen.active_bindings.values()}
    assert shown == [
        ("val_loss", ["val loss"], "val loss: pretrain-1"),
        ("val_ppl", ["val perplexity"], "val perplexity: pretrain-1"),
        ("lr", ["learning rate"], "learning rate: pretrain-1"),
        ("loss", ["train", "train (smoothed)", "val"], "loss: pretrain-1"),
    ]
    assert lr_points == compare_runs([run], "lr")[0].points
    assert {"m", "c"} <= keys_on_monitor and not {"m", "c"} & keys_on_form


async def test_marked_runs_of_one_task_are_compared_on_one_plot_and_two_tasks_are_refused(checkpoints_folder):
    spam = write_run(_runs(), "spam", [0.7, 0.5, 0.4, 0.3], name="spam-1")
    first = write_run(_runs(), "pretrain", [5.0, 4.0, 3.5, 3.0], name="pretrain-1")
    second = write_run(_runs(), "pretrain", [5.0, 4.6, 4.1, 3.9], lr0=5e-4, name="pretrain-2")
    for i, run in enumerate((spam, first, second)):  # the list is newest first: pretrain-2, pretrain-1, spam-1
        os.utime(run / "events.jsonl", (1_800_000_000 + i, 1_800_000_000 + i))
    app = ScratchApp(start="train", detect_device=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        table = screen.query_one("#train-runs", DataTable)
        plot = screen.query_one("#train-plot")
        await wait_until(pilot, lambda: table.row_count == 3, what="the runs")
        table.focus()
        await pilot.press("c")  # nothing marked yet: says how
        await pilot.pause(0.1)
        hint = [n.message for n in app._notifications][-1] if list(app._notifications) else ""
        await pilot.press("space", "down", "space")  # mark pretrain-2 and pretrain-1
        names = [str(table.get_row_at(i)[0]) for i in range(3)]
        await pilot.press("c")
        await wait_until(pilot, lambda: plot.compared and len(plot.legend) == 2 and not plot._dirty,
                         what="two runs on the plot")
        compared = (plot.shown_title, list(plot.legend), [s.points for s in plot.compared])
        await pilot.press("m", "m")  # val perplexity, for both runs
        await wait_until(pilot, lambda: plot.compared and plot.metric == "val_ppl" and not plot._dirty
                         and plot.shown_title.startswith("val perplexity"), what="the runs' val perplexity")
        ppl = [s.points for s in plot.compared]
        await pilot.press("down", "space")  # and spam-1 too: another task, refused
        await wait_until(pilot, lambda: plot.compared is None and not plot._dirty, what="the refusal")
        refusal = [n.message for n in app._notifications][-1]
        single = plot.shown_title
    assert "Mark two or more runs" in hint
    assert names == ["● pretrain-2", "● pretrain-1", "spam-1"]
    title, legend, points = compared
    assert title == "train loss (smoothed): 2 pretrain runs"
    assert [label for label, _, _ in legend] == ["pretrain-2", "pretrain-1"]
    assert len({marker for _, marker, _ in legend}) == 2 and len({colour for _, _, colour in legend}) == 2
    assert points == [s.points for s in compare_runs([second, first], "loss")]  # the CLI's series
    assert ppl == [s.points for s in compare_runs([second, first], "val_ppl")]
    assert refusal.startswith("runs of different tasks do not compare") and "spam-1 is spam" in refusal
    assert single == "val perplexity: spam-1 (none in this run)"  # the run now selected has no perplexity: said
