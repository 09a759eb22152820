"""The `checkpoints list|info`, `import-gpt2` and `export-hf` subcommands, through cli.main()."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from chatgpt_scratch.checkpoints import load_checkpoint, read_metadata, save_checkpoint
from chatgpt_scratch.cli import main
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.model import GPTModel, format_params, to_classifier


@pytest.fixture
def folder() -> Path:
    path = Path(os.environ["CHATGPT_SCRATCH_CHECKPOINTS"])
    torch.manual_seed(0)
    save_checkpoint(path / "pretrained.safetensors", GPTModel(PRESETS["test-tiny"]), val_loss=3.25)
    clf = to_classifier(GPTModel(PRESETS["test-tiny"]), 2)
    save_checkpoint(path / "spam.safetensors", clf, kind="classifier", labels=["ham", "spam"], val_acc=0.96,
                    parent=str(path / "pretrained.safetensors"))
    (path / "broken.safetensors").write_bytes(b"\xff" * 64)
    return path


def test_list_table(folder, capsys):
    assert main(["checkpoints", "list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines()}
    n_base = GPTModel(PRESETS["test-tiny"]).num_parameters()
    assert lines["pretrained"][1:4] == ["base", "test-tiny", format_params(n_base)]
    assert "loss 3.2500" in out and "acc 96.00%" in out
    assert lines["spam"][1] == "classifier" and "pretrained" in lines["spam"]  # its parent
    assert lines["broken"][1] == "BROKEN"
    assert "broken: broken: " in out and "corrupt header" in out


def test_list_json_and_explicit_folder(folder, capsys, tmp_path):
    assert main(["checkpoints", "list", str(folder), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["pretrained"]["n_params"] == GPTModel(PRESETS["test-tiny"]).num_parameters()
    assert rows["spam"]["config"]["n_classes"] == 2 and rows["spam"]["metadata"]["labels"] == ["ham", "spam"]
    assert rows["broken"]["error"] and rows["broken"]["kind"] is None
    assert main(["checkpoints", "list", str(tmp_path / "empty")]) == 0
    assert "no checkpoints in" in capsys.readouterr().out


def test_info(folder, capsys):
    assert main(["checkpoints", "info", str(folder / "spam.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "kind         classifier" in out and "2-class head" in out and 'labels: ["ham", "spam"]' in out
    assert main(["checkpoints", "info", str(folder / "spam.safetensors"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metric_value"] == 0.96


def test_an_adapter_is_listed_by_the_kind_it_makes(folder, capsys):
    from chatgpt_scratch.lora import inject_lora, save_lora_adapter

    base = folder / "pretrained.safetensors"
    model, _ = load_checkpoint(base)
    inject_lora(model, rank=2, alpha=4.0)
    save_lora_adapter(folder / "chat.lora.safetensors", model, base, model_kind="instruct", template="alpaca")
    assert main(["checkpoints", "list"]) == 0
    row = next(line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("chat.lora"))
    assert row[1] == "lora→instruct"
    assert main(["checkpoints", "info", str(folder / "chat.lora.safetensors")]) == 0
    out = capsys.readouterr().out
    assert f"kind         lora-adapter of {base.resolve()} (merged, it makes an 'instruct' model)" in out
    assert "stored as F32" in out


def test_info_on_a_corrupt_file_prints_one_error_line(folder, capsys):
    assert main(["checkpoints", "info", str(folder / "broken.safetensors")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("error: ") and "broken.safetensors is not a safetensors file (corrupt header)" in captured.err


def test_import_and_export_through_the_cli(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=128)).eval()
    hf.save_pretrained(tmp_path / "tiny-gpt2")
    src = tmp_path / "tiny-gpt2" / "model.safetensors"

    assert main(["import-gpt2", "--from", str(src)]) == 0
    default_out = Path(os.environ["CHATGPT_SCRATCH_CHECKPOINTS"]) / "tiny-gpt2-imported.safetensors"
    assert f"to {default_out}" in capsys.readouterr().out
    assert read_metadata(default_out)["source_file"] == str(src.resolve())
    # Never overwrites silently.
    assert main(["import-gpt2", "--from", str(src), "--out", str(default_out)]) == 1
    assert "already exists; choose another --out or add --force" in capsys.readouterr().err
    assert main(["import-gpt2", "gpt2", "--from", str(src)]) == 1
    assert "give either a GPT-2 SIZE" in capsys.readouterr().err

    assert main(["export-hf", str(default_out), str(tmp_path / "exported")]) == 0
    assert "GPT2LMHeadModel.from_pretrained" in capsys.readouterr().out
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "exported").eval()
    ids = torch.randint(0, 50257, (1, 16), generator=torch.Generator().manual_seed(0))
    ours, _ = load_checkpoint(default_out)
    with torch.no_grad():
        assert torch.allclose(back(ids).logits, ours(ids), atol=1e-4, rtol=0)
        assert torch.allclose(back(ids).logits, hf(ids).logits, atol=1e-4, rtol=0)


def test_export_refuses_a_classifier_checkpoint(folder, tmp_path, capsys):
    assert main(["export-hf", str(folder / "spam.safetensors"), str(tmp_path / "out")]) == 1
    assert "is a 'classifier' checkpoint, but this needs a 'base' or 'instruct' one" in capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    (["checkpoints", "list", "--help"], "--json"),
    (["checkpoints", "info", "--help"], "PATH"),
    (["import-gpt2", "--help"], "--from FILE"),
    (["export-hf", "--help"], "OUT_DIR"),
])
def test_help(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0 and expected in capsys.readouterr().out


def test_import_by_size_checks_before_downloading(capsys, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: any download attempt would fail
    existing = Path(os.environ["CHATGPT_SCRATCH_CHECKPOINTS"]) / "gpt2-small.safetensors"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"keep me")
    assert main(["import-gpt2", "124M"]) == 1
    assert "gpt2-small.safetensors already exists; choose another --out or add --force" in capsys.readouterr().err
    assert existing.read_bytes() == b"keep me"
    assert main(["import-gpt2", "gpt-5"]) == 1
    assert "unknown GPT-2 size 'gpt-5'" in capsys.readouterr().err
    assert main(["import-gpt2", "gpt2-xl"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach 127.0.0.1 to download the gpt2-xl weights") and "use --from FILE" in err


def test_average_writes_the_mean_of_the_weights_and_keeps_each_files_own_metrics(folder, capsys):
    """`checkpoints average` (a model soup): every weight is the mean of the files' weights; what the files agree
    on stays in the header, what differs (their val metrics, seeds) is listed per file, not claimed for the mean."""
    torch.manual_seed(1)
    other = GPTModel(PRESETS["test-tiny"])
    save_checkpoint(folder / "other.safetensors", other, val_loss=3.5, template="alpaca")
    save_checkpoint(folder / "first.safetensors", load_checkpoint(folder / "pretrained.safetensors")[0],
                    val_loss=3.25, template="alpaca")
    assert main(["checkpoints", "average", str(folder / "first.safetensors"), str(folder / "other.safetensors"),
                 "--out", str(folder / "soup")]) == 0
    assert "the average of 2 models" in capsys.readouterr().err
    soup, meta = load_checkpoint(folder / "soup.safetensors")
    a, _ = load_checkpoint(folder / "first.safetensors")
    for name, tensor in soup.state_dict().items():
        assert torch.allclose(tensor, (a.state_dict()[name] + other.state_dict()[name]) / 2, atol=1e-6), name
    assert meta["template"] == "alpaca" and "val_loss" not in meta
    assert [(m["file"], m["val_loss"]) for m in meta["averaged_from"]] == [("first.safetensors", 3.25),
                                                                           ("other.safetensors", 3.5)]


def test_average_refuses_what_cannot_be_averaged_and_writes_nothing(folder, capsys):
    torch.manual_seed(2)
    save_checkpoint(folder / "small.safetensors", GPTModel(PRESETS["test-tiny"].with_(n_layers=1)))
    cases = [(["pretrained", "small"], "another architecture"),
             (["pretrained", "spam"], "is a 'classifier' file and"),
             (["pretrained"], "two or more checkpoints")]
    for names, message in cases:
        assert main(["checkpoints", "average", *(str(folder / f"{n}.safetensors") for n in names),
                     "--out", str(folder / "soup")]) != 0
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert not (folder / "soup.safetensors").exists()
    # An existing file is kept unless --force.
    (folder / "soup.safetensors").write_bytes(b"keep")
    assert main(["checkpoints", "average", str(folder / "pretrained.safetensors"), str(folder / "pretrained.safetensors"),
                 "--out", str(folder / "soup")]) != 0
    assert "already exists" in capsys.readouterr().err and (folder / "soup.safetensors").read_bytes() == b"keep"
