"""A live loss plot fed by training events, and a plot comparing runs.

One run (`add_events` as the events file grows): train raw + smoothed, val loss, val accuracy; for
preference tuning also the val reward margin on the loss axis and the val reward accuracy on the right
one. Or one metric of that run (`metric`: "lr", "val_ppl", "val_loss"). Or, with `compare(series)`,
one metric of several runs, each its own colour and marker, the legend naming the runs. The series
come from the library (training/plots.py: RunCurves, compare_runs), which `chatgpt-scratch plot` uses too.

Points arrive whenever the events file grows; the drawing happens at most MAX_REDRAWS_PER_S times a
second, so a fast job cannot flood the terminal.
"""

from __future__ import annotations

from typing import Any

from textual_plotext import PlotextPlot

from chatgpt_scratch.training.plots import METRICS, RunCurves, RunSeries, metric_label, smooth

MAX_REDRAWS_PER_S = 4
# A compared run's look: a marker AND a colour, so a monochrome terminal tells the runs apart too.
RUN_STYLES = [("o", "cyan"), ("x", "orange"), ("+", "magenta"), ("*", "green"), ("#", "red"), ("@", "blue"),
              ("%", "yellow"), ("&", "gray")]
TASK_TITLES = {"spam": "loss / accuracy", "dpo": "DPO loss / reward margin / reward acc"}


class LossPlot(PlotextPlot):
    def __init__(self, *, id: str | None = None, title: str = "loss", x_axis: str = "step") -> None:
        super().__init__(id=id)
        self.title = title  # shown while no run is named (subject)
        self.subject = ""  # the run's name, in the title
        self.x_axis = x_axis  # "step" or "tokens_seen"
        self.curves = RunCurves(x_axis)
        self.metric = "loss"  # a key of METRICS
        self.compared: list[RunSeries] | None = None
        self._dirty = True
        self.legend: list[tuple[str, str, str]] = []  # (label, marker, colour) of the lines last drawn
        self.shown_title = title
        self.redraws = 0  # how many times the data were drawn (tests and the throttle check read it)

    def on_mount(self) -> None:
        self.set_interval(1 / MAX_REDRAWS_PER_S, self._redraw_if_dirty)
        self._draw()

    # --- the data ------------------------------------------------------------------------------

    @property
    def train(self) -> list[tuple[float, float]]:
        return self.curves.series("train_loss")

    @property
    def val(self) -> list[tuple[float, float]]:
        return self.curves.series("val_loss")

    @property
    def acc(self) -> list[tuple[float, float]]:
        return self.curves.series("val_reward_acc") or self.curves.series("val_acc")

    @property
    def acc_label(self) -> str:
        return "val reward acc" if self.curves.series("val_reward_acc") else "val acc"

    @property
    def margin(self) -> list[tuple[float, float]]:  # DPO: val reward margin (chosen - rejected)
        return self.curves.series("val_reward_margin")

    @property
    def n_points(self) -> int:
        return len(self.train) + len(self.val) + len(self.acc) + len(self.margin)

    def clear(self, subject: str = "") -> None:
        self.curves = RunCurves(self.x_axis)
        self.subject = subject
        self._dirty = True

    def add_events(self, events: list[dict[str, Any]]) -> None:
        """Take the step and eval events out of a batch of events; other types are ignored."""
        if self.curves.add_all(events):
            self._dirty = True

    def set_events(self, events: list[dict[str, Any]]) -> None:
        self.clear(self.subject)
        self.add_events(events)

    def set_series(self, series: dict[str, Any]) -> None:
        self.clear()

    def set_metric(self, metric: str) -> None:
        self.metric = metric
        self._dirty = True

    def compare(self, series: list[RunSeries] | None) -> None:
        """Overlay these runs' series of `metric` (None: back to the one run)."""
        self.compared = series
        self._dirty = True

    # --- drawing -------------------------------------------------------------------------------

    def _redraw_if_dirty(self) -> None:
        if self._dirty:
            self._draw()

    def _title(self) -> str:
        if self.compared:
            return f"{metric_label(self.metric)}: {len(self.compared)} {self.compared[0].task or ''} runs"
        if not self.subject:
            return self.title
        if self.metric == "loss":
            return f"{TASK_TITLES.get(self.curves.task or '', 'loss')}: {self.subject}"
        none = "" if self.curves.series(METRICS[self.metric][0]) else " (none in this run)"
        return f"{METRICS[self.metric][1]}: {self.subject}{none}"

    def _draw(self) -> None:
        self._dirty = False
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        self.shown_title = self._title()
        plt.title(self.shown_title)
        plt.xlabel("tokens seen" if self.x_axis == "tokens_seen" else "step")
        self.legend = []
        if self.compared:
            self._draw_compared()
        elif self.metric != "loss":
            points = self.curves.series(METRICS[self.metric][0])
            if points:
                self._line(*zip(*points), METRICS[self.metric][1], "braille", "cyan", scatter=len(points) == 1)
        elif self.n_points:
            self._draw_losses()
        if self.legend:
            self.redraws += 1
        self.refresh()

    def _draw_compared(self) -> None:
        for i, run in enumerate(self.compared or []):
            marker, color = RUN_STYLES[i % len(RUN_STYLES)]
            if run.points:
                self._line(*zip(*run.points), run.name, marker, color, scatter=len(run.points) == 1)
            else:
                self.legend.append((f"{run.name} (no points)", marker, color))

    def _draw_losses(self) -> None:
        # Each line its own marker as well as its colour: in a monochrome terminal the marks tell them apart.
        plt = self.plt
        if self.train:
            xs, ys = zip(*self.train)
            if len(xs) > 1:
                self._line(xs, ys, "train", "dot", "gray")
                self._line(xs, smooth(list(ys)), "train (smoothed)", "braille", "cyan")
            else:
                self._line(xs, ys, "train", "braille", "cyan", scatter=True)
        if self.val:
            self._line(*zip(*self.val), "val", "x", "orange")
        if self.margin:
            self._line(*zip(*self.margin), "val reward margin", "+", "magenta")
        if self.acc:
            self._line(*zip(*self.acc), self.acc_label, "o", "green", yside="right")
            plt.ylim(0, 1, yside="right")

    def _line(self, xs, ys, label: str, marker: str, color: str, scatter: bool = False, **kw: Any) -> None:
        (self.plt.scatter if scatter else self.plt.plot)(xs, ys, label=label, marker=marker, color=color, **kw)
        self.legend.append((label, marker, color))
