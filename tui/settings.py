"""The app's own settings on disk: one JSON object in `app_data_dir()/tui-settings.json` (beside the
chat history; $CHATGPT_SCRATCH_HOME moves both). Today it remembers that the welcome panel was seen.

A missing or unreadable file means "all defaults"; a write is atomic, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SETTINGS_FILE = "tui-settings.json"


def settings_path() -> Path:
    from chatgpt_scratch.storage.paths import app_data_dir

    return app_data_dir() / SETTINGS_FILE


def load_settings() -> dict[str, Any]:
    try:
        data = json.loads(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_setting(key: str, value: Any) -> None:
    from chatgpt_scratch.storage.fileio import write_text_atomic

    settings = {**load_settings(), key: value}
    write_text_atomic(settings_path(), json.dumps(settings, indent=1) + "\n")  # makes the folder if needed


def welcome_due() -> bool:
    """True until the welcome panel has been dismissed once."""
    return not load_settings().get("welcome_seen")


def welcome_seen() -> None:
    save_setting("welcome_seen", True)
