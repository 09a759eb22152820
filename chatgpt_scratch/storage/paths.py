"""Where the app keeps things. Each default can be overridden by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path


def checkpoints_dir() -> Path:
    """Model files: ./checkpoints unless $CHATGPT_SCRATCH_CHECKPOINTS says otherwise."""
    return Path(os.environ.get("CHATGPT_SCRATCH_CHECKPOINTS", "checkpoints"))


def datasets_dir() -> Path:
    """Data files: ./datasets unless $CHATGPT_SCRATCH_DATASETS says otherwise."""
    return Path(os.environ.get("CHATGPT_SCRATCH_DATASETS", "datasets"))


def runs_dir() -> Path:
    """Training runs (events.jsonl, resumable state): ./runs unless $CHATGPT_SCRATCH_RUNS says otherwise."""
    return Path(os.environ.get("CHATGPT_SCRATCH_RUNS", "runs"))


def app_data_dir() -> Path:
    """Per-user app data (chat history database): $CHATGPT_SCRATCH_HOME or the platform's data folder."""
    env = os.environ.get("CHATGPT_SCRATCH_HOME")
    if env:
        return Path(env)
    from platformdirs import user_data_path

    return user_data_path("chatgpt-scratch", appauthor=False)
