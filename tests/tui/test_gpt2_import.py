"""Issue 14 #7: a failed GPT-2 download tells the app's user to use the dialog's path field, not a CLI flag."""

from __future__ import annotations

import pytest

from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.storage.fileio import download_file
from tui.widgets.gpt2_import import APP_FALLBACK, in_app_terms


def test_an_offline_import_error_names_the_dialogs_path_field(tmp_path):
    with pytest.raises(ScratchError) as failed:  # nothing listens on port 9: what an offline machine gets
        download_file("http://127.0.0.1:9/model.safetensors", tmp_path / "m.safetensors", progress=False,
                      what="GPT-2 weights", timeout=2)
    cli_line = str(failed.value)
    assert "--from FILE" in cli_line
    shown = in_app_terms(cli_line)
    assert "--from" not in shown and APP_FALLBACK in shown
