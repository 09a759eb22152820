"""lora-adapter files load wherever a model is used for inference (inference.load_for_inference):
the same function as the merged model, the adapted kind checked, header keys inherited from the base."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from chatgpt_scratch.chat import ChatSession
from chatgpt_scratch.checkpoints import list_checkpoints, save_checkpoint
from chatgpt_scratch.classify import SpamClassifier
from chatgpt_scratch.cli import main
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.generation import SamplingConfig
from chatgpt_scratch.usecases.inference import adapted_kind, load_for_inference
from chatgpt_scratch.lora import inject_lora, load_lora_adapter, merge_lora, save_lora_adapter
from chatgpt_scratch.model import GPTModel, to_classifier
from chatgpt_scratch.data.templates import ALPACA

CFG = PRESETS["test-tiny"].with_(context_length=128, tie_embeddings=True)  # tied: merging unties the head
IDS = torch.tensor([[5, 17, 300, 2, 9, 44]])
MESSAGES = ["WINNER!! Claim your free prize now", "see you at lunch", "ok"]


pytestmark = pytest.mark.usefixtures("one_thread")


def randomize_adapters(model: torch.nn.Module, seed: int = 1, scale: float = 0.5) -> None:
    """Training would move B away from zero; do it by hand so the adapter clearly changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.copy_(torch.randn(p.shape, generator=g) * scale)


@pytest.fixture
def instruct_adapter(tmp_path):
    """(base path, adapter path, merged model): a base model plus an instruct adapter on every linear layer."""
    torch.manual_seed(0)
    model = GPTModel(CFG).eval()
    base = save_checkpoint(tmp_path / "base.safetensors", model, kind="base")
    inject_lora(model, rank=2, alpha=4)
    randomize_adapters(model)
    adapter = save_lora_adapter(tmp_path / "chat.lora.safetensors", model, base, model_kind="instruct",
                                template="alpaca", val_loss=1.5)
    return base, adapter, merge_lora(copy.deepcopy(model)).eval()


def classifier_adapter(tmp_path, base_kind: str = "base", **header):
    """(base path, adapter path, merged classifier): a spam-style adapter with its own 2-class head."""
    torch.manual_seed(0)
    model = GPTModel(CFG)
    if base_kind == "classifier":
        to_classifier(model, 2)
    base = save_checkpoint(tmp_path / "base.safetensors", model.eval(), kind=base_kind,
                           **({"labels": ["ham", "spam"], "pool": "mean"} if base_kind == "classifier" else {}))
    if base_kind != "classifier":
        to_classifier(model, 2)
    inject_lora(model, rank=2, alpha=4, targets=("att.qkv", "ff.layers.0"), train_also=("out_head",))
    randomize_adapters(model)
    adapter = save_lora_adapter(tmp_path / "spam.lora.safetensors", model, base, model_kind="classifier", **header)
    return base, adapter, merge_lora(copy.deepcopy(model)).eval()


def probabilities(classifier: SpamClassifier) -> list[dict[str, float]]:
    return [p.probs for p in classifier.classify(MESSAGES)]


# -- the loader ------------------------------------------------------------------------------------


def test_adapter_loads_as_its_merged_model_with_the_adapted_kind(instruct_adapter):
    base, adapter, _ = instruct_adapter
    model, meta = load_for_inference(adapter, kind=("instruct", "base"))
    reference, _ = load_lora_adapter(adapter, merge=True)
    base_model, _ = load_for_inference(base)
    with torch.no_grad():
        logits = model(IDS)
        assert torch.equal(logits, reference(IDS))
        assert (logits - base_model(IDS)).abs().max() > 0.1  # the adapter really changes the model
    assert not any("lora" in name for name, _ in model.named_parameters())  # merged: plain layers, base speed
    assert meta["kind"] == "instruct" and meta["template"] == "alpaca" and meta["val_loss"] == 1.5
    assert meta["lora_adapter"] == str(adapter.resolve()) and meta["parent"] == str(base.resolve())
    assert json.loads(meta["config"])["tie_embeddings"] is False  # the merged head has its own matrix


