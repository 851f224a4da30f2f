"""Training configuration and the two presets.

``paper`` is Table 2 of Zhang et al. (2023): AdaGrad, lr 0.001, batch 4, up to 300 epochs,
cross-entropy, early stop after 50 epochs without a lower validation loss, best model kept.

``fast`` reaches the paper preset's accuracy in a small fraction of the CPU time:

* AdamW (peak lr 5e-4, weight decay 1e-4): adaptive per-parameter steps without AdaGrad's
  ever-shrinking step size, so far fewer epochs are needed;
* gradient-norm clipping at 1.0: these networks have no batch norm, and at lr 1e-3 a single bad
  batch blew the training loss up to 11 (epoch 4 of a synthetic run); clipping keeps AdamW stable;
* batch 32: ~8x fewer optimiser steps per epoch than batch 4, and much better CPU utilisation
  (oneDNN convolutions are ~5x faster per object at batch 32 than at batch 4);
* one-cycle schedule (linear warm-up over the first 10 % of steps, then cosine decay to lr/100),
  a pure function of the step number, so resuming needs no scheduler state;
* at most 40 epochs, early stopping patience 10.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

# the optimiser of the robust and survey presets (they differ only in their model defaults and heads loss)
_ROBUST: dict[str, Any] = {
    "optimizer": "adamw",
    "lr": 7e-4,
    "weight_decay": 1e-4,
    "batch_size": 32,
    "epochs": 12,
    "patience": 5,
    "schedule": "onecycle",
    "warmup_frac": 0.08,
    "grad_clip": 1.0,
    "aux_weight": 0.3,
}

# the DRC-Net of the survey preset: four classes, per-arm heads, catalogue heads, arm-feature dropout
_HYBRIDS = ("hybrid", "hybrid_optimal")
"""The registered hybrid models (:data:`drcnet.models.hybrid.HYBRID_MODELS`): one set of preset defaults."""

_SURVEY_DRCNET: dict[str, Any] = {
    "reduce_init": "profile",
    "aux_heads": True,
    "heads": True,
    "n_classes": 4,
    "arm_feature_dropout": 0.3,
}

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "optimizer": "adagrad",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "batch_size": 4,
        "epochs": 300,
        "patience": 50,
        "schedule": "constant",
        "warmup_frac": 0.0,
        "grad_clip": 0.0,
    },
    "fast": {
        "optimizer": "adamw",
        "lr": 5e-4,
        "weight_decay": 1e-4,
        "batch_size": 32,
        "epochs": 40,
        "patience": 10,
        "schedule": "onecycle",
        "warmup_frac": 0.1,
        "grad_clip": 1.0,
    },
    # robust: the fast optimiser on the domain-randomised survey population (`drcnet simulate-population`),
    # sized for one CPU core (8000 objects, ~3-5 min per epoch); per-arm auxiliary losses and
    # profile-initialised reductions against a collapsing arm (docs/notes_real_stars.md).
    "robust": {
        **_ROBUST,
        "model_defaults": {
            "drcnet": {"reduce_init": "profile", "aux_heads": True},
            # the hybrid's DRC-Net as the robust DRC-Net (so a comparison on one preset compares like with like)
            **{m: {"drcnet": {"reduce_init": "profile", "aux_heads": True}} for m in _HYBRIDS},
        },
    },
    # survey: the robust recipe on the population with `other` objects (`simulate-population --other`),
    # four classes (F/G/K/other), the catalogue heads (subclass, luminosity class, Teff/logg/[Fe/H] with
    # uncertainties) and modality dropout so both arms must carry the class (docs/notes_catalogue.md).
    "survey": {
        **_ROBUST,
        "heads_weight": 0.5,
        "model_defaults": {
            "drcnet": _SURVEY_DRCNET,
            # the hybrid: the survey DRC-Net and RC-Net side by side (warm-started from one run of each)
            **{
                m: {"n_classes": 4, "drcnet": {k: v for k, v in _SURVEY_DRCNET.items() if k != "n_classes"}}
                for m in _HYBRIDS
            },
            # the 1D and FFCNN baselines on the same four classes (so `--preset survey` means F/G/K/other
            # for every model, as the training loop's error message says)
            "rcnet": {"n_classes": 4},
            "ffcnn": {"n_classes": 4},
        },
    },
    # finetune: a shipped (or trained) model adapted to a survey's own labelled frames (`drcnet split`):
    # the architecture of --init-from (model_from_init), a few epochs at a low learning rate, cosine decay,
    # no warm-up (the weights are trained already). A DRC-Net keeps its spatial reductions and backbones
    # fixed (`--freeze none` trains everything): on the benchmark night of another instrument the frozen
    # fine-tune beat the shipped model in every S/N_r bin, the unfrozen one lost 14 points below S/N_r 10
    # (it sees only S/N_r > 30 stars; benchmarks/bench_finetune.py, README "Your own frames"). A hybrid keeps
    # both networks' feature extractors the same way.
    "finetune": {
        "optimizer": "adamw",
        "lr": 1e-4,
        "weight_decay": 1e-4,
        "batch_size": 32,
        "epochs": 4,
        "patience": 3,
        "schedule": "cosine",
        "warmup_frac": 0.0,
        "grad_clip": 1.0,
        "aux_weight": 0.3,
        "heads_weight": 0.5,
        "model_from_init": True,
        "freeze_defaults": {
            "drcnet": ["reduce", "backbones"],
            **{m: ["net2d.reduce", "net2d.backbones", "net1d.backbone"] for m in _HYBRIDS},
        },
    },
}
OPTIMIZERS = ("adagrad", "adamw", "adam", "sgd")
SCHEDULES = ("constant", "onecycle", "cosine")


def default_workers(device: str = "auto", cores: int | None = None) -> int:
    """DataLoader workers for a training process: 0 on a CPU run with 2 cores or fewer, else 1.

    On two cores a loader process takes one from the model's two intra-op threads; the data work
    (batched HDF5 reads and Z-score) is a few per cent of a step, so it runs faster in the main process
    (one ``fast`` epoch of the paper file on the 2-core development machine, idle: 72.6 s with 0
    workers against 82.5 s with 1). ``cores`` defaults to the CPUs this process may run on.
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    on_cpu = device == "cpu"
    if device == "auto":
        import torch

        on_cpu = not torch.cuda.is_available()
    return 0 if on_cpu and cores <= 2 else 1


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in ``run.json``).

    Attributes
    ----------
    model, data, out
        Registered model name, dataset file, run folder.
    preset
        ``"paper"`` or ``"fast"``: defaults for the optimisation settings below (``None``: ``"fast"``
        for a new run, the saved preset when resuming).
    optimizer, lr, weight_decay, batch_size, epochs, patience, schedule, warmup_frac, grad_clip
        Optimisation; ``None`` takes the preset's value. ``batch_size`` is per process under DDP.
        ``grad_clip``: maximum global gradient norm (0: no clipping).
    seed
        Seeds model initialisation and, with the epoch number, the data order and dropout
        (``None``: 0 for a new run, the saved seed when resuming).
    device
        ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
    workers
        DataLoader worker processes per training process (each opens the HDF5 file itself).
    fast
        Use the models' channels-last fast path and the allocator tuning (same results).
    threads
        Intra-op threads per process (``None``: cores / processes on this node).
    class_weights
        Weight the loss by inverse class frequency of the training split (FFCNN does this).
    model_config
        Overrides for the model's config dataclass.
    stop_after_epochs
        Stop (as if killed) after this many epochs in this invocation; for testing ``--resume``.
    progress
        Show a progress bar.
    aux_weight
        Weight of the per-arm auxiliary cross-entropy (models with ``aux_heads``; 0 = off; ``None``: preset).
    heads_weight
        Weight of the catalogue-head loss (:func:`drcnet.models.heads.heads_loss`; models with ``heads``;
        ``None``: preset, else 1.0).
    init_from
        Warm start: a run folder or shipped model name whose weights initialise the model wherever the
        shapes agree (a 3-class output layer fills the first three rows of a 4-class one); new layers
        keep their fresh initialisation. ``None``: train from scratch. With the ``finetune`` preset the
        model takes the source run's architecture (:func:`drcnet.train.warm_start.with_source_architecture`).
    freeze
        Top-level parts of the model whose weights stay fixed (e.g. ``["reduce", "backbones"]`` of DRC-Net:
        the spatial reductions and the per-arm feature extractors); ``None``/empty: train everything.
    """

    model: str
    data: str
    out: str
    preset: str | None = "fast"
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    batch_size: int | None = None
    epochs: int | None = None
    patience: int | None = None
    schedule: str | None = None
    warmup_frac: float | None = None
    grad_clip: float | None = None
    seed: int | None = 0
    device: str = "auto"
    workers: int = 1
    fast: bool = True
    threads: int | None = None
    class_weights: bool = False
    model_config: dict[str, Any] = field(default_factory=dict)
    stop_after_epochs: int | None = None
    progress: bool = True
    aux_weight: float | None = None
    heads_weight: float | None = None
    init_from: str | None = None
    freeze: list[str] | None = None

    def resolved(self) -> TrainConfig:
        """A copy with every ``None`` optimisation setting filled from the preset, validated."""
        preset = self.preset or "fast"
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        values = dataclasses.asdict(self)
        values["preset"] = preset
        for key, value in PRESETS[preset].items():
            if key == "model_from_init":
                continue
            if key == "freeze_defaults":
                if values.get("freeze") is None and self.model in value:
                    values["freeze"] = list(value[self.model])
                continue
            if key == "model_defaults":
                values["model_config"] = merge_model_config(value.get(self.model, {}), values.get("model_config"))
            elif values.get(key) is None:
                values[key] = value
        if values.get("aux_weight") is None:
            values["aux_weight"] = 0.0
        if values.get("heads_weight") is None:
            values["heads_weight"] = 1.0
        if values["seed"] is None:
            values["seed"] = 0
        cfg = TrainConfig(**values)
        if cfg.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose from {OPTIMIZERS}")
        if cfg.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {cfg.schedule!r}; choose from {SCHEDULES}")
        if cfg.batch_size < 1 or cfg.epochs < 1 or cfg.patience < 1:
            raise ValueError(
                f"batch_size, epochs and patience must be >= 1 (got {cfg.batch_size}, {cfg.epochs}, {cfg.patience})"
            )
        if cfg.lr < 0:
            raise ValueError(f"lr must be >= 0, got {cfg.lr}")
        if cfg.device not in ("auto", "cpu", "cuda") and not cfg.device.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu or cuda, got {cfg.device!r}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict` (unknown keys ignored, so older run folders still load)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def merge_model_config(base: dict[str, Any], override: dict[str, Any] | None) -> dict[str, Any]:
    """``base`` with ``override`` on top, nested options merged one level deep.

    A model config may hold the config of a sub-network as a dict (the hybrid's ``drcnet`` and ``rcnet``);
    an override of one of its options keeps the others, so ``{"drcnet": {"dropout": 0.2}}`` on top of the
    survey preset keeps the preset's ``drcnet`` settings.

    Parameters
    ----------
    base, override
        Model config options (``override`` may be ``None``).

    Returns
    -------
    dict
        A new dict (nested dicts copied too); neither argument is changed.
    """
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in (override or {}).items():
        old = out.get(key)
        out[key] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
    return out


IDENTITY_KEYS = (
    "model",
    "preset",
    "optimizer",
    "lr",
    "weight_decay",
    "batch_size",
    "schedule",
    "warmup_frac",
    "grad_clip",
    "seed",
    "class_weights",
    "model_config",
    "aux_weight",
    "heads_weight",
    "init_from",
    "freeze",
)
"""Settings that define what a run computes: a resume must not change them (``epochs`` and ``patience`` may)."""


def resume_conflicts(saved: TrainConfig, asked: TrainConfig) -> list[str]:
    """The identity settings ``asked`` gives explicitly (not ``None`` / empty) that differ from the saved run's.

    Returns
    -------
    list of str
        ``"name: saved -> asked"`` for each conflict (empty when the resume is consistent).
    """
    out = []
    for key in IDENTITY_KEYS:
        new, old = getattr(asked, key), getattr(saved, key)
        if new is None or (key == "model_config" and not new) or (key == "class_weights" and new is False):
            continue
        if key == "model_config":
            merged = merge_model_config(old, new)
            out.extend(
                f"model_config.{k}: {old.get(k)!r} -> {merged[k]!r}"
                for k in sorted(merged)
                if _json_like(merged[k]) != _json_like(old.get(k))
            )
            continue
        if new != old:
            out.append(f"{key}: {old!r} -> {new!r}")
    return out


def _json_like(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples as lists), so a saved and a given config compare alike."""
    import json

    return json.loads(json.dumps(value))


def lr_at(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate at optimiser step ``step`` (0-based) of ``total_steps``: a pure function.

    ``constant``: ``lr``. ``cosine``: cosine from ``lr`` to ``lr / 100``. ``onecycle``: linear
    warm-up from ``lr / 25`` over ``warmup_frac`` of the steps, then cosine to ``lr / 100``.
    """
    import math

    base = float(cfg.lr)
    if cfg.schedule == "constant" or total_steps <= 1:
        return base
    final = base / 100.0
    warm = int(round((cfg.warmup_frac or 0.0) * total_steps)) if cfg.schedule == "onecycle" else 0
    if step < warm:
        start = base / 25.0
        return start + (base - start) * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total_steps - warm - 1))
    return final + 0.5 * (base - final) * (1.0 + math.cos(math.pi * t))
