"""Classify a whole exposure: raw frames -> reduction -> model -> catalogue (CSV or FITS) + QA page.

:func:`classify_exposure` is what ``drcnet frames classify`` (and ``drcnet predict RUN_DIR
--exposure DIR``) runs. The catalogue has one row per object fiber (fiber type
Obj, F-std or PosErr) of every reduced spectrograph::

    spid, fiber, object_id, fibertype, mag_r,
    pred, prob_F, prob_G, prob_K, prob_other, pred_set, subclass, subclass_prob, lum_class,
    teff, teff_err, logg, logg_err, feh, feh_err, ood_score, ood,
    snr_r, flags, flag_names, no_class
    (+ true_class, true_subclass, true_snr_r, correct   when the fiber map has the TRUE_* columns)

The truth columns follow the convention the model was trained on (``label_convention`` in its
``run.json``, :func:`drcnet.models.run_folder.run_label_convention`): a ``"lamost"`` model (the default,
``drcnet-survey``) is scored against the fiber map's ``TRUE_CLASS_LAMOST``/``TRUE_SUBCLASS_LAMOST`` (stars
whose LAMOST class is ambiguous have ``true_class`` empty and are not scored), an ``"mk"`` model (the paper
reproduction) against ``TRUE_CLASS``/``TRUE_SUBCLASS``; a fiber map without the LAMOST columns is scored on
``TRUE_CLASS`` whatever the model. The table's ``meta["label_convention"]`` and
:attr:`ClassifyResult.label_convention` say which was used (and the file's provenance, as
``config.truth_label_convention``).

The model columns (``pred`` ... ``ood``) are :func:`drcnet.catalogue.catalogue_columns` of the model's
outputs (:meth:`~drcnet.models.SpectralModel.forward_all`) and its calibration (``calibration.json`` in
the run folder, :func:`drcnet.calibration.load_calibration`), the same columns as ``drcnet predict``:
``pred`` is F, G, K or ``other`` (four-class models); a three-class model gives ``prob_other`` NaN, a
model without catalogue heads an empty ``subclass``/``lum_class`` and NaN parameters, a model without
calibration an empty ``pred_set``, ``ood`` 0 and the energy score of its plain logits.

No class is given (empty ``pred``, NaN probabilities, and the reason in
``no_class``) to a fiber whose trace is lost (its stripe holds no light), whose
arm is implausible (``bad_arm``: a zero, unlit or garbage frame), or whose model
input holds NaN/inf values (the model returns no probabilities for it). Those
fibers are left out of the accuracy against the truth.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table

from drcnet.catalogue import CATALOGUE_COLUMNS, catalogue_columns
from drcnet.conventions import (
    ARMS,
    CLASSES,
    CLASSES_WITH_OTHER,
    FLAG_BITS,
    OTHER,
    flags_to_names,
)
from drcnet.instrument.errors import FrameWarning
from drcnet.instrument.lamost import provenance_cards
from drcnet.notices import collect
from drcnet.provenance import atomic_path, provenance, write_json_atomic
from drcnet.reduce.arm import ReduceConfig
from drcnet.workflows.reduce_exposure import SpectrographReduction, check_exposure, iter_reductions, release_memory
from drcnet.workflows.reduced_dataset import ReducedDatasetWriter, object_ids

Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray], "np.ndarray | dict[str, np.ndarray]"]
"""``(stripes (N,2,11,3000), flux1d (N,2,3000), sky1d (N,2,3000))`` -> either the model's outputs (a dict
with ``"logits"`` ``(N, C)`` and, for a model with heads, ``"subclass_logits"`` ... as
:func:`drcnet.predict.predict_arrays_all` returns them), or plain class probabilities ``(N, C)``
(C = 3 or 4). A predictor may carry its model's calibration as a ``calibration`` attribute
(:class:`ModelPredictor`)."""


class ModelPredictor:
    """A run folder's model as a :data:`Predictor`: every output, and the run's calibration (or None)."""

    def __init__(self, model: Any, input_kind: str, calibration: Any = None, batch_size: int = 64) -> None:
        self.model, self.input_kind, self.calibration, self.batch_size = model, input_kind, calibration, batch_size

    def __call__(self, stripes: np.ndarray, flux1d: np.ndarray, sky1d: np.ndarray) -> dict[str, np.ndarray]:
        from drcnet.predict import predict_arrays_all

        if self.input_kind == "stripes":
            return predict_arrays_all(self.model, stripes=stripes.astype(np.float32), batch_size=self.batch_size)
        return predict_arrays_all(self.model, flux1d=flux1d, sky1d=sky1d, batch_size=self.batch_size)


def load_predictor(run_dir: str | Path, batch_size: int = 64) -> tuple[ModelPredictor, dict[str, Any]]:
    """A predictor from a training run folder (best weights, calibration if any), and a description of the run.

    Uses :func:`drcnet.predict.predict_arrays_all` (the training normalisation, every output of
    the network) with the CPU fast path; the calibration is the run folder's ``calibration.json``
    (:func:`drcnet.calibration.load_calibration`).
    """
    from drcnet.calibration import load_calibration
    from drcnet.models import load_run
    from drcnet.models.fastpath import configure_cpu

    configure_cpu()
    model, info = load_run(run_dir)
    calibration = load_calibration(run_dir)
    predictor = ModelPredictor(model, info.input_kind, calibration, batch_size)
    return predictor, {"run_dir": str(run_dir), "model": info.model_name, "input_kind": info.input_kind,
                       "calibrated": calibration is not None}


def model_inputs(sr: SpectrographReduction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stripes, flux1d and sky1d of a reduced spectrograph as the dataset file stores them.

    The stripes go through float16 like the file, so a catalogue made from memory and
    one made from the written dataset agree.
    """
    arms = [sr.arms[a] for a in ARMS]
    stripes = np.stack([a.stripes for a in arms], axis=1).astype(np.float16)
    flux = np.stack([a.flux1d for a in arms], axis=1).astype(np.float32)
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
    stripes, flux, sky = model_inputs(sr)
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


