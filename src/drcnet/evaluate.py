"""Evaluation and prediction: the paper's metrics per class and per S/N bin, prediction tables.

* :func:`predict_arrays` - class probabilities for in-memory raw arrays (stripes or 1D spectra);
  whole-exposure prediction reuses it.
* :func:`predict_dataset` - probabilities for (a split of) a dataset file, streamed from disk.
* :func:`classification_metrics` - precision, recall, F1 per class, accuracy with its 95 % Wilson
  interval (scipy) and confusion matrix (scikit-learn, ``zero_division=0``).
* :func:`evaluate_predictions` - Table 3 (test objects with S/N_r > 30) and Tables 4-5 (every S/N bin).
* :func:`evaluate_run` / :func:`predict_run` - the ``drcnet evaluate`` / ``drcnet predict`` commands.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import binomtest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from torch.utils.data import DataLoader

from drcnet import CLASSES
from drcnet.data.normalize import prepare_input
from drcnet.data.schema import SNR_BIN_NAMES
from drcnet.data.torch_dataset import SpectraDataset, dataset_fingerprint
from drcnet.models.fastpath import configure_cpu
from drcnet.provenance import provenance, write_json_atomic, write_text_atomic

METRICS_JSON = "metrics.json"
PRED_COLUMNS = ("object_id", "label", "pred", "prob_F", "prob_G", "prob_K", "snr_r")


def _device_of(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _as_numpy(a: Any) -> np.ndarray | None:
    if a is None:
        return None
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


@torch.inference_mode()
def predict_arrays(model: torch.nn.Module, stripes: Any = None, flux1d: Any = None, sky1d: Any = None,
                   batch_size: int = 64) -> np.ndarray:
    """Class probabilities for raw, un-normalised inputs held in memory.

    Parameters
    ----------
    model
        A model from :mod:`drcnet.models` (e.g. from :func:`drcnet.train.load_model`); its
        ``input_kind`` says which arrays it needs.
    stripes
        ``(N, 2, 11, 3000)`` (or one ``(2, 11, 3000)``) raw stripes, for 2D models.
    flux1d, sky1d
        ``(N, 2, 3000)`` (or one ``(2, 3000)``) aperture spectra and sky, for 1D models
        (``sky1d`` may be ``None`` for sky-subtracted spectra).
    batch_size
        Objects per forward pass.

    Returns
    -------
    numpy.ndarray
        ``(N, 3)`` float32 softmax probabilities in :data:`drcnet.CLASSES` order.

    The same normalisation as in training is applied (:func:`drcnet.data.normalize.prepare_input`).
    """
    kind = getattr(model, "input_kind", "stripes")
    stripes, flux1d, sky1d = _as_numpy(stripes), _as_numpy(flux1d), _as_numpy(sky1d)
    main = stripes if kind == "stripes" else flux1d
    if main is None:
        need = "stripes=(N, 2, 11, 3000)" if kind == "stripes" else "flux1d=(N, 2, 3000) and sky1d"
        raise ValueError(f"{type(model).__name__} takes {kind!r} input: pass {need}")
    single = main.ndim == (3 if kind == "stripes" else 2)
    if single:
        main = main[None]
        sky1d = None if sky1d is None else sky1d[None]
    was_training = model.training
    model.eval()
    device = _device_of(model)
    out = np.empty((len(main), len(CLASSES)), dtype=np.float32)
    for start in range(0, len(main), batch_size):
        sl = slice(start, start + batch_size)
        if kind == "stripes":
            x = prepare_input(kind, stripes=main[sl])
        else:
            x = prepare_input(kind, flux1d=main[sl], sky1d=None if sky1d is None else sky1d[sl])
        logits = model(torch.from_numpy(x).to(device))
        out[sl] = torch.softmax(logits.float(), dim=1).cpu().numpy()
    model.train(was_training)
    return out[0] if single else out


@torch.inference_mode()
def predict_dataset(model: torch.nn.Module, data: str | Path, split: str | None = None, batch_size: int = 64,
                    workers: int = 1, progress: bool = False) -> dict[str, Any]:
    """Probabilities for every object of ``split`` (``None``: all) of a dataset file, read lazily.

    Returns a dict of arrays: ``object_id`` (list), ``label`` (-1 unknown), ``snr_r``, ``snr_bin``,
    ``prob`` ``(N, 3)`` and ``pred``.
    """
    from tqdm.auto import tqdm

    kind = getattr(model, "input_kind", "stripes")
    ds = SpectraDataset(data, kind, split)
    model.eval()
    device = _device_of(model)
    prob = np.empty((len(ds), len(CLASSES)), dtype=np.float32)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers if len(ds) > batch_size else 0,
                        pin_memory=device.type == "cuda")
    for x, _, idx in tqdm(loader, desc="predict", disable=not progress, leave=False):
        logits = model(x.to(device, non_blocking=True))
        prob[idx.numpy()] = torch.softmax(logits.float(), dim=1).cpu().numpy()
    return {"object_id": ds.object_id, "label": ds.labels.astype(np.int64), "snr_r": ds.snr_r,
            "snr_bin": ds.snr_bin.astype(np.int64), "prob": prob, "pred": prob.argmax(axis=1) if len(ds) else
            np.zeros(0, np.int64)}


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def accuracy_interval(n_correct: int, n: int, confidence: float = 0.95) -> list[float] | None:
    """Wilson score interval of an accuracy ``n_correct / n`` (``None`` when ``n == 0``).

    The test set's own sampling uncertainty: on 605 objects at 90 % it is about +-2.4 points, so
    differences between models of a few points in one bin are not significant on their own.
    """
    if n == 0:
        return None
    ci = binomtest(int(n_correct), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return [float(ci.low), float(ci.high)]


def classification_metrics(y_true: Any, y_pred: Any, n_classes: int = len(CLASSES)) -> dict[str, Any]:
    """Precision, recall, F1 and support per class, accuracy, its 95 % interval and the confusion matrix.

    Objects with ``y_true < 0`` (unknown) are left out. With no objects, metrics are ``None``.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    keep = y_true >= 0
    y_true, y_pred = y_true[keep], y_pred[keep]
    labels = list(range(n_classes))
    names = list(CLASSES[:n_classes])
    if len(y_true) == 0:
        return {"n": 0, "accuracy": None, "accuracy_ci95": None, "per_class": {c: None for c in names},
                "confusion_matrix": [[0] * n_classes for _ in range(n_classes)], "macro_f1": None}
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    per = {names[i]: {"precision": _num(p[i]), "recall": _num(r[i]), "f1": _num(f[i]), "support": int(s[i])}
           for i in range(n_classes)}
    n_correct = int((y_true == y_pred).sum())
    return {"n": int(len(y_true)), "accuracy": _num(n_correct / len(y_true)),
            "accuracy_ci95": accuracy_interval(n_correct, len(y_true)), "per_class": per,
            "confusion_matrix": cm.astype(int).tolist(), "macro_f1": _num(np.mean(f))}


