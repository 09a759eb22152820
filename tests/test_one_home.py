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


@pytest.mark.parametrize("command", ["generate", "chat", "xray"])
def test_sampling_flags_are_generated_from_the_one_declaration(command):
    from chatgpt_scratch.sampling import SAMPLING_PARAMS, SamplingConfig

    parser = _subparser(command)
    flags = {a.option_strings[0]: a for a in parser._actions if a.option_strings}
    offered = [p for p in SAMPLING_PARAMS if p.flag in flags]
    assert {p.name for p in offered} >= {"temperature", "top_k", "top_p", "repetition_penalty"}
    for p in offered:
        action = flags[p.flag]
        assert action.type is p.type and action.dest == p.name and p.help in action.help
        if not (command == "xray" and p.name == "temperature"):  # xray shows the model's own distribution
            assert action.default == getattr(SamplingConfig(), p.name)


def test_tui_sampling_fields_and_chat_commands_are_generated_from_the_one_declaration():
    from chatgpt_scratch.cli.chat import COMMANDS
    from chatgpt_scratch.sampling import PARAMS_BY_NAME, SAMPLING_PARAMS
    from tui.screens import chat, xray

    assert [name for name, _, _ in chat.SAMPLING_FIELDS] == [p.name for p in SAMPLING_PARAMS]
    assert all(label == PARAMS_BY_NAME[name].label for name, label, _ in chat.SAMPLING_FIELDS)
    assert all(label == PARAMS_BY_NAME[name].short_label for name, label, _ in xray.SAMPLING_FIELDS)
    assert {p.command for p in SAMPLING_PARAMS} <= set(COMMANDS)


def test_one_parse_for_typed_sampling_values_in_both_tui_screens():
    from chatgpt_scratch.sampling import parse_sampling_text
    from tui.screens import xray

    kwargs, errors = parse_sampling_text({"temperature": "0.5", "top_k": "", "top_p": "x", "seed": "1.5"})
    assert kwargs == {"temperature": 0.5, "top_k": None} and errors == {"top_p": "number", "seed": "whole number"}
    assert xray.parse_sampling({"temperature": "hot", "top_k": "2.5"})[1] == ["temp: a number",
                                                                             "top-k: a whole number or blank"]


def test_xray_front_ends_draw_with_the_library_view_module_only():
    """The X-ray screen no longer borrows drawing helpers from the CLI module: both use xray_view."""
    import ast
    from pathlib import Path

    from chatgpt_scratch.usecases import xray_view
    from chatgpt_scratch.cli import xray as cli_xray
    from tui.widgets import xray_views

    for name in ("bar", "fit", "percent", "shade", "column_numbers", "SHADE_LEGEND"):
        assert getattr(cli_xray, name) is getattr(xray_view, name)
        assert getattr(xray_views, name) is getattr(xray_view, name)
    root = Path(__file__).resolve().parent.parent
    for path in (root / "tui").rglob("*.py"):
        imported = {n.module for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom)}
        # The TUI may check a command line it builds with the CLI's parser (chatgpt_scratch.cli.argument_error),
        # but it takes no logic from the CLI's command modules.
        assert not any(m and m.startswith("chatgpt_scratch.cli.") for m in imported), path


def test_one_downloader_and_one_atomic_write():
    """GPT-2 weights and datasets download through fileio.download_file (resume, size and sha256 checks);
    the helpers that write files all end in fileio.write_atomically."""
    from chatgpt_scratch.storage import fileio
    from chatgpt_scratch.storage import gpt2_weights
    from chatgpt_scratch.data import corpus, registry

    assert gpt2_weights.download_file is fileio.download_file and registry.download_file is fileio.download_file
    assert registry.write_bytes_atomic is fileio.write_bytes_atomic and corpus.write_atomically is fileio.write_atomically


def test_tui_error_text_knows_subclasses_of_the_project_error():
    from chatgpt_scratch.errors import ScratchError
    from tui.app import error_text

    class DatasetError(ScratchError):
        pass

    assert error_text(DatasetError("pass --data PATH")) == "pass --data PATH"  # a class-name test missed this
    assert error_text(ValueError("bad")) == "ValueError: bad"


