"""Checkpoints: round trips, atomic writes, header-only listing, clear errors, file management, no pickle."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from chatgpt_scratch import checkpoints as ck
from chatgpt_scratch.checkpoints import (
    checkpoint_info, delete_checkpoint, duplicate_checkpoint, list_checkpoints, load_checkpoint,
    read_metadata, rename_checkpoint, save_checkpoint,
)
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.model import GPTModel, to_classifier

REPO = Path(__file__).resolve().parents[1]
TINY = PRESETS["test-tiny"]


def tiny_model(seed: int = 0, **changes) -> GPTModel:
    torch.manual_seed(seed)
    model = GPTModel(TINY.with_(**changes)).eval()
    with torch.no_grad():  # non-trivial norms and biases, so a mix-up would show in the logits
        for name, p in model.named_parameters():
            if name.endswith(("scale", "shift", "bias")):
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture
def ids() -> torch.Tensor:
    return torch.randint(0, TINY.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))


@pytest.fixture
def saved(tmp_path) -> Path:
    return save_checkpoint(tmp_path / "base.safetensors", tiny_model(), kind="base")


# --- round trips -------------------------------------------------------------------------------------


@pytest.mark.parametrize("tie, vocab_multiple", [(False, 1), (True, 1), (True, 64)])
def test_round_trip_gives_identical_logits(tmp_path, ids, tie, vocab_multiple):
    model = tiny_model(tie_embeddings=tie, vocab_multiple=vocab_multiple)
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    loaded, meta = load_checkpoint(path)
    assert loaded.cfg == model.cfg and meta["kind"] == "base"
    assert torch.equal(loaded(ids), model(ids))
    # A tied head is stored once and is still tied after loading.
    assert ("out_head.weight" in ck.read_safetensors_header(path).tensors) is not tie
    assert (loaded.out_head.weight is loaded.tok_emb.weight) is tie


def test_classifier_round_trip(tmp_path, ids):
    model = to_classifier(tiny_model(), n_classes=2).eval()
    with torch.no_grad():
        model.out_head.bias.fill_(0.25)
    path = save_checkpoint(tmp_path / "spam.safetensors", model, kind="classifier", labels=["ham", "spam"])
    loaded, meta = load_checkpoint(path, kind="classifier")
    assert loaded.cfg.n_classes == 2 and meta["labels"] == ["ham", "spam"]
    assert loaded(ids).shape == (2, 12, 2)
    assert torch.equal(loaded(ids), model(ids))


def test_bfloat16_weights_load_as_bfloat16(tmp_path, ids):
    model = tiny_model().to(torch.bfloat16)
    path = save_checkpoint(tmp_path / "bf16.safetensors", model)
    assert checkpoint_info(path).dtype == "BF16"
    loaded, _ = load_checkpoint(path)
    assert loaded.tok_emb.weight.dtype == torch.bfloat16
    assert torch.equal(loaded(ids), model(ids))
    as_f32, _ = load_checkpoint(path, dtype=torch.float32)
    assert as_f32.tok_emb.weight.dtype == torch.float32
    assert torch.equal(as_f32.tok_emb.weight, model.tok_emb.weight.float())


def test_metadata_types_survive(tmp_path):
    extra = dict(labels=["ham", "spam"], steps=1200, val_loss=1.875, lr=3e-4, flag=True,
                 dataset={"path": "data/x.txt", "sha256": "ab" * 32}, template="alpaca", nothing=None)
    meta = read_metadata(save_checkpoint(tmp_path / "m.safetensors", tiny_model(), kind="instruct", **extra))
    for key, value in extra.items():
        if value is None:
            assert key not in meta
        else:
            assert meta[key] == value and type(meta[key]) is type(value)
    assert meta["kind"] == "instruct" and meta["format"] == ck.FORMAT and meta["tokenizer"] == "gpt2"


def test_unknown_kind_is_refused(tmp_path):
    with pytest.raises(ScratchError, match="unknown checkpoint kind 'chat'"):
        save_checkpoint(tmp_path / "m.safetensors", tiny_model(), kind="chat")
    assert not (tmp_path / "m.safetensors").exists()


# --- clear errors ------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ScratchError, match=r"checkpoint not found: .*nope\.safetensors"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_truncated_file(tmp_path, saved):
    data = saved.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    for call in (load_checkpoint, read_metadata, checkpoint_info):
        if call is checkpoint_info:
            assert "is truncated" in call(cut).error
            continue
        with pytest.raises(ScratchError, match=rf"cut\.safetensors is truncated \({len(data) // 2} of {len(data)} bytes\)"):
            call(cut)
    # Cut inside the header itself.
    cut.write_bytes(data[:100])
    with pytest.raises(ScratchError, match="is truncated"):
        read_metadata(cut)


@pytest.mark.parametrize("content", [b"garbage bytes, not a model" * 10, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json!!!!!!}", b""])
def test_corrupt_header(tmp_path, content):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(content)
    with pytest.raises(ScratchError) as err:
        load_checkpoint(bad)
    assert "bad.safetensors is not a safetensors file" in str(err.value)
    assert "\n" not in str(err.value)


def test_hugging_face_file_points_to_import(tmp_path):
    hf = tmp_path / "model.safetensors"
    save_file({"wte.weight": torch.zeros(4, 2), "h.0.attn.c_attn.weight": torch.zeros(2, 6)}, hf, metadata={"format": "pt"})
    with pytest.raises(ScratchError, match=r"not a chatgpt-scratch checkpoint; it looks like Hugging Face GPT-2 weights: "
                                           r"import them with `chatgpt-scratch import-gpt2 --from FILE`"):
        load_checkpoint(hf)


def test_config_that_does_not_match_the_weights(tmp_path):
    model = tiny_model()
    wrong = ck.encode_metadata({"format": ck.FORMAT, "kind": "base", "config": TINY.with_(emb_dim=64).to_json()})
    path = tmp_path / "edited.safetensors"
    ck.atomic_save_tensors(path, ck.model_tensors(model), wrong)
    with pytest.raises(ScratchError, match=r"weights do not match the config in its header \(tok_emb.weight is "
                                           r"\(50257, 32\) in the file but the config needs \(50257, 64\)\)"):
        load_checkpoint(path)
    fewer = ck.encode_metadata({"format": ck.FORMAT, "kind": "base", "config": TINY.with_(n_layers=3).to_json()})
    ck.atomic_save_tensors(path, ck.model_tensors(model), fewer)
    with pytest.raises(ScratchError, match=r"weights do not match the config .*missing \['trf_blocks.2"):
        load_checkpoint(path)


def test_header_without_config(tmp_path):
    path = tmp_path / "noconfig.safetensors"
    ck.atomic_save_tensors(path, ck.model_tensors(tiny_model()), ck.encode_metadata({"format": ck.FORMAT, "kind": "base"}))
    with pytest.raises(ScratchError, match="the checkpoint header has no model config"):
        load_checkpoint(path)


def test_wrong_kind(saved):
    with pytest.raises(ScratchError, match=r"is a 'base' checkpoint, but this needs a 'classifier' one"):
        load_checkpoint(saved, kind="classifier")
    with pytest.raises(ScratchError, match=r"needs an 'instruct' or 'classifier' one"):
        load_checkpoint(saved, kind=("instruct", "classifier"))
    assert load_checkpoint(saved, kind=("base", "instruct"))[1]["kind"] == "base"


# --- atomic saves ------------------------------------------------------------------------------------


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("fail_in", ["save_file", "os.replace"])
def test_failed_save_leaves_the_old_file_intact(tmp_path, saved, ids, monkeypatch, fail_in):
    before = saved.read_bytes()
    old_logits = load_checkpoint(saved)[0](ids)

    if fail_in == "save_file":
        from chatgpt_scratch.storage import checkpoint_format  # where the file is written (checkpoints re-exports it)

        real = checkpoint_format.save_file

        def crash(tensors, filename, metadata=None):  # write half a file, then die
            real(tensors, filename, metadata=metadata)
            with open(filename, "r+b") as f:
                f.truncate(os.path.getsize(filename) // 2)
            raise OSError("disk full")

        monkeypatch.setattr(checkpoint_format, "save_file", crash)
    else:
        monkeypatch.setattr(ck.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("power cut")))

    with pytest.raises(OSError):
        save_checkpoint(saved, tiny_model(seed=7))
    assert saved.read_bytes() == before
    assert torch.equal(load_checkpoint(saved)[0](ids), old_logits)
    assert _temps(tmp_path) == []


def test_killed_writer_leaves_the_old_file_and_the_next_save_cleans_up(tmp_path, saved, ids):
    """A real crash: the writing process gets SIGKILL after the temp file is written, before the rename."""
    before = saved.read_bytes()
    script = textwrap.dedent(f"""
        import os, signal, torch
        from chatgpt_scratch import checkpoints as ck
        from chatgpt_scratch.config import PRESETS
        from chatgpt_scratch.model import GPTModel
        ck.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        ck.save_checkpoint({str(saved)!r}, GPTModel(PRESETS["test-tiny"]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    leftovers = _temps(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > len(before) // 2  # it died with the new file written
    assert saved.read_bytes() == before
    assert [info.name for info in list_checkpoints(tmp_path)] == ["base"]  # the temp file is not listed
    model = tiny_model(seed=3)
    save_checkpoint(saved, model)
    assert _temps(tmp_path) == []
    assert torch.equal(load_checkpoint(saved)[0](ids), model(ids))


# --- listing -----------------------------------------------------------------------------------------


def test_listing_reads_headers_and_marks_broken_files(tmp_path, monkeypatch):
    base = tiny_model()
    save_checkpoint(tmp_path / "a-base.safetensors", base, val_loss=2.5)
    tied = tiny_model(tie_embeddings=True)
    save_checkpoint(tmp_path / "b-tied.safetensors", tied, parent="a-base.safetensors")
    clf = to_classifier(tiny_model(), 2)
    save_checkpoint(tmp_path / "c-spam.safetensors", clf, kind="classifier", val_loss=0.1, metrics={"val_acc": 0.97})
    (tmp_path / "d-garbage.safetensors").write_bytes(b"\x00" * 50)
    save_file({"wte.weight": torch.zeros(3, 2)}, tmp_path / "e-hf.safetensors")
    ck.atomic_save_tensors(tmp_path / "f-state.safetensors", {"step": torch.zeros(1)},
                           ck.encode_metadata({"format": "chatgpt-scratch-state/1"}))
    (tmp_path / ".a-base.safetensors.xyz.tmp").write_bytes(b"partial")
    (tmp_path / "notes.txt").write_text("not a checkpoint")

    # Listing must not read the weights: make loading them fail loudly.
    monkeypatch.setattr(ck, "load_file", lambda *a, **k: pytest.fail("listing loaded weights"))
    infos = {i.name: i for i in list_checkpoints(tmp_path)}
    assert sorted(infos) == ["a-base", "b-tied", "c-spam", "d-garbage", "e-hf"]

    a, b, c = infos["a-base"], infos["b-tied"], infos["c-spam"]
    assert (a.kind, a.preset, a.n_params, a.metric_name, a.metric_value) == ("base", "test-tiny", base.num_parameters(), "val_loss", 2.5)
    assert b.n_params == tied.num_parameters() < base.num_parameters()  # tied head counted once
    assert b.parent == "a-base.safetensors" and b.config.tie_embeddings
    assert (c.kind, c.config.n_classes, c.n_params) == ("classifier", 2, clf.num_parameters())
    assert (c.metric_name, c.metric_value) == ("val_acc", 0.97)  # accuracy wins over loss for a classifier
    assert a.file_size == (tmp_path / "a-base.safetensors").stat().st_size
    assert a.created and a.ok and a.metadata["val_loss"] == 2.5 and a.error is None
    assert "not a safetensors file" in infos["d-garbage"].error and infos["d-garbage"].kind is None
    assert "not a chatgpt-scratch checkpoint" in infos["e-hf"].error
    assert a.to_dict()["config"]["emb_dim"] == 32


def test_listing_default_folder_and_missing_folder(tmp_path):
    assert list_checkpoints() == []  # the per-test checkpoints folder does not exist yet
    folder = Path(os.environ["CHATGPT_SCRATCH_CHECKPOINTS"])
    save_checkpoint(folder / "x.safetensors", tiny_model())
    assert [i.name for i in list_checkpoints()] == ["x"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ScratchError, match="is not a folder"):
        list_checkpoints(tmp_path / "file")


def test_gpt2_preset_is_recognised_from_the_header(tmp_path):
    with torch.device("meta"):
        big = GPTModel(PRESETS["gpt2-small"])
    assert ck.preset_name(big.cfg) == "gpt2-small"
    assert ck.preset_name(TINY.with_(emb_dim=48)) is None


# --- rename / duplicate / delete ---------------------------------------------------------------------


def test_rename_duplicate_delete(tmp_path, saved):
    data = saved.read_bytes()
    renamed = rename_checkpoint(saved, "pretrained")
    assert renamed == tmp_path / "pretrained.safetensors" and renamed.read_bytes() == data and not saved.exists()
    copy = duplicate_checkpoint(renamed)
    copy2 = duplicate_checkpoint(renamed)
    assert (copy.name, copy2.name) == ("pretrained-copy.safetensors", "pretrained-copy2.safetensors")
    assert copy.read_bytes() == data and copy2.read_bytes() == data
    named = duplicate_checkpoint(renamed, "backup.safetensors")
    assert named.read_bytes() == data

    with pytest.raises(ScratchError, match=r"cannot rename pretrained.safetensors: .*backup.safetensors already exists"):
        rename_checkpoint(renamed, "backup")
    with pytest.raises(ScratchError, match=r"cannot duplicate pretrained.safetensors: .*backup.safetensors already exists"):
        duplicate_checkpoint(renamed, "backup")
    with pytest.raises(ScratchError, match=r"bad checkpoint name '../elsewhere'"):
        rename_checkpoint(renamed, "../elsewhere")
    with pytest.raises(ScratchError, match="checkpoint not found"):
        rename_checkpoint(tmp_path / "gone.safetensors", "x")
    assert renamed.read_bytes() == data  # failed operations changed nothing

    delete_checkpoint(copy)
    assert not copy.exists()
    with pytest.raises(ScratchError, match="checkpoint not found"):
        delete_checkpoint(copy)
    with pytest.raises(ScratchError, match="is a folder"):
        delete_checkpoint(tmp_path)
    assert sorted(i.name for i in list_checkpoints(tmp_path)) == ["backup", "pretrained", "pretrained-copy2"]
    assert _temps(tmp_path) == []


# --- no pickle ---------------------------------------------------------------------------------------


def test_no_pickle_in_the_package():
    offenders = []
    for path in list((REPO / "chatgpt_scratch").rglob("*.py")) + list((REPO / "tui").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"torch\.load\(", text):
            call = text[match.start(): text.find(")", match.start()) + 1]
            if "weights_only=True" not in call:
                offenders.append(f"{path.relative_to(REPO)}: {call}")
        if re.search(r"^\s*(import pickle|from pickle import|import cPickle|import dill)", text, re.M):
            offenders.append(f"{path.relative_to(REPO)}: imports pickle")
    assert offenders == []

