"""Pooling, freezing, metrics and the SpamClassifier use-case, on tiny models."""

from __future__ import annotations

import copy

import pytest
import torch

from chatgpt_scratch.checkpoints import read_metadata, save_checkpoint
from chatgpt_scratch.classify import (
    SpamClassifier, classification_metrics, classifier_logits, frozen_prefix_length, pool_hidden,
)
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.data.spam import EncodedMessage, Message, collate, encode_messages, pad_batch
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.model import GPTModel, to_classifier
from chatgpt_scratch.training.spam_task import SpamData, SpamTask, parse_train_layers, set_trainable

TEXTS = ["Hi", "Free entry in 2 a wkly comp to win FA Cup final tkts", "Ok lar... Joking wif u oni..."]


def tiny_classifier(n_layers: int = 2, seed: int = 0) -> GPTModel:
    torch.manual_seed(seed)
    return to_classifier(GPTModel(PRESETS["test-tiny"].with_(n_layers=n_layers)), 2).eval()


# --- pooling ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["last-token", "mean"])
def test_padded_batch_gives_each_message_its_own_logits(pool):
    model = tiny_classifier()
    encoded = [e.ids for e in encode_messages([Message(t, 0) for t in TEXTS], max_length=64)]
    ids, lengths = pad_batch(encoded)
    assert ids.shape[1] > min(lengths)  # some rows really are padded
    with torch.no_grad():
        batched = classifier_logits(model, ids, lengths, pool)
        for row, seq in enumerate(encoded):
            alone = classifier_logits(model, torch.tensor([seq]), torch.tensor([len(seq)]), pool)
            torch.testing.assert_close(batched[row], alone[0], atol=1e-5, rtol=1e-5)


def test_pooling_matches_a_reference_on_the_per_token_logits():
    model = tiny_classifier()
    ids, lengths = pad_batch([e.ids for e in encode_messages([Message(t, 0) for t in TEXTS], 64)])
    with torch.no_grad():
        per_token = model(ids)  # (B, T, 2): the head on every position
        last = torch.stack([per_token[b, lengths[b] - 1] for b in range(len(TEXTS))])
        mean = torch.stack([per_token[b, :lengths[b]].mean(dim=0) for b in range(len(TEXTS))])
        torch.testing.assert_close(classifier_logits(model, ids, lengths, "last-token"), last)
        torch.testing.assert_close(classifier_logits(model, ids, lengths, "mean"), mean, atol=1e-5, rtol=1e-5)
        # The book's first version pooled position -1, which for a short message is a pad.
        assert not torch.allclose(per_token[0, -1], last[0])


def test_pool_hidden_by_hand_and_unknown_mode():
    hidden = torch.arange(12.0).reshape(2, 3, 2)  # (B=2, T=3, D=2)
    lengths = torch.tensor([1, 3])
    assert pool_hidden(hidden, lengths, "last-token").tolist() == [[0.0, 1.0], [10.0, 11.0]]
    assert pool_hidden(hidden, lengths, "mean").tolist() == [[0.0, 1.0], [8.0, 9.0]]
    with pytest.raises(ScratchError, match="unknown pooling 'max'"):
        pool_hidden(hidden, lengths, "max")


# --- trainable parts ----------------------------------------------------------------------------------


def _task(model_max_len: int = 64) -> SpamTask:
    messages = [Message(t, i % 2) for i, t in enumerate(TEXTS * 4)]
    encoded = encode_messages(messages, model_max_len)
    return SpamTask(SpamData(encoded, encoded[:4], encoded[:4], model_max_len), batch_size=4, seed=1)


def _changed_after_one_step(model: GPTModel) -> set[str]:
    task = _task()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.0)
    model.train()
    task.loss(model, next(task.train_batches(0))).backward()
    opt.step()
    return {name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])}


@pytest.mark.parametrize("spec, expected_prefixes", [
    ("head", ("out_head.",)),
    ("last-1", ("out_head.", "final_norm.", "trf_blocks.2.")),
    ("last-2", ("out_head.", "final_norm.", "trf_blocks.1.", "trf_blocks.2.")),
    ("all", ("",)),
])
def test_one_step_changes_exactly_the_chosen_parameters(spec, expected_prefixes):
    model = tiny_classifier(n_layers=3)
    trainable = set(set_trainable(model, spec))
    names = {name for name, _ in model.named_parameters()}
    expected = {n for n in names if n.startswith(expected_prefixes)}
    assert trainable == expected
    assert _changed_after_one_step(model) == expected


def test_lora_trains_adapters_and_the_head_only():
    model = tiny_classifier(n_layers=2)
    trainable = set(set_trainable(model, lora_rank=4))
    assert trainable == {n for n, _ in model.named_parameters()
                         if n.endswith(("lora_A", "lora_B")) or n.startswith("out_head.")}
    changed = _changed_after_one_step(model)
    # lora_A cannot move on the first step (its gradient is zero while lora_B is zero); lora_B and the head do.
    assert {n for n in changed if n.endswith("lora_B")} == {n for n in trainable if n.endswith("lora_B")}
    assert changed <= trainable and {"out_head.weight", "out_head.bias"} <= changed


