"""tui.jobs: tailing events.jsonl, run states, linking jobs to the run folders the CLI makes."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatgpt_scratch.cli import build_parser
from tui import jobs
from tui.screens.train import DEFAULTS, Monitor, TrainForm


def _write(path, *events, partial: str = ""):
    with open(path, "a") as f:
        for e in events:
            f.write(json.dumps(e) + "\n")
        f.write(partial)


def test_a_checkpoint_finds_the_run_that_wrote_it_not_an_older_one_to_the_same_path(tmp_path, monkeypatch):
    from tui.screens.checkpoints import find_run_events

    monkeypatch.setenv("CHATGPT_SCRATCH_RUNS", str(tmp_path / "runs"))
    ckpt = tmp_path / "base.safetensors"
    for name, step in [("base-20260101-000000", 13), ("base-20260102-000000", 1100)]:
        (tmp_path / "runs" / name).mkdir(parents=True)
        _write(tmp_path / "runs" / name / jobs.EVENTS_FILE, {"type": "checkpoint", "step": step, "path": str(ckpt)})
    assert find_run_events(ckpt, {"steps": 13}).parent.name == "base-20260101-000000"
    assert find_run_events(ckpt, {"steps": 1100}).parent.name == "base-20260102-000000"
    assert find_run_events(ckpt, {"steps": 500}) is None  # no curve rather than another run's
    assert find_run_events(ckpt, {}).parent.name == "base-20260102-000000"  # unknown: the newest


def test_event_tail_returns_only_complete_new_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = jobs.EventTail(path)
    assert tail.poll() == []  # no file yet
    _write(path, {"type": "start"}, {"type": "step", "step": 1}, partial='{"type": "st')
    assert [e["type"] for e in tail.poll()] == ["start", "step"]
    assert tail.poll() == []  # the half line waits
    _write(path, partial='ep", "step": 2}\nnot json\n')
    assert tail.poll() == [{"type": "step", "step": 2}]
    assert tail.bad_lines == 1


def test_smooth_is_a_bias_corrected_moving_average():
    assert jobs.smooth([4.0]) == [pytest.approx(4.0)]  # the first point is not pulled toward 0
    out = jobs.smooth([4.0, 2.0], alpha=0.5)
    assert out[1] == pytest.approx((0.25 * 4.0 + 0.5 * 2.0) / 0.75)


def test_run_states_from_events_and_processes(tmp_path):
    done = tmp_path / "a"
    done.mkdir()
    _write(done / "events.jsonl", {"type": "start", "total_steps": 10}, {"type": "step", "step": 10},
           {"type": "eval", "val_loss": 3.0}, {"type": "eval", "val_loss": 2.5}, {"type": "done"})
    s = jobs.summarize_run(done)
    assert (s.state, s.step, s.total_steps, s.best_val) == ("done", 10, 10, 2.5)

    # Started by the TUI, process gone, no final event: it was killed.
    dead = tmp_path / "b"
    dead.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    (dead / jobs.JOB_FILE).write_text(json.dumps({"pid": proc.pid, "command": ["pretrain"]}))
    _write(dead / "events.jsonl", {"type": "start"}, {"type": "step", "step": 3})
    assert jobs.summarize_run(dead).state == "interrupted"

    # Started from a shell (no job file): judged by how fresh the events file is.
    cli = tmp_path / "c"
    cli.mkdir()
    (cli / jobs.RUN_FILE).write_text(json.dumps({"command": "finetune-spam", "args": {}}))
    _write(cli / "events.jsonl", {"type": "start"}, {"type": "eval", "val_loss": 0.4, "val_acc": 0.9})
    s = jobs.summarize_run(cli)
    assert (s.state, s.task, s.best_val) == ("running", "finetune-spam", 0.9)
    assert jobs.summarize_run(cli, now=time.time() + jobs.STALE_AFTER_S + 1).state == "interrupted"


def test_a_job_is_linked_to_the_run_folder_its_cli_made(tmp_path):
    runs = tmp_path / "runs"
    proc = jobs.start_job(["--version"], "my-run", task="pretrain", runs_folder=runs)
    # Its own session: closing the app (a hang-up to the app's session) does not reach the job.
    assert os.getsid(proc.pid) == proc.pid != os.getsid(0)
    proc.wait()
    [pending] = jobs.list_runs(runs)
    assert (pending.name, pending.state) == ("my-run", "failed")  # exited without making a run folder
    assert "chatgpt-scratch" in jobs.tail_text(runs / ".tui-jobs" / "my-run.log")
    run_dir = runs / "my-run-20260101-000000"
    run_dir.mkdir()
    (run_dir / jobs.RUN_FILE).write_text(json.dumps({"command": "pretrain"}))
    [linked] = jobs.list_runs(runs)
    assert linked.path == run_dir and linked.task == "pretrain"
    assert jobs.read_job_file(run_dir)["pid"] == proc.pid


def test_train_form_builds_the_cli_command(tmp_path):
    form = TrainForm(task="finetune-spam", start=f"checkpoint:{tmp_path / 'base.safetensors'}", data="sms-spam",
                     values=dict(epochs="3", context="", max_steps="", batch_size="8", lr="5e-5", eval_every="50",
                                 sample_every="0", lora_rank="8", out="spam1"))
    assert form.validate() == {"start": f"checkpoint not found: {tmp_path / 'base.safetensors'}"}
    (tmp_path / "base.safetensors").write_bytes(b"x")
    assert form.validate() == {}
    args = form.args("spam1", tmp_path, model_context=1024)
    assert args == ["finetune-spam", "--init", str(tmp_path / "base.safetensors"), "--data", "sms-spam",
                    "--epochs", "3", "--max-length", "256", "--batch-size", "8", "--lr", "5e-5",
                    "--eval-every", "50", "--lora-rank", "8", "--device", "auto",
                    "--out", str(tmp_path / "spam1.safetensors")]
    form.values["lora_rank"] = "-1"
    form.task = "pretrain"
    assert form.validate()["lora_rank"] == "must be >= 0 (0 = off)"


def test_train_form_more_flags_go_last_and_are_checked_by_the_cli_parser(tmp_path):
    form = TrainForm(task="pretrain", start="preset:test-tiny", data="the-verdict",
                     values=dict(DEFAULTS["pretrain"], out="p1", extra="--warmup 10 --compile --lr 1e-3"))
    assert form.validate() == {}
    args = form.args("p1", tmp_path, model_context=64)
    assert args[-5:] == ["--warmup", "10", "--compile", "--lr", "1e-3"]  # after the form's --lr: it wins
    assert build_parser().parse_args(args).lr == 1e-3
    for extra, problem in [("--fast", "unrecognized arguments: --fast"),
                           ("--warmup ten", "argument --warmup: invalid int value: 'ten'"),
                           ("--sample-prompt 'Once upon", "No closing quotation"),
                           ("--help", "--help and --version print and exit; they do not start a run")]:
        form.values["extra"] = extra
        assert form.validate() == {"extra": problem}


def test_monitor_eta_and_best_metrics():
    m = Monitor()
    for e in [{"type": "start", "total_steps": 100, "step": 0},
              {"type": "step", "step": 20, "elapsed_s": 10.0, "train_loss": 5.0, "lr": 1e-4},
              {"type": "eval", "val_loss": 4.0, "val_acc": 0.7}, {"type": "eval", "val_loss": 4.5, "val_acc": 0.8}]:
        m.add(e)
    assert m.eta_s() == 40.0
    assert (m.best_val, m.best_acc) == (4.0, 0.8)
    assert "MFU" not in m.render().plain  # CPU runs have no mfu field
    m.add({"type": "start", "device": "cuda:0", "amp_dtype": "bfloat16"})
    assert "device cuda:0, bfloat16 autocast" in m.render().plain
    m.add({"type": "step", "step": 21, "mfu": 0.4237})  # CUDA runs: the Trainer's step events carry it
    assert "MFU    42.4%" in m.render().plain
    # Messages come from the runs (tracebacks, paths): shown as written, never taken as markup
    m.message = 'ValueError: bad [foo="bar [/b] C:\\runs\\'
    assert m.render().plain.endswith(m.message)


def test_train_form_builds_the_dpo_command_from_an_instruct_checkpoint_only(tmp_path):
    """Preference tuning: finetune-dpo with the CLI's own defaults, --init an instruct checkpoint, never a preset."""
    from chatgpt_scratch.training.config import trainer_defaults
    from tui.train_form import TASKS

    assert ("Preference tune (DPO)", "finetune-dpo") in TASKS
    d = trainer_defaults("finetune-dpo")
    assert DEFAULTS["finetune-dpo"]["data"] == "instruction-preference"
    assert (DEFAULTS["finetune-dpo"]["lr"], DEFAULTS["finetune-dpo"]["batch_size"]) == ("5e-6", str(d["batch_size"]))
    form = TrainForm(task="finetune-dpo", start="preset:cpu-mini", data="instruction-preference",
                     values=dict(DEFAULTS["finetune-dpo"], out="dpo1"))
    assert form.validate() == {"start": "preference tuning starts from an instruct checkpoint"}
    form.start = ""
    assert form.validate() == {"start": "no instruct checkpoint yet: make one with Instruction fine-tune first"}
    (tmp_path / "instruct.safetensors").write_bytes(b"x")
    form.start = f"checkpoint:{tmp_path / 'instruct.safetensors'}"
    assert form.validate() == {}
    args = form.args("dpo1", tmp_path, model_context=64)
    assert args[:5] == ["finetune-dpo", "--init", str(tmp_path / "instruct.safetensors"), "--data",
                        "instruction-preference"]
    assert "--max-length" in args and "--preset" not in args
    parsed = build_parser().parse_args(args)  # the CLI's own parser takes every flag the form writes
    assert (parsed.lr, parsed.batch_size, parsed.max_length, parsed.out) == (
        5e-6, d["batch_size"], 64, str(tmp_path / "dpo1.safetensors"))


