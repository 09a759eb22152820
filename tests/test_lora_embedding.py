"""LoRA on the token embedding (lora.LoRAEmbedding): starts as the base, merges to the same function, and a
classifier adapter with it (plus trained norms) round-trips through its file."""

from __future__ import annotations

import torch

from chatgpt_scratch.checkpoints import save_checkpoint
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.lora import LoRAEmbedding, inject_lora, load_lora_adapter, merge_lora, save_lora_adapter
from chatgpt_scratch.model import GPTModel, to_classifier

TINY = PRESETS["test-tiny"].with_(tie_embeddings=True)


def test_embedding_adapter_starts_as_the_base_and_merges_exactly():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    ids = torch.randint(0, TINY.vocab_size, (2, 10))
    before = model(ids)
    inject_lora(model, 4, 8.0, targets=("tok_emb", "att.qkv"))
    assert isinstance(model.tok_emb, LoRAEmbedding)
    torch.testing.assert_close(model(ids), before)  # A starts at zero
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("lora_A", "lora_B")):
                p.normal_(0, 0.05)
    adapted = model(ids)
    assert not torch.allclose(adapted, before)
    # Only the rows of the tokens used change their inputs; the tied head keeps the base matrix.
    merged = merge_lora(model)
    assert not merged.cfg.tie_embeddings
    torch.testing.assert_close(merged(ids), adapted, rtol=1e-5, atol=1e-5)


def test_classifier_adapter_with_embedding_and_norms_round_trips(tmp_path):
    torch.manual_seed(1)
    base = GPTModel(PRESETS["test-tiny"])
    base_path = save_checkpoint(tmp_path / "base.safetensors", base)
    model = to_classifier(GPTModel(PRESETS["test-tiny"]), 2)
    model.load_state_dict({k: v for k, v in base.state_dict().items() if not k.startswith("out_head")}, strict=False)
    inject_lora(model, 4, 4.0, targets=("tok_emb", "att.qkv", "ff.layers.0"),
                train_also=("out_head", "norm1", "norm2", "final_norm", "pos_emb"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    ids = torch.randint(0, 50257, (3, 12))
    expected = model(ids)
    adapter = save_lora_adapter(tmp_path / "spam.lora.safetensors", model, base_path, model_kind="classifier")
    loaded, meta = load_lora_adapter(adapter, merge=True)
    assert "tok_emb" in meta["lora_layers"]
    torch.testing.assert_close(loaded(ids), expected, rtol=1e-5, atol=1e-5)
