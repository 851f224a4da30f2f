"""The science frame's stripes and their 1D spectra: cut, flat profile, boxcar and optimal extraction.

Steps 4-6 of the arm recipe (:mod:`drcnet.reduce.recipe`), on arrays:

* :func:`cut_science` -- the paper's 11 x 3000 stripe of every fiber (centre pixel +-5, columns
  500..3499), net of overscan with the forward model's arithmetic; saturated and NaN pixels, detector
  defect columns (:class:`ScienceStripes`);
* :func:`flat_profile` -- the flat's spatial profile in the same pixels and each fiber's flat flux
  (:func:`bad_flat_fibers`: fibers whose flat aperture holds NaN pixels);
* :func:`extract_spectra` -- optimal (Horne) and boxcar extraction; NaN pixels replaced by the fit,
  defect columns interpolated, spikes repaired.

The CCD's rows and amplifier boundary come in as a :class:`~drcnet.hardware.Detector`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drcnet.conventions import STRIPE_COL_START, STRIPE_COL_STOP, stripe_columns
from drcnet.hardware import Detector
from drcnet.reduce.calib import quiet_nan_warnings, robust_levels
from drcnet.reduce.extract import (
    OptimalResult,
    boxcar,
    extraction_chi2,
    optimal_extract,
    repaired_stripes,
    smooth_columns,
    spatial_profile,
)
from drcnet.reduce.flexure import adjacent, outshone, recentre_profile
from drcnet.reduce.spikes import repair_spikes, spike_columns
from drcnet.reduce.stripes import StripePixels, cut_stripes


@dataclass
class ScienceStripes:
    """The science frame's stripes and what the raw pixels say about them (from :func:`cut_science`)."""

    pixels: StripePixels
    stripes: np.ndarray
    """``(n_fibers, 11, 3000)`` float64 net ADU (NaN for bad or off-CCD pixels)."""
    saturated: np.ndarray
    """``(n_fibers,)`` a raw pixel reaches the saturation level."""
    bad: np.ndarray
    """``(n_fibers, 11, 3000)`` pixels the extraction must not use: non-finite, or in a defect column."""
    bad_fiber: np.ndarray | None = None
    """``(n_fibers,)`` NaN pixels in the stripe outside the defect columns (the ``bad_pixels`` flag)."""
    bad_level: np.ndarray | None = None
    """``(n_fibers,)`` the stripe crosses an overscan row whose level could not be measured."""
    defect: np.ndarray | None = None
    """``(3000,)`` stripe columns saturated or NaN across many fibers: a detector defect, interpolated."""
    level: np.ndarray | None = None
    """``(rows, 2)`` the overscan level of each row and amplifier that was subtracted (ADU)."""

    def __post_init__(self) -> None:
        n = self.stripes.shape[0]
        if self.bad_fiber is None:
            self.bad_fiber = np.asarray(self.bad.any(axis=(1, 2)))
        if self.bad_level is None:
            self.bad_level = np.zeros(n, dtype=bool)
        if self.defect is None:
            self.defect = np.zeros(self.stripes.shape[2], dtype=bool)


