"""The default models shipped in checkpoints/ (built by scripts/build_default_models.py): they load, their
headers carry the numbers their cards show, the classifier gets real messages right, the instruct model
answers, and the app will not let them be changed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from chatgpt_scratch.storage.builtin import BUILTIN_MODELS, builtin_paths, card_metrics, is_builtin
from chatgpt_scratch.checkpoints import checkpoint_info, delete_checkpoint, read_metadata, rename_checkpoint
from chatgpt_scratch.errors import ScratchError

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "checkpoints"
CARD = FOLDER / "README.md"

# Real messages of the SMS Spam Collection's test split (seed 123), five of each class.
SPAM = [
    "Ever thought about living a good life with a perfect partner? Just txt back NAME and AGE to join the mobile "
    "community. (100p/SMS)",
    "Free msg. Sorry, a service you ordered from 81303 could not be delivered as you do not have sufficient credit. "
    "Please top up to receive the service.",
    "1000's flirting NOW! Txt GIRL or BLOKE & ur NAME & AGE, eg GIRL ZOE 18 to 8007 to join and get chatting!",
    "You have an important customer service announcement from PREMIER.",
    "Get your garden ready for summer with a FREE selection of summer bulbs and seeds worth £33:50 only with The "
    "Scotsman this Saturday. To stop go2 notxt.co.uk",
]
HAM = [
    "But your brother transfered only  &lt;#&gt;  +  &lt;#&gt; . Pa.",
    "Match started.india  &lt;#&gt;  for 2",
    "Nope. Meanwhile she talk say make i greet you.",
    "Think I could stop by in like an hour or so? My roommate's looking to stock up for a trip",
    "No da..today also i forgot..",
]


@pytest.fixture(autouse=True)
def _bundled(bundled):
    """These tests look at the real shipped files."""


def test_all_three_ship_within_the_size_limit():
    paths = builtin_paths()
    assert [p.name.removesuffix(".safetensors") for p in paths] == list(BUILTIN_MODELS)
    assert sum(p.stat().st_size for p in paths) < 120_000_000
    for path in paths:
        info = checkpoint_info(path)
        assert info.ok and info.builtin and info.dtype == "BF16", info.error


@pytest.mark.parametrize("stem", list(BUILTIN_MODELS))
def test_each_loads_as_its_kind(stem):
    from chatgpt_scratch.usecases.inference import load_for_inference

    model, meta = load_for_inference(FOLDER / f"{stem}.safetensors", kind=BUILTIN_MODELS[stem])
    assert meta["kind"] == BUILTIN_MODELS[stem]
    assert next(model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize("stem", list(BUILTIN_MODELS))
def test_header_metrics_equal_the_card(stem):
    metrics = card_metrics(read_metadata(FOLDER / f"{stem}.safetensors"))
    assert metrics, f"{stem} has no metrics in its header"
    row = next(line for line in CARD.read_text().splitlines() if line.startswith(f"| `{stem}.safetensors`"))
    for label, value in metrics.items():
        assert f"{label} {value}" in row
    section = CARD.read_text().split(f"## {stem}\n", 1)[1].split("\n## ", 1)[0]
    for label, value in metrics.items():
        assert f"{label} = {value}" in section


def test_the_card_quotes_the_recipe_in_the_header():
    for stem in BUILTIN_MODELS:
        meta = read_metadata(FOLDER / f"{stem}.safetensors")
        assert meta["recipe"], stem
        for command in meta["recipe"]:
            assert command in CARD.read_text()


def test_the_spam_classifier_labels_real_test_messages():
    from chatgpt_scratch.classify import SpamClassifier

    classifier = SpamClassifier.load(FOLDER / "default-spam.safetensors")
    labels = [p.label for p in classifier.classify(SPAM + HAM)]
    assert labels == ["spam"] * len(SPAM) + ["ham"] * len(HAM)


def test_the_spam_ensemble_beats_the_classical_baselines():
    """Its header's test metrics (measured by scripts/model_cards.py on this file, through SpamClassifier): an
    ensemble of two LoRA classifiers (lora ensemble) whose accuracy is above the char n-gram + logistic and naive
    Bayes baselines on the same split (98.90% and 98.80%, benchmarks/spam_baselines.py) and whose spam recall
    meets the issue's 96% (theirs: 91.85%). The issue's accuracy goal (99.3%) is not reached yet: see the card."""
    meta = read_metadata(FOLDER / "default-spam.safetensors")
    assert len(meta["ensemble_members"]) == 2
    assert meta["test_spam_recall"] >= 0.96 and meta["test_acc"] > 0.9890


def test_the_instruct_model_answers_a_fixed_prompt():
    from chatgpt_scratch.chat import ChatSession
    from chatgpt_scratch.generation import SamplingConfig

    session = ChatSession.from_checkpoint(FOLDER / "default-instruct.safetensors", device="cpu",
                                          sampling=SamplingConfig(temperature=0.0, max_new_tokens=40))
    reply = "".join(session.send("Name the capital of France."))
    assert any(c.isalpha() for c in reply), f"the shipped instruct model gave no text: {reply!r}"
    assert session.stats.finish != "empty"
    meta = read_metadata(FOLDER / "default-instruct.safetensors")
    # No empty answer on the 110 test entries; ROUGE-L well above the random-weights book-only floor (0.268 in
    # the issue, 0.238 here), the v2 built-in (0.353), the v3 one (0.437) and the v4 one (0.469), whose recipe this
    # one's repeats on a longer-pretrained base, averaging two seeds of its last stage. The goal of 0.50 is
    # not reached yet.
    assert meta["test_empty_answers"] == 0 and meta["test_rouge_l"] > 0.469
    assert [m["file"] for m in meta["averaged_from"]] == ["instruct-mix2.best.safetensors",
                                                          "instruct-mix2b.best.safetensors"]


def test_the_real_builtins_cannot_be_deleted_or_renamed():
    for path in builtin_paths():
        before = path.stat().st_size, path.stat().st_mtime_ns
        assert is_builtin(path)
        with pytest.raises(ScratchError, match="built-in model shipped with the app"):
            delete_checkpoint(path)
        with pytest.raises(ScratchError, match="built-in model shipped with the app"):
            rename_checkpoint(path, "x")
        assert (path.stat().st_size, path.stat().st_mtime_ns) == before


def test_the_cards_say_what_made_each_model():
    text = CARD.read_text()
    for stem in BUILTIN_MODELS:
        assert re.search(rf"## {stem}\n", text)
    assert "Cannot" in text and "ROUGE-L" in text
