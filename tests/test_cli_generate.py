"""`chatgpt-scratch generate`: streams what the library generates, refuses classifiers in one line."""

from __future__ import annotations

import io

import pytest
import torch

from chatgpt_scratch.checkpoints import save_checkpoint
from chatgpt_scratch.cli import main
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.generation import SamplingConfig, generate_text
from chatgpt_scratch.usecases.inference import quantize_int8
from chatgpt_scratch.model import GPTModel, to_classifier


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny(tmp_path):
    torch.manual_seed(0)
    model = GPTModel(PRESETS["test-tiny"]).eval()
    path = save_checkpoint(tmp_path / "tiny.safetensors", model, kind="base")
    return model, str(path)


def test_generate_prints_the_greedy_continuation(tiny, capsys):
    model, path = tiny
    assert main(["generate", "--checkpoint", path, "--max-new-tokens", "12", "Every effort moves"]) == 0
    expected = generate_text(model, "Every effort moves", SamplingConfig(max_new_tokens=12))
    assert capsys.readouterr().out == expected + "\n"


def test_generate_sampling_flags_and_stop(tiny, capsys):
    model, path = tiny
    sampling = SamplingConfig(temperature=0.9, top_k=50, top_p=0.95, repetition_penalty=1.1,
                              max_new_tokens=30, seed=7)
    full = generate_text(model, "Hello", sampling)
    stop = full[10:13]
    args = ["generate", "--checkpoint", path, "--temperature", "0.9", "--top-k", "50", "--top-p", "0.95",
            "--repetition-penalty", "1.1", "--max-new-tokens", "30", "--seed", "7", "--device", "cpu"]
    assert main(args + ["Hello"]) == 0
    assert capsys.readouterr().out == full + "\n"
    assert main(args + ["--stop", "\x00unused", "--stop", stop, "Hello"]) == 0
    assert capsys.readouterr().out == full[: full.index(stop)] + "\n"


def test_generate_reads_the_prompt_from_stdin(tiny, capsys, monkeypatch):
    model, path = tiny
    monkeypatch.setattr("sys.stdin", io.StringIO("The cat sat"))
    assert main(["generate", "--checkpoint", path, "--max-new-tokens", "8", "-"]) == 0
    assert capsys.readouterr().out == generate_text(model, "The cat sat", SamplingConfig(max_new_tokens=8)) + "\n"


@pytest.mark.parametrize("flags, make", [
    (["--dtype", "bfloat16"], lambda m: m.to(torch.bfloat16)),
    (["--quantize", "int8"], quantize_int8),
])
def test_generate_fast_cpu_paths(tiny, capsys, flags, make):
    model, path = tiny
    assert main(["generate", "--checkpoint", path, "--max-new-tokens", "10", *flags, "Hi there"]) == 0
    expected = generate_text(make(model), "Hi there", SamplingConfig(max_new_tokens=10))
    assert capsys.readouterr().out == expected + "\n"


def test_generate_refuses_a_classifier_in_one_line(tmp_path, capsys):
    clf = to_classifier(GPTModel(PRESETS["test-tiny"]), 2)
    path = save_checkpoint(tmp_path / "spam.safetensors", clf, kind="classifier", labels=["ham", "spam"])
    assert main(["generate", "--checkpoint", str(path), "hello"]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {path} is a 'classifier' checkpoint, but this needs a 'base' or 'instruct' one\n"


def test_generate_bad_flag_value_is_one_line(tiny, capsys):
    _, path = tiny
    assert main(["generate", "--checkpoint", path, "--top-p", "1.5", "hello"]) == 1
    assert capsys.readouterr().err == "error: top_p must be in (0, 1] (or unset), got 1.5\n"


def test_generate_missing_checkpoint(tmp_path, capsys):
    assert main(["generate", "--checkpoint", str(tmp_path / "nope.safetensors"), "hello"]) == 1
    assert capsys.readouterr().err == f"error: checkpoint not found: {tmp_path / 'nope.safetensors'}\n"


def test_generate_help_names_the_flags(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = capsys.readouterr().out
    for flag in ("--checkpoint", "--temperature", "--top-k", "--top-p", "--repetition-penalty",
                 "--max-new-tokens", "--seed", "--stop", "--device", "--dtype", "--quantize"):
        assert flag in out


def test_generate_compile_prints_what_the_eager_model_makes_and_says_it_compiled(tiny, capsys):
    """--compile: the same greedy text (the model's own function, compiled), the compile announced on stderr."""
    model, path = tiny
    assert main(["generate", "--checkpoint", path, "--max-new-tokens", "20", "--compile", "Every effort moves"]) == 0
    captured = capsys.readouterr()
    assert captured.out == generate_text(model, "Every effort moves", SamplingConfig(max_new_tokens=20)) + "\n"
    assert captured.err.startswith("compiling the decode step for this CPU (cached for later runs) ... ")
    assert captured.err.rstrip().endswith(" s")  # the seconds it took, not "failed"


def test_generate_compile_refuses_float16_in_one_line(tiny, capsys):
    _, path = tiny
    assert main(["generate", "--checkpoint", path, "--compile", "--dtype", "float16", "Hi"]) != 0
    err = capsys.readouterr().err.strip()
    assert err == "error: --compile decodes with float32, bfloat16 or int8 weights; use --dtype bfloat16"
