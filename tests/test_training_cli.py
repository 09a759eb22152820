"""`chatgpt-scratch pretrain` as a user runs it: events to stdout, provenance, plot, Ctrl-C then --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from chatgpt_scratch.checkpoints import load_checkpoint, read_metadata, read_safetensors_header
from chatgpt_scratch.cli import main
from chatgpt_scratch.storage.fileio import sha256_file
from chatgpt_scratch.training.events import read_events

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def text_file(tmp_path) -> Path:
    """Real English text that every checkout has (the README), as a .txt corpus."""
    path = tmp_path / "corpus" / "readme.txt"
    path.parent.mkdir()
    path.write_text(REPO.joinpath("README.md").read_text(encoding="utf-8"), encoding="utf-8")
    return path


TINY = ["--preset", "test-tiny", "--context", "16", "--batch-size", "2", "--device", "cpu", "--drop-rate", "0.1",
        "--eval-batches", "2", "--seed", "3"]


def step_losses(run_dir: Path) -> dict[int, float]:
    return {e["step"]: e["train_loss"] for e in read_events(run_dir) if e["type"] == "step"}


def test_pretrain_writes_checkpoint_provenance_plot_and_streams_events(tmp_path, text_file, capsys):
    verdict = text_file
    out = tmp_path / "ck" / "m"
    rc = main(["pretrain", "--data", str(verdict), *TINY, "--max-steps", "4", "--eval-every", "2",
               "--events", "-", "--out", str(out)])
    assert rc == 0
    streamed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    run_dir = Path(streamed[0]["run_dir"])
    assert streamed == read_events(run_dir)  # --events - mirrors the file exactly
    assert [e["type"] for e in streamed][-1] == "done"

    meta = read_metadata(out.with_suffix(".safetensors"))
    assert meta["kind"] == "base" and meta["steps"] == 4 and meta["tokens_seen"] == 4 * 2 * 16
    assert meta["datasets"] == [{"path": str(verdict), "sha256": sha256_file(verdict)}]
    assert meta["run_dir"] == str(run_dir) and meta["preset"] == "test-tiny" and "parent" not in meta
    assert meta["train_args"]["lr"] == 4e-4 and meta["train_args"]["max_steps"] == 4
    assert meta["val_loss"] == [e for e in streamed if e["type"] == "eval"][-1]["val_loss"]
    png = out.with_name("m.loss.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((run_dir / "run.json").read_text())["command"] == "pretrain"

    # --init continues from it and records the parent
    rc = main(["pretrain", "--data", str(verdict), "--init", str(out.with_suffix(".safetensors")), "--context", "16",
               "--batch-size", "2", "--device", "cpu", "--max-steps", "1", "--out", str(tmp_path / "ck" / "child")])
    assert rc == 0
    assert read_metadata(tmp_path / "ck" / "child.safetensors")["parent"] == str(out.with_suffix(".safetensors"))
    # --init keeps the checkpoint's shape: flags that would reshape it are refused; dropout may change
    capsys.readouterr()
    assert main(["pretrain", "--data", str(verdict), "--init", str(out.with_suffix(".safetensors")), "--untied",
                 "--vocab-multiple", "64", "--out", str(tmp_path / "ck" / "x")]) == 1
    assert capsys.readouterr().err == (f"error: --untied, --vocab-multiple shape a new model (--preset); --init "
                                       f"{out.with_suffix('.safetensors')} continues a checkpoint as it is: drop them\n")
    assert main(["pretrain", "--data", str(verdict), "--init", str(out.with_suffix(".safetensors")), "--context", "16",
                 "--batch-size", "2", "--device", "cpu", "--max-steps", "1", "--drop-rate", "0.25",
                 "--out", str(tmp_path / "ck" / "child2")]) == 0
    assert json.loads(read_metadata(tmp_path / "ck" / "child2.safetensors")["config"])["drop_rate"] == 0.25


@pytest.mark.parametrize("native_bf16, dtype, amp, hint", [
    (True, "auto", "float32", True), (False, "auto", "float32", False), (True, "bfloat16", "bfloat16", False)])
def test_cpu_dtype_auto_is_float32_with_a_hint_where_bf16_is_native(tmp_path, text_file, capsys, monkeypatch,
                                                                    native_bf16, dtype, amp, hint):
    import chatgpt_scratch.system.device

    monkeypatch.setattr(chatgpt_scratch.system.device, "cpu_has_native_bf16", lambda: native_bf16)
    assert main(["pretrain", "--data", str(text_file), *TINY, "--max-steps", "1", "--dtype", dtype,
                 "--events", "-", "--out", str(tmp_path / "m")]) == 0
    captured = capsys.readouterr()
    start = json.loads(captured.out.splitlines()[0])
    assert start["type"] == "start" and start["amp_dtype"] == amp
    assert ("hint: this CPU does bfloat16 in hardware; --dtype bfloat16" in captured.err) is hint


def test_pretrain_validates_on_a_held_out_file_of_your_own(tmp_path, text_file, capsys):
    held_out = tmp_path / "held-out.txt"
    held_out.write_text("A different text to validate on, short but long enough. " * 20, encoding="utf-8")
    out = tmp_path / "m"
    assert main(["pretrain", "--data", str(text_file), "--val-data", str(held_out), *TINY, "--max-steps", "2",
                 "--eval-every", "1", "--events", "-", "--out", str(out)]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    meta = read_metadata(out.with_suffix(".safetensors"))
    assert meta["val_datasets"] == [{"path": str(held_out), "sha256": sha256_file(held_out)}]
    assert meta["datasets"] == [{"path": str(text_file), "sha256": sha256_file(text_file)}]
    assert meta["val_windows"] == (meta["val_tokens"] - 1) // 16  # every window from the held-out text
    assert [e["step"] for e in events if e["type"] == "eval"] == [1, 2]
    # The same text on both sides says nothing about generalisation: refused before any work.
    assert main(["pretrain", "--data", str(text_file), "--val-data", str(text_file), *TINY,
                 "--out", str(tmp_path / "x")]) == 1
    assert capsys.readouterr().err == (f"error: --val-data {text_file} is also in --data: a validation set "
                                       "must be text the model does not train on\n")


def test_pretrain_with_a_padded_vocabulary(tmp_path, text_file):
    out = tmp_path / "padded"
    assert main(["pretrain", "--data", str(text_file), *TINY, "--max-steps", "2", "--vocab-multiple", "64",
                 "--out", str(out)]) == 0
    path = out.with_suffix(".safetensors")
    meta = read_metadata(path)
    assert json.loads(meta["config"])["vocab_multiple"] == 64
    assert read_safetensors_header(path).tensors["tok_emb.weight"]["shape"] == [50304, 32]
    model, _ = load_checkpoint(path)
    assert model(torch.tensor([[15496, 11]])).shape == (1, 2, 50257)  # the extra rows are never predicted


def test_ctrl_c_saves_and_resume_matches_an_uninterrupted_run(tmp_path, text_file):
    verdict = str(text_file)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatgpt_scratch", "pretrain", "--data", verdict, *TINY, "--max-steps", "100000",
         "--eval-every", "3", "--out", str(tmp_path / "ck" / "stopped")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = Path(os.environ["CHATGPT_SCRATCH_RUNS"])
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # wait until it has trained two steps
        files = list(runs.glob("stopped-*/events.jsonl"))
        if files and sum('"type": "step"' in line for line in files[0].read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    run_dir = files[0].parent
    events = read_events(run_dir)
    assert events[-1]["type"] == "stopped" and events[-1]["reason"] == "SIGINT"
    assert f"resume with: --resume {run_dir}" in stderr
    assert (run_dir / "state.safetensors").is_file()
    stopped_at = events[-1]["step"]
    total = stopped_at + 4

    rc = main(["pretrain", "--resume", str(run_dir), "--max-steps", str(total)])
    assert rc == 0
    assert read_events(run_dir)[-1]["type"] == "done"
    assert read_metadata(tmp_path / "ck" / "stopped.safetensors")["steps"] == total

    rc = main(["pretrain", "--data", verdict, *TINY, "--max-steps", str(total), "--eval-every", "3",
               "--out", str(tmp_path / "ck" / "straight")])
    assert rc == 0
    straight = step_losses(next(runs.glob("straight-*")))
    resumed = step_losses(run_dir)
    assert sorted(resumed) == list(range(1, total + 1))
    np.testing.assert_allclose([resumed[s] for s in sorted(resumed)], [straight[s] for s in sorted(straight)],
                               rtol=0, atol=1e-6)


def test_resume_errors_are_one_clear_line(tmp_path, capsys):
    (tmp_path / "not-a-run").mkdir()
    assert main(["pretrain", "--resume", str(tmp_path / "not-a-run")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --resume") and "no run.json there" in err and "\n" not in err


def test_pretrain_needs_data_and_a_start(tmp_path, capsys):
    assert main(["pretrain", "--preset", "test-tiny"]) == 1
    assert "pretrain needs --data PATH" in capsys.readouterr().err
    f = tmp_path / "t.txt"
    f.write_text("x " * 100)
    assert main(["pretrain", "--data", str(f)]) == 1
    assert "--preset NAME (fresh weights) or --init CHECKPOINT" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--max-steps", "--grad-accum", "--save-every", "--events", "--resume", "--compile",
                                  "--activation-checkpointing"])
def test_help_lists_the_trainer_flags(flag, capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    assert flag in capsys.readouterr().out


def test_pretrain_split_seed_holds_the_val_chunks_while_seed_changes(text_file):
    """--split-seed picks the held-out chunks (default --seed): a run that continues a model with a new --seed
    keeps validating on the same text, which it never trained on; --seed alone still moves them."""
    from chatgpt_scratch.cli import build_parser
    from chatgpt_scratch.cli.pretrain import _build_task

    def task(*flags):
        args = build_parser().parse_args(["pretrain", "--data", str(text_file), "--context", "16",
                                          "--val-fraction", "0.2", *flags])
        return _build_task(args, 16)

    base, moved, held = task("--seed", "3"), task("--seed", "4"), task("--seed", "4", "--split-seed", "3")
    assert list(held.val_starts) == list(base.val_starts) != list(moved.val_starts)
    assert set(held.val_starts).isdisjoint(held.train_starts) and held.seed == 4
    assert held.metadata()["split_seed"] == 3 and moved.metadata()["split_seed"] == 4
