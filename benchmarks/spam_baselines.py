"""The shipped spam classifier against two classical baselines, on the same test split, in one run.

- naive Bayes: multinomial, word unigrams + bigrams, Laplace smoothing (counted by hand);
- linear: character 1-5-gram TF-IDF (min document frequency 2, L2-normalised rows) and an L2-regularised
  logistic regression trained full-batch with L-BFGS (torch sparse matmuls, no new dependency);
- ours: a checkpoint (default: the built-in `default-spam`), through SpamClassifier.

The split is the one `finetune-spam --seed 123` makes (stratified 70/10/20); the baselines train on
the train split (their regularisation picked on val), and every row is scored on the test split.

    python benchmarks/spam_baselines.py [--data datasets/SMSSpamCollection] [--checkpoint PATH] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import time
from collections import Counter
from pathlib import Path

import torch

from chatgpt_scratch.classify import classification_metrics
from chatgpt_scratch.data.spam import LABELS, load_messages, stratified_split


def words(text: str) -> list[str]:
    toks = re.findall(r"[a-z0-9£$]+|[!?]", text.lower())
    return toks + [a + " " + b for a, b in zip(toks, toks[1:])]


class NaiveBayes:
    def fit(self, texts, labels):
        self.counts = [Counter(), Counter()]
        self.docs = Counter(labels)
        for text, y in zip(texts, labels):
            self.counts[y].update(words(text))
        self.vocab = set(self.counts[0]) | set(self.counts[1])
        self.totals = [sum(c.values()) for c in self.counts]
        return self

    def predict(self, texts):
        n = sum(self.docs.values())
        out = []
        for text in texts:
            scores = []
            for y in (0, 1):
                s = math.log(self.docs[y] / n)
                denom = self.totals[y] + len(self.vocab)
                for w in words(text):
                    if w in self.vocab:
                        s += math.log((self.counts[y][w] + 1) / denom)
                scores.append(s)
            out.append(int(scores[1] > scores[0]))
        return out


def char_ngrams(text: str, n_max: int = 5) -> Counter:
    text = " " + " ".join(text.lower().split()) + " "
    return Counter(text[i:i + n] for n in range(1, n_max + 1) for i in range(len(text) - n + 1))


class TfidfLogistic:
    def __init__(self, l2: float):
        self.l2 = l2

    def _matrix(self, texts):
        rows, cols, vals = [], [], []
        for r, text in enumerate(texts):
            grams = char_ngrams(text)
            for g, c in grams.items():
                j = self.index.get(g)
                if j is not None:
                    rows.append(r)
                    cols.append(j)
                    vals.append((1 + math.log(c)) * self.idf[j])
        x = torch.sparse_coo_tensor(torch.tensor([rows, cols]), torch.tensor(vals, dtype=torch.float32),
                                    (len(texts), len(self.index))).coalesce()
        norms = torch.zeros(len(texts)).index_add_(0, x.indices()[0], x.values() ** 2).sqrt().clamp_min(1e-12)
        return torch.sparse_coo_tensor(x.indices(), x.values() / norms[x.indices()[0]], x.shape).coalesce()

    def fit(self, texts, labels):
        df = Counter(g for text in texts for g in char_ngrams(text))
        kept = sorted(g for g, c in df.items() if c >= 2)
        self.index = {g: i for i, g in enumerate(kept)}
        n = len(texts)
        self.idf = [math.log((1 + n) / (1 + df[g])) + 1 for g in kept]
        x = self._matrix(texts)
        y = torch.tensor(labels, dtype=torch.float32)
        self.w = torch.zeros(len(kept), requires_grad=True)
        self.b = torch.zeros(1, requires_grad=True)
        opt = torch.optim.LBFGS([self.w, self.b], max_iter=300, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            logits = torch.sparse.mm(x, self.w[:, None]).squeeze(1) + self.b
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y) + self.l2 * (self.w ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return self

    def predict(self, texts):
        with torch.no_grad():
            logits = torch.sparse.mm(self._matrix(texts), self.w[:, None]).squeeze(1) + self.b
        return (logits > 0).long().tolist()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="sms-spam", help="SMS data (path or dataset name; default: sms-spam)")
    p.add_argument("--checkpoint", default=None, help="our classifier (default: the built-in default-spam)")
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--out", type=Path, default=None, help="also write the table as Markdown to this file")
    args = p.parse_args()

    from chatgpt_scratch.checkpoints import default_checkpoint
    from chatgpt_scratch.classify import SpamClassifier
    from chatgpt_scratch.data.registry import resolve_dataset

    messages = load_messages(resolve_dataset(args.data))
    splits = stratified_split(messages, (0.7, 0.1, 0.2), args.seed)
    spam = LABELS.index("spam")

    def xy(split):
        return [m.text for m in split], [int(m.label == spam) for m in split]

    (xtr, ytr), (xva, yva), (xte, yte) = xy(splits.train), xy(splits.val), xy(splits.test)
    rows = []

    def score(name, fit, predict):
        t0 = time.perf_counter()
        fit()
        t1 = time.perf_counter()
        pred = predict(xte)
        t2 = time.perf_counter()
        m = classification_metrics(yte, pred)
        rows.append((name, m, t1 - t0, len(xte) / (t2 - t1)))

    nb = NaiveBayes()
    score("naive Bayes (word 1-2-grams)", lambda: nb.fit(xtr, ytr), nb.predict)
    best = None
    for l2 in (1e-5, 1e-4, 1e-3):  # picked on val
        model = TfidfLogistic(l2).fit(xtr, ytr)
        acc = classification_metrics(yva, model.predict(xva)).accuracy
        if best is None or acc > best[0]:
            best = (acc, l2)
    lin = TfidfLogistic(best[1])
    score(f"char 1-5-gram TF-IDF + logistic (l2 {best[1]:g})", lambda: lin.fit(xtr, ytr), lin.predict)
    path = args.checkpoint or getattr(default_checkpoint(("classifier",)), "path", None)
    if path is None:
        print("no classifier checkpoint: pass --checkpoint")
    else:
        holder = {}
        score(f"ours: {Path(path).name}", lambda: holder.setdefault("c", SpamClassifier.load(path)),
              lambda texts: [int(p.label == "spam") for p in holder["c"].classify(texts, batch_size=32)])

    n_spam = sum(yte)
    lines = [f"Test split: {len(yte)} messages ({n_spam} spam), seed {args.seed}; "
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}.", "",
             "| model | accuracy | spam recall | spam precision | errors | fit / load s | messages/s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, m, fit_s, rate in rows:
        errors = m.confusion[0][1] + m.confusion[1][0]
        lines.append(f"| {name} | {m.accuracy:.2%} | {m.recall:.2%} | {m.precision:.2%} | {errors} | "
                     f"{fit_s:.1f} | {rate:,.0f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
