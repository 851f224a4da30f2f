"""``drcnet evaluate`` and ``drcnet predict`` on a dataset file: load the run, predict, score, write.

* :func:`evaluate_run` - scored against the labels of the convention the run was trained on
  (:func:`scoring_labels`; ``label_convention`` in metrics.json) - metrics.json (Table 3, Tables 4-5, intervals; accuracy with its interval counted
  by source spectrum under ``by_source_spectrum``; the catalogue metrics of
  :func:`drcnet.metrics.catalogue_metrics` under ``catalogue``) and the confusion-matrix figure.
* :func:`predict_run` - the prediction table (:data:`drcnet.inference.table.PRED_COLUMNS`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from drcnet.conventions import SNR_BIN_NAMES, class_names
from drcnet.data.groups import object_groups
from drcnet.data.schema import dataset_fingerprint, decode, label_convention, open_dataset
from drcnet.data.torch_dataset import catalogue_targets
from drcnet.inference.engine import predict_dataset
from drcnet.metrics import catalogue_metrics, evaluate_predictions, group_metrics, source_clustered_accuracy
from drcnet.models import load_run
from drcnet.models.fastpath import configure_cpu
from drcnet.models.run_folder import run_label_convention
from drcnet.provenance import provenance, write_json_atomic

METRICS_JSON = "metrics.json"


def scoring_labels(data: str | Path, model_convention: str) -> tuple[str, np.ndarray | None, list[str] | None]:
    """The labels a model trained on ``model_convention`` is scored against in a dataset file.

    A ``"lamost"`` model on a file whose ``label`` holds MK types (``drcnet simulate``) is scored against
    its ``label_lamost``/``subclass_lamost`` when the file has them; otherwise the file's ``label`` is used
    (its own convention, :func:`drcnet.data.schema.label_convention`: an ``"mk"`` model on a population
    file is scored on LAMOST's labels, the only ones there).

    Returns
    -------
    convention : str
        The convention actually scored against (``"mk"`` or ``"lamost"``).
    label, subclass
        ``(N,)`` labels (0 F, 1 G, 2 K, 3 other, -1 unknown/ambiguous) and subclasses of every object of the
        file, or None when the file's own ``label``/``subclass`` are used.
    """
    with open_dataset(data) as h:
        file_conv = label_convention(h)
        if model_convention == "lamost" and file_conv != "lamost" and "label_lamost" in h:
            sub = decode(h["subclass_lamost"][:]) if "subclass_lamost" in h else [""] * h["label"].shape[0]
            return "lamost", h["label_lamost"][:].astype(np.int64), sub
    return file_conv, None, None


def file_truth(
    data: str | Path, rows: np.ndarray, label: np.ndarray | None = None, subclass: list[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Catalogue targets and subclass strings of the objects at ``rows`` of a dataset file.

    ``label``/``subclass`` (every object of the file) replace the file's own columns (:func:`scoring_labels`).

    Returns
    -------
    targets : numpy.ndarray
        ``(len(rows), 5)``: :func:`drcnet.data.torch_dataset.catalogue_targets` (subclass index, luminosity
        class, Teff K, log g, [Fe/H] dex; for real LAMOST sources the LASP values).
    subclass : list of str
        The file's ``subclass`` column (empty strings when the file has none).
    """
    with open_dataset(data) as h:
        label = h["label"][:].astype(np.int64) if label is None else np.asarray(label, dtype=np.int64)
        targets = catalogue_targets(h, label)
        sub = (decode(h["subclass"][:]) if "subclass" in h else [""] * len(label)) if subclass is None else subclass
        if subclass is not None:
            from drcnet.conventions import subclass_index

            targets[:, 0] = [subclass_index(x) if 0 <= lab < 3 else -1 for x, lab in zip(sub, label, strict=True)]
    rows = np.asarray(rows, dtype=np.int64)
    return targets[rows], [sub[i] for i in rows]


def source_spectra(data: str | Path, rows: np.ndarray) -> list[str]:
    """The source spectrum (``template_id``) of the objects at ``rows``; each row its own when the file has none."""
    rows = np.asarray(rows, dtype=np.int64)
    with open_dataset(data) as h:
        if "template_id" not in h:
            return [f"row{i}" for i in rows]
        tid = decode(h["template_id"][:])
    return [tid[i] or f"row{i}" for i in rows]


def evaluate_run(
    run_dir: str | Path,
    data: str | Path,
    split: str = "test",
    out: str | Path | None = None,
    which: str = "best",
    batch_size: int = 64,
    workers: int = 1,
    fast: bool = True,
    write: bool = True,
) -> dict[str, Any]:
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
    from drcnet.calibration import load_calibration
    from drcnet.plots.figures import plot_confusions

    if fast:
        configure_cpu()
    model, info = load_run(run_dir, which=which, fast=fast)
    pred = predict_dataset(model, data, split, batch_size=batch_size, workers=workers)
    if not len(pred["label"]):
        raise ValueError(f"{data}: the {split!r} split holds no objects; nothing to evaluate (choose --split)")
    if not (np.asarray(pred["label"]) >= 0).any():
        raise ValueError(
            f"{data}: none of the {len(pred['label'])} objects of the {split!r} split has a label; "
            "nothing to evaluate against (use `drcnet predict` for unlabelled data)"
        )
    names = class_names(int(pred["prob"].shape[1]))
    model_convention = run_label_convention(run_dir, info.meta)
    convention, file_label, file_sub = scoring_labels(data, model_convention)
    if file_label is not None:
        rows = np.asarray(pred["rows"], dtype=np.int64)
        pred = {**pred, "label": file_label[rows]}
    targets, subclass = file_truth(data, pred["rows"], file_label, file_sub)
    # as in evaluate_predictions: a class the model does not have (``other`` for a three-class model) is left out
    label = np.where(np.asarray(pred["label"]) < len(names), np.asarray(pred["label"]), -1)
    metrics = {
        "run": str(Path(run_dir).resolve()),
        "model": info.model_name,
        "weights": which,
        "split": split,
        "classes": list(names),
        "snr_bins": list(SNR_BIN_NAMES),
        "data": dataset_fingerprint(data),
        "label_convention": convention,
        "model_label_convention": model_convention,
        **evaluate_predictions(pred),
        "catalogue": catalogue_metrics(pred, targets, subclass, load_calibration(run_dir)),
        "groups": group_metrics(label, pred["pred"], pred["snr_bin"], object_groups(data, pred["rows"])),
        "by_source_spectrum": source_clustered_accuracy(
            label, pred["pred"], pred["snr_bin"], source_spectra(data, pred["rows"])
        ),
        "provenance": provenance(
            {"run": str(run_dir), "data": str(data), "split": split, "weights": which}, info.meta.get("seed")
        ),
    }
    if write:
        out_dir = Path(out) if out is not None else Path(run_dir)
        write_json_atomic(out_dir / METRICS_JSON, metrics)
        panels = {
            f"S/N {k} (n={v['n']})": (v["confusion_matrix"] if v["n"] else None) for k, v in metrics["bins"].items()
        }
        plot_confusions(panels, out_dir / "confusion.png", suptitle=f"{info.model_name}: {split} split", classes=names)
    return metrics


def predict_run(
    run_dir: str | Path,
    data: str | Path,
    out: str | Path,
    split: str | None = None,
    which: str = "best",
    batch_size: int = 64,
    workers: int = 1,
    fast: bool = True,
) -> Path:
    """Write a prediction table (:data:`PRED_COLUMNS`) for ``split`` (``None``: all objects) of ``data``.

    Probabilities are calibrated with the run folder's ``calibration.json`` when it has one
    (``drcnet calibrate``). Objects whose input holds NaN/inf pixels get no class (``bad_input`` 1) and a
    ``UserWarning`` says how many. The torch fp32 case of :func:`drcnet.inference.predictor.predict_table`.
    """
    from drcnet.inference.predictor import predict_table

    return predict_table(
        run_dir, data, out, split=split, which=which, batch_size=batch_size, workers=workers, fast=fast
    )
