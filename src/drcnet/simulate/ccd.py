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

@dataclass(frozen=True)
class Window:
    """A rectangle of the CCD data area: rows ``row_lo .. row_hi - 1`` at columns ``cols``."""

    row_lo: int
    row_hi: int
    cols: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (self.row_hi - self.row_lo, self.cols.size)

    @property
    def rows(self) -> np.ndarray:
        return np.arange(self.row_lo, self.row_hi)


def spread_light(window: Window, fibers: Sequence[tuple[FiberGeometry, np.ndarray]],
                 profile: ProfileTable) -> np.ndarray:
    """Expected electrons in every window pixel from fibers with per-column electrons.

    Parameters
    ----------
    window
        The pixels to fill.
    fibers
        ``(geometry, electrons)`` pairs; ``electrons`` has one value per window
        column (the fiber's total over the spatial profile).
    """
    image = np.zeros(window.shape)
    rows = window.rows
    for geom, electrons in fibers:
        centre = geom.trace(window.cols)
        if centre.max() + profile.reach < rows[0] or centre.min() - profile.reach > rows[-1]:
            continue  # too far to reach the window
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
    """What the CCD electronics deliver for a window.

    Attributes
    ----------
    raw
        Data pixels in ADU as the 16-bit converter writes them (bias included).
    overscan
        ``(rows, 2, OVERSCAN)`` overscan pixels of amplifiers A and B for the same rows.
    cosmic
        Pixels hit by cosmic rays.
    """

    raw: np.ndarray
    overscan: np.ndarray
    cosmic: np.ndarray


def read_out(expected_e: np.ndarray, cols: np.ndarray, ccd: CCDConfig, exposure_s: float,
             rng: np.random.Generator, prnu: np.ndarray | None = None, cosmics: bool = True) -> Readout:
    """Turn expected electrons into raw ADU: pixel response, dark, Poisson, cosmics, read noise, bias, ADC.

    Parameters
    ----------
    expected_e
        Expected photo-electrons per pixel (rows x window columns).
    cols
        The data columns of the window (selects each pixel's amplifier).
    prnu
        Pixel response map (mean 1); drawn here when not given.
    """
    if prnu is None:
        prnu = 1.0 + ccd.prnu_rms * rng.standard_normal(expected_e.shape)
    mean_e = expected_e * prnu + ccd.dark_e_per_s * exposure_s
    electrons = rng.poisson(np.clip(mean_e, 0, None)).astype(np.float64)
    cosmic = add_cosmic_rays(electrons, ccd, exposure_s, rng) if cosmics else np.zeros(electrons.shape, bool)
    bias = np.asarray(ccd.bias_adu)[amplifier_of(cols)][None, :]
    rn_adu = ccd.read_noise_e / ccd.gain_e_per_adu
    adu = electrons / ccd.gain_e_per_adu + bias + rn_adu * rng.standard_normal(electrons.shape)
    raw = np.clip(np.rint(adu), 0, ccd.adc_max).astype(np.uint16)
    n_rows = expected_e.shape[0]
    over = np.asarray(ccd.bias_adu)[None, :, None] + rn_adu * rng.standard_normal((n_rows, 2, OVERSCAN))
    overscan = np.clip(np.rint(over), 0, ccd.adc_max).astype(np.uint16)
    return Readout(raw=raw, overscan=overscan, cosmic=cosmic)


def subtract_overscan(raw: np.ndarray, overscan: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Net ADU: each pixel minus the row mean of its amplifier's overscan strip (LAMOST's rule)."""
    level = overscan.astype(np.float64).mean(axis=2)  # (rows, 2)
    return raw.astype(np.float64) - level[:, amplifier_of(cols)]


def stripe_rows(trace: np.ndarray, half: int) -> np.ndarray:
    """Row index of each stripe pixel: ``round(trace) + k`` for ``k = -half .. half`` (rows x cols)."""
    centre = np.floor(trace + 0.5).astype(np.intp)
    return centre[None, :] + np.arange(-half, half + 1)[:, None]


def cut_stripe(image: np.ndarray, row_lo: int, trace: np.ndarray, half: int) -> np.ndarray:
    """Cut the paper's stripe from ``image``: centre pixel +- ``half`` rows, following the trace.

    ``image`` covers rows ``row_lo ..`` and the same columns as ``trace``.
    """
    rows = stripe_rows(trace, half) - row_lo
    return np.take_along_axis(image, rows, axis=0)
