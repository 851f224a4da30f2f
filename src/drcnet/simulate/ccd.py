"""The CCD: spreading fiber light over pixels, photon and read noise, bias, overscan, cosmic rays.

The same functions render a small window around one fiber (for datasets) and a
whole frame (for raw exposures), so a stripe is always a window of a frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from drcnet.instrument import N_COLS, OVERSCAN, PIXEL_SIZE_CM, CCDConfig
from drcnet.simulate.optics import FiberGeometry, ProfileTable


def spread_light(rows: np.ndarray, cols: np.ndarray, fibers: Sequence[tuple[FiberGeometry, np.ndarray]],
                 profile: ProfileTable) -> np.ndarray:
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


def amplifier_of(cols: np.ndarray) -> np.ndarray:
    """Amplifier index (0 = A, left; 1 = B, right) of data columns."""
    return (np.asarray(cols) >= N_COLS // 2).astype(np.intp)


def add_cosmic_rays(electrons: np.ndarray, ccd: CCDConfig, exposure_s: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Add cosmic-ray tracks in place; return a boolean mask of the hit pixels.

    Events arrive as a Poisson process over the window's area; each deposits an
    exponentially distributed charge along a short straight track of 1-6 pixels.
    """
    n_rows, n_cols = electrons.shape
    area_cm2 = n_rows * n_cols * PIXEL_SIZE_CM**2
    n_events = rng.poisson(ccd.cosmic_rate_per_cm2_min * area_cm2 * exposure_s / 60.0)
    hit = np.zeros(electrons.shape, dtype=bool)
    for _ in range(n_events):
        length = rng.integers(1, 7)
        angle = rng.uniform(0, np.pi)
        r0, c0 = rng.uniform(0, n_rows), rng.uniform(0, n_cols)
        t = np.arange(length)
        rr = np.clip((r0 + t * np.sin(angle)).astype(int), 0, n_rows - 1)
        cc = np.clip((c0 + t * np.cos(angle)).astype(int), 0, n_cols - 1)
        charge = rng.exponential(ccd.cosmic_mean_e) / length
        np.add.at(electrons, (rr, cc), charge)
        hit[rr, cc] = True
    return hit


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


def read_out(expected_e: np.ndarray, cols: np.ndarray, ccd: CCDConfig, exposure_s: float,
             rng: np.random.Generator, prnu: np.ndarray | None = None, cosmics: bool = True) -> Readout:
    """Turn expected electrons into raw ADU: pixel response, dark, Poisson, cosmics, read noise, bias, ADC.

    Parameters
    ----------
    expected_e
        Expected photo-electrons per pixel (rows x columns).
    cols
        The data column of each pixel column (selects its amplifier).
    prnu
        Pixel response map (mean 1); drawn here when not given.
    """
    if prnu is None:
        prnu = 1.0 + ccd.prnu_rms * rng.standard_normal(expected_e.shape, dtype=np.float32)
    mean_e = expected_e * prnu + ccd.dark_e_per_s * exposure_s
    electrons = rng.poisson(np.clip(mean_e, 0, None)).astype(np.float64)
    cosmic = add_cosmic_rays(electrons, ccd, exposure_s, rng) if cosmics else np.zeros(electrons.shape, bool)
    bias = np.asarray(ccd.bias_adu)[amplifier_of(cols)][None, :]
    rn_adu = ccd.read_noise_e / ccd.gain_e_per_adu
    adu = electrons / ccd.gain_e_per_adu + bias + rn_adu * rng.standard_normal(electrons.shape, dtype=np.float32)
    raw = np.clip(np.rint(adu), 0, ccd.adc_max).astype(np.uint16)
    return Readout(raw=raw, cosmic=cosmic)


def read_overscan(n_rows: int, ccd: CCDConfig, rng: np.random.Generator) -> np.ndarray:
    """Overscan pixels ``(n_rows, 2, OVERSCAN)`` of amplifiers A and B: bias plus read noise, in ADU."""
    rn_adu = ccd.read_noise_e / ccd.gain_e_per_adu
    over = np.asarray(ccd.bias_adu)[None, :, None] + rn_adu * rng.standard_normal((n_rows, 2, OVERSCAN))
    return np.clip(np.rint(over), 0, ccd.adc_max).astype(np.uint16)


def overscan_level(overscan: np.ndarray) -> np.ndarray:
    """Row mean of each amplifier's overscan strip, ``(rows, 2)`` (LAMOST's bias rule)."""
    return overscan.astype(np.float64).mean(axis=2)


def subtract_overscan(raw: np.ndarray, level: np.ndarray, cols: np.ndarray, row_index: np.ndarray | None = None) -> np.ndarray:
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
