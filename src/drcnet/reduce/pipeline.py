"""``drcnet frames reduce``: raw frames of an exposure -> stripes, 1D spectra, S/N_r, flags.

Per spectrograph and arm (the two arms run in parallel threads):

1. read and check every frame (:mod:`drcnet.frames.lamost`); overscan per
   amplifier and row; the bias frames' pattern where significant
   (:mod:`drcnet.reduce.calib`);
2. trace all fibers on the flat (:mod:`drcnet.reduce.trace`);
3. extract the arc along the traces and fit each fiber's wavelength offset
   (:mod:`drcnet.reduce.wavecal`);
4. cut every fiber's 11 x 3000 stripe from the science frame (centre pixel
   +-5, columns 500..3499), boxcar and optimal extraction with the flat's
   spatial profile (:mod:`drcnet.reduce.extract`), relative fiber efficiency
   and the master sky (:mod:`drcnet.reduce.sky`);
5. per fiber: saturation, cosmic-ray hits, NaN pixels, lost traces.

Then S/N_r is measured on the red arm as the dataset path does
(:func:`drcnet.simulate.render.measure_snr_r`) and joined with the fiber map;
:func:`drcnet.reduce.output.write_reduced_dataset` writes the dataset file.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from drcnet.data.schema import FLAG_BITS
from drcnet.frames.arcs import LAMPS, ArcLines, read_arc_lines
from drcnet.frames.errors import FrameError
from drcnet.frames.exposure import ArmFiles, SpectrographFiles, check_frame_file, find_exposure
from drcnet.frames.fibermap import FiberMap, read_fibermap
from drcnet.frames.lamost import FrameWarning, read_raw_frame
from drcnet.instrument import N_COLS, N_FIBERS, OVERSCAN, STRIPE_COL_START, STRIPE_COL_STOP, InstrumentConfig
from drcnet.reduce.calib import BiasModel, bias_model, levels, net_image
from drcnet.reduce.extract import (
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
from drcnet.reduce.wavecal import WavecalConfig, WaveSolution, calibrate, line_columns
from drcnet.simulate.render import measure_snr_r

STRIPE_COLS = np.arange(STRIPE_COL_START, STRIPE_COL_STOP)
ARMS: tuple[str, str] = ("blue", "red")


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
    """One arm of one spectrograph, reduced (arrays over all fibers; ``(n_fibers, 3000)`` for spectra)."""

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
    files: dict[str, object]
    header: dict[str, object]
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        return {"timings_s": {k: round(v, 3) for k, v in self.timings.items()}, "bias": self.bias.summary(), "trace": self.traces.summary(), "wavecal": self.wave.summary(),
                "n_saturated": int(self.saturated.sum()), "n_cosmic": int(self.cosmic.sum()),
                "n_bad_pixels": int(self.bad_pixels.sum()), "files": self.files, "header": self.header,
                "warnings": self.warnings}


@dataclass
class SpectrographReduction:
    """Both arms of one spectrograph, joined with its fiber map."""

    spid: int
    planid: str
    fibermap: FiberMap
    arms: dict[str, ArmReduction]
    snr_r: np.ndarray
    snr_r_opt: np.ndarray
    flags: np.ndarray


def _header_info(h: object) -> dict[str, object]:
    keys = ("OBSTYPE", "EXPTIME", "SPID", "CAMERA", "PLANID", "RUN", "MJD", "DATE-OBS", "GAIN", "RDNOISE", "DRCSEED")
    return {k: h[k] for k in keys if k in h}  # type: ignore[index,operator]


def reduce_arm(files: ArmFiles, spid: int, n_fibers: int, sky_fibers: np.ndarray, lines: ArcLines,
               config: ReduceConfig) -> ArmReduction:
    """Reduce one arm: bias, traces, wavelength solution, stripes, 1D spectra, master sky, per-fiber flags."""
    arm_cfg = config.instrument.arm(files.arm)
    ccd = config.instrument.ccd
    clock = _Clock()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FrameWarning)
        sci = read_raw_frame(files.science, "science", spid, files.arm)
        gain = sci.gain(ccd)
        rn_adu = sci.read_noise_e(ccd) / gain
        saturation = sci.saturation(ccd)
    notes = [str(w.message) for w in caught]
    biases = [read_raw_frame(p, "bias", spid, files.arm) for p in files.bias]
    bias = bias_model([(b.data, b.overscan) for b in biases], config.bias_significance)
    del biases
    clock.lap("bias")
    bias_cols = bias.columns if bias.applied else None
    if bias.n_frames == 0:
        notes.append(f"spectrograph {spid} {files.arm}: no bias frames; the overscan alone sets the bias")
    flat = read_raw_frame(files.flat, "flat", spid, files.arm)
    flat_net = net_image(flat.data, levels(flat.overscan), bias_cols)
    del flat
    try:
        traces = trace_fibers(flat_net, n_fibers, config.instrument.fiber, config.trace)
    except ValueError as exc:
        raise FrameError(f"{files.flat}: {exc}; is this a lamp flat of spectrograph {spid}?") from exc
    centres = traces.centres(np.arange(N_COLS))
    clock.lap("trace")
    arc = read_raw_frame(files.arc, "arc", spid, files.arm)
    # only the columns around the arc lines the calibration measures are summed
    arc_cols = line_columns(arm_cfg, lines, config.wavecal)
    arc_spec = np.zeros((n_fibers, N_COLS))
    arc_spec[:, arc_cols] = aperture_sums(arc.raw, levels(arc.overscan), centres[:, arc_cols], arc_cols, OVERSCAN,
                                          bias_columns=bias_cols)
    del arc
    noise = np.full(n_fibers, np.sqrt(11.0) * rn_adu)
    wave = calibrate(arc_spec, arm_cfg, lines, noise, traces.lost, config.wavecal)
    clock.lap("wavecal")

    # science stripes: exactly the forward model's arithmetic (raw - overscan level of the pixel's row)
    pixels = StripePixels.from_centres(centres[:, STRIPE_COLS], STRIPE_COLS)
    stripes, raw = cut_stripes(sci.raw, levels(sci.overscan), pixels, OVERSCAN, bias_cols)
    del sci
    saturated = np.any(raw >= saturation, axis=(1, 2))
    del raw
    bad = ~np.isfinite(stripes)
    lo, hi = STRIPE_COL_START - config.flat_smooth_cols, STRIPE_COL_STOP + config.flat_smooth_cols
    smooth = smooth_columns(flat_net[:, lo:hi], config.flat_smooth_cols)
    profile = spatial_profile(pixels.take(smooth, -lo))
    flat_flux = np.nansum(pixels.take(flat_net), axis=1)
    del smooth, flat_net
    clock.lap("stripes")
    opt = optimal_extract(stripes.astype(np.float32), profile, gain, rn_adu, config.optimal_clip_sigma, bad=bad)
    if bad.any():  # NaN pixels: replaced by the fitted profile so the stripe stays usable; the fiber is flagged
        stripes = np.where(bad, opt.model, stripes)
    flux1d, ivar1d = boxcar(stripes, gain, rn_adu)
    clock.lap("extract")
    lost = traces.lost
    wave1d = wave.wavelength(np.arange(n_fibers), STRIPE_COLS)
    eff = fiber_efficiency(flat_flux, ~lost)
    use_sky = sky_fibers & ~lost & ~saturated & ~bad.any(axis=(1, 2))
    if not use_sky.any():
        raise FrameError(f"{files.science}: no usable sky fiber (the fiber map marks "
                         f"{int(sky_fibers.sum())}); cannot build the master sky")
    sky1d = master_sky(flux1d[use_sky], wave1d[use_sky], eff[use_sky], wave1d, eff)
    for arr in (stripes, flux1d, ivar1d, opt.flux, opt.ivar, sky1d):
        arr[lost] = 0.0
    clock.lap("sky")
    return ArmReduction(
        arm=files.arm, stripes=stripes, flux1d=flux1d, ivar1d=ivar1d, flux_opt=opt.flux, ivar_opt=opt.ivar,
        sky1d=sky1d, wave1d=wave1d, efficiency=eff, lost=lost, saturated=saturated & ~lost,
        cosmic=opt.rejected.any(axis=(1, 2)) & ~lost, bad_pixels=bad.any(axis=(1, 2)) & ~lost,
        traces=traces, wave=wave, bias=bias,
        files={"folder": str(files.science.parent), "science": files.science.name, "flat": files.flat.name,
               "arc": files.arc.name,
               "bias": [p.name for p in files.bias]},
        header=_header_info(read_header(files.science)), warnings=notes, timings=clock.laps)


class _Clock:
    """Wall time of each stage of an arm's reduction."""

    def __init__(self) -> None:
        import time

        self._now = time.perf_counter
        self._t = self._now()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        t = self._now()
        self.laps[name] = t - self._t
        self._t = t


