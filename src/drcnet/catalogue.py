"""Catalogue columns from a model's raw outputs: class, calibrated probabilities, subclass, parameters, OOD.

One function, :func:`catalogue_columns`, turns the outputs of :meth:`~drcnet.models.SpectralModel.forward_all`
(stacked over objects) into the columns of ``drcnet predict`` and of the exposure catalogue, so both say
the same thing:

================  ==========================================================================================
column            meaning
================  ==========================================================================================
``pred``          F, G, K (or ``other`` for a four-class model); empty for an object not classified
``prob_F`` ...    class probabilities, calibrated per S/N_r bin when the model has a calibration
``prob_other``    probability of ``other`` (NaN for a three-class model)
``pred_set``      classes of the split-conformal prediction set at the calibration's coverage, ``|``-joined
``subclass``      most probable subclass on LAMOST's F/G/K grid (:data:`~drcnet.conventions.SUBCLASSES`),
                  empty when ``pred`` is ``other`` or the model has no subclass head
``subclass_prob`` its probability
``lum_class``     dwarf / giant (log g 3.5 split), empty as above
``teff`` ...      Teff (K), log g (dex), [Fe/H] (dex) and their 1-sigma ``_err`` (heteroscedastic head)
``ood_score``     energy score of the (calibrated) logits: higher = less like the training data
``ood``           1 when ``ood_score`` is above the calibration's threshold (99 % of validation objects)
================  ==========================================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from drcnet.calibration import Calibration, energy, softmax
from drcnet.conventions import CLASSES, LUM_CLASSES, OTHER, STELLAR_PARAMS, SUBCLASSES, class_names

CATALOGUE_COLUMNS: tuple[str, ...] = (
    "pred",
    "prob_F",
    "prob_G",
    "prob_K",
    "prob_other",
    "pred_set",
    "subclass",
    "subclass_prob",
    "lum_class",
    "teff",
    "teff_err",
    "logg",
    "logg_err",
    "feh",
    "feh_err",
    "ood_score",
    "ood",
)
"""Columns :func:`catalogue_columns` returns, in table order."""


def catalogue_columns(
    outputs: dict[str, np.ndarray], snr_r: np.ndarray, calibration: Calibration | None = None
) -> dict[str, Any]:
    """The catalogue columns of N objects.

    Parameters
    ----------
    outputs
        Stacked model outputs: ``"logits"`` ``(N, C)`` (C = 3 or 4) and, for a model with catalogue
        heads, ``"subclass_logits"`` ``(N, 24)``, ``"lum_logits"`` ``(N, 2)``, ``"params_mean"`` and
        ``"params_sigma"`` ``(N, 3)``. Rows with non-finite logits are objects not classified.
    snr_r
        ``(N,)`` measured S/N_r (selects the calibration temperature).
    calibration
        The model's calibration; None: plain softmax, no prediction set, no OOD flag.

    Returns
    -------
    dict
        :data:`CATALOGUE_COLUMNS` -> arrays of length N (str columns as lists), plus ``"prob"``
        ``(N, C)`` and ``"pred_index"`` ``(N,)`` (-1 not classified).
    """
    logits = np.asarray(outputs["logits"], dtype=np.float64)
    n, c = logits.shape
    names = class_names(c)
    ok = np.isfinite(logits).all(axis=1)
    safe = np.where(ok[:, None], logits, 0.0)
    snr = np.asarray(snr_r, dtype=np.float64)
    temp = calibration.temperature_of(snr) if calibration is not None else np.ones(n)
    prob = softmax(safe, temp)
    prob[~ok] = np.nan
    idx = np.where(ok, np.nan_to_num(prob).argmax(axis=1), -1)
    out: dict[str, Any] = {"prob": prob, "pred_index": idx, "pred": [names[k] if k >= 0 else "" for k in idx]}
    for k, name in enumerate(("F", "G", "K", OTHER)):
        out[f"prob_{name}"] = prob[:, k] if k < c else np.full(n, np.nan)
    sets = calibration.prediction_sets(prob) if calibration is not None else None
    out["pred_set"] = (
        [
            "|".join(nm for nm, m in zip(names, row, strict=True) if m) if okk else ""
            for row, okk in zip(sets, ok, strict=True)
        ]
        if sets is not None
        else [""] * n
    )
    score = energy(safe, temp)
    score[~ok] = np.nan
    out["ood_score"] = score
    out["ood"] = ((score > calibration.ood_threshold) & ok).astype(int) if calibration is not None else np.zeros(n, int)
    star = ok & (idx >= 0) & (idx < len(CLASSES))
    if "subclass_logits" in outputs:
        sp = softmax(np.nan_to_num(np.asarray(outputs["subclass_logits"], np.float64)))
        k = sp.argmax(axis=1)
        out["subclass"] = [SUBCLASSES[j] if s else "" for j, s in zip(k, star, strict=True)]
        out["subclass_prob"] = np.where(star, sp.max(axis=1), np.nan)
        lum = np.asarray(outputs["lum_logits"]).argmax(axis=1)
        out["lum_class"] = [LUM_CLASSES[j] if s else "" for j, s in zip(lum, star, strict=True)]
        mean, sigma = np.asarray(outputs["params_mean"], np.float64), np.asarray(outputs["params_sigma"], np.float64)
        for j, name in enumerate(STELLAR_PARAMS):
            out[name] = np.where(star, mean[:, j], np.nan)
            out[f"{name}_err"] = np.where(star, sigma[:, j], np.nan)
    else:
        out["subclass"] = [""] * n
        out["lum_class"] = [""] * n
        out["subclass_prob"] = np.full(n, np.nan)
        for name in STELLAR_PARAMS:
            out[name] = np.full(n, np.nan)
            out[f"{name}_err"] = np.full(n, np.nan)
    return out
