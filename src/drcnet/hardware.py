"""Detector geometry and the validated instrument configuration: the bottom layer every other one may use.

* :class:`Detector` -- a CCD read out by two amplifiers (rows, data columns, overscan strips,
  amplifier boundary, the origin ``u0`` of traces and wavelength solutions, gain and read-noise
  defaults). The reduction (:mod:`drcnet.reduce`) takes one as an argument and never imports an
  instrument; the LAMOST detector is :data:`drcnet.instrument.config.DETECTOR`.
* the pydantic configuration classes (:class:`ArmConfig`, :class:`FiberConfig`, :class:`CCDConfig`,
  :class:`SiteConfig`, :class:`InstrumentConfig`) and :func:`arm_throughput`. Their field defaults
  are the LAMOST low-resolution spectrograph's values (``../shared/REFERENCE.md`` section 4; unpublished
  ones marked *chosen*); :mod:`drcnet.instrument.config` re-exports them beside the LAMOST numbers.

Imports only numpy and pydantic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

FIBER_DIAMETER_ARCSEC = 3.3
"""LAMOST fiber diameter on the sky (arcsec): the default site's fiber aperture."""
LAMPS: tuple[str, ...] = ("HgI", "NeI", "ArI", "CdI")
"""Arc lamps of the LAMOST calibration unit (PypeIt line-list names): the reduction's default lamps."""


@dataclass(frozen=True)
class Detector:
    """A CCD read out by two amplifiers, as a raw frame lays it out.

    A raw frame is ``(n_rows, overscan + n_cols + overscan)``: amplifier A's overscan
    strip on the left, then the data columns ``0 .. n_cols - 1`` (amplifier A reads
    ``0 .. amp_boundary - 1``, amplifier B the rest), then amplifier B's overscan strip.

    Attributes
    ----------
    n_rows : int
        Rows (spatial axis, fibers stacked along it).
    n_cols : int
        Data columns (dispersion axis).
    overscan : int
        Overscan columns per amplifier.
    amp_boundary : int
        First data column of amplifier B.
    u0 : float
        Origin (column) of the trace and wavelength polynomials: ``v = (x - u0) / u0`` for
        traces, ``u = x - u0`` for wavelength solutions.
    gain_e_per_adu, read_noise_e : float
        Defaults when a frame's header does not carry them (e-/ADU, e-).
    """

    n_rows: int
    n_cols: int
    overscan: int
    amp_boundary: int
    u0: float
    gain_e_per_adu: float = 1.5
    read_noise_e: float = 3.5

    def __post_init__(self) -> None:
        if self.n_rows <= 0 or self.n_cols <= 0 or self.overscan < 0:
            raise ValueError(
                f"detector of {self.n_rows} rows x {self.n_cols} columns with {self.overscan} overscan "
                "columns: rows and columns must be positive, the overscan not negative"
            )
        if not 0 < self.amp_boundary < self.n_cols:
            raise ValueError(f"amplifier boundary at data column {self.amp_boundary} is outside 1 .. {self.n_cols - 1}")

    @property
    def raw_shape(self) -> tuple[int, int]:
        """Shape of a raw frame: rows x (overscan A + data + overscan B)."""
        return (self.n_rows, 2 * self.overscan + self.n_cols)

    @property
    def amp_sections(self) -> tuple[slice, slice]:
        """Data columns of amplifiers A and B."""
        return (slice(0, self.amp_boundary), slice(self.amp_boundary, self.n_cols))

    def amplifier_of(self, cols: np.ndarray) -> np.ndarray:
        """Amplifier index (0 = A, 1 = B) of data columns ``cols`` (intp, the shape of ``cols``)."""
        return (np.asarray(cols) >= self.amp_boundary).astype(np.intp)

    def data_area(self, raw: np.ndarray) -> np.ndarray:
        """View of the data columns ``0 .. n_cols - 1`` of a raw frame."""
        return raw[:, self.overscan : self.overscan + self.n_cols]

    def overscan_area(self, raw: np.ndarray) -> np.ndarray:
        """Overscan strips ``(rows, 2, overscan)`` of amplifiers A and B (a copy)."""
        return np.stack([raw[:, : self.overscan], raw[:, self.overscan + self.n_cols :]], axis=1)

    def assemble_raw(self, data: np.ndarray, overscan: np.ndarray) -> np.ndarray:
        """Raw uint16 frame from the data area ``(rows, n_cols)`` and the overscan ``(rows, 2, overscan)``."""
        raw = np.empty((data.shape[0], self.raw_shape[1]), dtype=np.uint16)
        raw[:, : self.overscan] = overscan[:, 0]
        raw[:, self.overscan : self.overscan + self.n_cols] = data
        raw[:, self.overscan + self.n_cols :] = overscan[:, 1]
        return raw


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
    peak_throughput: float = Field(
        0.85 * 0.36, gt=0, le=1, description="QE x spectrograph at the peak (REFERENCE S/N calculator)"
    )
    blue_falloff_a: float = Field(
        description="scale of the throughput fall toward the short edge (coatings/QE), chosen"
    )


BLUE = ArmConfig(
    name="blue",
    center_a=4780.0,
    dispersion=0.57,
    quad=0.57 * 0.05 / 4096,
    cubic=0.0,
    band_min_a=3700.0,
    band_max_a=5900.0,
    blue_falloff_a=600.0,
)
RED = ArmConfig(
    name="red",
    center_a=7300.0,
    dispersion=0.84,
    quad=0.84 * 0.05 / 4096,
    cubic=0.0,
    band_min_a=5750.0,
    band_max_a=9050.0,
    blue_falloff_a=300.0,
)


class FiberConfig(_Frozen):
    """Fiber images on the CCD (all *chosen*: LAMOST does not publish these)."""

    pitch_px: float = Field(16.0, gt=4, description="fiber spacing along the rows (4096/250 ~ 16)")
    first_row: float = Field(70.0, description="row of fiber 1's trace at the CCD centre column")
    pitch_jitter_px: float = Field(0.3, ge=0, description="rms random offset of each fiber from the regular pitch")
    profile_fwhm_px: float = Field(6.0, gt=0.5, description="spatial FWHM of the Gaussian core")
    wing_fraction: float = Field(
        0.03, ge=0, lt=0.5, description="share of the light in the Lorentzian halo that reaches the neighbours"
    )
    wing_hwhm_px: float = Field(6.0, gt=0, description="half width of the Lorentzian halo")
    curvature_px: float = Field(
        6.0, description="trace bow (px) between centre and ends for the fibers at the slit ends"
    )
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
    cosmic_rate_per_cm2_min: float = Field(
        1.5, ge=0, description="cosmic-ray events per cm^2 per minute at the site, chosen"
    )
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
