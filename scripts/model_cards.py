"""Measure the installed default models and write their cards (checkpoints/README.md).

Called by `scripts/build_default_models.py --stages cards` (or `python scripts/model_cards.py`).
Every number in a card is measured here on the *installed* file (bf16, as shipped) and written
into that file's header first; the card is then rendered from the headers alone, with
`chatgpt_scratch.storage.builtin.card_metrics`, so header and card cannot disagree (a test checks it).
The base model's header is never rewritten: the spam adapter records its sha256.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def measure(folder: Path, build: Path) -> dict:
    """Test metrics of the installed instruct and spam files, written into their headers."""
    from chatgpt_scratch.storage.builtin import BUILTIN_SPAM_SEED
    from chatgpt_scratch.chat import template_from_metadata
    from chatgpt_scratch.checkpoints import update_metadata
    from chatgpt_scratch.classify import SpamClassifier
    from chatgpt_scratch.data.registry import resolve_dataset
    from chatgpt_scratch.usecases.evaluate_instruct import evaluate_instruct, response_loss
    from chatgpt_scratch.usecases.inference import load_for_inference
    from chatgpt_scratch.training.instruct_task import prepare_instruct_data

    extra: dict = {}
    instruct = folder / "default-instruct.safetensors"
    model, meta = load_for_inference(instruct, kind="instruct")
    template = template_from_metadata(meta, instruct)
    data = prepare_instruct_data(resolve_dataset("instruction-data"), template)
    responses = build / "default-instruct.responses.json"
    # The val loss of the file as shipped (the header's from training describes float32, or one member of an average).
    val_loss = response_loss(model, data.val, template)
    ev = evaluate_instruct(model, data.test, template, responses_path=responses, val_loss=val_loss,
                           max_new_tokens=256, batch_size=8)
    answers = json.loads(responses.read_text())
    empty = sum(not str(a.get("model_response", "")).strip() for a in answers)
    update_metadata(instruct, val_loss=round(val_loss, 4), val_ppl=round(math.exp(val_loss), 3),
                    test_rouge_l=round(ev.rouge_l, 4), test_response_loss=round(ev.test_response_loss, 4),
                    test_response_ppl=round(ev.test_response_ppl, 3), test_entries=ev.n_test,
                    test_empty_answers=empty, eval_dtype=str(next(model.parameters()).dtype).removeprefix("torch."))
    extra["instruct_answers"] = answers
    update_metadata(instruct, **chat_precision(instruct, build))

    spam = folder / "default-spam.safetensors"
    # Through SpamClassifier, as `classify` and the app use it (its header's pooling and length).
    from chatgpt_scratch.classify import classification_metrics
    from chatgpt_scratch.data.spam import LABELS, load_messages, stratified_split

    classifier = SpamClassifier.load(spam)
    split = stratified_split(load_messages(resolve_dataset("sms-spam")), (0.7, 0.1, 0.2), BUILTIN_SPAM_SEED)
    spam_id = LABELS.index("spam")
    scores = {}
    for name in ("val", "test"):
        messages = getattr(split, name)
        predictions = classifier.classify([m.text for m in messages], batch_size=32)
        truth = [int(m.label == spam_id) for m in messages]
        # The loss of the probabilities as used (an ensemble's mean), like the training's val loss.
        loss = -sum(math.log(max(p.probs["spam"] if t else p.probs["ham"], 1e-12))
                    for p, t in zip(predictions, truth)) / len(truth)
        scores[name] = classification_metrics(truth, [int(p.label == "spam") for p in predictions]), loss
    (val, val_loss), (test, _) = scores["val"], scores["test"]
    update_metadata(spam, val_acc=round(val.accuracy, 4), val_loss=round(val_loss, 4),
                    test_metrics=test.to_dict(), test_acc=round(test.accuracy, 4),
                    test_spam_recall=round(test.recall, 4), test_spam_precision=round(test.precision, 4))
    return extra


# A lower precision is used for chat when at least this share of its greedy test replies equal float32's.
SAME_REPLIES_NEEDED = 0.9


def chat_precision(instruct: Path, build: Path) -> dict:
    """Time float32 / bf16 / int8 chat on the test entries, eager and through the compiled decode step
    (benchmarks/quantize_fidelity.py --compiled, the README's fidelity method), and pick for each the fastest
    whose replies match float32's well enough: `chat_precision` (eager) and `compiled_precision`."""
    import subprocess

    out = build / "fidelity.md"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "quantize_fidelity.py"), "--checkpoint", str(instruct),
                    "--data", str(REPO / "datasets" / "instruction-data.json"), "--limit", "110",
                    "--new-tokens", "64", "--compiled", "--out", str(out)], check=True, cwd=REPO)
    return pick_precisions(out.read_text())


