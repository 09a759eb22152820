"""LoRA: exact equivalences (B=0 is the base, merged == base + adapter), parameter counts, adapter files."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from chatgpt_scratch.checkpoints import read_metadata, save_checkpoint
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.lora import (DEFAULT_TARGETS, LoRALinear, inject_lora, lora_parameter_count, lora_tensors,
                                  load_lora_adapter, merge_lora, save_lora_adapter)
from chatgpt_scratch.model import GPTModel, to_classifier

TIED = PRESETS["test-tiny"].with_(tie_embeddings=True)


def make_model(cfg=PRESETS["test-tiny"], seed: int = 0) -> GPTModel:
    torch.manual_seed(seed)
    return GPTModel(cfg).eval()


def randomize_adapters(model: GPTModel, seed: int = 1) -> None:
    """Training would move B away from zero; do that by hand so the adapter changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


IDS = torch.tensor([[5, 17, 300, 2, 9, 44], [1, 2, 3, 4, 5, 6]])


def test_lora_linear_matches_base_plus_low_rank_product():
    torch.manual_seed(0)
    linear = torch.nn.Linear(6, 4)
    layer = LoRALinear(linear, rank=2, alpha=8)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(3, 6)
    expected = x @ linear.weight.T + linear.bias + (8 / 2) * (x @ layer.lora_A @ layer.lora_B)
    torch.testing.assert_close(layer(x), expected)
    assert layer.lora_A.shape == (6, 2) and layer.lora_B.shape == (2, 4)
    assert not linear.weight.requires_grad and layer.lora_A.requires_grad


@pytest.mark.parametrize("cfg", [PRESETS["test-tiny"], TIED], ids=["untied", "tied"])
def test_fresh_adapter_is_exactly_the_base_model(cfg):
    model = make_model(cfg)
    before = model(IDS)
    inject_lora(model, rank=4, alpha=8)
    assert torch.equal(model(IDS), before)  # B = 0: not approximately, exactly


def test_trainable_parameters_are_the_adapters_and_match_the_formula():
    model = make_model()
    cfg = model.cfg
    adapted = inject_lora(model, rank=3, alpha=6)
    e, v = cfg.emb_dim, cfg.vocab_size
    # per block: qkv (e -> 3e), out_proj (e -> e), ff1 (e -> 4e), ff2 (4e -> e); plus the head (e -> vocab)
    per_block = 3 * ((e + 3 * e) + (e + e) + (e + 4 * e) + (4 * e + e))
    expected = cfg.n_layers * per_block + 3 * (e + v)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == expected == lora_parameter_count(model)
    assert len(adapted) == 4 * cfg.n_layers + 1
    assert all(n.endswith(("lora_A", "lora_B")) for n, p in model.named_parameters() if p.requires_grad)


def test_targets_choose_the_layers():
    model = make_model()
    adapted = inject_lora(model, rank=2, alpha=2, targets=("att.qkv",))
    assert adapted == [f"trf_blocks.{i}.att.qkv" for i in range(model.cfg.n_layers)]
    assert isinstance(model.trf_blocks[0].att.qkv, LoRALinear)
    assert not isinstance(model.out_head, LoRALinear)
    with pytest.raises(ScratchError, match="no linear layer matches"):
        inject_lora(make_model(), rank=2, alpha=2, targets=("nothing.here",))


@pytest.mark.parametrize("cfg", [PRESETS["test-tiny"], TIED], ids=["untied", "tied"])
def test_merged_model_gives_the_logits_of_base_plus_adapter(cfg):
    model = make_model(cfg)
    emb_before = model.tok_emb.weight.detach().clone()
    inject_lora(model, rank=4, alpha=16)
    randomize_adapters(model)
    with_adapter = model(IDS)
    assert not torch.allclose(with_adapter, make_model(cfg)(IDS))  # the adapter really changes the output
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    torch.testing.assert_close(model(IDS), with_adapter, rtol=1e-5, atol=1e-5)
    # The shared embedding is untouched: only the (now separate) head took the change.
    assert torch.equal(model.tok_emb.weight, emb_before)
    assert model.cfg.tie_embeddings is False
    assert all(p.requires_grad for p in model.parameters())