FIBER_COLUMNS: tuple[str, ...] = ("spid", "fiber", "object_id", "fibertype", "mag_r")
TAIL_COLUMNS: tuple[str, ...] = ("snr_r", "flags", "flag_names", "no_class")
TRUTH_COLUMNS: tuple[str, ...] = ("true_class", "true_subclass", "true_snr_r", "correct")
FLOAT_MODEL_COLUMNS = ("prob_F", "prob_G", "prob_K", "prob_other", "subclass_prob", "teff", "teff_err", "logg",
                       "logg_err", "feh", "feh_err", "ood_score")
STR_MODEL_COLUMNS = ("pred", "pred_set", "subclass", "lum_class")


def truth_convention(truth: dict[str, np.ndarray] | None, model_convention: str) -> str:
    """The convention a fiber map's truth is read in for a model of ``model_convention`` (see the module)."""
    if model_convention == "lamost" and truth is not None and "TRUE_CLASS_LAMOST" in truth:
        return "lamost"
    return "mk"


def catalogue_rows(sr: SpectrographReduction, outputs: Any, calibration: Any = None,
                   label_convention: str = "mk") -> dict[str, np.ndarray]:
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
    table = Table(data)
    for c in ("prob_F", "prob_G", "prob_K", "prob_other", "subclass_prob", "snr_r", "mag_r", "ood_score"):
        table[c].info.format = ".4f"
    for c in ("teff", "teff_err"):
        table[c].info.format = ".0f"
    for c in ("logg", "logg_err", "feh", "feh_err"):
        table[c].info.format = ".3f"
    return table


def catalogue_table(reductions: Sequence[SpectrographReduction], outputs: Sequence[Any],
                    calibration: Any = None, label_convention: str = "mk") -> Table:
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
    return join_catalogue([catalogue_rows(sr, out, calibration, label_convention)
                           for sr, out in zip(reductions, outputs, strict=True)])


def write_catalogue(table: Table, out: str | Path, prov: dict[str, Any]) -> Path:
    """Write the catalogue as CSV (``.csv``, provenance in ``<out>.provenance.json``) or FITS (header cards)."""
    out = Path(out)
    suffix = out.name.lower()
    if suffix.endswith((".fits", ".fit", ".fits.gz")):
        hdu = fits.BinTableHDU(table, name="CATALOGUE")
        for key, value, comment in provenance_cards(prov):
            hdu.header[key] = (value, comment)
        with atomic_path(out) as tmp:
            fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)
    elif suffix.endswith(".csv"):
        with atomic_path(out) as tmp:
            table.write(tmp, format="ascii.csv", overwrite=True)
        write_json_atomic(out.with_name(out.name + ".provenance.json"), prov)
    else:
        raise ValueError(f"{out}: the catalogue must end in .csv or .fits")
    return out