def read_header(path: Path) -> object:
    from astropy.io import fits

    return fits.getheader(path)


def check_files(sp: SpectrographFiles) -> None:
    """Check every raw file of a spectrograph (header, shape, size) before any work starts."""
    for files in sp.arms.values():
        for p in (*files.bias, files.flat, files.arc, files.science):
            check_frame_file(p)


def reduce_spectrograph(sp: SpectrographFiles, config: ReduceConfig, lines: ArcLines) -> SpectrographReduction:
    """Reduce both arms of one spectrograph and join them with its fiber map."""
    check_files(sp)
    n_fibers = int(read_header(sp.arms["blue"].science).get("NFIBERS", N_FIBERS))  # type: ignore[attr-defined]
    fmap = read_fibermap(sp.fibermap, spid=sp.spid, n_fibers=n_fibers)
    sky = fmap.of_type("Sky")
    if config.threads > 1:
        with ThreadPoolExecutor(max_workers=min(config.threads, 2)) as pool:
            futures = {arm: pool.submit(reduce_arm, sp.arms[arm], sp.spid, n_fibers, sky, lines, config) for arm in ARMS}
            arms = {arm: f.result() for arm, f in futures.items()}
    else:
        arms = {arm: reduce_arm(sp.arms[arm], sp.spid, n_fibers, sky, lines, config) for arm in ARMS}
    red = arms["red"]
    snr = np.zeros(n_fibers)
    snr_opt = np.zeros(n_fibers)
    for f in range(n_fibers):
        if red.lost[f]:
            continue
        snr[f] = measure_snr_r(red.flux1d[f], red.sky1d[f], red.ivar1d[f], red.wave1d[f])
        snr_opt[f] = measure_snr_r(red.flux_opt[f], red.sky1d[f], red.ivar_opt[f], red.wave1d[f])
    flags = fiber_flags(fmap, arms, snr, config.low_snr)
    return SpectrographReduction(spid=sp.spid, planid=sp.planid, fibermap=fmap, arms=arms, snr_r=snr,
                                 snr_r_opt=snr_opt, flags=flags)


