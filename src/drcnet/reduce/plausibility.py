"""Is an arm's science frame what a sky exposure looks like? Statistics that catch a damaged frame.

A frame that is all zeros, pure noise, unlit, or whose light does not follow the
fibers' traces can still be reduced to numbers, and a model may still return
confident classes for them (the shipped model even ignores its red arm). The
reduction therefore checks each arm's science frame against what any sky
exposure must show, independently of the model, and flags every fiber of an
implausible arm (``bad_arm``):

* the raw pixels are not mostly zero and not constant;
* the overscan noise matches the read noise (``0.5 ..  3`` times it);
* the light in the stripes follows the flat's spatial profile (correlation of the
  mean profiles above ``min_profile_corr``);
* the sky fibers show sky light (median above ``min_sky_sigma`` times the noise of a
  column's aperture sum);
* the fibers the fiber map calls Unused show no more light than a small share of the
  object fibers' (else the fiber numbering is off).

Arrays only; :func:`drcnet.workflows.reduce_exposure.reduce_arm` calls it.
"""

from __future__ import annotations

import numpy as np

from drcnet.reduce.calib import sorted_median

MAX_ZERO_SHARE = 0.01
NOISE_RATIO = (0.5, 3.0)
MIN_PROFILE_CORR = 0.8
MIN_SKY_SIGMA = 3.0
MAX_UNUSED_SHARE = 0.2


def raw_problems(data: np.ndarray, overscan: np.ndarray, read_noise_adu: float, step: int = 8) -> list[str]:
    """Problems visible in the raw pixels: zeros, a constant frame, overscan noise unlike the read noise.

    Parameters
    ----------
    data
        Data area ``(rows, cols)`` (ADU; uint16, or float with NaN).
    overscan
        ``(rows, 2, n_overscan)`` overscan pixels.
    read_noise_adu
        The read noise the header (or configuration) gives, ADU.
    step
        Subsampling of the data area (every ``step``-th row and column).
    """
    problems = []
    sub = np.asarray(data[::step, ::step], dtype=np.float64)
    sub = sub[np.isfinite(sub)]
    if sub.size == 0:
        return ["no finite pixels"]
    zero = float(np.mean(sub == 0))
    if zero > MAX_ZERO_SHARE:
        problems.append(f"{100 * zero:.0f} % of the pixels are 0")
    if float(np.ptp(sub)) == 0:
        problems.append(f"every pixel is {sub[0]:g}")
    o = np.asarray(overscan, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        dev = o - np.nanmedian(o, axis=2, keepdims=True)
        noise = 1.4826 * float(np.nanmedian(np.abs(dev))) if np.isfinite(dev).any() else float("nan")
    noise = noise if noise > 0 else float(np.nanstd(dev)) if np.isfinite(dev).any() else float("nan")
    lo, hi = NOISE_RATIO
    if not (lo * read_noise_adu <= noise <= hi * read_noise_adu):
        problems.append(f"overscan noise {noise:.2f} ADU, the read noise is {read_noise_adu:.2f} ADU")
    return problems


def light_problems(stripes: np.ndarray, profile: np.ndarray, flux1d: np.ndarray, use: np.ndarray,
                   sky: np.ndarray, unused: np.ndarray, objects: np.ndarray, read_noise_adu: float) -> list[str]:
    """Problems in the light of the reduced stripes.

    Parameters
    ----------
    stripes, profile
        ``(n_fibers, 11, n_cols)`` science stripes (net ADU) and the flat's normalised profile.
    flux1d
        ``(n_fibers, n_cols)`` boxcar spectra.
    use
        ``(n_fibers,)`` traced, unsaturated fibers to compare profiles on.
    sky, unused, objects
        ``(n_fibers,)`` the fiber map's sky, Unused and object fibers (traced).
    read_noise_adu
        Read noise per pixel (ADU).
    """
    problems = []
    if use.any():
        sci = np.nan_to_num(sorted_median(stripes[use], axis=2).mean(axis=0))
        flat = np.nan_to_num(profile[use].mean(axis=(0, 2)))
        corr = float(np.corrcoef(sci, flat)[0, 1]) if np.ptp(sci) > 0 and np.ptp(flat) > 0 else 0.0
        if not corr > MIN_PROFILE_CORR:
            problems.append(f"the light does not follow the traces (profile correlation with the flat {corr:.2f})")
    column_noise = np.sqrt(stripes.shape[1]) * read_noise_adu
    if sky.any():
        level = float(np.median(flux1d[sky]))
        if not level > MIN_SKY_SIGMA * column_noise:
            problems.append(f"the sky fibers show no sky (median {level:.1f} ADU per column, noise "
                            f"{column_noise:.1f})")
    if unused.any() and objects.any():
        dark = float(np.median(flux1d[unused]))
        lit = float(np.median(flux1d[objects]))
        if dark > MIN_SKY_SIGMA * column_noise and dark > MAX_UNUSED_SHARE * lit:
            problems.append(f"the fibers the map calls Unused show light (median {dark:.0f} ADU per column, objects "
                            f"{lit:.0f}): is the fiber numbering shifted?")
    return problems