def test_quantize_int8_lives_in_inference_and_the_old_name_warns():
    import warnings

    from chatgpt_scratch import model

    from chatgpt_scratch.usecases import inference

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert model.quantize_int8 is inference.quantize_int8
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)


def test_checkpoint_format_has_one_home_and_no_import_circle():
    """checkpoint_format owns the header and the kind rules; gpt2_weights builds on it, not on checkpoints
    (so checkpoints can re-export import_gpt2/export_hf without a circle or a __getattr__ shim)."""
    import subprocess
    import sys

    from chatgpt_scratch import checkpoints

    from chatgpt_scratch.storage import checkpoint_format

    from chatgpt_scratch.usecases import inference

    for name in ("read_metadata", "require_kind", "encode_metadata", "atomic_save_tensors", "KINDS", "adapted_kind"):
        assert getattr(checkpoints, name) is getattr(checkpoint_format, name)
    assert inference.adapted_kind is checkpoint_format.adapted_kind
    assert "__getattr__" not in vars(checkpoints)
    code = ("import sys, chatgpt_scratch.storage.gpt2_weights; "
            "print('chatgpt_scratch.checkpoints' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_models_and_adapters_get_the_same_header_fields(tmp_path):
    import torch

    from chatgpt_scratch.checkpoints import read_metadata, save_checkpoint
    from chatgpt_scratch.config import PRESETS
    from chatgpt_scratch.lora import inject_lora, save_lora_adapter
    from chatgpt_scratch.model import GPTModel

    torch.manual_seed(0)
    model = GPTModel(PRESETS["test-tiny"])
    base = save_checkpoint(tmp_path / "base.safetensors", model)
    inject_lora(model, rank=1, alpha=1)
    adapter = save_lora_adapter(tmp_path / "a.lora.safetensors", model, base)
    common = {"format", "kind", "config", "tokenizer", "created"}
    assert common <= set(read_metadata(base)) and common <= set(read_metadata(adapter))
    assert read_metadata(adapter)["format"] == read_metadata(base)["format"]


async def _header_follows_state():
    from tui.app import ScratchApp

    app = ScratchApp(start="spam", detect_device=False)
    seen = []
    async with app.run_test(size=(100, 30)) as pilot:
        app.state_changed.subscribe(app, seen.append)
        app.set_model("chat", None, "my-model")
        await pilot.pause()
        header = app.sub_title
        assert not hasattr(app, "chat_checkpoint") and not hasattr(app, "chat_model_name")
    return header, seen


def test_tui_shared_state_is_one_reactive_object_the_header_follows():
    import asyncio

    header, seen = asyncio.run(_header_follows_state())
    assert header == "chat: my-model · spam: - · device: auto"
    assert seen and seen[-1].chat.name == "my-model"


def test_tui_has_no_callback_worker_helper_left():
    """Every worker is an @work method posting typed messages; the App's callback helper is gone."""
    import asyncio

    from tui.app import ScratchApp

    assert not hasattr(ScratchApp, "run_worker_thread")

    async def device_shown() -> str:
        app = ScratchApp(start="spam", detect_device=True)
        async with app.run_test(size=(100, 30)) as pilot:
            for _ in range(200):
                if app.state.device != "auto":
                    break
                await pilot.pause(0.05)
            return app.sub_title

    header = asyncio.run(device_shown())
    assert header.rsplit("device: ", 1)[1] in ("cpu", "cuda", "mps") or header.split("device: ")[1].startswith("cuda")


def test_events_files_are_read_in_one_module(tmp_path):
    """The TUI follows a run with the library's EventTail (training/events.py), which reads what
    read_events reads; tui/ parses no events file itself."""
    import json
    from pathlib import Path

    from chatgpt_scratch.training import events
    from tui import jobs

    assert jobs.EventTail is events.EventTail
    path = tmp_path / events.EVENTS_FILE
    records = [{"type": "start", "step": 0}, {"type": "step", "step": 1, "train_loss": 2.5}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"type": "st')  # a line being written
    tail = jobs.EventTail(path)
    assert tail.poll() == events.read_events(path) == records == jobs.read_events(path)
    with open(path, "a") as f:
        f.write('ep", "step": 2}\n')
    assert tail.poll() == [{"type": "step", "step": 2}]  # only what is new, the half line now complete
    assert "class EventTail" not in Path(jobs.__file__).read_text()  # no second copy in the TUI
