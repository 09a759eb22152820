"""GPT-2 weights: import from / export to the Hugging Face layout, proven against transformers; downloads."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from chatgpt_scratch.storage import gpt2_weights as gw
from chatgpt_scratch.checkpoints import load_checkpoint, read_metadata
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.model import GPTModel

transformers = pytest.importorskip("transformers")

HF_SMALL = dict(n_layer=2, n_embd=64, n_head=4, vocab_size=50257, n_positions=128)


def perturbed_hf_model(**overrides) -> "transformers.GPT2LMHeadModel":
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**HF_SMALL, **overrides})).eval()
    with torch.no_grad():  # LayerNorms at 1/0 and zero biases would hide a swapped or missing tensor
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.2)
    return model


def save_hf(model, folder: Path) -> Path:
    try:
        model.save_pretrained(folder, safe_serialization=True)
    except TypeError:  # transformers >= 5 always writes safetensors
        model.save_pretrained(folder)
    return folder / "model.safetensors"


@pytest.fixture(scope="module")
def hf_model():
    return perturbed_hf_model()


@pytest.fixture
def ids() -> torch.Tensor:
    return torch.randint(0, 50257, (2, 40), generator=torch.Generator().manual_seed(3))


def hf_logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


# --- import ----------------------------------------------------------------------------------------


def test_imported_model_matches_transformers(tmp_path, hf_model, ids):
    path = save_hf(hf_model, tmp_path / "hf")
    ours = gw.import_gpt2(path)
    assert (ours.cfg.n_layers, ours.cfg.emb_dim, ours.cfg.n_heads, ours.cfg.context_length) == (2, 64, 4, 128)
    assert ours.cfg.tie_embeddings and ours.out_head.weight is ours.tok_emb.weight
    with torch.no_grad():
        assert torch.allclose(ours(ids), hf_logits(hf_model, ids), atol=1e-4, rtol=0)


def test_import_original_layout_without_prefix_and_saves_provenance(tmp_path, hf_model, ids):
    """The openai-community uploads have no `transformer.` prefix and carry attn.bias mask buffers."""
    src = save_hf(hf_model, tmp_path / "hf")
    orig = tmp_path / "orig"
    orig.mkdir()
    tensors = {k.removeprefix("transformer."): v for k, v in load_file(src).items()}
    tensors["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 128, 128))  # as in the real gpt2 file
    save_file(tensors, orig / "model.safetensors", metadata={"format": "pt"})
    (orig / "config.json").write_text((tmp_path / "hf" / "config.json").read_text())

    out = tmp_path / "ckpt" / "imported.safetensors"
    gw.import_gpt2(orig / "model.safetensors", out=out)
    meta = read_metadata(out)
    assert meta["kind"] == "base" and meta["source"] == "huggingface-file"
    assert meta["source_sha256"] == hashlib.sha256((orig / "model.safetensors").read_bytes()).hexdigest()
    model, _ = load_checkpoint(out)
    with torch.no_grad():
        assert torch.allclose(model(ids), hf_logits(hf_model, ids), atol=1e-4, rtol=0)


def test_untied_head_is_imported(tmp_path, ids):
    hf = perturbed_hf_model(tie_word_embeddings=False)
    with torch.no_grad():
        hf.lm_head.weight.normal_(0, 0.02)
    assert not torch.equal(hf.lm_head.weight, hf.transformer.wte.weight)
    ours = gw.import_gpt2(save_hf(hf, tmp_path / "hf"))
    assert not ours.cfg.tie_embeddings
    with torch.no_grad():
        assert torch.allclose(ours(ids), hf_logits(hf, ids), atol=1e-4, rtol=0)


def test_heads_come_from_the_width_or_config_json(tmp_path, hf_model):
    path = save_hf(hf_model, tmp_path / "hf")
    (tmp_path / "hf" / "config.json").unlink()
    with pytest.raises(ScratchError, match="cannot tell the number of attention heads for width 64 .*put the model's config.json"):
        gw.import_gpt2(path)
    assert gw.infer_config(path, {"wte.weight": [50257, 1024], "wpe.weight": [1024, 1024],
                                  **{f"h.{i}.ln_1.weight": [1024] for i in range(24)}}).n_heads == 16


def test_unsupported_variant_is_refused(tmp_path, hf_model):
    path = save_hf(hf_model, tmp_path / "hf")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    cfg["activation_function"] = "relu"
    (tmp_path / "hf" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ScratchError, match=r"describes a GPT-2 variant this model cannot run: activation 'relu'"):
        gw.import_gpt2(path)


def test_import_errors(tmp_path):
    with pytest.raises(ScratchError, match="checkpoint not found"):
        gw.import_gpt2(tmp_path / "missing" / "model.safetensors")
    with pytest.raises(ScratchError, match="unknown GPT-2 size 'gpt3'"):
        gw.import_gpt2("gpt3")
    save_file({"something.else": torch.zeros(2)}, tmp_path / "x.safetensors")
    with pytest.raises(ScratchError, match="has no GPT-2 token/position embeddings"):
        gw.import_gpt2(tmp_path / "x.safetensors")


def test_size_names():
    assert [gw.size_name(n) for n in ("gpt2", "124M", "gpt2-small", "medium", "355M", "774M", "1558M", "xl")] == \
        ["gpt2-small", "gpt2-small", "gpt2-small", "gpt2-medium", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt2-xl"]


# --- export ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tie, vocab_multiple", [(True, 1), (False, 1), (True, 64), (False, 64)])
def test_exported_model_loads_in_transformers(tmp_path, ids, tie, vocab_multiple):
    # A padded vocabulary (50,304 rows) exports as GPT-2's 50,257.
    torch.manual_seed(1)
    cfg = PRESETS["test-tiny"].with_(tie_embeddings=tie, context_length=128, vocab_multiple=vocab_multiple)
    ours = GPTModel(cfg).eval()
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if name.endswith(("scale", "shift", "bias")):
                p.add_(torch.randn_like(p) * 0.2)
    out = gw.export_hf(ours, tmp_path / "export")
    hf = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    with torch.no_grad():
        assert torch.allclose(hf_logits(hf, ids), ours(ids), atol=1e-4, rtol=0)
    # Back again: export then import is exact.
    again = gw.import_gpt2(out / "model.safetensors")
    assert again.cfg.tie_embeddings is tie and hf.config.vocab_size == 50257
    with torch.no_grad():
        assert torch.equal(again(ids), ours(ids))
    # The GPT-2 tokenizer files come along, so transformers' tokenizer loads from the folder too.
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok("Hello, world!")["input_ids"] == [15496, 11, 995, 0]


def test_export_refuses_a_classifier(tmp_path):
    from chatgpt_scratch.model import to_classifier

    with pytest.raises(ScratchError, match="this is a classifier"):
        gw.export_hf(to_classifier(GPTModel(PRESETS["test-tiny"]), 2), tmp_path / "out")
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_public_api_reexports():
    from chatgpt_scratch.checkpoints import export_hf, import_gpt2

    assert import_gpt2 is gw.import_gpt2 and export_hf is gw.export_hf


# --- download (a local server; no internet) --------------------------------------------------------


class FileServer(http.server.BaseHTTPRequestHandler):
    """Serves `payload` at /file (Range-aware), and a Hub-style redirect at .../resolve/main/model.safetensors."""

    payload = b""
    announce_size: int | None = None
    announce_sha: str | None = None
    requests: list[tuple[str, str, str | None]] = []

    def log_message(self, *args):
        pass

    def _facts(self):
        if self.announce_size is not None:
            self.send_header("X-Linked-Size", str(self.announce_size))
        if self.announce_sha is not None:
            self.send_header("X-Linked-Etag", f'"{self.announce_sha}"')

    def do_HEAD(self):
        self._serve(body=False)

    def do_GET(self):
        self._serve(body=True)

    def _serve(self, body: bool):
        type(self).requests.append((self.command, self.path, self.headers.get("Range")))
        if self.path.endswith("/resolve/main/model.safetensors"):
            self.send_response(302)
            self.send_header("Location", "/file")
            self._facts()
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path != "/file":
            self.send_error(404)
            return
        data, start = self.payload, 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if body:
            self.wfile.write(data[start:])


@pytest.fixture
def server():
    handler = type("Handler", (FileServer,), {"payload": bytes(range(256)) * 4000, "requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    handler.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield handler
    httpd.shutdown()
    httpd.server_close()


def test_download_checks_hash_and_skips_a_finished_file(tmp_path, server):
    sha = hashlib.sha256(server.payload).hexdigest()
    dest = tmp_path / "dl" / "model.safetensors"
    assert gw.download_file(f"{server.base}/file", dest, expected_sha256=sha, progress=False) == sha
    assert dest.read_bytes() == server.payload and not (tmp_path / "dl" / "model.safetensors.part").exists()
    n = len(server.requests)
    assert gw.download_file(f"{server.base}/file", dest, expected_sha256=sha, progress=False) == sha
    assert len(server.requests) == n  # already there and verified: no request


def test_interrupted_download_resumes_with_a_range_request(tmp_path, server):
    dest = tmp_path / "model.safetensors"
    sha = hashlib.sha256(server.payload).hexdigest()

    def drop_connection(written: int):
        raise ConnectionResetError("connection reset by peer")

    with pytest.raises(ScratchError, match=r"cannot reach 127.0.0.1 .*use --from FILE; the partial download .* is kept"):
        gw.download_file(f"{server.base}/file", dest, expected_sha256=sha, progress=False, chunk=100_000,
                         _after_chunk=drop_connection)
    part = tmp_path / "model.safetensors.part"
    assert part.stat().st_size == 100_000 and not dest.exists()

    assert gw.download_file(f"{server.base}/file", dest, expected_sha256=sha, progress=False) == sha
    assert dest.read_bytes() == server.payload and not part.exists()
    assert ("GET", "/file", "bytes=100000-") in server.requests


def test_size_mismatch_is_caught_and_the_file_deleted(tmp_path, server):
    dest = tmp_path / "model.safetensors"
    with pytest.raises(ScratchError, match=rf"has {len(server.payload)} bytes, expected {len(server.payload) + 5}; it was deleted"):
        gw.download_file(f"{server.base}/file", dest, expected_size=len(server.payload) + 5, progress=False)
    assert not dest.exists() and not (tmp_path / "model.safetensors.part").exists()


def test_hash_mismatch_is_caught_and_the_file_deleted(tmp_path, server):
    dest = tmp_path / "model.safetensors"
    with pytest.raises(ScratchError, match=r"has sha256 .*, expected 0000000000000000\.\.\.; it was deleted"):
        gw.download_file(f"{server.base}/file", dest, expected_sha256="0" * 64, progress=False)
    assert not dest.exists() and not (tmp_path / "model.safetensors.part").exists()


def test_hub_redirect_facts_are_used(tmp_path, server, monkeypatch):
    """Like huggingface.co: /resolve/ redirects, announcing size and sha256 in X-Linked-* headers."""
    monkeypatch.setenv("HF_ENDPOINT", server.base)
    server.announce_size = len(server.payload)
    server.announce_sha = "f" * 64  # wrong on purpose: proves the announced hash is checked
    with pytest.raises(ScratchError, match=r"expected ffffffffffffffff\.\.\."):
        gw.download_gpt2("gpt2-medium", progress=False)
    assert ("HEAD", "/openai-community/gpt2-medium/resolve/main/model.safetensors", None) in server.requests
    server.announce_sha = hashlib.sha256(server.payload).hexdigest()
    path, digest = gw.download_gpt2("355M", progress=False)
    assert digest == server.announce_sha and path.read_bytes() == server.payload
    assert path == gw.downloads_dir() / "gpt2-medium" / "model.safetensors"


def test_offline_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(ScratchError, match=r"cannot reach 127.0.0.1 to download the gpt2-large weights \(.*\); "
                                           r"download http://127.0.0.1:9/openai-community/gpt2-large/resolve/main/"
                                           r"model.safetensors elsewhere and use --from FILE"):
        gw.import_gpt2("gpt2-large", progress=False)


def test_import_by_size_downloads_then_imports(tmp_path, server, monkeypatch, hf_model, ids):
    """`import_gpt2("gpt2-medium")` end to end against a local Hub stand-in serving a (tiny) GPT-2 file."""
    src = save_hf(hf_model, tmp_path / "hf")
    server.payload = src.read_bytes()
    server.announce_size, server.announce_sha = len(server.payload), hashlib.sha256(server.payload).hexdigest()
    monkeypatch.setenv("HF_ENDPOINT", server.base)
    tiny_as_medium = PRESETS["gpt2-medium"].with_(emb_dim=64, n_heads=4, n_layers=2, context_length=128)
    monkeypatch.setitem(gw.PRESETS, "gpt2-medium", tiny_as_medium)  # the real one is 1.5 GB

    out = tmp_path / "medium.safetensors"
    model = gw.import_gpt2("gpt2-medium", out=out, progress=False)
    with torch.no_grad():
        assert torch.allclose(model(ids), hf_logits(hf_model, ids), atol=1e-4, rtol=0)
    meta = read_metadata(out)
    assert meta["source_url"] == f"{server.base}/openai-community/gpt2-medium/resolve/main/model.safetensors"
    assert (meta["gpt2_size"], meta["source_sha256"]) == ("gpt2-medium", server.announce_sha)
