"""Loss plots from a run's events.jsonl (matplotlib, Agg backend: no display needed).

Like the book's plot_losses: train and val loss against tokens seen (with the epoch on a
top axis); a second panel for validation accuracy when the run has one (classifiers).
"""

from __future__ import annotations

from pathlib import Path

from chatgpt_scratch.training.events import read_events


def plot_run(events_path: str | Path, png_path: str | Path) -> Path | None:
    """Draw the run's curves to png_path; None if the run has no step events yet."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    events = read_events(events_path)
    # A run resumed from an earlier save repeats some steps: the later record of a step wins.
    steps = _last_per_step(e for e in events if e["type"] == "step" and e.get("train_loss") is not None)
    evals = _last_per_step(e for e in events if e["type"] == "eval")
    if not steps:
        return None
    accuracy = [e for e in evals if e.get("val_acc") is not None]
    n_panels = 2 if accuracy else 1
    fig, axes = plt.subplots(1, n_panels, figsize=(6 * n_panels, 4), squeeze=False)
    ax = axes[0][0]
    ax.plot([e["tokens_seen"] for e in steps], [e["train_loss"] for e in steps], label="Training loss", alpha=0.8)
    val = [e for e in evals if e.get("val_loss") is not None]
    if val:
        ax.plot([e["tokens_seen"] for e in val], [e["val_loss"] for e in val], linestyle="-.", marker=".",
                label="Validation loss")
    ax.set_xlabel("Tokens seen")
    ax.set_ylabel("Loss")
    ax.legend(loc="upper right")
    _epoch_axis(ax, steps)
    if accuracy:
        ax2 = axes[0][1]
        ax2.plot([e["tokens_seen"] for e in accuracy], [e["val_acc"] for e in accuracy], marker=".",
                 label="Validation accuracy")
        if any(e.get("train_acc") is not None for e in accuracy):
            ax2.plot([e["tokens_seen"] for e in accuracy if e.get("train_acc") is not None],
                     [e["train_acc"] for e in accuracy if e.get("train_acc") is not None], marker=".",
                     linestyle="-.", label="Training accuracy")
        ax2.set_xlabel("Tokens seen")
        ax2.set_ylabel("Accuracy")
        ax2.legend(loc="lower right")
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = png_path.with_name(f".{png_path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(png_path)
    return png_path


def _last_per_step(events) -> list[dict]:
    by_step = {e["step"]: e for e in events}
    return [by_step[s] for s in sorted(by_step)]


def _epoch_axis(ax, steps: list[dict]) -> None:
    """A top x-axis in epochs, mapped linearly from tokens seen (as the book's second axis)."""
    first, last = steps[0], steps[-1]
    if last["tokens_seen"] == first["tokens_seen"] or last.get("epoch") in (None, first.get("epoch")):
        return
    scale = (last["epoch"] - first["epoch"]) / (last["tokens_seen"] - first["tokens_seen"])
    offset = first["epoch"] - scale * first["tokens_seen"]
    top = ax.secondary_xaxis("top", functions=(lambda t: offset + scale * t, lambda e: (e - offset) / scale))
    top.set_xlabel("Epochs")
