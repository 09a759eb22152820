"""How the Checkpoints screen shows a CheckpointInfo: its table row (sizes, counts, the best metric) and
the events of the run that wrote it (for the loss curve). Plain functions, no widgets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textual.content import Content

from chatgpt_scratch.usecases.inference import kind_label
from tui import jobs

COLUMNS = ("Name", "Kind", "Preset", "Params", "Size", "Created", "Parent", "Best val")


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def human_count(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}K"
    return str(n)


def metric_text(info: Any) -> str:
    if info.metric_name is None:
        return "-"
    if info.metric_name == "val_acc":
        return f"acc {info.metric_value:.1%}"
    return f"loss {info.metric_value:.3f}"


def row_for(info: Any) -> tuple[str, ...]:
    if not info.ok:
        return (info.name, "BROKEN", "-", "-", human_size(info.file_size), "-", "-", "-")
    created = (info.created or "-")[:16].replace("T", " ")
    preset = info.preset or info.metadata.get("preset") or "custom"  # pretraining may shrink the context
    name = f"{info.name} (built-in)" if info.builtin else info.name
    return (name, kind_label(info.metadata), preset, human_count(info.n_params),
            human_size(info.file_size), created, Path(info.parent).name if info.parent else "-", metric_text(info))


def find_run_events(checkpoint: Path, metadata: dict[str, Any]) -> Path | None:
    """The events.jsonl of the run that wrote this checkpoint, if it is still there."""
    for key in ("run_dir", "run"):
        value = metadata.get(key)
        if isinstance(value, str) and (Path(value) / jobs.EVENTS_FILE).is_file():
            return Path(value) / jobs.EVENTS_FILE
    from chatgpt_scratch.storage.paths import runs_dir

    folder = runs_dir()
    if not folder.is_dir():
        return None
    target = checkpoint.resolve()
    steps = metadata.get("steps")  # several runs may have written to this path: the one that wrote this file
    for run in sorted(folder.iterdir(), reverse=True):  # newest first (names end in the start time)
        events = run / jobs.EVENTS_FILE
        if not events.is_file():
            continue
        for e in jobs.read_events(events):
            if (e.get("type") == "checkpoint" and e.get("path") and Path(e["path"]).resolve() == target
                    and (steps is None or e.get("step") == steps)):
                return events
    return None


def details_content(info: Any) -> Content:
    """The details panel: name, kind, dtype, file, then every header key (or the error of a broken file).
    Header values are anyone's text (a cut-off JSON list, a path): $variables, never parsed as markup."""
    if not info.ok:
        return Content.from_markup("[b]$name[/b]\n[red]$error[/red]", name=info.name, error=info.error)
    lines = [Content.from_markup("[b]$name[/b]  ($kind, $dtype)\nfile: $path", name=info.name,
                                 kind=info.kind, dtype=info.dtype or "-", path=str(info.path))]
    for key, value in sorted(info.metadata.items()):
        text = value if isinstance(value, str) else json.dumps(value)
        if len(text) > 300:
            text = text[:300] + "…"
        lines.append(Content.from_markup("[b]$key[/b]: $text", key=key, text=text))
    return Content("\n").join(lines)
