"""Instruction data: validation errors, the book's split, and the collate's exact ids and masks."""

from __future__ import annotations

import json

import pytest
import torch

from chatgpt_scratch.data.instruct import (
    EncodedExample, InstructionExample, batch_order, book_collate, collate, encode_examples, load_instruction_data,
    padding_fraction, parse_instruction_text, split_examples,
)
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.data.templates import ALPACA, PHI3
from chatgpt_scratch.tokenizer import ENDOFTEXT_ID, decode, encode

E = ENDOFTEXT_ID
X = -100


# --- collate -----------------------------------------------------------------------------------------


def test_collate_reproduces_the_books_worked_example():
    # The book's section 7.3 example, with its printed result.
    batch = [EncodedExample([0, 1, 2, 3, 4], 0), EncodedExample([5, 6], 0), EncodedExample([7, 8, 9], 0)]
    inputs, targets = collate(batch)
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, E, E, E], [7, 8, 9, E, E]]
    assert targets.tolist() == [[1, 2, 3, 4, E], [6, E, X, X, X], [8, 9, E, X, X]]


def test_collate_masks_the_prompt_targets_and_keeps_the_first_end_token():
    # ex1: prompt = [1, 2, 3], response = [4, 5]; ex2: prompt = [6], response = [7]
    batch = [EncodedExample([1, 2, 3, 4, 5], 3), EncodedExample([6, 7], 1)]
    inputs, targets = collate(batch, mask_instructions=True)
    assert inputs.tolist() == [[1, 2, 3, 4, 5], [6, 7, E, E, E]]
    # targets[j] is token j+1: tokens 2 and 3 are prompt (masked); 4, 5 and the end token stay.
    assert targets.tolist() == [[X, X, 4, 5, E], [7, E, X, X, X]]
    inputs, targets = collate(batch, mask_instructions=False)
    assert targets.tolist() == [[2, 3, 4, 5, E], [7, E, X, X, X]]


def test_collate_truncates_to_max_length_and_pads_only_to_the_longest_row():
    batch = [EncodedExample([1, 2, 3, 4, 5], 3), EncodedExample([6, 7], 1)]
    inputs, targets = collate(batch, max_length=3)
    assert inputs.tolist() == [[1, 2, 3], [6, 7, E]]
    assert targets.tolist() == [[2, 3, 4], [7, E, X]]
    inputs, _ = collate(batch, max_length=100)  # dynamic padding: no wider than needed
    assert inputs.shape == (2, 5)


def test_collate_equals_the_books_on_real_entries(dataset):
    examples = load_instruction_data(dataset("instruction-data.json"))[:24]
    encoded = encode_examples(examples, ALPACA)
    for start in range(0, 24, 8):
        batch = encoded[start:start + 8]
        for max_length in (None, 40):
            ours = collate(batch, max_length=max_length)
            theirs = book_collate([ex.ids for ex in batch], allowed_max_length=max_length)
            assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


@pytest.mark.parametrize("template", [ALPACA, PHI3], ids=["alpaca", "phi3"])
def test_template_round_trip_through_tokens(template):
    example = InstructionExample("Convert 45 kilometers to meters.", "", "45 kilometers is 45000 meters.")
    (enc,) = encode_examples([example], template)
    prompt = template.prompt(example.instruction, example.input)
    assert enc.ids[:enc.prompt_length] == encode(prompt)  # what chat feeds the model
    assert decode(enc.ids) == template.full_text(example.instruction, example.input, example.output)
    inputs, targets = collate([enc], mask_instructions=True)
    kept = [t for t in targets[0].tolist() if t != X]
    assert decode(kept) == example.output + "<|endoftext|>"  # exactly the response and the stop token
    assert decode(inputs[0].tolist()) == prompt + example.output


def test_alpaca_prompt_text_is_the_books():
    prompt = ALPACA.prompt("Edit the following sentence for grammar.", "He go to the park every day.")
    assert prompt == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nEdit the following sentence for grammar."
        "\n\n### Input:\nHe go to the park every day.\n\n### Response:\n"
    )


def test_end_token_written_in_the_data_stays_text():
    (enc,) = encode_examples([InstructionExample("Say it", "", "<|endoftext|>")], ALPACA)
    assert E not in enc.ids


# --- batching order ------------------------------------------------------------------------------


