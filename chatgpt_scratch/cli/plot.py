"""`chatgpt-scratch plot RUN [RUN ...] --metric M --out PNG`: one metric of one or more runs, on one plot.

The same curves the app's Train screen shows (training/plots.py reads them, for both)."""

from __future__ import annotations

import argparse

from chatgpt_scratch.cli.common import add_command


def register(subparsers) -> None:
    from chatgpt_scratch.training.plots import METRICS, X_AXES

    p = add_command(subparsers, "plot", run,
                    help="plot a metric of one or more training runs to a PNG (compare runs of one task)",
                    description="Draw one metric of one or more runs (read from their events.jsonl) on one plot, "
                    "each run its own colour and marker, a legend naming them. Runs must be of one task. Metrics: "
                    + ", ".join(f"{name} ({label})" for name, (_, label) in METRICS.items())
                    + "; the train loss is smoothed (an exponential moving average).",
                    examples="chatgpt-scratch plot runs/pretrain-1-20260101-120000 "
                    "runs/pretrain-2-20260101-130000 --metric val_loss --out compare.png")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="a run folder, its events.jsonl, or a run's name in the runs folder")
    p.add_argument("--metric", choices=list(METRICS), default="loss", help="what to plot (default: loss)")
    p.add_argument("--x", choices=list(X_AXES), default="step", dest="x_axis",
                   help="the x axis (default: step; tokens_seen compares runs of different batch sizes)")
    p.add_argument("--out", metavar="PNG", default=None, help="the image to write (default: plot-METRIC.png)")


def run(args: argparse.Namespace) -> int:
    from chatgpt_scratch.training.plots import plot_runs

    png = plot_runs(args.runs, args.metric, args.out or f"plot-{args.metric}.png", x_axis=args.x_axis)
    print(f"wrote {png}")
    return 0
