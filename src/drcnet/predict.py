"""Class probabilities from a trained model: in-memory arrays or a dataset file, and the prediction table.

* :func:`predict_arrays` - probabilities for raw arrays held in memory (stripes or 1D spectra);
  whole-exposure classification reuses it.
* :func:`predict_dataset` - probabilities for (a split of) a dataset file, streamed from disk.
* :func:`predictions_csv` - the ``drcnet predict`` table.

The same normalisation as in training is applied (:func:`drcnet.data.normalize.prepare_input`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from drcnet.conventions import CLASSES
from drcnet.data.normalize import prepare_input
from drcnet.data.torch_dataset import SpectraDataset

PRED_COLUMNS = ("object_id", "label", "pred", "prob_F", "prob_G", "prob_K", "snr_r", "bad_input")
"""Columns of the prediction table; ``bad_input`` is 1 for an object whose input holds NaN/inf pixels
(it gets no class: ``pred`` empty, probabilities ``nan``)."""


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


@torch.inference_mode()
def predict_arrays(model: torch.nn.Module, stripes: Any = None, flux1d: Any = None, sky1d: Any = None,
                   batch_size: int = 64) -> np.ndarray:
    """Class probabilities for raw, un-normalised inputs held in memory.

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
    numpy.ndarray
        ``(N, 3)`` float32 softmax probabilities in :data:`drcnet.CLASSES` order; all ``nan`` for an
        object whose input holds a NaN or inf pixel (no class is made up for damaged data).

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
    bad = ~finite_rows(main)
    if sky1d is not None and kind != "stripes":
        bad |= ~finite_rows(sky1d)
    out[bad] = np.nan
    model.train(was_training)
    return out[0] if single else out


@torch.inference_mode()
def predict_dataset(model: torch.nn.Module, data: str | Path, split: str | None = None, batch_size: int = 64,
                    workers: int = 1, progress: bool = False) -> dict[str, Any]:
    """Probabilities for every object of ``split`` (``None``: all) of a dataset file, read lazily.

    Returns a dict of arrays: ``object_id`` (list), ``rows`` (index of each object in the file),
    ``label`` (-1 unknown), ``snr_r``, ``snr_bin``, ``prob`` ``(N, 3)``, ``pred`` and ``valid``
    (False where the input holds NaN/inf pixels: ``prob`` is ``nan`` and ``pred`` -1 there).
    """
    from tqdm.auto import tqdm

    kind = getattr(model, "input_kind", "stripes")
    ds = SpectraDataset(data, kind, split, with_validity=True)
    model.eval()
    device = _device_of(model)
    prob = np.empty((len(ds), len(CLASSES)), dtype=np.float32)
    valid = np.ones(len(ds), dtype=bool)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers if len(ds) > batch_size else 0,
                        pin_memory=device.type == "cuda")
    for x, _, idx, ok in tqdm(loader, desc="predict", disable=not progress, leave=False):
        logits = model(x.to(device, non_blocking=True))
        prob[idx.numpy()] = torch.softmax(logits.float(), dim=1).cpu().numpy()
        valid[idx.numpy()] = ok.numpy()
    prob[~valid] = np.nan
    pred = np.where(valid, np.nan_to_num(prob).argmax(axis=1), -1) if len(ds) else np.zeros(0, np.int64)
    return {"object_id": ds.object_id, "rows": np.asarray(ds.rows, dtype=np.int64),
            "label": ds.labels.astype(np.int64), "snr_r": ds.snr_r,
            "snr_bin": ds.snr_bin.astype(np.int64), "prob": prob, "pred": pred, "valid": valid}


def predictions_csv(pred: dict[str, Any]) -> str:
    """CSV text with :data:`PRED_COLUMNS`; label and pred as class letters, empty when unknown / not classified."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(PRED_COLUMNS)
    for i, oid in enumerate(pred["object_id"]):
        lab = int(pred["label"][i])
        p = pred["prob"][i]
        k = int(pred["pred"][i])
        w.writerow([oid, CLASSES[lab] if lab >= 0 else "", CLASSES[k] if k >= 0 else "",
                    f"{p[0]:.6f}", f"{p[1]:.6f}", f"{p[2]:.6f}", f"{float(pred['snr_r'][i]):.3f}", int(k < 0)])
    return buf.getvalue()
