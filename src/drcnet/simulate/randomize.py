"""Domain randomisation: vary what our forward model may get wrong about the real LAMOST instrument.

A network trained on one fixed simulated instrument can learn that instrument (its exact response
curve, sky level, profile width) instead of the stars. Everything below is drawn afresh for every
object, so none of it is learnable; the ranges are wide enough to contain the real LAMOST values that
are not published (``../shared/REFERENCE.md`` section 4), each with its reason in
:class:`DomainRandomization`. Validated by pydantic: a wrong range fails early with its name.

Applied by :class:`RandomizedForwardModel`, a :class:`~drcnet.simulate.render.ForwardModel` whose
:meth:`~RandomizedForwardModel.render_object` draws an :class:`ObjectPerturbation` and renders with
it. The nominal model (``drcnet simulate``) is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.polynomial import legendre
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.ndimage import median_filter, uniform_filter1d

from drcnet.instrument import ArmConfig, InstrumentConfig
from drcnet.library.template import Template
from drcnet.simulate.optics import FiberGeometry, ProfileTable
from drcnet.simulate.render import ForwardModel, ObjectResult, Source
from drcnet.simulate.site import Site

RANDOMIZED_PARAM_NAMES: tuple[str, ...] = (
    "dr_sky_level",
    "dr_sky_line_scale",
    "dr_profile_fwhm_px",
    "dr_trace_offset_blue",
    "dr_trace_offset_red",
    "dr_wave_offset_blue",
    "dr_wave_offset_red",
    "dr_scattered",
)
"""Per-object perturbations stored under ``params/`` of a randomised dataset file."""


def _range(lo: float, hi: float, description: str) -> tuple[float, float]:
    return Field((lo, hi), description=description)  # type: ignore[return-value]


class DomainRandomization(BaseModel):
    """Per-object ranges of the instrument quantities that are randomised (all drawn uniformly).

    Every range is ``(low, high)`` with ``low <= high``; ``(x, x)`` switches a quantity off.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    throughput_amplitude: float = Field(
        0.25,
        ge=0.0,
        lt=1.0,
        description="rms of the per-arm smooth log-throughput perturbation (Legendre degree <= 3 over the "
        "stripe). The raw stripes are not flat-fielded, so they carry the instrument response; "
        "LAMOST's real QE x grating x dichroic curve is not published and differs per spectrograph "
        "and with fiber focal-ratio degradation: +-25 % covers the spread of the published CCD203 "
        "QE curves and dichroic crossover shapes over 1700 A.",
    )
    throughput_degree: int = Field(3, ge=0, le=6, description="highest Legendre degree of that perturbation")
    sky_level: tuple[float, float] = _range(
        0.5,
        2.5,
        "sky continuum scale (x the 20.3 mag/arcsec^2 default): Xinglong r-band sky runs from "
        "~21 (dark) to ~19.3 mag/arcsec^2 (bright time, moon, urban glow), a factor 0.5-2.5",
    )
    sky_line_scale: tuple[float, float] = _range(
        0.5,
        2.0,
        "emission-line strength relative to the sky continuum: OH and [O I] lines vary by a factor "
        "~2 within a night and between nights (Patat 2008); the Paranal spectrum used is one epoch",
    )
    profile_fwhm_px: tuple[float, float] = _range(
        4.5,
        8.0,
        "spatial FWHM of the fiber image (px): LAMOST publishes 7-9 px for the monochromatic "
        "image along dispersion; across it the default 6 px is a guess",
    )
    trace_offset_px: tuple[float, float] = _range(
        -0.7,
        0.7,
        "error of the traced centre the stripe is cut around (px): a flat-field trace is good to "
        "a few 0.1 px, and flexure between flat and science exposure adds ~0.5 px",
    )
    wave_offset_px: tuple[float, float] = _range(
        -3.0,
        3.0,
        "shift of each arm's wavelength solution (px): the arc-lamp solution and the science frame "
        "differ by flexure and temperature; the nominal per-fiber 0.3 px rms is kept on top",
    )
    scattered_fraction: tuple[float, float] = _range(
        0.0,
        0.04,
        "scattered light: share of the smoothed fiber light spread evenly over the stripe rows; "
        "not in the nominal model at all, a few per cent in fiber spectrographs",
    )
    snr_range: tuple[float, float] = _range(
        2.0,
        150.0,
        "S/N_r drawn log-uniformly: LAMOST's F/G/K catalogue runs from the S/N ~2 that the "
        "paper's low bin reaches to ~150 for the brightest plates",
    )

    @model_validator(mode="after")
    def _ordered(self) -> DomainRandomization:
        for name in (
            "sky_level",
            "sky_line_scale",
            "profile_fwhm_px",
            "trace_offset_px",
            "wave_offset_px",
            "scattered_fraction",
            "snr_range",
        ):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"{name}: low {lo} must not exceed high {hi}")
        if self.sky_level[0] <= 0 or self.sky_line_scale[0] < 0 or self.profile_fwhm_px[0] <= 0.5:
            raise ValueError("sky_level and profile_fwhm_px must be positive, sky_line_scale >= 0")
        if self.scattered_fraction[0] < 0 or self.snr_range[0] <= 0:
            raise ValueError("scattered_fraction must be >= 0 and snr_range positive")
        return self