def test_monitor_and_plot_show_the_dpo_metrics():
    """DPO loss, reward margin and reward accuracy (docs/events.md) reach the side panel and the plot."""
    from tui.widgets.loss_plot import LossPlot

    events = [{"type": "start", "task": "dpo", "total_steps": 40, "step": 0},
              {"type": "step", "step": 1, "train_loss": 0.6931, "reward_margin": 0.0, "reward_acc": 0.0},
              {"type": "step", "step": 2, "train_loss": 0.61, "reward_margin": 0.125, "reward_acc": 0.75},
              {"type": "eval", "step": 2, "val_loss": 0.65, "val_reward_margin": 0.0625, "val_reward_acc": 0.6,
               "train_eval_loss": 0.6, "train_reward_margin": 0.2, "train_reward_acc": 0.8}]
    m = Monitor()
    for e in events:
        m.add(e)
    text = m.render().plain
    assert "loss   0.6100" in text and "best val 0.6500" in text
    assert "reward margin +0.125 acc 75%" in text
    assert "val reward +0.062 acc 60%" in text
    plot = LossPlot()
    plot.add_events(events)
    assert plot.train == [(1.0, 0.6931), (2.0, 0.61)] and plot.val == [(2.0, 0.65)]
    assert plot.margin == [(2.0, 0.0625)] and plot.acc == [(2.0, 0.6)] and plot.acc_label == "val reward acc"


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_run_started_from_a_shell_is_stopped_through_its_start_pid(tmp_path):
    runs = Path(os.environ["CHATGPT_SCRATCH_RUNS"])
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("It was a bright cold day in April, and the clocks were striking thirteen. " * 60)
    log = tmp_path / "cli.log"
    # As a user would from a shell: backgrounded, not a child of this process, no TUI job file.
    cli = shlex.join([sys.executable, "-m", "chatgpt_scratch", "pretrain", "--preset", "test-tiny",
                      "--data", str(corpus), "--context", "16", "--batch-size", "2", "--max-steps", "100000",
                      "--eval-every", "0", "--device", "cpu", "--out", str(tmp_path / "shell-run")])
    shell_pid = int(subprocess.check_output(["sh", "-c", f"{cli} >{shlex.quote(str(log))} 2>&1 & echo $!"]))

    def running():
        found = [r for r in jobs.list_runs(runs) if r.name.startswith("shell-run-")]
        return found[0] if found and found[0].state == "running" and found[0].step else None

    summary = _wait(running, 120, "the shell run to take steps")
    assert not (summary.path / jobs.JOB_FILE).exists()
    assert summary.pid == shell_pid  # from its `start` event
    assert summary.pid_start is not None and "--out" in summary.pid_argv
    jobs.stop_job(summary.pid, summary.pid_start, summary.pid_argv)
    events = _wait(lambda: [e for e in jobs.read_events(summary.path / jobs.EVENTS_FILE)
                            if e["type"] in jobs.TERMINAL_EVENTS], 60, "a terminal event")
    assert [e["type"] for e in events] == ["stopped"] and events[0]["reason"] == "SIGINT", log.read_text()[-500:]
    _wait(lambda: not jobs.pid_alive(shell_pid), 30, "the CLI to exit")
    after = jobs.summarize_run(summary.path)
    assert (after.state, after.pid) == ("stopped", None)


