"""The training loop: presets, early stopping, checkpoints, exact resume, DDP under ``torchrun``.

Determinism and resume
    The data order of epoch ``e`` is ``DistributedSampler(seed=seed).set_epoch(e)`` (a permutation
    drawn from a generator seeded with ``seed + e``), and the global torch RNG (dropout) is re-seeded
    at the start of every epoch from ``(seed, e, rank)``. Everything an epoch does is thus a function
    of the seed, the epoch and the weights/optimiser state at its start, which the last checkpoint
    holds; a run killed after epoch ``k`` and resumed gives bit-identical weights and history to an
    uninterrupted run on the same machine (CPU). RNG states are stored in the checkpoint as well.

Distributed data parallel
    Under ``torchrun`` (``WORLD_SIZE > 1``) every process trains a ``DistributedDataParallel``
    replica (backend ``gloo`` on CPU, ``nccl`` on CUDA) on its ``DistributedSampler`` shard. Each
    shard has ``ceil(N / world)`` objects (the sampler pads by repeating a few), so an epoch is

        steps_per_epoch = ceil(ceil(N / world) / batch) = ceil(N / (world * batch))

    optimiser steps in every process, with an effective batch of ``world * batch``. ``--batch-size``
    is per process. Validation is split by rows ``rank::world`` (no padding) and the loss/accuracy
    sums are all-reduced, so every rank takes the same early-stopping decision; only rank 0 writes.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from drcnet import CLASSES
from drcnet.data.torch_dataset import SpectraDataset, dataset_fingerprint
from drcnet.models import create_model, model_input_kind
from drcnet.models.fastpath import configure_cpu, set_fast
from drcnet.provenance import provenance, write_json_atomic, write_text_atomic
from drcnet.train.checkpoint import (BEST, FORMAT, HISTORY, LAST, RUN_JSON, load_checkpoint, read_run_json,
                                     save_checkpoint, save_weights)
from drcnet.train.config import TrainConfig, lr_at

HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "steps", "time_s", "improved")


@dataclass
class DistInfo:
    """Process-group facts (world 1 when not under torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    initialised_here: bool = False

    @property
    def is_dist(self) -> bool:
        return self.world > 1


def steps_per_epoch(n_objects: int, world: int, batch_size: int) -> int:
    """Optimiser steps per epoch and process: ``ceil(N / (world * batch))`` (see module docstring)."""
    return math.ceil(math.ceil(n_objects / world) / batch_size)


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA (this process's local GPU) if available, else CPU."""
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
        return torch.device(pref if ":" in pref else f"cuda:{local_rank}")
    return torch.device("cpu")


def init_distributed(device_pref: str) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (env ``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    device = resolve_device(device_pref, local_rank)
    here = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
        here = True
    return DistInfo(rank, world, local_rank, local_world, here)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + int(rank) * 104_729) % (2**63 - 1)


def _all_reduce(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    if not info.is_dist:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def build_optimizer(cfg: TrainConfig, params: Any) -> torch.optim.Optimizer:
    """The optimiser named in ``cfg`` (AdaGrad for the paper preset)."""
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


@torch.inference_mode()
def evaluate_loss(model: torch.nn.Module, ds: SpectraDataset, info: DistInfo, device: torch.device,
                  batch_size: int = 64, workers: int = 0) -> tuple[float, float, int]:
    """Mean cross-entropy and accuracy of ``model`` on ``ds`` (rows split over ranks, sums all-reduced)."""
    was_training = model.training
    model.eval()
    part = Subset(ds, list(range(info.rank, len(ds), info.world))) if info.is_dist else ds
    loader = DataLoader(part, batch_size=batch_size, shuffle=False, num_workers=workers)
    loss_sum = correct = count = 0.0
    for x, y, _ in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        count += len(y)
    loss_sum, correct, count = _all_reduce([loss_sum, correct, count], info, device)
    model.train(was_training)
    if count == 0:
        return float("nan"), float("nan"), 0
    return loss_sum / count, correct / count, int(count)


def history_csv(rows: list[dict[str, Any]]) -> str:
    """The history rows as CSV text."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k) for k in HISTORY_COLUMNS})
    return buf.getvalue()


def _class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    counts = np.bincount(labels[labels >= 0], minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def _log(info: DistInfo, msg: str) -> None:
    if info.rank == 0:
        tqdm.write(msg)


def train(config: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train ``config.model`` on ``config.data`` into ``config.out``; return the final ``run.json`` dict.

    With ``resume=True`` and a ``last.safetensors`` in the run folder, continue that run from its
    last finished epoch (its saved config is used; ``epochs``, ``patience``, ``device``, ``workers``,
    ``threads``, ``progress`` and ``stop_after_epochs`` may be changed). Works under ``torchrun``.
    """
    info = init_distributed(config.device)
    try:
        return _train(config, resume, info)
    finally:
        if info.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


_RUNTIME_KEYS = ("device", "workers", "threads", "progress", "stop_after_epochs")


def _train(config: TrainConfig, resume: bool, info: DistInfo) -> dict[str, Any]:
    out = Path(config.out)
    rank0 = info.rank == 0
    last_path, best_path = out / LAST, out / BEST
    fingerprint = dataset_fingerprint(config.data)

    resuming = bool(resume and last_path.is_file())
    if resuming:
        saved = read_run_json(out)
        base = TrainConfig.from_dict(saved["train_config"])
        if "grad_clip" not in saved["train_config"]:
            base.grad_clip = 0.0  # run folders from before the option: they trained without clipping
        for key in _RUNTIME_KEYS + ("epochs", "patience"):
            value = getattr(config, key)
            if key in ("epochs", "patience") and value is None:
                continue
            setattr(base, key, value)
        base.data, base.out = str(config.data), str(config.out)
        if saved["data"]["sha256"] != fingerprint["sha256"]:
            raise ValueError(
                f"cannot resume {out}: it was trained on a different dataset (fingerprint "
                f"{saved['data']['sha256'][:12]} from {saved['data']['path']}, now {fingerprint['sha256'][:12]} "
                f"from {config.data}); train into a new --out instead")
        if int(saved.get("world_size", 1)) != info.world:
            raise ValueError(f"cannot resume {out}: it ran with {saved.get('world_size')} processes, now {info.world}; "
                             "the data order per process would change")
        cfg = base.resolved()
    else:
        if (out / RUN_JSON).is_file() and last_path.is_file():
            raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        cfg = config.resolved()

    device = resolve_device(cfg.device, info.local_rank)
    threads = cfg.threads
    if threads is None and info.local_world > 1 and device.type == "cpu":
        threads = max(1, (os.cpu_count() or 1) // info.local_world)
    if threads:
        torch.set_num_threads(int(threads))
    cpu_settings = configure_cpu() if cfg.fast else {"threads": torch.get_num_threads(), "mallopt": False}

    kind = model_input_kind(cfg.model)
    train_ds = SpectraDataset(cfg.data, kind, "train", labelled_only=True)
    val_ds = SpectraDataset(cfg.data, kind, "val", labelled_only=True)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise ValueError(f"{cfg.data} needs labelled objects in both the train ({len(train_ds)}) and val "
                         f"({len(val_ds)}) splits")

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    model = create_model(cfg.model, **cfg.model_config)
    set_fast(model, cfg.fast)
    model.to(device)
    optimizer = build_optimizer(cfg, model.parameters())
    weight = _class_weights(train_ds.labels, len(CLASSES)).to(device) if cfg.class_weights else None

    n_steps = steps_per_epoch(len(train_ds), info.world, cfg.batch_size)
    total_steps = n_steps * cfg.epochs
    state: dict[str, Any] = {"epoch": 0, "step": 0, "best_val_loss": None, "best_epoch": 0, "bad_epochs": 0,
                             "history": [], "stop_reason": None}
    if resuming:
        state = load_checkpoint(last_path, model, optimizer)
        _log(info, f"resuming {out} after epoch {state['epoch']} (step {state['step']})")

    ddp_model: torch.nn.Module = model
    if info.is_dist:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    run_meta: dict[str, Any] = {
        "format": FORMAT, "model": cfg.model, "model_config": model.config_dict(), "input_kind": kind,
        "n_parameters": model.num_parameters(), "train_config": cfg.to_dict(), "data": fingerprint,
        "seed": cfg.seed, "world_size": info.world, "steps_per_epoch": n_steps,
        "n_train": len(train_ds), "n_val": len(val_ds), "device": str(device), "cpu_settings": cpu_settings,
        "provenance": provenance(cfg.to_dict(), cfg.seed),
    }

    def write_run(status: str) -> dict[str, Any]:
        run_meta.update({"status": status, "epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
                         "best_val_loss": state["best_val_loss"], "stop_reason": state["stop_reason"]})
        if rank0:
            write_json_atomic(out / RUN_JSON, run_meta)
        return run_meta

    if state["stop_reason"] == "early_stop" or state["epoch"] >= cfg.epochs:
        _log(info, f"{out}: run already finished ({state['stop_reason'] or 'max_epochs'} after epoch {state['epoch']})")
        return write_run("completed")
    state["stop_reason"] = None
    write_run("running")

    show = cfg.progress and rank0
    epoch_bar = tqdm(total=cfg.epochs, initial=state["epoch"], desc=f"{cfg.model} epochs", unit="ep",
                     disable=not show, dynamic_ncols=True)
    epochs_here = 0
    status = "completed"
    try:
        for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
            t0 = time.perf_counter()
            torch.manual_seed(_epoch_seed(cfg.seed, epoch, info.rank))
            sampler = DistributedSampler(train_ds, num_replicas=info.world, rank=info.rank, shuffle=True,
                                         seed=cfg.seed, drop_last=False)
            sampler.set_epoch(epoch)
            loader = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                                pin_memory=device.type == "cuda",
                                generator=torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch, info.rank)))
            model.train()
            loss_sum = correct = count = 0.0
            steps = 0
            lr = lr_at(cfg, state["step"], total_steps)
            bar = tqdm(total=len(loader), desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=not show,
                       dynamic_ncols=True)
            for x, y, _ in loader:
                lr = lr_at(cfg, state["step"], total_steps)
                for g in optimizer.param_groups:
                    g["lr"] = lr
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                logits = ddp_model(x)
                loss = F.cross_entropy(logits.float(), y, weight=weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                state["step"] += 1
                steps += 1
                with torch.no_grad():
                    loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
                    correct += (logits.argmax(1) == y).sum().item()
                    count += len(y)
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / count:.4f}", acc=f"{correct / count:.3f}", lr=f"{lr:.2e}")
            bar.close()
            loss_sum, correct, count = _all_reduce([loss_sum, correct, count], info, device)
            val_loss, val_acc, _ = evaluate_loss(model, val_ds, info, device, batch_size=max(64, cfg.batch_size))
            best = state["best_val_loss"]
            improved = bool(np.isfinite(val_loss) and (best is None or val_loss < best))
            if improved:
                state["best_val_loss"], state["best_epoch"], state["bad_epochs"] = val_loss, epoch, 0
            else:
                state["bad_epochs"] += 1
            state["epoch"] = epoch
            row = {"epoch": epoch, "train_loss": loss_sum / count, "train_acc": correct / count,
                   "val_loss": val_loss, "val_acc": val_acc, "lr": lr, "steps": steps,
                   "time_s": round(time.perf_counter() - t0, 4), "improved": int(improved)}
            state["history"].append(row)
            stop = state["bad_epochs"] >= cfg.patience
            if stop:
                state["stop_reason"] = "early_stop"
            elif epoch >= cfg.epochs:
                state["stop_reason"] = "max_epochs"
            if rank0:
                if improved:
                    save_weights(best_path, model, {"model": cfg.model, "model_config": model.config_dict(),
                                                    "epoch": epoch, "val_loss": val_loss})
                save_checkpoint(last_path, model, optimizer, state)
                write_text_atomic(out / HISTORY, history_csv(state["history"]))
                write_run("running")
            epoch_bar.update(1)
            epoch_bar.set_postfix(train_loss=f"{row['train_loss']:.4f}", val_loss=f"{val_loss:.4f}",
                                  val_acc=f"{val_acc:.3f}")
            _log(info, f"epoch {epoch:3d}/{cfg.epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.3f}  "
                       f"val loss {val_loss:.4f} acc {val_acc:.3f}  lr {lr:.2e}  {row['time_s']:.1f}s"
                       + ("  *" if improved else ""))
            epochs_here += 1
            if stop:
                _log(info, f"early stop: no lower validation loss for {cfg.patience} epochs (best epoch "
                           f"{state['best_epoch']})")
                break
            if cfg.stop_after_epochs and epochs_here >= cfg.stop_after_epochs and epoch < cfg.epochs:
                status = "interrupted"
                break
    except BaseException:
        epoch_bar.close()
        write_run("interrupted")
        raise
    epoch_bar.close()
    if rank0 and not best_path.is_file():
        # validation loss never finite: keep the last weights as "best" so the run is usable
        save_weights(best_path, model, {"model": cfg.model, "model_config": model.config_dict(),
                                        "epoch": state["epoch"], "val_loss": None})
    return write_run(status)
