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

from drcnet.conventions import STRIPE_COL_START, STRIPE_COL_STOP, STRIPE_ROWS, stripe_columns
from drcnet.instrument.config import LAMPS, N_COLS, ArmConfig, InstrumentConfig
from drcnet.reduce.calib import BiasModel, levels, net_image
from drcnet.reduce.extract import (
    OptimalResult,
    StripePixels,
    aperture_sums,
    boxcar,
    cut_stripes,
    optimal_extract,
    smooth_columns,
    spatial_profile,
)
from drcnet.reduce.sky import fiber_efficiency, master_sky
from drcnet.reduce.trace import TraceConfig, TraceSet, trace_fibers
from drcnet.reduce.wavecal import LineList, WavecalConfig, WaveSolution, calibrate, line_columns


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

    def summary(self) -> dict[str, object]:
        """JSON-ready calibration record: timings, bias, traces, wavelength solution, flag counts, files."""
        return {"timings_s": {k: round(v, 3) for k, v in self.timings.items()}, "bias": self.bias.summary(),
                "trace": self.traces.summary(), "wavecal": self.wave.summary(),
                "n_saturated": int(self.saturated.sum()), "n_cosmic": int(self.cosmic.sum()),
                "n_bad_pixels": int(self.bad_pixels.sum()), "files": self.files, "header": self.header,
                "warnings": self.warnings}


def trace_flat(flat_data: np.ndarray, flat_overscan: np.ndarray, bias_pattern: np.ndarray | None,
               n_fibers: int, config: ReduceConfig) -> tuple[np.ndarray, TraceSet]:
    """Net flat and the traces of every fiber on it.

    Parameters
    ----------
    flat_data, flat_overscan
        Data area ``(rows, 4096)`` and overscan ``(rows, 2, n_overscan)`` of the lamp flat (ADU).
    bias_pattern
        Per-column bias pattern to subtract (:attr:`BiasModel.pattern`), or None.
    n_fibers
        Fibers on the slit.

    Returns
    -------
    flat_net, traces
        Net flat ``(rows, 4096)`` float32 (ADU) and :class:`~drcnet.reduce.trace.TraceSet`.

    Raises
    ------
    ValueError
        Too few fibers show light on the flat.
    """
    flat_net = net_image(flat_data, levels(flat_overscan), bias_pattern)
    return flat_net, trace_fibers(flat_net, n_fibers, config.instrument.fiber, config.trace)


def calibrate_arc(arc_raw: np.ndarray, arc_overscan: np.ndarray, data_col_offset: int, centres: np.ndarray,
                  lost: np.ndarray, arm: ArmConfig, lines: LineList, read_noise_adu: float,
                  bias_pattern: np.ndarray | None, config: ReduceConfig) -> WaveSolution:
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
    """
    n_fibers = centres.shape[0]
    arc_cols = line_columns(arm, lines, config.wavecal)
    arc_spec = np.zeros((n_fibers, N_COLS))
    arc_spec[:, arc_cols] = aperture_sums(arc_raw, levels(arc_overscan), centres[:, arc_cols], arc_cols,
                                          data_col_offset, bias_columns=bias_pattern)
    noise = np.full(n_fibers, np.sqrt(float(STRIPE_ROWS)) * read_noise_adu)
    return calibrate(arc_spec, arm, lines, noise, lost, config.wavecal)


@dataclass
class ScienceStripes:
    """The science frame's stripes and what the raw pixels say about them (from :func:`cut_science`)."""

    pixels: StripePixels
    stripes: np.ndarray
    """``(n_fibers, 11, 3000)`` float64 net ADU (NaN for bad or off-CCD pixels)."""
    saturated: np.ndarray
    """``(n_fibers,)`` a raw pixel reaches the saturation level."""
    bad: np.ndarray
    """``(n_fibers, 11, 3000)`` non-finite pixels."""


def cut_science(sci_raw: np.ndarray, sci_overscan: np.ndarray, data_col_offset: int, centres: np.ndarray,
                bias_pattern: np.ndarray | None, saturation: float) -> ScienceStripes:
    """Cut every fiber's stripe from the science frame: exactly the forward model's arithmetic.

    Parameters
    ----------
    sci_raw, sci_overscan
        The raw science frame (uint16, or float32 with NaN) and its overscan ``(rows, 2, n_overscan)``.
    centres
        Trace rows ``(n_fibers, 4096)``.
    saturation
        ADC ceiling (ADU).
    """
    cols = stripe_columns()
    pixels = StripePixels.from_centres(centres[:, cols], cols)
    stripes, raw = cut_stripes(sci_raw, levels(sci_overscan), pixels, data_col_offset, bias_pattern)
    saturated = np.any(raw >= saturation, axis=(1, 2))
    return ScienceStripes(pixels=pixels, stripes=stripes, saturated=saturated, bad=~np.isfinite(stripes))


def flat_profile(flat_net: np.ndarray, pixels: StripePixels, smooth_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """The flat's normalised spatial profile in the stripe pixels and each fiber's flat flux.

    Returns
    -------
    profile, flat_flux
        ``(n_fibers, 11, 3000)`` (each column sums to 1) and ``(n_fibers, 3000)`` aperture sums (ADU).
    """
    lo, hi = STRIPE_COL_START - smooth_cols, STRIPE_COL_STOP + smooth_cols
    smooth = smooth_columns(flat_net[:, lo:hi], smooth_cols)
    profile = spatial_profile(pixels.take(smooth, -lo))
    return profile, np.nansum(pixels.take(flat_net), axis=1)


def extract_spectra(science: ScienceStripes, profile: np.ndarray, gain: float, read_noise_adu: float,
                    clip_sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, OptimalResult]:
    """Optimal and boxcar extraction of every stripe.

    NaN pixels are replaced by the fitted profile so the stripe stays usable (the
    fiber is flagged ``bad_pixels``).

    Returns
    -------
    stripes, flux1d, ivar1d, optimal
        The stripes (bad pixels replaced), the boxcar flux and inverse variance
        ``(n_fibers, 3000)``, and the optimal extraction.
    """
    stripes, bad = science.stripes, science.bad
    opt = optimal_extract(stripes.astype(np.float32), profile, gain, read_noise_adu, clip_sigma, bad=bad)
    if bad.any():
        stripes = np.where(bad, opt.model, stripes)
    flux1d, ivar1d = boxcar(stripes, gain, read_noise_adu)
    return stripes, flux1d, ivar1d, opt


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
                 bias: BiasModel) -> ArmReduction:
    """The arm's :class:`ArmReduction`: lost fibers' spectra set to 0, per-fiber flags of the lost ones cleared."""
    stripes, flux1d, ivar1d, opt = extracted
    eff, sky1d = sky
    lost = traces.lost
    for arr in (stripes, flux1d, ivar1d, opt.flux, opt.ivar, sky1d):
        arr[lost] = 0.0
    return ArmReduction(
        arm=arm, stripes=stripes, flux1d=flux1d, ivar1d=ivar1d, flux_opt=opt.flux, ivar_opt=opt.ivar,
        sky1d=sky1d, wave1d=wave1d, efficiency=eff, lost=lost, saturated=science.saturated & ~lost,
        cosmic=opt.rejected.any(axis=(1, 2)) & ~lost, bad_pixels=science.bad.any(axis=(1, 2)) & ~lost,
        traces=traces, wave=wave, bias=bias)
