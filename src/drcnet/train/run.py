"""Rebuild a trained model from its run folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from drcnet.models import SpectralModel, create_model
from drcnet.models.fastpath import set_fast
from drcnet.train.checkpoint import BEST, LAST, read_run_json, read_safetensors


@dataclass
class RunInfo:
    """What ``run.json`` says about a run, plus where it lives."""

    run_dir: Path
    model_name: str
    model_config: dict[str, Any]
    input_kind: str
    meta: dict[str, Any]

    @property
    def label(self) -> str:
        """A short name for tables: the model name and the run folder's name."""
        return f"{self.model_name} ({self.run_dir.name})"


def read_run(run_dir: str | Path) -> RunInfo:
    """Read a run folder's ``run.json``."""
    meta = read_run_json(run_dir)
    return RunInfo(Path(run_dir), meta["model"], meta["model_config"], meta["input_kind"], meta)


def load_model(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu",
               fast: bool = True) -> tuple[SpectralModel, RunInfo]:
    """Rebuild the model of a run folder with its best (or last) weights, in eval mode.

    Parameters
    ----------
    run_dir
        Folder written by ``drcnet train``.
    which
        ``"best"`` (lowest validation loss) or ``"last"`` (last finished epoch).
    device
        Where to put the model.
    fast
        Use the CPU fast path (same results).
    """
    info = read_run(run_dir)
    config = dict(info.model_config)
    if info.model_name == "drcnet" and "reduce_activation" not in config:
        # run folders written before the option existed used ReLUs between the reduction convolutions
        config["reduce_activation"] = "relu"
    model = create_model(info.model_name, **config)
    if which == "best":
        tensors, _ = read_safetensors(Path(run_dir) / BEST)
    elif which == "last":
        raw, _ = read_safetensors(Path(run_dir) / LAST)
        tensors = {k[len("model."):]: v for k, v in raw.items() if k.startswith("model.")}
    else:
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    model.load_state_dict(tensors)
    set_fast(model, fast)
    return model.to(device).eval(), info