def test_frozen_prefix_runs_without_autograd_and_gives_the_same_gradients():
    model = tiny_classifier(n_layers=3)
    reference = copy.deepcopy(model)  # everything trainable: the full autograd graph
    set_trainable(model, "last-1")
    assert frozen_prefix_length(model) == 3  # embeddings + blocks 0 and 1
    seen = {}
    for i, block in enumerate(model.trf_blocks):
        block.register_forward_hook(lambda m, inp, out, i=i: seen.update({i: (inp[0].requires_grad,
                                                                              out.requires_grad)}))
    batch = next(_task().train_batches(0))
    task = _task()
    loss = task.loss(model, batch)
    # No graph is recorded for the frozen blocks: the trainable block gets a plain tensor as input.
    assert seen == {0: (False, False), 1: (False, False), 2: (False, True)}
    loss.backward()
    ref_loss = task.loss(reference, batch)
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss)
    ref_params = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, ref_params[name].grad)
        else:
            assert p.grad is None


def test_activation_checkpointing_in_the_classifier_gives_the_same_gradients():
    # The trainable blocks go through GPTModel.run_block, which recomputes them in backward.
    model = tiny_classifier(n_layers=3).train()
    set_trainable(model, "last-2")
    checkpointed = copy.deepcopy(model)
    checkpointed.activation_checkpointing = True
    batch = next(_task().train_batches(0))
    losses = [_task().loss(m, batch) for m in (model, checkpointed)]
    for loss in losses:
        loss.backward()
    torch.testing.assert_close(losses[1], losses[0], rtol=0, atol=0)
    for (name, p), q in zip(model.named_parameters(), checkpointed.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=1e-7)


def test_train_layers_errors():
    assert parse_train_layers("last-3", 12) == 3
    with pytest.raises(ScratchError, match="the model has 2 blocks; use last-1 .. last-2"):
        parse_train_layers("last-5", 2)
    with pytest.raises(ScratchError, match="must be head, last-N"):
        parse_train_layers("first-1", 2)


# --- metrics ----------------------------------------------------------------------------------------


def test_metrics_on_a_hand_example():
    y_true = [0, 0, 0, 0, 1, 1, 1, 0, 1, 0]
    y_pred = [0, 1, 0, 0, 1, 0, 1, 0, 1, 1]
    # TN = 4 (0, 2, 3, 7), FP = 2 (1, 9), FN = 1 (5), TP = 3 (4, 6, 8)
    m = classification_metrics(y_true, y_pred)
    assert m.confusion == [[4, 2], [1, 3]]
    assert m.accuracy == pytest.approx(0.7)
    assert m.precision == pytest.approx(3 / 5)
    assert m.recall == pytest.approx(3 / 4)
    assert m.f1 == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    table = m.format(("ham", "spam"))
    assert "ham       4       2" in table and "spam       1       3" in table


def test_metrics_with_no_spam_predicted():
    m = classification_metrics([0, 1, 1], [0, 0, 0])
    assert (m.accuracy, m.precision, m.recall, m.f1) == (pytest.approx(1 / 3), 0.0, 0.0, 0.0)


