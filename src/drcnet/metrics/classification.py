"""The paper's metrics: per class, per S/N_r bin (Table 3, Tables 4-5), with accuracy intervals.

* :func:`classification_metrics` - precision, recall, F1 per class, accuracy with its 95 % Wilson
  interval (scipy) and confusion matrix (scikit-learn, ``zero_division=0``).
* :func:`source_clustered_accuracy` - accuracy with an interval counted by source spectrum (a real star
  rendered several times is one draw, not several).
* :func:`evaluate_predictions` - Table 3 (test objects with S/N_r > 30) and Tables 4-5 (every S/N bin).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from drcnet.conventions import CLASSES, SNR_BIN_NAMES, class_names


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


MIN_SOURCES = 5
"""Fewest clusters (source spectra) for which :func:`clustered_accuracy_interval` gives an interval."""
BOOT_CHUNK = 100
"""Bootstrap resamples drawn at once (memory ~ ``BOOT_CHUNK`` x clusters floats)."""


def clustered_accuracy_interval(
    correct: Any, cluster: Any, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> list[float] | None:
    """Bootstrap interval of an accuracy whose objects come in clusters (renders of one star).

    An evaluation file renders each real star several times (different S/N, fiber, sky); those renders
    are not independent, so the Wilson interval of :func:`accuracy_interval`, which counts renders, is
    too narrow when a few stars decide many renders. This resamples whole clusters with replacement
    (the cluster bootstrap) and returns the percentile interval of ``sum(correct) / n`` over the
    resamples. With fewer than :data:`MIN_SOURCES` clusters there is no interval; where every resample
    gives the same accuracy (all right, or all wrong), the percentile interval has no width and the
    Wilson interval over the clusters (each cluster one draw) is returned instead.

    Parameters
    ----------
    correct
        ``(N,)`` 1 where the object was classified right, 0 where not.
    cluster
        ``(N,)`` cluster of each object (e.g. ``template_id``: the source spectrum).
    confidence
        Interval level.
    n_boot
        Bootstrap resamples.
    seed
        Seed of the resampling (the interval is reproducible).

    Returns
    -------
    list of float or None
        ``[low, high]``; None when there are fewer than :data:`MIN_SOURCES` clusters.
    """
    ok = np.asarray(correct, dtype=np.float64)
    _, inverse = np.unique(np.asarray(cluster, dtype=object).astype(str), return_inverse=True)
    hits = np.bincount(inverse, weights=ok)
    sizes = np.bincount(inverse).astype(np.float64)
    m = len(sizes)
    if m < MIN_SOURCES:
        return None
    rng = np.random.default_rng(seed)
    acc = np.empty(n_boot)
    for start in range(0, n_boot, BOOT_CHUNK):  # resample counts per cluster, a chunk at a time (memory ~ chunk x m)
        k = min(BOOT_CHUNK, n_boot - start)
        counts = rng.multinomial(m, np.full(m, 1.0 / m), size=k).astype(np.float64)
        acc[start : start + k] = (counts @ hits) / (counts @ sizes)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = float(np.quantile(acc, alpha)), float(np.quantile(acc, 1.0 - alpha))
    if hi == lo:
        return accuracy_interval(int(round(lo * m)), m, confidence)
    return [lo, hi]


def source_clustered_accuracy(label: Any, pred: Any, snr_bin: Any, source: Any) -> dict[str, Any]:
    """Accuracy with its interval counted by source spectrum, overall and per S/N_r bin.

    Parameters
    ----------
    label, pred, snr_bin
        ``(N,)`` true class (-1 unknown), predicted class (-1 not classified), S/N_r bin index; objects
        without a label or an answer are left out.
    source
        ``(N,)`` source spectrum of each object (``template_id``).

    Returns
    -------
    dict
        ``{"all": cell, "bins": {bin name: cell}}``, ``cell = {"n", "n_sources", "accuracy",
        "accuracy_ci95_by_source"}`` (:func:`clustered_accuracy_interval`).
    """
    label = np.asarray(label, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    sbin = np.asarray(snr_bin, dtype=np.int64)
    src = np.asarray(source, dtype=object)
    keep = (label >= 0) & (pred >= 0)

    def cell(m: np.ndarray) -> dict[str, Any]:
        right = (label[m] == pred[m]).astype(np.float64)
        n = int(m.sum())
        return {
            "n": n,
            "n_sources": len(set(src[m].tolist())),
            "accuracy": _num(right.mean()) if n else None,
            "accuracy_ci95_by_source": clustered_accuracy_interval(right, src[m]),
        }

    return _by_bin(cell, keep, sbin)


def classification_metrics(y_true: Any, y_pred: Any, n_classes: int = len(CLASSES)) -> dict[str, Any]:
    """Precision, recall, F1 and support per class, accuracy, its 95 % interval and the confusion matrix.

    ``n_classes`` is 3 (F/G/K) or 4 (F/G/K/other). Objects with ``y_true < 0`` (unknown) are left out.
    With no objects, metrics are ``None``.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    keep = y_true >= 0
    y_true, y_pred = y_true[keep], y_pred[keep]
    labels = list(range(n_classes))
    names = list(class_names(n_classes))
    if len(y_true) == 0:
        return {
            "n": 0,
            "accuracy": None,
            "accuracy_ci95": None,
            "per_class": {c: None for c in names},
            "confusion_matrix": [[0] * n_classes for _ in range(n_classes)],
            "macro_f1": None,
        }
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    per = {
        names[i]: {"precision": _num(p[i]), "recall": _num(r[i]), "f1": _num(f[i]), "support": int(s[i])}
        for i in range(n_classes)
    }
    n_correct = int((y_true == y_pred).sum())
    return {
        "n": int(len(y_true)),
        "accuracy": _num(n_correct / len(y_true)),
        "accuracy_ci95": accuracy_interval(n_correct, len(y_true)),
        "per_class": per,
        "confusion_matrix": cm.astype(int).tolist(),
        "macro_f1": _num(np.mean(f)),
    }