def cut_science(
    sci_raw: np.ndarray,
    sci_overscan: np.ndarray,
    data_col_offset: int,
    centres: np.ndarray,
    bias_pattern: np.ndarray | None,
    saturation: float,
    defect_share: float = 0.25,
    *,
    detector: Detector,
) -> ScienceStripes:
    """Cut every fiber's stripe from the science frame: exactly the forward model's arithmetic.

    The overscan level of each row is outlier-resistant (:func:`~drcnet.reduce.calib.robust_levels`;
    the plain mean on a clean frame). A stripe column that is saturated or NaN in more
    than ``defect_share`` of the fibers is a detector defect (a bad column): its pixels
    are left to the extraction to interpolate and do not flag the fibers.

    Parameters
    ----------
    sci_raw, sci_overscan
        The raw science frame (uint16, or float32 with NaN) and its overscan ``(rows, 2, n_overscan)``.
    centres
        Trace rows ``(n_fibers, 4096)``.
    saturation
        ADC ceiling (ADU).
    defect_share
        Share of the fibers above which a bad stripe column is a detector defect.
    detector
        The CCD: rows and amplifier boundary.
    """
    cols = stripe_columns()
    pixels = StripePixels.from_centres(
        centres[:, cols], cols, n_rows=detector.n_rows, amp_boundary=detector.amp_boundary
    )
    level, repaired = robust_levels(sci_overscan)
    stripes, raw = cut_stripes(sci_raw, level, pixels, data_col_offset, bias_pattern)
    sat = raw >= saturation
    # integer pixels are finite: only pixels off the CCD are NaN
    nan = pixels.off.copy() if raw.dtype.kind in "ui" else ~np.isfinite(stripes)
    defect = (sat | nan).any(axis=1).mean(axis=0) > defect_share
    saturated = np.any(sat & ~defect[None, None, :], axis=(1, 2))
    bad = nan | (sat & defect[None, None, :])
    bad_fiber = np.any(nan & ~defect[None, None, :], axis=(1, 2))
    bad_level = np.zeros(stripes.shape[0], dtype=bool)
    if repaired.any():
        amp = (pixels.cols >= detector.amp_boundary).astype(np.intp)
        bad_level = repaired[pixels.rows, amp[None, None, :]].any(axis=(1, 2))
    return ScienceStripes(
        pixels=pixels,
        stripes=stripes,
        saturated=saturated,
        bad=bad,
        bad_fiber=bad_fiber,
        bad_level=bad_level,
        defect=defect,
        level=level,
    )


def flat_profile(
    flat_net: np.ndarray,
    pixels: StripePixels,
    smooth_cols: int,
    centres: np.ndarray | None = None,
    sigma_px: float = 2.55,
) -> tuple[np.ndarray, np.ndarray]:
    """The flat's normalised spatial profile in the stripe pixels and each fiber's flat flux.

    Where a fiber's flat aperture holds NaN pixels (see :func:`bad_flat_fibers`), its
    profile in those columns is a Gaussian of width ``sigma_px`` about its trace
    (``centres`` at the stripe columns; required then) and its flat flux the median
    of its good neighbours (two on each side), so the fiber efficiency and the sky
    scale are not pulled down.

    Returns
    -------
    profile, flat_flux
        ``(n_fibers, 11, 3000)`` (each column sums to 1) and ``(n_fibers, 3000)`` aperture sums (ADU).
    """
    lo, hi = STRIPE_COL_START - smooth_cols, STRIPE_COL_STOP + smooth_cols
    smooth = smooth_columns(flat_net[:, lo:hi], smooth_cols)
    profile = spatial_profile(pixels.take(smooth, -lo))
    flat_st = pixels.take(flat_net)
    flat_flux = flat_st.sum(axis=1) if not np.isnan(flat_st).any() else np.nansum(flat_st, axis=1)
    if flat_net.dtype.kind == "f" and centres is not None:
        nan_fc = np.isnan(flat_st).any(axis=1)  # (fibers, columns)
        touched = np.convolve(nan_fc.any(axis=0).astype(float), np.ones(2 * smooth_cols + 1), mode="same") > 0
        bad_fc = nan_fc | (nan_fc.any(axis=1)[:, None] & touched[None, :])
        for f in np.flatnonzero(bad_fc.any(axis=1)):
            c = bad_fc[f]
            d = (pixels.rows[f][:, c] - centres[f, c][None, :]) / sigma_px
            g = np.exp(-0.5 * d**2)
            profile[f][:, c] = (g / g.sum(axis=0, keepdims=True)).astype(profile.dtype)
            nb = [k for k in (f - 2, f - 1, f + 1, f + 2) if 0 <= k < flat_flux.shape[0]]
            vals = np.where(bad_fc[nb][:, c], np.nan, flat_flux[nb][:, c])
            with np.errstate(invalid="ignore"), quiet_nan_warnings():
                flat_flux[f, c] = np.nan_to_num(np.nanmedian(vals, axis=0), nan=0.0)
    return profile, flat_flux


def bad_flat_fibers(flat_net: np.ndarray, pixels: StripePixels) -> np.ndarray:
    """``(n_fibers,)`` fibers whose flat aperture (the stripe pixels) holds NaN pixels."""
    if flat_net.dtype.kind != "f" or not np.isnan(flat_net).any():
        return np.zeros(pixels.shape[0], dtype=bool)
    return np.isnan(pixels.take(flat_net)).any(axis=(1, 2))


