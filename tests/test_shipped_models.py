"""The default models shipped in checkpoints/ (built by scripts/build_default_models.py): they load, their
headers carry the numbers their cards show, the classifier gets real messages right, the instruct model
answers, and the app will not let them be changed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from chatgpt_scratch.builtin import BUILTIN_MODELS, builtin_paths, card_metrics, is_builtin
from chatgpt_scratch.checkpoints import checkpoint_info, delete_checkpoint, read_metadata, rename_checkpoint
from chatgpt_scratch.errors import ScratchError

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "checkpoints"
CARD = FOLDER / "README.md"

# Real messages of the SMS Spam Collection's test split (seed 123), five of each class.
SPAM = [
    "FREE for 1st week! No1 Nokia tone 4 ur mob every week just txt NOKIA to 8007 Get txting and tell ur mates "
    "www.getzed.co.uk POBox 36504 W45WQ norm150p/tone 16+",
]
HAM = [
    "Ok lar... Joking wif u oni...",
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
    from chatgpt_scratch.inference import load_for_inference

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


def test_the_spam_adapter_meets_its_test_goal():
    meta = read_metadata(FOLDER / "default-spam.safetensors")
    assert meta["test_acc"] >= 0.993 and meta["test_spam_recall"] >= 0.96


def test_the_instruct_model_answers_a_fixed_prompt():
    from chatgpt_scratch.chat import ChatSession
    from chatgpt_scratch.generation import SamplingConfig

    session = ChatSession.from_checkpoint(FOLDER / "default-instruct.safetensors", device="cpu",
                                          sampling=SamplingConfig(temperature=0.0, max_new_tokens=40))
    reply = "".join(session.send("Name the capital of France."))
    assert reply.strip(), "the shipped instruct model gave an empty answer"
    assert session.stats.finish in ("end", "stop_string")
    meta = read_metadata(FOLDER / "default-instruct.safetensors")
    assert meta["test_empty_answers"] == 0 and meta["test_rouge_l"] >= 0.5


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
