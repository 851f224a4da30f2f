"""The nominal wavelength solution of an arm: column <-> vacuum wavelength, dispersion, line width.

The instrument's solution (:class:`drcnet.hardware.ArmConfig`) is a cubic in
``u = x - u0 - shift`` (``x`` the data column, ``u0`` the detector's origin column
:attr:`drcnet.hardware.Detector.u0`, ``shift`` a fiber's offset in pixels)::

    lambda(x) = center_a + dispersion * u + quad * u**2 + cubic * u**3

The forward model (:mod:`drcnet.simulate.optics`) renders light with these
functions and the reduction (:mod:`drcnet.reduce.wavecal`) predicts where the
arc lines fall with them: one copy of the arithmetic, here.
"""

from __future__ import annotations

import numpy as np

from drcnet.conventions import FWHM_PER_SIGMA
from drcnet.hardware import ArmConfig


def wavelength(arm: ArmConfig, cols: np.ndarray, shift_px: float = 0.0, *, u0: float) -> np.ndarray:
    """Vacuum wavelength (A) at data columns ``cols`` for a fiber offset by ``shift_px``.

    The offset moves the spectrum along the columns: the light of wavelength
    ``lambda`` lands ``shift_px`` pixels further than in the nominal solution.

    Parameters
    ----------
    arm : ArmConfig
        The arm's nominal solution.
    cols : array_like
        Data columns (fractional allowed), any shape.
    shift_px : float or array_like
        The fiber's offset (pixels); broadcasts against ``cols``.
    u0 : float
        Origin column of the solution (:attr:`drcnet.hardware.Detector.u0`).

    Returns
    -------
    numpy.ndarray
        Vacuum wavelengths (A), the shape of ``cols``.
    """
    u = np.asarray(cols, dtype=float) - u0 - shift_px
    return arm.center_a + u * (arm.dispersion + u * (arm.quad + u * arm.cubic))


def dispersion(arm: ArmConfig, cols: np.ndarray, shift_px: float = 0.0, *, u0: float) -> np.ndarray:
    """A per pixel at ``cols`` (the derivative of :func:`wavelength`), the shape of ``cols``."""
    u = np.asarray(cols, dtype=float) - u0 - shift_px
    return arm.dispersion + u * (2 * arm.quad + 3 * u * arm.cubic)


def columns_of(arm: ArmConfig, waves: np.ndarray | float, shift_px: float = 0.0, *, u0: float) -> np.ndarray:
    """Column where each vacuum wavelength lands: the inverse of :func:`wavelength` (Newton, 8 steps).

    Parameters
    ----------
    arm : ArmConfig
        The arm's nominal solution.
    waves : array_like
        Vacuum wavelengths (A), any shape.
    shift_px : float
        The fiber's offset (pixels).
    u0 : float
        Origin column of the solution (:attr:`drcnet.hardware.Detector.u0`).

    Returns
    -------
    numpy.ndarray
        Fractional data columns, the shape of ``waves``.
    """
    waves = np.asarray(waves, dtype=float)
    u = (waves - arm.center_a) / arm.dispersion
    for _ in range(8):
        f = arm.center_a + u * (arm.dispersion + u * (arm.quad + u * arm.cubic)) - waves
        u -= f / (arm.dispersion + u * (2 * arm.quad + 3 * u * arm.cubic))
    return u + u0 + shift_px


def column_of(arm: ArmConfig, wave_a: float, shift_px: float = 0.0, *, u0: float) -> float:
    """Column (fractional) where one vacuum wavelength ``wave_a`` lands (scalar :func:`columns_of`)."""
    return float(columns_of(arm, wave_a, shift_px, u0=u0))


def line_sigma_px(
    arm: ArmConfig, waves: np.ndarray, centres: np.ndarray, shift_px: float = 0.0, *, u0: float
) -> np.ndarray:
    """Gaussian sigma (columns) of the instrument's line spread at ``waves`` (FWHM = lambda / R).

    Parameters
    ----------
    waves : array_like
        Vacuum wavelengths of the lines (A).
    centres : array_like
        Columns where they land (the local dispersion is taken there), same shape.

    Returns
    -------
    numpy.ndarray
        Sigma in columns, the shape of ``waves``.
    """
    return np.asarray(waves) / arm.resolving_power / FWHM_PER_SIGMA / np.abs(dispersion(arm, centres, shift_px, u0=u0))
