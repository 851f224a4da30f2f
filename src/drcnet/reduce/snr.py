"""S/N_r, measured like LAMOST's ``snrr`` on an extracted spectrum (the dataset path and the reduction)."""

from __future__ import annotations

import numpy as np

from drcnet.conventions import R_BAND_A


def measure_snr_r(flux1d: np.ndarray, sky1d: np.ndarray, ivar1d: np.ndarray, wave: np.ndarray) -> float:
    """S/N_r like LAMOST's ``snrr``: median of (flux - sky) * sqrt(ivar) over 5600-6900 A.

    On the red-arm stripe (6025-8540 A) this uses its 6025-6900 A part.

    Parameters
    ----------
    flux1d, sky1d, ivar1d : numpy.ndarray
        ``(n_cols,)``: extracted flux and master sky (ADU), inverse variance (1/ADU^2).
    wave : numpy.ndarray
        ``(n_cols,)`` vacuum wavelength of each column (A).

    Returns
    -------
    float
        The median S/N per column over the r band.

    Raises
    ------
    ValueError
        No column of ``wave`` lies in the r band.
    """
    band = (wave >= R_BAND_A[0]) & (wave <= R_BAND_A[1])
    if not np.any(band):
        raise ValueError("the spectrum does not reach the r band (5600-6900 A)")
    return float(np.median((flux1d[band] - sky1d[band]) * np.sqrt(ivar1d[band])))


def measure_snr_r_all(
    flux1d: np.ndarray, sky1d: np.ndarray, ivar1d: np.ndarray, wave: np.ndarray, skip: np.ndarray | None = None
) -> np.ndarray:
    """:func:`measure_snr_r` of every fiber at once (the same numbers: the median of the same values).

    Parameters
    ----------
    flux1d, sky1d, ivar1d, wave : numpy.ndarray
        ``(n_fibers, n_cols)``, as for :func:`measure_snr_r`.
    skip : numpy.ndarray, optional
        ``(n_fibers,)`` fibers to leave at 0 (e.g. lost traces).

    Returns
    -------
    numpy.ndarray
        ``(n_fibers,)`` float64 S/N_r (0 for skipped fibers).

    Raises
    ------
    ValueError
        A fiber that is not skipped has no column in the r band (names the fiber, 1-based).
    """
    n = flux1d.shape[0]
    out = np.zeros(n)
    use = np.ones(n, dtype=bool) if skip is None else ~np.asarray(skip, dtype=bool)
    if not use.any():
        return out
    band = (wave[use] >= R_BAND_A[0]) & (wave[use] <= R_BAND_A[1])
    counts = band.sum(axis=1)
    if np.any(counts == 0):
        fiber = int(np.flatnonzero(use)[np.argmax(counts == 0)]) + 1
        raise ValueError(f"fiber {fiber}: the spectrum does not reach the r band (5600-6900 A)")
    # the band is a run of columns (wavelength rises with the column): one sorted block over the columns any
    # fiber's band covers, values outside a fiber's band set to +inf so they sort last; the median is then
    # the middle of the first `count` values (the mean of the two middle ones for an even count, as np.median)
    first = band.argmax(axis=1)
    last = band.shape[1] - 1 - band[:, ::-1].argmax(axis=1)
    rows = np.flatnonzero(use)
    if not np.all(last - first + 1 == counts):  # not a run of columns: one fiber at a time
        for f in rows:
            out[f] = measure_snr_r(flux1d[f], sky1d[f], ivar1d[f], wave[f])
        return out
    lo, hi = int(first.min()), int(last.max()) + 1
    vals = (flux1d[rows, lo:hi] - sky1d[rows, lo:hi]) * np.sqrt(ivar1d[rows, lo:hi])
    vals = np.where(band[:, lo:hi], vals, np.inf)
    if not np.isfinite(vals[band[:, lo:hi]]).all():  # NaN/inf values: np.median's own handling
        for f in rows:
            out[f] = measure_snr_r(flux1d[f], sky1d[f], ivar1d[f], wave[f])
        return out
    vals.sort(axis=1)
    i = np.arange(rows.size)
    mid = counts // 2
    odd = counts % 2 == 1
    out[rows] = np.where(odd, vals[i, mid], (vals[i, np.maximum(mid - 1, 0)] + vals[i, mid]) / 2.0)
    return out
