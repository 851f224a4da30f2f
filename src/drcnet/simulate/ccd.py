"""The CCD: spreading fiber light over pixels, photon and read noise, bias, overscan, cosmic rays.

The same functions render a small window around one fiber (for datasets) and a
whole frame (for raw exposures), so a stripe is always a window of a frame.
Cosmic rays are :mod:`drcnet.simulate.cosmics`; the overscan level and the
amplifier of a column are the reduction's (:mod:`drcnet.reduce.calib`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from drcnet.instrument.config import DETECTOR, OVERSCAN, CCDConfig
from drcnet.reduce import calib
from drcnet.reduce.calib import overscan_level
from drcnet.simulate.cosmics import add_cosmic_rays
from drcnet.simulate.optics import FiberGeometry, ProfileTable


def amplifier_of(cols: np.ndarray, amp_boundary: int = DETECTOR.amp_boundary) -> np.ndarray:
    """Amplifier (0 = A, 1 = B) of data columns: :func:`drcnet.reduce.calib.amplifier_of`, LAMOST's boundary by default."""
    return calib.amplifier_of(cols, amp_boundary)


__all__ = [
    "Readout",
    "add_cosmic_rays",
    "amplifier_of",
    "cut_stripe",
    "overscan_level",
    "read_out",
    "read_overscan",
    "spread_light",
    "stripe_rows",
    "subtract_overscan",
]


def spread_light(
    rows: np.ndarray, cols: np.ndarray, fibers: Sequence[tuple[FiberGeometry, np.ndarray]], profile: ProfileTable
) -> np.ndarray:
    """Expected electrons in pixels (``rows`` x ``cols``) from fibers with per-column electrons.

    Parameters
    ----------
    rows
        CCD rows: 1D (a rectangle of the frame) or 2D rows x columns (pixels
        that follow a trace, such as a stripe).
    cols
        CCD data columns.
    fibers
        ``(geometry, electrons)`` pairs; ``electrons`` has one value per column
        (the fiber's total over its spatial profile).
    """
    rows = np.asarray(rows)
    image = np.zeros((rows.shape[0], cols.size))
    lo, hi = rows.min(), rows.max()
    for geom, electrons in fibers:
        centre = geom.trace(cols)
        if centre.max() + profile.reach < lo or centre.min() - profile.reach > hi:
            continue  # too far to reach these pixels
        image += electrons[None, :] * profile(rows, centre)
    return image


@dataclass
class Readout:
    """What the CCD electronics deliver for a set of pixels.

    Attributes
    ----------
    raw
        Data pixels in ADU as the 16-bit converter writes them (bias included).
    cosmic
        Pixels hit by cosmic rays.
    """

    raw: np.ndarray
    cosmic: np.ndarray


def read_out(
    expected_e: np.ndarray,
    cols: np.ndarray,
    ccd: CCDConfig,
    exposure_s: float,
    rng: np.random.Generator,
    prnu: np.ndarray | None = None,
    cosmics: bool = True,
    amp_boundary: int = DETECTOR.amp_boundary,
) -> Readout:
    """Turn expected electrons into raw ADU: pixel response, dark, Poisson, cosmics, read noise, bias, ADC.

    Parameters
    ----------
    expected_e
        Expected photo-electrons per pixel (rows x columns).
    cols
        The data column of each pixel column (selects its amplifier).
    prnu
        Pixel response map (mean 1); drawn here when not given.
    amp_boundary
        First data column of amplifier B (the detector's; LAMOST's by default).
    """
    if prnu is None:
        prnu = 1.0 + ccd.prnu_rms * rng.standard_normal(expected_e.shape, dtype=np.float32)
    # the same arithmetic as ``clip(expected * prnu + dark, 0)``, in place (one array instead of four)
    mean_e = np.multiply(expected_e, prnu)
    mean_e += ccd.dark_e_per_s * exposure_s
    np.maximum(mean_e, 0.0, out=mean_e)
    electrons = rng.poisson(mean_e).astype(np.float64)
    cosmic = add_cosmic_rays(electrons, ccd, exposure_s, rng) if cosmics else np.zeros(electrons.shape, bool)
    bias = np.asarray(ccd.bias_adu, dtype=np.float64)[amplifier_of(cols, amp_boundary)][None, :]
    rn_adu = ccd.read_noise_e / ccd.gain_e_per_adu
    adu = electrons
    adu /= ccd.gain_e_per_adu
    adu += bias
    noise = rng.standard_normal(electrons.shape, dtype=np.float32)
    noise *= np.float32(rn_adu)
    adu += noise
    np.rint(adu, out=adu)
    np.clip(adu, 0.0, float(ccd.adc_max), out=adu)
    return Readout(raw=adu.astype(np.uint16), cosmic=cosmic)


def read_overscan(n_rows: int, ccd: CCDConfig, rng: np.random.Generator, n_overscan: int = OVERSCAN) -> np.ndarray:
    """Overscan pixels ``(n_rows, 2, n_overscan)`` of amplifiers A and B: bias plus read noise, in ADU."""
    rn_adu = ccd.read_noise_e / ccd.gain_e_per_adu
    over = np.asarray(ccd.bias_adu)[None, :, None] + rn_adu * rng.standard_normal((n_rows, 2, n_overscan))
    return np.clip(np.rint(over), 0, ccd.adc_max).astype(np.uint16)


def subtract_overscan(
    raw: np.ndarray, level: np.ndarray, cols: np.ndarray, row_index: np.ndarray | None = None
) -> np.ndarray:
    """Net ADU: each pixel minus the overscan level of its own row and amplifier.

    ``row_index`` gives each pixel's row in ``level`` (rows x columns); by
    default pixel row ``i`` uses level row ``i``.
    """
    amp = amplifier_of(cols)
    if row_index is None:
        return raw.astype(np.float64) - level[:, amp]
    return raw.astype(np.float64) - level[row_index, amp[None, :]]


def stripe_rows(trace: np.ndarray, half: int) -> np.ndarray:
    """Row index of each stripe pixel: ``round(trace) + k`` for ``k = -half .. half`` (rows x cols)."""
    centre = np.floor(trace + 0.5).astype(np.intp)
    return centre[None, :] + np.arange(-half, half + 1)[:, None]


def cut_stripe(image: np.ndarray, row_lo: int, trace: np.ndarray, half: int = 5) -> np.ndarray:
    """Cut the paper's stripe from ``image``: centre pixel +- ``half`` rows, following the trace.

    ``image`` covers rows ``row_lo ..`` and the same columns as ``trace``.
    """
    rows = stripe_rows(trace, half) - row_lo
    return np.take_along_axis(image, rows, axis=0)
