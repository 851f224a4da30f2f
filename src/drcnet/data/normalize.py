"""Input normalisation: the paper's Z-score, in one place for training, evaluation and prediction.

* 2D input (DRC-Net, FFCNN): each arm's 11 x 3000 stripe is Z-scored on its own,
  ``z = (x - mean) / std`` over its 33,000 pixels (paper eq. 1).
* 1D input (RC-Net): each arm's sky-subtracted aperture spectrum ``flux1d - sky1d`` is Z-scored
  on its own (3000 pixels), then blue and red are concatenated along wavelength: ``(1, 6000)``.

A constant (or all-zero, e.g. dead-fiber) input has ``std == 0``: it is mapped to zeros instead of
NaN/inf (the std is floored at :data:`EPS` and the mean still removed). Non-finite pixels are set
to the mean (0 after normalisation) so one bad pixel cannot poison a batch.
Computation is in float64 for the statistics (float16 stripes hold values up to 65504) and the
result is float32.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-6
"""Floor for the standard deviation (input units); below it the input counts as constant."""


def zscore(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Z-score ``x`` over ``axes`` (kept per remaining index), float32 out, safe for std 0 and NaN."""
    x = np.asarray(x)
    xf = x.astype(np.float64, copy=False)
    finite = np.isfinite(xf)
    if not finite.all():
        n = np.maximum(finite.sum(axis=axes, keepdims=True), 1)
        mean = np.where(finite, xf, 0.0).sum(axis=axes, keepdims=True) / n
        xf = np.where(finite, xf, mean)
    mean = xf.mean(axis=axes, keepdims=True)
    std = xf.std(axis=axes, keepdims=True)
    std = np.where(std > EPS, std, 1.0)
    return ((xf - mean) / std).astype(np.float32)


def zscore_stripes(stripes: np.ndarray) -> np.ndarray:
    """Z-score every 2D stripe on its own.

    Parameters
    ----------
    stripes
        ``(..., rows, cols)``: e.g. ``(2, 11, 3000)`` for one object or ``(N, 2, 11, 3000)``.

    Returns
    -------
    numpy.ndarray
        float32, same shape, each ``(rows, cols)`` stripe with mean 0 and std 1 (or all 0 if constant).
    """
    stripes = np.asarray(stripes)
    if stripes.ndim < 2:
        raise ValueError(f"stripes need at least 2 dimensions (rows, cols), got shape {stripes.shape}")
    return zscore(stripes, (-2, -1))


def zscore_spectra1d(flux1d: np.ndarray, sky1d: np.ndarray | None = None) -> np.ndarray:
    """RC-Net input: per-arm Z-score of ``flux1d - sky1d``, arms concatenated along wavelength.

    Parameters
    ----------
    flux1d
        ``(..., arms, cols)``: ``(2, 3000)`` for one object or ``(N, 2, 3000)``.
    sky1d
        Same shape, subtracted first; ``None`` for already sky-subtracted spectra.

    Returns
    -------
    numpy.ndarray
        float32 ``(..., 1, arms * cols)``: ``(1, 6000)`` per object.
    """
    flux1d = np.asarray(flux1d)
    if flux1d.ndim < 2:
        raise ValueError(f"flux1d needs (arms, cols) per object, got shape {flux1d.shape}")
    x = flux1d.astype(np.float64)
    if sky1d is not None:
        sky1d = np.asarray(sky1d)
        if sky1d.shape != flux1d.shape:
            raise ValueError(f"sky1d shape {sky1d.shape} differs from flux1d shape {flux1d.shape}")
        x = x - sky1d
    z = zscore(x, (-1,))
    return z.reshape(*z.shape[:-2], 1, z.shape[-2] * z.shape[-1])


def prepare_input(kind: str, stripes: np.ndarray | None = None, flux1d: np.ndarray | None = None,
                  sky1d: np.ndarray | None = None) -> np.ndarray:
    """The normalised model input of kind ``"stripes"`` or ``"spectra1d"`` from raw arrays."""
    if kind == "stripes":
        if stripes is None:
            raise ValueError("this model takes 2D stripes: pass stripes=(N, 2, 11, 3000)")
        return zscore_stripes(stripes)
    if kind == "spectra1d":
        if flux1d is None:
            raise ValueError("this model takes 1D spectra: pass flux1d=(N, 2, 3000) (and sky1d)")
        return zscore_spectra1d(flux1d, sky1d)
    raise ValueError(f"unknown input kind {kind!r}; expected 'stripes' or 'spectra1d'")
