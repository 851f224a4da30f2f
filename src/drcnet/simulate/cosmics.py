"""Cosmic rays: one generator of tracks, deposited as electrons (before read-out) or as ADU (after it).

Events arrive as a Poisson process over the detector area
(:attr:`~drcnet.instrument.config.CCDConfig.cosmic_rate_per_cm2_min`); each is a
short straight track of 1-6 pixels at a random angle carrying an exponentially
distributed charge (mean :attr:`~drcnet.instrument.config.CCDConfig.cosmic_mean_e`),
shared equally by its pixels.

Two random-number orders exist, both kept so that a seed gives the same data as
before: the stripe (dataset) path draws the five numbers of one event after the
other (``per_event=True``); the whole-frame path draws each quantity for all
events at once. The statistics are the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drcnet.instrument.config import PIXEL_SIZE_CM, CCDConfig


@dataclass(frozen=True)
class CosmicRays:
    """The pixels of every track, event after event and along each track.

    Attributes
    ----------
    rows, cols
        ``(n_pixels,)`` int: pixel of each track step (clipped to the window; a pixel may repeat).
    charge_e
        ``(n_pixels,)`` float: electrons deposited at each step.
    """

    rows: np.ndarray
    cols: np.ndarray
    charge_e: np.ndarray


def draw_cosmic_rays(
    shape: tuple[int, int], ccd: CCDConfig, exposure_s: float, rng: np.random.Generator, per_event: bool = False
) -> CosmicRays:
    """Draw the cosmic-ray tracks that hit a window of ``shape`` pixels during ``exposure_s``.

    Parameters
    ----------
    shape : (int, int)
        Rows and columns of the window.
    ccd : CCDConfig
        Event rate and mean charge.
    exposure_s : float
        Exposure time (s).
    rng : numpy.random.Generator
        Random stream.
    per_event : bool
        Draw length, angle, start row, start column and charge of one event after
        the other (the stripe path's order) instead of each quantity for all events.

    Returns
    -------
    CosmicRays
        Track pixels and their charges (empty when no event).
    """
    n_rows, n_cols = shape
    area_cm2 = n_rows * n_cols * PIXEL_SIZE_CM**2
    n = int(rng.poisson(ccd.cosmic_rate_per_cm2_min * area_cm2 * exposure_s / 60.0))
    if n == 0:
        return CosmicRays(np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0))
    if per_event:
        draws = [
            (
                rng.integers(1, 7),
                rng.uniform(0, np.pi),
                rng.uniform(0, n_rows),
                rng.uniform(0, n_cols),
                rng.exponential(ccd.cosmic_mean_e),
            )
            for _ in range(n)
        ]
        length, angle, r0, c0, charge = (np.array(v) for v in zip(*draws, strict=True))
    else:
        length = rng.integers(1, 7, n)
        angle = rng.uniform(0, np.pi, n)
        r0, c0 = rng.uniform(0, n_rows, n), rng.uniform(0, n_cols, n)
        charge = rng.exponential(ccd.cosmic_mean_e, n)
    charge = charge / length
    event = np.repeat(np.arange(n), length)
    t = np.arange(event.size) - np.repeat(np.cumsum(length) - length, length)
    rr = np.clip((r0[event] + t * np.sin(angle[event])).astype(np.intp), 0, n_rows - 1)
    cc = np.clip((c0[event] + t * np.cos(angle[event])).astype(np.intp), 0, n_cols - 1)
    return CosmicRays(rr, cc, charge[event])


def add_cosmic_rays(electrons: np.ndarray, ccd: CCDConfig, exposure_s: float, rng: np.random.Generator) -> np.ndarray:
    """Add cosmic-ray tracks to an electron image in place (before read-out); return the hit mask.

    Parameters
    ----------
    electrons : numpy.ndarray
        ``(rows, cols)`` float electrons; changed in place.

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` bool: pixels hit by a track.
    """
    rays = draw_cosmic_rays(electrons.shape, ccd, exposure_s, rng, per_event=True)
    np.add.at(electrons, (rays.rows, rays.cols), rays.charge_e)
    hit = np.zeros(electrons.shape, dtype=bool)
    hit[rays.rows, rays.cols] = True
    return hit


def deposit_cosmic_rays(data: np.ndarray, ccd: CCDConfig, exposure_s: float, rng: np.random.Generator) -> np.ndarray:
    """Add cosmic-ray tracks to raw ADU in place (after read-out); return the flat indices of the hit pixels.

    The charge of each pixel is converted with the gain and the pixel is rounded
    and clipped to the converter's range again; this differs from adding
    electrons before the read-out only in where the rounding falls.

    Parameters
    ----------
    data : numpy.ndarray
        ``(rows, cols)`` uint16 raw data area; changed in place.

    Returns
    -------
    numpy.ndarray
        Sorted unique flat indices (``row * cols + col``) of the hit pixels.
    """
    n_rows, n_cols = data.shape
    rays = draw_cosmic_rays(data.shape, ccd, exposure_s, rng)
    if rays.rows.size == 0:
        return np.zeros(0, dtype=np.intp)
    idx, inverse = np.unique(rays.rows * n_cols + rays.cols, return_inverse=True)
    adu = np.bincount(inverse, weights=rays.charge_e) / ccd.gain_e_per_adu
    flat = data.reshape(-1)
    flat[idx] = np.clip(np.rint(flat[idx] + adu), 0, ccd.adc_max).astype(data.dtype)
    return idx