def evaluate_predictions(pred: dict[str, Any]) -> dict[str, Any]:
    """Paper metrics from :func:`predict_dataset` output.

    ``table3``: the objects with S/N_r > 30 (bin 0); ``bins``: one entry per S/N bin name
    (``>30``, ``20-30``, ``10-20``, ``<10``; Tables 4-5) with accuracy, per-class metrics, confusion
    matrix and counts; ``all``: every labelled object; ``counts``: objects per bin (labelled or not).
    """
    label = np.asarray(pred["label"])
    yhat = np.asarray(pred["pred"])
    sbin = np.asarray(pred["snr_bin"])
    bins = {}
    counts = {}
    for b, name in enumerate(SNR_BIN_NAMES):
        m = sbin == b
        bins[name] = classification_metrics(label[m], yhat[m])
        counts[name] = {"objects": int(m.sum()), "labelled": int((m & (label >= 0)).sum())}
    return {"table3": {"snr_bin": SNR_BIN_NAMES[0], **bins[SNR_BIN_NAMES[0]]}, "bins": bins,
            "all": classification_metrics(label, yhat), "counts": counts}


def evaluate_run(run_dir: str | Path, data: str | Path, split: str = "test", out: str | Path | None = None,
                 which: str = "best", batch_size: int = 64, workers: int = 1, fast: bool = True,
                 write: bool = True) -> dict[str, Any]:
    """Evaluate a run folder's model on ``split`` of ``data``; write ``metrics.json`` and confusion PNG.

    Parameters
    ----------
    run_dir
        Folder written by ``drcnet train``.
    data
        Dataset file.
    split
        Split to evaluate (the paper: ``test``, which holds every S/N bin).
    out
        Output folder (default: the run folder).
    which
        ``best`` or ``last`` weights.
    write
        Write the files (``False``: only return the metrics).
    """
    from drcnet.report.figures import plot_confusions
    from drcnet.train.run import load_model

    if fast:
        configure_cpu()
    model, info = load_model(run_dir, which=which, fast=fast)
    pred = predict_dataset(model, data, split, batch_size=batch_size, workers=workers)
    metrics = {
        "run": str(Path(run_dir).resolve()), "model": info.model_name, "weights": which, "split": split,
        "classes": list(CLASSES), "snr_bins": list(SNR_BIN_NAMES), "data": dataset_fingerprint(data),
        **evaluate_predictions(pred),
        "provenance": provenance({"run": str(run_dir), "data": str(data), "split": split, "weights": which},
                                 info.meta.get("seed")),
    }
    if write:
        out_dir = Path(out) if out is not None else Path(run_dir)
        write_json_atomic(out_dir / METRICS_JSON, metrics)
        panels = {f"S/N {k} (n={v['n']})": (v["confusion_matrix"] if v["n"] else None)
                  for k, v in metrics["bins"].items()}
        plot_confusions(panels, out_dir / "confusion.png", suptitle=f"{info.model_name}: {split} split")
    return metrics


def predictions_csv(pred: dict[str, Any]) -> str:
    """CSV text with :data:`PRED_COLUMNS`; label and pred as class letters, label empty when unknown."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(PRED_COLUMNS)
    for i, oid in enumerate(pred["object_id"]):
        lab = int(pred["label"][i])
        p = pred["prob"][i]
        w.writerow([oid, CLASSES[lab] if lab >= 0 else "", CLASSES[int(pred["pred"][i])],
                    f"{p[0]:.6f}", f"{p[1]:.6f}", f"{p[2]:.6f}", f"{float(pred['snr_r'][i]):.3f}"])
    return buf.getvalue()


def predict_run(run_dir: str | Path, data: str | Path, out: str | Path, split: str | None = None,
                which: str = "best", batch_size: int = 64, workers: int = 1, fast: bool = True) -> Path:
    """Write a prediction table (:data:`PRED_COLUMNS`) for ``split`` (``None``: all objects) of ``data``."""
    from drcnet.train.run import load_model

    if fast:
        configure_cpu()
    model, _ = load_model(run_dir, which=which, fast=fast)
    pred = predict_dataset(model, data, split, batch_size=batch_size, workers=workers)
    return write_text_atomic(out, predictions_csv(pred))
