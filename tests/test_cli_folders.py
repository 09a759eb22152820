"""The folder flags of the top-level command override the environment, for this process and its children."""

from __future__ import annotations

import os

from chatgpt_scratch.cli import main
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.checkpoints import save_checkpoint
from chatgpt_scratch.model import GPTModel


def test_checkpoints_dir_flag_wins_over_the_environment(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    save_checkpoint(elsewhere / "flagged.safetensors", GPTModel(PRESETS["test-tiny"]))
    assert main(["checkpoints", "list"]) == 0  # the env folder (set by conftest) is empty
    assert "flagged" not in capsys.readouterr().out

    assert main(["--checkpoints-dir", str(elsewhere), "checkpoints", "list"]) == 0
    assert "flagged" in capsys.readouterr().out
    assert os.environ["CHATGPT_SCRATCH_CHECKPOINTS"] == str(elsewhere)  # inherited by child processes


def test_runs_and_datasets_flags_set_their_variables(tmp_path):
    assert main(["--runs-dir", str(tmp_path / "r"), "--datasets-dir", str(tmp_path / "d"), "checkpoints", "list"]) == 0
    assert os.environ["CHATGPT_SCRATCH_RUNS"] == str(tmp_path / "r")
    assert os.environ["CHATGPT_SCRATCH_DATASETS"] == str(tmp_path / "d")
