"""The Trainer: schedule, decay groups, accumulation, exact resume, NaN stop, best checkpoint, events schema."""

from __future__ import annotations

import contextlib
import math
import os

import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from chatgpt_scratch.checkpoints import read_metadata
from chatgpt_scratch.config import GPTConfig
from chatgpt_scratch.model import GPTModel
from chatgpt_scratch.training.config import TrainConfig
from chatgpt_scratch.training.events import read_events
from chatgpt_scratch.training.lm_task import LMTask
from chatgpt_scratch.training.mfu import flops_per_token, mfu, peak_flops
from chatgpt_scratch.training.optim import lr_at, param_groups
from chatgpt_scratch.training.trainer import Trainer, TrainingDiverged

SMALL = GPTConfig(vocab_size=128, context_length=16, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.1)
# CUDA (where there is a GPU) adds bf16 autocast, the fused AdamW and the CUDA generator to restore.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]

# Required keys per event type (docs/events.md).
SCHEMA = {
    "start": {"task", "run_dir", "total_steps", "step", "device", "world_size", "params", "config", "checkpoint",
              "pid"},
    "step": {"step", "epoch", "tokens_seen", "train_loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s"},
    "eval": {"step", "epoch", "tokens_seen", "elapsed_s", "val_loss", "val_ppl"},
    "sample": {"step", "prompt", "text"},
    "checkpoint": {"step", "path", "reason"},
    "done": {"step", "tokens_seen", "elapsed_s", "checkpoint"},
    "stopped": {"step", "tokens_seen", "elapsed_s", "checkpoint", "run_dir", "reason"},
    "error": {"step", "message"},
}


def make_task(batch_size=4, seed=7, n=1200, stride=8) -> LMTask:
    # A learnable sequence: a repeating pattern with a little noise.
    rng = np.random.default_rng(0)
    ids = (np.arange(n) % 37 + rng.integers(0, 3, n)).astype(np.uint16)
    return LMTask(ids, [(0, 1000)], [(1000, n)], context=16, stride=stride, batch_size=batch_size, seed=seed)


def make_model(seed=0, cfg=SMALL) -> GPTModel:
    torch.manual_seed(seed)
    return GPTModel(cfg)


def cfg(**kw) -> TrainConfig:
    base = dict(max_steps=8, lr=3e-3, eval_every=4, eval_batches=2, device="cpu", seed=11)
    return TrainConfig(**{**base, **kw})


# --- schedule and optimizer groups ------------------------------------------------------------------


def test_warmup_then_cosine_to_floor():
    lrs = [lr_at(s, 10, 1.0, warmup_steps=2, min_lr=0.1) for s in range(10)]
    assert lrs[:2] == [0.5, 1.0]
    assert lrs[2] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))  # decays monotonically
    assert lrs[6] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 4 / 7)))
    assert [lr_at(s, 10, 1.0) for s in range(10)] == [1.0] * 10  # no --min-lr: constant


def test_no_weight_decay_on_biases_norms_embeddings():
    model = GPTModel(SMALL.with_(tie_embeddings=True, qkv_bias=True))
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert {"trf_blocks.0.att.qkv.weight", "trf_blocks.0.att.out_proj.weight"} <= decayed
    assert "trf_blocks.0.ff.layers.0.weight" in decayed
    assert {"tok_emb.weight", "pos_emb.weight", "final_norm.scale", "final_norm.shift",
            "trf_blocks.0.ff.layers.0.bias"} <= kept
    assert not decayed & kept
    assert not any(n.endswith((".bias", ".scale", ".shift")) or "emb" in n for n in decayed)
    # the tied head is the embedding: counted once, not decayed
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


def test_frozen_parameters_are_not_optimized():
    model = GPTModel(SMALL)
    for p in model.trf_blocks.parameters():
        p.requires_grad_(False)
    groups = param_groups(model, 0.1)
    assert sum(len(g["params"]) for g in groups) == len([p for p in model.parameters() if p.requires_grad])


