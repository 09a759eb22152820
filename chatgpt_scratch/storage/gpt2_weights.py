"""OpenAI's GPT-2 weights in the Hugging Face layout: download, import, export.

The Hugging Face `model.safetensors` of openai-community/gpt2 (-medium, -large, -xl) names
tensors after OpenAI's TensorFlow code: `wte`, `wpe`, `h.{i}.ln_1`, `h.{i}.attn.c_attn` (Q, K
and V fused), ... Its linear layers are `Conv1D`s, which store the weight as (in, out): the
transpose of `nn.Linear`'s (out, in). Keys may carry a `transformer.` prefix (files written by
`GPT2LMHeadModel.save_pretrained`) or not (the original uploads). The LM head is tied to `wte`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from chatgpt_scratch.storage.checkpoint_format import atomic_save_tensors, read_safetensors_header
from chatgpt_scratch.config import ALIASES, PRESETS, GPTConfig
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.model import GPTModel
from chatgpt_scratch.storage.fileio import download_file, sha256_file  # noqa: F401 (download_file: public here too)

HF_REPO = "openai-community"
SIZES = ("gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl")
HF_NAMES = {"gpt2-small": "gpt2", "gpt2-medium": "gpt2-medium", "gpt2-large": "gpt2-large", "gpt2-xl": "gpt2-xl"}
# n_heads cannot be read off the tensor shapes; GPT-2's four sizes fix it by width.
HEADS_BY_WIDTH = {768: 12, 1024: 16, 1280: 20, 1600: 25}
# Pinned where verified (the LFS object of openai-community/gpt2 at main); for the other sizes the
# expected size and sha256 come from the Hub's X-Linked-Size / X-Linked-Etag response headers.
KNOWN_FILES = {
    "gpt2-small": (548105171, "248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707"),
}

# Ours <- Hugging Face, per transformer block; True = Conv1D weight, transpose it.
_BLOCK_MAP = [
    ("norm1.scale", "ln_1.weight", False), ("norm1.shift", "ln_1.bias", False),
    ("att.qkv.weight", "attn.c_attn.weight", True), ("att.qkv.bias", "attn.c_attn.bias", False),
    ("att.out_proj.weight", "attn.c_proj.weight", True), ("att.out_proj.bias", "attn.c_proj.bias", False),
    ("norm2.scale", "ln_2.weight", False), ("norm2.shift", "ln_2.bias", False),
    ("ff.layers.0.weight", "mlp.c_fc.weight", True), ("ff.layers.0.bias", "mlp.c_fc.bias", False),
    ("ff.layers.2.weight", "mlp.c_proj.weight", True), ("ff.layers.2.bias", "mlp.c_proj.bias", False),
]
_TOP_MAP = [("tok_emb.weight", "wte.weight"), ("pos_emb.weight", "wpe.weight"),
            ("final_norm.scale", "ln_f.weight"), ("final_norm.shift", "ln_f.bias")]


def size_name(name: str) -> str:
    """'gpt2' / '124M' / 'gpt2-small' / 'medium' ... -> one of SIZES."""
    key = ALIASES.get(name, name)
    if key not in SIZES and f"gpt2-{key}" in SIZES:
        key = f"gpt2-{key}"
    if key not in SIZES:
        raise ScratchError(
            f"unknown GPT-2 size {name!r}; choose gpt2 (124M), gpt2-medium (355M), gpt2-large (774M) or gpt2-xl (1558M), "
            "or give a local model.safetensors with --from FILE"
        )
    return key


# --- import ----------------------------------------------------------------------------------------


def _hf_config(weights_file: Path) -> dict[str, Any] | None:
    """The config.json beside a Hugging Face weights file, if there is one."""
    path = weights_file.parent / "config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise ScratchError(f"{path} is not valid JSON ({e}); fix or remove it") from None


def _check_hf_config(hf: dict[str, Any], path: Path) -> None:
    """Refuse variants our model does not compute (rather than import them and give wrong logits)."""
    problems = []
    if hf.get("model_type", "gpt2") != "gpt2":
        problems.append(f"model_type is {hf.get('model_type')!r}")
    if hf.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        problems.append(f"activation {hf['activation_function']!r} (ours is the tanh GELU)")
    if abs(float(hf.get("layer_norm_epsilon", 1e-5)) - 1e-5) > 1e-12:
        problems.append(f"layer_norm_epsilon {hf['layer_norm_epsilon']} (ours is 1e-5)")
    if hf.get("n_inner") not in (None, 4 * hf.get("n_embd", 0)):
        problems.append(f"n_inner {hf['n_inner']} (ours is 4 x n_embd)")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if hf.get(flag):
            problems.append(f"{flag} is set")
    if hf.get("scale_attn_weights") is False:
        problems.append("scale_attn_weights is off")
    if problems:
        raise ScratchError(f"{path.parent / 'config.json'} describes a GPT-2 variant this model cannot run: {'; '.join(problems)}")


def infer_config(path: Path, tensor_shapes: dict[str, list[int]], size: str | None = None) -> GPTConfig:
    """Our GPTConfig for a Hugging Face GPT-2 file: shapes give the sizes, config.json or the width gives n_heads."""
    try:
        vocab_size, emb_dim = tensor_shapes["wte.weight"]
        context_length = tensor_shapes["wpe.weight"][0]
    except (KeyError, ValueError):
        raise ScratchError(f"{path} has no GPT-2 token/position embeddings (wte.weight, wpe.weight); is it a GPT-2 model?") from None
    layers = {int(m.group(1)) for k in tensor_shapes if (m := re.match(r"h\.(\d+)\.", k))}
    n_layers = len(layers)
    if n_layers == 0 or layers != set(range(n_layers)):
        raise ScratchError(f"{path}: transformer blocks h.0 ... h.N are missing or not numbered 0..N-1")
    hf = _hf_config(path)
    if hf is not None:
        _check_hf_config(hf, path)
        n_heads = int(hf.get("n_head", 0))
        drop_rate = float(hf.get("resid_pdrop", 0.1))
    else:
        n_heads = PRESETS[size].n_heads if size else HEADS_BY_WIDTH.get(emb_dim, 0)
        drop_rate = 0.1
    if not n_heads:
        raise ScratchError(
            f"{path}: cannot tell the number of attention heads for width {emb_dim} "
            "(not one of GPT-2's sizes); put the model's config.json beside the file"
        )
    tied = "lm_head.weight" not in tensor_shapes
    return GPTConfig(vocab_size=vocab_size, context_length=context_length, emb_dim=emb_dim, n_heads=n_heads,
                     n_layers=n_layers, drop_rate=drop_rate, qkv_bias=True, tie_embeddings=tied)


def load_hf_gpt2(path: str | Path, size: str | None = None, dtype: torch.dtype | None = None) -> GPTModel:
    """Build our GPTModel from a Hugging Face GPT-2 `model.safetensors` (tensors are read one at a time)."""
    path = Path(path)
    header = read_safetensors_header(path)  # clear errors for missing / truncated / corrupt files
    prefix = "transformer." if any(k.startswith("transformer.") for k in header.tensors) else ""
    shapes = {k[len(prefix):] if k.startswith(prefix) else k: t["shape"] for k, t in header.tensors.items()}
    if "lm_head.weight" in shapes:
        shapes.pop("lm_head.weight")  # decide tying below, by value
    cfg = infer_config(path, shapes, size)
    if size is not None and any(getattr(cfg, f) != getattr(PRESETS[size], f)
                                for f in ("emb_dim", "n_layers", "vocab_size", "context_length")):
        raise ScratchError(f"{path} does not hold {size} weights (width {cfg.emb_dim}, {cfg.n_layers} layers)")

    state: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            def get(hf_name: str, transpose: bool = False) -> torch.Tensor:
                key = prefix + hf_name
                if key not in header.tensors:
                    raise ScratchError(f"{path} has no tensor {key!r}; it is not a complete GPT-2 checkpoint")
                t = f.get_tensor(key)
                t = t.t().contiguous() if transpose else t
                return t.to(dtype) if dtype is not None else t

            for ours, theirs in _TOP_MAP:
                state[ours] = get(theirs)
            for i in range(cfg.n_layers):
                for ours, theirs, transpose in _BLOCK_MAP:
                    state[f"trf_blocks.{i}.{ours}"] = get(f"h.{i}.{theirs}", transpose)
            lm_head = None
            for key in ("lm_head.weight", "transformer.lm_head.weight"):
                if key in header.tensors:
                    lm_head = f.get_tensor(key)
                    lm_head = lm_head.to(dtype) if dtype is not None else lm_head
    except SafetensorError as e:
        raise ScratchError(f"{path}: cannot read the weights ({str(e).splitlines()[0]}); the file may be corrupt") from None

    tied = lm_head is None or torch.equal(lm_head, state["tok_emb.weight"])
    cfg = cfg.with_(tie_embeddings=tied)
    if not tied:
        state["out_head.weight"] = lm_head
    with torch.device("meta"):
        model = GPTModel(cfg)
    model.load_state_dict(state, strict=tied is False, assign=True)
    if tied:
        model.out_head.weight = model.tok_emb.weight
    return model.eval()


@dataclass
class ImportedGPT2:
    model: GPTModel
    provenance: dict[str, Any]  # source (size, URL or file), source_sha256


def import_gpt2(source: str | Path, out: str | Path | None = None, dtype: torch.dtype | None = None,
                progress: bool = True) -> GPTModel:
    """GPT-2 weights as our GPTModel.

    source: a size name (gpt2 / gpt2-medium / gpt2-large / gpt2-xl, or 124M / 355M / 774M / 1558M;
    downloaded once into checkpoints/downloads/) or a local Hugging Face model.safetensors.
    out: also save it there as a "base" checkpoint with provenance (source and its sha256).
    """
    imported = import_gpt2_with_provenance(source, dtype=dtype, progress=progress)
    if out is not None:
        from chatgpt_scratch.checkpoints import save_checkpoint

        save_checkpoint(out, imported.model, kind="base", **imported.provenance)
    return imported.model


def import_gpt2_with_provenance(source: str | Path, dtype: torch.dtype | None = None,
                                progress: bool = True) -> ImportedGPT2:
    size = _as_size(source)
    if size is None:
        path = Path(source)
        if path.is_dir():
            path = path / "model.safetensors"
        provenance: dict[str, Any] = {"source": "huggingface-file", "source_file": str(path.resolve())}
        digest = sha256_file(path) if path.is_file() else None
    else:
        path, digest = download_gpt2(size, progress=progress)
        provenance = {"source": "huggingface", "source_url": hf_url(size), "gpt2_size": size}
    model = load_hf_gpt2(path, size=size, dtype=dtype)
    if size is None:
        size = next((s for s in SIZES if all(getattr(model.cfg, f) == getattr(PRESETS[s], f)
                                              for f in ("emb_dim", "n_layers", "n_heads"))), None)
        if size:
            provenance["gpt2_size"] = size
    provenance["source_sha256"] = digest
    return ImportedGPT2(model, provenance)


def _as_size(source: str | Path) -> str | None:
    """A size name for a str that names one; None for a Path or something that looks like a file."""
    if isinstance(source, Path):
        return None
    text = str(source)
    looks_like_file = Path(text).exists() or "/" in text or os.sep in text or text.endswith(".safetensors")
    try:
        return size_name(text)
    except ScratchError:
        if looks_like_file:
            return None
        raise


# --- download --------------------------------------------------------------------------------------


def hf_endpoint() -> str:
    # HF_ENDPOINT is the variable huggingface_hub itself reads (mirrors, tests).
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hf_url(size: str) -> str:
    return f"{hf_endpoint()}/{HF_REPO}/{HF_NAMES[size]}/resolve/main/model.safetensors"


def downloads_dir() -> Path:
    from chatgpt_scratch.storage.paths import checkpoints_dir

    return checkpoints_dir() / "downloads"


def download_gpt2(size: str, progress: bool = True) -> tuple[Path, str]:
    """The Hugging Face model.safetensors for a GPT-2 size, downloaded once (resumable) and verified."""
    size = size_name(size)
    dest = downloads_dir() / HF_NAMES[size] / "model.safetensors"
    known_size, known_sha = KNOWN_FILES.get(size, (None, None))
    return dest, download_file(hf_url(size), dest, expected_size=known_size, expected_sha256=known_sha,
                               progress=progress, what=f"{size} weights")


# --- export ----------------------------------------------------------------------------------------


def hf_state_dict(model: GPTModel) -> dict[str, torch.Tensor]:
    """Our weights under GPT2LMHeadModel's names (`transformer.` prefix) and Conv1D orientation."""
    cfg = model.cfg
    if cfg.n_classes is not None:
        raise ScratchError("export-hf writes language models (GPT2LMHeadModel); this is a classifier, "
                           "whose head has no GPT-2 equivalent")
    ours = model.state_dict()
    # A padded vocabulary (cfg.vocab_multiple) loses its never-used rows: GPT-2 has exactly vocab_size.
    for key in ("tok_emb.weight", "out_head.weight"):
        ours[key] = ours[key][:cfg.vocab_size]
    out: dict[str, torch.Tensor] = {}
    for mine, theirs in _TOP_MAP:
        out[f"transformer.{theirs}"] = ours[mine]
    for i in range(cfg.n_layers):
        for mine, theirs, transpose in _BLOCK_MAP:
            key = f"trf_blocks.{i}.{mine}"
            if key not in ours:  # qkv_bias=False: GPT-2 always has one, and zeros compute the same thing
                ours[key] = torch.zeros(3 * cfg.emb_dim, dtype=ours["tok_emb.weight"].dtype)
            t = ours[key]
            out[f"transformer.h.{i}.{theirs}"] = t.t().contiguous() if transpose else t
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = ours["out_head.weight"]
    return out


