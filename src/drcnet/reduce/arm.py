"""Reducing one arm of one spectrograph, in named steps on arrays (no files are read here).

The file-level order (which frame is read when, so that few are in memory at
once) is :func:`drcnet.workflows.reduce_exposure.reduce_arm`; each step here
takes the arrays the instrument adapter hands it:

1. :func:`~drcnet.reduce.calib.bias_model` -- the bias frames' pattern, subtracted where significant;
2. :func:`trace_flat` -- the flat net of overscan (and bias), every fiber traced on it;
3. :func:`calibrate_arc` -- the arc summed along the traces around the usable lines, each fiber's
   wavelength offset fitted;
4. :func:`cut_science` -- the paper's 11 x 3000 stripe of every fiber (centre pixel +-5, columns
   500..3499), net of overscan with the forward model's arithmetic; saturated and NaN pixels;
5. :func:`flat_profile` -- the flat's spatial profile in the same pixels and each fiber's flat flux;
6. :func:`extract_spectra` -- optimal (Horne) and boxcar extraction; NaN pixels replaced by the fit;
7. :func:`sky_spectra` -- relative fiber efficiency and the master sky from the usable sky fibers;
8. :func:`assemble_arm` -- the :class:`ArmReduction` (lost fibers zeroed, per-fiber flags).

Numbers of the detector layout (the data columns' offset in a raw frame) come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from drcnet.conventions import (
    STRIPE_COL_START,
    STRIPE_COL_STOP,
    STRIPE_ROWS,
    stripe_columns,
)
from drcnet.hardware import LAMPS, ArmConfig, Detector, InstrumentConfig
from drcnet.reduce.calib import (
    BiasModel,
    levels,
    net_image,
    quiet_nan_warnings,
    robust_levels,
)
from drcnet.reduce.extract import (
    OptimalResult,
    StripePixels,
    boxcar,
    cut_stripes,
    optimal_extract,
    repair_spikes,
    smooth_columns,
    spatial_profile,
    spike_columns,
)
from drcnet.reduce.sky import fiber_efficiency, master_sky
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
    defect_column_share: float = Field(0.25, gt=0, le=1, description="a stripe column saturated or NaN in more than "
                                       "this share of the fibers is a detector defect: its pixels are interpolated, "
                                       "the fibers are not flagged")
    cosmic_flag_sigma: float = Field(5.0, gt=0, description="a rejected hit flags its fiber when it moved the boxcar "
                                     "flux by more than this many sigma ...")
    cosmic_flag_share: float = Field(0.5, ge=0, description="... and by more than this share of the fiber's median "
                                     "flux, or when a spike was repaired")
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
        return {"timings_s": {k: round(v, 3) for k, v in self.timings.items()}, "bias": self.bias.summary(),
                "trace": self.traces.summary(), "wavecal": self.wave.summary(),
                "n_saturated": int(self.saturated.sum()), "n_cosmic": int(self.cosmic.sum()),
                "n_bad_pixels": int(self.bad_pixels.sum()), "n_bad_calib": int(self.bad_calib.sum()),
                "n_no_arc_lines": int(self.no_arc_lines.sum()), "defect_columns": self.defect_columns,
                "implausible": self.problems, "files": self.files, "header": self.header,
                "warnings": self.warnings, **({"faint": self.faint} if self.faint else {})}


def trace_flat(flat_data: np.ndarray, flat_overscan: np.ndarray, bias_pattern: np.ndarray | None,
               n_fibers: int, config: ReduceConfig, expected_lit: np.ndarray | None = None, *,
               detector: Detector) -> tuple[np.ndarray, TraceSet]:
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
    return flat_net, trace_fibers(flat_net, n_fibers, config.instrument.fiber, config.trace, expected_lit,
                                  u0=detector.u0)


def calibrate_arc(arc_raw: np.ndarray, arc_overscan: np.ndarray, data_col_offset: int, centres: np.ndarray,
                  lost: np.ndarray, arm: ArmConfig, lines: LineList, read_noise_adu: float,
                  bias_pattern: np.ndarray | None, config: ReduceConfig, *, detector: Detector) -> WaveSolution:
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
    pixels = StripePixels.from_centres(centres[:, arc_cols], arc_cols, n_rows=arc_raw.shape[0],
                                       amp_boundary=detector.amp_boundary)
    net, _ = cut_stripes(arc_raw, levels(arc_overscan), pixels, data_col_offset, bias_pattern)
    arc_spec[:, arc_cols] = np.nansum(net, axis=1) if np.isnan(net).any() else net.sum(axis=1)  # nansum copies
    bad = np.zeros(n_fibers, dtype=bool)
    if arc_raw.dtype.kind == "f":
        nan_cols = (np.isnan(net) & ~pixels.off).any(axis=1)          # (fibers, arc columns)
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


@dataclass
class ScienceStripes:
    """The science frame's stripes and what the raw pixels say about them (from :func:`cut_science`)."""

    pixels: StripePixels
    stripes: np.ndarray
    """``(n_fibers, 11, 3000)`` float64 net ADU (NaN for bad or off-CCD pixels)."""
    saturated: np.ndarray
    """``(n_fibers,)`` a raw pixel reaches the saturation level."""
    bad: np.ndarray
    """``(n_fibers, 11, 3000)`` pixels the extraction must not use: non-finite, or in a defect column."""
    bad_fiber: np.ndarray | None = None
    """``(n_fibers,)`` NaN pixels in the stripe outside the defect columns (the ``bad_pixels`` flag)."""
    bad_level: np.ndarray | None = None
    """``(n_fibers,)`` the stripe crosses an overscan row whose level could not be measured."""
    defect: np.ndarray | None = None
    """``(3000,)`` stripe columns saturated or NaN across many fibers: a detector defect, interpolated."""
    level: np.ndarray | None = None
    """``(rows, 2)`` the overscan level of each row and amplifier that was subtracted (ADU)."""

    def __post_init__(self) -> None:
        n = self.stripes.shape[0]
        if self.bad_fiber is None:
            self.bad_fiber = self.bad.any(axis=(1, 2))
        if self.bad_level is None:
            self.bad_level = np.zeros(n, dtype=bool)
        if self.defect is None:
            self.defect = np.zeros(self.stripes.shape[2], dtype=bool)