def extract_spectra(
    science: ScienceStripes, profile: np.ndarray, gain: float, read_noise_adu: float, clip_sigma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, OptimalResult]:
    """Optimal and boxcar extraction of every stripe.

    The flat's profile is first re-centred on each fiber's science light where the two are 0.5 px or more
    apart (:func:`drcnet.reduce.flexure.recentre_profile`; the measured shift is ``optimal.profile_shift``),
    except on saturated fibers and fibers next to a saturated one or one more than 100 times brighter.
    What each stripe holds beyond its optimal spectrum is ``optimal.chi2``
    (:func:`~drcnet.reduce.extract.extraction_chi2`, pixels in ``science.bad`` left out).
    NaN pixels are replaced by the fitted profile so the stripe stays usable
    (:func:`~drcnet.reduce.extract.repaired_stripes`; the fiber is flagged ``bad_pixels``);
    where a fiber's column has no pixel left, the fit's flux there is interpolated from the neighbouring
    columns (``optimal.filled``) and both extractions get zero inverse variance. Defect columns
    (``science.defect``) are interpolated from the nearest good columns in the stripes and both
    extractions and get zero inverse variance. Spikes along wavelength in the optimal spectra (a hit
    across the whole aperture, :func:`~drcnet.reduce.spikes.spike_columns`) are repaired there
    (``optimal.spikes``; saturated fibers are left alone).

    Returns
    -------
    stripes, flux1d, ivar1d, optimal
        The stripes (masked pixels replaced), the boxcar flux and inverse variance
        ``(n_fibers, 3000)``, and the optimal extraction.
    """
    stripes, bad = science.stripes, science.bad
    # flexure between the flat and the science frame: the profile re-centred on the light where it is off
    # (not where a much brighter neighbour's halo or saturation would fake the shift)
    levels = np.median(np.nan_to_num(stripes).sum(axis=1), axis=1)
    sat = science.saturated
    profile, shift = recentre_profile(stripes, profile, bad, keep=outshone(levels) | sat | adjacent(sat))
    opt = optimal_extract(stripes, profile, gain, read_noise_adu, clip_sigma, bad=bad)  # float32 per chunk
    opt.profile_shift = shift
    opt.chi2 = extraction_chi2(stripes, opt, gain, read_noise_adu, bad)[:, 0]  # bad: defect columns too
    # masked pixels get the fit; the fit's outliers stay (the cosmic-ray flag, the plausibility checks and
    # the stripes' pixel-for-pixel contract with the forward model read them; README, session 27)
    stripes = repaired_stripes(stripes, opt, bad)
    defect = science.defect
    if defect is not None and defect.any():
        stripes = _interpolate_columns(stripes, defect)
        opt.flux[:] = _interpolate_columns(opt.flux, defect)
        opt.ivar[:, defect] = 0.0
    flux1d, ivar1d = boxcar(stripes, gain, read_noise_adu)
    if defect is not None and defect.any():
        ivar1d[:, defect] = 0.0
    if opt.filled is not None:
        ivar1d[opt.filled] = 0.0
    spikes = spike_columns(opt.flux, opt.ivar) & ~science.saturated[:, None]
    repair_spikes(opt.flux, opt.ivar, spikes)
    opt.spikes = spikes
    return stripes, flux1d, ivar1d, opt


def _interpolate_columns(values: np.ndarray, bad_cols: np.ndarray) -> np.ndarray:
    """``values`` (``(..., n_cols)``) with the columns ``bad_cols`` linearly interpolated from the good ones."""
    good = np.flatnonzero(~bad_cols)
    bad = np.flatnonzero(bad_cols)
    if good.size == 0:
        return values
    out = values.copy()
    right = np.clip(np.searchsorted(good, bad), 0, good.size - 1)
    left = np.clip(right - 1, 0, good.size - 1)
    lo, hi = good[left], good[right]
    w = np.where(hi != lo, (bad - lo) / np.where(hi != lo, hi - lo, 1), 0.5)
    out[..., bad] = (1 - w) * values[..., lo] + w * values[..., hi]
    return out
