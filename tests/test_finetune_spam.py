"""End to end through the CLI: finetune-spam on a slice of the real data, then classify with the result."""

from __future__ import annotations

import json
import re

import pytest

from chatgpt_scratch.checkpoints import read_metadata, save_checkpoint
from chatgpt_scratch.cli import main
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.model import GPTModel
from chatgpt_scratch.training.events import read_events


def test_finetune_then_classify(dataset, tmp_path, capsys):
    data = dataset("SMSSpamCollection")
    out = tmp_path / "ck" / "spam"
    # Overfit a 60-message stratified slice: the training loss must fall clearly.
    code = main(["finetune-spam", "--data", str(data), "--preset", "test-tiny", "--limit", "60",
                 "--train-layers", "all", "--lr", "3e-3", "--max-steps", "20", "--eval-every", "10",
                 "--batch-size", "8", "--device", "cpu", "--out", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    assert "accuracy" in captured.out and "confusion (rows: true, columns: predicted)" in captured.out

    best = tmp_path / "ck" / "spam.best.safetensors"
    meta = read_metadata(best)
    assert meta["kind"] == "classifier"
    assert meta["labels"] == ["ham", "spam"]
    assert meta["pool"] == "last-token" and meta["max_length"] == PRESETS["test-tiny"].context_length
    assert meta["split_sizes"] == {"train": 42, "val": 6, "test": 12}
    assert sum(map(sum, meta["test_metrics"]["confusion"])) == 12
    assert meta["test_acc"] == meta["test_metrics"]["accuracy"]
    assert "val_acc" in meta and meta["dataset_sha256"]

    run_dir = next((tmp_path / "runs").iterdir())
    events = read_events(run_dir / "events.jsonl")
    losses = [e["train_loss"] for e in events if e["type"] == "step"]
    assert len(losses) == 20
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    evals = [e for e in events if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [10, 20] and all(0 <= e["val_acc"] <= 1 for e in evals)
    assert max(e["val_acc"] for e in evals) == meta["val_acc"]  # the best checkpoint is the best eval

    assert main(["classify", "--checkpoint", str(best), "Free entry! Text WIN to 80082 to claim"]) == 0
    assert re.fullmatch(r"(ham|spam) \d+\.\d%\n", capsys.readouterr().out)

    messages = tmp_path / "messages.txt"
    messages.write_text("see you at 5\n\nURGENT! You have won a 1 week FREE membership\n", encoding="utf-8")
    assert main(["classify", "--checkpoint", str(best), str(messages), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == ["see you at 5", "URGENT! You have won a 1 week FREE membership"]
    for r in rows:
        assert r["probability"] == max(r["probs"].values()) and r["label"] in ("ham", "spam")

    assert main(["classify", "--checkpoint", str(best), str(messages)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["LABEL", "PROB", "MESSAGE"] and len(table) == 3


def test_lora_from_a_base_checkpoint(dataset, tmp_path, capsys):
    base = save_checkpoint(tmp_path / "base.safetensors", GPTModel(PRESETS["test-tiny"]), kind="base")
    out = tmp_path / "lora"
    code = main(["finetune-spam", "--data", str(dataset("SMSSpamCollection")), "--init", str(base),
                 "--limit", "40", "--lora-rank", "2", "--balance", "weight", "--pool", "mean",
                 "--max-steps", "3", "--device", "cpu", "--out", str(out)])
    assert code == 0
    meta = read_metadata(tmp_path / "lora.best.safetensors")
    assert (meta["kind"], meta["lora_merged"], meta["lora_rank"], meta["pool"]) == ("classifier", True, 2, "mean")
    assert meta["parent"] == str(base) and meta["balance"] == "weight"
    # The adapter alone is saved beside the merged model, and classifies exactly as it does.
    adapter = tmp_path / "lora.best.lora.safetensors"
    assert meta["lora_adapter"] == str(adapter.resolve())
    adapter_meta = read_metadata(adapter)
    assert (adapter_meta["kind"], adapter_meta["model_kind"], adapter_meta["pool"]) == ("lora-adapter", "classifier", "mean")
    assert adapter.stat().st_size < (tmp_path / "lora.best.safetensors").stat().st_size / 2
    capsys.readouterr()
    text = "WINNER!! Claim your free prize now"
    outputs = []
    for path in (tmp_path / "lora.best.safetensors", adapter):
        assert main(["classify", "--checkpoint", str(path), "--json", text]) == 0
        outputs.append(json.loads(capsys.readouterr().out)["probs"])
    assert outputs[0] == pytest.approx(outputs[1], abs=1e-6)


def test_wrong_kinds_give_one_line_errors(tmp_path, capsys):
    base = save_checkpoint(tmp_path / "base.safetensors", GPTModel(PRESETS["test-tiny"]), kind="base")
    assert main(["classify", "--checkpoint", str(base), "hello"]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {base} is a 'base' checkpoint, but this needs a 'classifier' one\n"

    assert main(["finetune-spam", "--data", str(tmp_path / "missing.txt"), "--preset", "test-tiny"]) == 1
    assert "no such file or folder, and not a known dataset name" in capsys.readouterr().err

    data = tmp_path / "sms.txt"
    data.write_text("ham\thi\nspam\twin\n" * 10, encoding="utf-8")
    assert main(["finetune-spam", "--data", str(data), "--preset", "test-tiny", "--train-layers", "last-9"]) == 1
    assert capsys.readouterr().err == "error: --train-layers last-9: the model has 2 blocks; use last-1 .. last-2\n"


@pytest.mark.parametrize("flags, message", [
    (["--lora-rank", "0"], "--lora-rank must be at least 1"),
    (["--max-length", "999"], "--max-length 999 is longer than the model's context (64)"),
])
def test_bad_flags(tmp_path, capsys, flags, message):
    data = tmp_path / "sms.txt"
    data.write_text("ham\thi\nspam\twin\n" * 10, encoding="utf-8")
    assert main(["finetune-spam", "--data", str(data), "--preset", "test-tiny", *flags]) == 1
    assert message in capsys.readouterr().err


def test_stop_and_resume_needs_only_the_run_folder(tmp_path, capsys):
    data = tmp_path / "sms.txt"
    data.write_text("".join(f"ham\tsee you at {i}\nspam\tWIN cash now {i}\n" for i in range(20)), encoding="utf-8")
    out = tmp_path / "clf"
    assert main(["finetune-spam", "--data", str(data), "--preset", "test-tiny", "--max-steps", "2",
                 "--device", "cpu", "--out", str(out)]) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    assert main(["finetune-spam", "--resume", str(run_dir), "--max-steps", "4"]) == 0
    steps = [e["step"] for e in read_events(run_dir / "events.jsonl") if e["type"] == "step"]
    assert steps == [1, 2, 3, 4]
    assert read_metadata(tmp_path / "clf.best.safetensors")["test_metrics"]["n"] == 8


def test_split_seed_holds_the_split_while_the_training_seed_changes(tmp_path, capsys):
    """--split-seed fixes which messages are val and test; --seed alone moves them (the old behaviour)."""
    from chatgpt_scratch.data.spam import load_messages, stratified_split

    data = tmp_path / "sms.txt"
    data.write_text("".join(f"ham\tsee you at {i}\nspam\tWIN cash now {i}\n" for i in range(20)), encoding="utf-8")
    firsts = {}
    for name, flags in {"a": ["--seed", "7", "--split-seed", "123"], "b": ["--seed", "8", "--split-seed", "123"],
                        "c": ["--seed", "8"]}.items():
        assert main(["finetune-spam", "--data", str(data), "--preset", "test-tiny", "--max-steps", "1",
                     "--device", "cpu", "--out", str(tmp_path / name), *flags]) == 0
        firsts[name] = read_metadata(tmp_path / f"{name}.best.safetensors")["split_seed"]
    assert firsts == {"a": 123, "b": 123, "c": 8}
    messages = load_messages(data)
    assert [m.text for m in stratified_split(messages, seed=123).test] != \
        [m.text for m in stratified_split(messages, seed=8).test]  # the two seeds really give other splits
