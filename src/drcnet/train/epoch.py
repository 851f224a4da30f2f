"""Per-epoch numbers of the training loop: validation loss/accuracy and the history table."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from drcnet.data.torch_dataset import SpectraDataset
from drcnet.train.distributed import DistInfo, all_reduce_sums
from drcnet.train.stop import check_stop

HISTORY_COLUMNS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "steps",
    "time_s",
    "improved",
    "feat_std_blue",
    "feat_std_red",
    "aux_acc_blue",
    "aux_acc_red",
)
FEATURE_SPREAD_OBJECTS = 256
"""Validation objects used for the per-arm feature spread logged every epoch."""


@torch.inference_mode()
def arm_feature_spread(
    model: torch.nn.Module, ds: SpectraDataset, device: torch.device, n: int = FEATURE_SPREAD_OBJECTS
) -> list[float] | None:
    """Per-arm spread of a two-arm model's features on the first ``n`` validation objects.

    A collapsing arm shows here while it happens: its feature spread over objects falls towards 0
    (:meth:`drcnet.models.DRCNet.feature_spread`). Models with per-arm heads (``aux_heads``) also
    give each head's accuracy, the measure of how much class information each arm carries.

    Returns
    -------
    list of float or None
        ``[std_blue, std_red]`` (plus ``[acc_blue, acc_red]`` with per-arm heads); ``None`` for a
        model without two arms.
    """
    if not hasattr(model, "feature_spread") or len(ds) == 0:
        return None
    was = model.training
    model.eval()
    # one batched read (a single HDF5 slice, one vectorised Z-score) instead of n per-object reads
    k = min(n, len(ds))
    x = torch.from_numpy(ds.read_batch(slice(0, k))[0]).to(device)
    y = torch.from_numpy(np.asarray(ds.labels[:k], dtype=np.int64)).to(device)
    out = model.feature_spread(x)
    aux = getattr(model, "aux", None)
    if aux is not None:
        f = model.features(x)
        out += [float((head(f[:, a]).argmax(1) == y).float().mean()) for a, head in enumerate(aux)]
    model.train(was)
    return out


@torch.inference_mode()
def evaluate_loss(
    model: torch.nn.Module,
    ds: SpectraDataset,
    info: DistInfo,
    device: torch.device,
    batch_size: int = 64,
    workers: int = 0,
) -> tuple[float, float, int]:
    """Mean cross-entropy and accuracy of ``model`` on ``ds`` (rows split over ranks, sums all-reduced)."""
    was_training = model.training
    model.eval()
    part = Subset(ds, list(range(info.rank, len(ds), info.world))) if info.is_dist else ds
    loader = DataLoader(part, batch_size=batch_size, shuffle=False, num_workers=workers)
    loss_sum = correct = count = 0.0
    for x, y, *_ in loader:
        check_stop()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        count += len(y)
    loss_sum, correct, count = all_reduce_sums([loss_sum, correct, count], info, device)
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
