"""Built-in models and datasets (builtin.py): found from any folder, protected, and picked as defaults
when the user has none of their own. These use a temporary bundled folder with tiny models; the real
shipped files are checked in test_shipped_models.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from chatgpt_scratch.storage import builtin
from chatgpt_scratch.checkpoints import (
    default_checkpoint, delete_checkpoint, duplicate_checkpoint, list_checkpoints, pick_default, rename_checkpoint,
    save_checkpoint,
)
from chatgpt_scratch.cli import main
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.data.registry import resolve_dataset
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.model import GPTModel, to_classifier


@pytest.fixture
def bundle(tmp_path, monkeypatch) -> Path:
    """A bundled root like the repository's: checkpoints/default-*.safetensors and datasets/."""
    root = tmp_path / "bundle"
    torch.manual_seed(0)
    save_checkpoint(root / "checkpoints" / "default-base.safetensors", GPTModel(PRESETS["test-tiny"]), val_loss=4.0)
    save_checkpoint(root / "checkpoints" / "default-instruct.safetensors", GPTModel(PRESETS["test-tiny"]),
                    kind="instruct", template="alpaca", val_loss=2.0)
    save_checkpoint(root / "checkpoints" / "default-spam.safetensors", to_classifier(GPTModel(PRESETS["test-tiny"]), 2),
                    kind="classifier", labels=["ham", "spam"], val_acc=0.95)
    (root / "datasets").mkdir()
    (root / "datasets" / "the-verdict.txt").write_text("I HAD always thought Jack Gisburn rather a cheap genius.")
    (root / "datasets" / "pretrain").mkdir()
    (root / "datasets" / "pretrain" / "a.txt").write_text("Once upon a time.")
    monkeypatch.setenv("CHATGPT_SCRATCH_BUNDLED", str(root))
    return root


def user_dir() -> Path:
    return Path(os.environ["CHATGPT_SCRATCH_CHECKPOINTS"])


def test_listing_shows_builtins_after_the_users_own(bundle):
    save_checkpoint(user_dir() / "mine.safetensors", GPTModel(PRESETS["test-tiny"]))
    infos = list_checkpoints()
    assert [(i.name, i.builtin) for i in infos] == [
        ("mine", False), ("default-base", True), ("default-instruct", True), ("default-spam", True)]
    # Listing a folder by name lists that folder only.
    assert [i.name for i in list_checkpoints(user_dir())] == ["mine"]


def test_the_same_folder_is_listed_once(bundle, monkeypatch):
    monkeypatch.setenv("CHATGPT_SCRATCH_CHECKPOINTS", str(bundle / "checkpoints"))  # running from the repo root
    infos = list_checkpoints()
    assert sorted(i.name for i in infos) == ["default-base", "default-instruct", "default-spam"]
    assert all(i.builtin for i in infos)


def test_builtins_cannot_be_renamed_deleted_or_overwritten(bundle):
    path = bundle / "checkpoints" / "default-instruct.safetensors"
    before = path.read_bytes()
    with pytest.raises(ScratchError, match="built-in model shipped with the app; duplicate it"):
        rename_checkpoint(path, "other")
    with pytest.raises(ScratchError, match="cannot delete default-instruct.safetensors: it is a built-in"):
        delete_checkpoint(path)
    with pytest.raises(ScratchError, match="cannot overwrite default-instruct.safetensors"):
        save_checkpoint(path, GPTModel(PRESETS["test-tiny"]), kind="instruct")
    assert path.read_bytes() == before
    assert not list((bundle / "checkpoints").glob("other*"))
    # Duplicating is allowed, and the copy is the user's own, in their folder.
    copy = duplicate_checkpoint(path)
    assert copy == user_dir() / "default-instruct-copy.safetensors"
    assert copy.read_bytes() == before
    rename_checkpoint(copy, "mine")  # the copy is not protected
    assert (user_dir() / "mine.safetensors").is_file()


