"""The exposure catalogue's rows: model inputs of a reduced spectrograph, its outputs, the columns.

Used by :func:`drcnet.workflows.classify_exposure.classify_exposure` and the night's tasks
(:mod:`drcnet.workflows.night_task`). The columns are those of
:data:`drcnet.inference.table.EXPOSURE_COLUMNS` (+ :data:`~drcnet.inference.table.TRUTH_COLUMNS`); why a fiber
gets no class, and which truth it is scored on, is told in :mod:`drcnet.workflows.classify_exposure`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from astropy.table import Table

from drcnet.catalogue import CATALOGUE_COLUMNS, catalogue_columns
from drcnet.conventions import ARMS, CLASSES, FLAG_BITS, flags_to_names
from drcnet.data.normalize import RAW_ARRAYS
from drcnet.inference.table import EXPOSURE_FORMATS, FIBER_COLUMNS, TAIL_COLUMNS, TRUTH_COLUMNS, set_formats
from drcnet.workflows.reduce_exposure import SpectrographReduction
from drcnet.workflows.reduced_dataset import object_ids

Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray], "np.ndarray | dict[str, np.ndarray]"]
"""``(stripes (N,2,11,3000), flux1d (N,2,3000), sky1d (N,2,3000))`` (``flux1d`` the optimal extraction when
the predictor's ``input_kind`` reads ``flux1d_opt`` (``"hybrid_optimal"``), else the boxcar sum; a plain
callable without ``input_kind`` gets the boxcar sum) -> either the model's outputs (a dict
with ``"logits"`` ``(N, C)`` and, for a model with heads, ``"subclass_logits"`` ... as
:func:`drcnet.inference.engine.predict_arrays_all` returns them), or plain class probabilities ``(N, C)``
(C = 3 or 4). A predictor may carry its model's calibration as a ``calibration`` attribute
(:class:`drcnet.inference.predictor.Predictor`)."""


def model_inputs(sr: SpectrographReduction, optimal: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stripes, flux1d and sky1d of a reduced spectrograph as the dataset file stores them.

    The stripes go through float16 like the file, so a catalogue made from memory and
    one made from the written dataset agree. With ``optimal`` the 1D spectra are the optimal extraction
    (``flux1d_opt``, what a ``hybrid_optimal`` model reads) instead of the boxcar sum.
    """
    arms = [sr.arms[a] for a in ARMS]
    stripes = np.stack([a.stripes for a in arms], axis=1).astype(np.float16)
    flux = np.stack([a.flux_opt if optimal else a.flux1d for a in arms], axis=1).astype(np.float32)
    sky = np.stack([a.sky1d for a in arms], axis=1).astype(np.float32)
    return stripes, flux, sky


NO_CLASS_FLAGS = ("trace_lost", "bad_arm")
"""Flags that withhold a class: the fiber's light is missing, or its arm's frame is implausible."""


def no_class_reason(flags: int, probs: np.ndarray) -> str:
    """Why a fiber gets no class (``""`` when it gets one): a withholding flag, or no probabilities from the model."""
    for name in NO_CLASS_FLAGS:
        if flags & FLAG_BITS[name]:
            return name
    if not np.all(np.isfinite(probs)):
        return "bad_input"
    return ""


def predict_objects(predictor: Predictor, sr: SpectrographReduction) -> dict[str, np.ndarray]:
    """The model outputs of the classifiable object fibers, one row per fiber (NaN for the other fibers).

    Returns
    -------
    dict of numpy.ndarray
        The predictor's outputs (``"logits"`` ``(n_fibers, C)``, heads ...), or ``{"prob": (n_fibers, C)}``
        for a predictor that returns plain probabilities. A row the model returns as NaN (input with
        NaN/inf values) stays NaN.
    """
    optimal = "flux1d_opt" in RAW_ARRAYS.get(str(getattr(predictor, "input_kind", "")), ())
    stripes, flux, sky = model_inputs(sr, optimal=optimal)
    withheld = sum(FLAG_BITS[n] for n in NO_CLASS_FLAGS)
    use = np.flatnonzero(sr.fibermap.is_object & ((sr.flags & withheld) == 0))
    n = len(sr.fibermap)
    got = predictor(stripes[use], flux[use], sky[use]) if use.size else None
    if got is None:  # nothing to classify: say so with the number of classes of a plain three-class answer
        return {"prob": np.full((n, len(CLASSES)), np.nan, dtype=np.float32)}
    outputs = got if isinstance(got, dict) else {"prob": got}
    out = {}
    for name, values in outputs.items():
        values = np.asarray(values, dtype=np.float32)
        full = np.full((n, *values.shape[1:]), np.nan, dtype=np.float32)
        full[use] = values
        out[name] = full
    return out