# --- training behaviour ------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_loss_falls_and_files_are_written(tmp_path, device):
    result = Trainer(make_task(), make_model(), cfg(max_steps=20, eval_every=10, device=device), tmp_path / "run",
                     out=tmp_path / "ck" / "m").run()
    assert result.status == "done" and result.step == 20
    assert np.mean(result.train_losses[-5:]) < np.mean(result.train_losses[:5]) - 0.7
    assert (tmp_path / "ck" / "m.safetensors").is_file() and (tmp_path / "ck" / "m.best.safetensors").is_file()
    meta = read_metadata(tmp_path / "ck" / "m.safetensors")
    assert meta["steps"] == 20 and meta["tokens_seen"] == 20 * 4 * 16 and meta["kind"] == "base"
    assert meta["val_loss"] == pytest.approx(result.metrics["val_loss"])
    if device == "cuda" and peak_flops(torch.cuda.get_device_name()):  # a known card: MFU in every step event
        steps = [e for e in read_events(tmp_path / "run") if e["type"] == "step"]
        assert all(0 < e["mfu"] < 1 for e in steps)


def test_events_follow_the_schema(tmp_path):
    Trainer(make_task(), make_model(cfg=SMALL.with_(vocab_size=50257)),
            cfg(max_steps=4, eval_every=2, sample_every=4, sample_tokens=3, save_every=2),
            tmp_path / "run").run()
    events = read_events(tmp_path / "run")
    types = [e["type"] for e in events]
    assert types[0] == "start" and types[-1] == "done"
    assert types.count("step") == 4 and types.count("eval") == 2 and types.count("sample") == 1
    for e in events:
        missing = SCHEMA[e["type"]] - set(e)
        assert not missing, f"{e['type']} event lacks {missing}"
    steps = [e for e in events if e["type"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3, 4]
    assert [e["tokens_seen"] for e in steps] == [64, 128, 192, 256]
    assert events[0]["pid"] == os.getpid()  # lets the TUI stop a run started from a shell
    assert not any("mfu" in e for e in steps)  # CPU: no GPU peak to compare with
    assert all(e["tokens_per_s"] > 0 and math.isfinite(e["train_loss"]) for e in steps)
    evals = [e for e in events if e["type"] == "eval"]
    assert evals[0]["val_ppl"] == pytest.approx(math.exp(evals[0]["val_loss"]))
    reasons = [e["reason"] for e in events if e["type"] == "checkpoint"]
    assert reasons.count("periodic") == 1 and reasons.count("final") == 1 and "best" in reasons


def test_grad_accumulation_equals_a_bigger_batch(tmp_path):
    drop0 = SMALL.with_(drop_rate=0.0)
    a = Trainer(make_task(batch_size=4), make_model(cfg=drop0), cfg(max_steps=5, grad_accum=2), tmp_path / "a")
    ra = a.run()
    b = Trainer(make_task(batch_size=8), make_model(cfg=drop0), cfg(max_steps=5, grad_accum=1), tmp_path / "b")
    rb = b.run()
    np.testing.assert_allclose(ra.train_losses, rb.train_losses, rtol=0, atol=1e-5)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-5)


def test_activation_checkpointing_trains_exactly_as_without(tmp_path):
    # Dropout on: the recomputed blocks must draw the same masks as the forward did.
    runs = [Trainer(make_task(), make_model(), cfg(max_steps=4, activation_checkpointing=c), tmp_path / str(c)).run()
            for c in (False, True)]
    np.testing.assert_allclose(runs[1].train_losses, runs[0].train_losses, rtol=0, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_compiled_training_matches_eager(tmp_path, device):
    # --compile: torch.compile over the whole forward, the loss included (model(x, targets=y)).
    # About 20 s of compilation on a 2-core CPU; the only test that pays for it.
    drop0 = SMALL.with_(drop_rate=0.0)
    runs = [Trainer(make_task(), make_model(cfg=drop0), cfg(max_steps=4, device=device, compile=c), tmp_path / str(c))
            .run() for c in (False, True)]
    tol = 1e-5 if device == "cpu" else 5e-2  # bf16 autocast on CUDA: fused kernels round differently
    np.testing.assert_allclose(runs[1].train_losses, runs[0].train_losses, rtol=0, atol=tol)
    assert runs[1].train_losses[-1] < runs[1].train_losses[0]


@pytest.mark.parametrize("device", DEVICES)
def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path, device):
    # Dropout on, accumulation, cosine schedule and an epoch boundary inside the run:
    # everything that resume must restore (weights, AdamW moments, RNG, data position, step).
    # On CUDA: float32 and the math attention kernel, because flash attention's backward is not
    # bit-reproducible; what CUDA adds to check is the CUDA generator (dropout) and the fused AdamW.
    settings = cfg(max_steps=14, grad_accum=2, warmup_steps=3, min_lr=1e-4, eval_every=5, device=device,
                   dtype="float32")
    with sdpa_kernel(SDPBackend.MATH) if device == "cuda" else contextlib.nullcontext():
        _resume_matches(tmp_path, settings)


