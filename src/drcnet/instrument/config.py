"""LAMOST low-resolution spectrograph, CCD and site: every instrument number in one place.

This module imports only numpy, pydantic and :mod:`drcnet.conventions`; the
reduction (:mod:`drcnet.reduce`) may use it, the file I/O of the adapter lives
in the sibling modules.

Published values (``../shared/REFERENCE.md`` section 4) are used as given; values
that are not published are chosen to be plausible, marked *chosen* below, and can
be changed through the configuration (every class is a validated pydantic model,
so a wrong value fails early with its name).

Geometry convention used everywhere in drcnet: a raw frame is
``(N_ROWS, OVERSCAN + N_COLS + OVERSCAN)``; the dispersion runs along the columns
(``x``, wavelength pixel 0..4095 of the data area), fibers are stacked along the
rows (``y``). Amplifier A reads data columns 0..2047 and has the left overscan
strip, amplifier B reads 2048..4095 and has the right one.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from drcnet.conventions import STRIPE_COL_START, STRIPE_COL_STOP, STRIPE_HALF_ROWS  # noqa: F401  (re-exported)

N_ROWS = 4136
"""CCD rows (spatial axis)."""
N_COLS = 4096
"""CCD data columns (dispersion axis)."""
OVERSCAN = 32
"""Overscan columns per amplifier (left strip for amplifier A, right strip for B)."""
N_FIBERS = 250
"""Fibers per spectrograph."""
N_SPECTROGRAPHS = 16
U0 = (N_COLS - 1) / 2.0
"""Centre of the data columns; wavelength solutions and traces are polynomials in x - U0."""
PIXEL_SIZE_CM = 12e-4
"""e2v CCD203-82: 12 micron pixels."""
FIBER_DIAMETER_ARCSEC = 3.3
LAMPS: tuple[str, ...] = ("HgI", "NeI", "ArI", "CdI")
"""Arc lamps of the calibration unit (PypeIt line-list names)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ArmConfig(_Frozen):
    """One spectrograph arm: wavelength solution, resolution and throughput shape.

    The nominal wavelength solution is a cubic in ``u = x - 2047.5`` (pixels)::

        lambda(x) = center_a + dispersion * u + quad * u**2 + cubic * u**3

    Per fiber, a small offset (``fiber_shift_px``) and a smile across the slit
    are added (see :class:`FiberConfig`).
    """

    name: str
    center_a: float = Field(description="vacuum wavelength at the CCD centre column (A)")
    dispersion: float = Field(gt=0, description="A per pixel at the centre (REFERENCE: blue 0.57, red 0.84)")
    quad: float = Field(description="quadratic term (A/px^2), chosen: dispersion changes by ~5 % across the CCD")
    cubic: float = 0.0
    resolving_power: float = Field(1800.0, gt=100, description="R = lambda / FWHM (REFERENCE: ~1800 at 5500 A)")
    band_min_a: float = Field(description="half-power short edge of the arm (A)")
    band_max_a: float = Field(description="half-power long edge of the arm (A)")
    edge_width_a: float = Field(30.0, gt=0, description="logistic width of the band edges (dichroic, filters), chosen")
    peak_throughput: float = Field(0.85 * 0.36, gt=0, le=1, description="QE x spectrograph at the peak (REFERENCE S/N calculator)")
    blue_falloff_a: float = Field(description="scale of the throughput fall toward the short edge (coatings/QE), chosen")


BLUE = ArmConfig(
    name="blue", center_a=4780.0, dispersion=0.57, quad=0.57 * 0.05 / 4096, cubic=0.0,
    band_min_a=3700.0, band_max_a=5900.0, blue_falloff_a=600.0,
)
RED = ArmConfig(
    name="red", center_a=7300.0, dispersion=0.84, quad=0.84 * 0.05 / 4096, cubic=0.0,
    band_min_a=5750.0, band_max_a=9050.0, blue_falloff_a=300.0,
)


class FiberConfig(_Frozen):
    """Fiber images on the CCD (all *chosen*: LAMOST does not publish these)."""

    pitch_px: float = Field(16.0, gt=4, description="fiber spacing along the rows (4096/250 ~ 16)")
    first_row: float = Field(70.0, description="row of fiber 1's trace at the CCD centre column")
    pitch_jitter_px: float = Field(0.3, ge=0, description="rms random offset of each fiber from the regular pitch")
    profile_fwhm_px: float = Field(6.0, gt=0.5, description="spatial FWHM of the Gaussian core")
    wing_fraction: float = Field(0.03, ge=0, lt=0.5, description="share of the light in the Lorentzian halo that reaches the neighbours")
    wing_hwhm_px: float = Field(6.0, gt=0, description="half width of the Lorentzian halo")
    curvature_px: float = Field(6.0, description="trace bow (px) between centre and ends for the fibers at the slit ends")
    tilt_px: float = Field(1.5, description="trace rise (px) over half the CCD, all fibers")
    fiber_shift_px: float = Field(0.3, ge=0, description="rms random wavelength offset per fiber (px)")
    smile_px: float = Field(1.0, description="wavelength offset (px) of the slit-end fibers relative to the centre")
    throughput_rms: float = Field(0.05, ge=0, lt=0.5, description="fiber-to-fiber throughput scatter (relative rms)")


