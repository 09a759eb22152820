"""scripts/build_default_models.py: its recipe is commands the CLI accepts, the soup averages the two runs of the
last stage, and a partial install never pairs the spam adapters with a base they were not trained on."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from chatgpt_scratch.cli import argument_error

REPO = Path(__file__).resolve().parents[1]


def _build_script():
    spec = importlib.util.spec_from_file_location("build_default_models", REPO / "scripts" / "build_default_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_training_stage_is_a_command_the_cli_accepts(tmp_path):
    build = _build_script()
    commands = build.recipe(tmp_path, "cpu", "alpaca", 1.0, build.MORE_TEXT)
    assert set(build.STAGES) - set(commands) == {"install", "ablations", "cards"}
    assert {stage: argument_error(argv) for stage, argv in commands.items() if argument_error(argv)} == {}
    # The shipped instruct model is the average of the two seeds of the last stage.
    soup = commands["instruct-soup"]
    assert soup[:2] == ["checkpoints", "average"]
    assert soup[2:4] == [str(tmp_path / "instruct-mix2.best.safetensors"), str(tmp_path / "instruct-mix2b.best.safetensors")]
    seeds = {s: commands[s][commands[s].index("--seed") + 1] for s in ("instruct-mix2", "instruct-mix2b")}
    assert len(set(seeds.values())) == 2
    # ... and otherwise the same command: only the seed and the output differ.
    differ = [(a, b) for a, b in zip(commands["instruct-mix2"], commands["instruct-mix2b"]) if a != b]
    assert differ == [(seeds["instruct-mix2"], seeds["instruct-mix2b"]),
                      (str(tmp_path / "instruct-mix2"), str(tmp_path / "instruct-mix2b"))]


@pytest.mark.parametrize("which", [["base"], ["spam"], ["base", "instruct"]])
def test_install_refuses_a_base_without_its_spam_adapters_and_writes_nothing(tmp_path, which):
    build = _build_script()
    shipped = sorted((REPO / "checkpoints").glob("default-*.safetensors"))
    before = [(p.stat().st_size, p.stat().st_mtime_ns) for p in shipped]
    with pytest.raises(SystemExit) as stopped:
        build.install(tmp_path, {}, which)
    assert "install both or neither" in str(stopped.value)
    assert [(p.stat().st_size, p.stat().st_mtime_ns) for p in shipped] == before
