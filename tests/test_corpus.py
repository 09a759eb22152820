"""Corpus: file discovery, <|endoftext|> joining, the token cache, the split, sliding windows, DDP shards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chatgpt_scratch.data import corpus
from chatgpt_scratch.data.corpus import find_text_files, load_corpus, split_runs, window_starts, windows
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.tokenizer import ENDOFTEXT_ID, get_tokenizer
from chatgpt_scratch.training.lm_task import LMTask


def book_gpt_dataset_v1(token_ids, max_length, stride):
    """The book's GPTDatasetV1 (ch02), as a reference."""
    inputs, targets = [], []
    for i in range(0, len(token_ids) - max_length, stride):
        inputs.append(token_ids[i:i + max_length])
        targets.append(token_ids[i + 1:i + max_length + 1])
    return inputs, targets


def test_windows_match_the_book_on_a_hand_example():
    ids = np.arange(100, 110, dtype=np.uint16)  # 10 tokens
    starts = window_starts([(0, 10)], context=4, stride=2)
    assert starts.tolist() == [0, 2, 4]
    x, y = windows(ids, starts, 4)
    assert x.tolist() == [[100, 101, 102, 103], [102, 103, 104, 105], [104, 105, 106, 107]]
    assert y.tolist() == [[101, 102, 103, 104], [103, 104, 105, 106], [105, 106, 107, 108]]
    ref_x, ref_y = book_gpt_dataset_v1(ids.tolist(), 4, 2)
    assert x.tolist() == ref_x and y.tolist() == ref_y


def test_windows_equal_the_book_on_the_verdict(dataset):
    ids = np.asarray(get_tokenizer().encode(dataset("the-verdict.txt").read_text()), dtype=np.uint16)
    assert len(ids) == 5145  # as SOURCES.md and the book say
    x, y = windows(ids, window_starts([(0, len(ids))], 256, 128), 256)
    ref_x, ref_y = book_gpt_dataset_v1(ids.tolist(), 256, 128)
    assert x.tolist() == ref_x and y.tolist() == ref_y


def test_windows_never_cross_a_run_end():
    starts = window_starts([(0, 10), (20, 26)], context=4, stride=3)
    assert starts.tolist() == [0, 3, 20]  # 20 + 4 < 26; 23 would need a target at 27


def test_documents_are_joined_with_endoftext(tmp_path):
    (tmp_path / "a.txt").write_text("Hello world.")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("Bye <|endoftext|> now")  # literal marker stays text
    (tmp_path / "notes.md").write_text("not a .txt file")
    c = load_corpus([tmp_path])
    enc = get_tokenizer()
    expected = enc.encode_ordinary("Hello world.") + [ENDOFTEXT_ID] + enc.encode_ordinary("Bye <|endoftext|> now")
    assert c.ids.tolist() == expected
    assert [f.name for f in c.files] == ["a.txt", "b.txt"]
    assert c.ids.dtype == np.uint16 and isinstance(c.ids, np.memmap)
    assert c.metadata()["datasets"][0]["sha256"] == corpus.sha256_file(tmp_path / "a.txt")


def test_second_load_uses_the_cache_without_tokenizing(tmp_path, monkeypatch):
    f = tmp_path / "t.txt"
    f.write_text("Every effort moves you. " * 50)
    first = load_corpus([f])
    assert first.cache_path.is_file()

    def no_tokenizing(texts):
        raise AssertionError("the tokenizer was called although the cache exists")

    monkeypatch.setattr(corpus, "tokenize_documents", no_tokenizing)
    second = load_corpus([f])
    assert second.cache_path == first.cache_path
    assert np.array_equal(second.ids, first.ids)
    # Changing the content (not the name) changes the key: a new cache is needed.
    f.write_text("Different text now.")
    with pytest.raises(AssertionError, match="tokenizer was called"):
        load_corpus([f])


def test_bad_inputs_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScratchError, match="holds no .txt files"):
        find_text_files([tmp_path / "empty"])
    with pytest.raises(ScratchError, match="no such file or folder, and not a known dataset name"):
        find_text_files([tmp_path / "missing.txt"])
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ScratchError, match="is not UTF-8 text .* convert it to UTF-8"):
        load_corpus([bad])


def test_chunk_split_is_seeded_disjoint_and_complete():
    train, val = split_runs(100_000, 0.1, seed=1, chunk_tokens=1000)
    again = split_runs(100_000, 0.1, seed=1, chunk_tokens=1000)
    other = split_runs(100_000, 0.1, seed=2, chunk_tokens=1000)
    assert (train, val) == again and val != other[1]
    covered = np.zeros(100_000, dtype=int)
    for lo, hi in train + val:
        covered[lo:hi] += 1
    assert (covered == 1).all()  # every token in exactly one split
    assert sum(hi - lo for lo, hi in val) == 10_000


def test_small_corpus_and_tail_mode_split_at_the_tail():
    assert split_runs(5145, 0.1, seed=1, chunk_tokens=4096) == ([(0, 4630)], [(4630, 5145)])
    assert split_runs(100_000, 0.25, seed=1, chunk_tokens=1000, mode="tail") == ([(0, 75_000)], [(75_000, 100_000)])
    with pytest.raises(ScratchError, match="--val-fraction must be in"):
        split_runs(100, 1.0, seed=1, chunk_tokens=10)


def test_ddp_shards_are_slices_of_the_single_process_batches():
    ids = np.arange(5000, dtype=np.uint16) % 50257
    single = LMTask(ids, [(0, 5000)], [], context=8, stride=8, batch_size=6, seed=3)
    shard = LMTask(ids, [(0, 5000)], [], context=8, stride=8, batch_size=3, seed=3)
    assert single.num_train_batches(1) == shard.num_train_batches(2)
    for epoch in (0, 1):
        whole = list(single.train_batches(epoch))
        rank0 = list(shard.train_batches(epoch, rank=0, world_size=2))
        rank1 = list(shard.train_batches(epoch, rank=1, world_size=2))
        for w, a, b in zip(whole, rank0, rank1):
            assert torch.equal(w[0], torch.cat([a[0], b[0]])) and torch.equal(w[1], torch.cat([a[1], b[1]]))
    # each epoch has its own order, the same every time it is asked for
    e0, e1 = next(single.train_batches(0))[0], next(single.train_batches(1))[0]
    assert not torch.equal(e0, e1) and torch.equal(e0, next(single.train_batches(0))[0])
