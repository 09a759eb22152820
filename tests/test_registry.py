"""Dataset registry: local paths win, names download (from a local HTTP server here) with a hash check."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import socket
import threading
import zipfile
from pathlib import Path

import pytest

from chatgpt_scratch.storage import paths
from chatgpt_scratch.data.registry import REGISTRY, DatasetInfo, resolve_dataset
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.storage.fileio import sha256_file

TEXT = b"I HAD always thought Jack Gisburn rather a cheap genius\n" * 50


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1 at a free port; yields (base_url, folder, request_log)."""
    www = tmp_path / "www"
    www.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", www, requests
    httpd.shutdown()
    httpd.server_close()


def _register(monkeypatch, **kw) -> DatasetInfo:
    info = DatasetInfo(name="demo", filename="demo.txt", size=len(TEXT), description="demo", license="x",
                       **{"sha256": hashlib.sha256(TEXT).hexdigest(), **kw})
    monkeypatch.setitem(REGISTRY, "demo", info)
    return info


def test_existing_path_is_used_as_is(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_text("hello")
    assert resolve_dataset(str(f)) == f


def test_registry_entries_match_sources(dataset):
    # The-verdict and the book's instruction data are byte-identical to the canonical downloads.
    for name in ("the-verdict", "instruction-data"):
        info = REGISTRY[name]
        path = dataset(info.filename)
        assert sha256_file(path) == info.sha256
        assert path.stat().st_size == info.size


def test_download_checks_hash_and_is_cached(monkeypatch, server):
    base, www, requests = server
    (www / "demo.txt").write_bytes(TEXT)
    _register(monkeypatch, url=f"{base}/demo.txt")
    got = resolve_dataset("demo")
    assert got == paths.datasets_dir() / "demo.txt"
    assert got.read_bytes() == TEXT
    assert requests == ["/demo.txt"]
    assert resolve_dataset("demo") == got  # second time: from disk, no request
    assert requests == ["/demo.txt"]


def test_download_with_wrong_hash_saves_nothing(monkeypatch, server):
    base, www, _ = server
    (www / "demo.txt").write_bytes(TEXT + b"tampered")
    _register(monkeypatch, url=f"{base}/demo.txt")
    with pytest.raises(ScratchError, match=r"expected .*; it was deleted, nothing was saved"):  # size or sha256
        resolve_dataset("demo")
    assert not (paths.datasets_dir() / "demo.txt").exists()
    assert not list(paths.datasets_dir().glob(".demo.txt.*"))  # no temp file left either


def test_zip_download_keeps_the_member(monkeypatch, server):
    base, www, _ = server
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme", "ignore me")
        z.writestr("demo.txt", TEXT)
    (www / "demo.zip").write_bytes(buf.getvalue())
    _register(monkeypatch, url=f"{base}/demo.zip", zip_member="demo.txt")
    assert resolve_dataset("demo").read_bytes() == TEXT


def test_offline_gives_one_clear_error(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/demo.txt"
    _register(monkeypatch, url=url)
    with pytest.raises(ScratchError) as e:
        resolve_dataset("demo")
    msg = str(e.value)
    assert url in msg and "--data PATH" in msg and "\n" not in msg


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ScratchError, match=r"not a known dataset name \(sms-spam, instruction-data, alpaca"):
        resolve_dataset("no-such-thing")


def test_no_download_flag(monkeypatch):
    _register(monkeypatch, url="http://127.0.0.1:1/demo.txt")
    with pytest.raises(ScratchError, match="pass --data PATH"):
        resolve_dataset("demo", download=False)
    assert isinstance(paths.datasets_dir(), Path)