def cut_science(sci_raw: np.ndarray, sci_overscan: np.ndarray, data_col_offset: int, centres: np.ndarray,
                bias_pattern: np.ndarray | None, saturation: float, defect_share: float = 0.25, *,
                detector: Detector) -> ScienceStripes:
    """Cut every fiber's stripe from the science frame: exactly the forward model's arithmetic.

    The overscan level of each row is outlier-resistant (:func:`~drcnet.reduce.calib.robust_levels`;
    the plain mean on a clean frame). A stripe column that is saturated or NaN in more
    than ``defect_share`` of the fibers is a detector defect (a bad column): its pixels
    are left to the extraction to interpolate and do not flag the fibers.

    Parameters
    ----------
    sci_raw, sci_overscan
        The raw science frame (uint16, or float32 with NaN) and its overscan ``(rows, 2, n_overscan)``.
    centres
        Trace rows ``(n_fibers, 4096)``.
    saturation
        ADC ceiling (ADU).
    defect_share
        Share of the fibers above which a bad stripe column is a detector defect.
    detector
        The CCD: rows and amplifier boundary.
    """
    cols = stripe_columns()
    pixels = StripePixels.from_centres(centres[:, cols], cols, n_rows=detector.n_rows,
                                       amp_boundary=detector.amp_boundary)
    level, repaired = robust_levels(sci_overscan)
    stripes, raw = cut_stripes(sci_raw, level, pixels, data_col_offset, bias_pattern)
    sat = raw >= saturation
    # integer pixels are finite: only pixels off the CCD are NaN
    nan = pixels.off.copy() if raw.dtype.kind in "ui" else ~np.isfinite(stripes)
    defect = (sat | nan).any(axis=1).mean(axis=0) > defect_share
    saturated = np.any(sat & ~defect[None, None, :], axis=(1, 2))
    bad = nan | (sat & defect[None, None, :])
    bad_fiber = np.any(nan & ~defect[None, None, :], axis=(1, 2))
    bad_level = np.zeros(stripes.shape[0], dtype=bool)
    if repaired.any():
        amp = (pixels.cols >= detector.amp_boundary).astype(np.intp)
        bad_level = repaired[pixels.rows, amp[None, None, :]].any(axis=(1, 2))
    return ScienceStripes(pixels=pixels, stripes=stripes, saturated=saturated, bad=bad, bad_fiber=bad_fiber,
                          bad_level=bad_level, defect=defect, level=level)


