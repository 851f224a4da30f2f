"""Class probabilities from a trained model: in-memory arrays or a dataset file, and the prediction table.

* :func:`predict_arrays` - probabilities for raw arrays held in memory (stripes or 1D spectra);
  whole-exposure classification reuses it.
* :func:`predict_arrays_all` - every model output (:meth:`~drcnet.models.SpectralModel.forward_all`) for
  raw arrays held in memory.
* :func:`predict_dataset` - probabilities for (a split of) a dataset file, streamed from disk.
* :func:`predictions_csv` - the ``drcnet predict`` table (:func:`drcnet.catalogue.catalogue_columns`).

The same normalisation as in training is applied (:func:`drcnet.data.normalize.prepare_input`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from drcnet.catalogue import CATALOGUE_COLUMNS
from drcnet.conventions import CLASSES_WITH_OTHER
from drcnet.data.normalize import prepare_input
from drcnet.data.torch_dataset import SpectraDataset

if TYPE_CHECKING:
    from drcnet.calibration import Calibration

PRED_COLUMNS: tuple[str, ...] = ("object_id", "label", *CATALOGUE_COLUMNS, "snr_r", "bad_input")
"""Columns of the prediction table: ``object_id``, ``label`` (true class name from the file, ``other``
included; empty when unknown), the catalogue columns (:data:`drcnet.catalogue.CATALOGUE_COLUMNS`:
``pred``, calibrated ``prob_*``, ``pred_set``, ``subclass``, ``lum_class``, Teff/log g/[Fe/H] with
errors, ``ood_score``, ``ood``), ``snr_r`` and ``bad_input``: 1 for an object whose input holds NaN/inf
pixels (it gets no class: ``pred`` empty, probabilities ``nan``)."""


def finite_rows(a: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: True where object ``i`` of ``a`` (shape ``(N, ...)``) has only finite values."""
    return np.isfinite(a.reshape(len(a), -1)).all(axis=1)


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


