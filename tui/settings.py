"""The app's own settings on disk: one JSON object in `app_data_dir()/tui-settings.json` (beside the
chat history; $CHATGPT_SCRATCH_HOME moves both). It remembers that the welcome panel was seen and whether Chat decodes through a compiled step (Fast decode, F7).

A missing or unreadable file means "all defaults"; a write is atomic, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SETTINGS_FILE = "tui-settings.json"
FAST_DECODE = "fast_decode"  # Chat: decode through a step compiled for this CPU (F7 toggles it)
DEFAULTS: dict[str, Any] = {FAST_DECODE: True}  # what a setting is until the user changes it


def settings_path() -> Path:
    from chatgpt_scratch.storage.paths import app_data_dir

    return app_data_dir() / SETTINGS_FILE


def _saved() -> dict[str, Any]:
    try:
        data = json.loads(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_settings() -> dict[str, Any]:
    """The saved settings over DEFAULTS."""
    return {**DEFAULTS, **_saved()}


def save_setting(key: str, value: Any) -> None:
    """Save one setting (the file keeps only what was set: a later default still reaches the others)."""
    from chatgpt_scratch.storage.fileio import write_text_atomic

    settings = {**_saved(), key: value}
    write_text_atomic(settings_path(), json.dumps(settings, indent=1) + "\n")  # makes the folder if needed


def welcome_due() -> bool:
    """True until the welcome panel has been dismissed once."""
    return not load_settings().get("welcome_seen")


def welcome_seen() -> None:
    save_setting("welcome_seen", True)
