"""`chatgpt-scratch finetune-instruct` (book ch07, full or LoRA) and `chatgpt-scratch evaluate-instruct`."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from chatgpt_scratch.storage.checkpoint_format import sibling_file
from chatgpt_scratch.cli.common import add_command, add_device_arg, args_device

_TEMPLATES = ("alpaca", "phi3")


def register(subparsers) -> None:
    _register_finetune(subparsers)
    _register_evaluate(subparsers)


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int, default=256, metavar="N",
                   help="longest test response to generate (default: 256, as the book)")
    p.add_argument("--judge", metavar="ollama[:MODEL]",
                   help="also score every test response 0-100 with a local Ollama server (the book's method; "
                   "MODEL default llama3; server from $OLLAMA_HOST, default http://localhost:11434)")


# --- finetune-instruct ------------------------------------------------------------------------------


def _register_finetune(subparsers) -> None:
    from chatgpt_scratch.cli.train_common import add_trainer_args

    p = add_command(subparsers, "finetune-instruct", run_finetune)
    p.add_argument("--data", default="instruction-data", metavar="PATH|NAME",
                   help="a JSON/JSONL file, or a dataset name: instruction-data (the book's 1,100 entries) or "
                   "alpaca (Stanford Alpaca 52k), downloaded if not in the datasets folder (default: instruction-data)")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--init", metavar="CHECKPOINT", help="start from this checkpoint (a pretrained base model)")
    start.add_argument("--preset", metavar="NAME", help="start from random weights of this architecture "
                       "(a baseline with no pretraining; e.g. test-tiny)")
    p.add_argument("--template", choices=_TEMPLATES, default="alpaca",
                   help="prompt format; stored in the checkpoint so chat uses the same (default: alpaca)")
    p.add_argument("--mask-instructions", action="store_true",
                   help="train on the responses only: prompt tokens are left out of the loss")
    p.add_argument("--max-length", type=int, default=None, metavar="N",
                   help="cut each example to N tokens (default: the model's context length)")
    p.add_argument("--group-by-length", action="store_true",
                   help="batch examples of similar length together (less padding, faster epochs)")
    p.add_argument("--split-seed", type=int, default=None, metavar="N",
                   help="shuffle with this seed before the 85/5/10 split (default: file order, the book's split)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="use only the first N entries (quick trials)")
    p.add_argument("--add-train", metavar="PATH|NAME",
                   help="more instruction data for the training split only (e.g. alpaca): val and test stay those "
                   "of --data, and an entry that repeats a val or test question is left out")
    p.add_argument("--add-train-limit", type=int, default=None, metavar="N",
                   help="use only the first N entries of --add-train")
    p.add_argument("--add-train-max-tokens", type=int, default=None, metavar="N",
                   help="use only --add-train entries of at most N tokens (prompt + response), before "
                   "--add-train-limit: short answers like the book's, none cut off")
    p.add_argument("--add-train-skip", type=int, default=0, metavar="N",
                   help="skip the first N --add-train entries (after --add-train-max-tokens), before "
                   "--add-train-limit: a later stage trains on the next slice (default: 0)")
    p.add_argument("--add-train-copy-augment", type=int, default=0, metavar="K",
                   help="also add K copy-augmented variants (see --copy-augment) of each --add-train entry used "
                   "(seeded; default: 0)")
    p.add_argument("--copy-augment", type=int, default=0, metavar="K",
                   help="add K variants of each training entry whose answer repeats a rare word of its prompt, that "
                   "word swapped for another in both: the model learns to copy from the prompt (seeded; default: 0)")
    lora = p.add_argument_group("LoRA")
    lora.add_argument("--lora-rank", type=int, default=None, metavar="R",
                      help="train rank-R adapters instead of all weights, on every linear layer (attention, "
                      "feed-forward, output head) or those --lora-targets names")
    lora.add_argument("--lora-alpha", type=float, default=None, metavar="A",
                      help="adapter updates are scaled by A/R (default: A = 2R)")
    lora.add_argument("--lora-targets", default="all", metavar="LIST",
                      help="layers that get adapters: all, or a comma list of qkv, out_proj, ff, head, emb "
                      "(emb: the token embedding's rows; default: all = every linear layer). A model whose head shares the token embedding (GPT-2's) gets its own head "
                      "matrix when an adapted head is merged; leave out head to keep the merged file its base's size")
    ev = p.add_argument_group("evaluation after training")
    _add_eval_args(ev)
    ev.add_argument("--no-eval", action="store_true", help="skip the test-split responses and scores")
    # The book's ch07 settings: batch 8, 2 epochs, AdamW lr 5e-5, weight decay 0.1; val loss on the whole
    # validation split at every eval.
    add_trainer_args(p, "finetune-instruct")


def _build_model(args: argparse.Namespace):
    import torch

    from chatgpt_scratch.checkpoints import load_checkpoint
    from chatgpt_scratch.config import get_preset
    from chatgpt_scratch.model import GPTModel

    if args.init:
        model, meta = load_checkpoint(args.init, dtype=torch.float32, kind=("base", "instruct"))
        return model, str(Path(args.init).resolve()), meta
    return GPTModel(get_preset(args.preset)), None, {}


def run_finetune(args: argparse.Namespace) -> int:
    """instruction-tune a GPT on Alpaca-style data, fully or with LoRA (book ch07, appendix E)

    Fine-tune a model to follow instructions. Data: a JSON list or JSON lines of {instruction, input, output}
    entries, all checked before training. The data is split 85/5/10 (train/val/test) as the book does (file
    order, so the book's own test set; --split-seed shuffles first). After training, the best checkpoint by val
    loss answers every test instruction (greedy) into NAME.responses.json, and the scores (val loss, loss and
    perplexity of the reference answers, ROUGE-L F1; optionally an Ollama judge) go to NAME.eval.json and the
    checkpoint's header.

    With --lora-rank R only low-rank adapters train; every save writes the merged model (NAME.safetensors, a
    normal instruct checkpoint for chat) and the adapter alone (NAME.lora.safetensors, a few MB, naming its base
    model).

    examples:
      chatgpt-scratch finetune-instruct --data instruction-data --init checkpoints/base.safetensors --out checkpoints/instruct
      chatgpt-scratch finetune-instruct --data alpaca_data.json --init checkpoints/gpt2-medium.safetensors --template phi3 --mask-instructions --epochs 1 --out checkpoints/alpaca
      chatgpt-scratch finetune-instruct --data instruction-data --init checkpoints/base.safetensors --lora-rank 16 --lora-alpha 32 --lr 5e-4 --out checkpoints/instruct-lora
    """
    from chatgpt_scratch.cli.train_common import prepare_resume, run_training, seed_everything
    from chatgpt_scratch.data.registry import resolve_dataset
    from chatgpt_scratch.errors import ScratchError
    from chatgpt_scratch.model import format_params
    from chatgpt_scratch.data.templates import get_template
    from chatgpt_scratch.lora import adapter_path
    from chatgpt_scratch.training.instruct_task import InstructTask, prepare_instruct_data

    args = prepare_resume(args)
    seed_everything(args.seed)
    if args.lora_rank is not None and args.lora_rank < 1:
        raise ScratchError(f"--lora-rank must be at least 1, got {args.lora_rank}")
    if args.lora_rank is not None and not args.init:
        raise ScratchError("--lora-rank needs --init CHECKPOINT: an adapter is saved relative to its base file")
    if args.lora_rank:
        from chatgpt_scratch.lora import parse_targets

        lora_targets = parse_targets(args.lora_targets)  # a typo fails here, before any work
    template = get_template(args.template)
    data_path = resolve_dataset(args.data)
    extra_path = resolve_dataset(args.add_train) if args.add_train else None
    data = prepare_instruct_data(data_path, template, split_seed=args.split_seed, limit=args.limit,
                                 extra_train=extra_path, extra_limit=args.add_train_limit,
                                 extra_max_tokens=args.add_train_max_tokens,
                                 copy_augment_k=args.copy_augment, copy_augment_seed=args.seed,
                                 extra_skip=getattr(args, "add_train_skip", 0),
                                 extra_copy_augment_k=getattr(args, "add_train_copy_augment", 0))
    model, parent, init_meta = _build_model(args)
    context = model.cfg.context_length
    max_length = args.max_length or context
    if max_length > context:
        raise ScratchError(f"--max-length {max_length} is longer than the model's context ({context}); "
                           f"use at most {context}")
    task = InstructTask(data, batch_size=args.batch_size, max_length=max_length,
                        mask_instructions=args.mask_instructions, group_by_length=args.group_by_length,
                        seed=args.seed, lora_base=args.init if args.lora_rank else None)
    sizes = data.info["split_sizes"]
    device = args_device(args)
    val_before = None
    if not args.resume:
        model.to(device)
        val_before = task.mean_loss(model, data.encoded_val)
    if args.lora_rank:
        from chatgpt_scratch.lora import inject_lora

        alpha = args.lora_alpha if args.lora_alpha is not None else 2.0 * args.lora_rank
        inject_lora(model, args.lora_rank, alpha, targets=lora_targets)
        what = f"LoRA rank {args.lora_rank}, alpha {alpha:g}, on {args.lora_targets}"
    else:
        what = "all weights"
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"data: {data_path} -> train {sizes['train']}, val {sizes['val']}, test {sizes['test']} entries, "
          f"template {template.name}{', prompts masked' if args.mask_instructions else ''}; training {what}: "
          f"{format_params(n_trainable)} of {format_params(model.num_parameters())} parameters", file=sys.stderr)
    if val_before is not None and not math.isfinite(val_before):
        print("val loss before fine-tuning: not measurable (no answer token fits in the context)", file=sys.stderr)
        val_before = None
    elif val_before is not None:
        print(f"val loss before fine-tuning: {val_before:.4f}", file=sys.stderr)
    metadata = {"parent": parent, "val_loss_before": val_before,
                "lora_rank": args.lora_rank, "lora_alpha": None if not args.lora_rank else alpha}
    started = time.perf_counter()
    result = run_training(task, model, args, metadata=metadata)
    train_s = time.perf_counter() - started
    if result.status != "done" or result.checkpoint is None:
        return 0  # stopped (run_training said how to resume), or a DDP rank other than 0
    from chatgpt_scratch.checkpoints import update_metadata

    chosen = result.best_checkpoint or result.checkpoint
    summary = {"val_loss_before": val_before, "val_loss_after": result.metrics.get("val_loss"),
               "train_seconds": round(train_s, 1), "steps": result.step, "checkpoint": str(chosen)}
    if args.lora_rank:
        summary["adapter"] = str(adapter_path(chosen))
    if not args.no_eval and data.test:
        evaluation = _evaluate_checkpoint(chosen, data.test, template, args, device)
        summary |= {"evaluation": evaluation.to_dict()}
        summary["evaluation"].pop("per_entry_rouge_l", None)
        update_metadata(chosen, test_rouge_l=evaluation.rouge_l,
                        test_response_ppl=summary["evaluation"]["test_response_ppl"],  # null: not measurable
                      judge_score=evaluation.judge_score, judge_model=evaluation.judge_model)
    _write_summary(chosen, summary)
    print(f"best checkpoint (lowest val loss): {chosen}", file=sys.stderr)
    return 0


def _evaluate_checkpoint(path: Path, test, template, args: argparse.Namespace, device: str):
    from chatgpt_scratch.checkpoints import load_checkpoint, read_metadata
    from chatgpt_scratch.usecases.evaluate_instruct import evaluate_instruct

    model, meta = load_checkpoint(path, device=device)
    responses = sibling_file(path, ".responses.json")
    print(f"answering {len(test)} test instructions with {path.name} (greedy, up to {args.max_new_tokens} tokens)",
          file=sys.stderr)
    evaluation = evaluate_instruct(model, test, template, responses_path=responses,
                                   val_loss=read_metadata(path).get("val_loss"),
                                   max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                                   judge=args.judge, progress=_progress_printer())
    for line in evaluation.summary_lines():
        print(line)
    return evaluation


def _progress_printer():
    last = {"stage": None, "t": 0.0}

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or stage != last["stage"] or now - last["t"] > 5:
            print(f"  {stage}: {done}/{total}", file=sys.stderr, flush=True)
            last.update(stage=stage, t=now)
    return progress



def _write_summary(checkpoint: Path, summary: dict) -> None:
    from chatgpt_scratch.usecases.evaluate_instruct import write_json_atomic

    path = write_json_atomic(sibling_file(checkpoint, ".eval.json"), summary)
    print(f"summary: {path}", file=sys.stderr)


# --- evaluate-instruct ------------------------------------------------------------------------------


def _register_evaluate(subparsers) -> None:
    p = add_command(subparsers, "evaluate-instruct", run_evaluate)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", metavar="PATH",
                     help="an instruct checkpoint, or a lora-adapter of one (merged on load); default: your best "
                     "instruct model, else the built-in one")
    src.add_argument("--score", metavar="FILE", help="score this responses file instead of generating")
    p.add_argument("--data", default="instruction-data", metavar="PATH|NAME",
                   help="instruction data whose test split is answered (default: instruction-data)")
    p.add_argument("--split-seed", type=int, default=None, metavar="N",
                   help="the --split-seed the model was trained with (default: file order)")
    p.add_argument("--split", choices=("test", "val", "train"), default="test", help="which split (default: test)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="answer only the first N entries of the split")
    p.add_argument("--responses", metavar="FILE", help="where to write the responses (default: beside the checkpoint, "
                   "NAME.responses.json)")
    p.add_argument("--key", default="model_response", help="the response field of --score FILE (default: model_response)")
    p.add_argument("--batch-size", type=int, default=8, help="prompts generated together (default: 8; 1 with --compile)")
    from chatgpt_scratch.cli.generate import add_compile_arg

    add_compile_arg(p, "float32 weights, one prompt at a time")
    _add_eval_args(p)
    add_device_arg(p)


def run_evaluate(args: argparse.Namespace) -> int:
    """answer held-out instructions with an instruct model and score the answers

    Either generate: the model in --checkpoint answers the test split of --data (the same 85/5/10 split
    finetune-instruct uses) into --responses, then scores them; or score an existing responses file (--score
    FILE, shaped like the book's instruction-data-with-response.json) without any model. Scores: ROUGE-L F1
    against the reference outputs; with a model, also the loss and perplexity of the reference outputs; with
    --judge, a 0-100 score from a local Ollama server.

    examples:
      chatgpt-scratch evaluate-instruct --checkpoint checkpoints/instruct.safetensors --data instruction-data
      chatgpt-scratch evaluate-instruct --score instruction-data-with-response.json --judge ollama:llama3
    """
    from chatgpt_scratch.data.registry import resolve_dataset
    from chatgpt_scratch.usecases.evaluate_instruct import (
        JudgeUnavailable, evaluate_instruct, judge_responses, parse_judge, read_responses, rouge_l,
    )
    from chatgpt_scratch.data.templates import ALPACA, get_template
    from chatgpt_scratch.training.instruct_task import prepare_instruct_data

    if args.score:
        examples, responses = read_responses(args.score, args.key)
        if args.limit:
            examples, responses = examples[:args.limit], responses[:args.limit]
        scores = rouge_l([e.output for e in examples], responses)
        result = {"n": len(examples), "rouge_l": sum(scores) / len(scores)}
        print(f"{args.score}: ROUGE-L F1 {result['rouge_l']:.3f} over {len(examples)} responses")
        if args.judge:
            model = parse_judge(args.judge)
            try:
                judged = judge_responses(examples, responses, model, progress=None)
            except JudgeUnavailable as e:
                print(f"judge skipped: {e}", file=sys.stderr)
            else:
                valid = [s for s in judged if s is not None]
                if valid:
                    print(f"judge {model}: mean score {sum(valid) / len(valid):.1f}/100 "
                          f"({len(valid)} of {len(judged)} scored)")
        return 0

    from chatgpt_scratch.cli.common import checkpoint_or_default
    from chatgpt_scratch.usecases.inference import fast_cpu_linears, load_for_inference

    args.checkpoint = checkpoint_or_default(args.checkpoint, "evaluate-instruct")
    if args.compile:  # batch 1 through the compiled decode step, float32 weights (the reference precision)
        from chatgpt_scratch.cli.generate import load_model_for_inference, warm_up_decoder

        model, meta = load_model_for_inference(args.checkpoint, args.device, kind=("instruct", "base"), compile=True)
        args.batch_size = 1
        warm_up_decoder(model)
    else:
        model, meta = load_for_inference(args.checkpoint, device=args_device(args), kind=("instruct", "base"))
        model = fast_cpu_linears(model)  # the same numbers, the faster CPU layout for each Linear
    template = get_template(meta["template"]) if meta.get("template") else ALPACA
    data = prepare_instruct_data(resolve_dataset(args.data), template, split_seed=args.split_seed)
    examples = getattr(data, args.split)[: args.limit]
    responses = Path(args.responses) if args.responses else sibling_file(Path(args.checkpoint), ".responses.json")
    evaluation = evaluate_instruct(model, examples, template, responses_path=responses,
                                   val_loss=meta.get("val_loss"), max_new_tokens=args.max_new_tokens,
                                   batch_size=args.batch_size, judge=args.judge, progress=_progress_printer(),
                                   split=args.split)
    for line in evaluation.summary_lines():
        print(line)
    return 0