def flat_profile(flat_net: np.ndarray, pixels: StripePixels, smooth_cols: int,
                 centres: np.ndarray | None = None, sigma_px: float = 2.55) -> tuple[np.ndarray, np.ndarray]:
    """The flat's normalised spatial profile in the stripe pixels and each fiber's flat flux.

    Where a fiber's flat aperture holds NaN pixels (see :func:`bad_flat_fibers`), its
    profile in those columns is a Gaussian of width ``sigma_px`` about its trace
    (``centres`` at the stripe columns; required then) and its flat flux the median
    of its good neighbours (two on each side), so the fiber efficiency and the sky
    scale are not pulled down.

    Returns
    -------
    profile, flat_flux
        ``(n_fibers, 11, 3000)`` (each column sums to 1) and ``(n_fibers, 3000)`` aperture sums (ADU).
    """
    lo, hi = STRIPE_COL_START - smooth_cols, STRIPE_COL_STOP + smooth_cols
    smooth = smooth_columns(flat_net[:, lo:hi], smooth_cols)
    profile = spatial_profile(pixels.take(smooth, -lo))
    flat_st = pixels.take(flat_net)
    flat_flux = flat_st.sum(axis=1) if not np.isnan(flat_st).any() else np.nansum(flat_st, axis=1)
    if flat_net.dtype.kind == "f" and centres is not None:
        nan_fc = np.isnan(flat_st).any(axis=1)  # (fibers, columns)
        touched = np.convolve(nan_fc.any(axis=0).astype(float), np.ones(2 * smooth_cols + 1), mode="same") > 0
        bad_fc = nan_fc | (nan_fc.any(axis=1)[:, None] & touched[None, :])
        for f in np.flatnonzero(bad_fc.any(axis=1)):
            c = bad_fc[f]
            d = (pixels.rows[f][:, c] - centres[f, c][None, :]) / sigma_px
            g = np.exp(-0.5 * d**2)
            profile[f][:, c] = (g / g.sum(axis=0, keepdims=True)).astype(profile.dtype)
            nb = [k for k in (f - 2, f - 1, f + 1, f + 2) if 0 <= k < flat_flux.shape[0]]
            vals = np.where(bad_fc[nb][:, c], np.nan, flat_flux[nb][:, c])
            with np.errstate(invalid="ignore"), quiet_nan_warnings():
                flat_flux[f, c] = np.nan_to_num(np.nanmedian(vals, axis=0), nan=0.0)
    return profile, flat_flux


def bad_flat_fibers(flat_net: np.ndarray, pixels: StripePixels) -> np.ndarray:
    """``(n_fibers,)`` fibers whose flat aperture (the stripe pixels) holds NaN pixels."""
    if flat_net.dtype.kind != "f" or not np.isnan(flat_net).any():
        return np.zeros(pixels.shape[0], dtype=bool)
    return np.isnan(pixels.take(flat_net)).any(axis=(1, 2))




