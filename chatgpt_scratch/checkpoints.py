"""Checkpoints: one self-describing .safetensors file per model: save, load, list, rename, duplicate, delete.

What the file holds (header, kinds, metadata encoding) is defined in checkpoint_format.py and
re-exported here, so `from chatgpt_scratch.checkpoints import read_metadata, KINDS, ...` keeps
working. Listing parses only the header, so it stays fast for a folder of multi-gigabyte files.
GPT-2 import/export (gpt2_weights.py) are re-exported here too: the public API names them here.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from chatgpt_scratch.storage.checkpoint_format import (  # noqa: F401 (re-exported: the format's public names)
    FORMAT, KINDS, MODEL_KINDS, SUFFIX, SafetensorsHeader, a_kind, adapted_kind, atomic_save_tensors,
    checkpoint_header, checkpoint_metadata, config_from_metadata, decode_metadata, encode_metadata, kind_label,
    read_metadata, read_safetensors_header, require_kind, shared_and_own, write_checkpoint_file)
from chatgpt_scratch.config import PRESETS, GPTConfig
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.storage.fileio import fsync_dir, remove_stale_temps  # noqa: F401 (remove_stale_temps: re-exported)
from chatgpt_scratch.model import GPTModel


def model_tensors(model: GPTModel) -> dict[str, torch.Tensor]:
    """The model's weights by name; a tied head is stored once (as tok_emb.weight)."""
    state = model.state_dict()
    if model.cfg.tie_embeddings:
        state.pop("out_head.weight", None)
    return state


def save_checkpoint(path: str | Path, model: GPTModel, kind: str = "base", **metadata: Any) -> Path:
    """Save weights + metadata atomically. Extra keyword metadata (labels=[...], parent=..., ...) is kept."""
    meta = checkpoint_header(model.cfg, kind, **metadata)
    atomic_save_tensors(path, model_tensors(model), encode_metadata(meta))
    return Path(path)