def test_dtype_applies_to_an_adapter(instruct_adapter):
    _, adapter, _ = instruct_adapter
    model, _ = load_for_inference(adapter, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_wrong_kind_fails_in_one_line_before_the_base_is_touched(instruct_adapter):
    base, adapter, _ = instruct_adapter
    base.unlink()  # the kind is in the adapter's header: no need to find, hash or load the base
    with pytest.raises(ScratchError) as info:
        load_for_inference(adapter, kind="classifier")
    assert str(info.value) == f"{adapter} (a LoRA adapter) is an 'instruct' checkpoint, but this needs a 'classifier' one"


def test_adapted_kind_reads_the_header_and_infers_it_when_model_kind_is_absent(tmp_path):
    torch.manual_seed(0)
    model = GPTModel(CFG)
    base = save_checkpoint(tmp_path / "base.safetensors", model, kind="base")
    inject_lora(model, rank=1, alpha=1)
    plain = save_lora_adapter(tmp_path / "plain.lora.safetensors", model, base)  # no model_kind
    odd = save_lora_adapter(tmp_path / "odd.lora.safetensors", model, base, model_kind="poem")
    by_name = {i.name: i for i in list_checkpoints(tmp_path)}
    assert adapted_kind(by_name["base"].metadata) == "base"
    assert adapted_kind(by_name["plain.lora"].metadata) == "base"
    assert adapted_kind(by_name["odd.lora"].metadata) is None
    _, meta = load_for_inference(plain, kind="base")
    assert meta["kind"] == "base"
    with pytest.raises(ScratchError, match=r"the adapter header's model_kind 'poem' is not one of base, instruct, "
                                           r"classifier; the file was edited or is damaged"):
        load_for_inference(odd)
    classifier_adapter(tmp_path / "spam")
    header = dict({i.name: i for i in list_checkpoints(tmp_path / "spam")}["spam.lora"].metadata)
    del header["model_kind"]
    assert adapted_kind(header) == "classifier"  # a class head in the adapted config


# -- the use-cases ---------------------------------------------------------------------------------


def test_chat_session_on_an_adapter_replies_exactly_as_on_the_merged_checkpoint(instruct_adapter, tmp_path):
    base, adapter, merged = instruct_adapter
    merged_path = save_checkpoint(tmp_path / "merged.safetensors", merged, kind="instruct", template="alpaca")
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=12)
    on_adapter = ChatSession.from_checkpoint(adapter, device="cpu", sampling=sampling)
    on_merged = ChatSession.from_checkpoint(merged_path, device="cpu", sampling=sampling)
    assert on_adapter.template == ALPACA and on_adapter.checkpoint == str(adapter)
    for message in ("Hi", "Name a colour."):
        reply = "".join(on_adapter.send(message))
        assert reply and reply == "".join(on_merged.send(message))
    base_with_template = ChatSession(load_for_inference(base)[0], ALPACA, sampling)
    assert "".join(base_with_template.send("Hi")) != on_adapter.turns[0].assistant


def test_spam_classifier_on_an_adapter_gives_the_merged_models_probabilities(tmp_path):
    _, adapter, merged = classifier_adapter(tmp_path, labels=["ham", "spam"], pool="last-token", max_length=40)
    classifier = SpamClassifier.load(adapter, device="cpu")
    assert classifier.labels == ["ham", "spam"] and classifier.max_length == 40
    reference = SpamClassifier(merged, ["ham", "spam"], "last-token", 40)
    got, expected = probabilities(classifier), probabilities(reference)
    for g, e in zip(got, expected):
        assert g == pytest.approx(e, abs=1e-6)


def test_a_classifier_adapter_inherits_labels_and_pooling_from_a_classifier_base(tmp_path):
    _, adapter, merged = classifier_adapter(tmp_path, base_kind="classifier")  # header: no labels, no pool
    classifier = SpamClassifier.load(adapter, device="cpu")
    assert classifier.labels == ["ham", "spam"] and classifier.pool == "mean"
    reference = SpamClassifier(merged, ["ham", "spam"], "mean")
    for g, e in zip(probabilities(classifier), probabilities(reference)):
        assert g == pytest.approx(e, abs=1e-6)