def _resume_matches(tmp_path, settings) -> None:
    full = Trainer(make_task(stride=16), make_model(), settings, tmp_path / "full")
    full_result = full.run()
    assert full.steps_per_epoch < 14  # crosses into a second epoch

    first = Trainer(make_task(stride=16), make_model(), settings, tmp_path / "split")
    first.events.listeners.append(lambda e: e["type"] == "step" and e["step"] == 6 and first.request_stop("test"))
    r1 = first.run()
    assert r1.status == "stopped" and r1.step == 6
    stopped = read_events(tmp_path / "split")[-1]
    assert stopped["type"] == "stopped" and stopped["reason"] == "test"

    # A fresh process would build the model from scratch (other init): resume must overwrite all of it.
    second = Trainer(make_task(stride=16), make_model(seed=999), settings, tmp_path / "split", resume=True)
    r2 = second.run()
    assert r2.status == "done" and r2.step == 14
    np.testing.assert_allclose(r1.train_losses + r2.train_losses, full_result.train_losses, rtol=0, atol=1e-6)
    for pa, pb in zip(full.model.parameters(), second.model.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-6)
    evals_full = [e["val_loss"] for e in read_events(tmp_path / "full") if e["type"] == "eval"]
    evals_split = [e["val_loss"] for e in read_events(tmp_path / "split") if e["type"] == "eval"]
    np.testing.assert_allclose(evals_split, evals_full, atol=1e-6)


class NaNAfter:
    """Wraps a task so that the loss becomes NaN from step `bad_step` on (counting micro-batches)."""

    def __init__(self, task, bad_call):
        self.task, self.bad_call, self.calls = task, bad_call, 0

    def __getattr__(self, name):
        return getattr(self.task, name)

    def loss(self, model, batch):
        self.calls += 1
        loss = self.task.loss(model, batch)
        return loss * float("nan") if self.calls >= self.bad_call else loss


def test_nan_loss_stops_with_error_and_keeps_last_good_checkpoint(tmp_path):
    task = NaNAfter(make_task(), bad_call=5)
    trainer = Trainer(task, make_model(), cfg(max_steps=10, save_every=2, eval_every=0), tmp_path / "run",
                      out=tmp_path / "m")
    with pytest.raises(TrainingDiverged, match=r"training diverged at step 5: loss is nan; the last good "
                                               r"checkpoint .*m\.safetensors is kept"):
        trainer.run()
    assert read_metadata(tmp_path / "m.safetensors")["steps"] == 4  # saved at step 4, never overwritten
    last = read_events(tmp_path / "run")[-1]
    assert last["type"] == "error" and last["step"] == 5 and last["loss"] is None
    assert "Lower --lr" in last["message"]


def test_huge_lr_diverges_cleanly(tmp_path):
    trainer = Trainer(make_task(), make_model(), cfg(max_steps=60, lr=1e6, grad_clip=None, eval_every=0),
                      tmp_path / "run")
    with pytest.raises(TrainingDiverged):
        trainer.run()
    assert read_events(tmp_path / "run")[-1]["type"] == "error"


class ScriptedEval:
    """A task whose evals report val_loss from a script, to check the best-checkpoint choice."""

    def __init__(self, task, values):
        self.task, self.values = task, list(values)

    def __getattr__(self, name):
        return getattr(self.task, name)

    def evaluate(self, model, max_batches):
        return {"val_loss": self.values.pop(0)}


