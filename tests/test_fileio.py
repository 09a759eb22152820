"""fileio.write_atomically: the one atomic write behind every file the app saves."""

import os
import stat

import numpy as np
import pytest

from chatgpt_scratch.storage import fileio


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_write_gives_new_file_permissions_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        target = fileio.write_text_atomic(tmp_path / "sub" / "a.json", "{}\n")
    finally:
        os.umask(old)
    assert target.read_text() == "{}\n"
    assert _mode(target) == 0o666 & ~fileio._UMASK
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]  # no temp file left


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")

    def broken(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        fileio.write_atomically(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_token_cache_and_evaluation_json_get_ordinary_permissions(tmp_path):
    """They used to keep mkstemp's 0600: unreadable to a group that shares the project folder."""
    from chatgpt_scratch.usecases import evaluate_instruct
    from chatgpt_scratch.data import corpus

    out = evaluate_instruct.write_json_atomic(tmp_path / "r.json", [{"a": 1}])
    assert _mode(out) == 0o666 & ~fileio._UMASK
    text = tmp_path / "t.txt"
    text.write_text("hello world", encoding="utf-8")
    loaded = corpus.load_corpus([text], cache_dir=tmp_path / "cache")
    caches = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert caches and all(_mode(p) == 0o666 & ~fileio._UMASK for p in caches)
    assert len(np.asarray(loaded.ids)) > 0