def evaluate_predictions(pred: dict[str, Any]) -> dict[str, Any]:
    """Paper metrics from :func:`drcnet.inference.engine.predict_dataset` output.

    ``table3``: the objects with S/N_r > 30 (bin 0); ``bins``: one entry per S/N bin name
    (``>30``, ``20-30``, ``10-20``, ``<10``; Tables 4-5) with accuracy, per-class metrics, confusion
    matrix and counts; ``all``: every labelled object; ``counts``: objects per bin (labelled or not,
    and how many were not classified because their input holds NaN/inf pixels). Objects that were
    not classified (``pred`` -1) are left out of every metric and counted in ``n_bad_input``.

    The classes are the model's (``prob`` ``(N, C)``; 3 when ``prob`` is absent): for a three-class model
    objects labelled ``other`` are left out of these metrics (exactly the F/G/K accuracy as before; what
    it does with ``other`` objects is in :func:`catalogue_metrics`), for a four-class model they are a class.
    """
    n_classes = int(np.shape(pred["prob"])[1]) if "prob" in pred else len(CLASSES)
    label = np.asarray(pred["label"])
    label = np.where(label < n_classes, label, -1)
    yhat = np.asarray(pred["pred"])
    sbin = np.asarray(pred["snr_bin"])
    ok = yhat >= 0
    bins = {}
    counts = {}
    for b, name in enumerate(SNR_BIN_NAMES):
        m = sbin == b
        bins[name] = classification_metrics(label[m & ok], yhat[m & ok], n_classes)
        counts[name] = {
            "objects": int(m.sum()),
            "labelled": int((m & (label >= 0)).sum()),
            "bad_input": int((m & ~ok).sum()),
        }
    return {
        "table3": {"snr_bin": SNR_BIN_NAMES[0], **bins[SNR_BIN_NAMES[0]]},
        "bins": bins,
        "all": classification_metrics(label[ok], yhat[ok], n_classes),
        "counts": counts,
        "n_bad_input": int((~ok).sum()),
    }


def group_metrics(label: Any, pred: Any, snr_bin: Any, groups: dict[str, Sequence[str]]) -> dict[str, Any]:
    """Accuracy per group value, overall and per S/N_r bin (where a model fails: source, luminosity class, ...).

    Parameters
    ----------
    label, pred, snr_bin
        ``(N,)`` true class (-1 unknown, left out), predicted class (-1 not classified, left out)
        and S/N_r bin index.
    groups
        Group name -> ``(N,)`` group value of each object (e.g. from :func:`drcnet.data.groups.object_groups`).

    Returns
    -------
    dict
        ``{group: {value: {"n", "accuracy", "accuracy_ci95", "bins": {bin name: {"n", "accuracy",
        "accuracy_ci95"}}}}}``; accuracies are ``None`` where a cell has no labelled object.
    """
    label = np.asarray(label, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    sbin = np.asarray(snr_bin, dtype=np.int64)
    out: dict[str, Any] = {}
    for name, values in groups.items():
        values = np.asarray(values, dtype=object)
        table: dict[str, Any] = {}
        for value in sorted(set(values.tolist())):
            m = (values == value) & (label >= 0) & (pred >= 0)
            cell = _accuracy_cell(label[m], pred[m])
            cell["bins"] = {
                b: _accuracy_cell(label[m & (sbin == k)], pred[m & (sbin == k)]) for k, b in enumerate(SNR_BIN_NAMES)
            }
            table[str(value)] = cell
        out[name] = table
    return out


def _accuracy_cell(y: np.ndarray, yhat: np.ndarray) -> dict[str, Any]:
    n_correct = int((y == yhat).sum())
    return {
        "n": int(len(y)),
        "accuracy": _num(n_correct / len(y)) if len(y) else None,
        "accuracy_ci95": accuracy_interval(n_correct, len(y)),
    }


def _by_bin(cell: Any, mask: np.ndarray, sbin: np.ndarray) -> dict[str, Any]:
    """``{"all": cell(mask), "bins": {bin name: cell(mask & in bin)}}``."""
    return {"all": cell(mask), "bins": {name: cell(mask & (sbin == k)) for k, name in enumerate(SNR_BIN_NAMES)}}
