"""Classify a whole exposure: raw frames -> reduction -> model -> catalogue (CSV, Parquet or FITS) + QA page.

:func:`classify_exposure` is what ``drcnet frames classify`` and ``drcnet predict RUN_DIR --exposure DIR``
run (the rows are built by :mod:`drcnet.workflows.exposure_catalogue`). The catalogue has one row per
object fiber (fiber type Obj, F-std or PosErr) of every reduced spectrograph::

    spid, fiber, object_id, fibertype, mag_r,
    pred, prob_F, prob_G, prob_K, prob_other, pred_set, subclass, subclass_prob, lum_class,
    teff, teff_err, logg, logg_err, feh, feh_err, ood_score, ood,
    snr_r, flags, flag_names, no_class
    (+ true_class, true_subclass, true_snr_r, correct   when the fiber map has the TRUE_* columns)

The truth columns follow the convention the model was trained on (``label_convention`` in its
``run.json``, :func:`drcnet.models.run_folder.run_label_convention`): a ``"lamost"`` model (the default,
``drcnet-hybrid``) is scored against the fiber map's ``TRUE_CLASS_LAMOST``/``TRUE_SUBCLASS_LAMOST`` (stars
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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from drcnet.conventions import CLASSES, OTHER
from drcnet.inference.table import write_catalogue
from drcnet.instrument.errors import FrameWarning
from drcnet.notices import collect
from drcnet.provenance import provenance
from drcnet.reduce.arm import ReduceConfig
from drcnet.workflows.exposure_catalogue import (
    Predictor,
    catalogue_rows,
    catalogue_table,
    join_catalogue,
    model_inputs,
    predict_objects,
    truth_convention,
)
from drcnet.workflows.exposure_check import check_exposure
from drcnet.workflows.reduce_exposure import iter_reductions, release_memory
from drcnet.workflows.reduced_dataset import ReducedDatasetWriter

__all__ = [
    "ClassifyResult",
    "Predictor",
    "catalogue_table",
    "check_outputs",
    "classify_exposure",
    "model_inputs",
    "predict_objects",
]


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


def check_outputs(
    out: str | Path,
    qa_dir: str | Path | None = None,
    dataset_out: str | Path | None = None,
    files: Sequence[str | Path] = (),
    trees: Sequence[str | Path] = (),
) -> None:
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
    check_rule(
        [
            Output(out),
            Output(qa_dir, "--qa", "folder") if qa_dir is not None else None,
            Output(dataset_out, "--dataset") if dataset_out is not None else None,
        ],
        files=files,
        trees=trees,
    )
    if not out.name.lower().endswith((".csv", ".parquet", ".fits", ".fit", ".fits.gz")):
        raise ValueError(f"{out}: the catalogue (--out) must end in .csv, .parquet or .fits")


def classify_exposure(
    run_dir: str | Path | None,
    exposure: str | Path,
    out: str | Path,
    config: ReduceConfig | None = None,
    dataset_out: str | Path | None = None,
    qa_dir: str | Path | None = None,
    predictor: Predictor | None = None,
    spids: list[int] | None = None,
    run: int | None = None,
    data_root: str | Path | None = None,
    label_convention: str | None = None,
    engine: str = "torch",
) -> ClassifyResult:
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
    engine
        ``torch`` or ``onnx`` (ONNX Runtime, the run's model exported on the fly); ignored with ``predictor``.
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
        from drcnet.inference.predictor import Predictor as RunPredictor

        predictor = RunPredictor.load(run_dir, engine=engine)
        run_info = predictor.info
    timings["load_model"] = time.perf_counter() - t0
    if label_convention is None:  # the run's, for a model loaded here; "mk" for a predictor given by the caller
        label_convention = str(getattr(predictor, "label_convention", "mk")) if run_info else "mk"
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
        known = np.isin(np.asarray(table["true_class"]).astype(str), CLASSES) & np.array(
            [bool(p) for p in table["pred"]], dtype=bool
        )
        accuracy = float(np.mean(np.asarray(table["correct"])[known])) if known.any() else None
        other = (np.asarray(table["true_class"]).astype(str) == OTHER) & np.array(
            [bool(p) for p in table["pred"]], dtype=bool
        )
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
    return ClassifyResult(
        catalogue=path,
        table=table,
        dataset=dataset,
        qa=qa,
        timings=timings,
        accuracy=accuracy,
        n_no_class=n_no_class,
        warnings=notes,
        rejection=rejection,
        label_convention=used,
    )