@dataclass
class ClassifyResult:
    """What :func:`classify_exposure` produced."""

    catalogue: Path
    table: Table
    dataset: Path | None
    qa: Path | None
    timings: dict[str, float] = field(default_factory=dict)
    accuracy: float | None = None
    """Share of the classified true F/G/K stars given their class (None without truth)."""
    n_no_class: dict[str, int] = field(default_factory=dict)
    """Object fibers without a class, by reason (``trace_lost``, ``bad_arm``, ``bad_input``)."""
    warnings: list[str] = field(default_factory=list)
    """The reduction's warnings (each names its file)."""
    rejection: float | None = None
    """Share of the classified true ``other`` objects called ``other`` (None when the truth has none)."""
    label_convention: str = "mk"
    """Convention of the truth the accuracy was counted against: ``"lamost"`` or ``"mk"``."""


def check_outputs(out: str | Path, qa_dir: str | Path | None = None, dataset_out: str | Path | None = None,
                  files: Sequence[str | Path] = (), trees: Sequence[str | Path] = ()) -> None:
    """Refuse unusable output paths before any work: the output rule, then the catalogue's suffix.

    The rule (:func:`drcnet.outputs.check_outputs`): no output is one of ``files`` (the inputs) or one of
    the folders ``trees`` read as a whole, none is of the wrong kind (a folder for ``--out``/``--dataset``,
    a file for ``--qa``) or under a file.

    Raises
    ------
    ValueError
        Naming the path and the option.
    """
    from drcnet.outputs import Output
    from drcnet.outputs import check_outputs as check_rule

    out = Path(out)
    check_rule([Output(out), Output(qa_dir, "--qa", "folder") if qa_dir is not None else None,
                Output(dataset_out, "--dataset") if dataset_out is not None else None], files=files, trees=trees)
    if not out.name.lower().endswith((".csv", ".fits", ".fit", ".fits.gz")):
        raise ValueError(f"{out}: the catalogue (--out) must end in .csv or .fits")


