"""``drcnet calibrate``: fit a run's calibration on a labelled split and store it in the run folder.

The run's model predicts every object of the split (:func:`drcnet.inference.engine.predict_dataset`); the objects
with a finite answer and a label the model can give (F/G/K, and ``other`` for a four-class model) are the
fitting set of :func:`drcnet.calibration.fit_calibration` (one temperature per S/N_r bin, the energy OOD
threshold, the split-conformal threshold at the chosen coverage). The result goes to
``RUN/calibration.json`` with its provenance (dataset fingerprint, split, drcnet version and commit);
``drcnet predict``, ``evaluate`` and ``report`` then use it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from drcnet.calibration import Calibration, save_calibration


def check_writable_run(run_dir: str | Path) -> Path:
    """The run folder, after checking that it is one and that a calibration can be written into it.

    Raises
    ------
    FileNotFoundError
        ``run_dir`` is not a folder with a ``run.json``.
    PermissionError
        The folder is not writable, or it is a shipped model inside the package (whose files and checksums
        must stay as released).
    """
    from drcnet.models.run_folder import PRETRAINED_ROOT, RUN_JSON

    path = Path(run_dir)
    if path.resolve().is_relative_to(PRETRAINED_ROOT.resolve()):
        raise PermissionError(
            f"{path}: a shipped model; its folder stays as released. Copy it (e.g. `cp -r {path} "
            "my_model`) and calibrate the copy: `drcnet calibrate my_model --data FILE`"
        )
    if not (path / RUN_JSON).is_file():
        raise FileNotFoundError(
            f"{path}: not a run folder (no {RUN_JSON}); `drcnet calibrate` takes the folder "
            "written by `drcnet train` (to calibrate a shipped model, copy the folder that "
            "`drcnet models` lists and pass the copy)"
        )
    if not os.access(path, os.W_OK):
        raise PermissionError(
            f"{path}: folder not writable, so calibration.json cannot be stored there; copy the "
            "run folder somewhere writable and calibrate the copy"
        )
    return path


def fitting_rows(pred: dict[str, Any]) -> np.ndarray:
    """``(N,)`` bool: objects a calibration can be fitted on (finite logits, a label among the model's classes)."""
    logits = np.asarray(pred["outputs"]["logits"])
    label = np.asarray(pred["label"])
    return np.isfinite(logits).all(axis=1) & (label >= 0) & (label < logits.shape[1])


def calibrate_run(
    run_dir: str | Path,
    data: str | Path,
    split: str = "val",
    coverage: float | None = 0.9,
    which: str = "best",
    batch_size: int = 64,
    workers: int = 1,
    fast: bool = True,
    temperature: str = "per-bin",
) -> tuple[Calibration, Path]:
    """Fit the calibration of a run folder's model on ``split`` of ``data`` and write ``calibration.json``.

    Parameters
    ----------
    run_dir
        Writable run folder from ``drcnet train``.
    data
        Dataset file holding labelled objects of ``split`` (the validation split: never the test split,
        which would then no longer measure the calibration).
    split
        Split to fit on.
    coverage
        Target coverage of the conformal prediction sets, in (0, 1); None: no sets.
    which
        ``best`` or ``last`` weights (the calibration is only valid for the weights it was fitted with).
    temperature
        ``"per-bin"`` (fitted temperatures) or ``"none"`` (all 1; the thresholds still fitted), see
        :func:`drcnet.calibration.fit_calibration`.

    Returns
    -------
    (Calibration, pathlib.Path)
        The calibration and the path of ``calibration.json``.

    Raises
    ------
    ValueError
        The split holds no labelled object with a finite answer (names the file and split).
    """
    from drcnet.calibration import TEMPERATURE_MODES, fit_calibration
    from drcnet.data.schema import dataset_fingerprint
    from drcnet.inference.engine import predict_dataset
    from drcnet.models import load_run
    from drcnet.models.fastpath import configure_cpu
    from drcnet.provenance import provenance

    run = check_writable_run(run_dir)
    if coverage is not None and not 0.0 < coverage < 1.0:
        raise ValueError(f"--coverage must be in (0, 1), got {coverage}")
    if temperature not in TEMPERATURE_MODES:
        raise ValueError(f"--temperature must be one of {', '.join(TEMPERATURE_MODES)}, got {temperature!r}")
    if fast:
        configure_cpu()
    model, info = load_run(run, which=which, fast=fast)
    pred = predict_dataset(model, data, split, batch_size=batch_size, workers=workers)
    sel = fitting_rows(pred)
    if not sel.any():
        raise ValueError(
            f"{data}: the {split!r} split holds no labelled object the model can be calibrated on "
            f"({len(pred['label'])} objects); choose --split or a file with labels"
        )
    prov = {
        "data": dataset_fingerprint(data),
        "split": split,
        "weights": which,
        "n_fitted": int(sel.sum()),
        "model": info.model_name,
        "temperature": temperature,
        **provenance(
            {
                "run": str(run),
                "data": str(data),
                "split": split,
                "coverage": coverage,
                "weights": which,
                "temperature": temperature,
            }
        ),
    }
    cal = fit_calibration(
        pred["outputs"]["logits"][sel],
        np.asarray(pred["label"])[sel],
        np.asarray(pred["snr_r"])[sel],
        coverage=coverage,
        provenance=prov,
        temperature=temperature,
    )
    return cal, save_calibration(run, cal)
