"""A run's curves, from its events.jsonl: folded into series (RunCurves), compared across runs
(compare_runs), and drawn to PNG files (matplotlib, Agg backend: no display needed).

Every front end reads its curves here: the trainer's NAME.loss.png (plot_run, like the book's
plot_losses: train and val loss against tokens seen, the epoch on a top axis, a val accuracy panel
for classifiers), `chatgpt-scratch plot RUN [RUN ...] --metric M` (plot_runs), and the TUI's live
loss plot and its comparison of runs (RunCurves, compare_runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.training.events import EVENTS_FILE, read_events

# The numbers of a run that make curves: from `step` events and from `eval` events (docs/events.md).
STEP_SERIES = ("train_loss", "lr", "grad_norm", "reward_margin", "reward_acc", "epoch")
EVAL_SERIES = ("val_loss", "val_ppl", "val_acc", "train_eval_loss", "train_acc", "val_reward_margin",
               "val_reward_acc")

# What a user can ask to see (`plot --metric`, the Train screen's metric key): name -> (series, label).
METRICS: dict[str, tuple[str, str]] = {
    "loss": ("train_loss", "train loss"),
    "val_loss": ("val_loss", "val loss"),
    "val_ppl": ("val_ppl", "val perplexity"),
    "lr": ("lr", "learning rate"),
}
SMOOTHED = ("loss",)  # a train loss is noisy step to step: compared runs show it smoothed
X_AXES = ("step", "tokens_seen")


def smooth(values: list[float], alpha: float = 0.1) -> list[float]:
    """Exponential moving average, bias-corrected so the first points are not pulled toward 0."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = (1 - alpha) * avg + alpha * v
        out.append(avg / (1 - (1 - alpha) ** i))
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


class RunCurves:
    """The series of one run, folded from its events (all at once, or a few at a time as a tail reads them).

    x is `x_axis` ("step" or "tokens_seen"). A run resumed after a crash repeats some steps: the later
    record of a step replaces the earlier one, in place, so every series stays in step order.
    """

    def __init__(self, x_axis: str = "step") -> None:
        if x_axis not in X_AXES:
            raise ScratchError(f"unknown x axis {x_axis!r}; choose one of {', '.join(X_AXES)}")
        self.x_axis = x_axis
        self.task: str | None = None  # the start event's task: "pretrain", "spam", "instruct", "dpo"
        self._points: dict[str, dict[Any, tuple[float, float]]] = {}
        self._last_x = 0.0

    def add(self, event: dict[str, Any]) -> bool:
        """Take one event; True if it added or changed a point (other event types are ignored)."""
        kind = event.get("type")
        if kind == "start" and isinstance(event.get("task"), str):
            self.task = event["task"]
            return False
        names = STEP_SERIES if kind == "step" else EVAL_SERIES if kind == "eval" else ()
        values = {name: v for name in names if (v := _number(event.get(name))) is not None}
        if not values:
            return False
        x = _number(event.get(self.x_axis, event.get("step")))
        x = self._last_x if x is None else x
        if kind == "step":
            self._last_x = x
        key = event.get("step") if isinstance(event.get("step"), int) else x
        for name, value in values.items():
            self._points.setdefault(name, {})[key] = (x, value)
        return True

    def add_all(self, events: Iterable[dict[str, Any]]) -> bool:
        changed = False
        for event in events:
            changed = self.add(event) or changed
        return changed

    def series(self, name: str) -> list[tuple[float, float]]:
        """(x, value) points of one series (a name of STEP_SERIES or EVAL_SERIES), in step order."""
        return list(self._points.get(name, {}).values())

    def __len__(self) -> int:
        return sum(len(points) for points in self._points.values())


def resolve_run(run: str | Path) -> Path:
    """A run folder from what a user typed: a folder, its events.jsonl, or a run's name in the runs folder."""
    path = Path(run)
    if path.name == EVENTS_FILE and path.is_file():
        return path.parent
    if path.is_dir():
        return path
    from chatgpt_scratch.storage.paths import runs_dir

    if (runs_dir() / path).is_dir() and len(path.parts) == 1:
        return runs_dir() / path
    raise ScratchError(f"no run at {run}: pass a run folder (one that holds {EVENTS_FILE}) or a run's name in "
                       f"{runs_dir()}")


def read_curves(run: str | Path, x_axis: str = "step") -> RunCurves:
    curves = RunCurves(x_axis)
    curves.add_all(read_events(resolve_run(run)))
    return curves


@dataclass
class RunSeries:
    """One run's points of one metric, named for a legend."""

    name: str
    path: Path
    task: str | None
    points: list[tuple[float, float]] = field(default_factory=list)


def metric_label(metric: str) -> str:
    label = METRICS[metric][1]
    return f"{label} (smoothed)" if metric in SMOOTHED else label


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ScratchError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return metric


