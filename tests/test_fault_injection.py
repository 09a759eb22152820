"""Fault injection (issue 13): every command that writes, against a read-only output folder, a full
disk and a corrupt input. Each must end in exactly one `error:` line, a non-zero exit, no traceback,
and every file that existed before byte-identical afterwards.

Read-only and full folders are simulated in-process (tests may run as root, for whom chmod changes
nothing, and a real small filesystem needs root to mount): every way the code opens a file for
writing, creates, renames or deletes one under the folder fails with the errno the kernel gives
(EROFS, ENOSPC), and so does safetensors' own (Rust) writer through checkpoint_format.save_file.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from chatgpt_scratch.checkpoints import save_checkpoint
from chatgpt_scratch.cli import main
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.model import GPTModel

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = ["--batch-size", "2", "--device", "cpu", "--max-steps", "1", "--eval-batches", "1", "--eval-every", "0"]


def _under(path, folder: Path) -> bool:
    try:
        return Path(os.fsdecode(path)).resolve().is_relative_to(folder)
    except (TypeError, ValueError, OSError):
        return False


@contextmanager
def failing_writes(folder: Path, code: int, monkeypatch):
    """Writes under `folder` fail with `code` (EROFS: read-only; ENOSPC: full); reads still work."""
    import safetensors

    from chatgpt_scratch.storage import checkpoint_format

    folder = folder.resolve()
    error = lambda path: OSError(code, os.strerror(code), os.fsdecode(path))  # noqa: E731
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
    real_replace, real_rename, real_unlink, real_save = os.replace, os.rename, os.unlink, checkpoint_format.save_file

    def open_(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(m in mode for m in "wax+") and _under(file, folder):
            raise error(file)
        return real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and _under(path, folder):
            raise error(path)
        return real_os_open(path, flags, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if _under(path, folder):
            if os.path.exists(path):
                raise FileExistsError(errno.EEXIST, "File exists", path)
            raise error(path)
        return real_mkdir(path, *args, **kwargs)

    def guard2(real):
        def call(src, dst, *args, **kwargs):
            if _under(src, folder) or _under(dst, folder):
                raise error(dst)
            return real(src, dst, *args, **kwargs)
        return call

    def unlink(path, *args, **kwargs):
        if _under(path, folder):
            raise error(path)
        return real_unlink(path, *args, **kwargs)

    def save_file(tensors, filename, metadata=None):
        if _under(filename, folder):
            raise safetensors.SafetensorError(f"Error while serializing: IoError(Os {{ code: {code}, message: "
                                              f"\"{os.strerror(code)}\" }})")
        return real_save(tensors, filename, metadata=metadata)

    for target, name, value in [(builtins, "open", open_), (os, "open", os_open), (os, "mkdir", mkdir),
                                (os, "replace", guard2(real_replace)), (os, "rename", guard2(real_rename)),
                                (os, "unlink", unlink), (os, "remove", unlink),
                                (checkpoint_format, "save_file", save_file)]:
        monkeypatch.setattr(target, name, value)
    yield


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def world(tmp_path) -> dict[str, Path]:
    """Inputs every command needs, and an output folder with an older file in it."""
    torch.manual_seed(0)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    model = GPTModel(PRESETS["test-tiny"])
    save_checkpoint(inputs / "base.safetensors", model, "base")
    save_checkpoint(inputs / "instruct.safetensors", model, "instruct", template="alpaca")
    (inputs / "corpus.txt").write_text("It was a bright cold day in April, and the clocks were striking thirteen. " * 40)
    (inputs / "sms.tsv").write_text("".join(f"{'ham' if i % 2 else 'spam'}\tmessage number {i}\n" for i in range(40)))
    (inputs / "instruct.json").write_text(json.dumps(
        [{"instruction": f"Say {i}.", "input": "", "output": f"{i}"} for i in range(30)]))
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").write_bytes((inputs / "base.safetensors").read_bytes())  # an older save
    (out / "model.gguf").write_bytes(b"an older export")
    (out / "hf").mkdir()
    (out / "hf" / "config.json").write_text("{}")
    return {"inputs": inputs, "out": out}


def commands(w: dict[str, Path]) -> dict[str, list[str]]:
    i, o = w["inputs"], w["out"]
    return {
        "pretrain": ["pretrain", "--data", str(i / "corpus.txt"), "--preset", "test-tiny", "--context", "16", *TRAIN, "--out", str(o / "model")],
        "finetune-spam": ["finetune-spam", "--data", str(i / "sms.tsv"), "--preset", "test-tiny", *TRAIN, "--out", str(o / "model")],
        "finetune-instruct": ["finetune-instruct", "--data", str(i / "instruct.json"), "--init",
                              str(i / "base.safetensors"), "--max-length", "32", *TRAIN, "--no-eval", "--out", str(o / "model")],
        "export-hf": ["export-hf", str(i / "base.safetensors"), str(o / "hf")],
        "export-gguf": ["export-gguf", "--force", str(i / "base.safetensors"), str(o / "model.gguf")],
    }


CORRUPT = {  # command -> the input to damage
    "pretrain": ("corpus.txt", b"\x00\xff" * 8),
    "finetune-spam": ("sms.tsv", b"no tabs here\n\xff\xfe\n"),
    "finetune-instruct": ("instruct.json", b'[{"instruction": "x", "outp'),
    "export-hf": ("base.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json"),
    "export-gguf": ("base.safetensors", b"truncated"),
}


def _check(rc: int, err: str, before: dict[Path, bytes], root: Path) -> None:
    assert rc != 0, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    after = snapshot(root)
    changed = [str(p) for p, data in before.items() if after.get(p) != data]
    assert not changed, f"changed or removed: {changed}"


@pytest.mark.parametrize("command", list(CORRUPT))
@pytest.mark.parametrize("fault", ["read-only", "disk-full"])
def test_a_write_fault_is_one_error_line_and_changes_no_existing_file(world, tmp_path, capsys, monkeypatch,
                                                                       command, fault):
    if command == "export-gguf":
        pytest.importorskip("gguf")
    before = snapshot(tmp_path)
    code = errno.EROFS if fault == "read-only" else errno.ENOSPC
    with failing_writes(world["out"], code, monkeypatch):
        rc = main(commands(world)[command])
    err = capsys.readouterr().err
    _check(rc, err, before, tmp_path)
    words = {"read-only": "read-only", "disk-full": "no space left"}[fault]
    assert words in err.lower() or os.strerror(code).lower() in err.lower(), err


@pytest.mark.parametrize("command", list(CORRUPT))
def test_a_corrupt_input_is_one_error_line_and_changes_no_existing_file(world, tmp_path, capsys, command):
    if command == "export-gguf":
        pytest.importorskip("gguf")
    name, data = CORRUPT[command]
    (world["inputs"] / name).write_bytes(data)
    before = snapshot(tmp_path)
    rc = main(commands(world)[command])
    _check(rc, capsys.readouterr().err, before, tmp_path)


def test_a_read_only_runs_folder_stops_training_before_any_work(world, tmp_path, capsys, monkeypatch):
    runs = Path(os.environ["CHATGPT_SCRATCH_RUNS"])
    runs.mkdir(parents=True, exist_ok=True)
    before = snapshot(tmp_path)
    with failing_writes(runs, errno.EROFS, monkeypatch):
        rc = main(commands(world)["pretrain"])
    _check(rc, capsys.readouterr().err, before, tmp_path)