class CCDConfig(_Frozen):
    """e2v CCD203-82 read out by two amplifiers."""

    gain_e_per_adu: float = Field(1.5, gt=0, description="chosen (not published)")
    read_noise_e: float = Field(3.5, ge=0, description="REFERENCE: < 4 e-")
    bias_adu: tuple[float, float] = Field((1000.0, 1060.0), description="bias level of amplifiers A and B, chosen")
    dark_e_per_s: float = Field(4.5 / 5400.0, ge=0, description="REFERENCE: 4.5 e- per pixel per 1.5 h")
    prnu_rms: float = Field(0.01, ge=0, lt=0.2, description="pixel response non-uniformity, chosen")
    adc_max: int = Field(65535, description="16-bit converter: raw values saturate here")
    cosmic_rate_per_cm2_min: float = Field(1.5, ge=0, description="cosmic-ray events per cm^2 per minute at the site, chosen")
    cosmic_mean_e: float = Field(3000.0, gt=0, description="mean charge of one cosmic-ray event (e-), chosen")


class SiteConfig(_Frozen):
    """Telescope, atmosphere and exposure."""

    aperture_m: float = Field(4.0, gt=0, description="effective aperture diameter of LAMOST (3.6-4.9 m)")
    telescope_efficiency: float = Field(0.88 * 0.88 * 0.80, gt=0, le=1, description="REFERENCE S/N calculator")
    fiber_efficiency: float = Field(0.80, gt=0, le=1, description="REFERENCE S/N calculator")
    seeing_fwhm_arcsec: float = Field(3.0, gt=0, description="image size at the fiber (seeing + optics), chosen")
    exposure_s: float = Field(1800.0, gt=0, description="one LAMOST exposure (plates are 3 x 600-1800 s)")
    sky_r_mag_arcsec2: float = Field(20.3, description="r-band sky brightness, chosen (Xinglong, grey time)")
    sky_rms: float = Field(0.01, ge=0, description="relative fiber-to-fiber sky variation")
    n_sky_fibers: int = Field(20, ge=1, description="sky fibers per spectrograph: sets the master sky's noise")

    @property
    def area_cm2(self) -> float:
        """Collecting area in cm^2."""
        return math.pi * (50.0 * self.aperture_m) ** 2

    @property
    def fiber_area_arcsec2(self) -> float:
        """Sky area seen by one fiber."""
        return math.pi * (FIBER_DIAMETER_ARCSEC / 2) ** 2

    @property
    def fiber_aperture_fraction(self) -> float:
        """Share of a centred Gaussian star image that enters the 3.3 arcsec fiber."""
        sigma = self.seeing_fwhm_arcsec / (2 * math.sqrt(2 * math.log(2)))
        return 1.0 - math.exp(-((FIBER_DIAMETER_ARCSEC / 2) ** 2) / (2 * sigma**2))


class InstrumentConfig(_Frozen):
    """Everything the forward model needs about LAMOST."""

    blue: ArmConfig = BLUE
    red: ArmConfig = RED
    fiber: FiberConfig = FiberConfig()
    ccd: CCDConfig = CCDConfig()
    site: SiteConfig = SiteConfig()

    def arm(self, name: str) -> ArmConfig:
        """Return the arm called ``name`` (``"blue"`` or ``"red"``)."""
        if name not in ("blue", "red"):
            raise ValueError(f"unknown arm {name!r}: expected 'blue' or 'red'")
        return self.blue if name == "blue" else self.red

    @property
    def arms(self) -> tuple[ArmConfig, ArmConfig]:
        """Both arms, ``(blue, red)`` (the order of :data:`drcnet.conventions.ARMS`)."""
        return (self.blue, self.red)


def arm_throughput(arm: ArmConfig, wave: np.ndarray) -> np.ndarray:
    """Arm efficiency (QE x spectrograph) at ``wave``.

    Logistic edges at the arm's band limits (the dichroic crosses over near
    5800 A) and a gentle fall toward the short-wavelength side (coatings, QE).

    Parameters
    ----------
    arm : ArmConfig
        The arm (band edges, edge width, peak throughput, blue fall-off).
    wave : array_like
        Vacuum wavelengths (A), any shape.

    Returns
    -------
    numpy.ndarray
        Throughput (0 .. ``arm.peak_throughput``), the shape of ``wave``.
    """
    w = np.asarray(wave, dtype=float)
    rise = 1.0 / (1.0 + np.exp(-(w - arm.band_min_a) / arm.edge_width_a))
    fall = 1.0 / (1.0 + np.exp((w - arm.band_max_a) / arm.edge_width_a))
    shape = 1.0 - 0.5 * np.exp(-(w - arm.band_min_a).clip(0) / arm.blue_falloff_a)
    return arm.peak_throughput * rise * fall * shape


def fiber_row_at_centre(fiber_index: np.ndarray | int, cfg: FiberConfig) -> np.ndarray:
    """Nominal trace row at the CCD centre column of 0-based fiber ``fiber_index`` (no jitter)."""
    return cfg.first_row + cfg.pitch_px * np.asarray(fiber_index, dtype=float)


def slit_position(fiber_index: np.ndarray | int) -> np.ndarray:
    """Position of a fiber along the slit, -1 (first fiber) .. +1 (last fiber)."""
    return (np.asarray(fiber_index, dtype=float) - (N_FIBERS - 1) / 2) / ((N_FIBERS - 1) / 2)
