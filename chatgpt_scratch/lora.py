"""Low-rank adaptation (LoRA), as in the book's appendix E, written out by hand.

Instead of updating a frozen weight W (in, out), learn a low-rank change to it:

    y = x W + b + scaling · (x A) B        A: (in, r), B: (r, out), scaling = alpha / r

A starts random (kaiming-uniform, like the book) and B starts at zero, so the
adapted model is exactly the base model before training. Only A and B train:
r·(in + out) numbers per layer instead of in·out.

Note: the book scales by `alpha` alone; we use `alpha / r` (the LoRA paper's and
PEFT's choice), so changing the rank does not change the size of the update.

After training the change can be folded back in (`merge_lora`): W' = W + scaling · (A B),
giving a plain model as fast as the base; or the adapter alone (A, B per layer, a few
megabytes) can be saved as a `lora-adapter` checkpoint that names its base model
(path and sha256) and is applied to it on load (`load_lora_adapter`).

Weight tying: GPT-2 shares one matrix between the token embedding and the output head.
An adapter on `out_head` only adds its own term; the shared matrix stays frozen and
untouched. Merging the head gives it its own (changed) matrix, so the merged model is
no longer tied and its config says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.storage.checkpoint_format import (  # the header format is their home
    ENSEMBLE_KEY, ensemble_size, json_key, shared_and_own)

LORA_PARAM_SUFFIXES = ("lora_A", "lora_B")
# The short names `--lora-targets` takes, and the layers each stands for.
TARGET_GROUPS: dict[str, tuple[str, ...]] = {
    "qkv": ("att.qkv",), "out_proj": ("att.out_proj",), "ff": ("ff.layers.0", "ff.layers.2"), "head": ("out_head",),
    "emb": ("tok_emb",),  # the token embedding: a low-rank change of its rows (LoRAEmbedding); opt-in
}
# Every linear layer of the GPT: the fused query/key/value projection, the attention
# output projection, both feed-forward layers, and the output head (the book adapts all).
DEFAULT_TARGETS: tuple[str, ...] = tuple(layer for name, group in TARGET_GROUPS.items() if name != "emb"
                                         for layer in group)


def parse_targets(spec: str, groups: Sequence[str] | None = None) -> tuple[str, ...]:
    """"qkv,ff" -> ("att.qkv", "ff.layers.0", "ff.layers.2"); "all" -> DEFAULT_TARGETS.

    groups: the short names a command allows (then "all" is not one of them); default: every group."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if groups is None and names == ["all"]:
        return DEFAULT_TARGETS
    allowed = list(TARGET_GROUPS) if groups is None else list(groups)
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        choices = ("all, or " if groups is None else "") + f"a comma list of {', '.join(allowed)}"
        raise ScratchError(f"--lora-targets {spec!r}: use {choices}")
    return tuple(layer for n in names for layer in TARGET_GROUPS[n])


def _check_rank_alpha(rank: Any, alpha: Any) -> None:
    if not isinstance(rank, int) or rank < 1:
        raise ScratchError(f"LoRA rank must be a whole number >= 1, got {rank!r}")
    if not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise ScratchError(f"LoRA alpha must be a number > 0, got {alpha!r}")


class _LoRAModule(nn.Module):
    """What both adapters hold: the frozen base `weight` (the base layer's own Parameter, not a copy), the
    sizes in_features x out_features, rank, alpha and scaling = alpha / rank."""

    def __init__(self, weight: nn.Parameter, in_features: int, out_features: int, rank: int, alpha: float):
        super().__init__()
        _check_rank_alpha(rank, alpha)
        self.in_features, self.out_features = in_features, out_features
        self.rank, self.alpha = rank, float(alpha)
        self.scaling = self.alpha / rank
        self.weight = weight
        self.weight.requires_grad_(False)

    def _factory(self) -> dict[str, Any]:
        """device and dtype of the base weight, for new tensors beside it."""
        return dict(device=self.weight.device, dtype=self.weight.dtype)


