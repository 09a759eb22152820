"""`chatgpt-scratch finetune-dpo`: preference tuning (DPO) of an instruct model (the book's bonus ch07 material)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from chatgpt_scratch.cli.common import add_command
from chatgpt_scratch.storage.checkpoint_format import sibling_file


def register(subparsers) -> None:
    from chatgpt_scratch.cli.train_common import add_trainer_args

    p = add_command(subparsers, "finetune-dpo", run_dpo)
    p.add_argument("--data", default="instruction-preference", metavar="PATH|NAME",
                   help="preference data: a JSON/JSONL file, or instruction-preference (the book's 1,100 entries "
                   "with chosen/rejected answers; default)")
    p.add_argument("--init", metavar="CHECKPOINT",
                   help="the instruct model to tune (also the frozen reference); a LoRA adapter of one works too")
    p.add_argument("--beta", type=float, default=0.1,
                   help="how far the model may move from the reference: higher keeps it closer (default: 0.1)")
    p.add_argument("--max-length", type=int, default=None, metavar="N",
                   help="cut each prompt + answer to N tokens (default: the model's context length)")
    p.add_argument("--split-seed", type=int, default=None, metavar="N",
                   help="shuffle with this seed before the 85/5/10 split (default: file order, the book's split)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="use only the first N entries (quick trials)")
    lora = p.add_argument_group("LoRA")
    lora.add_argument("--lora-rank", type=int, default=None, metavar="R",
                      help="train rank-R adapters instead of all weights (the reference is the model without them)")
    lora.add_argument("--lora-alpha", type=float, default=None, metavar="A", help="adapter scale A/R (default: A = 2R)")
    lora.add_argument("--lora-targets", default="all", metavar="LIST",
                      help="all, or a comma list of qkv, out_proj, ff, head (default: all)")
    ev = p.add_argument_group("evaluation after training")
    ev.add_argument("--max-new-tokens", type=int, default=256, metavar="N",
                    help="longest test answer to generate (default: 256)")
    ev.add_argument("--no-eval", action="store_true", help="skip answering the test split before and after")
    add_trainer_args(p, "finetune-dpo")


def run_dpo(args: argparse.Namespace) -> int:
    """preference-tune an instruct model with DPO on chosen/rejected answer pairs (after finetune-instruct)

    Direct Preference Optimization: teach an instruct model to prefer the `chosen` answer of each entry over the
    `rejected` one, against the frozen --init model as reference (its log-probabilities are computed once,
    before training). Only the response tokens count, with the checkpoint's own prompt template. Data: a JSON
    list or JSON lines of {instruction, input, chosen, rejected[, output]}, checked before training, split
    85/5/10 as the book (file order). Logged: DPO loss, reward margin (chosen - rejected) and reward accuracy,
    train and val. After training the best checkpoint (lowest val DPO loss) and the --init model both answer the
    test split: NAME.eval.json has ROUGE-L and the loss of the reference answers before and after,
    NAME.compare.json the answers side by side.

    examples:
      chatgpt-scratch finetune-dpo --init checkpoints/default-instruct.safetensors --out checkpoints/dpo
      chatgpt-scratch finetune-dpo --data my-pairs.jsonl --init checkpoints/instruct.safetensors --beta 0.1 --lora-rank 16 --out checkpoints/dpo-lora
    """
    import torch

    from chatgpt_scratch.checkpoints import update_metadata
    from chatgpt_scratch.chat import template_from_metadata
    from chatgpt_scratch.cli.train_common import prepare_resume, run_training, seed_everything
    from chatgpt_scratch.data.registry import resolve_dataset
    from chatgpt_scratch.system.device import resolve_device
    from chatgpt_scratch.errors import ScratchError
    from chatgpt_scratch.usecases.inference import load_for_inference
    from chatgpt_scratch.model import format_params
    from chatgpt_scratch.training.dpo_task import DPOTask, prepare_preference_data

    args = prepare_resume(args)  # --resume RUN: that run's own flags (its --init among them)
    if not args.init:
        raise ScratchError("finetune-dpo needs --init CHECKPOINT: the instruct model to tune (also the reference)")
    seed_everything(args.seed)
    if args.lora_rank is not None and args.lora_rank < 1:
        raise ScratchError(f"--lora-rank must be at least 1, got {args.lora_rank}")
    lora_targets = None
    if args.lora_rank:
        from chatgpt_scratch.lora import parse_targets

        lora_targets = parse_targets(args.lora_targets)
    data_path = resolve_dataset(args.data)
    model, meta = load_for_inference(args.init, dtype=torch.float32, kind="instruct")
    template = template_from_metadata(meta, args.init)
    data = prepare_preference_data(data_path, template, split_seed=args.split_seed, limit=args.limit)
    context = model.cfg.context_length
    max_length = args.max_length or context
    if max_length > context:
        raise ScratchError(f"--max-length {max_length} is longer than the model's context ({context}); "
                           f"use at most {context}")
    lora_base = None
    if args.lora_rank:
        if meta.get("lora_adapter"):
            raise ScratchError("--lora-rank needs a full instruct checkpoint as --init (merge the adapter first: "
                               "`chatgpt-scratch lora merge`)")
        lora_base = args.init
    task = DPOTask(data, beta=args.beta, batch_size=args.batch_size, max_length=max_length, seed=args.seed,
                   lora_base=lora_base)
    device = resolve_device(args.device)
    model.to(device)
    started = time.perf_counter()
    task.precompute_reference(model)  # the frozen --init model: the reference, before any weight changes
    print(f"reference log-probabilities of {len(data.encoded_train) + len(data.encoded_val)} pairs computed in "
          f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
    before = None
    if not args.resume:
        model.eval()
        with torch.no_grad():
            before = task.evaluate(model, None)
        model.train()
    if args.lora_rank:
        from chatgpt_scratch.lora import inject_lora

        alpha = args.lora_alpha if args.lora_alpha is not None else 2.0 * args.lora_rank
        inject_lora(model, args.lora_rank, alpha, targets=lora_targets)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    sizes = data.info["split_sizes"]
    print(f"data: {data_path} -> train {sizes['train']}, val {sizes['val']}, test {sizes['test']} pairs, template "
          f"{template.name}, beta {args.beta:g}; training {format_params(n_trainable)} of "
          f"{format_params(model.num_parameters())} parameters", file=sys.stderr)
    if before is not None:
        print(f"before: val DPO loss {before['val_loss']:.4f}, reward margin {before['val_reward_margin']:.4f}, "
              f"reward accuracy {before['val_reward_acc']:.2%} (the model is its own reference)", file=sys.stderr)
    metadata = {"parent": str(Path(args.init).resolve()),
                "dpo_val_before": before, "lora_rank": args.lora_rank}
    result = run_training(task, model, args, metadata=metadata)
    if result.status != "done" or result.checkpoint is None:
        return 0
    chosen = result.best_checkpoint or result.checkpoint
    after = {k: result.metrics.get(k) for k in ("val_loss", "val_reward_margin", "val_reward_acc")}
    summary = {"dpo_val_before": before, "dpo_val_after": after, "checkpoint": str(chosen)}
    update_metadata(chosen, dpo_val_reward_acc=after["val_reward_acc"],
                    dpo_val_reward_margin=after["val_reward_margin"])
    if not args.no_eval and data.test:
        summary |= _before_after(args.init, chosen, data.test, template, args, str(device))
        update_metadata(chosen, test_rouge_l=summary["after"]["rouge_l"],
                        test_response_ppl=summary["after"]["test_response_ppl"],
                        test_rouge_l_before=summary["before"]["rouge_l"])
    path = sibling_file(chosen, ".eval.json")
    from chatgpt_scratch.usecases.evaluate_instruct import write_json_atomic

    write_json_atomic(path, summary)
    print(f"summary: {path}", file=sys.stderr)
    print(f"best checkpoint (lowest val DPO loss): {chosen}", file=sys.stderr)
    return 0


def _before_after(init: str, chosen: Path, test, template, args: argparse.Namespace, device: str) -> dict:
    """Both models answer the test split (greedy): ROUGE-L and reference-answer loss, and a side-by-side file."""
    from chatgpt_scratch.data.instruct import InstructionExample
    from chatgpt_scratch.usecases.evaluate_instruct import evaluate_instruct, write_json_atomic
    from chatgpt_scratch.usecases.inference import load_for_inference

    examples = [InstructionExample(e.instruction, e.input, e.output or e.chosen) for e in test]
    results, answers = {}, {}
    for label, path in (("before", init), ("after", chosen)):
        model, _ = load_for_inference(path, device=device, kind="instruct")
        responses = sibling_file(Path(chosen), f".{label}.responses.json")
        print(f"answering {len(examples)} test instructions with the model {label} DPO ({Path(path).name})",
              file=sys.stderr)
        ev = evaluate_instruct(model, examples, template, responses_path=responses, val_loss=None,
                               max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
        results[label] = {"rouge_l": ev.rouge_l, "test_response_loss": ev.test_response_loss,
                          "test_response_ppl": ev.test_response_ppl, "responses": str(responses)}
        answers[label] = [r["model_response"] for r in json.loads(responses.read_text())]
        print(f"  {label}: ROUGE-L F1 {ev.rouge_l:.3f}, reference-answer loss {ev.test_response_loss:.3f}",
              file=sys.stderr)
    side_by_side = [{"instruction": e.instruction, "input": e.input, "reference": e.output,
                     "before": b, "after": a} for e, b, a in zip(examples, answers["before"], answers["after"])]
    compare = sibling_file(Path(chosen), ".compare.json")
    write_json_atomic(compare, side_by_side)
    print(f"side by side: {compare}", file=sys.stderr)
    return {"before": results["before"], "after": results["after"], "compare": str(compare)}

