"""What a chatgpt-scratch checkpoint file is: the one module that owns the format.

A checkpoint is one safetensors file: 8 bytes (little-endian header length N), N bytes of JSON
header ({tensor name: {dtype, shape, data_offsets}, "__metadata__": {...}}), then the raw tensor
bytes. Its `__metadata__` (string -> string) carries everything needed to rebuild and understand
the model: `format` (FORMAT), `kind` (one of KINDS), `config` (GPTConfig JSON), `tokenizer`,
`created`, and provenance (parent, dataset, steps, metrics, labels, template, ...). Non-string
values are stored as JSON and their keys listed under `json_keys`, so they come back with their
types. A `lora-adapter` also names its base (`base`, `base_sha256`) and the kind of model it makes
(`model_kind`; see adapted_kind). No pickle anywhere.

Here: the kinds and their rules, the header a save writes (checkpoint_header), reading and checking
a header without the weights, and the atomic write of a file. checkpoints.py (models: save, load,
list, manage) and lora.py (adapters) build on it; checkpoints re-exports these names.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from chatgpt_scratch.config import GPTConfig
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.storage.fileio import remove_stale_temps, write_atomically

if TYPE_CHECKING:
    import torch

# No torch import at module level: listings, kinds and headers are read by front ends that must start
# fast (the TUI imports torch only in workers). Writing a file needs safetensors.torch, imported then.


def save_file(tensors: dict[str, torch.Tensor], filename: str, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file as write

    write(tensors, filename, metadata=metadata)

FORMAT = "chatgpt-scratch/1"
KINDS = ("base", "instruct", "classifier", "lora-adapter")
MODEL_KINDS = ("base", "instruct", "classifier")  # the kinds that are models (what an adapter can make)
# What each use of a model wants when none is named, in order of preference (checkpoints.pick_default
# ranks within them): the CLI's --checkpoint default and the model each TUI screen opens with.
DEFAULT_KINDS = {
    "chat": ("instruct", "base"),
    "evaluate-instruct": ("instruct",),
    "generate": ("base", "instruct"),
    "xray": ("base", "instruct"),
    "classify": ("classifier",),
}
SUFFIX = ".safetensors"
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit


def sibling_file(checkpoint: str | Path, suffix: str) -> Path:
    """A file that belongs to a checkpoint, beside it: NAME.safetensors -> NAME<suffix> (.eval.json, .loss.png, ...)."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(SUFFIX) + suffix)


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


def checkpoint_header(config: GPTConfig, kind: str, **metadata: Any) -> dict[str, Any]:
    """The metadata every save writes (format, kind, config, tokenizer, created) plus `metadata`; the one
    place a header is built, for models and adapters alike. Unknown kinds are refused."""
    if kind not in KINDS:
        raise ScratchError(f"unknown checkpoint kind {kind!r}; use one of {', '.join(KINDS)}")
    return {
        "format": FORMAT,
        "kind": kind,
        "config": config.to_json(),
        "tokenizer": "gpt2",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **metadata,
    }


def atomic_save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], header: dict[str, str]) -> None:
    """Write a safetensors file so that a crash at any moment leaves the old file (if any) intact
    (fileio.write_atomically). A temp file left by a process that was killed mid-write is removed
    on the next save."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    cpu_tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    size = sum(t.numel() * t.element_size() for t in cpu_tensors.values()) + len(json.dumps(header)) + 4096
    write_checkpoint_file(path, lambda tmp: save_file(cpu_tensors, tmp, metadata=header), size_hint=size)


def write_checkpoint_file(target: Path, write: Callable[[str], None], size_hint: int | None = None) -> None:
    """write_atomically, refused for a built-in model (shipped read-only)."""
    from chatgpt_scratch.storage.builtin import refuse_builtin

    refuse_builtin(target, "overwrite")
    write_atomically(target, write, size_hint=size_hint)


# --- reading headers ------------------------------------------------------------------------------


@dataclass
class SafetensorsHeader:
    """What the first bytes of a safetensors file say: tensor shapes/dtypes and the raw metadata."""

    tensors: dict[str, dict[str, Any]]  # name -> {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}
    metadata: dict[str, str]
    file_size: int


def read_safetensors_header(path: str | Path) -> SafetensorsHeader:
    """Parse and check the header without touching the weights. One-line ScratchError on any problem."""
    path = Path(path)
    if not path.exists():
        raise ScratchError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise ScratchError(f"{path} is a folder, not a checkpoint file")
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ScratchError(f"{path} is not a safetensors file (only {file_size} bytes); it is empty or cut short")
        (n,) = struct.unpack("<Q", prefix)
        if n > _MAX_HEADER_BYTES or n < 2:
            raise ScratchError(f"{path} is not a safetensors file (corrupt header); replace it with a good copy")
        if 8 + n > file_size:
            raise ScratchError(
                f"{path} is truncated ({file_size} bytes, its header alone needs {8 + n}); "
                "the copy or download did not finish: copy it again"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
        metadata = header.pop("__metadata__", None) or {}
        # The format says string -> string; a hand-edited header may hold anything.
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise ScratchError(f"{path}: the header's __metadata__ is not a map of strings; the header was "
                               "edited or damaged: replace the file with a good copy")
        for name, t in header.items():
            offsets, shape = t["data_offsets"], t["shape"]
            if not (isinstance(t, dict) and isinstance(t["dtype"], str) and isinstance(shape, list)
                    and all(_is_count(d) for d in shape) and isinstance(offsets, list) and len(offsets) == 2
                    and all(_is_count(x) for x in offsets) and offsets[0] <= offsets[1]):
                raise ValueError(f"bad entry for {name}")
        end = max((t["data_offsets"][1] for t in header.values()), default=0)
    except (ValueError, KeyError, TypeError, IndexError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ScratchError(f"{path} is not a safetensors file (corrupt header); replace it with a good copy") from None
    if 8 + n + end > file_size:
        raise ScratchError(
            f"{path} is truncated ({file_size} of {8 + n + end} bytes); "
            "the copy or download did not finish: copy it again"
        )
    return SafetensorsHeader(tensors=header, metadata={str(k): str(v) for k, v in metadata.items()}, file_size=file_size)


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def checkpoint_metadata(path: Path, header: SafetensorsHeader) -> dict[str, Any]:
    if header.metadata.get("format", "").split("/")[0] != "chatgpt-scratch":
        if any(k.endswith(("wte.weight", "c_attn.weight")) for k in header.tensors):
            hint = "it looks like Hugging Face GPT-2 weights: import them with `chatgpt-scratch import-gpt2 --from FILE`"
        else:
            hint = "for Hugging Face GPT-2 weights use `chatgpt-scratch import-gpt2 --from FILE`"
        raise ScratchError(f"{path} is a safetensors file but not a chatgpt-scratch checkpoint; {hint}")
    try:
        metadata = decode_metadata(header.metadata)
    except (ValueError, TypeError, RecursionError):
        raise ScratchError(f"{path}: the checkpoint metadata is not valid JSON; the header was edited or damaged") from None
    for key in ("kind", "format", "created", "tokenizer"):
        if key in metadata and not isinstance(metadata[key], str):
            raise ScratchError(f"{path}: the header's {key!r} is not a string; the header was edited or damaged")
    return metadata


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Header only: fast, no weights are read."""
    path = Path(path)
    return checkpoint_metadata(path, read_safetensors_header(path))


