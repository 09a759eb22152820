"""Generation speed: our GPT-2 124M with a KV cache vs Hugging Face transformers' `generate`.

Both models get the same random weights (copied from a transformers GPT2LMHeadModel
into ours), batch 1, a 20-token prompt, 200 new tokens, greedy, KV cache on. The
peer is timed in the same run; the table gives tokens/s and the ratio to it.
Rows are timed in interleaved rounds (each round runs every row once), so a
machine shared with other work slows all rows alike; the median round counts.
The check column says whether ours and transformers picked the same greedy tokens.

Our fp32 and bf16 rows run what chat runs: each Linear in the faster CPU layout for this machine
(inference.fast_cpu_linears: the weight stored transposed where that multiplies one token faster);
fp32-plain and bf16-plain keep nn.Linear's layout, to show what that buys.

llama.cpp rows (CPU only; when llama-cpp-python is installed, else skipped with a note): the same
weights saved as a checkpoint and written by our own `export-gguf` in f32, f16 and q8_0, loaded
with llama_cpp.Llama (--llama-threads, default 2) and run greedy from the same prompt token ids.
Their check says whether llama.cpp's greedy tokens equal ours (float32): the proof that a real
client runs the exported file as we do. Our rows also get a ratio to their llama.cpp counterpart
(float32 : f32, bfloat16/float16 : f16, int8 : q8_0).

--model CHECKPOINT runs the same rows on a trained checkpoint instead (e.g. the shipped default
instruct model; no transformers row then: the float32 row is the reference). After the table, the
ratio rows: ours float32 : llama.cpp f32, bfloat16 : f16, int8 : q8_0 (and int4 : q8_0 when asked).

Weight-only rows (chatgpt_scratch/quantize.py, through inference.quantize_weights): int8w keeps float32
activations and multiplies by int8 weights (one scale per row); int4 by 4-bit weights in groups of 32;
int8w-bf16 / int4-bf16 run the same weights with bfloat16 activations (PyTorch's weight-only CPU kernels
are vectorized for bf16 activations; with float32 ones they are several times slower).

    nice -n 5 python benchmarks/generate.py            # CPU, every row
    nice -n 5 python benchmarks/generate.py --model checkpoints/default-instruct.safetensors
    python benchmarks/generate.py --device cuda        # on a GPU machine
    pip install llama-cpp-python                       # compiles llama.cpp (minutes); adds the llama.cpp rows
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from chatgpt_scratch.compiled_decode import attach_decoder
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.generation import SamplingConfig, generate
from chatgpt_scratch.model import GPTModel
from chatgpt_scratch.usecases.inference import fast_cpu_linears, load_for_inference, quantize_int8, quantize_weights


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


LLAMA_ROWS = {"llama-f32": "f32", "llama-f16": "f16", "llama-q8_0": "q8_0"}
# Our row -> the llama.cpp row with the same kind of weights, for the "vs llama.cpp" ratio.
LLAMA_PEER = {"fp32": "llama-f32", "bf16": "llama-f16", "fp16": "llama-f16", "int8": "llama-q8_0",
              "int8w": "llama-q8_0", "int4": "llama-q8_0",
              "int8w-bf16": "llama-q8_0", "int4-bf16": "llama-q8_0",
              "fp32-compiled": "llama-f32", "bf16w-compiled": "llama-f16", "int8w-compiled": "llama-q8_0"}
# Rows that run generation with a compiled decode step (compiled_decode.py), and its weights.
COMPILED_ROWS = {"fp32-compiled": "float32", "bf16w-compiled": "bfloat16", "int8w-compiled": "int8"}
# The ratio rows printed under the table: (our row, llama.cpp row), the same kind of weights.
RATIO_ROWS = [("fp32-compiled", "llama-f32"), ("bf16w-compiled", "llama-f16"), ("int8w-compiled", "llama-q8_0"),
              ("fp32", "llama-f32"), ("bf16", "llama-f16"), ("int8", "llama-q8_0"), ("int8w", "llama-q8_0"),
              ("int8w-bf16", "llama-q8_0"), ("int4", "llama-q8_0"), ("int4-bf16", "llama-q8_0")]


def llama_cpp_module():
    """llama_cpp if llama-cpp-python is installed, else None."""
    try:
        import llama_cpp
    except ImportError:
        return None
    return llama_cpp


def export_for_llama_cpp(model: GPTModel, folder: Path, types: list[str], checkpoint: str | None = None) -> dict[str, Path]:
    """A checkpoint -> `export-gguf` files, one per GGUF type (what a user would run): --model's file as it
    is, or the random GPT-2 weights saved as a checkpoint first."""
    from chatgpt_scratch.checkpoints import save_checkpoint
    from chatgpt_scratch.usecases.gguf_export import export_gguf

    ckpt = Path(checkpoint) if checkpoint else save_checkpoint(folder / "gpt2-random.safetensors", model, kind="base")
    return {t: export_gguf(ckpt, folder / f"{ckpt.stem}-{t}.gguf", t, modelfile=False).path for t in types}


def llama_runner(llama_cpp, path: Path, prompt: list[int], n_new: int, threads: int, n_ctx: int):
    """Greedy generation of n_new tokens with llama.cpp, from prompt token ids (no tokenizer involved)."""
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                          n_gpu_layers=0, seed=0, verbose=False)

    def run():
        llm.reset()  # no reuse of the previous round's prompt: every round evaluates it again
        out = []
        for token in llm.generate(prompt, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                                  reset=True):
            out.append(int(token))
            if len(out) == n_new:
                break
        return out
    return run


def timed(fn) -> tuple[float, list[int]]:
    start = time.perf_counter()
    tokens = fn()
    return time.perf_counter() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="gpt2-random",
                        help="gpt2-random (GPT-2 124M, random weights, with the transformers rows) or a checkpoint "
                        "path, e.g. checkpoints/default-instruct.safetensors")
    parser.add_argument("--prompt-tokens", type=int, default=20)
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--rows", default="hf,fp32-plain,fp32,fp32-compiled,bf16,bf16w-compiled,int8,int8w-compiled,"
                        "llama-f32,llama-f16,llama-q8_0",
                        help="comma list of: hf, fp32, fp32-plain, fp32-compiled, nocache, bf16, bf16-plain, "
                        "bf16w-compiled, fp16, int8, int8w-compiled, int8w, int4, "
                        "int8w-bf16, int4-bf16, hf-bf16, llama-f32, llama-f16, llama-q8_0 (the llama.cpp rows need "
                        "llama-cpp-python; skipped without it)")
    parser.add_argument("--llama-threads", type=int, default=2, help="llama.cpp threads (default: 2)")
    args = parser.parse_args()

    from transformers import GPT2Config, GPT2LMHeadModel

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    checkpoint = None if args.model == "gpt2-random" else Path(args.model)
    if checkpoint is None:
        hf = GPT2LMHeadModel(GPT2Config()).eval()
        ours = hf_to_ours(hf)

        def fresh() -> GPTModel:  # a float32 copy on the CPU for the rows that convert it
            return hf_to_ours(hf.cpu())
        title = "GPT-2 124M (random weights)"
    else:
        hf = None
        ours = load_for_inference(checkpoint, dtype=torch.float32, kind=("base", "instruct"))[0]

        def fresh() -> GPTModel:
            return load_for_inference(checkpoint, dtype=torch.float32)[0]
        title = f"{checkpoint} ({ours.num_parameters() / 1e6:.1f}M parameters)"
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
        run.model = model
        return run

    row_names = args.rows.split(",")
    llama_wanted = [name for name in row_names if name in LLAMA_ROWS]
    llama_cpp = llama_cpp_module() if llama_wanted else None
    gguf_files: dict[str, Path] = {}
    work = tempfile.TemporaryDirectory(prefix="generate-bench-")
    if llama_wanted and llama_cpp is None:
        print("llama.cpp rows skipped: llama-cpp-python is not installed (pip install llama-cpp-python)")
    elif llama_wanted and device.type != "cpu":
        print("llama.cpp rows skipped: they compare CPU speed (run with --device cpu)")
        llama_cpp = None
    elif llama_wanted:
        gguf_files = export_for_llama_cpp(ours, Path(work.name), [LLAMA_ROWS[n] for n in llama_wanted], checkpoint)

    runners = {}  # name -> (label, run)
    for name in row_names:
        if name in LLAMA_ROWS:
            if llama_cpp is None:
                continue
            type_name = LLAMA_ROWS[name]
            runner = llama_runner(llama_cpp, gguf_files[type_name], prompt, n_new, args.llama_threads,
                                  n_ctx=ours.cfg.context_length)
            label = f"llama.cpp {llama_cpp.__version__}, our export-gguf {type_name}"
        elif name in ("hf", "hf-bf16") and hf is None:
            continue  # transformers rows: GPT-2 random weights only
        elif name == "hf":
            runner, label = hf_runner(hf.to(device)), "transformers GPT2LMHeadModel.generate, float32"
        elif name == "hf-bf16":
            runner, label = hf_runner(copy.deepcopy(hf).to(device, torch.bfloat16)), "transformers generate, bfloat16 weights"
        elif name == "fp32":  # what chat and generate run: the faster CPU layout of each Linear
            model = fast_cpu_linears(fresh()).to(device) if device.type == "cpu" else ours.to(device)
            runner, label = ours_runner(model), "ours, KV cache, float32"
        elif name in COMPILED_ROWS:  # what chat --compile runs (the first, untimed run compiles)
            if device.type != "cpu":
                continue
            model = fresh()
            attach_decoder(model, COMPILED_ROWS[name])
            weights = {"float32": "float32", "bfloat16": "bf16 weights", "int8": "int8 weights (per row)"}
            runner = ours_runner(model)
            label = f"ours, compiled decode step, {weights[COMPILED_ROWS[name]]}"
        elif name == "fp32-plain":
            runner, label = ours_runner(ours.to(device)), "ours, KV cache, float32, nn.Linear layout"
        elif name == "nocache":
            runner, label = ours_runner(ours.to(device), use_cache=False), "ours, no cache (full recompute), float32"
        elif name in ("bf16", "fp16", "bf16-plain"):
            dtype = torch.float16 if name == "fp16" else torch.bfloat16
            model = fresh().to(device, dtype)
            if name != "bf16-plain":
                model = fast_cpu_linears(model)
            runner, label = ours_runner(model), f"ours, KV cache, {dtype}".replace("torch.", "")
            label += ", nn.Linear layout" if name == "bf16-plain" else ""
        elif name == "int8":
            if device.type != "cpu":
                continue
            model = quantize_int8(fresh())
            runner, label = ours_runner(model), "ours, KV cache, int8 dynamic-quantized linears"
        elif name in ("int8w", "int4", "int8w-bf16", "int4-bf16"):
            if device.type != "cpu":
                continue
            bits = 8 if name.startswith("int8") else 4
            activations = torch.bfloat16 if name.endswith("bf16") else torch.float32
            model = quantize_weights(fresh(), bits=bits, group_size=32, dtype=activations)
            label = ("ours, KV cache, int8 weight-only linears (per row)" if bits == 8
                     else "ours, KV cache, int4 weight-only linears (groups of 32)")
            label += ", bf16 activations" if activations == torch.bfloat16 else ""
            runner = ours_runner(model)
        else:
            raise SystemExit(f"unknown row {name!r}")
        if hf is not None:
            hf.to(device)
        runners[name] = (label, runner)

    times: dict[str, list[float]] = {name: [] for name in runners}
    tokens: dict[str, list[int]] = {}
    for name, (label, runner) in runners.items():  # warm-up, and the tokens each row makes
        tokens[name] = runner()
        decoder = getattr(getattr(runner, "model", None), "decoder", None)
        if decoder is not None and decoder.error:
            print(f"{label}: compiling failed, it ran eagerly ({decoder.error})")
        elif decoder is not None:
            print(f"{label}: compiled {decoder.how}" + (f" (ahead of time failed: {decoder.aot_error})"
                                                         if decoder.aot_error else ""))
    for round_ in range(args.repeats):
        for name, (label, runner) in runners.items():
            seconds, _ = timed(runner)
            times[name].append(seconds)
            print(f"  round {round_ + 1}: {label}: {n_new / seconds:.1f} tokens/s", flush=True)

    reference = tokens.get("hf") or tokens.get("fp32")
    ours_fp32 = tokens.get("fp32")
    rows = []  # (name, label, median seconds, check)
    for name, (label, _) in runners.items():
        if name in LLAMA_ROWS:
            if ours_fp32 is None:
                agree = "n/a (add the fp32 row to compare)"
            elif tokens[name] == ours_fp32:
                agree = f"same {n_new} tokens as ours float32"
            else:
                same = sum(a == b for a, b in zip(tokens[name], ours_fp32))
                first = next((i for i, (a, b) in enumerate(zip(tokens[name], ours_fp32)) if a != b), min(
                    len(tokens[name]), len(ours_fp32)))
                agree = f"{same}/{n_new} tokens equal ours float32 (first difference at token {first})"
        elif name in ("hf", "fp32", "nocache", "fp32-plain"):
            if "hf" not in tokens:
                agree = "the reference" if name == "fp32" else (
                    "same tokens as float32" if tokens[name] == reference else "DIFFERENT tokens")
            else:
                agree = "same tokens as transformers" if tokens[name] == reference else "DIFFERENT tokens"
        elif reference is None:
            agree = "n/a (add the fp32 row to compare)"
        else:
            same = sum(a == b for a, b in zip(tokens[name], reference))
            agree = f"{same}/{n_new} tokens equal the float32 ones"
        rows.append((name, label, statistics.median(times[name]), agree))

    peer = next((s for _, label, s, _ in rows if label.startswith("transformers GPT2LMHeadModel")), None)
    median = {name: seconds for name, _, seconds, _ in rows}
    load = os.getloadavg()
    print(f"\n{title}, batch 1, {args.prompt_tokens}-token prompt, {n_new} new tokens, greedy")
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads"
          + (f", llama.cpp {args.llama_threads} threads" if any(n in LLAMA_ROWS for n in median) else "")
          + f", {platform.processor() or platform.machine()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    width = max(50, *(len(label) for _, label, _, _ in rows))
    print(f"\n| {'implementation':<{width}} | tokens/s | vs transformers | vs llama.cpp | check |")
    print(f"|{'-' * (width + 2)}|---------:|----------------:|-------------:|-------|")
    for name, label, seconds, agree in rows:
        ratio = f"{peer / seconds:.2f}x" if peer else "n/a"
        llama_peer = LLAMA_PEER.get(name)
        vs_llama = f"{median[llama_peer] / seconds:.2f}x" if llama_peer in median else ""
        print(f"| {label:<{width}} | {n_new / seconds:8.1f} | {ratio:>15} | {vs_llama:>12} | {agree} |")
    ratios = [(ours_row, peer_row) for ours_row, peer_row in RATIO_ROWS if ours_row in median and peer_row in median]
    if ratios:
        print(f"\nratios to llama.cpp ({title}; > 1 means we are faster):")
        for ours_row, peer_row in ratios:
            print(f"  {runners[ours_row][0].removeprefix('ours, ')} : llama.cpp {LLAMA_ROWS[peer_row]}"
                  f" = {median[peer_row] / median[ours_row]:.2f}x")
    work.cleanup()


if __name__ == "__main__":
    main()
