"""Shared fixtures. Real data comes from ../shared/datasets (or --datasets / $CHATGPT_SCRATCH_SHARED_DATASETS);
tests that need it are skipped where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
    parser.addoption(
        "--datasets",
        default=os.environ.get("CHATGPT_SCRATCH_SHARED_DATASETS", str(REPO.parent / "shared" / "datasets")),
        help="folder with the shared real datasets (default: ../shared/datasets)",
    )


@pytest.fixture(scope="session")
def datasets_dir(request) -> Path:
    path = Path(request.config.getoption("--datasets"))
    if not path.is_dir():
        pytest.skip(f"shared datasets not found at {path}")
    return path


@pytest.fixture(scope="session")
def dataset(datasets_dir):
    """dataset("SMSSpamCollection") -> its path, skipping the test if that file is missing."""

    def get(name: str) -> Path:
        path = datasets_dir / name
        if not path.exists():
            pytest.skip(f"{name} not found in {datasets_dir}")
        return path

    return get


@pytest.fixture(autouse=True)
def _isolated_app_dirs(tmp_path, monkeypatch):
    """Every test gets its own checkpoints/datasets/runs/app-data folders."""
    monkeypatch.setenv("CHATGPT_SCRATCH_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("CHATGPT_SCRATCH_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setenv("CHATGPT_SCRATCH_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CHATGPT_SCRATCH_HOME", str(tmp_path / "home"))
    # The shipped models and datasets stay out of the way unless a test asks for them (`bundled` below).
    monkeypatch.setenv("CHATGPT_SCRATCH_BUNDLED", "off")


@pytest.fixture
def bundled(monkeypatch):
    """The real shipped models and datasets of this checkout (builtin.py), as a fresh install sees them."""
    monkeypatch.delenv("CHATGPT_SCRATCH_BUNDLED", raising=False)
    from chatgpt_scratch.storage.builtin import bundled_root

    return bundled_root()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run many small steps: one thread avoids cross-thread sync on a busy 2-core box.
    Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