def pick_precisions(table: str) -> dict:
    """The fidelity table (benchmarks/quantize_fidelity.py --compiled) -> the header's chat fields: for eager
    chat and for the compiled step, the fastest precision whose greedy replies equal float32's for at least
    SAME_REPLIES_NEEDED of the entries, and each precision's tokens/s and share of equal replies."""
    import re

    rows: dict[str, dict[str, dict[str, float]]] = {"eager": {}, "compiled": {}}
    for line in table.splitlines():
        m = re.match(r"\| (float32|bfloat16|int8)([^|]*)\| ([0-9.]+) \| ([0-9.]+)% \| (\d+)/(\d+) \| ([0-9.]+) \|",
                     line)
        if m:
            way = "compiled" if "compiled" in m.group(2) else "eager"
            rows[way][m.group(1)] = {"same": int(m.group(5)) / int(m.group(6)), "tokens_per_s": float(m.group(7))}
    fields: dict = {}
    for way, prefix in (("eager", "chat"), ("compiled", "compiled")):
        found = rows[way]
        ok = [name for name, r in found.items() if r["same"] >= SAME_REPLIES_NEEDED]
        if not ok:  # no rows (compiling failed, or an older table): the header leaves the field out
            continue
        fields[f"{prefix}_precision"] = max(ok, key=lambda name: found[name]["tokens_per_s"])
        fields[f"{prefix}_tokens_per_s"] = {k: v["tokens_per_s"] for k, v in found.items()}
        fields[f"{prefix}_replies_equal_float32"] = {k: round(v["same"], 3) for k, v in found.items()}
    return fields


def greedy_sample(path: Path, prompt: str, n: int = 40) -> str:
    from chatgpt_scratch.generation import SamplingConfig, generate
    from chatgpt_scratch.usecases.inference import load_for_inference
    from chatgpt_scratch.tokenizer import get_tokenizer

    model, _ = load_for_inference(path, kind="base")
    tok = get_tokenizer()
    ids = list(generate(model, tok.encode(prompt), SamplingConfig(temperature=0.0, max_new_tokens=n)))
    return prompt + tok.decode(ids)


