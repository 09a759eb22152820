"""Resumable training state in one safetensors file, no pickle.

`<run dir>/state.safetensors` holds tensors (the model's weights, AdamW's moments and step
counts, the torch/CUDA RNG states) and, in its string header, a JSON document with the rest
(optimizer step, epoch and batch position, tokens seen, best metric, Python/NumPy RNG, elapsed
time). It is written atomically, so a crash while saving leaves the previous state intact.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from chatgpt_scratch.checkpoints import atomic_save_tensors
from chatgpt_scratch.errors import ScratchError

STATE_FILE = "state.safetensors"
STATE_FORMAT = "chatgpt-scratch-train-state/1"


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """AdamW's per-parameter state as tensors named "INDEX.KEY", plus its param_groups (JSON) for checking."""
    sd = optimizer.state_dict()
    tensors = {}
    for index, state in sd["state"].items():
        for key, value in state.items():
            tensors[f"{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    groups = [{k: v for k, v in g.items() if k != "params"} | {"n_params": len(g["params"])} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups}


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = optimizer.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    n_params = sum(len(g["params"]) for g in sd["param_groups"])
    if state and max(state) >= n_params:
        raise ScratchError("the saved optimizer state is for a different set of trainable parameters; "
                           "resume with the same model and options")
    sd["state"] = state
    optimizer.load_state_dict(sd)


def torch_rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    """This process's torch generators: the CPU one and, on CUDA, its device's (dropout uses them)."""
    out = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def restore_torch_rng(tensors: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(tensors["torch"])
    if device.type == "cuda" and "cuda" in tensors:
        torch.cuda.set_rng_state(tensors["cuda"], device)


def host_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Python's and NumPy's global generators (tasks should not need them; saved for exactness anyway)."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    info = {"python": [py_version, list(py_state), py_gauss],
            "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])]}
    return {"rng.numpy": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))}, info


def restore_host_rng(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    version, state, gauss = info["python"]
    random.setstate((version, tuple(state), gauss))
    name, pos, has_gauss, cached = info["numpy"]
    np.random.set_state((name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))


def save_state(run_dir: str | Path, tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> Path:
    path = Path(run_dir) / STATE_FILE
    atomic_save_tensors(path, tensors, {"state": json.dumps({"format": STATE_FORMAT, **doc})})
    return path


def load_state(run_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """-> (all tensors on the CPU, the JSON document)."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        raise ScratchError(f"nothing to resume: {path} does not exist (the run saved no state yet)")
    try:
        with safe_open(str(path), framework="pt") as f:
            doc = json.loads((f.metadata() or {}).get("state", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for a damaged file
        raise ScratchError(f"{path} cannot be read ({str(e).splitlines()[0][:120]}); the state file is damaged") from None
    if doc.get("format") != STATE_FORMAT:
        raise ScratchError(f"{path} is not a chatgpt-scratch training state")
    return tensors, doc


def subset(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
