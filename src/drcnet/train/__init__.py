"""Training: ``train(TrainConfig)``, presets, checkpoints, exact resume and DDP (see :mod:`drcnet.train.loop`).

>>> from drcnet.train import TrainConfig, train
>>> from drcnet.models import load_run
>>> meta = train(TrainConfig(model="drcnet", data="data.h5", out="runs/drc", preset="fast"))  # doctest: +SKIP
>>> model, info = load_run("runs/drc")  # doctest: +SKIP

The names are loaded on first use, so importing :mod:`drcnet.train.config` (the CLI does, for
``--help``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "PRESETS": "drcnet.train.config",
    "TrainConfig": "drcnet.train.config",
    "lr_at": "drcnet.train.config",
    "train": "drcnet.train.loop",
    "steps_per_epoch": "drcnet.train.distributed",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'drcnet.train' has no attribute {name!r}")
