"""Rules written once in the library and read by both front ends (issue 12): the CLI's flags and the
TUI's fields must come from the same definition, so changing it changes both."""

from __future__ import annotations

import argparse

import pytest

from chatgpt_scratch.training.config import COMMAND_DEFAULTS, TrainConfig, trainer_defaults


def _subparser(command: str) -> argparse.ArgumentParser:
    from chatgpt_scratch.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


@pytest.mark.parametrize("command", sorted(COMMAND_DEFAULTS))
def test_training_flags_and_the_tui_form_take_their_defaults_from_training_config(command, monkeypatch):
    from tui.screens.train import DEFAULTS

    parser = _subparser(command)
    expected = trainer_defaults(command)
    for flag in ("epochs", "max_steps", "batch_size", "lr", "warmup", "min_lr", "weight_decay", "grad_clip",
                 "grad_accum", "eval_every", "eval_batches", "sample_every", "sample_prompt", "save_every", "seed",
                 "device", "dtype"):
        assert parser.get_default(flag) == expected[flag], flag
    assert float(DEFAULTS[command]["lr"]) == expected["lr"]
    assert int(DEFAULTS[command]["batch_size"]) == expected["batch_size"]


def test_a_changed_default_reaches_the_cli(monkeypatch):
    monkeypatch.setitem(COMMAND_DEFAULTS, "pretrain", {**COMMAND_DEFAULTS["pretrain"], "lr": 1.5e-3})
    assert _subparser("pretrain").get_default("lr") == 1.5e-3
    assert trainer_defaults()["weight_decay"] == TrainConfig().weight_decay


def test_run_folder_file_names_have_one_home():
    from chatgpt_scratch.cli import train_common
    from chatgpt_scratch.training import events
    from tui import jobs

    assert jobs.EVENTS_FILE is events.EVENTS_FILE and jobs.RUN_FILE is events.RUN_FILE
    assert train_common.RUN_FILE is events.RUN_FILE and jobs.TERMINAL_EVENTS is events.TERMINAL_EVENTS
