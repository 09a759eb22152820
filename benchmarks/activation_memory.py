"""Activation checkpointing (--activation-checkpointing): the memory it saves and the time it costs.

For each setting, the same model and batch with and without it:
- activations kept for the backward pass: the distinct storages autograd saves during the forward
  (weights left out), in MiB;
- seconds per forward + backward on this machine (median of --steps, after one warm-up step).

    python benchmarks/activation_memory.py                         # cpu-small and gpt2-small on a CPU
    python benchmarks/activation_memory.py --device cuda --settings gpt2-small:1024:8
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from chatgpt_scratch.config import get_preset
from chatgpt_scratch.model import GPTModel


def saved_activation_bytes(model: GPTModel, idx: torch.Tensor) -> int:
    """Bytes of the distinct non-weight storages autograd keeps from one training forward."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(idx, targets=idx)
    del loss
    return sum(saved.values())


def step_seconds(model: GPTModel, idx: torch.Tensor, steps: int, device: torch.device) -> float:
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        model(idx, targets=idx).backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first is a warm-up
            times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", default="cpu-small:256:8,gpt2-small:256:4,gpt2-small:1024:1",
                   help="comma list of PRESET:CONTEXT:BATCH")
    p.add_argument("--steps", type=int, default=3, help="timed steps per row (default: %(default)s)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    device = torch.device(args.device)

    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, float32")
    print("\n| model | context × batch | activations kept | with checkpointing | memory | time per step | with checkpointing | time |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for setting in args.settings.split(","):
        preset, context, batch = setting.split(":")
        cfg = get_preset(preset).with_(context_length=int(context))
        idx = torch.randint(0, cfg.vocab_size, (int(batch), int(context)), generator=torch.Generator().manual_seed(0))
        idx = idx.to(device)
        row = {}
        for recompute in (False, True):
            torch.manual_seed(0)
            model = GPTModel(cfg).to(device).train()
            model.activation_checkpointing = recompute
            row[recompute] = (saved_activation_bytes(model, idx) / 2**20, step_seconds(model, idx, args.steps, device))
            del model
        (mem_a, t_a), (mem_b, t_b) = row[False], row[True]
        print(f"| {preset} | {context} × {batch} | {mem_a:,.0f} MiB | {mem_b:,.0f} MiB | {mem_b / mem_a:.2f}x | "
              f"{t_a:.2f} s | {t_b:.2f} s | {t_b / t_a:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
