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
"""A sky below this many times a column's read noise makes the arm faint (flag ``faint_arm``)."""
SKY_DETECTION_SIGMA = 5.0
"""The sky fibers' median light must stand this many standard errors of the median above zero."""
MIN_SKY_SHARE = 0.25
"""... and above this share of a column's read noise; below both there is no light at all."""
MAX_UNUSED_SHARE = 0.2
PEDESTAL_EDGE_SHARE = 0.5
"""Unused fibers' light whose stripe edges hold this share of its centre is flat: a pedestal, not fibers."""


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


def light_problems(
    stripes: np.ndarray,
    profile: np.ndarray,
    flux1d: np.ndarray,
    use: np.ndarray,
    sky: np.ndarray,
    unused: np.ndarray,
    objects: np.ndarray,
    read_noise_adu: float,
) -> list[str]:
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
        level, error = sky_level(flux1d, sky)
        if not (level > SKY_DETECTION_SIGMA * error and level > MIN_SKY_SHARE * column_noise):
            problems.append(
                f"the sky fibers show no sky (median {level:.2f} +- {error:.2f} ADU per column, a "
                f"column's read noise {column_noise:.1f}): no light at all"
            )
    if unused.any() and objects.any():
        dark = float(np.median(flux1d[unused]))
        lit = float(np.median(flux1d[objects]))
        if dark > MIN_SKY_SIGMA * column_noise and dark > MAX_UNUSED_SHARE * lit:
            rows = np.nan_to_num(sorted_median(stripes[unused], axis=2).mean(axis=0))  # (11,) mean row profile
            centre, edge = float(rows[rows.size // 2]), float(np.mean(rows[[0, 1, -2, -1]]))
            if centre > 0 and edge > PEDESTAL_EDGE_SHARE * centre:
                problems.append(
                    f"a pedestal of about {edge:.0f} ADU per pixel in the data area: the fibers the map "
                    f"calls Unused show light as flat across their stripes as between fibers (edge "
                    f"{edge:.0f}, centre {centre:.0f} ADU), while the overscan does not show it; the "
                    "bias level of the data area is wrong"
                )
            else:
                problems.append(
                    f"the fibers the map calls Unused show light (median {dark:.0f} ADU per column, "
                    f"objects {lit:.0f}): is the fiber numbering shifted?"
                )
    return problems


def sky_level(flux1d: np.ndarray, sky: np.ndarray) -> tuple[float, float]:
    """Median light of the sky fibers per column (ADU) and its standard error.

    The error is ``1.2533 * sigma / sqrt(n)`` over the ``n`` finite (fiber, column) values, with ``sigma`` their
    robust scatter (1.4826 MAD): the sky's own lines add to the scatter, which only makes it conservative.

    Parameters
    ----------
    flux1d
        ``(n_fibers, n_cols)`` boxcar spectra (net ADU per column).
    sky
        ``(n_fibers,)`` the usable sky fibers.
    """
    values = np.asarray(flux1d[sky], dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    level = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - level)))
    return level, 1.2533 * sigma / np.sqrt(values.size)


def faint_sky(flux1d: np.ndarray, sky: np.ndarray, read_noise_adu: float, n_rows: int) -> str:
    """Why an arm is faint (its sky light detected but under ``MIN_SKY_SIGMA`` column read noises), else ``""``.

    Parameters
    ----------
    flux1d, sky
        As for :func:`sky_level`.
    read_noise_adu
        Read noise per pixel (ADU).
    n_rows
        Rows of a stripe (the aperture of a column's sum).
    """
    if not np.any(sky):
        return ""
    column_noise = np.sqrt(n_rows) * read_noise_adu
    level, _ = sky_level(flux1d, sky)
    if np.isfinite(level) and level <= MIN_SKY_SIGMA * column_noise:
        return (
            f"a faint exposure: the sky fibers' median light is {level:.1f} ADU per column, "
            f"{level / column_noise:.1f} times a column's read noise ({column_noise:.1f})"
        )
    return ""
