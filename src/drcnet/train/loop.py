# Over 400 lines on purpose: setup, epochs, steps and checkpoints share one _Run state and its resume invariants.
"""The training loop: presets, early stopping, checkpoints, exact resume, DDP under ``torchrun``.

Determinism and resume
    The data order of epoch ``e`` is ``DistributedSampler(seed=seed).set_epoch(e)`` (a permutation
    drawn from a generator seeded with ``seed + e``), and the global torch RNG (dropout) is re-seeded
    at the start of every epoch from ``(seed, e, rank)``. Everything an epoch does is thus a function
    of the seed, the epoch and the weights/optimiser state at its start, which the last checkpoint
    holds; a run killed after epoch ``k`` and resumed gives bit-identical weights and history to an
    uninterrupted run on the same machine (CPU). RNG states are stored in the checkpoint as well.

Distributed data parallel
    See :mod:`drcnet.train.distributed`. ``--batch-size`` is per process. Validation is split by
    rows ``rank::world`` (no padding) and the loss/accuracy sums are all-reduced, so every rank
    takes the same early-stopping decision; only rank 0 writes.

Stopping
    :func:`request_stop` (called by the CLI's SIGTERM handler) only sets a flag; the loop checks it
    after every optimiser step and validation batch and then stops like Ctrl-C (``KeyboardInterrupt``),
    so the request is never lost inside a callback the interpreter would swallow it in.

The loop reads top to bottom: :func:`train` -> :func:`_resolve_config` -> :func:`_setup` ->
:func:`_fit` (per epoch :func:`_train_epoch`, :func:`evaluate_loss`, :func:`_end_epoch`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from drcnet.conventions import CLASSES
from drcnet.data.schema import dataset_fingerprint, dataset_label_convention
from drcnet.data.torch_dataset import SpectraDataset, check_arrays
from drcnet.models import SpectralModel, create_model, model_input_kind
from drcnet.models.fastpath import configure_cpu, set_fast
from drcnet.models.heads import heads_loss
from drcnet.models.run_folder import (
    BEST,
    FORMAT,
    HISTORY,
    LAST,
    RUN_JSON,
    file_sha256,
    read_run_json,
    saved_model_config,
    verify_checksum,
)
from drcnet.provenance import provenance, write_json_atomic, write_text_atomic
from drcnet.train.checkpoint import load_checkpoint, save_checkpoint, save_weights
from drcnet.train.config import TrainConfig, lr_at, resume_conflicts
from drcnet.train.distributed import (
    DistInfo,
    all_reduce_sums,
    epoch_seed,
    init_distributed,
    resolve_device,
    steps_per_epoch,
)
from drcnet.train.epoch import HISTORY_COLUMNS, arm_feature_spread, evaluate_loss, history_csv
from drcnet.train.optim import build_optimizer, class_weights
from drcnet.train.stop import check_stop, clear_stop_requests, request_stop
from drcnet.train.warm_start import freeze_parts, warm_start, with_source_architecture

_RUNTIME_KEYS = ("device", "workers", "threads", "progress", "stop_after_epochs")

__all__ = ["HISTORY_COLUMNS", "evaluate_loss", "history_csv", "request_stop", "steps_per_epoch", "train"]


def _log(info: DistInfo, msg: str) -> None:
    if info.rank == 0:
        tqdm.write(msg)


class AllOutputs(torch.nn.Module):
    """``forward`` = the wrapped model's ``forward_all`` (a dict), so DDP syncs the catalogue heads' gradients."""

    def __init__(self, model: SpectralModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.forward_all(x)


@dataclass
class _Run:
    """Everything one training run holds while it runs."""

    cfg: TrainConfig
    info: DistInfo
    device: torch.device
    model: SpectralModel
    ddp_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    weight: torch.Tensor | None
    train_ds: SpectraDataset
    val_ds: SpectraDataset
    total_steps: int
    state: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    def write_status(self, status: str) -> dict[str, Any]:
        """Update ``run.json`` (rank 0 only) with ``status`` and the loop's counters; return it."""
        self.meta.update(
            {
                "status": status,
                "epochs_run": self.state["epoch"],
                "best_epoch": self.state["best_epoch"],
                "best_val_loss": self.state["best_val_loss"],
                "stop_reason": self.state["stop_reason"],
            }
        )
        if self.info.rank == 0:
            write_json_atomic(self.out / RUN_JSON, self.meta)
        return self.meta

    def save_best(self, epoch: int, val_loss: float | None) -> None:
        path = save_weights(
            self.out / BEST,
            self.model,
            {"model": self.cfg.model, "model_config": self.model.config_dict(), "epoch": epoch, "val_loss": val_loss},
        )
        self.meta.setdefault("checksums", {})[BEST] = file_sha256(path)

    def save_last(self) -> None:
        path = save_checkpoint(self.out / LAST, self.model, self.optimizer, self.state)
        self.meta.setdefault("checksums", {})[LAST] = file_sha256(path)


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train ``config.model`` on ``config.data`` into ``config.out``; return the final ``run.json`` dict.

    With ``resume=True`` and a ``last.safetensors`` in the run folder, continue that run from its
    last finished epoch (its saved config is used; ``epochs``, ``patience``, ``device``, ``workers``,
    ``threads``, ``progress`` and ``stop_after_epochs`` may be changed; a changed identity setting,
    :data:`~drcnet.train.config.IDENTITY_KEYS`, is refused). Works under ``torchrun``.
    ``overwrite=True`` removes an existing run's files from ``config.out`` first.

    Raises
    ------
    FileExistsError
        ``config.out`` holds run files, ``resume`` is false and ``overwrite`` is false.
    ValueError
        A resume onto another dataset or world size or with other settings; a dataset without
        train/val objects.
    KeyboardInterrupt
        Ctrl-C or :func:`request_stop`; the run folder then says ``interrupted``.
    """
    clear_stop_requests()
    info = init_distributed(config.device)
    try:
        cfg, resuming = _resolve_config(config, resume, info, overwrite)
        run = _setup(cfg, info, resuming)
        if run.state["stop_reason"] == "early_stop" or run.state["epoch"] >= cfg.epochs:
            _log(
                info,
                f"{run.out}: run already finished ({run.state['stop_reason'] or 'max_epochs'} after epoch "
                f"{run.state['epoch']})",
            )
            return run.write_status("completed")
        run.state["stop_reason"] = None
        run.write_status("running")
        status = _fit(run)
        if info.rank == 0 and not (run.out / BEST).is_file():
            # validation loss never finite: keep the last weights as "best" so the run is usable
            run.save_best(run.state["epoch"], None)
        return run.write_status(status)
    finally:
        if info.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


RUN_FILES = (RUN_JSON, BEST, LAST, HISTORY, "metrics.json", "confusion.png", "MODEL_CARD.md")
"""Files of a run folder that ``--overwrite`` removes before a new run starts there."""


def _resolve_config(
    config: TrainConfig, resume: bool, info: DistInfo, overwrite: bool = False
) -> tuple[TrainConfig, bool]:
    """The effective config: the saved one when resuming (with the runtime keys changed), else ``config``."""
    out = Path(config.out)
    last_path = out / LAST
    if not (resume and last_path.is_file()):
        present = [name for name in RUN_FILES if (out / name).exists()]
        if present and not overwrite:
            hint = "pass --resume to continue it, " if last_path.is_file() else ""
            raise FileExistsError(
                f"{out} already holds a run ({', '.join(present)}); {hint}choose another --out, "
                "or pass --overwrite to replace it"
            )
        resolved = with_source_architecture(config.resolved())
        if present and info.rank == 0:
            # refuse a data file the model cannot read before the old run is deleted
            check_arrays(resolved.data, model_input_kind(resolved.model))
            for name in present:
                (out / name).unlink()
        return resolved, False
    saved = read_run_json(out)
    base = TrainConfig.from_dict(saved["train_config"])
    # the network that was trained: run.json's model config, not the preset's defaults applied again
    # (a default changed since, or one added for this model, would build another network)
    base.model_config = saved_model_config(saved)
    if "grad_clip" not in saved["train_config"]:
        base.grad_clip = 0.0  # run folders from before the option: they trained without clipping
    conflicts = resume_conflicts(base, config)
    if conflicts:
        raise ValueError(
            f"cannot resume {out} with other settings ({'; '.join(conflicts)}); drop those options "
            "to continue the run as it was, or train into a new --out"
        )
    for key in _RUNTIME_KEYS + ("epochs", "patience"):
        value = getattr(config, key)
        if key in ("epochs", "patience") and value is None:
            continue
        setattr(base, key, value)
    base.data, base.out = str(config.data), str(config.out)
    fingerprint = dataset_fingerprint(config.data)
    if saved["data"]["sha256"] != fingerprint["sha256"]:
        raise ValueError(
            f"cannot resume {out}: it was trained on a different dataset (fingerprint "
            f"{saved['data']['sha256'][:12]} from {saved['data']['path']}, now {fingerprint['sha256'][:12]} "
            f"from {config.data}); train into a new --out instead"
        )
    if int(saved.get("world_size", 1)) != info.world:
        raise ValueError(
            f"cannot resume {out}: it ran with {saved.get('world_size')} processes, now {info.world}; "
            "the data order per process would change"
        )
    return replace(base.resolved(), model_config=base.model_config), True


def _setup(cfg: TrainConfig, info: DistInfo, resuming: bool) -> _Run:
    """Device, threads, datasets, model, optimiser and loop state (restored from ``last`` when resuming)."""
    device = resolve_device(cfg.device, info.local_rank)
    threads = cfg.threads
    if threads is None and info.local_world > 1 and device.type == "cpu":
        threads = max(1, (os.cpu_count() or 1) // info.local_world)
    if threads:
        torch.set_num_threads(int(threads))
    cpu_settings = configure_cpu() if cfg.fast else {"threads": torch.get_num_threads(), "mallopt": False}

    kind = model_input_kind(cfg.model)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    model = create_model(cfg.model, **cfg.model_config)
    heads = model.has_heads
    train_ds = SpectraDataset(cfg.data, kind, "train", labelled_only=True, with_targets=heads)
    val_ds = SpectraDataset(cfg.data, kind, "val", labelled_only=True)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise ValueError(
            f"{cfg.data} needs labelled objects in both the train ({len(train_ds)}) and val ({len(val_ds)}) splits"
        )
    n_classes = int(getattr(model.config, "n_classes", len(CLASSES)))
    top = int(max(train_ds.labels.max(), val_ds.labels.max()))
    if top >= n_classes:
        raise ValueError(
            f"{cfg.data} has labels up to {top} (class 'other' is 3) but a {cfg.model} with "
            f"{n_classes} outputs; train with --preset survey or --model-config n_classes=4"
        )
    warm = warm_start(model, cfg.init_from) if cfg.init_from and not resuming else None
    set_fast(model, cfg.fast)
    model.to(device)
    if cfg.freeze:
        freeze_parts(model, list(cfg.freeze))
    optimizer = build_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    weight = class_weights(train_ds.labels, n_classes).to(device) if cfg.class_weights else None

    n_steps = steps_per_epoch(len(train_ds), info.world, cfg.batch_size)
    state: dict[str, Any] = {
        "epoch": 0,
        "step": 0,
        "best_val_loss": None,
        "best_epoch": 0,
        "bad_epochs": 0,
        "history": [],
        "stop_reason": None,
    }
    out = Path(cfg.out)
    if resuming:
        saved_sums = read_run_json(out).get("checksums", {})
        verify_checksum(out / LAST, saved_sums.get(LAST))
        state = load_checkpoint(out / LAST, model, optimizer)
        _log(info, f"resuming {out} after epoch {state['epoch']} (step {state['step']})")

    ddp_model: torch.nn.Module = AllOutputs(model) if heads else model
    if info.is_dist:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            ddp_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    meta = {
        "format": FORMAT,
        "model": cfg.model,
        "model_config": model.config_dict(),
        "input_kind": kind,
        "n_parameters": model.num_parameters(),
        "train_config": cfg.to_dict(),
        "data": dataset_fingerprint(cfg.data),
        "seed": cfg.seed,
        "world_size": info.world,
        "steps_per_epoch": n_steps,
        "n_train": len(train_ds),
        "n_val": len(val_ds),
        "device": str(device),
        "cpu_settings": cpu_settings,
        "provenance": provenance(cfg.to_dict(), cfg.seed),
        # what the training labels mean: the model is scored against the same convention (drcnet evaluate)
        "label_convention": dataset_label_convention(cfg.data),
    }
    if warm is not None:
        meta["warm_start"] = warm
    elif resuming and "warm_start" in read_run_json(out):
        meta["warm_start"] = read_run_json(out)["warm_start"]
    if resuming:
        meta["checksums"] = saved_sums
    return _Run(
        cfg, info, device, model, ddp_model, optimizer, weight, train_ds, val_ds, n_steps * cfg.epochs, state, meta
    )


def _fit(run: _Run) -> str:
    """Run epochs until early stop, the epoch limit or ``stop_after_epochs``; return the final status."""
    cfg, state = run.cfg, run.state
    show = cfg.progress and run.info.rank == 0
    epoch_bar = tqdm(
        total=cfg.epochs,
        initial=state["epoch"],
        desc=f"{cfg.model} epochs",
        unit="ep",
        disable=not show,
        dynamic_ncols=True,
    )
    epochs_here = 0
    try:
        for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
            t0 = time.perf_counter()
            row = _train_epoch(run, epoch, show)
            val_loss, val_acc, _ = evaluate_loss(
                run.model, run.val_ds, run.info, run.device, batch_size=max(64, cfg.batch_size)
            )
            row.update(val_loss=val_loss, val_acc=val_acc, time_s=round(time.perf_counter() - t0, 4))
            stop = _end_epoch(run, epoch, row)
            epoch_bar.update(1)
            epoch_bar.set_postfix(
                train_loss=f"{row['train_loss']:.4f}", val_loss=f"{val_loss:.4f}", val_acc=f"{val_acc:.3f}"
            )
            epochs_here += 1
            if stop:
                _log(
                    run.info,
                    f"early stop: no lower validation loss for {cfg.patience} epochs (best epoch "
                    f"{state['best_epoch']})",
                )
                break
            if cfg.stop_after_epochs and epochs_here >= cfg.stop_after_epochs and epoch < cfg.epochs:
                return "interrupted"
    except BaseException:
        epoch_bar.close()
        run.write_status("interrupted")
        raise
    finally:
        epoch_bar.close()
    return "completed"


def _train_epoch(run: _Run, epoch: int, show: bool) -> dict[str, Any]:
    """One pass over the training split (this process's shard); returns the epoch's history row so far."""
    cfg, info, state, device = run.cfg, run.info, run.state, run.device
    torch.manual_seed(epoch_seed(cfg.seed, epoch, info.rank))
    sampler = DistributedSampler(
        run.train_ds, num_replicas=info.world, rank=info.rank, shuffle=True, seed=cfg.seed, drop_last=False
    )
    sampler.set_epoch(epoch)
    loader = DataLoader(
        run.train_ds,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch, info.rank)),
    )
    run.model.train()
    # running sums stay on the device (float64: the same additions as Python floats), read once per epoch,
    # so a step does not wait for the device unless the progress bar shows them
    loss_t = torch.zeros((), dtype=torch.float64, device=device)
    correct_t = torch.zeros((), dtype=torch.int64, device=device)
    count = 0
    steps = 0
    lr = lr_at(cfg, state["step"], run.total_steps)
    bar = tqdm(total=len(loader), desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=not show, dynamic_ncols=True)
    for x, y, _, *extra in loader:
        check_stop()
        lr = lr_at(cfg, state["step"], run.total_steps)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        targets = extra[0].to(device, non_blocking=True) if extra else None
        logits = _step(run, x, y, lr, targets)
        state["step"] += 1
        steps += 1
        with torch.no_grad():
            loss_t += F.cross_entropy(logits, y, reduction="sum").double()
            correct_t += (logits.argmax(1) == y).sum()
            count += len(y)
        if show:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_t.item() / count:.4f}", acc=f"{correct_t.item() / count:.3f}", lr=f"{lr:.2e}")
    bar.close()
    check_stop()
    loss_sum, correct = float(loss_t.item()), float(correct_t.item())
    loss_sum, correct, count = all_reduce_sums([loss_sum, correct, count], info, device)
    return {"epoch": epoch, "train_loss": loss_sum / count, "train_acc": correct / count, "lr": lr, "steps": steps}


def _step(run: _Run, x: torch.Tensor, y: torch.Tensor, lr: float, targets: torch.Tensor | None = None) -> torch.Tensor:
    """One optimiser step at learning rate ``lr``; returns the batch's float32 logits (detached use only).

    ``targets`` ``(B, 5)`` (:func:`drcnet.data.torch_dataset.catalogue_targets`) adds the catalogue-head
    loss (:func:`drcnet.models.heads.heads_loss`) times ``heads_weight``.
    """
    for g in run.optimizer.param_groups:
        g["lr"] = lr
    out = run.ddp_model(x)
    extra_loss = None
    if isinstance(out, dict):
        logits = out["logits"].float()
        if targets is not None:
            extra_loss, _ = heads_loss(out, targets[:, 0].long(), targets[:, 1].long(), targets[:, 2:])
    else:
        logits = out.float()
    loss = F.cross_entropy(logits, y, weight=run.weight)
    if extra_loss is not None and run.cfg.heads_weight:
        loss = loss + run.cfg.heads_weight * extra_loss
    aux = getattr(run.model, "aux_logits", None)  # per-arm heads of the last forward pass (robust preset)
    if aux and run.cfg.aux_weight:
        loss = loss + run.cfg.aux_weight * sum(F.cross_entropy(a.float(), y, weight=run.weight) for a in aux)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if run.cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip)
    run.optimizer.step()
    return logits


def _end_epoch(run: _Run, epoch: int, row: dict[str, Any]) -> bool:
    """Early-stopping bookkeeping, history, best weights and checkpoint; True when patience ran out."""
    cfg, state = run.cfg, run.state
    val_loss = row["val_loss"]
    best = state["best_val_loss"]
    improved = bool(np.isfinite(val_loss) and (best is None or val_loss < best))
    if improved:
        state["best_val_loss"], state["best_epoch"], state["bad_epochs"] = val_loss, epoch, 0
    else:
        state["bad_epochs"] += 1
    state["epoch"] = epoch
    row = {k: row[k] for k in HISTORY_COLUMNS if k in row} | {"improved": int(improved)}
    spread = arm_feature_spread(run.model, run.val_ds, run.device) if run.info.rank == 0 else None
    if spread is not None:
        row["feat_std_blue"], row["feat_std_red"] = round(spread[0], 5), round(spread[1], 5)
        if len(spread) == 4:
            row["aux_acc_blue"], row["aux_acc_red"] = round(spread[2], 4), round(spread[3], 4)
    state["history"].append(row)
    stop = state["bad_epochs"] >= cfg.patience
    if stop:
        state["stop_reason"] = "early_stop"
    elif epoch >= cfg.epochs:
        state["stop_reason"] = "max_epochs"
    if run.info.rank == 0:
        if improved:
            run.save_best(epoch, val_loss)
        run.save_last()
        write_text_atomic(run.out / HISTORY, history_csv(state["history"]))
        run.write_status("running")
    _log(
        run.info,
        f"epoch {epoch:3d}/{cfg.epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.3f}  "
        f"val loss {val_loss:.4f} acc {row['val_acc']:.3f}  lr {row['lr']:.2e}  {row['time_s']:.1f}s"
        + (f"  feat std blue {spread[0]:.3f} red {spread[1]:.3f}" if spread else "")
        + (f"  arm-head acc blue {spread[2]:.3f} red {spread[3]:.3f}" if spread and len(spread) == 4 else "")
        + ("  *" if improved else ""),
    )
    return stop