class LoRALinear(_LoRAModule):
    """A frozen nn.Linear plus a trainable low-rank update.

    The base layer's own Parameter objects are reused (not copied), so a weight shared
    with another module (a tied output head) stays shared, and the state-dict names of the
    base weights do not change (`...qkv.weight` stays `...qkv.weight`).
    """

    def __init__(self, linear: nn.Linear, rank: int, alpha: float):
        super().__init__(linear.weight, linear.in_features, linear.out_features, rank, alpha)  # weight: (out, in)
        self.bias = linear.bias  # (out,) or None, frozen
        if self.bias is not None:
            self.bias.requires_grad_(False)
        factory = self._factory()
        self.lora_A = nn.Parameter(torch.empty(self.in_features, rank, **factory))   # (in, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # the book's (and nn.Linear's) init
        self.lora_B = nn.Parameter(torch.zeros(rank, self.out_features, **factory))  # (r, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (..., in) -> (..., out); (x A) B keeps the intermediate at rank r, never a full (in, out) matrix.
        return F.linear(x, self.weight, self.bias) + self.scaling * ((x @ self.lora_A) @ self.lora_B)

    def delta_weight(self) -> torch.Tensor:
        """The change this adapter makes to the weight, in nn.Linear's (out, in) layout."""
        return self.scaling * (self.lora_A @ self.lora_B).T

    def merged(self) -> nn.Linear:
        """A plain nn.Linear computing the same function (a new weight tensor; the base's is left alone)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, **self._factory())
        with torch.no_grad():
            linear.weight.copy_(self.weight + self.delta_weight())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, rank={self.rank}, alpha={self.alpha:g}"


class LoRAEmbedding(_LoRAModule):
    """A frozen nn.Embedding plus a trainable low-rank change of its rows: E' = E + scaling · (A B).

    A: (num_embeddings, r) starts at zero and B: (r, dim) random (the LoRA paper's embedding variant:
    one factor zero, so the adapted model starts as the base). A token's row changes through its own
    row of A, so an adapter can move exactly the tokens a task needs (a classifier's "FREE", "txt")
    for r·(vocab + dim) numbers instead of vocab·dim.
    """

    def __init__(self, embedding: nn.Embedding, rank: int, alpha: float):
        # weight: (num_embeddings, dim), possibly shared with a tied head
        super().__init__(embedding.weight, embedding.num_embeddings, embedding.embedding_dim, rank, alpha)
        factory = self._factory()
        self.lora_A = nn.Parameter(torch.zeros(self.in_features, rank, **factory))     # (vocab, r)
        self.lora_B = nn.Parameter(torch.randn(rank, self.out_features, **factory) / math.sqrt(rank))  # (r, dim)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        # (..., ) ids -> (..., dim): the base row plus the low-rank change of that row only.
        return F.embedding(idx, self.weight) + self.scaling * (F.embedding(idx, self.lora_A) @ self.lora_B)

    def delta_weight(self) -> torch.Tensor:
        return self.scaling * (self.lora_A @ self.lora_B)  # (vocab, dim)

    def merged(self) -> nn.Embedding:
        embedding = nn.Embedding(self.in_features, self.out_features, **self._factory())
        with torch.no_grad():
            embedding.weight.copy_(self.weight + self.delta_weight())
        return embedding

    def extra_repr(self) -> str:
        return f"num_embeddings={self.in_features}, dim={self.out_features}, rank={self.rank}, alpha={self.alpha:g}"


LORA_MODULES = (LoRALinear, LoRAEmbedding)


def _matches(name: str, targets: Sequence[str]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def inject_lora(model: nn.Module, rank: int, alpha: float, targets: Sequence[str] = DEFAULT_TARGETS,
                train_also: Sequence[str] = ()) -> list[str]:
    """Wrap the nn.Linear layers whose names match `targets` in LoRALinear; freeze everything else.

    A target matches a module whose name is the target or ends with "." + target
    ("att.qkv" matches "trf_blocks.3.att.qkv"). `train_also` names parameters (same
    matching, e.g. "out_head" for a fresh classifier head that is not adapted) left trainable.
    Returns the names of the adapted layers.
    """
    targets = tuple(targets)
    if not targets:
        raise ScratchError("LoRA needs at least one target layer")
    chosen = [name for name, module in model.named_modules()
              if isinstance(module, (nn.Linear, nn.Embedding)) and _matches(name, targets)]
    if not chosen:
        raise ScratchError(f"no linear layer matches the LoRA targets {list(targets)}")
    for param in model.parameters():
        param.requires_grad_(False)
    for name in chosen:
        module = model.get_submodule(name)
        wrapper = LoRAEmbedding if isinstance(module, nn.Embedding) else LoRALinear
        _set_submodule(model, name, wrapper(module, rank, alpha))
    for name, param in model.named_parameters():
        if name.endswith(LORA_PARAM_SUFFIXES):
            param.requires_grad_(True)
        elif train_also and _matches(name.rpartition(".")[0], train_also):
            param.requires_grad_(True)
    return chosen


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LORA_MODULES)}


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LORA_MODULES) for m in model.modules())


def lora_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights only: {"trf_blocks.0.att.qkv.lora_A": (in, r), "...lora_B": (r, out), ...}."""
    return {name: p.detach() for name, p in model.named_parameters() if name.endswith(LORA_PARAM_SUFFIXES)}


def lora_parameter_count(model: nn.Module) -> int:
    """Σ over adapted layers of r·(in + out)."""
    return sum(m.rank * (m.in_features + m.out_features) for m in lora_layers(model).values())


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its layer (W + scaling·A·B) and return the model with plain nn.Linear layers.

    Every parameter is trainable again afterwards, like a freshly loaded model. A tied
    output head that was adapted becomes untied (the embedding keeps the base matrix).
    """
    layers = lora_layers(model)
    for name, layer in layers.items():
        _set_submodule(model, name, layer.merged())
    cfg = getattr(model, "cfg", None)
    if cfg is not None and getattr(cfg, "tie_embeddings", False) and ("out_head" in layers or "tok_emb" in layers):
        model.cfg = cfg.with_(tie_embeddings=False)
    for param in model.parameters():
        param.requires_grad_(True)
    return model


# --- adapter checkpoints -------------------------------------------------------------------------


def _non_base_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """What the adapter must carry besides A and B: trainable non-LoRA parameters, and a classifier's head.

    A classifier head is not in the base model (to_classifier makes it fresh), so it is
    saved even when frozen under its own adapter.
    """
    classifier = getattr(getattr(model, "cfg", None), "n_classes", None) is not None
    return {name: p.detach() for name, p in model.named_parameters()
            if not name.endswith(LORA_PARAM_SUFFIXES)
            and (p.requires_grad or (classifier and name.startswith("out_head.")))}


def adapter_path(model_path: str | Path) -> Path:
    """Where a fine-tune writes the adapter beside its merged model: NAME.safetensors -> NAME.lora.safetensors."""
    from chatgpt_scratch.storage.checkpoint_format import sibling_file

    return sibling_file(model_path, ".lora.safetensors")


def save_lora_adapter(path: str | Path, model: nn.Module, base_checkpoint: str | Path,
                      **metadata: Any) -> Path:
    """Save only the adapter (and any other trainable parameter) as a small `lora-adapter` checkpoint.

    The header names the base model (absolute path and sha256 of the file) and records
    rank, alpha, the adapted layers and the adapted model's config; `metadata` adds
    provenance (model_kind="instruct", template=..., dataset, val_loss, ...).
    """
    from chatgpt_scratch.storage.checkpoint_format import atomic_save_tensors, checkpoint_header, encode_metadata

    layers = lora_layers(model)
    if not layers:
        raise ScratchError("this model has no LoRA adapters to save; call inject_lora first")
    base = Path(base_checkpoint)
    if not base.is_file():
        raise ScratchError(f"base checkpoint not found: {base}; the adapter must name the model it was trained on")
    first = next(iter(layers.values()))
    meta = checkpoint_header(model.cfg, "lora-adapter", **{
        "base": str(base.resolve()),
        "base_sha256": _base_digest(str(base.resolve()), *_identity(base)),
        "parent": str(base.resolve()),
        "lora_rank": first.rank,
        "lora_alpha": first.alpha,
        "lora_layers": sorted(layers),
        **metadata,
    })
    tensors = {**lora_tensors(model), **_non_base_tensors(model)}
    atomic_save_tensors(path, tensors, encode_metadata(meta))
    return Path(path)


def save_full_or_lora(path: Path, model: nn.Module, kind: str, lora_base: Path | None, **metadata: Any) -> None:
    """A fine-tune task's save (the Trainer's save_model hook): a full fine-tune writes a plain `kind`
    checkpoint; a LoRA one (`lora_base`: the --init file its adapter names) the merged model at `path` and
    the adapter alone at NAME.lora.safetensors. A DDP wrapper is looked through."""
    from chatgpt_scratch.checkpoints import save_checkpoint

    model = getattr(model, "module", model)
    if lora_base is None:
        save_checkpoint(path, model, kind, **metadata)
    else:
        save_merged_and_adapter(path, model, kind, lora_base, **metadata)


def save_merged_and_adapter(path: str | Path, model: nn.Module, kind: str, base_checkpoint: str | Path,
                            merged_only: dict[str, Any] | None = None, **metadata: Any) -> Path:
    """A LoRA fine-tune's save: the adapter alone at NAME.lora.safetensors, then the merged model at
    `path` (a plain `kind` checkpoint that names its adapter; `merged_only` adds keys to it alone).
    The model being trained keeps its adapters: a copy is merged."""
    import copy

    from chatgpt_scratch.checkpoints import save_checkpoint

    adapter = save_lora_adapter(adapter_path(path), model, base_checkpoint, model_kind=kind, **metadata)
    merged = merge_lora(copy.deepcopy(model))
    return save_checkpoint(path, merged, kind, lora_adapter=str(adapter.resolve()), **metadata, **(merged_only or {}))


def _identity(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@lru_cache(maxsize=8)
def _base_digest(resolved_path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a base file, hashed once per version of it: a fine-tune saves many times against one base."""
    from chatgpt_scratch.storage.fileio import sha256_file

    return sha256_file(resolved_path)