def test_a_reused_pid_is_never_signalled(tmp_path):
    other = subprocess.Popen(["sleep", "30"])  # alive, but not chatgpt-scratch
    try:
        run = tmp_path / "old-run"
        run.mkdir()
        _write(run / "events.jsonl", {"type": "start", "pid": other.pid}, {"type": "step", "step": 2})
        s = jobs.summarize_run(run)
        assert (s.state, s.pid) == ("interrupted", None)  # its trainer is gone; the pid means something else now
        assert not jobs.is_training_process(other.pid)
        with pytest.raises(ProcessLookupError):
            jobs.stop_job(other.pid)
        assert other.poll() is None  # still running: no signal reached it
    finally:
        other.kill()
        other.wait()


def test_a_live_chatgpt_scratch_process_that_is_not_the_run_is_never_signalled(tmp_path):
    """Issue 13 #1: a substring of the command line is not an identity. A process whose arguments
    say chatgpt_scratch (the app, a chat session, another run) with this run's old pid is left alone."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "chatgpt_scratch", "chat"])
    try:
        _wait(lambda: b"chatgpt_scratch" in Path(f"/proc/{other.pid}/cmdline").read_bytes(), 10, "exec")
        run = tmp_path / "old-run"
        run.mkdir()
        # An old run's start event: the same pid, but another start time and other arguments.
        _write(run / "events.jsonl", {"type": "start", "pid": other.pid, "pid_start": 12345,
                                       "argv": ["python", "-m", "chatgpt_scratch", "pretrain", "--out", "old"]},
               {"type": "step", "step": 2})
        s = jobs.summarize_run(run)
        assert (s.state, s.pid) == ("interrupted", None)
        assert not jobs.is_training_process(other.pid)  # the old substring test said yes
        for start, argv in [(None, None), (12345, None), (None, ["chatgpt_scratch", "chat"]),
                            (jobs.procinfo.start_ticks(other.pid), ["pretrain", "--out", "old"])]:
            with pytest.raises(ProcessLookupError):
                jobs.stop_job(other.pid, start, argv)
        assert other.poll() is None  # still running: no signal reached it
        # Its own identity (start time + arguments) is what lets a stop through.
        assert jobs.is_training_process(other.pid, jobs.procinfo.start_ticks(other.pid),
                                        jobs.procinfo.cmdline(other.pid))
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("pid", [-1, 0, 1, True, "12", 1.5, 10**30, None])
def test_a_nonsense_pid_in_the_job_file_never_reaches_kill_or_waitpid(tmp_path, monkeypatch, pid):
    calls = []
    monkeypatch.setattr(os, "kill", lambda *a: calls.append(("kill", a)))
    monkeypatch.setattr(os, "waitpid", lambda *a: calls.append(("waitpid", a)) or (0, 0))
    run = tmp_path / "run"
    run.mkdir()
    (run / jobs.JOB_FILE).write_text(json.dumps({"pid": pid, "pid_start": 1, "argv": ["x"], "command": 5}))
    _write(run / "events.jsonl", {"type": "start", "pid": pid}, {"type": "step", "step": 1})
    s = jobs.summarize_run(run)
    assert s.pid is None and s.command == []
    assert not jobs.pid_alive(pid)
    with pytest.raises(ProcessLookupError):
        jobs.stop_job(pid)
    assert [c for c in calls if c[1] and c[1][0] in (-1, 0)] == []
    assert calls == [] or all(c[1][0] > 1 for c in calls)


def test_a_runs_default_name_has_no_date_of_its_own_and_follows_the_task(checkpoints_folder):
    """Issue 14 #8: the CLI dates the run folder, so a default name with a date gave two
    (pretrain-1204-212126-20261204-212156). TASK-N, the first free N; a new task gets its own."""
    import re

    (checkpoints_folder / "pretrain-1.safetensors").write_bytes(b"x")
    form = TrainForm(task="pretrain", start="preset:test-tiny", data="the-verdict",
                     values=dict(DEFAULTS["pretrain"], out=""))
    assert form.run_name() == "pretrain-2"
    form.task = "finetune-dpo"
    assert form.run_name() == "finetune-dpo-1"
    args = form.args(form.run_name(), checkpoints_folder)
    assert args[args.index("--out") + 1] == str(checkpoints_folder / "finetune-dpo-1.safetensors")
    assert not re.search(r"\d{4}-\d{6}", form.run_name())


def test_every_plotted_line_has_its_own_marker():
    """Issue 14 #5: 'train (smoothed)' and 'val' were both braille: the same in a monochrome terminal."""
    from tui.widgets.loss_plot import LossPlot

    plot = LossPlot()
    plot.add_events([{"type": "step", "step": i, "train_loss": 5.0 - i / 10} for i in range(1, 6)]
                    + [{"type": "eval", "step": 5, "val_loss": 4.6, "val_reward_margin": 0.1, "val_reward_acc": 0.6}])
    plot._draw()
    markers = [marker for _, marker, _ in plot.legend]
    assert [label for label, _, _ in plot.legend] == ["train", "train (smoothed)", "val", "val reward margin",
                                                     "val reward acc"]
    assert len(set(markers)) == len(markers)