def model_columns(outputs: dict[str, np.ndarray], snr_r: np.ndarray, calibration: Any = None) -> dict[str, Any]:
    """:func:`drcnet.catalogue.catalogue_columns` of one spectrograph's :func:`predict_objects` outputs.

    Plain probabilities (a predictor without logits) go in as log-probabilities with no calibration, and
    their ``ood_score`` is NaN (an energy score needs logits).
    """
    if "logits" in outputs:
        return catalogue_columns(outputs, snr_r, calibration)
    prob = np.asarray(outputs["prob"], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        cols = catalogue_columns({"logits": np.log(np.clip(prob, 1e-300, None))}, snr_r, None)
    cols["ood_score"] = np.full(len(prob), np.nan)
    return cols


FLOAT_MODEL_COLUMNS = (
    "prob_F",
    "prob_G",
    "prob_K",
    "prob_other",
    "subclass_prob",
    "teff",
    "teff_err",
    "logg",
    "logg_err",
    "feh",
    "feh_err",
    "ood_score",
)
STR_MODEL_COLUMNS = ("pred", "pred_set", "subclass", "lum_class")


def truth_convention(truth: dict[str, np.ndarray] | None, model_convention: str) -> str:
    """The convention a fiber map's truth is read in for a model of ``model_convention`` (see the module)."""
    if model_convention == "lamost" and truth is not None and "TRUE_CLASS_LAMOST" in truth:
        return "lamost"
    return "mk"


def catalogue_rows(
    sr: SpectrographReduction, outputs: Any, calibration: Any = None, label_convention: str = "mk"
) -> dict[str, np.ndarray]:
    """The catalogue columns of one spectrograph's object fibers (vectorised; truth columns when its map has them).

    Parameters
    ----------
    sr
        The reduced spectrograph.
    outputs
        Its :func:`predict_objects` outputs (a plain ``(n_fibers, C)`` probability array is accepted too).
    calibration
        The model's :class:`~drcnet.calibration.Calibration` (None: plain softmax, no set, no OOD flag).
    label_convention
        The model's label convention: ``"lamost"`` reads the truth from ``TRUE_CLASS_LAMOST``/
        ``TRUE_SUBCLASS_LAMOST`` where the fiber map has them (:func:`truth_convention`).

    Returns
    -------
    dict of numpy.ndarray
        Column name -> ``(n_objects,)`` values, in :func:`catalogue_table`'s order.
    """
    out = outputs if isinstance(outputs, dict) else {"prob": np.asarray(outputs)}
    cols = model_columns(out, np.asarray(sr.snr_r, dtype=np.float64), calibration)
    p = np.asarray(cols["prob"], dtype=np.float64)
    fm = sr.fibermap
    idx = np.flatnonzero(fm.is_object)
    flags = np.asarray(sr.flags)[idx].astype(np.int64)
    reason = np.full(idx.size, "", dtype=object)
    finite = np.all(np.isfinite(p[idx]), axis=1) if p.ndim == 2 else np.ones(idx.size, dtype=bool)
    reason[~finite] = "bad_input"
    for name in reversed(NO_CLASS_FLAGS):  # the first withholding flag wins, as in no_class_reason
        reason[(flags & FLAG_BITS[name]) > 0] = name
    none = reason != ""
    rows: dict[str, np.ndarray] = {
        "spid": np.full(idx.size, sr.spid, dtype=np.int64),
        "fiber": np.asarray(fm.fiber)[idx].astype(np.int64),
        "object_id": np.asarray(object_ids(sr))[idx].astype(str),
        "fibertype": np.asarray(fm.fibertype)[idx].astype(str),
        "mag_r": np.asarray(fm.mag)[idx].astype(np.float64),
        "pred": np.where(none, "", np.asarray(cols["pred"], dtype=object)[idx]).astype(str),
    }
    for c in FLOAT_MODEL_COLUMNS:
        rows[c] = np.where(none, np.nan, np.asarray(cols[c], dtype=np.float64)[idx])
    for c in STR_MODEL_COLUMNS[1:]:
        rows[c] = np.where(none, "", np.asarray(cols[c], dtype=object)[idx].astype(str)).astype(str)
    rows["ood"] = np.where(none, 0, np.asarray(cols["ood"])[idx].astype(np.int64))
    rows["snr_r"] = np.asarray(sr.snr_r, dtype=np.float64)[idx]
    rows["flags"] = flags
    names = {int(v): ",".join(flags_to_names(int(v))) for v in np.unique(flags)}
    rows["flag_names"] = np.array([names[int(v)] for v in flags], dtype=str)
    rows["no_class"] = reason.astype(str)
    if fm.truth is not None:
        t = fm.truth
        suffix = "_LAMOST" if truth_convention(t, label_convention) == "lamost" else ""
        tc = np.asarray(t["TRUE_CLASS" + suffix])[idx].astype(str)
        rows["true_class"] = tc
        rows["true_subclass"] = np.asarray(t["TRUE_SUBCLASS" + suffix])[idx].astype(str)
        rows["true_snr_r"] = np.asarray(t["TRUE_SNR_R"])[idx].astype(np.float64)
        rows["correct"] = (rows["pred"] != "") & (tc != "") & (rows["pred"] == tc)
    return rows


def join_catalogue(parts: Sequence[dict[str, np.ndarray]]) -> Table:
    """The catalogue table from :func:`catalogue_rows` of each spectrograph (truth columns only when all have them)."""
    keys = [*FIBER_COLUMNS, *CATALOGUE_COLUMNS, *TAIL_COLUMNS]
    if parts and all("true_class" in p for p in parts):
        keys += list(TRUTH_COLUMNS)
    data = {}
    for k in keys:
        vals = [p[k] for p in parts]
        data[k] = np.concatenate(vals) if vals else np.array([])
    table = set_formats(Table(data), EXPOSURE_FORMATS)
    return table


def catalogue_table(
    reductions: Sequence[SpectrographReduction],
    outputs: Sequence[Any],
    calibration: Any = None,
    label_convention: str = "mk",
) -> Table:
    """The catalogue: one row per object fiber, with truth columns when the fiber maps have them.

    Parameters
    ----------
    reductions
        The reduced spectrographs.
    outputs
        Per spectrograph, :func:`predict_objects`'s outputs (a plain ``(n_fibers, C)`` probability
        array is accepted too).
    calibration
        The model's :class:`~drcnet.calibration.Calibration` (None: plain softmax, no set, no OOD flag).
    label_convention
        The model's label convention (``"mk"`` or ``"lamost"``): which truth columns the rows carry.
    """
    return join_catalogue(
        [catalogue_rows(sr, out, calibration, label_convention) for sr, out in zip(reductions, outputs, strict=True)]
    )
