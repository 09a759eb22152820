"""finetune-instruct --add-train: more instruction data for the training split only."""

from __future__ import annotations

import json

import pytest

from chatgpt_scratch.data.instruct import encode_examples, load_instruction_data, split_examples
from chatgpt_scratch.data.templates import get_template
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.training.instruct_task import prepare_instruct_data

ALPACA = get_template("alpaca")


def _write(path, entries):
    path.write_text(json.dumps(entries))
    return path


@pytest.fixture
def files(tmp_path):
    main = [{"instruction": f"Question {i}?", "input": "", "output": f"Answer {i}."} for i in range(40)]
    extra = [{"instruction": f"Extra {i}?", "input": "", "output": "word " * (i * 5) + "end."} for i in range(12)]
    test_entry = split_examples(load_instruction_data(_write(tmp_path / "main.json", main))).test[0]
    extra.insert(3, {"instruction": "  " + test_entry.instruction.upper(), "input": "", "output": "leak"})
    return _write(tmp_path / "main.json", main), _write(tmp_path / "extra.json", extra)


def test_extra_entries_join_the_training_split_only_and_held_out_questions_are_dropped(files):
    main, extra = files
    plain = prepare_instruct_data(main, ALPACA)
    data = prepare_instruct_data(main, ALPACA, extra_train=extra)
    assert [e.instruction for e in data.val] == [e.instruction for e in plain.val]
    assert [e.instruction for e in data.test] == [e.instruction for e in plain.test]
    added = [e.instruction for e in data.train[len(plain.train):]]
    assert added == [f"Extra {i}?" for i in range(12)]  # the repeated test question is not among them
    assert data.info["extra_train_entries"] == 12 and data.info["extra_train_dropped_as_held_out"] == 1


def test_max_tokens_keeps_short_entries_and_the_limit_counts_among_them(files):
    main, extra = files
    plain = prepare_instruct_data(main, ALPACA)
    data = prepare_instruct_data(main, ALPACA, extra_train=extra, extra_max_tokens=60, extra_limit=4)
    added = data.train[len(plain.train):]
    assert all(len(e.ids) <= 60 for e in encode_examples(added, ALPACA))
    assert [e.instruction for e in added] == ["Extra 0?", "Extra 1?", "Extra 2?"]  # the leak was 1 of the 4
    every = load_instruction_data(extra)
    too_long = sum(len(e.ids) > 60 for e in encode_examples(every, ALPACA))
    assert too_long > 0 and data.info["extra_train_dropped_as_too_long"] == too_long
    assert data.info["extra_train_max_tokens"] == 60


def test_bad_max_tokens_is_a_clear_error(files):
    main, extra = files
    with pytest.raises(ScratchError, match="--add-train-max-tokens must be at least 1"):
        prepare_instruct_data(main, ALPACA, extra_train=extra, extra_max_tokens=0)


def test_skip_takes_the_next_slice_and_copy_augment_adds_variants_of_it(tmp_path):
    from chatgpt_scratch.data.instruct import copy_augment

    main = _write(tmp_path / "main.json",
                  [{"instruction": f"Question {i}?", "input": "", "output": f"Answer {i}."} for i in range(40)])
    # Each entry names a rare word its answer repeats, so every one of them gets variants.
    words = ["Copenhagen", "Lisbon", "Vienna", "Oslo", "Prague", "Dublin", "Madrid", "Athens"]
    extra = _write(tmp_path / "extra.json", [{"instruction": f"Where is {w}?", "input": "", "output": f"{w} is far."}
                                             for w in words])
    plain = prepare_instruct_data(main, ALPACA)
    data = prepare_instruct_data(main, ALPACA, extra_train=extra, extra_skip=3, extra_limit=2,
                                 extra_copy_augment_k=2, copy_augment_seed=5)
    added = data.train[len(plain.train):]
    assert [e.instruction for e in added[:2]] == ["Where is Oslo?", "Where is Prague?"]
    expected = copy_augment(added[:2], 2, seed=5)
    assert added[2:] == expected and len(expected) == 4
    # In each variant the answer still repeats its prompt's (swapped) word: the copying lesson.
    assert all(e.output.split()[0] == e.instruction.removeprefix("Where is ").rstrip("?") for e in expected)
    assert any(e.instruction not in ("Where is Oslo?", "Where is Prague?") for e in expected)
    assert (data.info["extra_train_skipped"], data.info["extra_train_copy_augment"]) == (3, 2)
    with pytest.raises(ScratchError, match="--add-train-skip must be 0 or more"):
        prepare_instruct_data(main, ALPACA, extra_train=extra, extra_skip=-1)
