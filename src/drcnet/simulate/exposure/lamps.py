"""The calibration lamps' light in one fiber: the arc (Hg, Ne, Ar, Cd lines) and the flat (a quartz lamp).

Both lamps go through the same optics as starlight (:mod:`drcnet.simulate.optics`):
the arm's throughput, the fiber's throughput, and each fiber's own wavelength
solution; arc lines have the instrument's Gaussian line spread (FWHM = lambda / R),
integrated exactly over each pixel. The line lists are read by
:mod:`drcnet.instrument.arclines`.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from drcnet.instrument.arclines import ArcLines
from drcnet.instrument.config import U0, ArmConfig, arm_throughput
from drcnet.reduce.wavesol import columns_of, dispersion, line_sigma_px, wavelength
from drcnet.simulate.optics import FiberGeometry


def arc_electrons(arm: ArmConfig, geom: FiberGeometry, cols: np.ndarray, lines: ArcLines, level: float) -> np.ndarray:
    """Electrons per column of the arc lamp in one fiber.

    Each line deposits ``level * amplitude * arm_throughput(lambda) * fiber throughput``
    electrons, spread over columns by a pixel-integrated Gaussian centred where
    the fiber's wavelength solution puts it (out to 8 sigma).

    Parameters
    ----------
    arm, geom
        The arm and the fiber (wavelength offset, throughput).
    cols : numpy.ndarray
        Consecutive data columns to fill (``cols[0]`` .. ``cols[0] + len(cols) - 1``).
    lines : ArcLines
        The lamp lines.
    level : float
        Electrons of a line of amplitude 1 at unit throughput.

    Returns
    -------
    numpy.ndarray
        ``(len(cols),)`` electrons.
    """
    cols = np.asarray(cols)
    c0, n = int(cols[0]), cols.size
    centre = columns_of(arm, lines.wave, geom.shift_px, u0=U0)
    sigma = line_sigma_px(arm, lines.wave, centre, geom.shift_px, u0=U0)
    total = level * lines.amplitude * arm_throughput(arm, lines.wave) * geom.throughput
    keep = (centre + 8 * sigma >= c0) & (centre - 8 * sigma <= c0 + n - 1) & (total > 0)
    centre, sigma, total = centre[keep], sigma[keep], total[keep]
    out = np.zeros(n)
    if centre.size == 0:
        return out
    half = int(np.ceil(8 * sigma.max())) + 1
    x = np.floor(centre)[:, None] + np.arange(-half, half + 1)[None, :]
    dep = total[:, None] * (
        ndtr((x + 0.5 - centre[:, None]) / sigma[:, None]) - ndtr((x - 0.5 - centre[:, None]) / sigma[:, None])
    )
    inside = (x >= c0) & (x < c0 + n)
    np.add.at(out, (x[inside] - c0).astype(np.intp), dep[inside])
    return out


def lamp_continuum(wave: np.ndarray, temperature_k: float = 3100.0) -> np.ndarray:
    """Photon spectrum of a quartz-halogen lamp (a blackbody), normalised to 1 at its maximum over ``wave`` (A)."""
    hc_over_k = 1.438776877e8  # A K
    w = np.asarray(wave, dtype=float)
    photons = w**-4 / np.expm1(hc_over_k / (w * temperature_k))
    return photons / photons.max()


def flat_electrons(arm: ArmConfig, geom: FiberGeometry, cols: np.ndarray, level: float) -> np.ndarray:
    """Electrons per column ``(len(cols),)`` of the flat lamp in one fiber (``level`` at the nominal peak)."""
    wave = wavelength(arm, cols, geom.shift_px, u0=U0)
    disp = np.abs(dispersion(arm, cols, geom.shift_px, u0=U0)) / arm.dispersion
    return level * geom.throughput * lamp_continuum(wave) * arm_throughput(arm, wave) / arm.peak_throughput * disp
