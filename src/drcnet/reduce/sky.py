"""Relative fiber efficiency from the flat and the master sky from the sky fibers.

Master sky (``sky1d``), per arm:

1. each fiber's efficiency curve ``e_f(x)`` is its flat aperture sum divided by
   the median over the traced fibers at the same column, smoothed along the
   columns (it holds the fiber throughput and the share of the light in its
   11-row aperture);
2. each sky fiber's boxcar spectrum is divided by its efficiency and put on its
   own wavelength grid (from the arc);
3. for every fiber, the sky fibers are interpolated (linearly) onto *that
   fiber's* wavelength grid, combined with an outlier-clipped mean (cosmic
   rays in single sky fibers are dropped), and multiplied by ``e_f``.

So ``sky1d`` is the sky this fiber's aperture would collect, in ADU per
column, like the dataset path's master sky. LAMOST fits a B-spline to the sky
fibers instead; a clipped mean of 20 interpolated spectra is the simplest
estimate with the same noise behaviour (noise / sqrt(20)).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from drcnet.reduce.calib import sorted_median


def fiber_efficiency(flat_flux: np.ndarray, usable: np.ndarray, smooth: int = 51) -> np.ndarray:
    """Relative efficiency ``(n_fibers, n_cols)`` of each fiber from its flat aperture sums.

    Unusable fibers (lost traces) get 1.
    """
    ref = sorted_median(flat_flux[usable], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(ref > 0, flat_flux / ref, np.nan)
    ratio = np.nan_to_num(ratio, nan=1.0)
    eff = uniform_filter1d(ratio, smooth, axis=1, mode="nearest")
    eff[~usable] = 1.0
    return np.clip(eff, 1e-3, None)


def master_sky(
    sky_flux: np.ndarray,
    sky_wave: np.ndarray,
    sky_eff: np.ndarray,
    wave: np.ndarray,
    eff: np.ndarray,
    clip_sigma: float = 4.0,
) -> np.ndarray:
    """Master sky for every fiber on its own wavelength grid ``(n_fibers, n_cols)``.

    Parameters
    ----------
    sky_flux, sky_wave, sky_eff
        Boxcar spectra, wavelengths and efficiencies of the sky fibers ``(n_sky, n_cols)``.
    wave, eff
        Wavelengths and efficiencies of the fibers to make the sky for ``(n_fibers, n_cols)``.
    clip_sigma
        A sky fiber's pixel more than this many robust sigmas from the median of
        all sky fibers (on its own grid) is replaced by that median, with its
        two neighbours (cosmic rays are a few pixels wide).
    """
    n_sky = sky_flux.shape[0]
    if n_sky == 0:
        raise ValueError("no usable sky fibers: cannot build the master sky")
    norm = sky_flux / sky_eff
    clean = clean_sky(norm, sky_wave, clip_sigma)
    total = np.zeros(wave.size)
    flat_wave = wave.ravel()
    for s in range(n_sky):
        total += np.interp(flat_wave, sky_wave[s], clean[s])
    return total.reshape(wave.shape) / n_sky * eff


def clean_sky(norm: np.ndarray, sky_wave: np.ndarray, clip_sigma: float = 4.0) -> np.ndarray:
    """Sky fibers' spectra with cosmic rays replaced by the median of all sky fibers on their own grid.

    All sky fibers at once: the medians of the ``(n_sky, n_sky, n_cols)`` block of every fiber
    interpolated onto every fiber's grid are the per-fiber medians of the one-fiber-at-a-time reference in ``tests/reduce_references.py``
    (the reference), the same numbers.

    Parameters
    ----------
    norm
        ``(n_sky, n_cols)`` sky spectra divided by their efficiency (ADU).
    sky_wave
        ``(n_sky, n_cols)`` their wavelengths (A).
    clip_sigma
        A pixel further than this many robust sigmas from the median (with its two neighbours) is replaced.

    Returns
    -------
    numpy.ndarray
        ``(n_sky, n_cols)``; ``norm`` unchanged (a copy) with fewer than 3 sky fibers.
    """
    n_sky = norm.shape[0]
    clean = norm.copy()
    if n_sky < 3:
        return clean
    others = np.stack(
        [np.stack([np.interp(sky_wave[s], sky_wave[t], norm[t]) for t in range(n_sky)]) for s in range(n_sky)]
    )  # (s, t, cols)
    med = sorted_median(others, axis=1)
    mad = 1.4826 * sorted_median(np.abs(others - med[:, None, :]), axis=1)
    scale = np.maximum(mad, np.sqrt(np.clip(np.abs(med), 1.0, None)))
    bad = np.abs(norm - med) > clip_sigma * scale
    bad = bad | np.roll(bad, 1, axis=1) | np.roll(bad, -1, axis=1)
    return np.where(bad, med, norm)
