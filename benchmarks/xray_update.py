"""Model X-ray: time per update for a sentence on GPT-2 124M (random weights), vs transformers.

An "update" is what the X-ray screen does when the text changes: one forward pass
recording attention and the residual stream, then every view (tokens, next-token
stages under temperature/top-k/top-p, attention of one layer/head and the
selected token's top keys, logit lens at the last token, per-token loss).
A "settings update" (sampling or layer/head changed) reuses the stored pass.

The peer is Hugging Face transformers' GPT2LMHeadModel on the same weights, asked
for the same raw material (output_attentions + output_hidden_states), followed by
the same derived numbers (softmax top-10, logit lens via ln_f + lm_head at the last
token, per-token cross-entropy). Rows are timed in interleaved rounds so a shared
machine slows them alike; the median counts. Besides wall time the table gives the
CPU time the process used: on a machine busy with other work, wall time grows
but CPU time stays near what the update costs (wall ≈ CPU / threads when idle).

    nice -n 5 python benchmarks/xray_update.py
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from chatgpt_scratch.usecases import xray as X
from chatgpt_scratch.generation import SamplingConfig
from chatgpt_scratch.tokenizer import encode

SENTENCE = "The quick brown fox jumps over the lazy dog, and then it runs back into the forest to find its friends."


def load_models():
    """Our GPT-2 124M and transformers' with identical random weights."""
    import sys
    from transformers import GPT2Config, GPT2LMHeadModel

    sys.path.insert(0, os.path.dirname(__file__))
    from generate import hf_to_ours  # the weight mapping the generation benchmark already uses

    torch.manual_seed(0)
    # eager attention: the implementation that can return attention weights
    hf = GPT2LMHeadModel._from_config(GPT2Config(), attn_implementation="eager").eval()
    ours = hf_to_ours(hf).eval()
    return ours, hf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    ours, hf = load_models()
    ids = encode(SENTENCE)
    sampling = SamplingConfig(temperature=0.8, top_k=40, top_p=0.95)
    batch = torch.tensor([ids])

    def full_update():
        ray = X.xray(ours, ids)
        return views(ray)

    def views(ray):
        X.tokens_of_ids(ray.ids)
        nxt = X.next_token_view(ray, sampling, 10)
        X.attention_matrix(ray, 11, None).tolist()
        X.top_attended(ray, 11, None, len(ids) - 1)
        X.logit_lens(ray)
        X.loss_view(ray)
        return nxt

    stored = X.xray(ours, ids)

    def settings_update():
        return views(stored)

    @torch.no_grad()
    def plain_forward():
        return ours(batch)

    @torch.no_grad()
    def transformers_update():
        out = hf(batch, output_attentions=True, output_hidden_states=True)
        logits = out.logits[0]
        torch.topk(torch.softmax(logits[-1], -1), 10)
        lens = hf.lm_head(hf.transformer.ln_f(torch.stack([h[0, -1] for h in out.hidden_states[:-1]])))
        torch.softmax(lens, -1).max(-1)
        F.cross_entropy(logits[:-1], batch[0, 1:], reduction="none").tolist()
        out.attentions[11][0].mean(0).tolist()
        return logits

    # Same function: our next-token distribution and transformers' agree.
    ours_top = [c.id for c in X.next_token_view(stored, SamplingConfig(temperature=1.0), 10).candidates]
    with torch.no_grad():
        hf_top = torch.topk(hf(batch).logits[0, -1], 10).indices.tolist()
    rows = {"ours: full update (forward + all views)": full_update,
            "ours: settings update (views only)": settings_update,
            "ours: plain forward, nothing recorded": plain_forward,
            "transformers: forward + attentions + hidden states + same numbers": transformers_update}
    times: dict[str, list[float]] = {name: [] for name in rows}
    cpu: dict[str, list[float]] = {name: [] for name in rows}
    for fn in rows.values():  # warm-up
        fn()
    for _ in range(args.rounds):
        for name, fn in rows.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)

    peer = statistics.median(times["transformers: forward + attentions + hidden states + same numbers"])
    print(f"GPT-2 124M (random weights), {len(ids)}-token sentence, CPU, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores visible, load average {os.getloadavg()[0]:.1f}; "
          f"median of {args.rounds} interleaved rounds")
    print(f"top-10 next tokens identical to transformers: {ours_top == hf_top}")
    print(f"{'row':<70}{'wall ms':>9}{'CPU ms':>9}{'wall vs transformers':>22}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:<70}{m * 1000:9.1f}{statistics.median(cpu[name]) * 1000:9.1f}{m / peer:21.2f}x")


if __name__ == "__main__":
    main()
