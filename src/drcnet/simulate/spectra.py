"""Spectrum utilities for the forward model: AB photometry, resolution matching, fast resampling.

All wavelengths are vacuum Angstrom; fluxes are F_lambda.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from drcnet.conventions import FWHM_PER_SIGMA
from drcnet.library.template import Template

C_A_PER_S = 2.99792458e18
"""Speed of light in Angstrom per second."""
C_KM_S = 299792.458
HC_ERG_A = 1.98644586e-8
"""Planck constant times c, erg Angstrom (photon energy = HC / lambda)."""

R_BAND_EDGES_A = (5500.0, 5650.0, 6850.0, 7000.0)
"""Approximate SDSS r response: zero below 5500, rising to flat 5650-6850, zero above 7000 A.

Used only to put templates and the sky on an r-band AB magnitude scale; the
exact filter shape changes magnitudes by a few hundredths, far below what
matters for setting S/N (which is measured, not assumed).
"""

NATIVE_RESOLUTION: dict[str, dict[str, float]] = {
    "pyhammer": {"native_resolving_power": 2000.0},  # SDSS/BOSS co-adds
    "miles": {"native_fwhm_a": 2.50},
    "stelib": {"native_fwhm_a": 3.0},
    "lamost": {"native_resolving_power": 1800.0},
}
"""Each library's own resolution, removed in quadrature when matching to LAMOST."""

LN_STEP = 2.0e-5
"""Step of the uniform ln(lambda) grid templates are prepared on (6 km/s, ~12 steps per LSF sigma)."""


def r_band_response(wave: np.ndarray) -> np.ndarray:
    """Return the trapezoidal r-band response (0..1) at ``wave`` (A)."""
    a, b, c, d = R_BAND_EDGES_A
    return np.interp(wave, [a, b, c, d], [0.0, 1.0, 1.0, 0.0], left=0.0, right=0.0)


def ab_magnitude(wave: np.ndarray, flam: np.ndarray) -> float:
    """Synthetic r-band AB magnitude of ``flam`` (erg/s/cm^2/A) on ``wave`` (A).

    m_AB = -2.5 log10( int f_nu T dnu/nu / int T dnu/nu ) - 48.6, with
    f_nu = f_lambda lambda^2 / c and dnu/nu = dlambda/lambda.
    """
    resp = r_band_response(wave)
    fnu = flam * wave**2 / C_A_PER_S
    num = np.trapezoid(fnu * resp / wave, wave)
    den = np.trapezoid(resp / wave, wave)
    if not num > 0:
        raise ValueError("spectrum has no positive flux in the r band; cannot compute a magnitude")
    return float(-2.5 * np.log10(num / den) - 48.6)


def photon_flux(wave: np.ndarray, flam: np.ndarray) -> np.ndarray:
    """Convert F_lambda (erg/s/cm^2/A) into photons/s/cm^2/A."""
    return flam * wave / HC_ERG_A


@dataclass(frozen=True)
class LogGridSpectrum:
    """A spectrum sampled on a uniform ln(lambda) grid, already at the instrument's resolution.

    Evaluating it at shifted wavelengths is a cheap linear interpolation, so a
    radial velocity costs one ``np.interp`` per object.
    """

    ln_start: float
    ln_step: float
    flux: np.ndarray

    @property
    def wave(self) -> np.ndarray:
        """The grid's wavelengths (A)."""
        return np.exp(self.ln_start + self.ln_step * np.arange(self.flux.size))

    @functools.cached_property
    def _index(self) -> np.ndarray:
        """``(n,)`` float grid index 0 .. n-1 (the x of the interpolation), made once."""
        return np.arange(self.flux.size, dtype=float)

    def at(self, wave: np.ndarray, rv_kms: float = 0.0, fill: float = 0.0) -> np.ndarray:
        """Flux at observed wavelengths ``wave`` for a source moving at ``rv_kms``.

        Outside the grid the value is ``fill`` (0: no light), never extrapolated.
        """
        return self.at_ln(np.log(wave), rv_kms, fill)

    def at_ln(self, ln_wave: np.ndarray, rv_kms: float = 0.0, fill: float = 0.0) -> np.ndarray:
        """:meth:`at` from ``ln_wave = np.log(wave)`` (the same numbers; the logarithm shared between spectra).

        Parameters
        ----------
        ln_wave : numpy.ndarray
            Natural logarithm of the observed vacuum wavelengths (ln A), any shape.
        rv_kms : float
            Radial velocity of the source (km/s).
        fill : float
            Value outside the grid.

        Returns
        -------
        numpy.ndarray
            Flux (the grid's units), the shape of ``ln_wave``.
        """
        # rest wavelength = observed / (1 + v/c); relativistic terms are < 1e-7 here
        pos = (ln_wave - math.log1p(rv_kms / C_KM_S) - self.ln_start) / self.ln_step
        return np.interp(pos, self._index, self.flux, left=fill, right=fill)


