"""Fixtures for the TUI tests: tiny real checkpoints in the per-test checkpoints folder."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from pathlib import Path

import pytest

from tui import settings as _settings

@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run `async def` tests (Pilot) on a fresh asyncio loop; no pytest-asyncio/anyio plugin needed."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        asyncio.run(pyfuncitem.obj(**args))
        return True
    return None


FIXED_CREATED = "2026-01-01T00:00:00+00:00"  # snapshots must not show today's date

_WELCOME_DUE = _settings.welcome_due


@pytest.fixture(autouse=True)
def _welcome_seen(monkeypatch):
    """Every test's app data folder is new, so every launch would be a first launch with the welcome
    panel over the screen: the tests see it only when they ask for it (`first_launch`)."""
    monkeypatch.setattr(_settings, "welcome_due", lambda: False)


@pytest.fixture(autouse=True)
def _fast_decode_off(monkeypatch):
    """Chat compiles its decode step in the background by default (another process, tens of seconds of CPU):
    every test that loads a chat model would start one. Off, unless a test asks for the default (`fast_decode`)."""
    monkeypatch.setitem(_settings.DEFAULTS, _settings.FAST_DECODE, False)


@pytest.fixture
def fast_decode(monkeypatch, tmp_path):
    """Fast decode as a user first gets it (on), with an empty inductor cache (this process's and the compile's):
    nothing is compiled yet."""
    monkeypatch.setitem(_settings.DEFAULTS, _settings.FAST_DECODE, True)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))


@pytest.fixture
def first_launch(monkeypatch):
    """The app as a new user first starts it: the welcome panel is due (until it is dismissed once)."""
    monkeypatch.setattr(_settings, "welcome_due", _WELCOME_DUE)


@pytest.fixture
def checkpoints_folder() -> Path:
    folder = Path(os.environ["CHATGPT_SCRATCH_CHECKPOINTS"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def tiny_base(checkpoints_folder) -> Path:
    import torch

    from chatgpt_scratch.checkpoints import save_checkpoint
    from chatgpt_scratch.config import PRESETS
    from chatgpt_scratch.model import GPTModel

    torch.manual_seed(0)
    return save_checkpoint(checkpoints_folder / "tiny-base.safetensors", GPTModel(PRESETS["test-tiny"]),
                           kind="base", created=FIXED_CREATED)


@pytest.fixture
def tiny_classifier(checkpoints_folder) -> Path:
    import torch

    from chatgpt_scratch.checkpoints import save_checkpoint
    from chatgpt_scratch.config import PRESETS
    from chatgpt_scratch.model import GPTModel

    torch.manual_seed(1)
    model = GPTModel(PRESETS["test-tiny"].with_(n_classes=2))
    return save_checkpoint(checkpoints_folder / "tiny-spam.safetensors", model, kind="classifier",
                           labels=["ham", "spam"], created=FIXED_CREATED, val_acc=0.875)


@pytest.fixture
def relative_data_dirs(tmp_path, monkeypatch):
    """Data folders named relative to a temp cwd, so screens show the same paths in every run."""
    monkeypatch.chdir(tmp_path)
    for key, name in [("CHECKPOINTS", "checkpoints"), ("DATASETS", "datasets"), ("RUNS", "runs"), ("HOME", "home")]:
        monkeypatch.setenv(f"CHATGPT_SCRATCH_{key}", name)
    return tmp_path


async def wait_until(pilot, condition, timeout: float = 60.0, what: str = "condition") -> None:
    """Let the app run until condition() holds (workers and subprocesses take real time)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.1)
    await asyncio.sleep(0)
