"""pretrain --copy-fraction: windows that repeat a span of their own text, so a small model learns to copy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from chatgpt_scratch.config import get_preset
from chatgpt_scratch.data.corpus import windows
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.model import GPTModel
from chatgpt_scratch.training.lm_task import LMTask, repeat_spans


def test_repeat_spans_is_a_then_gap_then_a_again_and_keeps_the_length():
    block = np.arange(1000, 1257)  # 257 distinct tokens: every position says where it came from
    for seed in range(20):
        out = repeat_spans(block, np.random.default_rng(seed))
        assert len(out) == len(block)
        j = int(np.flatnonzero(out[1:] == block[0])[0]) + 1  # where A starts again (= len(A) + len(B))
        mismatch = np.flatnonzero(out[j:] != block[:len(block) - j])
        if not len(mismatch):  # B empty, or the window ends inside the second A: A B is the first j tokens
            assert 32 <= j < 128 + 32 and (out[:j] == block[:j]).all()
            continue
        a = int(mismatch[0])
        gap = j - a
        assert 32 <= a < 128 and 0 <= gap < 32
        assert (out[:j] == block[:j]).all()  # A, then the text that followed it
        assert (out[j:j + a] == block[:a]).all()  # A again
        assert (out[j + a:] == block[j:len(block) - a]).all()  # then the text goes on where B stopped


def _task(copy_fraction, seed=5):
    ids = np.random.default_rng(0).integers(0, 50_000, size=20_000)
    return LMTask(ids, [(0, 18_000)], [(18_000, 20_000)], context=64, stride=64, batch_size=8, seed=seed,
                  copy_fraction=copy_fraction)


def test_batches_are_seeded_so_a_resumed_run_sees_the_same_ones():
    first = [b[0] for b in _task(0.5).train_batches(epoch=1)]
    again = [b[0] for b in _task(0.5).train_batches(epoch=1)]
    other_epoch = [b[0] for b in _task(0.5).train_batches(epoch=2)]
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not all(torch.equal(x, y) for x, y in zip(first, other_epoch))


def test_copy_fraction_rewrites_that_share_of_windows_and_zero_changes_nothing():
    task, plain = _task(0.5), _task(0.0)
    rewritten = total = 0
    for (x, y), (px, py) in zip(task.train_batches(epoch=0), plain.train_batches(epoch=0)):
        assert torch.equal(x[:, 1:], y[:, :-1])  # targets are still the inputs shifted by one
        rewritten += int((x != px).any(dim=1).sum())
        total += len(x)
    assert 0.4 < rewritten / total < 0.6
    starts = plain.train_starts[np.random.default_rng([5, 0]).permutation(len(plain.train_starts))[:8]]
    px, py = next(iter(plain.train_batches(epoch=0)))
    assert np.array_equal(px.numpy(), windows(plain.ids, starts, 64)[0])


def test_bad_copy_fraction_is_a_clear_error():
    with pytest.raises(ScratchError, match="--copy-fraction must be between 0 and 1"):
        _task(1.5)


def test_evaluation_reports_copy_loss_only_with_the_curriculum():
    torch.manual_seed(0)
    model = GPTModel(get_preset("test-tiny")).eval()
    with torch.no_grad():
        assert set(_task(0.3).evaluate(model, max_batches=2)) == {"val_loss", "val_copy_loss", "train_eval_loss"}
        assert "val_copy_loss" not in _task(0.0).evaluate(model, max_batches=2)


def test_the_curriculum_teaches_a_tiny_model_to_copy():
    """Random tokens from 64 symbols: nothing is predictable (loss ln 64 = 4.16) except a repeat. After 800
    steps on copy windows the tiny model predicts the repeated span (its copy loss falls well below ln 64);
    trained as long on the same tokens without the curriculum, it does not."""
    import math

    def copy_loss_after_training(copy_fraction):
        torch.manual_seed(0)
        ids = np.random.default_rng(0).integers(0, 64, size=400_000)
        task = LMTask(ids, [(0, 360_000)], [(360_000, 400_000)], context=32, stride=32, batch_size=16, seed=1,
                      copy_fraction=copy_fraction)
        model = GPTModel(get_preset("test-tiny").with_(vocab_size=64, emb_dim=64))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for batch in itertools.islice(task.train_batches(epoch=0), 800):
            loss = task.loss(model, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return task._mean_loss(model.eval(), task.val_starts, 8, copy=True)

    chance = math.log(64)
    assert copy_loss_after_training(1.0) < chance - 0.1
    assert copy_loss_after_training(0.0) > chance - 0.02
