"""Generation speed: our GPT-2 124M with a KV cache vs Hugging Face transformers' `generate`.

Both models get the same random weights (copied from a transformers GPT2LMHeadModel
into ours), batch 1, a 20-token prompt, 200 new tokens, greedy, KV cache on. The
peer is timed in the same run; the table gives tokens/s and the ratio to it.
Rows are timed in interleaved rounds (each round runs every row once), so a
machine shared with other work slows all rows alike; the median round counts.
The check column says whether ours and transformers picked the same greedy tokens.

    nice -n 5 python benchmarks/generate.py            # CPU, every row
    python benchmarks/generate.py --device cuda        # on a GPU machine
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time

import torch

from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.generation import SamplingConfig, generate
from chatgpt_scratch.inference import quantize_int8
from chatgpt_scratch.model import GPTModel


def hf_to_ours(hf_model) -> GPTModel:
    """Copy a transformers GPT-2's weights into our GPTModel (Conv1D weights are stored transposed)."""
    sd = hf_model.transformer.state_dict()
    model = GPTModel(PRESETS["gpt2-small"])
    ours = {"tok_emb.weight": sd["wte.weight"], "pos_emb.weight": sd["wpe.weight"],
            "final_norm.scale": sd["ln_f.weight"], "final_norm.shift": sd["ln_f.bias"]}
    for i in range(model.cfg.n_layers):
        h, b = f"h.{i}.", f"trf_blocks.{i}."
        ours |= {
            b + "norm1.scale": sd[h + "ln_1.weight"], b + "norm1.shift": sd[h + "ln_1.bias"],
            b + "att.qkv.weight": sd[h + "attn.c_attn.weight"].T, b + "att.qkv.bias": sd[h + "attn.c_attn.bias"],
            b + "att.out_proj.weight": sd[h + "attn.c_proj.weight"].T, b + "att.out_proj.bias": sd[h + "attn.c_proj.bias"],
            b + "norm2.scale": sd[h + "ln_2.weight"], b + "norm2.shift": sd[h + "ln_2.bias"],
            b + "ff.layers.0.weight": sd[h + "mlp.c_fc.weight"].T, b + "ff.layers.0.bias": sd[h + "mlp.c_fc.bias"],
            b + "ff.layers.2.weight": sd[h + "mlp.c_proj.weight"].T, b + "ff.layers.2.bias": sd[h + "mlp.c_proj.bias"],
        }
    missing, unexpected = model.load_state_dict(ours, strict=False)
    assert not unexpected and set(missing) <= {"out_head.weight"}, (missing, unexpected)
    return model.eval()


def timed(fn) -> tuple[float, list[int]]:
    start = time.perf_counter()
    tokens = fn()
    return time.perf_counter() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--prompt-tokens", type=int, default=20)
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--rows", default="hf,fp32,bf16,int8",
                        help="comma list of: hf, fp32, nocache, bf16, fp16, int8, hf-bf16")
    args = parser.parse_args()

    from transformers import GPT2Config, GPT2LMHeadModel

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    hf = GPT2LMHeadModel(GPT2Config()).eval()
    ours = hf_to_ours(hf)
    prompt = torch.randint(0, 50257, (1, args.prompt_tokens), generator=torch.Generator().manual_seed(1)).tolist()[0]
    n_new = args.new_tokens
    sampling = SamplingConfig(max_new_tokens=n_new)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def hf_runner(model):
        ids = torch.tensor([prompt], device=device)
        mask = torch.ones_like(ids)

        def run():
            with torch.inference_mode():
                out = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=n_new,
                                     min_new_tokens=n_new, use_cache=True, pad_token_id=50256)
            sync()
            return out[0, len(prompt):].tolist()
        return run

    def ours_runner(model, use_cache=True):
        def run():
            tokens = list(generate(model, prompt, sampling, stop_ids=(), use_cache=use_cache))
            sync()
            return tokens
        return run

    runners = {}  # name -> (label, run)
    for name in args.rows.split(","):
        if name == "hf":
            runner, label = hf_runner(hf.to(device)), "transformers GPT2LMHeadModel.generate, float32"
        elif name == "hf-bf16":
            runner, label = hf_runner(copy.deepcopy(hf).to(device, torch.bfloat16)), "transformers generate, bfloat16 weights"
        elif name == "fp32":
            runner, label = ours_runner(ours.to(device)), "ours, KV cache, float32"
        elif name == "nocache":
            runner, label = ours_runner(ours.to(device), use_cache=False), "ours, no cache (full recompute), float32"
        elif name in ("bf16", "fp16"):
            dtype = torch.bfloat16 if name == "bf16" else torch.float16
            model = hf_to_ours(hf.cpu()).to(device, dtype)
            runner, label = ours_runner(model), f"ours, KV cache, {dtype}".replace("torch.", "")
        elif name == "int8":
            if device.type != "cpu":
                continue
            model = quantize_int8(hf_to_ours(hf.cpu()))
            runner, label = ours_runner(model), "ours, KV cache, int8 dynamic-quantized linears"
        else:
            raise SystemExit(f"unknown row {name!r}")
        hf.to(device)
        runners[name] = (label, runner)

    times: dict[str, list[float]] = {name: [] for name in runners}
    tokens: dict[str, list[int]] = {}
    for name, (label, runner) in runners.items():  # warm-up, and the tokens each row makes
        tokens[name] = runner()
    for round_ in range(args.repeats):
        for name, (label, runner) in runners.items():
            seconds, _ = timed(runner)
            times[name].append(seconds)
            print(f"  round {round_ + 1}: {label}: {n_new / seconds:.1f} tokens/s", flush=True)

    reference = tokens.get("hf") or tokens.get("fp32")
    rows = []  # (label, median seconds, check)
    for name, (label, _) in runners.items():
        if name in ("hf", "fp32", "nocache"):
            agree = "same tokens as transformers" if tokens[name] == reference else "DIFFERENT tokens"
        else:
            same = sum(a == b for a, b in zip(tokens[name], reference))
            agree = f"{same}/{n_new} tokens equal the float32 ones"
        rows.append((label, statistics.median(times[name]), agree))

    peer = next((s for label, s, _ in rows if label.startswith("transformers GPT2LMHeadModel")), None)
    load = os.getloadavg()
    print(f"\nGPT-2 124M (random weights), batch 1, {args.prompt_tokens}-token prompt, {n_new} new tokens, greedy")
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"\n| {'implementation':<50} | tokens/s | vs transformers | check |")
    print(f"|{'-' * 52}|---------:|----------------:|-------|")
    for label, seconds, agree in rows:
        ratio = f"{peer / seconds:.2f}x" if peer else "n/a"
        print(f"| {label:<50} | {n_new / seconds:8.1f} | {ratio:>15} | {agree} |")


if __name__ == "__main__":
    main()