def extract_spectra(science: ScienceStripes, profile: np.ndarray, gain: float, read_noise_adu: float,
                    clip_sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, OptimalResult]:
    """Optimal and boxcar extraction of every stripe.

    NaN pixels are replaced by the fitted profile so the stripe stays usable (the
    fiber is flagged ``bad_pixels``). Defect columns (``science.defect``) are
    interpolated from the nearest good columns in the stripes and both extractions
    and get zero inverse variance. Spikes along wavelength in the optimal spectra
    (a hit across the whole aperture, :func:`~drcnet.reduce.extract.spike_columns`)
    are repaired there (``optimal.spikes``; saturated fibers are left alone).

    Returns
    -------
    stripes, flux1d, ivar1d, optimal
        The stripes (bad pixels replaced), the boxcar flux and inverse variance
        ``(n_fibers, 3000)``, and the optimal extraction.
    """
    stripes, bad = science.stripes, science.bad
    opt = optimal_extract(stripes, profile, gain, read_noise_adu, clip_sigma, bad=bad)  # float32 per chunk
    if bad.any():
        stripes = np.where(bad, opt.model, stripes)
    defect = science.defect
    if defect is not None and defect.any():
        stripes = _interpolate_columns(stripes, defect)
        opt.flux[:] = _interpolate_columns(opt.flux, defect)
        opt.ivar[:, defect] = 0.0
    flux1d, ivar1d = boxcar(stripes, gain, read_noise_adu)
    if defect is not None and defect.any():
        ivar1d[:, defect] = 0.0
    spikes = spike_columns(opt.flux, opt.ivar) & ~science.saturated[:, None]
    repair_spikes(opt.flux, opt.ivar, spikes)
    opt.spikes = spikes
    return stripes, flux1d, ivar1d, opt


def _interpolate_columns(values: np.ndarray, bad_cols: np.ndarray) -> np.ndarray:
    """``values`` (``(..., n_cols)``) with the columns ``bad_cols`` linearly interpolated from the good ones."""
    good = np.flatnonzero(~bad_cols)
    bad = np.flatnonzero(bad_cols)
    if good.size == 0:
        return values
    out = values.copy()
    right = np.clip(np.searchsorted(good, bad), 0, good.size - 1)
    left = np.clip(right - 1, 0, good.size - 1)
    lo, hi = good[left], good[right]
    w = np.where(hi != lo, (bad - lo) / np.where(hi != lo, hi - lo, 1), 0.5)
    out[..., bad] = (1 - w) * values[..., lo] + w * values[..., hi]
    return out


def sky_spectra(flux1d: np.ndarray, wave1d: np.ndarray, flat_flux: np.ndarray, lost: np.ndarray,
                usable_sky: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def assemble_arm(arm: str, science: ScienceStripes, extracted: tuple[np.ndarray, np.ndarray, np.ndarray, OptimalResult],
                 sky: tuple[np.ndarray, np.ndarray], wave1d: np.ndarray, traces: TraceSet, wave: WaveSolution,
                 bias: BiasModel, bad_flat: np.ndarray | None = None, config: ReduceConfig | None = None) -> ArmReduction:
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
    material = opt.rejected.any(axis=1) & (moved > cfg.cosmic_flag_sigma * sigma) & (moved > cfg.cosmic_flag_share * level)
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
        arm=arm, stripes=stripes, flux1d=flux1d, ivar1d=ivar1d, flux_opt=opt.flux, ivar_opt=opt.ivar,
        sky1d=sky1d, wave1d=wave1d, efficiency=eff, lost=lost, saturated=science.saturated & ~lost,
        cosmic=cosmic & ~lost, bad_pixels=science.bad_fiber & ~lost, traces=traces, wave=wave, bias=bias,
        bad_calib=bad_calib & ~lost, no_arc_lines=(wave.n_lines == 0) & ~lost,
        defect_columns=(np.flatnonzero(science.defect) + STRIPE_COL_START).tolist())
