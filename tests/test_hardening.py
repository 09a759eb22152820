"""Issue 13: no user input and no environment fault ends in a traceback or loses work.

One regression test (at least) per numbered defect of the issue; each name says the guarantee.
Fault injection across every writing command is in test_fault_injection.py, the property test of
the checkpoint reader in test_checkpoint_reader_property.py.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatgpt_scratch.cli import main
from chatgpt_scratch.training.events import read_events

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--preset", "test-tiny", "--context", "16", "--batch-size", "2", "--device", "cpu", "--eval-batches", "2",
        "--seed", "3"]


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("It was a bright cold day in April, and the clocks were striking thirteen. " * 80)
    return path


# --- 2. Ctrl-C through a pipe --------------------------------------------------------------------


def test_ctrl_c_through_a_pipe_whose_reader_died_still_saves(tmp_path, corpus):
    """`pretrain ... 2>&1 | tee log`, Ctrl-C: tee dies first, so every write to stderr fails with
    BrokenPipeError. The checkpoint and the resumable state are saved all the same."""
    out = tmp_path / "ck" / "piped"
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatgpt_scratch", "pretrain", "--data", str(corpus), *TINY, "--max-steps", "100000",
         "--eval-every", "0", "--out", str(out)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    runs = Path(os.environ["CHATGPT_SCRATCH_RUNS"])
    deadline = time.time() + 120
    files = []
    while time.time() < deadline and proc.poll() is None:
        files = list(runs.glob("piped-*/events.jsonl"))
        if files and '"type": "step"' in files[0].read_text():
            break
        time.sleep(0.05)
    proc.stdout.close()  # tee is gone
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 0
    events = read_events(files[0].parent)
    assert events[-1]["type"] == "stopped", events[-1]
    assert not [e for e in events if e["type"] == "error"]
    assert out.with_suffix(".safetensors").is_file()
    assert (files[0].parent / "state.safetensors").is_file()


def _events(total: int):
    yield {"type": "start", "task": "pretrain", "total_steps": total, "step": 0, "params": 10, "device": "cpu",
           "run_dir": "r"}
    for step in range(1, total + 1):
        yield {"type": "step", "step": step, "train_loss": 5.0 - step / 10, "tokens_per_s": 100.0,
               "elapsed_s": float(step)}
        if step % 2 == 0:
            yield {"type": "eval", "step": step, "tokens_seen": step * 32, "elapsed_s": float(step),
                   "val_loss": 9.0 - step}


def test_piped_stderr_gets_a_plain_progress_line_now_and_then(capsys):
    from chatgpt_scratch.cli.train_common import ProgressBar

    bar = ProgressBar()
    assert not bar.live  # capsys: not a terminal
    bar.plain_every_s = 0.0
    for event in _events(4):
        bar(event)
    err = capsys.readouterr().err
    assert "step 1/4 (25%): loss 4.900, 100 tok/s" in err
    assert "step 3/4 (75%): loss 4.700, val 7.000, 100 tok/s" in err


def test_progress_output_errors_never_reach_the_trainer(monkeypatch):
    from chatgpt_scratch.cli.train_common import ProgressBar, say

    class Broken(io.StringIO):
        def write(self, s):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stderr", Broken())
    bar = ProgressBar()
    for event in _events(4):
        bar(event)  # no exception
    assert bar.dead
    say("stopping")  # no exception


def test_the_bars_final_val_is_the_latest_eval(capsys):
    from chatgpt_scratch.cli.train_common import ProgressBar

    bar = ProgressBar()
    bar.live = True  # draw the tqdm bar (into the captured stderr)
    events = list(_events(4))
    for event in events[:-1]:  # up to the last eval, not included
        bar(event)
    bar(events[-1])  # the final eval: val 5.0
    assert "val=5.000" in bar.bar.postfix


# --- 5. disk full during a save ------------------------------------------------------------------


def _disk_full_in(folder: Path, monkeypatch):
    """safetensors' writer raising what it raises on a full disk, for files under `folder` only."""
    import safetensors.torch

    from chatgpt_scratch import checkpoint_format

    real = safetensors.torch.save_file

    def save_file(tensors, filename, metadata=None):
        if Path(filename).parent == folder:
            Path(filename).write_bytes(b"partial")
            raise safetensors.SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                                              "message: \"No space left on device\" })")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint_format, "save_file", save_file)


def test_a_full_disk_during_a_save_is_one_error_line_and_the_state_is_still_saved(tmp_path, corpus, capsys,
                                                                                     monkeypatch):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "full.safetensors").write_bytes(b"the previous checkpoint")
    _disk_full_in(ck, monkeypatch)
    rc = main(["pretrain", "--data", str(corpus), *TINY, "--max-steps", "2", "--eval-every", "0",
               "--out", str(ck / "full")])
    err = capsys.readouterr().err
    assert rc == 1
    [line] = [x for x in err.splitlines() if x.startswith("error:")]
    assert f"no space left in {ck}" in line and "needs about" in line and "state.safetensors" in line
    assert "Traceback" not in err
    assert (ck / "full.safetensors").read_bytes() == b"the previous checkpoint"  # untouched
    assert not [p for p in ck.iterdir() if p.name.endswith(".tmp")]
    run_dir = next(Path(os.environ["CHATGPT_SCRATCH_RUNS"]).glob("full-*"))
    assert (run_dir / "state.safetensors").is_file()  # the runs folder had room: resumable
    assert read_events(run_dir)[-1]["type"] == "error"
