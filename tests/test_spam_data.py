"""SMS spam loader, split and batching: the real file and the edge cases."""

from __future__ import annotations

import json

import pytest
import torch

from chatgpt_scratch.data.spam import (
    PAD_ID, Message, class_weights, collate, encode_messages, label_counts, load_messages, pad_batch,
    stratified_split, undersample,
)
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.tokenizer import encode


def test_real_file_counts(dataset):
    messages = load_messages(dataset("SMSSpamCollection"))
    assert len(messages) == 5016
    assert label_counts(messages) == [4344, 672]
    assert messages[0] == Message("Go until jurong point, crazy.. Available only in bugis n great world la e "
                                  "buffet... Cine there got amore wat...", 0)
    assert messages[2].label == 1 and messages[2].text.startswith("Free entry in 2 a wkly comp")


def test_real_file_quotes_are_not_merged(dataset):
    # pandas' default quoting merges lines that contain a quote character: we must not.
    path = dataset("SMSSpamCollection")
    raw = [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    quoted = [line for line in raw if '"' in line]
    assert quoted, "the file has lines with quote characters"
    texts = {m.text for m in load_messages(path)}
    assert all(line.split("\t", 1)[1] in texts for line in quoted)


def test_tabs_inside_text_and_blank_lines(tmp_path):
    path = tmp_path / "SMS"
    path.write_text("ham\tfirst\tsecond  \n\n   \nSPAM\tWIN \"cash\" now\r\nham\t\n", encoding="utf-8")
    messages = load_messages(path)
    assert messages == [Message("first\tsecond  ", 0), Message('WIN "cash" now', 1), Message("", 0)]


def test_bad_label_names_the_line(tmp_path):
    path = tmp_path / "SMS"
    path.write_text("ham\tok\n\nspam\tbuy\nhma\ttypo here\n", encoding="utf-8")
    with pytest.raises(ScratchError, match=r"line 4: label 'hma' is neither 'ham' nor 'spam'"):
        load_messages(path)


def test_line_without_tab(tmp_path):
    path = tmp_path / "SMS"
    path.write_text("ham\tok\nspam no tab here\n", encoding="utf-8")
    with pytest.raises(ScratchError, match=r"line 2: no tab"):
        load_messages(path)


def test_single_class_and_missing_file(tmp_path):
    path = tmp_path / "SMS"
    path.write_text("ham\ta\nham\tb\n", encoding="utf-8")
    with pytest.raises(ScratchError, match="needs both ham and spam messages; found 2 ham and 0 spam"):
        load_messages(path)
    with pytest.raises(ScratchError, match="spam data not found"):
        load_messages(tmp_path / "nope.csv")


def test_csv_with_quotes_commas_and_newlines(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('id,text,label\n1,"Hello, world",ham\n2,"line one\nline two ""quoted""",spam\n3,x,1\n',
                    encoding="utf-8")
    assert load_messages(path) == [Message("Hello, world", 0), Message('line one\nline two "quoted"', 1),
                                   Message("x", 1)]
    bad = tmp_path / "bad.csv"
    bad.write_text("message,label\nhi,ham\n", encoding="utf-8")
    with pytest.raises(ScratchError, match="needs `text` and `label` columns"):
        load_messages(bad)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("text,label\nhi,ham\nyo,maybe\n", encoding="utf-8")
    with pytest.raises(ScratchError, match=r"line 3: label 'maybe'"):
        load_messages(wrong)


def test_jsonl(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [{"text": "tab\tinside", "label": "ham"}, {"text": "win", "label": "spam"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    assert load_messages(path) == [Message("tab\tinside", 0), Message("win", 1)]
    path.write_text('{"text": "a", "label": "ham"}\n{"text": "b"}\n', encoding="utf-8")
    with pytest.raises(ScratchError, match=r"line 2: each line must be an object with `text` and `label`"):
        load_messages(path)
    path.write_text('{"text": "a", "label": "ham"}\n{oops\n', encoding="utf-8")
    with pytest.raises(ScratchError, match=r"line 2: not valid JSON"):
        load_messages(path)


def _fake(n_ham: int, n_spam: int) -> list[Message]:
    return [Message(f"ham {i}", 0) for i in range(n_ham)] + [Message(f"spam {i}", 1) for i in range(n_spam)]


def test_stratified_split_keeps_ratio_and_partitions():
    messages = _fake(4344, 672)
    splits = stratified_split(messages, (0.7, 0.1, 0.2), seed=1)
    assert label_counts(splits.train) == [3041, 470]
    assert label_counts(splits.val) == [434, 67]
    assert label_counts(splits.test) == [869, 135]
    everything = splits.train + splits.val + splits.test
    assert sorted(m.text for m in everything) == sorted(m.text for m in messages)  # a partition
    again = stratified_split(messages, (0.7, 0.1, 0.2), seed=1)
    assert again.test == splits.test  # the seed fixes the split
    assert stratified_split(messages, (0.7, 0.1, 0.2), seed=2).test != splits.test


def test_undersample_gives_the_book_balanced_set():
    balanced = undersample(_fake(4344, 672), seed=123)
    assert label_counts(balanced) == [672, 672]
    assert len({m.text for m in balanced}) == 1344
    splits = stratified_split(balanced, (0.7, 0.1, 0.2), seed=123)
    assert [len(splits.train), len(splits.val), len(splits.test)] == [940, 134, 270]


def test_class_weights_balance_the_loss():
    w = class_weights(_fake(90, 10))
    assert torch.allclose(w, torch.tensor([100 / (2 * 90), 100 / (2 * 10)]))
    assert w[0] * 90 == pytest.approx(w[1] * 10)  # each class carries the same total weight


def test_dynamic_padding_and_truncation():
    encoded = encode_messages([Message("Hi", 0), Message("Free entry in 2 a wkly comp", 1), Message("", 0)],
                              max_length=4)
    assert encoded[0].ids == encode("Hi")
    assert encoded[1].ids == encode("Free entry in 2 a wkly comp")[:4]
    assert encoded[2].ids == [PAD_ID]  # an empty message still has one position to pool
    ids, lengths, labels = collate(encoded)
    assert ids.shape == (3, 4)  # the longest message of THIS batch, not the data set
    assert lengths.tolist() == [len(encode("Hi")), 4, 1]
    assert labels.tolist() == [0, 1, 0]
    assert ids[0, lengths[0]:].tolist() == [PAD_ID] * (4 - len(encode("Hi")))  # right-padded
    short, short_lengths = pad_batch([[5, 6], [7]])
    assert short.tolist() == [[5, 6], [7, PAD_ID]] and short_lengths.tolist() == [2, 1]
