"""`chatgpt-scratch finetune-instruct` end to end on a tiny model: full and LoRA, files, metadata, errors."""

from __future__ import annotations

import json

import pytest
import torch

from chatgpt_scratch.checkpoints import load_checkpoint, read_metadata, read_safetensors_header, save_checkpoint
from chatgpt_scratch.cli import main
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.data.instruct import EncodedExample
from chatgpt_scratch.lora import load_lora_adapter
from chatgpt_scratch.model import GPTModel
from chatgpt_scratch.data.templates import ALPACA
from chatgpt_scratch.training.instruct_task import InstructData, InstructTask, instruct_loss, masked_lm_loss

TINY = PRESETS["test-tiny"].with_(tie_embeddings=True)


def write_data(path, n=40):
    """A learnable toy task: answer with the instruction's colour word."""
    colours = ["red", "green", "blue", "yellow"]
    entries = [{"instruction": f"Say the colour {colours[i % 4]}.", "input": "" if i % 2 else "now",
                "output": f"The colour is {colours[i % 4]}."} for i in range(n)]
    path.write_text(json.dumps(entries))
    return path


@pytest.fixture
def base(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "base.safetensors", GPTModel(TINY), kind="base")


COMMON = ["--max-steps", "5", "--lr", "8e-3", "--batch-size", "8", "--eval-every", "0",
          "--max-new-tokens", "8", "--device", "cpu"]


def test_full_finetune_lowers_val_loss_and_writes_book_shaped_responses(tmp_path, base):
    data = write_data(tmp_path / "data.json")
    out = tmp_path / "ck" / "inst"
    assert main(["finetune-instruct", "--data", str(data), "--init", str(base), "--out", str(out),
                 "--template", "phi3", *COMMON]) == 0
    best = tmp_path / "ck" / "inst.best.safetensors"
    meta = read_metadata(best)
    assert meta["kind"] == "instruct" and meta["template"] == "phi3"
    assert meta["parent"] == str(base.resolve())
    assert meta["split_sizes"] == {"train": 34, "val": 2, "test": 4}
    summary = json.loads((tmp_path / "ck" / "inst.best.eval.json").read_text())
    assert summary["val_loss_after"] < summary["val_loss_before"] - 1.0  # it learned something
    responses = json.loads((tmp_path / "ck" / "inst.best.responses.json").read_text())
    assert len(responses) == 4
    assert all(list(r) == ["instruction", "input", "output", "model_response"] for r in responses)
    assert responses[0]["instruction"] == "Say the colour blue."  # file order: test = entries 34..37 (34 % 4 = 2)
    assert 0.0 <= summary["evaluation"]["rouge_l"] <= 1.0
    assert meta["test_rouge_l"] == summary["evaluation"]["rouge_l"]


def test_lora_run_saves_a_small_adapter_and_the_merged_model(tmp_path, base):
    data = write_data(tmp_path / "data.json")
    out = tmp_path / "ck" / "lora"
    assert main(["finetune-instruct", "--data", str(data), "--init", str(base), "--out", str(out),
                 "--lora-rank", "4", "--no-eval", *COMMON]) == 0
    merged_path = tmp_path / "ck" / "lora.safetensors"
    adapter_file = tmp_path / "ck" / "lora.lora.safetensors"
    merged, meta = load_checkpoint(merged_path, kind="instruct")
    adapter_meta = read_metadata(adapter_file)
    assert adapter_meta["kind"] == "lora-adapter" and adapter_meta["model_kind"] == "instruct"
    assert adapter_meta["lora_rank"] == 4 and adapter_meta["lora_alpha"] == 8.0  # default alpha = 2R
    assert adapter_file.stat().st_size < merged_path.stat().st_size / 10
    applied, _ = load_lora_adapter(adapter_file)
    ids = torch.tensor([[10, 20, 30, 40, 50]])
    torch.testing.assert_close(applied(ids), merged(ids), rtol=1e-4, atol=1e-4)
    original, _ = load_checkpoint(base)
    assert not torch.allclose(original(ids), merged(ids), atol=1e-3)  # training changed the model
    assert torch.equal(original.tok_emb.weight, merged.tok_emb.weight)  # only adapters trained


