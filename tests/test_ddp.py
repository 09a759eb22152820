"""DDP: 2 CPU processes (gloo), batch B each, match 1 process with batch 2B: same losses and weights."""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from chatgpt_scratch.config import GPTConfig
from chatgpt_scratch.model import GPTModel
from chatgpt_scratch.training.config import TrainConfig
from chatgpt_scratch.training.events import read_events
from chatgpt_scratch.training.lm_task import LMTask
from chatgpt_scratch.training.trainer import Trainer

CFG = GPTConfig(vocab_size=128, context_length=16, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)
SETTINGS = dict(max_steps=4, lr=3e-3, grad_accum=2, warmup_steps=1, min_lr=1e-4, eval_every=2, eval_batches=None,
                save_every=2, device="cpu", seed=5)


def _task(batch_size: int) -> LMTask:
    ids = (np.arange(3000) * 7 % 101).astype(np.uint16)
    return LMTask(ids, [(0, 2600)], [(2600, 3000)], context=16, stride=16, batch_size=batch_size, seed=9)


def _train(batch_size: int, run_dir, out_file) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    trainer = Trainer(_task(batch_size), GPTModel(CFG), TrainConfig(**SETTINGS), run_dir)
    result = trainer.run()
    if trainer.dist.is_main:
        save_file({k: v.contiguous() for k, v in trainer.model.state_dict().items()}, str(out_file) + ".st")
        (out_file.parent / (out_file.name + ".json")).write_text(json.dumps(result.train_losses))


def _worker(rank: int, world_size: int, store: str, run_dir, out_file) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        _train(batch_size=2, run_dir=run_dir, out_file=out_file)
        # Both ranks finish (rank 0 saves the files) before either tears gloo down: a rank that destroyed
        # its group while the other was still at work once aborted with "terminate called without an
        # active exception" under load.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), tmp_path / "ddp", tmp_path / "ddp_out"), nprocs=2, join=True)
    _train(batch_size=4, run_dir=tmp_path / "single", out_file=tmp_path / "single_out")

    ddp_losses = json.loads((tmp_path / "ddp_out.json").read_text())
    single_losses = json.loads((tmp_path / "single_out.json").read_text())
    assert len(ddp_losses) == 4
    np.testing.assert_allclose(ddp_losses, single_losses, rtol=0, atol=1e-5)
    ddp_w, single_w = load_file(str(tmp_path / "ddp_out.st")), load_file(str(tmp_path / "single_out.st"))
    for name in single_w:
        torch.testing.assert_close(ddp_w[name], single_w[name], rtol=0, atol=1e-5)

    # rank 0 alone wrote the run: one start, one done, tokens counted over both ranks
    events = read_events(tmp_path / "ddp")
    assert [e["type"] for e in events].count("start") == 1 and events[-1]["type"] == "done"
    assert events[0]["world_size"] == 2
    assert events[-1]["tokens_seen"] == 4 * 2 * 4 * 16  # steps x accum x global batch x context
    # all 24 val windows: 12 batches of 2 or 6 of 4, the same mean
    ddp_eval = [e["val_loss"] for e in events if e["type"] == "eval"]
    single_eval = [e["val_loss"] for e in read_events(tmp_path / "single") if e["type"] == "eval"]
    np.testing.assert_allclose(ddp_eval, single_eval, atol=1e-5)