#: Profile widths tabulated once; each object uses the nearest (0.5 px steps are far below the range).
PROFILE_STEP_PX = 0.5


@dataclass(frozen=True)
class ObjectPerturbation:
    """One object's draw of every randomised quantity (arm order blue, red)."""

    throughput_coef: tuple[tuple[float, ...], tuple[float, ...]]
    sky_level: float
    sky_line_scale: float
    profile_fwhm_px: float
    trace_offset_px: tuple[float, float]
    wave_offset_px: tuple[float, float]
    scattered_fraction: float

    def as_params(self) -> dict[str, float]:
        """Flat record for the dataset's ``params`` table."""
        return {
            "dr_sky_level": self.sky_level,
            "dr_sky_line_scale": self.sky_line_scale,
            "dr_profile_fwhm_px": self.profile_fwhm_px,
            "dr_trace_offset_blue": self.trace_offset_px[0],
            "dr_trace_offset_red": self.trace_offset_px[1],
            "dr_wave_offset_blue": self.wave_offset_px[0],
            "dr_wave_offset_red": self.wave_offset_px[1],
            "dr_scattered": self.scattered_fraction,
        }


def draw_perturbation(cfg: DomainRandomization, rng: np.random.Generator) -> ObjectPerturbation:
    """Draw one object's perturbation; every value lies inside its configured range."""

    def u(r: tuple[float, float]) -> float:
        return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])

    n = cfg.throughput_degree + 1
    # equal rms per Legendre degree (the mean of P_k^2 over [-1, 1] is 1 / (2k + 1))
    coefs = tuple(
        tuple(
            float(c)
            for c in rng.normal(0.0, cfg.throughput_amplitude / math.sqrt(n), n) * np.sqrt(2 * np.arange(n) + 1)
        )
        for _ in range(2)
    )
    return ObjectPerturbation(
        throughput_coef=coefs,  # type: ignore[arg-type]
        sky_level=u(cfg.sky_level),
        sky_line_scale=u(cfg.sky_line_scale),
        profile_fwhm_px=u(cfg.profile_fwhm_px),
        trace_offset_px=(u(cfg.trace_offset_px), u(cfg.trace_offset_px)),
        wave_offset_px=(u(cfg.wave_offset_px), u(cfg.wave_offset_px)),
        scattered_fraction=u(cfg.scattered_fraction),
    )


def throughput_factor(coef: Sequence[float], cols: np.ndarray, limit: float = 2.0) -> np.ndarray:
    """Smooth multiplicative response ``exp(sum c_k P_k(x))`` over the columns, clipped to [1/limit, limit]."""
    x = np.linspace(-1.0, 1.0, cols.size)
    return np.clip(np.exp(legendre.legval(x, np.asarray(coef))), 1.0 / limit, limit)


def split_sky_lines(sky_e: np.ndarray, width_px: int = 61) -> tuple[np.ndarray, np.ndarray]:
    """Split a sky spectrum (per column) into a smooth continuum (running median) and its emission lines."""
    cont = median_filter(sky_e, size=width_px, mode="nearest")
    return cont, sky_e - cont