def classify_exposure(run_dir: str | Path | None, exposure: str | Path, out: str | Path,
                      config: ReduceConfig | None = None, dataset_out: str | Path | None = None,
                      qa_dir: str | Path | None = None, predictor: Predictor | None = None,
                      spids: list[int] | None = None, run: int | None = None,
                      data_root: str | Path | None = None, label_convention: str | None = None) -> ClassifyResult:
    """Reduce an exposure, classify every object fiber, write the catalogue (and dataset, QA page).

    Parameters
    ----------
    run_dir
        Training run folder (ignored when ``predictor`` is given).
    exposure
        Exposure folder of raw frames and fiber maps.
    out
        Catalogue file, ``.csv`` or ``.fits``.
    dataset_out
        Also write the reduced dataset file here (same schema as ``drcnet simulate``).
    qa_dir
        Write the QA page (``index.html`` and PNGs) here.
    predictor
        Use this instead of loading ``run_dir`` (tests, other front ends).
    label_convention
        The model's label convention (default: the run's, :func:`drcnet.models.run_folder.run_label_convention`;
        ``"mk"`` for a ``predictor`` without a run folder): which truth the accuracy counts against.
    """
    config = config or ReduceConfig()
    check_outputs(out, qa_dir, dataset_out)
    timings: dict[str, float] = {"reduce": 0.0, "classify": 0.0}
    t0 = time.perf_counter()
    run_info: dict[str, Any] = {}
    if predictor is None:
        if run_dir is None:
            raise ValueError("give a training run folder (or a predictor) to classify with")
        predictor, run_info = load_predictor(run_dir)
    timings["load_model"] = time.perf_counter() - t0
    if label_convention is None:
        from drcnet.models.run_folder import run_label_convention

        label_convention = run_label_convention(run_dir) if run_dir is not None and run_info else "mk"
    model_convention = label_convention
    conventions: set[str] = set()
    calibration = getattr(predictor, "calibration", None)
    # every file of every spectrograph is checked before any work; then one spectrograph at a time is
    # reduced, classified, written to the dataset file and summarised for the QA page, and dropped
    t1 = time.perf_counter()
    checked = check_exposure(exposure, spids, run)
    timings["reduce"] += time.perf_counter() - t1
    cfg = {"reduce": config.model_dump(mode="json"), "exposure": str(Path(exposure).resolve()), "run": run_info}
    prov = provenance(cfg)
    parts: list[dict[str, np.ndarray]] = []
    qa_items: list[Any] = []
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        caught = stack.enter_context(collect(FrameWarning))  # each arm's warnings, "spNN arm: file: ..."
        writer = None
        if dataset_out is not None:
            writer = stack.enter_context(ReducedDatasetWriter(dataset_out, checked, config, exposure))
        reductions = iter_reductions(checked, config, data_root=data_root)
        while True:
            t1 = time.perf_counter()
            sr = next(reductions, None)
            timings["reduce"] += time.perf_counter() - t1
            if sr is None:
                break
            t2 = time.perf_counter()
            outputs = predict_objects(predictor, sr)
            part = catalogue_rows(sr, outputs, calibration, model_convention)
            conventions.add(truth_convention(sr.fibermap.truth, model_convention))
            parts.append(part)
            timings["classify"] += time.perf_counter() - t2
            if writer is not None:
                t4 = time.perf_counter()
                writer.write(sr)
                timings["write_dataset"] = timings.get("write_dataset", 0.0) + time.perf_counter() - t4
            if qa_dir is not None:
                from drcnet.workflows.qa import qa_summary

                qa_items.append(qa_summary(sr, part))
            notes.extend(caught)
            caught.clear()
            del sr, outputs
            release_memory()
    t2 = time.perf_counter()
    table = join_catalogue(parts)
    # the truth's convention: the model's where the fiber maps carry those labels, else MK (old fiber maps);
    # "mixed" when only some spectrographs' maps have the LAMOST columns
    used = conventions.pop() if len(conventions) == 1 else ("mixed" if conventions else "mk")
    prov = {**prov, "config": {**prov.get("config", {}), "truth_label_convention": used}}  # recorded with the file
    timings["classify"] += time.perf_counter() - t2
    t3 = time.perf_counter()
    path = write_catalogue(table, out, prov)
    table.meta["label_convention"] = used  # after writing: a FITS header would need a HIERARCH card for it
    timings["write_catalogue"] = time.perf_counter() - t3
    dataset = Path(dataset_out) if dataset_out is not None else None
    accuracy = rejection = None
    if "correct" in table.colnames:
        # over the true F/G/K stars (as the QA page): "other" objects are scored by the rejection, not here
        known = np.isin(np.asarray(table["true_class"]).astype(str), CLASSES) & np.array([bool(p) for p in table["pred"]], dtype=bool)
        accuracy = float(np.mean(np.asarray(table["correct"])[known])) if known.any() else None
        other = (np.asarray(table["true_class"]).astype(str) == OTHER) & np.array([bool(p) for p in table["pred"]], dtype=bool)
        if other.any():
            rejection = float(np.mean(np.asarray(table["pred"]).astype(str)[other] == OTHER))
    reasons = [str(r) for r in table["no_class"] if r]
    n_no_class = {r: reasons.count(r) for r in sorted(set(reasons))}
    qa = None
    if qa_dir is not None:
        from drcnet.workflows.qa import write_qa_page

        t5 = time.perf_counter()
        qa = write_qa_page(qa_dir, qa_items, table, exposure, prov)
        timings["qa"] = time.perf_counter() - t5
    timings["total"] = time.perf_counter() - t0
    return ClassifyResult(catalogue=path, table=table, dataset=dataset, qa=qa, timings=timings, accuracy=accuracy,
                          n_no_class=n_no_class, warnings=notes, rejection=rejection, label_convention=used)


def summary_json(result: ClassifyResult) -> str:
    """One-line JSON summary of a classification (for logs and benchmarks)."""
    counts = {c: int(np.sum(np.asarray(result.table["pred"]) == c)) for c in CLASSES_WITH_OTHER}
    return json.dumps({"catalogue": str(result.catalogue), "rows": len(result.table), "pred_counts": counts,
                       "accuracy": result.accuracy, "rejection": result.rejection, "no_class": result.n_no_class, "timings_s": {k: round(v, 3) for k, v in result.timings.items()}})