def test_evaluate_reports_loss_and_accuracy():
    model = tiny_classifier()
    task = _task()
    result = task.evaluate(model, max_batches=None)
    ids, lengths, labels = collate(task.data.val)
    with torch.no_grad():
        logits = classifier_logits(model, ids, lengths)
    assert result["val_loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)
    assert result["val_acc"] == pytest.approx((logits.argmax(-1) == labels).float().mean().item())
    assert model.training is False  # the mode it was in is restored


# --- SpamClassifier -----------------------------------------------------------------------------------


def test_spam_classifier_batches_like_one_at_a_time(tmp_path):
    model = tiny_classifier()
    path = save_checkpoint(tmp_path / "clf.safetensors", model, kind="classifier", labels=["ham", "spam"],
                           pool="mean", max_length=16)
    clf = SpamClassifier.load(path)
    assert clf.pool == "mean" and clf.max_length == 16 and clf.labels == ["ham", "spam"]
    together = clf.classify(TEXTS, batch_size=2)
    for text, pred in zip(TEXTS, together):
        alone = clf.classify([text])[0]
        assert pred.label == alone.label
        assert pred.probs["spam"] == pytest.approx(alone.probs["spam"], abs=1e-5)
        assert sum(pred.probs.values()) == pytest.approx(1.0)
        assert pred.probability == max(pred.probs.values()) and pred.probs[pred.label] == pred.probability
    ids = encode_messages([Message(TEXTS[1], 0)], 16)[0].ids
    with torch.no_grad():
        expected = torch.softmax(classifier_logits(model, torch.tensor([ids]), torch.tensor([len(ids)]), "mean"), -1)
    assert together[1].probs["spam"] == pytest.approx(expected[0, 1].item(), abs=1e-5)


def test_spam_classifier_rejects_a_base_checkpoint_and_empty_text(tmp_path):
    base = save_checkpoint(tmp_path / "base.safetensors", GPTModel(PRESETS["test-tiny"]), kind="base")
    with pytest.raises(ScratchError, match=r"is a 'base' checkpoint, but this needs a 'classifier' one"):
        SpamClassifier.load(base)
    clf_path = save_checkpoint(tmp_path / "c.safetensors", tiny_classifier(), kind="classifier",
                               labels=["ham", "spam"])
    assert read_metadata(clf_path)["labels"] == ["ham", "spam"]
    with pytest.raises(ScratchError, match="message 2 is empty"):
        SpamClassifier.load(clf_path).classify(["hello", "  "])


def test_spam_classifier_load_needs_matching_labels(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", tiny_classifier(), kind="classifier", labels=["only"])
    with pytest.raises(ScratchError, match="do not fit its 2-class head"):
        SpamClassifier.load(path)


def test_weighted_loss_uses_training_class_weights():
    messages = [Message(f"m{i}", int(i < 2)) for i in range(8)]  # 2 spam, 6 ham
    encoded = [EncodedMessage(e.ids, e.label) for e in encode_messages(messages, 8)]
    task = SpamTask(SpamData(encoded, encoded, encoded, 8), batch_size=8, weighted=True)
    torch.testing.assert_close(task.weights, torch.tensor([8 / 12, 8 / 4]))
    model = tiny_classifier()
    batch = collate(encoded)
    with torch.no_grad():
        logits = classifier_logits(model, batch[0], batch[1])
        expected = torch.nn.functional.cross_entropy(logits, batch[2], weight=task.weights)
        torch.testing.assert_close(task.loss(model, batch), expected)


def test_ddp_shards_match_one_process_with_the_global_batch():
    messages = [Message(f"message number {i}", i % 2) for i in range(20)]
    encoded = encode_messages(messages, 16)
    data = SpamData(encoded, encoded[:2], encoded[:2], 16)
    single = SpamTask(data, batch_size=4, seed=3)
    sharded = SpamTask(data, batch_size=2, seed=3)
    assert sharded.num_train_batches(world_size=2) == 5 and single.num_train_batches() == 5
    for epoch in (0, 1):
        ranks = [list(sharded.train_batches(epoch, rank=r, world_size=2)) for r in (0, 1)]
        for g, global_batch in enumerate(single.train_batches(epoch)):
            assert torch.equal(ranks[0][g][0], global_batch[0][:2])  # rank 0 holds rows 0..1
            assert torch.equal(ranks[1][g][0], global_batch[0][2:])  # rank 1 holds rows 2..3
    assert [b[0].tolist() for b in single.train_batches(0)] != [b[0].tolist() for b in single.train_batches(1)]


def test_lora_classifier_is_saved_merged(tmp_path):
    model = tiny_classifier()
    set_trainable(model, lora_rank=2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.normal_()  # a non-zero update, as after training
    task = _task()
    path = tmp_path / "lora.safetensors"
    task.save_model(path, model, task.metadata())
    meta = read_metadata(path)
    assert meta["kind"] == "classifier" and meta["lora_merged"] is True and meta["lora_rank"] == 2
    clf = SpamClassifier.load(path)
    ids, lengths, _ = collate(task.data.val)
    with torch.no_grad():
        torch.testing.assert_close(classifier_logits(clf.model, ids, lengths),
                                   classifier_logits(model.eval(), ids, lengths), atol=1e-5, rtol=1e-5)


def test_length_grouping_cuts_padding_and_keeps_every_message_once():
    lengths = [1, 40, 3, 25, 2, 60, 5, 33, 4, 50, 7, 45] * 10
    data = SpamData([EncodedMessage([7] * n, i % 2) for i, n in enumerate(lengths)], [], [], 64)
    grouped = SpamTask(data, batch_size=4, seed=5, group_by_length=True)
    plain = SpamTask(data, batch_size=4, seed=5)
    for epoch in (0, 1):
        seen = sorted(i for g in grouped.global_batches(epoch) for i in g)
        assert seen == list(range(len(lengths)))
    padded = {name: sum(b[0].numel() for b in task.train_batches(0)) for name, task in
              (("grouped", grouped), ("plain", plain))}
    assert padded["grouped"] < 0.7 * padded["plain"]
    assert padded["grouped"] == sum(lengths) + sum(  # only the pads needed inside sorted groups
        max(lengths[i] for i in g) * len(g) - sum(lengths[i] for i in g) for g in grouped.global_batches(0))
    assert grouped.global_batches(0) != grouped.global_batches(1)