def test_a_users_file_with_a_builtin_name_elsewhere_is_not_protected(bundle):
    mine = user_dir() / "default-base.safetensors"
    save_checkpoint(mine, GPTModel(PRESETS["test-tiny"]))
    assert not builtin.is_builtin(mine)
    delete_checkpoint(mine)
    assert not mine.exists()


def test_training_refuses_a_builtin_out_before_any_work(bundle, capsys):
    out = bundle / "checkpoints" / "default-base"
    before = (bundle / "checkpoints" / "default-base.safetensors").read_bytes()
    rc = main(["pretrain", "--data", "the-verdict", "--preset", "test-tiny", "--context", "16", "--max-steps", "1",
               "--out", str(out)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "cannot overwrite default-base.safetensors: it is a built-in model" in err
    assert (bundle / "checkpoints" / "default-base.safetensors").read_bytes() == before
    assert not Path(os.environ["CHATGPT_SCRATCH_RUNS"]).exists()  # refused before a run folder was made


def test_default_pick_prefers_the_users_better_model(bundle):
    assert default_checkpoint(("instruct", "base")).name == "default-instruct"
    assert default_checkpoint(("classifier",)).name == "default-spam"
    assert default_checkpoint(("base", "instruct")).name == "default-base"
    worse = user_dir() / "mine-worse.safetensors"
    save_checkpoint(worse, GPTModel(PRESETS["test-tiny"]), kind="instruct", template="alpaca", val_loss=2.5)
    assert default_checkpoint(("instruct", "base")).name == "default-instruct"
    save_checkpoint(user_dir() / "mine-better.safetensors", GPTModel(PRESETS["test-tiny"]), kind="instruct",
                    template="alpaca", val_loss=1.5)
    assert default_checkpoint(("instruct", "base")).name == "mine-better"
    # An instruct model is preferred to a base one for chat, whatever their losses.
    infos = list_checkpoints()
    assert pick_default([i for i in infos if i.kind == "base"], ("instruct", "base")).kind == "base"


def test_commands_without_checkpoint_use_the_default_and_say_which(bundle, capsys):
    assert main(["classify", "WINNER! claim your prize", "--json"]) == 0
    captured = capsys.readouterr()
    assert "default-spam.safetensors (built-in default classifier model; --checkpoint PATH picks another)" in captured.err
    assert json.loads(captured.out)["label"] in ("ham", "spam")
    assert main(["generate", "Once upon", "--max-new-tokens", "3"]) == 0
    assert "default-base.safetensors (built-in default base model" in capsys.readouterr().err


def test_no_model_at_all_is_one_clear_error(monkeypatch, capsys):
    rc = main(["classify", "hello"])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: classify: no classifier model found in the checkpoints folder and no built-in one; "
                   "pass --checkpoint PATH (`chatgpt-scratch checkpoints list` shows yours)"]


def test_dataset_names_resolve_to_the_shipped_files_offline(bundle, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("must not download")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    assert resolve_dataset("the-verdict") == bundle / "datasets" / "the-verdict.txt"
    assert resolve_dataset("pretrain-compact") == bundle / "datasets" / "pretrain"
    # The user's own copy wins.
    mine = Path(os.environ["CHATGPT_SCRATCH_DATASETS"]) / "the-verdict.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("mine")
    assert resolve_dataset("the-verdict") == mine


def test_a_shipped_only_dataset_missing_says_what_to_do(monkeypatch):
    with pytest.raises(ScratchError, match="ships with the app but is not in .*pass --data PATH"):
        resolve_dataset("pretrain-compact")


def test_card_metrics_format_what_the_header_holds():
    meta = {"val_loss": 1.23456, "test_rouge_l": 0.51234, "test_empty_answers": 0, "test_acc": 0.99302, "x": 1}
    assert builtin.card_metrics(meta) == {"val loss": "1.2346", "test ROUGE-L F1": "0.512",
                                          "empty test answers": "0", "test accuracy": "99.30%"}
