"""The curves of runs, read once for every front end (training/plots.py): `chatgpt-scratch plot` draws
one metric of several runs; the TUI's Train monitor overlays the same series (tests/tui/test_train_ckpt_plot.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from chatgpt_scratch.cli import main
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.training.plots import RunCurves, compare_runs, smooth


def write_run(folder: Path, task: str, losses: list[float], lr0: float = 1e-3, name: str | None = None) -> Path:
    run = folder / (name or f"{task}-run")
    run.mkdir(parents=True)
    events = [{"type": "start", "task": task, "total_steps": len(losses), "step": 0}]
    for step, loss in enumerate(losses, 1):
        events.append({"type": "step", "step": step, "tokens_seen": 64 * step, "train_loss": loss,
                       "lr": lr0 * step / len(losses), "epoch": step / len(losses)})
        if step % 2 == 0:
            val = {"val_loss": loss + 0.5}
            if task != "spam":
                val["val_ppl"] = math.exp(loss + 0.5)
            else:
                val["val_acc"] = 0.5
            events.append({"type": "eval", "step": step, "tokens_seen": 64 * step, **val})
    events.append({"type": "done", "step": len(losses)})
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return run


def test_a_resumed_run_replaces_the_steps_it_repeats_in_place():
    curves = RunCurves()
    steps = [1, 2, 3, 2, 3, 4]  # crashed after 3, resumed from the save at 1
    curves.add_all({"type": "step", "step": s, "train_loss": 10.0 - s - (i >= 3)} for i, s in enumerate(steps))
    assert curves.series("train_loss") == [(1.0, 9.0), (2.0, 7.0), (3.0, 6.0), (4.0, 5.0)]


def test_compare_runs_gives_each_runs_metric_and_refuses_runs_of_two_tasks(tmp_path):
    a = write_run(tmp_path, "pretrain", [5.0, 4.0, 3.5, 3.0], name="a")
    b = write_run(tmp_path, "pretrain", [5.0, 4.5, 4.0, 3.8], lr0=5e-4, name="b")
    spam = write_run(tmp_path, "spam", [0.7, 0.5, 0.4, 0.3], name="s")
    ppl = compare_runs([a, b / "events.jsonl"], "val_ppl")
    assert [s.name for s in ppl] == ["a", "b"] and {s.task for s in ppl} == {"pretrain"}
    assert ppl[0].points == [(2.0, pytest.approx(math.exp(4.5))), (4.0, pytest.approx(math.exp(3.5)))]
    lr = compare_runs([a, b], "lr", x_axis="tokens_seen")
    assert lr[1].points[-1] == (256.0, 5e-4)
    loss = compare_runs([a], "loss")  # the train loss, smoothed as the TUI shows it
    assert [y for _, y in loss[0].points] == pytest.approx(smooth([5.0, 4.0, 3.5, 3.0]))
    with pytest.raises(ScratchError, match=r"runs of different tasks do not compare \(a is pretrain, s is spam\)"):
        compare_runs([a, spam], "loss")
    with pytest.raises(ScratchError, match="no val_ppl in s .only language-model runs record a perplexity"):
        compare_runs([spam], "val_ppl")
    with pytest.raises(ScratchError, match="unknown metric 'acc'"):
        compare_runs([a], "acc")


def test_plot_command_draws_two_runs_and_says_what_is_wrong_in_one_line(tmp_path, capsys, monkeypatch):
    from PIL import Image

    runs = tmp_path / "runs"
    monkeypatch.setenv("CHATGPT_SCRATCH_RUNS", str(runs))
    write_run(runs, "pretrain", [5.0, 4.0, 3.5, 3.0], name="a")
    write_run(runs, "pretrain", [5.0, 4.5, 4.0, 3.8], name="b")
    write_run(runs, "spam", [0.7, 0.5, 0.4, 0.3], name="s")
    out = tmp_path / "cmp.png"
    assert main(["plot", "a", str(runs / "b"), "--metric", "val_ppl", "--out", str(out)]) == 0  # a: by its name
    assert Image.open(out).size == (700, 420) and f"wrote {out}" in capsys.readouterr().out
    assert main(["plot", "a", "s", "--out", str(tmp_path / "no.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: runs of different tasks do not compare") and len(err.splitlines()) == 1
    assert not (tmp_path / "no.png").exists()
    assert main(["plot", "missing", "--out", str(tmp_path / "no.png")]) == 1
    assert "error: no run at missing" in capsys.readouterr().err
