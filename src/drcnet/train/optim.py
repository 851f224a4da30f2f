"""Optimiser and loss weights named by a :class:`~drcnet.train.config.TrainConfig`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from drcnet.train.config import TrainConfig


def build_optimizer(cfg: TrainConfig, params: Any) -> torch.optim.Optimizer:
    """The optimiser named in ``cfg`` (AdaGrad for the paper preset), PyTorch's fused implementation where it has one.

    ``fused=True`` (PyTorch >= 2.4: Adam, AdamW and SGD on CPU and CUDA, AdaGrad on CPU) updates all
    parameters in one kernel instead of a Python loop over tensors: the same update rule, equal to the
    loop within float32 rounding, and ~4x cheaper per step for DRC-Net on a 2-core CPU
    (``docs/notes_speed.md`` section 9). Where the build or the device has no fused kernel the
    optimiser is built without it.
    """
    params = list(params)  # a generator would be used up by a failed first attempt
    kinds: dict[str, Any] = {"adagrad": torch.optim.Adagrad, "adamw": torch.optim.AdamW, "adam": torch.optim.Adam}
    kind = kinds.get(cfg.optimizer, torch.optim.SGD)
    kwargs: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if kind is torch.optim.SGD:
        kwargs["momentum"] = 0.9
    device = params[0].device.type if params else "cpu"
    # AdaGrad's fused kernel is CPU-only in PyTorch, and its device check runs at the first step, not here
    if kind is torch.optim.Adagrad and device != "cpu":
        return kind(params, **kwargs)
    try:
        return kind(params, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):
        return kind(params, **kwargs)


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights per class (``N / (n_classes * count)``; 0 for a class with no objects)."""
    counts = np.bincount(labels[labels >= 0], minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)
