"""A live loss plot fed by training events (train raw + smoothed, val loss, val accuracy; for preference
tuning also the val reward margin on the loss axis and the val reward accuracy on the right one).

Points arrive whenever the events file grows; the drawing happens at most
MAX_REDRAWS_PER_S times a second, so a fast job cannot flood the terminal.
"""

from __future__ import annotations

from typing import Any

from textual_plotext import PlotextPlot

from tui.jobs import smooth

MAX_REDRAWS_PER_S = 4


class LossPlot(PlotextPlot):
    def __init__(self, *, id: str | None = None, title: str = "loss", x_axis: str = "step") -> None:
        super().__init__(id=id)
        self.title = title
        self.x_axis = x_axis  # "step" or "tokens_seen"
        self.train: list[tuple[float, float]] = []
        self.val: list[tuple[float, float]] = []
        self.acc: list[tuple[float, float]] = []
        self.margin: list[tuple[float, float]] = []  # DPO: val reward margin (chosen - rejected)
        self.acc_label = "val acc"  # "val reward acc" for preference tuning
        self._dirty = True
        self.legend: list[tuple[str, str, str]] = []  # (label, marker, colour) of the lines last drawn
        self.redraws = 0  # how many times the data were drawn (tests and the throttle check read it)

    def on_mount(self) -> None:
        self.set_interval(1 / MAX_REDRAWS_PER_S, self._redraw_if_dirty)
        self._draw()

    @property
    def n_points(self) -> int:
        return len(self.train) + len(self.val) + len(self.acc) + len(self.margin)

    def clear(self) -> None:
        self.train, self.val, self.acc, self.margin = [], [], [], []
        self.acc_label = "val acc"
        self._dirty = True

    def add_events(self, events: list[dict[str, Any]]) -> None:
        """Take the step and eval events out of a batch of events; other types are ignored."""
        last_x = self.train[-1][0] if self.train else 0.0
        for e in events:
            x = e.get(self.x_axis, e.get("step"))
            if not isinstance(x, (int, float)):
                x = last_x
            kind = e.get("type")
            if kind == "step" and isinstance(e.get("train_loss"), (int, float)):
                self.train.append((float(x), float(e["train_loss"])))
                last_x = float(x)
            elif kind == "eval":
                if isinstance(e.get("val_loss"), (int, float)):
                    self.val.append((float(x), float(e["val_loss"])))
                if isinstance(e.get("val_acc"), (int, float)):
                    self.acc.append((float(x), float(e["val_acc"])))
                if isinstance(e.get("val_reward_acc"), (int, float)):
                    self.acc_label = "val reward acc"
                    self.acc.append((float(x), float(e["val_reward_acc"])))
                if isinstance(e.get("val_reward_margin"), (int, float)):
                    self.margin.append((float(x), float(e["val_reward_margin"])))
            else:
                continue
            self._dirty = True

    def set_events(self, events: list[dict[str, Any]]) -> None:
        self.clear()
        self.add_events(events)

    def set_series(self, series: dict[str, Any]) -> None:
        self.clear()

    def _redraw_if_dirty(self) -> None:
        if self._dirty:
            self._draw()

    def _draw(self) -> None:
        self._dirty = False
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        plt.xlabel("tokens seen" if self.x_axis == "tokens_seen" else "step")
        if not self.n_points:
            self.refresh()
            return
        self.redraws += 1
        self.legend = []
        # Each line its own marker as well as its colour: in a monochrome terminal the marks tell them apart.
        if self.train:
            xs, ys = zip(*self.train)
            if len(xs) > 1:
                self._line(xs, ys, "train", "dot", "gray")
                self._line(xs, smooth(list(ys)), "train (smoothed)", "braille", "cyan")
            else:
                self._line(xs, ys, "train", "braille", "cyan", scatter=True)
        if self.val:
            xs, ys = zip(*self.val)
            self._line(xs, ys, "val", "x", "orange")
        if self.margin:
            xs, ys = zip(*self.margin)
            self._line(xs, ys, "val reward margin", "+", "magenta")
        if self.acc:
            xs, ys = zip(*self.acc)
            self._line(xs, ys, self.acc_label, "o", "green", yside="right")
            plt.ylim(0, 1, yside="right")
        self.refresh()

    def _line(self, xs, ys, label: str, marker: str, color: str, scatter: bool = False, **kw: Any) -> None:
        (self.plt.scatter if scatter else self.plt.plot)(xs, ys, label=label, marker=marker, color=color, **kw)
        self.legend.append((label, marker, color))