def update_metadata(path: str | Path, **extra: Any) -> Path:
    """Rewrite a checkpoint with more (or changed) header keys; a value of None leaves a key as it is.
    Atomic: a crash leaves the old file."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = {**read_metadata(path), **{k: v for k, v in extra.items() if v is not None}}
    atomic_save_tensors(path, load_file(str(path)), encode_metadata(meta))
    return path


def convert_checkpoint(src: str | Path, dst: str | Path, dtype: torch.dtype, **extra: Any) -> Path:
    """Write `src` to `dst` with every floating-point tensor cast to `dtype` (e.g. bfloat16 for a file half
    the size), header kept (plus `extra` keys). Works for models and adapters alike."""
    from safetensors.torch import load_file

    src = Path(src)
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in load_file(str(src)).items()}
    meta = {**read_metadata(src), **{k: v for k, v in extra.items() if v is not None}}
    atomic_save_tensors(dst, tensors, encode_metadata(meta))
    return Path(dst)


def output_path(out: str | Path, overwrite: bool) -> Path:
    """Where a command that writes a new checkpoint (`lora merge`, `lora ensemble`, `checkpoints average`) writes:
    `out` with ".safetensors" added; an existing file is kept unless overwrite."""
    out = Path(out)
    if out.suffix != SUFFIX:
        out = out.with_name(out.name + SUFFIX)
    if out.exists() and not overwrite:
        raise ScratchError(f"{out} already exists; choose another name (the CLI overwrites with --force)")
    return out


def average_checkpoints(paths: list[str | Path], out: str | Path, overwrite: bool = False, **extra: Any) -> Path:
    """Write the uniform average of the weights of 2+ models of one architecture and kind (a "model soup":
    fine-tunes of one starting point, e.g. the same recipe run with other seeds, often answer better averaged
    than each does alone). Means are taken in float32 and stored in the first file's dtypes. The header keeps what
    the files agree on (kind, template, data); what differs, their own val metrics included, is listed per file in
    `averaged_from`, so the average has no val metric until one is measured. One-line ScratchError for files that
    cannot be averaged; nothing is written then."""
    from safetensors import safe_open

    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise ScratchError("give two or more checkpoints to average")
    headers = [read_safetensors_header(p) for p in paths]
    metas = [checkpoint_metadata(p, h) for p, h in zip(paths, headers)]
    first = metas[0]
    if first.get("kind") not in MODEL_KINDS:
        raise ScratchError(f"{paths[0]} is {a_kind(first.get('kind'))} file; only whole models can be averaged "
                           "(merge an adapter first: `chatgpt-scratch lora merge`)")
    config = config_from_metadata(first, paths[0])
    for path, header, meta in zip(paths[1:], headers[1:], metas[1:]):
        if meta.get("kind") != first.get("kind"):
            raise ScratchError(f"{path} is {a_kind(meta.get('kind'))} file and {paths[0]} {a_kind(first.get('kind'))} "
                               "one; average models of one kind")
        if config_from_metadata(meta, path) != config:
            raise ScratchError(f"{path} has another architecture than {paths[0]}; only models of one architecture "
                               "(fine-tunes of one starting point) can be averaged")
        if header.tensors.keys() != headers[0].tensors.keys():
            raise ScratchError(f"{path} holds other tensors than {paths[0]}; it cannot be averaged with it")
    target = output_path(out, overwrite)
    sums: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for path in paths:
        with safe_open(str(path), "pt") as f:
            for name in f.keys():
                t = f.get_tensor(name)
                dtypes.setdefault(name, t.dtype)
                if not t.is_floating_point():
                    sums.setdefault(name, t)
                elif name in sums:
                    sums[name] += t.float()
                else:
                    sums[name] = t.float()
    tensors = {k: (v / len(paths)).to(dtypes[k]) if v.is_floating_point() else v for k, v in sums.items()}
    # What all files agree on stays at the top; what differs (seed, val metrics: each describes one file, not the
    # average) goes to that file's entry in `averaged_from`.
    shared, own = shared_and_own(metas, [p.name for p in paths])
    meta = {**shared, "averaged_from": own, **{k: v for k, v in extra.items() if v is not None},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_save_tensors(target, tensors, encode_metadata(meta))
    return target


# --- loading --------------------------------------------------------------------------------------


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None, kind: str | tuple[str, ...] | None = None
                    ) -> tuple[GPTModel, dict[str, Any]]:
    """Rebuild the model from the file alone. `kind` (one or several) rejects other kinds with a clear error.

    dtype=None keeps the dtype the weights were saved in (a bfloat16 checkpoint loads as bfloat16).
    """
    path = Path(path)
    header = read_safetensors_header(path)
    metadata = checkpoint_metadata(path, header)
    require_kind(metadata, kind, path)
    cfg = config_from_metadata(metadata, path)
    with torch.device("meta"):
        model = GPTModel(cfg)
    problem = _shape_mismatch(model_tensors(model), header.tensors)
    if problem:
        raise ScratchError(
            f"{path}: weights do not match the config in its header ({problem}); "
            "the file was edited or is from another tool"
        )
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ScratchError(f"{path}: cannot read the weights ({_short(e)}); the file may be truncated or corrupt") from None
    # assign=True adopts the file's tensors as they are (no second copy, their dtype kept).
    model.load_state_dict(state, strict=False, assign=True)  # strict=False: a tied head is not in the file
    if cfg.tie_embeddings:
        model.out_head.weight = model.tok_emb.weight
    left_empty = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left_empty:  # a tensor the file does not hold and the model did not compute: a bug, not bad input
        raise RuntimeError(f"load_checkpoint left {left_empty[:3]} unset; GPTModel gained state that checkpoints do not store")
    model.eval()
    return model.to(device=device, dtype=dtype), metadata


def _shape_mismatch(expected: dict[str, torch.Tensor], stored: dict[str, dict[str, Any]]) -> str | None:
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    if missing or unexpected:
        return f"missing {missing[:3]}, unexpected {unexpected[:3]}"
    for name, tensor in expected.items():
        if list(tensor.shape) != list(stored[name]["shape"]):
            return f"{name} is {tuple(stored[name]['shape'])} in the file but the config needs {tuple(tensor.shape)}"
    return None


def _short(e: BaseException) -> str:
    return str(e).splitlines()[0][:160] if str(e) else type(e).__name__


# --- listing --------------------------------------------------------------------------------------


@dataclass
class CheckpointInfo:
    """One file in a checkpoints folder, from its header alone. `error` is set (and most fields None) if broken."""

    path: Path
    name: str
    file_size: int
    kind: str | None = None
    config: GPTConfig | None = None
    preset: str | None = None      # the preset whose architecture the config matches, if any
    n_params: int | None = None    # from the header's tensor shapes; a tied head counted once
    dtype: str | None = None       # of the token embedding, e.g. "F32", "BF16"
    created: str | None = None
    parent: str | None = None
    metric_name: str | None = None  # "val_acc" or "val_loss"
    metric_value: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    builtin: bool = False          # a default model shipped with the app (read-only; see builtin.py)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        out["config"] = asdict(self.config) if self.config is not None else None
        return out


_ARCH_FIELDS = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers")


def preset_name(cfg: GPTConfig) -> str | None:
    """The preset with the same architecture (dropout, tying and a classifier head aside), if any."""
    for name, preset in PRESETS.items():
        if all(getattr(cfg, f) == getattr(preset, f) for f in _ARCH_FIELDS):
            return name
    return None


def best_metric(metadata: dict[str, Any]) -> tuple[str, float] | tuple[None, None]:
    """The validation metric recorded in the header: accuracy if there is one, else loss."""
    sources = [metadata] + [v for k in ("metrics", "eval") if isinstance(v := metadata.get(k), dict)]
    for key in ("val_acc", "val_accuracy", "val_loss"):
        for source in sources:
            value = source.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                return ("val_acc" if key == "val_accuracy" else key), float(value)
    return None, None


def checkpoint_info(path: str | Path) -> CheckpointInfo:
    """Everything the header says about one checkpoint; never raises for a broken file (see `.error`)."""
    from chatgpt_scratch.storage.builtin import is_builtin

    path = Path(path)
    try:
        size = path.stat().st_size if path.is_file() else 0
    except OSError:
        size = 0
    info = CheckpointInfo(path=path, name=path.name.removesuffix(SUFFIX), file_size=size, builtin=is_builtin(path))
    try:
        header = read_safetensors_header(path)
        info.metadata = dict(header.metadata)  # raw strings, in case they do not decode
        info.metadata = metadata = checkpoint_metadata(path, header)
        cfg = config_from_metadata(metadata, path)
    except ScratchError as e:
        info.error = str(e)
        return info
    try:
        info.kind = metadata.get("kind")
        info.config = cfg
        info.preset = preset_name(cfg)
        info.n_params = sum(math.prod(t["shape"]) for t in header.tensors.values())
        # The embedding's dtype; an adapter has none, so its first tensor's.
        emb = header.tensors.get("tok_emb.weight") or next(iter(header.tensors.values()), None)
        info.dtype = emb["dtype"] if emb else None
        info.created = metadata.get("created") or datetime.fromtimestamp(
            path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
        parent = metadata.get("parent")
        info.parent = str(parent) if parent is not None else None
        info.metric_name, info.metric_value = best_metric(metadata)
    except (TypeError, ValueError, KeyError, AttributeError, OSError) as e:
        # The reader checks the header's shape; this is the last guard that one odd value (a hand edit
        # the checks did not foresee) makes one BROKEN row, never a failed listing.
        info.error = f"{path}: the header has a value this version cannot read ({type(e).__name__}: {e})"
        info.config = None
    return info


def list_checkpoints(folder: str | Path | None = None) -> list[CheckpointInfo]:
    """Every `*.safetensors` file directly in `folder`, sorted by name; with no folder, the user's
    checkpoints folder and then the built-in models shipped with the app (each file once).

    Reads headers only. Broken files are listed with `.error` set. Hidden files (temp files of a
    save in progress) are skipped, as are chatgpt-scratch files that are not models
    (a `format` such as "chatgpt-scratch-state/1", e.g. resumable training state).
    """
    if folder is not None:
        return _list_folder(Path(folder))
    from chatgpt_scratch.storage.builtin import builtin_paths
    from chatgpt_scratch.storage.paths import checkpoints_dir

    infos = _list_folder(checkpoints_dir())
    seen = {_resolved(i.path) for i in infos}
    infos += [checkpoint_info(p) for p in builtin_paths() if _resolved(p) not in seen]
    return infos


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path


def _list_folder(folder: Path) -> list[CheckpointInfo]:
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise ScratchError(f"{folder} is not a folder; give the folder that holds the checkpoints")
    infos = []
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        if path.name.startswith(".") or not path.is_file():
            continue
        info = checkpoint_info(path)
        if str(info.metadata.get("format", "")).startswith("chatgpt-scratch-"):
            continue
        infos.append(info)
    return infos


def rank_for_default(info: CheckpointInfo) -> tuple[int, float]:
    """Sort key of the default pick among models of one kind: the best recorded validation metric
    (highest accuracy, else lowest loss); a file without one last."""
    if info.metric_name == "val_acc":
        return 0, -float(info.metric_value)
    if info.metric_name == "val_loss":
        return 1, float(info.metric_value)
    return 2, 0.0


def pick_default(infos: list[CheckpointInfo], kinds: tuple[str, ...]) -> CheckpointInfo | None:
    """The model the app and the CLI use when none is named: of the wanted kinds (in that order of
    preference; a LoRA adapter counts as the kind it makes), a full model before an adapter, then the
    best recorded validation metric. A user's own model wins over a built-in one when it is at least as
    good, so a fine-tune of the default takes over once it is better."""
    candidates = [i for i in infos if i.ok and adapted_kind(i.metadata) in kinds]
    if not candidates:
        return None

    def key(info: CheckpointInfo):
        kind_rank = kinds.index(adapted_kind(info.metadata))
        metric_rank = rank_for_default(info)
        # A full model before an adapter (faster to load), except that a built-in adapter (the shipped
        # spam model) competes with the user's full models by metric, so a worse model never hides it.
        user_adapter = info.kind == "lora-adapter" and not info.builtin
        return (kind_rank, user_adapter, metric_rank, info.builtin, info.name)

    return min(candidates, key=key)


def default_checkpoint(kinds: tuple[str, ...]) -> CheckpointInfo | None:
    """pick_default over the user's checkpoints folder and the built-in models."""
    return pick_default(list_checkpoints(), kinds)


