"""Writing run-folder files: weights and checkpoints in safetensors (no pickle).

The layout and the readers are in :mod:`drcnet.models.run_folder`. ``last.safetensors`` holds the
last finished epoch: weights, optimiser tensors, RNG states; metadata "state" (JSON): epoch, step,
best/bad-epoch counters, history, optimiser param groups, Python/numpy RNG state.

Every file is written atomically (temporary name + rename, :mod:`drcnet.provenance`), and a
checkpoint is one file, so a run killed at any moment resumes from a consistent state.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from drcnet.models.run_folder import FORMAT, read_safetensors
from drcnet.provenance import atomic_path


def _contig(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in sd.items()}


def save_weights(path: str | Path, model: torch.nn.Module, metadata: dict[str, Any]) -> Path:
    """Write ``model``'s state dict to ``path`` (safetensors) atomically; ``metadata`` stored as JSON strings."""
    meta = {"format": FORMAT, **{k: json.dumps(v) for k, v in metadata.items()}}
    with atomic_path(path) as tmp:
        save_file(_contig(model.state_dict()), str(tmp), metadata=meta)
    return Path(path)


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Current torch / numpy / Python RNG states as (tensors, JSON-able dict)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy.keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    py = random.getstate()
    meta = {"numpy": [name, int(pos), int(has_gauss), float(cached)], "python": [py[0], list(py[1]), py[2]]}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, tensors["rng.numpy.keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    v, state, gauss = meta["python"]
    random.setstate((v, tuple(state), gauss))


def _optim_split(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                plain.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "state": plain}


_IMPLEMENTATION_KEYS = ("fused", "foreach")
"""Optimiser settings that choose a kernel, not the update: kept from the running optimiser on resume."""


def _optim_join(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, st in meta.get("state", {}).items():
        state.setdefault(int(pid), {}).update(st)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> Path:
    """Write the resumable checkpoint (weights, optimiser, RNG, loop ``state``) as one safetensors file."""
    tensors = {f"model.{k}": v for k, v in _contig(model.state_dict()).items()}
    opt_t, opt_meta = _optim_split(optimizer.state_dict())
    rng_t, rng_meta = rng_state()
    tensors.update(_contig(opt_t))
    tensors.update(_contig(rng_t))
    meta = {
        "format": FORMAT,
        "state": json.dumps(state),
        "optimizer": json.dumps(opt_meta),
        "rng": json.dumps(rng_meta),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return Path(path)


def load_checkpoint(
    path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, restore_rng: bool = True
) -> dict[str, Any]:
    """Load :func:`save_checkpoint` output into ``model`` / ``optimizer``; return the loop state."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a drcnet checkpoint (format {meta.get('format')!r})")
    model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    if optimizer is not None:
        saved = _optim_join(tensors, meta["optimizer"])
        # the kernel choice (fused / foreach) is this machine's, made when the optimiser was built, not the
        # saved run's: a run checkpointed with a fused kernel resumes where there is none, and vice versa
        for group, running in zip(saved["param_groups"], optimizer.param_groups, strict=False):
            for key in _IMPLEMENTATION_KEYS:
                if key in running:
                    group[key] = running[key]
        optimizer.load_state_dict(saved)
    if restore_rng:
        set_rng_state(tensors, meta["rng"])
    return meta["state"]