def test_lora_targets_choose_the_layers_and_leaving_out_the_head_keeps_it_tied(tmp_path, base, capsys):
    data = write_data(tmp_path / "data.json")
    files = {}
    for targets in ("all", "qkv,ff"):
        out = tmp_path / "ck" / targets.replace(",", "-")
        assert main(["finetune-instruct", "--data", str(data), "--init", str(base), "--out", str(out),
                     "--lora-rank", "2", "--lora-targets", targets, "--no-eval", *COMMON, "--max-steps", "2"]) == 0
        files[targets] = (out.with_suffix(".safetensors"), out.with_name(out.name + ".lora.safetensors"))
    layers = read_metadata(files["qkv,ff"][1])["lora_layers"]
    assert layers and all(name.endswith(("att.qkv", "ff.layers.0", "ff.layers.2")) for name in layers)
    assert "out_head" in read_metadata(files["all"][1])["lora_layers"]
    tensors = {t: read_safetensors_header(files[t][0]).tensors for t in files}
    assert "out_head.weight" in tensors["all"]  # an adapted tied head is merged into a head of its own
    assert "out_head.weight" not in tensors["qkv,ff"]  # still tied: the base's size
    assert files["qkv,ff"][0].stat().st_size == pytest.approx(base.stat().st_size, rel=0.01)
    capsys.readouterr()
    assert main(["finetune-instruct", "--data", str(data), "--init", str(base), "--lora-rank", "2",
                 "--lora-targets", "qkv,mlp", *COMMON]) == 1
    assert capsys.readouterr().err == ("error: --lora-targets 'qkv,mlp': use all, or a comma list of qkv, "
                                       "out_proj, ff, head, emb\n")


def test_bad_data_stops_before_training(tmp_path, base, capsys):
    data = tmp_path / "broken.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n')
    out = tmp_path / "ck" / "never"
    assert main(["finetune-instruct", "--data", str(data), "--init", str(base), "--out", str(out), *COMMON]) == 1
    assert "broken.jsonl: line 2: missing key 'output'" in capsys.readouterr().err
    assert not (tmp_path / "ck").exists() and not (tmp_path / "runs").exists()


def test_wrong_checkpoint_kind_and_oversized_max_length(tmp_path, base, capsys):
    data = write_data(tmp_path / "data.json")
    assert main(["finetune-instruct", "--data", str(data), "--init", str(base), "--max-length", "999",
                 "--out", str(tmp_path / "x"), *COMMON]) == 1
    assert "--max-length 999 is longer than the model's context (64)" in capsys.readouterr().err


def test_task_loss_ignores_padding_and_masked_prompt():
    torch.manual_seed(0)
    model = GPTModel(PRESETS["test-tiny"]).eval()
    examples = [EncodedExample([1, 2, 3, 4, 5], 3), EncodedExample([6, 7], 1)]
    data = InstructData([], [], [], ALPACA, encoded_train=examples)
    task = InstructTask(data, batch_size=2, mask_instructions=True)
    inputs, targets = next(task.train_batches(0))
    loss = task.loss(model, (inputs, targets))
    # by hand: -log p of each kept target, averaged over exactly the kept ones
    logp = torch.log_softmax(model(inputs), dim=-1)
    kept = [(0, 2, 4), (0, 3, 5), (0, 4, 50256), (1, 0, 7), (1, 1, 50256)]
    expected = -sum(logp[b, t, tok] for b, t, tok in kept) / len(kept)
    torch.testing.assert_close(loss, expected)
    assert task.tokens_in((inputs, targets)) == 5
    # The fast path (head only where there is a target) equals the full computation.
    for mask in (True, False):
        task.mask_instructions = mask
        inputs, targets = next(task.train_batches(0))
        torch.testing.assert_close(instruct_loss(model, inputs, targets), masked_lm_loss(model(inputs), targets))
        torch.testing.assert_close(instruct_loss(model, inputs, targets, "sum"),
                                   masked_lm_loss(model(inputs), targets, "sum"))
    all_masked = torch.full_like(targets, -100)
    assert instruct_loss(model, inputs, all_masked).item() == 0.0
    assert masked_lm_loss(model(inputs), all_masked).item() == 0.0  # not NaN
