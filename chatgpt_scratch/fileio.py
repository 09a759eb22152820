"""Small file helpers shared by the data, checkpoint and weight-import code: hashing, and the one
atomic write every file the app saves goes through (checkpoints, token caches, downloads, JSON)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (GPT-2 XL is 6 GB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def temp_prefix(path: Path) -> str:
    """Temp files of a save of `path` are `.NAME.*.tmp` beside it (hidden, so listings skip them)."""
    return f".{path.name}."


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete temp files a killed save of `path` left behind (`.NAME.*.tmp` beside it)."""
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for tmp in path.parent.glob(f"{temp_prefix(path)}*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def write_atomically(target: str | Path, write: Callable[[str], None]) -> Path:
    """write(tmp) fills a temp file beside `target`; only a complete, fsynced file replaces target.

    A crash at any moment leaves the old file (if any) intact: the temp file is fsynced, given the
    permissions of any new file (mkstemp makes it 0600), renamed over the target (atomic on POSIX
    and Windows), and the folder is fsynced so the rename survives a power loss.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target), suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    return target


def write_bytes_atomic(target: str | Path, data: bytes) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return write_atomically(target, write)


def write_text_atomic(target: str | Path, text: str) -> Path:
    return write_bytes_atomic(target, text.encode("utf-8"))


def _read_umask() -> int:
    umask = os.umask(0)  # the only way to read it is to set it; done once, at import
    os.umask(umask)
    return umask


_UMASK = _read_umask()


def _fsync_file(path: str | Path) -> None:
    """Flush to disk, and give the file the permissions of any new file (temp files start as 0600)."""
    os.chmod(path, 0o666 & ~_UMASK)
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def fsync_dir(folder: str | Path) -> None:
    """Make a rename or a new file in `folder` durable (no-op where folders cannot be opened)."""
    if hasattr(os, "O_DIRECTORY"):
        dir_fd = os.open(folder, os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
