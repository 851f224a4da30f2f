"""Reducing one arm of one spectrograph, in named steps on arrays (no files are read here).

The order (which frame is used when, so that few are in memory at once) is the arm recipe,
:func:`drcnet.reduce.recipe.reduce_arm`; each step takes arrays:

1. :func:`~drcnet.reduce.calib.bias_model` -- the bias frames' pattern, subtracted where significant;
2. :func:`trace_flat` -- the flat net of overscan (and bias), every fiber traced on it;
3. :func:`calibrate_arc` -- the arc summed along the traces around the usable lines, each fiber's
   wavelength offset fitted;
4. :func:`~drcnet.reduce.science.cut_science` -- the paper's 11 x 3000 stripe of every fiber (centre
   pixel +-5, columns 500..3499), net of overscan with the forward model's arithmetic; saturated and NaN pixels;
5. :func:`~drcnet.reduce.science.flat_profile` -- the flat's spatial profile in the same pixels and each
   fiber's flat flux;
6. :func:`~drcnet.reduce.science.extract_spectra` -- optimal (Horne) and boxcar extraction; NaN pixels
   replaced by the fit;
7. :func:`sky_spectra` -- relative fiber efficiency and the master sky from the usable sky fibers;
8. :func:`assemble_arm` -- the :class:`ArmReduction` (lost fibers zeroed, per-fiber flags).

The detector's numbers (rows, data columns, amplifier boundary, trace origin) come in as a
:class:`~drcnet.hardware.Detector`; this module imports no instrument.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from drcnet.conventions import STRIPE_COL_START, STRIPE_ROWS
from drcnet.hardware import LAMPS, ArmConfig, Detector, InstrumentConfig
from drcnet.reduce.calib import BiasModel, levels, net_image
from drcnet.reduce.extract import OptimalResult
from drcnet.reduce.science import ScienceStripes
from drcnet.reduce.sky import fiber_efficiency, master_sky
from drcnet.reduce.stripes import StripePixels, cut_stripes
from drcnet.reduce.trace import TraceConfig, TraceSet, trace_fibers
from drcnet.reduce.wavecal import (
    LineList,
    WavecalConfig,
    WaveSolution,
    calibrate,
    line_columns,
)


class ReduceConfig(BaseModel):
    """Options of the reduction (stored in the output's provenance)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instrument: InstrumentConfig = InstrumentConfig()
    trace: TraceConfig = TraceConfig()
    wavecal: WavecalConfig = WavecalConfig()
    lamps: tuple[str, ...] = LAMPS
    bias_significance: float = Field(5.0, gt=0, description="subtract the master-bias pattern above this significance")
    optimal_clip_sigma: float = Field(5.0, gt=1, description="outlier (cosmic-ray) rejection in the optimal extraction")
    flat_smooth_cols: int = Field(9, ge=1, description="running mean of the flat along columns for the spatial profile")
    low_snr: float = Field(5.0, ge=0, description="object fibers with S/N_r below this get the low_snr flag")
    defect_column_share: float = Field(
        0.25,
        gt=0,
        le=1,
        description="a stripe column saturated or NaN in more than "
        "this share of the fibers is a detector defect: its pixels are interpolated, "
        "the fibers are not flagged",
    )
    cosmic_flag_sigma: float = Field(
        5.0,
        gt=0,
        description="a rejected hit flags its fiber when it moved the boxcar flux by more than this many sigma ...",
    )
    cosmic_flag_share: float = Field(
        0.5,
        ge=0,
        description="... and by more than this share of the fiber's median flux, or when a spike was repaired",
    )
    threads: int = Field(2, ge=1, description="arms reduced in parallel")


@dataclass
class ArmReduction:
    """One arm of one spectrograph, reduced (arrays over all fibers; ``(n_fibers, 3000)`` for spectra).

    ``files``, ``header``, ``warnings`` and ``timings`` are filled by the workflow that read the frames.
    """

    arm: str
    stripes: np.ndarray
    flux1d: np.ndarray
    ivar1d: np.ndarray
    flux_opt: np.ndarray
    ivar_opt: np.ndarray
    sky1d: np.ndarray
    wave1d: np.ndarray
    efficiency: np.ndarray
    lost: np.ndarray
    saturated: np.ndarray
    cosmic: np.ndarray
    bad_pixels: np.ndarray
    traces: TraceSet
    wave: WaveSolution
    bias: BiasModel
    files: dict[str, object] = field(default_factory=dict)
    header: dict[str, object] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    bad_calib: np.ndarray | None = None
    """``(n_fibers,)`` bad pixels of the flat or arc, or overscan rows that could not be measured, touch the fiber."""
    no_arc_lines: np.ndarray | None = None
    """``(n_fibers,)`` no arc line was measured: the fiber keeps the median (or nominal) wavelength solution."""
    problems: list[str] = field(default_factory=list)
    """Why the arm's statistics are implausible (:mod:`drcnet.reduce.plausibility`); empty when they are fine."""
    faint: str = ""
    """Why the arm is faint (sky detected, but under 3 column read noises): its fibers get ``faint_arm``; else ``""``."""
    defect_columns: list[int] = field(default_factory=list)
    """Stripe columns (data-area columns) treated as a detector defect."""
    preview: np.ndarray | None = None
    """``(rows // 8, 4096 // 8)`` float32 the science frame net of overscan, binned 8 x 8 (for the QA page), or None."""
    zoom: np.ndarray | None = None
    """``(100, 300)`` float32 net science pixels around the middle of the slit (for the QA page), or None."""
    zoom_origin: tuple[int, int] = (0, 0)
    """Frame row and data column of ``zoom[0, 0]``."""
    profile_shift: np.ndarray | None = None
    """``(n_fibers,)`` shift (px) of each fiber's science light against the flat's profile
    (:func:`drcnet.reduce.flexure.recentre_profile`; 0.5 px or more: the optimal extraction used the re-centred
    profile); NaN for a fiber without a trace, None when not measured."""
    extraction_chi2: np.ndarray | None = None
    """``(n_fibers,)`` chi^2 per degree of freedom of each stripe after its optimal fit
    (:func:`drcnet.reduce.extract.extraction_chi2`): about 1 where the stripe is the profile times the
    spectrum, above where it holds light the profile does not describe (a neighbour's halo, scattered
    light, a trace error); NaN for a fiber without a trace, None when not measured."""

    def __post_init__(self) -> None:
        n = self.lost.shape[0]
        if self.bad_calib is None:
            self.bad_calib = np.zeros(n, dtype=bool)
        if self.no_arc_lines is None:
            self.no_arc_lines = np.zeros(n, dtype=bool)

    @property
    def implausible(self) -> bool:
        """The arm's statistics are implausible (see ``problems``): every fiber gets ``bad_arm``."""
        return bool(self.problems)

    def summary(self) -> dict[str, object]:
        """JSON-ready calibration record: timings, bias, traces, wavelength solution, flag counts, files."""
        assert self.bad_calib is not None and self.no_arc_lines is not None
        return {
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "bias": self.bias.summary(),
            "trace": self.traces.summary(),
            "wavecal": self.wave.summary(),
            "n_saturated": int(self.saturated.sum()),
            "n_cosmic": int(self.cosmic.sum()),
            "n_bad_pixels": int(self.bad_pixels.sum()),
            "n_bad_calib": int(self.bad_calib.sum()),
            "n_no_arc_lines": int(self.no_arc_lines.sum()),
            "defect_columns": self.defect_columns,
            "implausible": self.problems,
            "files": self.files,
            "header": self.header,
            "warnings": self.warnings,
            **({"faint": self.faint} if self.faint else {}),
        }


def trace_flat(
    flat_data: np.ndarray,
    flat_overscan: np.ndarray,
    bias_pattern: np.ndarray | None,
    n_fibers: int,
    config: ReduceConfig,
    expected_lit: np.ndarray | None = None,
    *,
    detector: Detector,
) -> tuple[np.ndarray, TraceSet]:
    """Net flat and the traces of every fiber on it.

    Parameters
    ----------
    flat_data, flat_overscan
        Data area ``(rows, 4096)`` and overscan ``(rows, 2, n_overscan)`` of the lamp flat (ADU).
    bias_pattern
        Per-column bias pattern to subtract (:attr:`BiasModel.pattern`), or None.
    n_fibers
        Fibers on the slit.
    expected_lit
        ``(n_fibers,)`` fibers that should show flat light (not dead, per the fiber map): anchors the numbering.
    detector
        The CCD: amplifier boundary and trace origin.

    Returns
    -------
    flat_net, traces
        Net flat ``(rows, 4096)`` float32 (ADU) and :class:`~drcnet.reduce.trace.TraceSet`.

    Raises
    ------
    ValueError
        Too few fibers show light on the flat, or the fiber numbering is ambiguous.
    """
    flat_net = net_image(flat_data, levels(flat_overscan), detector.amp_boundary, bias_pattern)
    return flat_net, trace_fibers(
        flat_net, n_fibers, config.instrument.fiber, config.trace, expected_lit, u0=detector.u0
    )


def calibrate_arc(
    arc_raw: np.ndarray,
    arc_overscan: np.ndarray,
    data_col_offset: int,
    centres: np.ndarray,
    lost: np.ndarray,
    arm: ArmConfig,
    lines: LineList,
    read_noise_adu: float,
    bias_pattern: np.ndarray | None,
    config: ReduceConfig,
    *,
    detector: Detector,
) -> WaveSolution:
    """Each fiber's wavelength offset from the arc frame.

    Only the columns around the arc lines the calibration measures are summed
    (:func:`~drcnet.reduce.wavecal.line_columns`), along the traces over the 11-row aperture.

    Parameters
    ----------
    arc_raw, arc_overscan
        The raw arc frame (data column ``c`` is frame column ``c + data_col_offset``) and its overscan.
    centres
        Trace rows ``(n_fibers, 4096)`` at every data column.
    lost
        ``(n_fibers,)`` fibers without a trace (skipped).
    read_noise_adu
        Read noise per pixel (ADU): the arc spectra's noise is ``sqrt(11)`` times it.
    detector
        The CCD: data columns, amplifier boundary, the wavelength solutions' origin.

    Returns
    -------
    WaveSolution
        With ``bad_pixels``: fibers whose arc aperture holds NaN pixels near a line (those
        columns are left out of the line search).
    """
    n_fibers = centres.shape[0]
    arc_cols = line_columns(arm, lines, config.wavecal, detector=detector)
    arc_spec = np.zeros((n_fibers, detector.n_cols))
    pixels = StripePixels.from_centres(
        centres[:, arc_cols], arc_cols, n_rows=arc_raw.shape[0], amp_boundary=detector.amp_boundary
    )
    net, _ = cut_stripes(arc_raw, levels(arc_overscan), pixels, data_col_offset, bias_pattern)
    arc_spec[:, arc_cols] = np.nansum(net, axis=1) if np.isnan(net).any() else net.sum(axis=1)  # nansum copies
    bad = np.zeros(n_fibers, dtype=bool)
    if arc_raw.dtype.kind == "f":
        nan_cols = (np.isnan(net) & ~pixels.off).any(axis=1)  # (fibers, arc columns)
        if nan_cols.any():
            sub = arc_spec[:, arc_cols]
            sub[nan_cols] = np.nan
            arc_spec[:, arc_cols] = sub
            bad = nan_cols.any(axis=1) & ~lost
    noise = np.full(n_fibers, np.sqrt(float(STRIPE_ROWS)) * read_noise_adu)
    with np.errstate(invalid="ignore"):
        wave = calibrate(arc_spec, arm, lines, noise, lost, config.wavecal, detector=detector)
    wave.bad_pixels = bad
    return wave


def sky_spectra(
    flux1d: np.ndarray, wave1d: np.ndarray, flat_flux: np.ndarray, lost: np.ndarray, usable_sky: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Relative fiber efficiency and every fiber's master sky (ADU per column, on its own wavelengths).

    Parameters
    ----------
    flux1d, wave1d, flat_flux
        ``(n_fibers, 3000)`` boxcar spectra, wavelengths (A) and flat aperture sums.
    lost
        ``(n_fibers,)`` fibers without a trace.
    usable_sky
        ``(n_fibers,)`` sky fibers to build the master sky from.

    Returns
    -------
    efficiency, sky1d
        ``(n_fibers, 3000)`` each.

    Raises
    ------
    ValueError
        ``usable_sky`` selects no fiber.
    """
    eff = fiber_efficiency(flat_flux, ~lost)
    if not usable_sky.any():
        raise ValueError("no usable sky fiber")
    return eff, master_sky(flux1d[usable_sky], wave1d[usable_sky], eff[usable_sky], wave1d, eff)


def assemble_arm(
    arm: str,
    science: ScienceStripes,
    extracted: tuple[np.ndarray, np.ndarray, np.ndarray, OptimalResult],
    sky: tuple[np.ndarray, np.ndarray],
    wave1d: np.ndarray,
    traces: TraceSet,
    wave: WaveSolution,
    bias: BiasModel,
    bad_flat: np.ndarray | None = None,
    config: ReduceConfig | None = None,
) -> ArmReduction:
    """The arm's :class:`ArmReduction`: lost fibers' spectra set to 0, per-fiber flags of the lost ones cleared.

    ``cosmic``: a hit the optimal extraction rejected moved the fiber's boxcar flux
    by more than ``cosmic_flag_sigma`` sigma and ``cosmic_flag_share`` of its median
    flux, or a spike was repaired - not every stripe that holds a small hit.
    ``bad_calib``: NaN pixels of the flat (``bad_flat``, ``traces.bad_flat``) or of the
    arc in the fiber's aperture, or an overscan row that could not be measured.
    ``no_arc_lines``: no arc line was measured for the fiber.
    """
    cfg = config or ReduceConfig()
    stripes, flux1d, ivar1d, opt = extracted
    eff, sky1d = sky
    lost = traces.lost
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.where(ivar1d > 0, 1.0 / np.sqrt(np.maximum(ivar1d, 1e-30)), np.inf)
    moved = flux1d - opt.flux
    level = np.median(np.abs(opt.flux), axis=1, keepdims=True)
    material = (
        opt.rejected.any(axis=1) & (moved > cfg.cosmic_flag_sigma * sigma) & (moved > cfg.cosmic_flag_share * level)
    )
    cosmic = material.any(axis=1)
    if opt.spikes is not None:
        cosmic |= opt.spikes.any(axis=1)
    bad_calib = science.bad_level.copy() if science.bad_level is not None else np.zeros(lost.shape, dtype=bool)
    for extra in (bad_flat, traces.bad_flat, wave.bad_pixels):
        if extra is not None:
            bad_calib |= extra
    for arr in (stripes, flux1d, ivar1d, opt.flux, opt.ivar, sky1d):
        arr[lost] = 0.0
    assert science.bad_fiber is not None and science.defect is not None
    return ArmReduction(
        arm=arm,
        stripes=stripes,
        flux1d=flux1d,
        ivar1d=ivar1d,
        flux_opt=opt.flux,
        ivar_opt=opt.ivar,
        sky1d=sky1d,
        wave1d=wave1d,
        efficiency=eff,
        lost=lost,
        saturated=science.saturated & ~lost,
        cosmic=cosmic & ~lost,
        bad_pixels=science.bad_fiber & ~lost,
        traces=traces,
        wave=wave,
        bias=bias,
        bad_calib=bad_calib & ~lost,
        profile_shift=None if opt.profile_shift is None else np.where(lost, np.nan, opt.profile_shift),
        extraction_chi2=None if opt.chi2 is None else np.where(lost, np.nan, opt.chi2),
        no_arc_lines=(wave.n_lines == 0) & ~lost,
        defect_columns=(np.flatnonzero(science.defect) + STRIPE_COL_START).tolist(),
    )