def compare_runs(runs: Iterable[str | Path], metric: str, x_axis: str = "step") -> list[RunSeries]:
    """Each run's series of `metric` (the train loss smoothed), for one plot. The runs must be of one task
    (a classifier's loss and a language model's do not compare), and at least one must have points."""
    check_metric(metric)
    out = []
    for run in runs:
        path = resolve_run(run)
        curves = read_curves(path, x_axis)
        points = curves.series(METRICS[metric][0])
        if metric in SMOOTHED and points:
            points = list(zip([x for x, _ in points], smooth([y for _, y in points])))
        out.append(RunSeries(path.name, path, curves.task, points))
    if not out:
        raise ScratchError("name at least one run to plot")
    tasks = {s.task for s in out}
    if len(tasks) > 1:
        which = ", ".join(f"{s.name} is {s.task or 'not started'}" for s in out)
        raise ScratchError(f"runs of different tasks do not compare ({which}); pick runs of one task")
    if not any(s.points for s in out):
        names = ", ".join(s.name for s in out)
        hint = " (only language-model runs record a perplexity)" if metric == "val_ppl" else ""
        raise ScratchError(f"no {METRICS[metric][0]} in {names}{hint}")
    return out


# matplotlib's share of the look: each run its colour AND its marker (and line style), so a
# black-and-white print tells the runs apart too.
_STYLES = [("tab:blue", "o", "-"), ("tab:orange", "x", "--"), ("tab:green", "s", "-."), ("tab:red", "^", ":"),
           ("tab:purple", "D", "-"), ("tab:brown", "v", "--"), ("tab:pink", "*", "-."), ("tab:gray", "P", ":")]


def plot_runs(runs: Iterable[str | Path], metric: str, png_path: str | Path, x_axis: str = "step") -> Path:
    """One metric of one or more runs on one plot (a legend names the runs); -> the PNG written."""
    series = compare_runs(runs, metric, x_axis)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, s in enumerate(series):
        color, marker, style = _STYLES[i % len(_STYLES)]
        if not s.points:
            ax.plot([], [], color=color, marker=marker, linestyle=style, label=f"{s.name} (no points)")
            continue
        xs, ys = zip(*s.points)
        every = max(1, len(xs) // 12)  # a marker every few points: a line of 10,000 marks is a smear
        ax.plot(xs, ys, color=color, marker=marker, linestyle=style, markevery=every, label=s.name)
    if metric == "lr":
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.set_xlabel("tokens seen" if x_axis == "tokens_seen" else "step")
    ax.set_ylabel(metric_label(metric))
    ax.set_title(f"{metric_label(metric)}: {series[0].task or 'run'}" if len(series) > 1
                 else f"{metric_label(metric)}: {series[0].name}")
    ax.legend(loc="best")
    fig.tight_layout()
    return _save(fig, plt, png_path)


def plot_run(events_path: str | Path, png_path: str | Path) -> Path | None:
    """Draw the run's curves to png_path; None if the run has no step events yet."""
    curves = RunCurves("tokens_seen")
    curves.add_all(read_events(events_path))
    train = curves.series("train_loss")
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    accuracy = curves.series("val_acc")
    n_panels = 2 if accuracy else 1
    fig, axes = plt.subplots(1, n_panels, figsize=(6 * n_panels, 4), squeeze=False)
    _panel(axes[0][0], "Loss", "upper right", ("Training", train, dict(alpha=0.8)),
           ("Validation", curves.series("val_loss"), dict(linestyle="-.", marker=".")))
    _epoch_axis(axes[0][0], curves.series("epoch"))
    if accuracy:
        _panel(axes[0][1], "Accuracy", "lower right", ("Validation", accuracy, dict(marker=".")),
               ("Training", curves.series("train_acc"), dict(marker=".", linestyle="-.")))
    fig.tight_layout()
    return _save(fig, plt, png_path)


def _panel(ax, metric: str, legend_at: str, *lines: tuple[str, list, dict]) -> None:
    """One panel of plot_run: each (label, series, style) that has points, against tokens seen."""
    for label, series, style in lines:
        if series:
            ax.plot(*zip(*series), label=f"{label} {metric.lower()}", **style)
    ax.set_xlabel("Tokens seen")
    ax.set_ylabel(metric)
    ax.legend(loc=legend_at)


def _save(fig, plt, png_path: str | Path) -> Path:
    from chatgpt_scratch.storage.fileio import write_atomically  # the one atomic write

    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return write_atomically(png_path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        plt.close(fig)


def _epoch_axis(ax, epochs: list[tuple[float, float]]) -> None:
    """A top x-axis in epochs, mapped linearly from tokens seen (as the book's second axis)."""
    if len(epochs) < 2:
        return
    (t0, e0), (t1, e1) = epochs[0], epochs[-1]
    if t1 == t0 or e1 == e0:
        return
    scale = (e1 - e0) / (t1 - t0)
    offset = e0 - scale * t0
    top = ax.secondary_xaxis("top", functions=(lambda t: offset + scale * t, lambda e: (e - offset) / scale))
    top.set_xlabel("Epochs")
