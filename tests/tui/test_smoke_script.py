"""scripts/tui_smoke.sh in a real terminal (tmux): every screen shows its expected text, the app exits cleanly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "tui_smoke.sh"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_smoke_script_visits_every_screen(tmp_path):
    env = {**os.environ, "COLS": "80", "ROWS": "24", "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "OK: every screen showed its expected text" in done.stdout
    spam = (tmp_path / "spam.txt").read_text()
    assert "HAM " in spam or "SPAM " in spam
    assert "cannot be undone" in (tmp_path / "checkpoints-delete.txt").read_text()