def find_base(adapter: Path, recorded: str) -> Path:
    """The recorded base path, else a file of the same name beside the adapter (a moved folder)."""
    # A relative record (the shipped adapters: "default-base.safetensors") means beside the adapter.
    candidates = ([Path(recorded)] if Path(recorded).is_absolute() else []) + [adapter.parent / Path(recorded).name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ScratchError(f"the base model of adapter {adapter} is missing: {recorded} not found; "
                       "put the base checkpoint back there (or beside the adapter), or use a merged model")


def load_lora_adapter(path: str | Path, device: str | torch.device = "cpu", merge: bool = False
                      ) -> tuple[nn.Module, dict[str, Any]]:
    """Load the adapter's base model, check it is the same file (sha256), and apply the adapter.

    merge=True folds the adapter in (a plain model, fastest for generation). The returned
    metadata is the adapter's header; its `model_kind` says what the adapted model is.
    An ensemble file (save_adapter_ensemble) is several models, not one: load_adapter_ensemble.
    """
    from safetensors.torch import load_file

    from chatgpt_scratch.checkpoints import load_checkpoint, read_metadata, require_kind

    path = Path(path)
    metadata = read_metadata(path)
    require_kind(metadata, "lora-adapter", path)
    if ensemble_size(metadata):
        raise ScratchError(f"{path} is an ensemble of {ensemble_size(metadata)} classifier adapters, not one "
                           "model: it classifies as a whole (classify, the Spam screen) and cannot be merged")
    base_path = _checked_base(path, metadata, ("lora_rank", "lora_alpha", "lora_layers"))
    model, _ = load_checkpoint(base_path, device="cpu")
    _apply_adapter(model, path, metadata, load_file(str(path)), merge)
    return model.to(device), metadata


def _checked_base(path: Path, metadata: dict[str, Any], needed: Sequence[str]) -> Path:
    """The base file an adapter header names, found (find_base) and checked to be the same file (sha256)."""
    from chatgpt_scratch.storage.fileio import sha256_file

    for key in ("base", "base_sha256", *needed):
        if key not in metadata:
            raise ScratchError(f"{path}: the adapter header has no {key!r}; the file was edited or is damaged")
    base_path = find_base(path, metadata["base"])
    digest = sha256_file(base_path)
    if digest != metadata["base_sha256"]:
        raise ScratchError(
            f"{base_path} is not the base model adapter {path.name} was trained on (sha256 {digest[:12]}…, "
            f"expected {metadata['base_sha256'][:12]}…); the adapter only works on its original base"
        )
    return base_path


def _apply_adapter(model: nn.Module, path: Path, metadata: dict[str, Any], state: dict[str, torch.Tensor],
                   merge: bool) -> nn.Module:
    """Put the adapter `state` (rank, alpha and layers from `metadata`) on the base `model`, in place."""
    from chatgpt_scratch.checkpoints import config_from_metadata
    from chatgpt_scratch.model import to_classifier

    cfg = config_from_metadata(metadata, path)
    if cfg.n_classes is not None and model.cfg.n_classes != cfg.n_classes:
        to_classifier(model, cfg.n_classes)  # the adapter carries the new head's weights
    inject_lora(model, int(metadata["lora_rank"]), float(metadata["lora_alpha"]), targets=metadata["lora_layers"])
    own = dict(model.named_parameters())
    unknown = sorted(set(state) - set(own))
    missing = sorted(k for k in lora_tensors(model) if k not in state)
    if unknown or missing:
        raise ScratchError(f"{path}: adapter weights do not fit its base model "
                           f"(unexpected {unknown[:3]}, missing {missing[:3]}); the file was edited or is damaged")
    with torch.no_grad():
        for name, tensor in state.items():
            if own[name].shape != tensor.shape:
                raise ScratchError(f"{path}: {name} is {tuple(tensor.shape)} in the adapter but the model needs "
                                   f"{tuple(own[name].shape)}; the file was edited or is damaged")
            own[name].copy_(tensor)
    if merge:
        merge_lora(model)
    return model.eval()


# --- ensembles of classifier adapters -------------------------------------------------------------

# What every member keeps in its own entry of `ensemble_members`, even where they agree (its loading needs them).
MEMBER_KEYS = ("lora_rank", "lora_alpha", "lora_layers")


def member_prefix(index: int) -> str:
    return f"member{index}."


def reduce_rank(tensors: dict[str, torch.Tensor], rank: int, new_rank: int) -> dict[str, torch.Tensor]:
    """An adapter's tensors with every layer's update cut to `new_rank`: its best rank-`new_rank`
    approximation (SVD), stored so that alpha stays the same (the update is scaled by alpha / new_rank).

    The SVD of A B (in x out, up to the vocabulary's 50,257 rows) is taken through QR factors of A and Bᵀ,
    so only an r x r matrix is decomposed. Other tensors (head, norms) are returned as they are.
    """
    if new_rank < 1:
        raise ScratchError(f"the rank must be at least 1, got {new_rank}")
    if new_rank >= rank:
        return dict(tensors)
    out = dict(tensors)
    for name, a in tensors.items():
        if not name.endswith(".lora_A"):
            continue
        b_name = name.removesuffix("lora_A") + "lora_B"
        a32, b32 = a.float(), tensors[b_name].float()
        qa, ra = torch.linalg.qr(a32)       # A = Qa Ra: (in, r), (r, r)
        qb, rb = torch.linalg.qr(b32.T)     # Bᵀ = Qb Rb: (out, r), (r, r)
        u, sv, vh = torch.linalg.svd(ra @ rb.T)  # A B = Qa (U S Vh) Qbᵀ
        # scaled so that (alpha / new_rank) A' B' equals (alpha / rank) times the truncated A B
        root = (sv[:new_rank] * (new_rank / rank)).sqrt()
        out[name] = (qa @ u[:, :new_rank] * root).to(a.dtype).contiguous()
        out[b_name] = (root[:, None] * (vh[:new_rank] @ qb.T)).to(a.dtype).contiguous()
    return out


def save_adapter_ensemble(path: str | Path, adapters: Sequence[str | Path], rank: int | None = None,
                          overwrite: bool = True, **metadata: Any) -> Path:
    """Several classifier adapters of one base, trained apart (other seeds), in one `lora-adapter` file whose
    members' class probabilities are averaged when it classifies (classify.ClassifierEnsemble).

    Averaging models that err apart removes errors none of them can: the members must name the same base
    file (sha256), labels, pooling and length. Member i's tensors are stored as `member{i}.NAME`; the header
    keys all members agree on stay at the top, and each member's own (rank, alpha, layers, and whatever
    differs: seed, steps, val metrics) go to its entry in `ensemble_members`. rank: store each member's
    updates at most at this rank (reduce_rank), for a smaller file; its header says the rank it was trained at.
    overwrite=False keeps an existing file (".safetensors" is added to `path` as `lora merge` does). -> the path.
    """
    from safetensors.torch import load_file

    from chatgpt_scratch.checkpoints import output_path, read_metadata, require_kind
    from chatgpt_scratch.storage.checkpoint_format import atomic_save_tensors, encode_metadata

    path, paths = output_path(path, overwrite), [Path(a) for a in adapters]
    if len(paths) < 2:
        raise ScratchError("an ensemble needs at least two adapters")
    headers = []
    for p in paths:
        header = read_metadata(p)
        require_kind(header, "lora-adapter", p)
        if ensemble_size(header):
            raise ScratchError(f"{p} is an ensemble already; list its members' own adapters instead")
        if header.get("model_kind") != "classifier":
            raise ScratchError(f"{p} adapts a {header.get('model_kind')} model; only classifier adapters average "
                               "into an ensemble")
        headers.append(header)
    for key in ("base_sha256", "labels", "pool", "max_length", "config"):
        values = {json_key(h.get(key)) for h in headers}
        if len(values) > 1:
            raise ScratchError(f"the adapters differ in {key!r} ({', '.join(sorted(values))}); the members of an "
                               "ensemble must share their base model, labels, pooling, length and shape")
    tensors: dict[str, torch.Tensor] = {}
    for i, (p, header) in enumerate(zip(paths, headers)):
        own = load_file(str(p))
        if rank is not None and rank < int(header["lora_rank"]):
            own = reduce_rank(own, int(header["lora_rank"]), rank)
            header.update(lora_rank_trained=int(header["lora_rank"]), lora_rank=rank)
        tensors |= {member_prefix(i) + name: t for name, t in own.items()}
    # What all members agree on goes to the top of the header; what differs (seed, metrics, steps) to each member.
    shared, members = shared_and_own(headers, [p.name for p in paths], MEMBER_KEYS)
    # Where the first member finds its base, as a full path: the ensemble may be written to another folder.
    shared["base"] = shared["parent"] = str(_checked_base(paths[0], headers[0], ()).resolve())
    for member in members:
        for key in ("base", "parent"):
            member.pop(key, None)
    atomic_save_tensors(path, tensors, encode_metadata({**shared, ENSEMBLE_KEY: members, **metadata}))
    return path


def load_adapter_ensemble(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """An ensemble file's members, each its base with its adapter merged in, as one ClassifierEnsemble
    (on the CPU, in eval mode), and the file's header."""
    import copy

    from safetensors.torch import load_file

    from chatgpt_scratch.checkpoints import load_checkpoint, read_metadata
    from chatgpt_scratch.classify import ClassifierEnsemble

    path = Path(path)
    metadata = read_metadata(path)
    members = metadata.get(ENSEMBLE_KEY)
    if not isinstance(members, list) or len(members) < 2 or not all(isinstance(m, dict) for m in members):
        raise ScratchError(f"{path}: its {ENSEMBLE_KEY!r} is not a list of members; the file was edited or is damaged")
    base, _ = load_checkpoint(_checked_base(path, metadata, ()), device="cpu")
    state = load_file(str(path))
    stray = sorted(k for k in state if not any(k.startswith(member_prefix(i)) for i in range(len(members))))
    if stray:
        raise ScratchError(f"{path}: weights of no member ({stray[:3]}); the file was edited or is damaged")
    models = []
    for i, member in enumerate(members):
        prefix = member_prefix(i)
        own = {k[len(prefix):]: t for k, t in state.items() if k.startswith(prefix)}
        for key in MEMBER_KEYS:
            if key not in member:
                raise ScratchError(f"{path}: member {i} has no {key!r}; the file was edited or is damaged")
        models.append(_apply_adapter(copy.deepcopy(base), path, {**metadata, **member}, own, merge=True))
    return ClassifierEnsemble(models), metadata


# Header keys of an adapter that describe the adapter file itself, not the model it makes.
_ADAPTER_ONLY_KEYS = frozenset({"format", "kind", "config", "tokenizer", "created", "base", "base_sha256",
                                "lora_layers", "model_kind", "parent"})


def merge_adapter_file(adapter: str | Path, out: str | Path, overwrite: bool = False) -> tuple[Path, str]:
    """Fold a `lora-adapter` checkpoint into its base and save an ordinary checkpoint at `out`
    (".safetensors" added): `lora merge` in the CLI and M on the TUI's Checkpoints screen.

    The merged file records `parent` = the base model it derives from (as a fine-tune's merged
    model does) and `merged_from` = the adapter; the adapter's provenance (dataset, template,
    labels, metrics, ...) is kept. -> (path written, its kind).
    """
    from chatgpt_scratch.checkpoints import output_path, save_checkpoint
    from chatgpt_scratch.storage.checkpoint_format import adapted_kind

    adapter, out = Path(adapter), output_path(out, overwrite)

    model, meta = load_lora_adapter(adapter, merge=True)
    kind = adapted_kind(meta)  # the one rule for what an adapter makes (listings and pickers use it too)
    if kind is None:
        raise ScratchError(f"{adapter}: the adapter header's model_kind {meta.get('model_kind')!r} is not a model "
                           "kind; the file was edited or is damaged")
    provenance = {k: v for k, v in meta.items() if k not in _ADAPTER_ONLY_KEYS}
    path = save_checkpoint(out, model, kind, **{**provenance, "parent": meta.get("base"),
                                                "merged_from": str(adapter.resolve())})
    return path, kind
