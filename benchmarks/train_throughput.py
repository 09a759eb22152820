"""Training throughput: our GPTModel vs transformers.GPT2LMHeadModel (sdpa attention), same run.

Both get the same random token batches, the same AdamW (our decay groups, fused on CUDA), the same
autocast (bf16 on CUDA, float32 on CPU unless --dtype bfloat16) and the same torch.compile setting.
Dropout is off in both.
The loss is each model's own training path (--loss inside, the default): ours `model(x, targets=y)`,
transformers `model(input_ids=x, labels=x)` (it shifts the labels itself, so it scores 1023 of the
1024 positions); both compute float32 cross-entropy inside the (compiled) forward. --loss outside
takes logits out of both models and computes the same cross-entropy in eager mode.

    python benchmarks/train_throughput.py                     # GPT-2 124M, context 1024 (a GPU run)
    python benchmarks/train_throughput.py --context 128 --batch 2 --steps 3 --warmup 1   # quick CPU run

MFU (GPU only): FLOPs per token = 6·N + 12·L·d·T (N = parameters without the position
embedding, as nanoGPT; L layers, d width, T context), times tokens/s, over the peak bf16 rate
(989 TFLOP/s dense for an H100/H200 SXM; --peak-tflops for other cards).
"""

from __future__ import annotations

import argparse
import gc
import time

import torch
import torch.nn.functional as F

from chatgpt_scratch.config import get_preset
from chatgpt_scratch.model import GPTModel
from chatgpt_scratch.training.mfu import flops_per_token, peak_flops
from chatgpt_scratch.training.optim import build_optimizer



def build(impl: str, preset: str, context: int, device: torch.device, vocab_multiple: int = 1) -> torch.nn.Module:
    cfg = get_preset(preset).with_(context_length=context, drop_rate=0.0)
    if impl == "ours":
        return GPTModel(cfg.with_(vocab_multiple=vocab_multiple)).to(device)
    from transformers import GPT2Config, GPT2LMHeadModel

    hf_cfg = GPT2Config(vocab_size=cfg.vocab_size, n_positions=context, n_embd=cfg.emb_dim, n_layer=cfg.n_layers,
                        n_head=cfg.n_heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        tie_word_embeddings=cfg.tie_embeddings, attn_implementation="sdpa")
    model = GPT2LMHeadModel(hf_cfg).to(device)
    assert model.config._attn_implementation == "sdpa", model.config._attn_implementation
    return model


def loss_of(impl: str, model, x: torch.Tensor, y: torch.Tensor, inside: bool) -> torch.Tensor:
    if inside:
        return model(x, targets=y) if impl == "ours" else model(input_ids=x, labels=x, use_cache=False).loss
    logits = model(x) if impl == "ours" else model(input_ids=x, use_cache=False).logits
    return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())


def uses_autocast(args, device: torch.device) -> bool:
    return args.dtype == "bfloat16" or (device.type == "cuda" and args.dtype == "auto")


def model_flops_per_token(model: torch.nn.Module, preset: str, context: int) -> float:
    cfg = get_preset(preset)
    if isinstance(model, GPTModel):  # without its padded vocabulary rows
        n_params = model.num_flop_parameters()
    else:
        n_params = sum(p.numel() for p in model.parameters()) - context * cfg.emb_dim  # minus position embedding
    return flops_per_token(n_params, cfg.n_layers, cfg.emb_dim, context)


def measure(impl: str, args, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = build(impl, args.preset, args.context, device, args.vocab_multiple)
    model.train()
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.1)
    step_model = torch.compile(model) if args.compile else model
    amp = uses_autocast(args, device)
    g = torch.Generator().manual_seed(1)
    data = torch.randint(0, 50257, (args.batch, args.context + 1), generator=g).to(device)
    x, y = data[:, :-1], data[:, 1:]

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_of(impl, step_model, x, y, args.loss == "inside")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    t = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync()
    warm_s = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    seconds = time.perf_counter() - t
    tokens_per_s = args.batch * args.context * args.steps / seconds
    result = {"impl": impl, "tokens_per_s": tokens_per_s, "step_ms": 1000 * seconds / args.steps,
              "warmup_s": warm_s, "params": sum(p.numel() for p in model.parameters()),
              "flops_per_token": model_flops_per_token(model, args.preset, args.context)}
    if device.type == "cuda":
        result["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 1e9
        torch.cuda.reset_peak_memory_stats()
    del model, step_model, optimizer
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="gpt2-small")
    p.add_argument("--context", type=int, default=1024)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                   help="auto: bf16 autocast on CUDA, float32 on CPU; bfloat16: bf16 autocast on any device")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile both models (default: on for CUDA, off for CPU)")
    p.add_argument("--loss", default="inside", choices=("inside", "outside"),
                   help="inside: each model computes its loss in its forward (the default); outside: eager, after")
    p.add_argument("--vocab-multiple", type=int, default=1,
                   help="ours only: embedding/head rows rounded up to a multiple (64: 50,304 rows)")
    p.add_argument("--impls", default="ours,hf", help="which to run, in order")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak bf16 TFLOP/s for MFU (default: by GPU name)")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else torch.device(args.device)
    if args.compile is None:
        args.compile = device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        name = torch.cuda.get_device_name()
        peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(name)
    else:
        name, peak = f"CPU ({torch.get_num_threads()} threads)", None
    print(f"device: {name}; torch {torch.__version__}; preset {args.preset}, context {args.context}, batch "
          f"{args.batch}, {args.steps} timed steps after {args.warmup} warm-up; compile={args.compile}; loss {args.loss}; "
          f"vocab multiple (ours) {args.vocab_multiple}; "
          f"autocast={'bf16' if uses_autocast(args, device) else 'off (float32)'}")
    results = [measure(impl, args, device) for impl in args.impls.split(",")]
    print("\n| model | tokens/s | ms/step | MFU | warm-up s | params |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        mfu = f"{100 * r['tokens_per_s'] * r['flops_per_token'] / peak:.1f}%" if peak else "n/a"
        label = "ours (GPTModel)" if r["impl"] == "ours" else "transformers GPT2LMHeadModel (sdpa)"
        print(f"| {label} | {r['tokens_per_s']:,.0f} | {r['step_ms']:.1f} | {mfu} | {r['warmup_s']:.1f} | "
              f"{r['params'] / 1e6:.1f}M |")
    by = {r["impl"]: r for r in results}
    if "ours" in by and "hf" in by:
        print(f"\nratio ours / transformers: {by['ours']['tokens_per_s'] / by['hf']['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