def _forward_all(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every output of ``model`` for a batch (``{"logits": model(x)}`` for a model without ``forward_all``)."""
    fwd = getattr(model, "forward_all", None)
    return fwd(x) if callable(fwd) else {"logits": model(x)}


def _store(outputs: dict[str, np.ndarray], batch: dict[str, torch.Tensor], rows: Any, n: int) -> None:
    """Copy one batch of model outputs into the ``(n, ...)`` float32 arrays of ``outputs`` (made on first use, NaN)."""
    for name, t in batch.items():
        a = t.detach().float().cpu().numpy()
        if name not in outputs:
            outputs[name] = np.full((n, *a.shape[1:]), np.nan, dtype=np.float32)
        outputs[name][rows] = a


def probabilities(logits: np.ndarray) -> np.ndarray:
    """``(N, C)`` float32 softmax of ``(N, C)`` logits; a row with a non-finite logit stays ``nan``."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


@torch.inference_mode()
def predict_arrays_all(model: torch.nn.Module, stripes: Any = None, flux1d: Any = None, sky1d: Any = None,
                       batch_size: int = 64) -> dict[str, np.ndarray]:
    """Every model output for raw, un-normalised inputs held in memory.

    Parameters
    ----------
    model
        A model from :mod:`drcnet.models` (e.g. from :func:`drcnet.models.load_run`); its
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
    dict of numpy.ndarray
        Output name -> float32 ``(N, ...)`` array (``(...)`` for a single object): ``"logits"`` ``(N, C)``
        (C = 3 or 4) always, and for a model with catalogue heads ``"subclass_logits"`` ``(N, 24)``,
        ``"lum_logits"`` ``(N, 2)``, ``"params_mean"`` / ``"params_sigma"`` ``(N, 3)`` (Teff in K, log g
        and [Fe/H] in dex), ... (:meth:`~drcnet.models.SpectralModel.forward_all`). Every row of an object
        whose input holds a NaN or inf pixel is ``nan`` (no answer is made up for damaged data).

    Raises
    ------
    ValueError
        The array the model needs is not given.

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
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(main), batch_size):
        sl = slice(start, start + batch_size)
        if kind == "stripes":
            x = prepare_input(kind, stripes=main[sl])
        else:
            x = prepare_input(kind, flux1d=main[sl], sky1d=None if sky1d is None else sky1d[sl])
        _store(out, _forward_all(model, torch.from_numpy(x).to(device)), sl, len(main))
    bad = ~finite_rows(main)
    if sky1d is not None and kind != "stripes":
        bad |= ~finite_rows(sky1d)
    for a in out.values():
        a[bad] = np.nan
    model.train(was_training)
    return {k: v[0] for k, v in out.items()} if single else out


def predict_arrays(model: torch.nn.Module, stripes: Any = None, flux1d: Any = None, sky1d: Any = None,
                   batch_size: int = 64) -> np.ndarray:
    """Class probabilities for raw, un-normalised inputs held in memory.

    Parameters are those of :func:`predict_arrays_all`.

    Returns
    -------
    numpy.ndarray
        ``(N, C)`` (or ``(C,)`` for one object) float32 softmax probabilities in the model's class order
        (:func:`drcnet.conventions.class_names`: F, G, K and, for a four-class model, ``other``); all
        ``nan`` for an object whose input holds a NaN or inf pixel.
    """
    logits = predict_arrays_all(model, stripes=stripes, flux1d=flux1d, sky1d=sky1d, batch_size=batch_size)["logits"]
    return probabilities(logits[None])[0] if logits.ndim == 1 else probabilities(logits)


@torch.inference_mode()
def predict_dataset(model: torch.nn.Module, data: str | Path, split: str | None = None, batch_size: int = 64,
                    workers: int = 1, progress: bool = False) -> dict[str, Any]:
    """Probabilities for every object of ``split`` (``None``: all) of a dataset file, read lazily.

    Returns a dict of arrays: ``object_id`` (list), ``rows`` (index of each object in the file),
    ``label`` (-1 unknown, 3 ``other``), ``snr_r``, ``snr_bin``, ``prob`` ``(N, C)`` (C = 3 or 4, the
    model's classes), ``pred`` and ``valid`` (False where the input holds NaN/inf pixels: ``prob`` is
    ``nan`` and ``pred`` -1 there), and ``outputs``: every model output as in :func:`predict_arrays_all`
    (name -> float32 ``(N, ...)``, ``nan`` rows for invalid input).
    """
    from tqdm.auto import tqdm

    kind = getattr(model, "input_kind", "stripes")
    ds = SpectraDataset(data, kind, split, with_validity=True)
    model.eval()
    device = _device_of(model)
    outputs: dict[str, np.ndarray] = {}
    valid = np.ones(len(ds), dtype=bool)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers if len(ds) > batch_size else 0,
                        pin_memory=device.type == "cuda")
    for x, _, idx, ok in tqdm(loader, desc="predict", disable=not progress, leave=False):
        _store(outputs, _forward_all(model, x.to(device, non_blocking=True)), idx.numpy(), len(ds))
        valid[idx.numpy()] = ok.numpy()
    if "logits" not in outputs:  # no object: an empty (0, C) answer
        n_classes = int(getattr(getattr(model, "config", None), "n_classes", 3))
        outputs["logits"] = np.zeros((0, n_classes), dtype=np.float32)
    for a in outputs.values():
        a[~valid] = np.nan
    prob = probabilities(outputs["logits"])
    pred = np.where(valid, np.nan_to_num(prob).argmax(axis=1), -1) if len(ds) else np.zeros(0, np.int64)
    return {"object_id": ds.object_id, "rows": np.asarray(ds.rows, dtype=np.int64),
            "label": ds.labels.astype(np.int64), "snr_r": ds.snr_r,
            "snr_bin": ds.snr_bin.astype(np.int64), "prob": prob, "pred": pred, "valid": valid,
            "outputs": outputs}


def _fmt(x: Any, digits: int) -> str:
    """A float cell: fixed ``digits`` decimals, ``nan`` for a missing value."""
    x = float(x)
    return f"{x:.{digits}f}" if np.isfinite(x) else "nan"


_DIGITS = {"prob_F": 6, "prob_G": 6, "prob_K": 6, "prob_other": 6, "subclass_prob": 6, "teff": 1, "teff_err": 1,
           "logg": 4, "logg_err": 4, "feh": 4, "feh_err": 4, "ood_score": 4}
"""Decimals of each float column of the prediction table."""


def predictions_csv(pred: dict[str, Any], calibration: Calibration | None = None) -> str:
    """CSV text with :data:`PRED_COLUMNS` for the output of :func:`predict_dataset`.

    Parameters
    ----------
    pred
        :func:`predict_dataset` output (``outputs`` holds the raw model outputs; an older dict with only
        ``prob`` is taken as the logits ``log(prob)``).
    calibration
        The run's calibration (:func:`drcnet.calibration.load_calibration`); None: plain softmax, empty
        ``pred_set``, ``ood`` 0.

    Returns
    -------
    str
        The table; ``label`` and ``pred`` as class names (``other`` included), empty when unknown / not
        classified; missing floats as ``nan``; string columns empty where they do not apply.
    """
    from drcnet.catalogue import catalogue_columns

    outputs = pred.get("outputs")
    if not outputs:
        with np.errstate(divide="ignore", invalid="ignore"):
            outputs = {"logits": np.log(np.clip(np.asarray(pred["prob"], dtype=np.float64), 1e-300, None))}
    cols = catalogue_columns(outputs, np.asarray(pred["snr_r"]), calibration)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(PRED_COLUMNS)
    for i, oid in enumerate(pred["object_id"]):
        lab = int(pred["label"][i])
        row: list[Any] = [oid, CLASSES_WITH_OTHER[lab] if 0 <= lab < len(CLASSES_WITH_OTHER) else ""]
        for name in CATALOGUE_COLUMNS:
            v = cols[name][i]
            row.append(_fmt(v, _DIGITS[name]) if name in _DIGITS else v)
        row += [f"{float(pred['snr_r'][i]):.3f}", int(cols["pred_index"][i] < 0)]
        w.writerow(row)
    return buf.getvalue()