def test_batch_order_is_a_seeded_permutation_and_grouping_cuts_padding():
    lengths = [(i * 37) % 101 + 1 for i in range(400)]
    plain = batch_order(lengths, 8, seed=1, epoch=0)
    assert batch_order(lengths, 8, seed=1, epoch=0) == plain
    assert batch_order(lengths, 8, seed=1, epoch=1) != plain
    grouped = batch_order(lengths, 8, seed=1, epoch=0, group_by_length=True)
    for order in (plain, grouped):
        assert sorted(i for b in order for i in b) == list(range(400))
    examples = [EncodedExample([1] * n, 0) for n in lengths]
    assert padding_fraction(examples, grouped) < padding_fraction(examples, plain) / 3


# --- splits ----------------------------------------------------------------------------------------


def test_book_split_of_the_real_file(dataset):
    examples = load_instruction_data(dataset("instruction-data.json"))
    assert len(examples) == 1100
    splits = split_examples(examples)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (935, 55, 110)
    # No seed = the book's order: its test split is the book's instruction-data-with-response.json.
    book_test = json.loads(dataset("instruction-data-with-response.json").read_text())
    assert [e.instruction for e in splits.test] == [e["instruction"] for e in book_test]
    shuffled = split_examples(examples, seed=7)
    assert (len(shuffled.train), len(shuffled.val), len(shuffled.test)) == (935, 55, 110)
    assert shuffled.test != splits.test and split_examples(examples, seed=7).test == shuffled.test
    assert set(shuffled.train).isdisjoint(shuffled.test)


def test_bad_split_fractions():
    with pytest.raises(ScratchError, match="sum to 1"):
        split_examples([InstructionExample("a", "", "b")] * 10, (0.5, 0.2, 0.2))
    with pytest.raises(ScratchError, match="too few"):
        split_examples([InstructionExample("a", "", "b")] * 1)


# --- loading and validation -----------------------------------------------------------------------


def test_json_list_and_jsonl_give_the_same_examples(tmp_path):
    entries = [{"instruction": "a", "input": "b", "output": "c"}, {"instruction": "d", "output": "e"}]
    (tmp_path / "d.json").write_text(json.dumps(entries, indent=2))
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(e) for e in entries) + "\n\n")
    expected = [InstructionExample("a", "b", "c"), InstructionExample("d", "", "e")]
    assert load_instruction_data(tmp_path / "d.json") == expected
    assert load_instruction_data(tmp_path / "d.jsonl") == expected


@pytest.mark.parametrize("text, message", [
    ('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]',
     r"data.json: broken JSON at line 3, column 23: Expecting ',' delimiter"),
    ('[{"instruction": "a", "output": "b"}, {"instruction": "c"}]',
     r"data.json: entry 1: missing key 'output'"),
    ('[{"instruction": "a", "output": "b"}, {"instruction": "c", "input": 3, "output": "d"}]',
     r"data.json: entry 1: 'input' must be a string, got int"),
    ('[{"instruction": "a", "output": "b"}, ["c", "d"]]',
     r"data.json: entry 1: expected an object with instruction/input/output, got list"),
    ('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"\n',
     r"data.json: broken JSON on line 2 \(column 35\): Expecting ',' delimiter"),
    ('{"instruction": "a", "output": "b"}\n\n{"instruction": ["c"], "output": "d"}\n',
     r"data.json: line 3: 'instruction' must be a string, got list"),
    ("  \n", r"data.json: the file is empty"),
    ("[]", r"data.json: no entries found"),
])
def test_bad_data_is_named_precisely(tmp_path, text, message):
    path = tmp_path / "data.json"
    path.write_text(text)
    with pytest.raises(ScratchError, match=message):
        load_instruction_data(path)


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(ScratchError, match="instruction data not found"):
        load_instruction_data(tmp_path / "nope.json")
    (tmp_path / "latin.json").write_bytes('[{"instruction": "caf\xe9", "output": "x"}]'.encode("latin-1"))
    with pytest.raises(ScratchError, match="not UTF-8 text"):
        load_instruction_data(tmp_path / "latin.json")


def test_null_input_counts_as_empty():
    assert parse_instruction_text('[{"instruction": "a", "input": null, "output": "b"}]') == [
        InstructionExample("a", "", "b")]