def fiber_flags(fmap: FiberMap, arms: dict[str, ArmReduction], snr: np.ndarray, low_snr: float) -> np.ndarray:
    """Per-fiber flag bits (:data:`drcnet.data.schema.FLAG_BITS`) from the fiber map and both arms."""
    flags = np.zeros(len(fmap), dtype=np.uint16)
    flags[fmap.of_type("Sky")] |= FLAG_BITS["sky"]
    flags[fmap.of_type("Unused")] |= FLAG_BITS["unused"]
    flags[fmap.of_type("Dead")] |= FLAG_BITS["dead"]
    for a in arms.values():
        flags[a.lost] |= FLAG_BITS["trace_lost"]
        flags[a.saturated] |= FLAG_BITS["saturated"]
        flags[a.cosmic] |= FLAG_BITS["cosmic_ray"]
        flags[a.bad_pixels] |= FLAG_BITS["bad_pixels"]
    traced = ~np.any([a.lost for a in arms.values()], axis=0)
    flags[fmap.is_object & traced & (snr < low_snr)] |= FLAG_BITS["low_snr"]
    return flags


def load_lines(config: ReduceConfig, data_root: str | Path | None = None) -> ArcLines:
    """The arc lines the reduction calibrates with (``<data>/observatory/arc_lines``)."""
    from drcnet.paths import observatory_dir

    return read_arc_lines(observatory_dir(data_root) / "arc_lines", config.lamps)


def reduce_exposure(folder: str | Path, config: ReduceConfig | None = None, spids: list[int] | None = None,
                    run: int | None = None, data_root: str | Path | None = None) -> list[SpectrographReduction]:
    """Reduce every (or the chosen) spectrograph of an exposure folder, in memory."""
    config = config or ReduceConfig()
    found = find_exposure(folder, spids, run)
    lines = load_lines(config, data_root)
    return [reduce_spectrograph(sp, config, lines) for sp in found]
