"""DPO (training/dpo_task.py, cli/dpo.py): the loss equals the formula written out, prompt and padding do not
count, bad data names the entry, and `finetune-dpo` trains a tiny model end to end with its metrics."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from chatgpt_scratch.checkpoints import read_metadata, save_checkpoint
from chatgpt_scratch.cli import main
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.model import GPTModel
from chatgpt_scratch.data.templates import ALPACA
from chatgpt_scratch.tokenizer import ENDOFTEXT_ID, get_tokenizer
from chatgpt_scratch.training.dpo_task import (
    DPOTask, EncodedPair, PreferenceData, PreferenceExample, batch_dpo, collate_pairs, load_preference_data,
)

TINY = PRESETS["test-tiny"].with_(context_length=96)
BETA = 0.3


def pairs_of(examples):
    from chatgpt_scratch.training.dpo_task import encode_pairs

    return encode_pairs(examples, ALPACA)


EXAMPLES = [
    PreferenceExample("Name a colour.", "", "Blue.", "I will not tell you."),
    PreferenceExample("Add the numbers.", "2 and 3", "5", "The sum is probably six or so."),
    PreferenceExample("Be polite.", "", "Thank you.", "Go away!"),
]


def logp_by_hand(model, prompt: list[int], response: list[int]) -> torch.Tensor:
    """Sum of log p(response token | everything before it), one sequence, no padding, written out directly."""
    ids = torch.tensor([prompt + response])
    logits = model(ids[:, :-1]).float()[0]  # (T-1, vocab)
    logp = torch.log_softmax(logits, dim=-1)
    total = torch.zeros(())
    for k, token in enumerate(response):
        total = total + logp[len(prompt) + k - 1, token]
    return total


def test_loss_and_gradients_equal_the_formula():
    torch.manual_seed(0)
    policy, reference = GPTModel(TINY), GPTModel(TINY)
    policy.eval(), reference.eval()
    pairs = pairs_of(EXAMPLES)
    with torch.no_grad():
        for p in pairs:
            p.ref_chosen = float(logp_by_hand(reference, p.prompt, p.chosen))
            p.ref_rejected = float(logp_by_hand(reference, p.prompt, p.rejected))
    out = batch_dpo(policy, collate_pairs(pairs), BETA)
    out.loss.backward()
    ours = {n: p.grad.clone() for n, p in policy.named_parameters()}
    policy.zero_grad()

    # -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), averaged over the pairs
    terms = []
    for p in pairs:
        pc, pr = logp_by_hand(policy, p.prompt, p.chosen), logp_by_hand(policy, p.prompt, p.rejected)
        terms.append(-F.logsigmoid(BETA * ((pc - p.ref_chosen) - (pr - p.ref_rejected))))
    expected = torch.stack(terms).mean()
    expected.backward()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    for name, param in policy.named_parameters():
        torch.testing.assert_close(ours[name], param.grad, rtol=1e-4, atol=1e-6, msg=name)
    # Rewards and metrics from the same numbers.
    with torch.no_grad():
        margins = [BETA * ((float(logp_by_hand(policy, p.prompt, p.chosen)) - p.ref_chosen)
                           - (float(logp_by_hand(policy, p.prompt, p.rejected)) - p.ref_rejected)) for p in pairs]
    assert out.margin == pytest.approx(sum(margins) / len(margins), abs=1e-5)
    assert out.accuracy == pytest.approx(sum(m > 0 for m in margins) / len(margins))


def test_prompt_and_padding_tokens_do_not_change_the_loss():
    torch.manual_seed(1)
    policy = GPTModel(TINY).eval()
    pairs = pairs_of(EXAMPLES)
    for p in pairs:
        p.ref_chosen, p.ref_rejected = -20.0, -25.0
    alone = [batch_dpo(policy, collate_pairs([p]), BETA).loss.item() for p in pairs]
    together = batch_dpo(policy, collate_pairs(pairs), BETA).loss.item()  # rows padded to the longest
    assert together == pytest.approx(sum(alone) / len(alone), rel=1e-5)
    # The targets are exactly the response tokens (and their end token): nothing of the prompt.
    inputs, targets, _ = collate_pairs(pairs)
    for i, p in enumerate(pairs):
        kept = targets[i][targets[i] != -100].tolist()
        assert kept == p.chosen and kept[-1] == ENDOFTEXT_ID
        kept_r = targets[len(pairs) + i][targets[len(pairs) + i] != -100].tolist()
        assert kept_r == p.rejected
    # Changing a padding id or a masked prompt target changes nothing.
    inputs2 = inputs.clone()
    pad = targets == -100
    row_len = [len(p.prompt) + len(p.chosen) - 1 for p in pairs] + [len(p.prompt) + len(p.rejected) - 1 for p in pairs]
    for i, n in enumerate(row_len):
        inputs2[i, n:] = 7  # the positions after each row's end are padding
    ref = torch.tensor([p.ref_chosen for p in pairs] + [p.ref_rejected for p in pairs])
    a = batch_dpo(policy, (inputs, targets, ref), BETA).loss.item()
    b = batch_dpo(policy, (inputs2, targets, ref), BETA).loss.item()
    assert a == pytest.approx(b, rel=1e-6)
    assert pad.any()


def test_a_policy_equal_to_its_reference_has_loss_log2():
    torch.manual_seed(2)
    model = GPTModel(TINY)
    data = PreferenceData(EXAMPLES, EXAMPLES[:2], [], ALPACA, pairs_of(EXAMPLES), pairs_of(EXAMPLES[:2]))
    task = DPOTask(data, beta=0.1, batch_size=2)
    task.precompute_reference(model)
    model.eval()
    with torch.no_grad():
        metrics = task.evaluate(model, None)
    assert metrics["val_loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert metrics["val_reward_margin"] == pytest.approx(0.0, abs=1e-4)


def test_bad_entries_are_named(tmp_path):
    path = tmp_path / "prefs.json"
    path.write_text(json.dumps([{"instruction": "a", "chosen": "b", "rejected": "c"},
                                {"instruction": "a", "chosen": "b"}]))
    with pytest.raises(ScratchError, match=r"entry 1: missing key 'rejected'"):
        load_preference_data(path)
    path.write_text(json.dumps([{"instruction": "a", "chosen": " ", "rejected": "c"}]))
    with pytest.raises(ScratchError, match=r"entry 0: 'chosen' and 'rejected' must both be non-empty"):
        load_preference_data(path)


def test_finetune_dpo_end_to_end(tmp_path, capsys):
    rows = [{"instruction": f"Say word {i}.", "input": "", "output": f"Word {i}.",
             "chosen": f"Word {i}.", "rejected": f"No {i} no no."} for i in range(40)]
    data = tmp_path / "prefs.json"
    data.write_text(json.dumps(rows))
    torch.manual_seed(0)
    init = save_checkpoint(tmp_path / "instruct.safetensors", GPTModel(TINY), kind="instruct", template="alpaca")
    out = tmp_path / "dpo"
    rc = main(["finetune-dpo", "--data", str(data), "--init", str(init), "--epochs", "3", "--batch-size", "4",
               "--lr", "3e-3", "--beta", "0.5", "--eval-every", "5", "--max-new-tokens", "4", "--device", "cpu",
               "--out", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "reward accuracy 0.00% (the model is its own reference)" in err
    best = tmp_path / "dpo.best.safetensors"
    meta = read_metadata(best)
    assert meta["kind"] == "instruct" and meta["task"] == "dpo" and meta["template"] == "alpaca"
    assert meta["dpo_val_reward_acc"] > 0.5 and meta["dpo_val_reward_margin"] > 0
    summary = json.loads((tmp_path / "dpo.best.eval.json").read_text())
    assert summary["dpo_val_before"]["val_loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert summary["dpo_val_after"]["val_loss"] < math.log(2)
    compare = json.loads((tmp_path / "dpo.best.compare.json").read_text())
    assert len(compare) == 4 and set(compare[0]) == {"instruction", "input", "reference", "before", "after"}
    run = next(Path(os.environ["CHATGPT_SCRATCH_RUNS"]).glob("dpo-*"))
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["type"] == "step"]
    evals = [e for e in events if e["type"] == "eval"]
    assert "reward_margin" in steps[-1] and "reward_acc" in steps[-1]
    assert {"val_reward_margin", "val_reward_acc", "train_reward_acc"} <= set(evals[-1])
    assert "val_ppl" not in evals[-1]  # the DPO loss is not a per-token LM loss


def test_finetune_dpo_stops_and_resumes_exactly(tmp_path):
    rows = [{"instruction": f"Say word {i}.", "input": "", "chosen": f"Word {i}.", "rejected": f"No {i} no."}
            for i in range(40)]
    data = tmp_path / "prefs.json"
    data.write_text(json.dumps(rows))
    torch.manual_seed(0)
    init = save_checkpoint(tmp_path / "instruct.safetensors", GPTModel(TINY), kind="instruct", template="alpaca")
    common = ["--data", str(data), "--init", str(init), "--batch-size", "4", "--lr", "1e-3", "--eval-every", "0",
              "--no-eval", "--device", "cpu"]
    runs = Path(os.environ["CHATGPT_SCRATCH_RUNS"])

    def losses(run_dir: Path) -> list[float]:
        events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
        return [e["train_loss"] for e in events if e["type"] == "step"]

    assert main(["finetune-dpo", *common, "--max-steps", "4", "--out", str(tmp_path / "straight")]) == 0
    assert main(["finetune-dpo", *common, "--max-steps", "2", "--out", str(tmp_path / "split")]) == 0
    split = next(runs.glob("split-*"))
    assert main(["finetune-dpo", "--resume", str(split), "--max-steps", "4"]) == 0
    straight = losses(next(runs.glob("straight-*")))
    assert len(straight) == 4
    assert losses(split) == pytest.approx(straight, abs=1e-5)  # the reference is recomputed from --init