class RandomizedForwardModel(ForwardModel):
    """The forward model with per-object domain randomisation (see :class:`DomainRandomization`)."""

    def __init__(
        self,
        instrument: InstrumentConfig,
        site: Site,
        templates: Sequence[Template],
        randomization: DomainRandomization | None = None,
    ) -> None:
        super().__init__(instrument, site, templates)
        self.randomization = randomization or DomainRandomization()
        self.base_instrument = instrument
        self._profiles: dict[float, ProfileTable] = {}
        self._current: ObjectPerturbation | None = None

    def _profile_for(self, fwhm: float) -> ProfileTable:
        key = round(fwhm / PROFILE_STEP_PX) * PROFILE_STEP_PX
        if key not in self._profiles:
            fiber = self.base_instrument.fiber.model_copy(update={"profile_fwhm_px": key})
            self._profiles[key] = ProfileTable(fiber)
        return self._profiles[key]

    def render_object(
        self,
        source: Source,
        fiber: int,
        rng: np.random.Generator,
        snr_target: float | None = None,
        neighbours: Sequence[Source | None] = (None, None),
        cols: np.ndarray | None = None,
    ) -> ObjectResult:
        """Draw a perturbation, then render as :meth:`ForwardModel.render_object` does under it."""
        p = draw_perturbation(self.randomization, rng)
        base = self.base_instrument

        def shifted(arm: ArmConfig, px: float) -> ArmConfig:
            return arm.model_copy(update={"center_a": arm.center_a - px * arm.dispersion})

        self.instrument = base.model_copy(
            update={
                "blue": shifted(base.blue, p.wave_offset_px[0]),
                "red": shifted(base.red, p.wave_offset_px[1]),
                "fiber": base.fiber.model_copy(update={"profile_fwhm_px": p.profile_fwhm_px}),
            }
        )
        self.profile = self._profile_for(p.profile_fwhm_px)
        self._current = p
        try:
            result = super().render_object(source, fiber, rng, snr_target=snr_target, neighbours=neighbours, cols=cols)
        finally:
            self.instrument = base
            self._current = None
        result.params.update(p.as_params())
        return result

    def fiber_electrons(
        self, arm: ArmConfig, geom: FiberGeometry, cols: np.ndarray, source: Source | None, sky_scale: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nominal light times this object's smooth arm response; sky continuum and lines rescaled."""
        wave, star_e, sky_e = super().fiber_electrons(arm, geom, cols, source, sky_scale)
        p = self._current
        if p is None:
            return wave, star_e, sky_e
        a = 0 if arm.name == "blue" else 1
        t = throughput_factor(p.throughput_coef[a], cols)
        cont, lines = split_sky_lines(sky_e)
        sky_e = np.clip(p.sky_level * (cont + p.sky_line_scale * lines), 0.0, None)
        return wave, star_e * t, sky_e * t

    def _render_arm(
        self,
        geom: FiberGeometry,
        cols: np.ndarray,
        lights: list[tuple[FiberGeometry, np.ndarray]],
        wave: np.ndarray,
        sky_e: np.ndarray,
        ap: np.ndarray,
        rng: np.random.Generator,
    ):  # type: ignore[no-untyped-def]
        """Cut the stripe around a mis-traced centre (the light stays on the true trace)."""
        p = self._current
        if p is not None:
            a = 0 if wave[0] < 5800.0 else 1
            geom = replace(geom, row0=geom.row0 + p.trace_offset_px[a])
        return super()._render_arm(geom, cols, lights, wave, sky_e, ap, rng)

    def extra_light(
        self, rows: np.ndarray, cols: np.ndarray, lights: list[tuple[FiberGeometry, np.ndarray]]
    ) -> np.ndarray | float:
        """Scattered light: a share of the fibers' light, smoothed over 200 columns, spread evenly over rows."""
        p = self._current
        if p is None or p.scattered_fraction <= 0:
            return 0.0
        total = sum(e for _, e in lights)
        smooth = uniform_filter1d(np.asarray(total, dtype=float), size=201, mode="nearest")
        pitch = self.base_instrument.fiber.pitch_px
        return np.broadcast_to(p.scattered_fraction * smooth / pitch, (rows.shape[0], cols.size)).copy()