def test_training_moves_only_the_adapters_even_with_a_tied_head():
    model = make_model(TIED).train()
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    inject_lora(model, rank=2, alpha=4)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        logits = model(IDS[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), IDS[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    state = model.state_dict()
    for name, value in frozen.items():
        assert torch.equal(state[name], value), name
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if n.endswith("lora_B"))


def test_adapter_file_holds_only_adapter_weights_and_names_its_base(tmp_path):
    base = make_model(TIED)
    base_path = save_checkpoint(tmp_path / "base.safetensors", base, kind="base")
    inject_lora(base, rank=2, alpha=4)
    randomize_adapters(base)
    adapter_path = save_lora_adapter(tmp_path / "adapter.safetensors", base, base_path,
                                     model_kind="instruct", template="alpaca")
    with safe_open(str(adapter_path), "pt") as f:
        names = set(f.keys())
    assert names == set(lora_tensors(base))
    assert all(n.endswith(("lora_A", "lora_B")) for n in names)
    assert adapter_path.stat().st_size < base_path.stat().st_size / 5
    meta = read_metadata(adapter_path)
    assert meta["kind"] == "lora-adapter"
    assert meta["base"] == str(base_path.resolve())
    assert meta["lora_rank"] == 2 and meta["lora_alpha"] == 4.0 and meta["template"] == "alpaca"


def test_loading_an_adapter_applies_it_to_its_base(tmp_path):
    model = make_model(TIED)
    base_path = save_checkpoint(tmp_path / "base.safetensors", model, kind="base")
    inject_lora(model, rank=2, alpha=4, targets=("att.qkv", "out_head"))
    randomize_adapters(model)
    expected = model(IDS)
    adapter_path = save_lora_adapter(tmp_path / "adapter.safetensors", model, base_path)
    loaded, meta = load_lora_adapter(adapter_path)
    torch.testing.assert_close(loaded(IDS), expected)
    merged, _ = load_lora_adapter(adapter_path, merge=True)
    torch.testing.assert_close(merged(IDS), expected, rtol=1e-5, atol=1e-5)


def test_classifier_adapter_carries_its_new_head(tmp_path):
    model = make_model()
    base_path = save_checkpoint(tmp_path / "base.safetensors", model, kind="base")
    to_classifier(model, 2)
    inject_lora(model, rank=2, alpha=4, targets=("att.qkv",), train_also=("out_head",))
    randomize_adapters(model)
    adapter_path = save_lora_adapter(tmp_path / "spam.safetensors", model, base_path, model_kind="classifier")
    loaded, _ = load_lora_adapter(adapter_path)
    assert loaded.cfg.n_classes == 2
    torch.testing.assert_close(loaded(IDS), model(IDS))


def test_missing_or_changed_base_is_a_clear_error(tmp_path):
    model = make_model()
    base_path = save_checkpoint(tmp_path / "base.safetensors", model, kind="base")
    inject_lora(model, rank=2, alpha=4)
    adapter_path = save_lora_adapter(tmp_path / "adapter.safetensors", model, base_path)

    save_checkpoint(base_path, make_model(seed=7), kind="base")  # a different model under the same name
    with pytest.raises(ScratchError, match="is not the base model adapter adapter.safetensors was trained on"):
        load_lora_adapter(adapter_path)

    base_path.unlink()
    with pytest.raises(ScratchError, match="the base model of adapter .* is missing"):
        load_lora_adapter(adapter_path)


def test_bad_rank_and_alpha_are_rejected():
    with pytest.raises(ScratchError, match="rank must be a whole number >= 1"):
        inject_lora(make_model(), rank=0, alpha=1)
    with pytest.raises(ScratchError, match="alpha must be a number > 0"):
        inject_lora(make_model(), rank=2, alpha=-1)


def test_default_targets_are_every_linear_layer_of_the_gpt():
    model = make_model()
    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert sorted(inject_lora(model, 1, 1, DEFAULT_TARGETS)) == sorted(linear)


def test_cli_lora_merge_writes_an_ordinary_checkpoint_of_the_adapters_kind(tmp_path, capsys):
    from chatgpt_scratch.checkpoints import load_checkpoint
    from chatgpt_scratch.cli import main

    model = make_model(TIED)
    base_path = save_checkpoint(tmp_path / "base.safetensors", model, kind="base")
    inject_lora(model, rank=2, alpha=4)
    randomize_adapters(model)
    expected = model(IDS)
    adapter_path = save_lora_adapter(tmp_path / "a.lora.safetensors", model, base_path,
                                     model_kind="instruct", template="phi3")
    assert main(["lora", "merge", str(adapter_path), "--out", str(tmp_path / "merged")]) == 0
    merged, meta = load_checkpoint(tmp_path / "merged.safetensors", kind="instruct")
    assert meta["template"] == "phi3" and meta["parent"] == str(base_path.resolve())
    torch.testing.assert_close(merged(IDS), expected, rtol=1e-5, atol=1e-5)
    assert main(["lora", "merge", str(adapter_path), "--out", str(tmp_path / "merged")]) == 1
    assert "merged.safetensors already exists" in capsys.readouterr().err


def test_merge_adapter_file_names_base_as_parent_and_knows_a_classifier_without_model_kind(tmp_path):
    """An adapter header without model_kind (older files) still merges into a classifier when the model has a
    class head; the merged header names the base as parent and the adapter as merged_from."""
    from chatgpt_scratch.checkpoints import load_checkpoint
    from chatgpt_scratch.lora import merge_adapter_file

    model = make_model()
    base_path = save_checkpoint(tmp_path / "base.safetensors", model, kind="base")
    to_classifier(model, 2)
    inject_lora(model, rank=2, alpha=4, train_also=("out_head",))
    randomize_adapters(model)
    expected = model(IDS)
    adapter = save_lora_adapter(tmp_path / "spam.lora.safetensors", model, base_path, labels=["ham", "spam"])
    out, kind = merge_adapter_file(adapter, tmp_path / "spam-merged")
    merged, meta = load_checkpoint(out, kind="classifier")
    assert kind == "classifier" and out.name == "spam-merged.safetensors"
    assert meta["parent"] == str(base_path.resolve()) and meta["merged_from"] == str(adapter.resolve())
    assert meta["labels"] == ["ham", "spam"] and "base_sha256" not in meta and "lora_layers" not in meta
    torch.testing.assert_close(merged(IDS), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ScratchError, match="already exists"):
        merge_adapter_file(adapter, out)