def _md(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render(folder: Path, build: Path, extra: dict) -> str:
    from chatgpt_scratch.storage.checkpoint_format import ENSEMBLE_KEY
    from chatgpt_scratch.storage.builtin import BUILTIN_MODELS, card_metrics
    from chatgpt_scratch.checkpoints import checkpoint_info

    infos = {stem: checkpoint_info(folder / f"{stem}.safetensors") for stem in BUILTIN_MODELS}
    total = sum(i.file_size for i in infos.values())
    notes = {}
    for name in ("ablations.md", "spam_baselines.md", "fidelity.md", "spam_variants.md"):
        path = build / name
        notes[name] = path.read_text().strip() if path.exists() else "(not measured in this build)"
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    out = [
        "# Built-in models",
        "",
        "Trained by `scripts/build_default_models.py` from the data in `datasets/` (plus Alpaca, read from",
        "`--alpaca`, never shipped) and measured by `scripts/model_cards.py` on the files exactly as shipped",
        "(bf16). Every number below is also in the file's own header (`chatgpt-scratch checkpoints info FILE`);",
        "a test checks that they agree. The app and every command use them when you have no model of your own",
        "(`checkpoints list` marks them `built-in`); they cannot be renamed, deleted or overwritten, but can be",
        "duplicated. Your own checkpoints go in this folder too (git-ignored).",
        "",
        f"Together: {total / 1e6:.1f} MB. Built on: {machine}.",
        "",
        "| file | what | metrics |",
        "|---|---|---|",
    ]
    for stem, info in infos.items():
        m = card_metrics(info.metadata)
        out.append(f"| `{stem}.safetensors` ({info.file_size / 1e6:.1f} MB) | {BUILTIN_MODELS[stem]}, "
                   f"{info.preset or info.metadata.get('preset') or 'custom'} | " + ", ".join(f"{k} {v}" for k, v in m.items()) + " |")
    for stem, info in infos.items():
        meta = info.metadata
        cfg = info.config
        out += ["", f"## {stem}", ""]
        preset = info.preset or meta.get("preset") or infos["default-base"].metadata.get("preset") or "custom"
        out.append(f"- **What**: {BUILTIN_MODELS[stem]} model, preset `{preset}` ({cfg.n_layers} layers, width "
                   f"{cfg.emb_dim}, {cfg.n_heads} heads, context {cfg.context_length}, GPT-2 BPE vocabulary"
                   + (", tied embeddings" if cfg.tie_embeddings else "")
                   + (f", a {cfg.n_classes}-class head" if cfg.n_classes else "")
                   + f"), {info.n_params:,} parameters in this file, stored as {info.dtype}"
                   + (" (a LoRA adapter: merged onto default-base when loaded)." if info.kind == "lora-adapter" else "."))
        out.append("- **Metrics** (in the header): " + ", ".join(f"{k} = {v}" for k, v in card_metrics(meta).items()))
        seconds = meta.get("train_seconds") or {}
        # an ensemble's or an average's last stage is its members' training
        last = meta.get(ENSEMBLE_KEY) or meta.get("averaged_from") or [meta]
        tokens = " + ".join(f"{m.get('tokens_seen', 0):,}" for m in last)
        steps = " + ".join(str(m.get("steps")) for m in last)
        out.append(f"- **Compute**: {meta.get('train_device') or 'cpu'} ({machine}); wall time "
                   + ", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items())
                   + f"; tokens seen in its last stage {tokens}, steps {steps}.")
        out.append("- **Made by** (in order):")
        out += ["", "```bash", *meta.get("recipe", []), "```", ""]
        if stem == "default-base":
            out.append("- **Data**: first `datasets/pretrain` (the shipped `pretrain-compact` dataset: 12 public-domain "
                       "books and 1.1k TinyStories, about 1.2M tokens; 5% held out), then the larger corpus of "
                       "`../shared/datasets` (`pretrain/`: the same books and 4M tokens in all, and `pretrain-more/`: "
                       "94 more public-domain books, about 14M tokens; not shipped, 75 MB) with a copy curriculum "
                       "(`--copy-fraction 0.5`: half the windows repeat a span of their own text, so the model learns "
                       "to copy from its context, which instruction answers need), in two passes (`base-more`, then "
                       "`base-more2` from its bf16 file at a lower rate and a new `--seed`); both hold out the same 2% "
                       "(`--split-seed 123`) for validation, which the metrics use.")
            out.append(f"- **Greedy sample**: *{_md(greedy_sample(info.path, 'Once upon a time'))}*")
            out.append("- **Cannot**: follow instructions, know facts; it continues text in the style of "
                       "19th-century novels and children's stories, and loses the thread after a few sentences.")
        if stem == "default-instruct":
            parent = str(meta.get("parent", "default-base.safetensors"))
            if not parent.startswith("default-base.safetensors"):  # install's "<stage> (not shipped)"
                out.append(f"- **Base**: its recipe pretrains one stage further than `default-base` "
                           f"(`{parent.removesuffix(' (not shipped)')}` above); that base is not shipped (the size "
                           "budget holds one base, and the shipped spam adapters are deltas on `default-base`), so "
                           "this file is a full model of its own.")
            extra_n = meta.get("extra_train_entries")
            augmented = meta.get("copy_augment_entries")
            out.append("- **Data**: the book's 935 training entries of `datasets/instruction-data.json`, in the "
                       "stages the recipe above lists (with Stanford Alpaca's entries of at most 80 tokens where it says "
                       "`--add-train`, copy-augmented variants of the book's entries where it says `--copy-augment`, and of "
                       "those Alpaca entries where it says `--add-train-copy-augment`; "
                       "an entry repeating a book val/test question is dropped; this file's header records the last "
                       f"stage{'' if extra_n is None else f', {extra_n:,} extra entries'}"
                       f"{'' if augmented is None else f', {augmented:,} augmented variants'}); the "
                       "book's 55 val and 110 test entries never train.")
            out.append("- **What each ingredient buys** (ROUGE-L F1 on the book's 110 test entries, greedy):")
            out += ["", notes["ablations.md"], ""]
            out.append("- **10 test answers** (greedy, as shipped):")
            out += ["", "| instruction | input | reference | model |", "|---|---|---|---|"]
            for a in extra.get("instruct_answers", [])[:10]:
                out.append(f"| {_md(a['instruction'])} | {_md(a.get('input', ''))} | {_md(a['output'])} | "
                           f"{_md(a.get('model_response', ''))} |")
            out += ["", "- **Speed and precision** (`benchmarks/quantize_fidelity.py` on this file, while other jobs "
                    "ran on the machine):", "", notes["fidelity.md"], "",
                    f"  Chat on a CPU uses **{meta.get('chat_precision', 'the stored dtype')}** (`chat_precision` in "
                    f"the header): the fastest precision whose greedy test replies equal float32's for at least "
                    f"{SAME_REPLIES_NEEDED:.0%} of the entries (here bf16 matched "
                    f"{meta.get('chat_replies_equal_float32', {}).get('bfloat16', 0):.0%} and int8 "
                    f"{meta.get('chat_replies_equal_float32', {}).get('int8', 0):.0%}). float32 and bf16 run each "
                    "Linear in the faster CPU layout for the machine (`inference.fast_cpu_linears`).", ""]
            if "compiled_precision" in meta:
                same = meta.get("compiled_replies_equal_float32", {})
                out += [f"  The compiled decode step (the app's Fast decode, `chat --compile`) uses "
                        f"**{meta['compiled_precision']}** weights (`compiled_precision`) by the same rule: it rounds "
                        f"only the weights, and its replies equal float32's for {same.get('bfloat16', 0):.0%} of the "
                        f"entries with bf16 weights and {same.get('int8', 0):.0%} with int8.", ""]
            pretrain_min = sum(v for k, v in seconds.items() if k.startswith("base")) / 60
            out.append(f"- **Cannot**: be trusted on facts (it is 26M parameters pretrained for {pretrain_min:.0f} CPU "
                       "minutes); it "
                       "answers in the book's short style and restates the question, copying its names and words, but "
                       "it often fills the answer itself with a wrong word (\"The periodic symbol for Chron is K.\") or "
                       "a memorised piece of another answer (\"The author of 'Pride and Prejudice' occurs when "
                       "dystopian kills Tybalt, ...\"), invents content for open questions, and repeats itself in "
                       "long answers.")
        if stem == "default-spam":
            out.append(f"- **Data**: `datasets/SMSSpamCollection` (5,016 messages), stratified 70/10/20 split with "
                       f"seed {meta.get('split_seed', 123)}; test = {meta.get('test_metrics', {}).get('n', '?')} "
                       "messages.")
            members = meta.get(ENSEMBLE_KEY) or [meta]
            first = members[0]
            trained = first.get("lora_rank_trained", meta.get("lora_rank_trained"))
            stored = f", stored at rank {first.get('lora_rank')} (`lora ensemble --rank`)" if trained else ""
            form = (f"a LoRA adapter (rank {trained or first.get('lora_rank', '?')}{stored}, on "
                    f"{len(first.get('lora_layers', []))} layers including the token embedding's rows) plus a "
                    "2-class head")
            if len(members) > 1:
                seeds = ", ".join(str((m.get("train_args") or {}).get("seed", "?")) for m in members)
                vals = ", ".join(f"{m.get('val_acc', 0):.2%}" for m in members)
                form = (f"an ensemble of {len(members)} members (`lora ensemble`), each {form}, trained with seeds "
                        f"{seeds} on the same split (val accuracy {vals}); it labels a message by the mean of "
                        "their probabilities, one forward pass per member")
            out.append(f"- **Form**: {form}, on `default-base.safetensors`, merged when loaded; the base is checked "
                       "by sha256.")
            out.append("- **Against classical baselines** (`benchmarks/spam_baselines.py`, same test split):")
            out += ["", notes["spam_baselines.md"], ""]
            out.append("- **Variants tried** (the finetune-spam command above with the changes named):")
            out += ["", notes["spam_variants.md"], ""]
            out.append("- **Cannot**: judge languages other than English or message styles far from 2010-era UK "
                       f"SMS; it reads the first {meta.get('max_length', 256)} tokens only.")
    return "\n".join(out) + "\n"


def write_cards(folder: Path, build: Path, timings: dict | None = None, render_only: bool = False) -> Path:
    os.environ["CHATGPT_SCRATCH_BUNDLED"] = "off"  # the build may rewrite the headers of the built-in files
    started = time.perf_counter()
    if render_only:  # the headers already hold the measurements
        extra = {"instruct_answers": json.loads((build / "default-instruct.responses.json").read_text())}
    else:
        extra = measure(folder, build)
    text = render(folder, build, extra)
    (folder / "README.md").write_text(text)
    print(f"wrote {folder / 'README.md'} in {time.perf_counter() - started:.0f} s")
    from chatgpt_scratch.storage.builtin import BUILTIN_MODELS, card_metrics
    from chatgpt_scratch.checkpoints import read_metadata

    print("\nmetrics of the installed built-in models:")
    for stem in BUILTIN_MODELS:
        path = folder / f"{stem}.safetensors"
        metrics = card_metrics(read_metadata(path))
        print(f"  {stem:18} {path.stat().st_size / 1e6:6.1f} MB  " + ", ".join(f"{k} {v}" for k, v in metrics.items()))
    return folder / "README.md"


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--render-only"]
    build = Path(args[0]) if args else REPO / "build" / "defaults"
    write_cards(REPO / "checkpoints", build, render_only="--render-only" in sys.argv)
