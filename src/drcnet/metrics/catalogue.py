"""What a survey catalogue needs beyond the class (issue 10), overall and per S/N_r bin.

* :func:`catalogue_metrics` - subclass accuracy (exact, within one grid step), Teff/log g/[Fe/H] bias and
  scatter, rejection of ``other`` objects, expected calibration error before/after calibration, OOD share.
* :func:`subclass_accuracy`, :func:`param_errors`, :func:`rejection_metrics`, :func:`calibration_metrics`,
  :func:`ood_metrics` - its parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from drcnet.conventions import CLASSES, STELLAR_PARAMS
from drcnet.metrics.classification import _accuracy_cell, _by_bin, _num, accuracy_interval

OTHER_FAMILIES: tuple[str, ...] = ("A", "M", "O/B", "GALAXY", "QSO", "SKY")
"""Families of ``other`` objects the rejection is reported for (from the file's ``subclass`` column);
anything else (white dwarfs, carbon stars, ...) is family ``"rest"``."""
MAD_TO_SIGMA = 1.4826
"""Median absolute deviation -> standard deviation of a Gaussian."""


def other_family(subclass: str) -> str:
    """Family of an ``other`` object from its subclass string.

    ``"A7"`` -> ``"A"``, ``"M2"`` -> ``"M"``, ``"O9.5"`` / ``"B7"`` -> ``"O/B"``, ``"GALAXY"``, ``"QSO"`` and
    ``"SKY"`` as such (case-insensitive, spaces ignored); anything else -> ``"rest"``.
    """
    s = subclass.strip().upper()
    for word in ("GALAXY", "QSO", "SKY"):
        if s.startswith(word):
            return word
    if s[:1] in ("O", "B") and s[1:2].isdigit():
        return "O/B"
    if s[:1] in ("A", "M") and (len(s) == 1 or s[1:2].isdigit()):
        return s[:1]
    return "rest"


def _share(k: int, n: int) -> dict[str, Any]:
    return {"n": int(n), "k": int(k), "share": _num(k / n) if n else None, "share_ci95": accuracy_interval(k, n)}


def subclass_accuracy(true_idx: Any, pred_idx: Any) -> dict[str, Any]:
    """Subclass accuracy on LAMOST's grid: exact and within one grid step.

    Parameters
    ----------
    true_idx, pred_idx
        ``(N,)`` indices on :data:`~drcnet.conventions.SUBCLASSES` (-1: unknown / not predicted, left out).

    Returns
    -------
    dict
        ``n``, ``exact`` and ``within_one`` (shares, None when ``n`` is 0) and their counts
        ``n_exact``, ``n_within_one``.
    """
    t = np.asarray(true_idx, dtype=np.int64)
    p = np.asarray(pred_idx, dtype=np.int64)
    keep = (t >= 0) & (p >= 0)
    d = np.abs(t[keep] - p[keep])
    n, n_exact, n_one = int(keep.sum()), int((d == 0).sum()), int((d <= 1).sum())
    return {
        "n": n,
        "exact": _num(n_exact / n) if n else None,
        "within_one": _num(n_one / n) if n else None,
        "n_exact": n_exact,
        "n_within_one": n_one,
    }


def param_errors(pred: Any, true: Any, sigma: Any = None) -> dict[str, Any]:
    """Bias and scatter of predicted against true values (pairs with both finite).

    Parameters
    ----------
    pred, true
        ``(N,)`` predicted and true values (same unit: K for Teff, dex for log g and [Fe/H]).
    sigma
        ``(N,)`` predicted 1-sigma uncertainties (optional).

    Returns
    -------
    dict
        ``n``; ``bias`` = median(pred - true); ``std`` = standard deviation of pred - true;
        ``robust_std`` = 1.4826 x median absolute deviation of pred - true (n >= 2); with ``sigma`` also
        ``median_sigma`` and ``pull_std`` = robust scatter of (pred - true) / sigma (1 when the
        uncertainties are right). None where ``n`` is 0 (``std`` needs 2).
    """
    d = np.asarray(pred, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    keep = np.isfinite(d)
    if sigma is not None:
        sig = np.asarray(sigma, dtype=np.float64)
        keep &= np.isfinite(sig) & (sig > 0)
    d = d[keep]
    n = len(d)
    out: dict[str, Any] = {
        "n": int(n),
        "bias": _num(np.median(d)) if n else None,
        "std": _num(np.std(d, ddof=1)) if n > 1 else None,
        "robust_std": _num(MAD_TO_SIGMA * np.median(np.abs(d - np.median(d)))) if n > 1 else None,
    }
    if sigma is not None:
        z = d / sig[keep]
        out["median_sigma"] = _num(np.median(sig[keep])) if n else None
        out["pull_std"] = _num(MAD_TO_SIGMA * np.median(np.abs(z - np.median(z)))) if n > 1 else None
    return out


def rejection_metrics(label: Any, pred: Any, snr_bin: Any, families: Sequence[str]) -> dict[str, Any]:
    """How well ``other`` objects are rejected, overall and per S/N_r bin.

    Parameters
    ----------
    label, pred
        ``(N,)`` true and predicted class indices (3 = ``other``; label -1 unknown, pred -1 not classified:
        left out).
    snr_bin
        ``(N,)`` S/N_r bin index.
    families
        ``(N,)`` family of each object (:func:`other_family`; only read for ``other`` objects).

    Returns
    -------
    dict
        ``other_called_other`` and ``fgk_called_other``: each ``{"all": cell, "bins": {bin: cell}}`` with
        ``cell = {"n", "k", "share", "share_ci95"}`` (share of ``other`` objects called ``other``; share of
        F/G/K objects wrongly called ``other``); ``by_family``: ``{family: {"all", "bins"}}`` of the share
        called ``other``.
    """
    label = np.asarray(label, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    sbin = np.asarray(snr_bin, dtype=np.int64)
    fam = np.asarray(list(families), dtype=object)
    io = len(CLASSES)  # index of other
    ok = pred >= 0
    called = pred == io
    is_other = ok & (label == io)
    is_fgk = ok & (label >= 0) & (label < io)

    def cell(m: np.ndarray) -> dict[str, Any]:
        return _share(int((m & called).sum()), int(m.sum()))

    out: dict[str, Any] = {
        "other_called_other": _by_bin(cell, is_other, sbin),
        "fgk_called_other": _by_bin(cell, is_fgk, sbin),
    }
    present = set(fam[is_other].tolist()) if is_other.any() else set()
    names = [f for f in (*OTHER_FAMILIES, "rest") if f in present or f in OTHER_FAMILIES]
    out["by_family"] = {f: _by_bin(cell, is_other & (fam == f), sbin) for f in names}
    return out


def calibration_metrics(logits: np.ndarray, label: Any, snr_r: Any, calibration: Any = None) -> dict[str, Any]:
    """Expected calibration error per S/N_r bin without and with the run's calibration.

    Parameters
    ----------
    logits
        ``(N, C)`` raw logits (non-finite rows are left out).
    label
        ``(N,)`` true class indices; objects whose label is not one of the model's C classes are left out.
    snr_r
        ``(N,)`` measured S/N_r.
    calibration
        :class:`drcnet.calibration.Calibration` or None (then ``ece_calibrated`` is None).

    Returns
    -------
    dict
        ``{"calibrated": bool, "temperatures": list or None, "all": cell, "bins": {bin: cell}}`` with
        ``cell = {"n", "ece_uncalibrated", "ece_calibrated", "ece_floor_uncalibrated", "ece_floor_calibrated"}``
        (top-label ECE, 15 bins, :func:`drcnet.calibration.expected_calibration_error`; the floors are what a
        perfectly calibrated model with the same confidences would show on a set of this size,
        :func:`drcnet.calibration.ece_floor`: an ECE near its floor is as calibrated as the set can tell).
    """
    from drcnet.calibration import ece_floor, expected_calibration_error, softmax
    from drcnet.conventions import snr_bin as snr_bin_of

    z = np.asarray(logits, dtype=np.float64)
    label = np.asarray(label, dtype=np.int64)
    snr = np.asarray(snr_r, dtype=np.float64)
    keep = np.isfinite(z).all(axis=1) & (label >= 0) & (label < z.shape[1])
    safe = np.where(keep[:, None], z, 0.0)
    raw = softmax(safe)
    cal = calibration.probabilities(safe, snr) if calibration is not None else None
    sbin = snr_bin_of(np.nan_to_num(snr, nan=0.0))

    def cell(m: np.ndarray) -> dict[str, Any]:
        n = int(m.sum())
        with_cal = n and cal is not None
        return {
            "n": n,
            "ece_uncalibrated": _num(expected_calibration_error(raw[m], label[m])) if n else None,
            "ece_calibrated": _num(expected_calibration_error(cal[m], label[m])) if with_cal else None,
            "ece_floor_uncalibrated": _num(ece_floor(raw[m])) if n else None,
            "ece_floor_calibrated": _num(ece_floor(cal[m])) if with_cal else None,
        }

    return {
        "calibrated": calibration is not None,
        "temperatures": list(calibration.temperatures) if calibration is not None else None,
        **_by_bin(cell, keep, sbin),
    }


def ood_metrics(ood: Any, valid: Any, label: Any, snr_bin: Any) -> dict[str, Any]:
    """Share of objects flagged out-of-distribution, overall, per S/N_r bin and by true class kind.

    Parameters
    ----------
    ood
        ``(N,)`` 0/1 flag (:func:`drcnet.catalogue.catalogue_columns` ``ood``).
    valid, label, snr_bin
        ``(N,)`` finite answer, true class (-1 unknown, 3 other), S/N_r bin.

    Returns
    -------
    dict
        ``{"all", "bins", "fgk", "other", "unknown"}``: ``{"n", "k", "share", "share_ci95"}`` cells (the
        last three over all bins).
    """
    flag = np.asarray(ood, dtype=bool)
    ok = np.asarray(valid, dtype=bool)
    label = np.asarray(label, dtype=np.int64)
    sbin = np.asarray(snr_bin, dtype=np.int64)

    def cell(m: np.ndarray) -> dict[str, Any]:
        return _share(int((m & flag).sum()), int(m.sum()))

    io = len(CLASSES)
    return {
        **_by_bin(cell, ok, sbin),
        "fgk": cell(ok & (label >= 0) & (label < io)),
        "other": cell(ok & (label == io)),
        "unknown": cell(ok & (label < 0)),
    }


def catalogue_metrics(
    pred: dict[str, Any], targets: np.ndarray, subclass: Sequence[str], calibration: Any = None
) -> dict[str, Any]:
    """Everything a survey catalogue is judged by beyond the F/G/K class, overall and per S/N_r bin.

    Parameters
    ----------
    pred
        :func:`drcnet.inference.engine.predict_dataset` output (``outputs``: raw model outputs).
    targets
        ``(N, 5)`` catalogue targets of the same objects (:func:`drcnet.data.torch_dataset.catalogue_targets`,
        rows ``pred["rows"]``): subclass index, luminosity class, Teff (K), log g, [Fe/H] (dex); the truth in
        the file (for real LAMOST sources these are LASP's values).
    subclass
        ``(N,)`` subclass strings of the file (the family of ``other`` objects).
    calibration
        The run's :class:`~drcnet.calibration.Calibration`, or None.

    Returns
    -------
    dict
        ``n_classes``; ``fgk_accuracy`` (F/G/K objects, a call of ``other`` counts as wrong; for a
        three-class model the accuracy of :func:`evaluate_predictions`); ``subclass`` (``None`` without
        catalogue heads; else :func:`subclass_accuracy` cells on F/G/K objects with a known subclass, the
        subclass head's answer whatever class was predicted); ``params`` (``{teff|logg|feh: cells of
        :func:`param_errors`}`` or None); ``rejection`` (:func:`rejection_metrics`); ``calibration``
        (:func:`calibration_metrics`); ``ood`` (:func:`ood_metrics`, None without calibration).
    """
    from drcnet.catalogue import catalogue_columns

    outputs = pred["outputs"]
    logits = np.asarray(outputs["logits"])
    label = np.asarray(pred["label"], dtype=np.int64)
    sbin = np.asarray(pred["snr_bin"], dtype=np.int64)
    yhat = np.asarray(pred["pred"], dtype=np.int64)
    valid = np.asarray(pred["valid"], dtype=bool) & np.isfinite(logits).all(axis=1)
    targets = np.asarray(targets, dtype=np.float64)
    fgk = valid & (label >= 0) & (label < len(CLASSES))

    def acc(m: np.ndarray) -> dict[str, Any]:
        return _accuracy_cell(label[m], yhat[m])

    out: dict[str, Any] = {"n_classes": int(logits.shape[1]), "fgk_accuracy": _by_bin(acc, fgk, sbin)}
    if "subclass_logits" in outputs:
        sub_pred = np.where(valid, np.nan_to_num(np.asarray(outputs["subclass_logits"])).argmax(axis=1), -1)
        sub_true = np.where(fgk, targets[:, 0], -1).astype(np.int64)
        out["subclass"] = _by_bin(lambda m: subclass_accuracy(sub_true[m], sub_pred[m]), fgk, sbin)
    else:
        out["subclass"] = None
    if "params_mean" in outputs:
        mean = np.asarray(outputs["params_mean"])
        sigma = np.asarray(outputs["params_sigma"]) if "params_sigma" in outputs else np.full_like(mean, np.nan)
        out["params"] = {
            name: _by_bin(lambda m, j=j: param_errors(mean[m, j], targets[m, 2 + j], sigma[m, j]), fgk, sbin)
            for j, name in enumerate(STELLAR_PARAMS)
        }
    else:
        out["params"] = None
    families = [other_family(s) if lab == len(CLASSES) else "" for s, lab in zip(subclass, label, strict=True)]
    out["rejection"] = rejection_metrics(label, yhat, sbin, families)
    out["calibration"] = calibration_metrics(logits, label, pred["snr_r"], calibration)
    if calibration is not None:
        cols = catalogue_columns(outputs, np.asarray(pred["snr_r"]), calibration)
        out["ood"] = ood_metrics(cols["ood"], valid, label, sbin)
    else:
        out["ood"] = None
    return out
