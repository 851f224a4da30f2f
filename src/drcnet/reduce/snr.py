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