def test_an_instruct_adapter_does_not_inherit_from_a_base_of_another_kind(tmp_path):
    torch.manual_seed(0)
    model = GPTModel(CFG)
    base = save_checkpoint(tmp_path / "base.safetensors", model, kind="base", template="phi3")  # odd, but base
    inject_lora(model, rank=1, alpha=1)
    adapter = save_lora_adapter(tmp_path / "a.lora.safetensors", model, base, model_kind="instruct")
    _, meta = load_for_inference(adapter)
    assert "template" not in meta
    with pytest.raises(ScratchError, match="is an instruct checkpoint without a 'template'"):
        ChatSession.from_checkpoint(adapter, device="cpu")


# -- the CLI ---------------------------------------------------------------------------------------


def test_cli_classify_accepts_a_classifier_adapter(tmp_path, capsys):
    _, adapter, merged = classifier_adapter(tmp_path, labels=["ham", "spam"], pool="last-token")
    assert main(["classify", "--checkpoint", str(adapter), "--json", *MESSAGES]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = probabilities(SpamClassifier(merged, ["ham", "spam"]))
    assert [r["text"] for r in rows] == MESSAGES
    for row, e in zip(rows, expected):
        assert row["probs"] == pytest.approx(e, abs=2e-6)  # printed rounded to 6 places


@pytest.mark.parametrize("command", [
    ["generate", "--max-new-tokens", "10", "Every effort moves you"],
    ["xray", "--as-instruction", "--view", "next", "Name a colour."],
])
def test_cli_generate_and_xray_on_an_adapter_print_what_the_merged_checkpoint_prints(
        instruct_adapter, tmp_path, capsys, command):
    _, adapter, merged = instruct_adapter
    merged_path = save_checkpoint(tmp_path / "merged.safetensors", merged, kind="instruct", template="alpaca")
    assert main([command[0], "--checkpoint", str(merged_path), *command[1:]]) == 0
    expected = capsys.readouterr().out
    assert main([command[0], "--checkpoint", str(adapter), *command[1:]]) == 0
    assert capsys.readouterr().out == expected and expected.strip()


def test_cli_wrong_kind_and_missing_base_are_one_line_errors(instruct_adapter, tmp_path, capsys):
    base, adapter, _ = instruct_adapter
    assert main(["classify", "--checkpoint", str(adapter), "hello"]) == 1
    assert capsys.readouterr().err == (f"error: {adapter} (a LoRA adapter) is an 'instruct' checkpoint, "
                                       "but this needs a 'classifier' one\n")
    base.rename(tmp_path / "elsewhere.safetensors")
    assert main(["generate", "--checkpoint", str(adapter), "--max-new-tokens", "2", "hi"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: the base model of adapter {adapter} is missing: {base.resolve()} not found")
    assert err.count("\n") == 1
    with pytest.raises(ScratchError, match="the base model of adapter .* is missing"):
        ChatSession.from_checkpoint(adapter, device="cpu")


def test_chat_cli_on_the_adapter_a_real_lora_run_saved_answers_as_its_merged_model(tmp_path, capsys, monkeypatch):
    """The header finetune-instruct --lora-rank writes is enough to chat: template (phi3) included."""
    import io

    from tests.test_finetune_instruct import COMMON, write_data

    torch.manual_seed(0)
    base = save_checkpoint(tmp_path / "base.safetensors", GPTModel(CFG), kind="base")
    assert main(["finetune-instruct", "--data", str(write_data(tmp_path / "data.json")), "--init", str(base),
                 "--out", str(tmp_path / "ck" / "run"), "--template", "phi3", "--lora-rank", "4", "--no-eval",
                 *COMMON]) == 0
    capsys.readouterr()
    replies = {}
    for name in ("run.safetensors", "run.lora.safetensors"):  # the merged model, the adapter alone
        monkeypatch.setattr("sys.stdin", io.StringIO("Say the colour red.\nAnd blue?\n"))
        assert main(["chat", "--checkpoint", str(tmp_path / "ck" / name), "--device", "cpu", "--no-save",
                     "--max-new-tokens", "8", "--jsonl"]) == 0
        replies[name] = [json.loads(line)["reply"] for line in capsys.readouterr().out.splitlines()]
    assert len(replies["run.safetensors"]) == 2 and all(replies["run.safetensors"])
    assert replies["run.lora.safetensors"] == replies["run.safetensors"]
    assert load_for_inference(tmp_path / "ck" / "run.lora.safetensors")[1]["template"] == "phi3"
