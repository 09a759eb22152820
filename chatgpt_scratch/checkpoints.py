"""Checkpoints: one self-describing .safetensors file per model.

The file's `__metadata__` (string -> string) carries everything needed to rebuild
and understand the model: format version, kind, config JSON, tokenizer, labels,
prompt template, provenance. Non-string values are stored as JSON and their keys
listed under `json_keys`, so they come back with their types. No pickle anywhere.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from chatgpt_scratch.config import GPTConfig
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.model import GPTModel

FORMAT = "chatgpt-scratch/1"
KINDS = ("base", "instruct", "classifier", "lora-adapter")


def encode_metadata(metadata: dict[str, Any]) -> dict[str, str]:
    """dict of any JSON-able values -> safetensors' str -> str header."""
    out, json_keys = {}, []
    for key, value in metadata.items():
        if value is None:
            continue
        if isinstance(value, str):
            out[key] = value
        else:
            out[key] = json.dumps(value, sort_keys=True)
            json_keys.append(key)
    out["json_keys"] = json.dumps(sorted(json_keys))
    return out


def decode_metadata(header: dict[str, str]) -> dict[str, Any]:
    json_keys = set(json.loads(header.get("json_keys", "[]")))
    return {k: (json.loads(v) if k in json_keys else v) for k, v in header.items() if k != "json_keys"}


def atomic_save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], header: dict[str, str]) -> None:
    """Write a safetensors file so that a crash at any moment leaves the old file (if any) intact.

    Write to a temp file in the same folder, fsync it, then rename over the target
    (rename is atomic on POSIX and Windows); fsync the folder so the rename survives power loss.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=header)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):
        dir_fd = os.open(path.parent, os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def model_tensors(model: GPTModel) -> dict[str, torch.Tensor]:
    """The model's weights by name; a tied head is stored once (as tok_emb.weight)."""
    state = model.state_dict()
    if model.cfg.tie_embeddings:
        state.pop("out_head.weight", None)
    return state


def save_checkpoint(path: str | Path, model: GPTModel, kind: str = "base", **metadata: Any) -> Path:
    """Save weights + metadata atomically. Extra keyword metadata (labels=[...], parent=..., ...) is kept."""
    if kind not in KINDS:
        raise ScratchError(f"unknown checkpoint kind {kind!r}; use one of {', '.join(KINDS)}")
    meta = {
        "format": FORMAT,
        "kind": kind,
        "config": model.cfg.to_json(),
        "tokenizer": "gpt2",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **metadata,
    }
    atomic_save_tensors(path, model_tensors(model), encode_metadata(meta))
    return Path(path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Header only: fast, no weights are read."""
    path = Path(path)
    if not path.is_file():
        raise ScratchError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ScratchError(f"{path} is not a readable safetensors file ({_short(e)}); it may be truncated or corrupt") from None
    if header.get("format", "").split("/")[0] != "chatgpt-scratch":
        raise ScratchError(
            f"{path} is a safetensors file but not a chatgpt-scratch checkpoint; "
            "for Hugging Face GPT-2 weights use `chatgpt-scratch import-gpt2 --from FILE`"
        )
    return decode_metadata(header)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None, kind: str | tuple[str, ...] | None = None
                    ) -> tuple[GPTModel, dict[str, Any]]:
    """Rebuild the model from the file alone. `kind` (one or several) rejects other kinds with a clear error."""
    metadata = read_metadata(path)
    require_kind(metadata, kind, path)
    cfg = GPTConfig.from_json(metadata["config"]) if isinstance(metadata["config"], str) else GPTConfig(**metadata["config"])
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ScratchError(f"{path}: cannot read the weights ({_short(e)}); the file may be truncated or corrupt") from None
    with torch.device("meta"):
        model = GPTModel(cfg)
    model = model.to_empty(device="cpu")
    if cfg.tie_embeddings:
        model.out_head.weight = model.tok_emb.weight
    missing, unexpected = _load_state(model, state)
    if missing or unexpected:
        raise ScratchError(
            f"{path}: weights do not match the config in its header "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}); the file was edited or is from another tool"
        )
    model.eval()
    return model.to(device=device, dtype=dtype), metadata


def _load_state(model: GPTModel, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    expected = model_tensors(model)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        return missing, unexpected
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            return [f"{name} {tuple(expected[name].shape)}"], [f"{name} {tuple(tensor.shape)}"]
    model.load_state_dict(state, strict=False)  # strict=False: a tied head is absent from the file
    return [], []


def require_kind(metadata: dict[str, Any], kind: str | tuple[str, ...] | None, path: str | Path) -> None:
    if kind is None:
        return
    wanted = (kind,) if isinstance(kind, str) else kind
    if metadata.get("kind") not in wanted:
        raise ScratchError(
            f"{path} is a {metadata.get('kind')!r} checkpoint, but this needs a {' or '.join(map(repr, wanted))} one"
        )


def _short(e: BaseException) -> str:
    return str(e).splitlines()[0][:160] if str(e) else type(e).__name__
