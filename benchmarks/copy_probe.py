"""Can a base model copy from its context? The loss on a span the first time it appears and when it repeats.

    python benchmarks/copy_probe.py CHECKPOINT [CHECKPOINT ...] [--text datasets/the-verdict.txt] [--spans 12]

For each of --spans random places in --text: a 40-token span A, the 20 tokens B after it, then A again
(A B A, as `pretrain --copy-fraction` builds). A model that copies (induction heads) predicts the second A
far better than the first; one that does not sees no difference (or worse). Prints both mean losses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def probe(path: str, ids: list[int], spans: int, seed: int = 0) -> tuple[float, float]:
    import numpy as np
    import torch

    from chatgpt_scratch.usecases.inference import load_for_inference

    model, _ = load_for_inference(path, kind="base", dtype=torch.float32)
    rng = np.random.default_rng(seed)
    first, again = [], []
    with torch.no_grad():
        for _ in range(spans):
            s = int(rng.integers(0, len(ids) - 300))
            a, b = ids[s:s + 40], ids[s + 40:s + 60]
            seq = torch.tensor([a + b + a])
            logp = torch.log_softmax(model(seq)[0, :-1].float(), dim=-1)
            target = seq[0, 1:]
            nll = -logp[torch.arange(len(target)), target]
            first.append(nll[1:39].mean().item())  # A's tokens after its first (nothing to copy yet)
            again.append(nll[61:99].mean().item())  # the same tokens when A repeats
    return float(np.mean(first)), float(np.mean(again))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--text", default=str(Path(__file__).resolve().parents[1] / "datasets" / "the-verdict.txt"))
    p.add_argument("--spans", type=int, default=12)
    args = p.parse_args()
    from chatgpt_scratch.tokenizer import get_tokenizer

    ids = get_tokenizer().encode(Path(args.text).read_text(encoding="utf-8"))
    print(f"{args.spans} spans of {args.text}: mean loss on A's tokens, first time and repeated (A B A)\n")
    print("| checkpoint | first A | repeated A | difference |\n|---|---:|---:|---:|")
    for path in args.checkpoints:
        first, again = probe(path, ids, args.spans)
        print(f"| {Path(path).name} | {first:.3f} | {again:.3f} | {first - again:+.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