def config_from_metadata(metadata: dict[str, Any], path: str | Path) -> GPTConfig:
    raw = metadata.get("config")
    if raw is None:
        raise ScratchError(f"{path}: the checkpoint header has no model config; the file was edited or is damaged")
    try:
        if isinstance(raw, str):
            return GPTConfig.from_json(raw)
        if not isinstance(raw, dict):
            raise TypeError(f"expected an object, got {type(raw).__name__}")
        return GPTConfig(**raw)
    except ScratchError as e:
        raise ScratchError(f"{path}: bad model config in the header ({e}); the header was edited or damaged") from None
    except (TypeError, ValueError, RecursionError) as e:
        raise ScratchError(f"{path}: bad model config in the header ({e}); the header was edited or damaged") from None


def require_kind(metadata: dict[str, Any], kind: str | tuple[str, ...] | None, path: str | Path) -> None:
    if kind is None:
        return
    wanted = (kind,) if isinstance(kind, str) else kind
    have = metadata.get("kind")
    if have not in wanted:
        raise ScratchError(f"{path} is {a_kind(have)} checkpoint, but this needs "
                           f"{a_kind(wanted[0])}{''.join(f' or {k!r}' for k in wanted[1:])} one")


def a_kind(kind: Any) -> str:
    """The kind quoted, with its article, for messages: "a 'base'", "an 'instruct'"."""
    return f"{'an' if str(kind)[:1] in 'aeiou' else 'a'} {kind!r}"



# --- kinds ----------------------------------------------------------------------------------------


def adapted_kind(metadata: dict[str, Any]) -> str | None:
    """The kind of model a checkpoint gives at inference: its `kind`, or for an adapter its `model_kind`.

    Header only (works on CheckpointInfo.metadata). An adapter without `model_kind` (saved by the
    library without it) is a classifier if its config has a class head, else a base model.
    None for an adapter whose `model_kind` is not a model kind.
    """
    kind = metadata.get("kind")
    if kind != "lora-adapter":
        return kind
    if "model_kind" in metadata:
        return metadata["model_kind"] if metadata["model_kind"] in MODEL_KINDS else None
    try:
        return "classifier" if config_from_metadata(metadata, "adapter").n_classes is not None else "base"
    except (ScratchError, TypeError, ValueError):
        return None


def json_key(value: Any) -> str:
    """A header value as a comparable string (dicts and lists compare by content)."""
    return json.dumps(value, sort_keys=True)


def shared_and_own(headers: list[dict[str, Any]], names: list[str], own_keys: tuple[str, ...] = ()) -> tuple[dict, list]:
    """Headers of files joined into one (an adapter ensemble, an average of models) -> (the keys all agree on,
    for the top of the new header; per file, {"file": name, and its keys that differ (seed, metrics, steps) or
    are in own_keys}). `created` belongs to no one: the new file gets its own."""
    shared = {k: v for k, v in headers[0].items() if k not in (*own_keys, "created")
              and all(json_key(h.get(k)) == json_key(v) for h in headers[1:])}
    own = [{"file": name, **{k: v for k, v in h.items() if k not in shared and k != "created"}}
           for name, h in zip(names, headers)]
    return shared, own


ENSEMBLE_KEY = "ensemble_members"  # an adapter header with this key holds several adapters (lora.save_adapter_ensemble)


def ensemble_size(metadata: dict[str, Any]) -> int:
    """How many member adapters an ensemble file holds (header only); 0 for any other checkpoint."""
    members = metadata.get(ENSEMBLE_KEY)
    return len(members) if isinstance(members, list) else 0


def kind_label(metadata: dict[str, Any]) -> str:
    """How listings show a checkpoint's kind: its `kind`, an adapter by what it makes ("lora→instruct")."""
    kind = metadata.get("kind")
    if kind != "lora-adapter":
        return kind or "?"
    return f"lora→{adapted_kind(metadata) or '?'}"