def to_resolution(
    wave: np.ndarray,
    flux: np.ndarray,
    resolving_power: float,
    native_fwhm_a: np.ndarray | float | None = None,
    native_resolving_power: float | None = None,
    wave_range: tuple[float, float] = (3550.0, 9250.0),
    ln_step: float = LN_STEP,
) -> LogGridSpectrum:
    """Resample onto a uniform ln(lambda) grid and convolve to resolving power ``resolving_power``.

    The Gaussian kernel is the quadrature difference between the target line
    spread (FWHM = lambda / R) and the spectrum's own resolution (a constant FWHM
    in A, e.g. MILES 2.5 A, or a resolving power, e.g. PyHammer ~2000). Where the
    spectrum is already coarser than the target it is left as it is. Because the
    needed width changes with wavelength, the spectrum is convolved with a few
    widths and blended linearly between them.

    Parameters
    ----------
    wave, flux
        Input spectrum (A, F_lambda), increasing wavelength.
    resolving_power
        Target R.
    native_fwhm_a, native_resolving_power
        The input's resolution (give at most one; neither means "infinitely sharp").
    wave_range
        Range of the output grid (A); the input is zero outside its own range.
    """
    ln0, ln1 = math.log(wave_range[0]), math.log(wave_range[1])
    n = int(math.ceil((ln1 - ln0) / ln_step)) + 1
    grid_w = np.exp(ln0 + ln_step * np.arange(n))
    on_grid = np.interp(grid_w, wave, flux, left=0.0, right=0.0)
    # kernel width (in grid steps) needed at each grid point
    target_sigma_ln = 1.0 / (resolving_power * FWHM_PER_SIGMA)
    if native_fwhm_a is not None:
        native_sigma_ln = np.interp(grid_w, wave, np.broadcast_to(native_fwhm_a, wave.shape)) / grid_w / FWHM_PER_SIGMA
    elif native_resolving_power is not None:
        native_sigma_ln = np.full(n, 1.0 / (native_resolving_power * FWHM_PER_SIGMA))
    else:
        native_sigma_ln = np.zeros(n)
    need = np.sqrt(np.clip(target_sigma_ln**2 - native_sigma_ln**2, 0.0, None)) / ln_step
    levels = np.unique(np.round(np.linspace(need.min(), need.max(), 5), 3))
    if levels.size == 1:
        out = gaussian_filter1d(on_grid, levels[0], mode="nearest") if levels[0] > 0.05 else on_grid
    else:
        stack = np.stack([gaussian_filter1d(on_grid, s, mode="nearest") if s > 0.05 else on_grid for s in levels])
        idx = np.clip(np.searchsorted(levels, need) - 1, 0, levels.size - 2)
        frac = np.clip((need - levels[idx]) / (levels[idx + 1] - levels[idx]), 0.0, 1.0)
        cols = np.arange(n)
        out = stack[idx, cols] * (1 - frac) + stack[idx + 1, cols] * frac
    return LogGridSpectrum(ln_start=ln0, ln_step=ln_step, flux=out.astype(np.float64))


def prepare_template(t: Template, resolving_power: float) -> LogGridSpectrum:
    """Template as photons/s/cm^2/A at r = 0 (AB), at the instrument's resolution.

    The library's own resolution (:data:`NATIVE_RESOLUTION`) is removed in quadrature.
    """
    flam = t.flux * 10 ** (0.4 * ab_magnitude(t.wave, t.flux))  # r = 0 AB
    native = NATIVE_RESOLUTION.get(t.library, {})
    return to_resolution(t.wave, photon_flux(t.wave, flam), resolving_power, **native)


def reddening_curve(wave: np.ndarray) -> np.ndarray:
    """A(lambda) / E(B-V) for the Fitzpatrick (1999) law with R_V = 3.1 (dust_extinction), the shape of ``wave`` (A)."""
    import astropy.units as u
    from dust_extinction.parameter_averages import F99

    return 3.1 * F99(Rv=3.1)(np.asarray(wave) * u.AA)