def test_best_checkpoint_is_the_lowest_val_loss(tmp_path):
    task = ScriptedEval(make_task(), [3.0, 1.0, 2.0, 2.5])
    Trainer(task, make_model(), cfg(max_steps=8, eval_every=2), tmp_path / "run", out=tmp_path / "m").run()
    best = read_metadata(tmp_path / "m.best.safetensors")
    assert best["steps"] == 4 and best["val_loss"] == 1.0 and best["saved_because"] == "best"
    assert read_metadata(tmp_path / "m.safetensors")["val_loss"] == 2.5


def test_resume_without_state_is_a_clear_error(tmp_path):
    from chatgpt_scratch.errors import ScratchError

    with pytest.raises(ScratchError, match="nothing to resume: .*state.safetensors does not exist"):
        Trainer(make_task(), make_model(), cfg(), tmp_path / "empty", resume=True).run()


def test_too_little_data_is_a_clear_error(tmp_path):
    from chatgpt_scratch.errors import ScratchError

    task = make_task(batch_size=500)
    with pytest.raises(ScratchError, match="too small for one batch; add data or lower --batch-size"):
        Trainer(task, make_model(), cfg(), tmp_path / "run")


def test_loss_plot_has_an_accuracy_panel_only_for_classifiers(tmp_path):
    import json

    from PIL import Image

    from chatgpt_scratch.training.plots import plot_run

    def write(name, with_acc):
        lines = [{"type": "step", "step": s, "epoch": s / 10, "tokens_seen": 100 * s, "train_loss": 5.0 - 0.1 * s}
                 for s in range(1, 11)]
        lines += [{"type": "eval", "step": s, "tokens_seen": 100 * s, "val_loss": 5.5 - 0.1 * s,
                   **({"val_acc": 0.5 + 0.04 * s} if with_acc else {})} for s in (5, 10)]
        path = tmp_path / name / "events.jsonl"
        path.parent.mkdir()
        path.write_text("\n".join(json.dumps(e) for e in lines) + "\n")
        return path

    lm = Image.open(plot_run(write("lm", False), tmp_path / "lm.png"))
    clf = Image.open(plot_run(write("clf", True), tmp_path / "clf.png"))
    assert clf.size[0] == 2 * lm.size[0] and clf.size[1] == lm.size[1]
    empty = tmp_path / "empty" / "events.jsonl"
    empty.parent.mkdir()
    empty.write_text(json.dumps({"type": "start"}) + "\n")
    assert plot_run(empty, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()


# --- MFU --------------------------------------------------------------------------------------------


def test_mfu_by_hand():
    # N=1000, L=2, d=32, T=16: 6*1000 + 12*2*32*16 = 6000 + 12288
    assert flops_per_token(1000, 2, 32, 16) == 18288.0
    # 18288 FLOP/token * 5e6 token/s = 9.144e10 FLOP/s of a 1e12 peak
    assert mfu(18288.0, 5e6, 1e12) == pytest.approx(0.09144, rel=1e-12)
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-40GB") == 312e12
    assert peak_flops("NVIDIA GeForce RTX 3090") is None


def test_trainer_mfu_terms_on_a_cuda_device(tmp_path, monkeypatch):
    # No GPU here: pretend the device is an H100 to check the Trainer's counting (N without pos_emb).
    trainer = Trainer(make_task(), make_model(), cfg(), tmp_path / "run")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    trainer.device = torch.device("cuda")
    n = sum(p.numel() for p in trainer.model.parameters()) - SMALL.context_length * SMALL.emb_dim
    per_token, peak = trainer._mfu_terms()
    assert per_token == 6 * n + 12 * SMALL.n_layers * SMALL.emb_dim * SMALL.context_length
    assert peak == 989e12
    trainer.cfg.peak_tflops = 100.0  # --peak-tflops wins over the lookup
    assert trainer._mfu_terms()[1] == 100e12
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some Other GPU")
    trainer.cfg.peak_tflops = None
    assert trainer._mfu_terms()[1] is None
