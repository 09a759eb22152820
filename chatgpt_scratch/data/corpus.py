"""A text corpus as GPT-2 token ids: tokenized once, cached, memory-mapped, split, cut into windows.

- `--data` takes .txt files, folders of them (searched recursively, sorted by path) and registry
  names (`the-verdict`). Each file is one document; documents are joined with <|endoftext|>.
- The ids are cached as a uint16 .npy in `<datasets dir>/cache/`, named by a hash of the files'
  contents (not their names or times), and memory-mapped: the second run starts at once.
- Train/val split by contiguous chunks: the ids are cut into chunks of `chunk_tokens`, a seeded
  permutation picks `val_fraction` of the chunks for validation. A corpus of fewer than 10 chunks
  is split at the tail instead (the last `val_fraction` of the tokens, as the book does for
  the-verdict.txt); `split="tail"` asks for that always.
- Sliding windows as the book's GPTDatasetV1: for start in range(lo, hi - context, stride) within
  each split run, input = ids[start:start+context], target = ids[start+1:start+context+1].
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from chatgpt_scratch.storage import paths
from chatgpt_scratch.data.registry import resolve_dataset
from chatgpt_scratch.storage.fileio import sha256_file, write_atomically
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.tokenizer import ENDOFTEXT_ID

CACHE_VERSION = "corpus-v1/gpt2"  # bump if tokenization or joining changes
Run = tuple[int, int]             # [start, end) token positions in the corpus


@dataclass
class Corpus:
    ids: np.ndarray            # (n_tokens,) uint16, memory-mapped from the cache
    files: list[Path]
    sha256: list[str]          # per file, same order
    key: str                   # content hash of the whole corpus (the cache key)
    cache_path: Path

    @property
    def n_tokens(self) -> int:
        return int(self.ids.shape[0])

    def metadata(self) -> dict:
        return {"datasets": [{"path": str(f), "sha256": h} for f, h in zip(self.files, self.sha256)],
                "dataset_sha256": self.key, "dataset_tokens": self.n_tokens}


def find_text_files(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand --data arguments: files as given, folders to their *.txt files (recursive, sorted)."""
    if not inputs:
        raise ScratchError("no training text given; pass --data FILE.txt or --data FOLDER")
    files: list[Path] = []
    for item in inputs:
        path = resolve_dataset(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.txt") if p.is_file())
            if not found:
                raise ScratchError(f"{path} holds no .txt files; pass text files or a folder of them")
            files.extend(found)
        else:
            files.append(path)
    return files


def tokenize_documents(texts: list[str]) -> list[list[int]]:
    """GPT-2 ids of each document; text that merely looks like <|endoftext|> is kept as plain text."""
    from chatgpt_scratch.tokenizer import get_tokenizer

    return get_tokenizer().encode_ordinary_batch(texts, num_threads=os.cpu_count() or 1)


def load_corpus(inputs: Sequence[str | Path], cache_dir: str | Path | None = None) -> Corpus:
    files = find_text_files(inputs)
    hashes = [sha256_file(f) for f in files]
    key = hashlib.sha256("\n".join([CACHE_VERSION, *hashes]).encode()).hexdigest()
    cache_dir = Path(cache_dir) if cache_dir is not None else paths.datasets_dir() / "cache"
    cache_path = cache_dir / f"corpus-{key[:24]}.npy"
    if not cache_path.exists():
        _build_cache(files, cache_path)
    try:
        ids = np.load(cache_path, mmap_mode="r")
    except (ValueError, OSError):
        raise ScratchError(f"the token cache {cache_path} is damaged; delete it and run again") from None
    return Corpus(ids=ids, files=files, sha256=hashes, key=key, cache_path=cache_path)


def _build_cache(files: list[Path], cache_path: Path) -> None:
    texts = []
    for f in files:
        try:
            texts.append(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise ScratchError(f"{f} is not UTF-8 text (byte {e.start}); convert it to UTF-8 first") from None
    docs = tokenize_documents(texts)
    joined: list[int] = []
    for i, doc in enumerate(docs):
        if i:
            joined.append(ENDOFTEXT_ID)
        joined.extend(doc)
    ids = np.asarray(joined, dtype=np.uint16)  # GPT-2's 50,257 ids fit in 16 bits
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, ids)

    write_atomically(cache_path, write)


def split_runs(n_tokens: int, val_fraction: float, seed: int, chunk_tokens: int,
               mode: str = "chunks") -> tuple[list[Run], list[Run]]:
    """-> (train runs, val runs): contiguous [start, end) ranges of the corpus."""
    if not 0.0 <= val_fraction < 1.0:
        raise ScratchError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if mode not in ("chunks", "tail"):
        raise ScratchError(f"--val-split must be 'chunks' or 'tail', got {mode!r}")
    if val_fraction == 0:
        return [(0, n_tokens)], []
    n_chunks = -(-n_tokens // chunk_tokens)
    if mode == "tail" or n_chunks < 10:
        cut = int(round(n_tokens * (1 - val_fraction)))
        return [(0, cut)], [(cut, n_tokens)]
    n_val = max(1, int(round(val_fraction * n_chunks)))
    rng = np.random.default_rng(seed)
    is_val = np.zeros(n_chunks, dtype=bool)
    is_val[rng.permutation(n_chunks)[:n_val]] = True
    train: list[Run] = []
    val: list[Run] = []
    for c in range(n_chunks):  # merge neighbouring chunks of the same side into one run
        run = (c * chunk_tokens, min((c + 1) * chunk_tokens, n_tokens))
        side = val if is_val[c] else train
        if side and side[-1][1] == run[0]:
            side[-1] = (side[-1][0], run[1])
        else:
            side.append(run)
    return train, val


def window_starts(runs: Sequence[Run], context: int, stride: int) -> np.ndarray:
    """Start positions of every window, as the book's GPTDatasetV1 but never crossing a run's end."""
    if context < 1 or stride < 1:
        raise ScratchError(f"--context and --stride must be >= 1, got {context} and {stride}")
    parts = [np.arange(lo, hi - context, stride, dtype=np.int64) for lo, hi in runs]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def windows(ids: np.ndarray, starts: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (inputs, targets), each (len(starts), context) int64; targets are inputs shifted by one."""
    offsets = np.arange(context + 1)
    block = np.asarray(ids[starts[:, None] + offsets], dtype=np.int64)  # (n, context + 1)
    return block[:, :-1], block[:, 1:]