# --- file management (the TUI's rename / duplicate / delete) -------------------------------------


MAX_NAME_BYTES = 240  # a file name is at most 255 bytes; a save's temp file adds 14


def _sibling(path: Path, new_name: str) -> Path:
    new_name = new_name.strip()
    if not new_name or new_name in (".", "..") or "/" in new_name or "\\" in new_name or new_name.startswith("."):
        raise ScratchError(f"bad checkpoint name {new_name!r}: use a plain file name without folders or a leading dot")
    if any(ord(c) < 32 or ord(c) == 127 for c in new_name):
        raise ScratchError("bad checkpoint name: it holds a control character (NUL, tab, escape...); use plain text")
    if not new_name.endswith(SUFFIX):
        new_name += SUFFIX
    # The longest name any save of it needs is its temp file, `.NAME.XXXXXXXX.tmp`, within 255 bytes.
    if len(new_name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ScratchError(f"checkpoint name too long ({len(new_name.encode('utf-8'))} bytes); "
                           f"use at most {MAX_NAME_BYTES - len(SUFFIX)}")
    return path.parent / new_name


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ScratchError(f"checkpoint not found: {path}")
    return path


def rename_checkpoint(path: str | Path, new_name: str) -> Path:
    """Rename within the same folder ("new-name" or "new-name.safetensors"); never overwrites."""
    from chatgpt_scratch.storage.builtin import refuse_builtin

    path = _existing(path)
    refuse_builtin(path, "rename")
    target = _sibling(path, new_name)
    if target.resolve() == path.resolve():
        return path
    if target.exists():
        raise ScratchError(f"cannot rename {path.name}: {target} already exists; choose another name or delete it first")
    try:
        os.rename(path, target)
    except OSError as e:
        raise ScratchError(f"cannot rename {path.name}: {e.strerror}; nothing was changed") from None
    fsync_dir(target.parent)
    return target


def duplicate_checkpoint(path: str | Path, new_name: str | None = None) -> Path:
    """Copy byte for byte beside the original (default name: NAME-copy, NAME-copy2, ...); never overwrites."""
    from chatgpt_scratch.storage.builtin import is_builtin
    from chatgpt_scratch.storage.paths import checkpoints_dir

    path = _existing(path)
    # A copy of a built-in model is the user's own: it goes to their checkpoints folder.
    folder = checkpoints_dir() if is_builtin(path) else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    if new_name is None:
        stem = path.name.removesuffix(SUFFIX)
        target, n = folder / f"{stem}-copy{SUFFIX}", 1
        while target.exists():
            n += 1
            target = folder / f"{stem}-copy{n}{SUFFIX}"
    else:
        target = folder / _sibling(path, new_name).name
        if target.exists():
            raise ScratchError(f"cannot duplicate {path.name}: {target} already exists; choose another name")
    write_checkpoint_file(target, lambda tmp: shutil.copyfile(path, tmp))
    return target


def delete_checkpoint(path: str | Path) -> None:
    """Delete one checkpoint file (broken ones too)."""
    from chatgpt_scratch.storage.builtin import refuse_builtin

    path = Path(path)
    refuse_builtin(path, "delete")
    if path.is_dir():
        raise ScratchError(f"{path} is a folder; delete_checkpoint removes single checkpoint files only")
    if not path.is_file():
        raise ScratchError(f"checkpoint not found: {path}")
    path.unlink()


# GPT-2 import/export live in gpt2_weights (which builds on checkpoint_format, not on this module, so
# there is no import circle); the public API names them here.
from chatgpt_scratch.storage.gpt2_weights import export_hf, import_gpt2  # noqa: E402,F401
