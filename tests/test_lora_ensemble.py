"""`lora ensemble`: classifier adapters of one base, averaged by probability, loaded wherever a classifier is."""

from __future__ import annotations

import json

import pytest
import torch

from chatgpt_scratch.checkpoints import read_metadata, save_checkpoint
from chatgpt_scratch.cli import main
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.lora import inject_lora, save_lora_adapter
from chatgpt_scratch.model import GPTModel, to_classifier

MESSAGES = ["WINNER!! Claim your free prize now", "see you at 6?", "URGENT call 0800 now to win cash",
            "ok, love you, home soon"]


def _adapter(base, out, seed: int, kind: str = "classifier"):
    """A classifier adapter of `base` whose updates are random (seeded), as if trained: each differs."""
    from chatgpt_scratch.checkpoints import load_checkpoint

    torch.manual_seed(seed)
    model, _ = load_checkpoint(base)
    if kind == "classifier":
        to_classifier(model, 2)
    inject_lora(model, 2, 4.0, targets=("att.qkv", "ff.layers.0"),
                train_also=("out_head",) if kind == "classifier" else ())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(0, 0.5)
    extra = {"labels": ["ham", "spam"], "pool": "mean", "max_length": 32} if kind == "classifier" else {}
    return save_lora_adapter(out, model, base, model_kind=kind, seed=seed, **extra)


@pytest.fixture
def base(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "base.safetensors", GPTModel(PRESETS["test-tiny"]), kind="base")


def _probs(path, capsys) -> list[float]:
    assert main(["classify", "--checkpoint", str(path), "--json", *MESSAGES]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return [row["probs"]["spam"] for row in lines]


def test_an_ensemble_classifies_with_the_mean_of_its_members_probabilities(base, tmp_path, capsys):
    members = [_adapter(base, tmp_path / f"m{s}.lora.safetensors", s) for s in (1, 2, 3)]
    assert main(["lora", "ensemble", *map(str, members), "--out", str(tmp_path / "ens")]) == 0
    ensemble = tmp_path / "ens.safetensors"
    assert "an ensemble of 3 classifier adapters" in capsys.readouterr().err
    each = [_probs(m, capsys) for m in members]
    assert len({tuple(round(p, 4) for p in e) for e in each}) == 3  # the members really differ
    expected = [sum(ps) / 3 for ps in zip(*each)]
    assert _probs(ensemble, capsys) == pytest.approx(expected, abs=1e-5)
    meta = read_metadata(ensemble)
    # What members share is at the top; what differs (their seed) stays with each member.
    assert (meta["kind"], meta["model_kind"], meta["pool"]) == ("lora-adapter", "classifier", "mean")
    assert [m["seed"] for m in meta["ensemble_members"]] == [1, 2, 3] and "seed" not in meta
    assert main(["checkpoints", "info", str(ensemble)]) == 0
    assert "an ensemble of 3 adapters whose probabilities are averaged" in capsys.readouterr().out


def test_an_ensemble_refuses_what_cannot_be_averaged_in_one_line(base, tmp_path, capsys):
    a = _adapter(base, tmp_path / "a.lora.safetensors", 1)
    b = _adapter(base, tmp_path / "b.lora.safetensors", 2)
    torch.manual_seed(9)
    other_base = save_checkpoint(tmp_path / "other.safetensors", GPTModel(PRESETS["test-tiny"]), kind="base")
    c = _adapter(other_base, tmp_path / "c.lora.safetensors", 3)
    lm = _adapter(base, tmp_path / "lm.lora.safetensors", 4, kind="base")
    cases = [
        ([a], "an ensemble needs at least two adapters"),
        ([a, c], "the adapters differ in 'base_sha256'"),
        ([a, lm], "adapts a base model; only classifier adapters average into an ensemble"),
        ([a, base], "is a 'base' checkpoint, but this needs a 'lora-adapter' one"),
    ]
    for members, message in cases:
        assert main(["lora", "ensemble", *map(str, members), "--out", str(tmp_path / "bad")]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "bad.safetensors").exists()
    assert main(["lora", "ensemble", str(a), str(b), "--out", str(tmp_path / "ens")]) == 0
    before = (tmp_path / "ens.safetensors").read_bytes()
    assert main(["lora", "ensemble", str(b), str(a), "--out", str(tmp_path / "ens")]) == 1  # no --force: kept
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "ens.safetensors").read_bytes() == before
    # An ensemble is several models: merging it into one is refused, and the file is left as it was.
    assert main(["lora", "merge", str(tmp_path / "ens.safetensors"), "--out", str(tmp_path / "merged")]) == 1
    err = capsys.readouterr().err
    assert "is an ensemble of 2 classifier adapters, not one model" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "merged.safetensors").exists()


def test_reduce_rank_keeps_the_best_low_rank_part_of_each_update_at_the_same_alpha():
    from chatgpt_scratch.lora import reduce_rank

    torch.manual_seed(0)
    a, b, head = torch.randn(300, 8), torch.randn(8, 20), torch.randn(2, 20)
    kept = reduce_rank({"x.lora_A": a, "x.lora_B": b, "out_head.weight": head}, rank=8, new_rank=3)
    assert kept["x.lora_A"].shape == (300, 3) and kept["x.lora_B"].shape == (3, 20)
    assert torch.equal(kept["out_head.weight"], head)
    u, s, vh = torch.linalg.svd(a @ b, full_matrices=False)
    best = (u[:, :3] * s[:3]) @ vh[:3]  # Eckart-Young: the closest rank-3 matrix
    alpha = 16.0
    assert torch.allclose(alpha / 3 * kept["x.lora_A"] @ kept["x.lora_B"], alpha / 8 * best, atol=1e-3)
    same = reduce_rank({"x.lora_A": a, "x.lora_B": b}, rank=8, new_rank=8)
    assert torch.equal(same["x.lora_A"], a)


def test_an_ensemble_at_a_lower_rank_is_smaller_and_says_what_it_was_trained_at(base, tmp_path, capsys):
    members = [_adapter(base, tmp_path / f"m{s}.lora.safetensors", s) for s in (1, 2)]
    assert main(["lora", "ensemble", *map(str, members), "--out", str(tmp_path / "full")]) == 0
    assert main(["lora", "ensemble", *map(str, members), "--rank", "1", "--out", str(tmp_path / "low")]) == 0
    full, low = tmp_path / "full.safetensors", tmp_path / "low.safetensors"
    assert low.stat().st_size < full.stat().st_size
    meta = read_metadata(low)
    assert [m["lora_rank"] for m in meta["ensemble_members"]] == [1, 1]
    assert meta["lora_rank_trained"] == 2  # the same for both members: at the top of the header
    capsys.readouterr()
    assert len(_probs(low, capsys)) == len(MESSAGES)  # it loads and classifies at its new rank