def hf_config(cfg: GPTConfig, dtype: torch.dtype) -> dict[str, Any]:
    """config.json for transformers' GPT2LMHeadModel."""
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": cfg.vocab_size, "n_positions": cfg.context_length, "n_ctx": cfg.context_length,
        "n_embd": cfg.emb_dim, "n_layer": cfg.n_layers, "n_head": cfg.n_heads, "n_inner": None,
        "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "initializer_range": 0.02,
        "resid_pdrop": cfg.drop_rate, "embd_pdrop": cfg.drop_rate, "attn_pdrop": cfg.drop_rate,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        "tie_word_embeddings": cfg.tie_embeddings, "bos_token_id": 50256, "eos_token_id": 50256,
        "use_cache": True, "torch_dtype": str(dtype).removeprefix("torch."),
    }


def export_hf(model: GPTModel, out_dir: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write out_dir/model.safetensors + config.json (+ the GPT-2 tokenizer files) for transformers.

    `GPT2LMHeadModel.from_pretrained(out_dir)` and `AutoTokenizer.from_pretrained(out_dir)` load them.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ScratchError(f"{out_dir} is a file; give a folder to export into")
    tensors = hf_state_dict(model)
    dtype = model.tok_emb.weight.dtype
    atomic_save_tensors(out_dir / "model.safetensors", tensors, {"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(hf_config(model.cfg, dtype), indent=2) + "\n", encoding="utf-8")
    _write_tokenizer_files(out_dir, model.cfg.context_length)
    if metadata:
        (out_dir / "chatgpt_scratch.json").write_text(json.dumps(metadata, indent=2, default=str) + "\n", encoding="utf-8")
    return out_dir


def export_checkpoint_hf(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """A base or instruct checkpoint file -> the Hugging Face layout in out_dir (`export-hf` in the CLI,
    e on the TUI's Checkpoints screen). Its header goes to chatgpt_scratch.json, with `exported_from`."""
    from chatgpt_scratch.checkpoints import load_checkpoint

    model, metadata = load_checkpoint(checkpoint, kind=("base", "instruct"))
    return export_hf(model, out_dir, metadata={"exported_from": str(checkpoint), **metadata})


def _write_tokenizer_files(out_dir: Path, max_length: int) -> None:
    """GPT2Tokenizer's vocab.json / merges.txt are OpenAI's encoder.json / vocab.bpe under other names."""
    try:
        from chatgpt_scratch.tokenizer import bpe_dir

        src = bpe_dir()
        (out_dir / "vocab.json").write_bytes((src / "encoder.json").read_bytes())
        (out_dir / "merges.txt").write_bytes((src / "vocab.bpe").read_bytes())
    except (ScratchError, OSError):
        return  # weights and config are what matters; the tokenizer is the standard GPT-2 one
    (out_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2Tokenizer", "model_max_length": max_length, "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "add_prefix_space": False,
    }, indent=2) + "\n", encoding="utf-8")
