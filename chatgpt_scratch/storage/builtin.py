"""The models and datasets that ship with the project, and the rules that protect them.

A fresh install is useful offline: the source checkout's `checkpoints/` folder holds the default
models (trained by `scripts/build_default_models.py`, with cards in `checkpoints/README.md`) and its
`datasets/` folder the small redistributable datasets. The package finds both from any working
directory, since it knows where it was installed from. `$CHATGPT_SCRATCH_BUNDLED` points elsewhere
(a folder holding `checkpoints/` and `datasets/`), or turns them off with `off`.

Built-in models are read-only for the app: renaming, deleting or overwriting one is refused with a
message (duplicating is allowed, and the copy is the user's own).
"""

from __future__ import annotations

import os
from pathlib import Path

from chatgpt_scratch.errors import ScratchError

# The shipped models: file stem -> the kind of model it gives (a LoRA adapter counts as what it makes).
BUILTIN_MODELS: dict[str, str] = {
    "default-base": "base",
    "default-instruct": "instruct",
    "default-spam": "classifier",
}
BUILTIN_SUFFIX = ".safetensors"


def bundled_root() -> Path | None:
    """The folder holding the shipped `checkpoints/` and `datasets/`, or None when turned off."""
    env = os.environ.get("CHATGPT_SCRATCH_BUNDLED")
    if env is not None:
        return None if env.strip().lower() in ("", "off", "none", "0") else Path(env)
    return Path(__file__).resolve().parents[2]  # the source checkout (an editable install)


def bundled_checkpoints_dir() -> Path | None:
    root = bundled_root()
    return None if root is None else root / "checkpoints"


def bundled_datasets_dir() -> Path | None:
    root = bundled_root()
    return None if root is None else root / "datasets"


def builtin_paths() -> list[Path]:
    """The shipped model files that are present, in BUILTIN_MODELS order."""
    folder = bundled_checkpoints_dir()
    if folder is None:
        return []
    return [p for stem in BUILTIN_MODELS if (p := folder / f"{stem}{BUILTIN_SUFFIX}").is_file()]


def is_builtin(path: str | Path) -> bool:
    """True for a shipped model file (by its place, not its name: a user's file elsewhere may share the name)."""
    folder = bundled_checkpoints_dir()
    if folder is None:
        return False
    path = Path(path)
    if path.name.removesuffix(BUILTIN_SUFFIX) not in BUILTIN_MODELS or not path.name.endswith(BUILTIN_SUFFIX):
        return False
    try:
        return path.resolve().parent == folder.resolve()
    except (OSError, RuntimeError):
        return False


def builtin_message(path: str | Path, action: str) -> str:
    return (f"cannot {action} {Path(path).name}: it is a built-in model shipped with the app; "
            "duplicate it and change the copy, or choose another name")


def refuse_builtin(path: str | Path, action: str) -> None:
    """Raise the one message for an operation that would change a shipped model."""
    if is_builtin(path):
        raise ScratchError(builtin_message(path, action))


BUILTIN_SPAM_SEED = 123  # the split seed the default classifier was trained and tested with

# Header key -> (label in the model cards, format). One home: the cards are rendered with this, and a
# test renders it again from each shipped file's header to check the card says the same.
_CARD_METRICS = {
    "val_loss": ("val loss", "{:.4f}"),
    "val_ppl": ("val perplexity", "{:.1f}"),
    "test_rouge_l": ("test ROUGE-L F1", "{:.3f}"),
    "test_response_loss": ("test reference-answer loss", "{:.3f}"),
    "test_empty_answers": ("empty test answers", "{:d}"),
    "test_acc": ("test accuracy", "{:.2%}"),
    "test_spam_recall": ("test spam recall", "{:.2%}"),
    "test_spam_precision": ("test spam precision", "{:.2%}"),
}


def card_metrics(metadata: dict) -> dict[str, str]:
    """The metrics a model card shows, formatted, from a checkpoint header (keys it lacks are left out)."""
    out = {}
    for key, (label, fmt) in _CARD_METRICS.items():
        value = metadata.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if key == "val_ppl" and "val_loss" not in metadata:
            continue
        out[label] = fmt.format(int(value) if fmt == "{:d}" else value)
    return out
