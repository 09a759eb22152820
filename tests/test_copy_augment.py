"""finetune-instruct --copy-augment: variants of the training entries whose rare shared words are swapped."""

from __future__ import annotations

import json
import re

import pytest

from chatgpt_scratch.data.instruct import InstructionExample, copy_augment, split_examples, load_instruction_data
from chatgpt_scratch.data.templates import get_template
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.training.instruct_task import prepare_instruct_data

CAPITALS = [("Denmark", "Copenhagen"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"),
            ("Poland", "Warsaw"), ("Austria", "Vienna"), ("Hungary", "Budapest")]
ENTRIES = [InstructionExample(f"What is the capital of {c}?", "", f"The capital of {c} is {city}.") for c, city in CAPITALS]
ENTRIES += [InstructionExample("Say hello.", "", "Hello there."),  # nothing of the prompt repeats: no variant
            InstructionExample("Rewrite the sentence.", "The cat sleeps.", "The cat is sleeping.")]


def test_each_variant_swaps_the_shared_rare_word_the_same_way_in_prompt_and_answer():
    variants = copy_augment(ENTRIES, k=3, seed=1)
    # sources: the 7 capitals (each country is in 1 entry: rare) and the cat sentence ("cat" is shared)
    assert len(variants) == 8 * 3
    swapped = 0
    for (country, city), group in zip(CAPITALS, [variants[i:i + 3] for i in range(0, 21, 3)]):
        for v in group:
            new = re.fullmatch(r"What is the capital of (\w+)\?", v.instruction).group(1)
            assert new[0].isupper()  # capitalised like the word it replaces
            assert v.output == f"The capital of {new} is {city}."  # swapped in both, the rest untouched
            swapped += new != country  # the draw may give the word itself back (1 in the pool's size)
    assert swapped >= 18
    cats = variants[21:]
    for v in cats:
        new = re.fullmatch(r"The (\w+) sleeps\.", v.input).group(1)
        assert v.instruction == "Rewrite the sentence." and v.output == f"The {new} is sleeping."
    # "The", "capital", "What" are template words (in every entry), never swapped
    assert all(v.instruction.startswith("What is the capital of ") for v in variants[:21])


def test_seeded_and_checked():
    assert copy_augment(ENTRIES, 2, seed=5) == copy_augment(ENTRIES, 2, seed=5)
    assert copy_augment(ENTRIES, 2, seed=5) != copy_augment(ENTRIES, 2, seed=6)
    assert copy_augment(ENTRIES, 0) == []
    with pytest.raises(ScratchError, match="--copy-augment must be 0 or more"):
        copy_augment(ENTRIES, -1)


def test_variants_join_the_training_split_only(tmp_path):
    path = tmp_path / "caps.json"
    path.write_text(json.dumps([e.to_dict() for e in ENTRIES * 4]))  # 36 entries: train 30, test 3, val 3
    alpaca = get_template("alpaca")
    plain = prepare_instruct_data(path, alpaca)
    data = prepare_instruct_data(path, alpaca, copy_augment_k=2, copy_augment_seed=9)
    assert data.val == plain.val and data.test == plain.test
    added = data.train[len(plain.train):]
    # each capital appears 4 times in the file, so it is no longer rare (df 4 <= 5 still is): variants exist
    expected = copy_augment(split_examples(load_instruction_data(path)).train, 2, seed=9)
    held_out = {(e.instruction.lower(), e.input.lower()) for e in (*data.val, *data.test)}
    assert added == [e for e in expected if (e.instruction.lower(), e.input.lower()) not in held_out]
    assert data.info["copy_augment"] == 2 and data.info["copy_augment_entries"] == len(added) > 0
