"""Whole raw frames of one arm from the forward model: bias, flat, arc and science.

The same functions as the dataset path render every pixel:

* one :func:`~drcnet.simulate.optics.fiber_geometries` draw per spectrograph and
  arm, shared by the flat, the arc and the science frame, so their traces agree;
* :meth:`~drcnet.simulate.render.ForwardModel.fiber_electrons` gives each fiber's
  star and sky electrons over all 4096 columns;
* the spatial profile is the model's :class:`~drcnet.simulate.optics.ProfileTable`,
  evaluated once per fiber over the band of rows its light reaches (+-``reach``
  rows around the trace) and added into the frame - exactly what
  :func:`~drcnet.simulate.ccd.spread_light` computes for one fiber, without
  touching the rest of the frame;
* :func:`~drcnet.simulate.ccd.read_out` turns electrons into ADU (one pixel
  response map per CCD, fixed for all its frames), in blocks of rows to keep
  memory low, and :func:`~drcnet.simulate.ccd.read_overscan` gives the overscan.

Cosmic rays use :func:`deposit_cosmic_rays`, a vectorised twin of
:func:`~drcnet.simulate.ccd.add_cosmic_rays` (same rate, track lengths and
charges); the charge is added in ADU after the read-out, which differs from
adding electrons before it only in where the rounding falls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from drcnet.frames.arcs import ArcLines, arc_electrons, flat_electrons
from drcnet.frames.lamost import RawName, assemble_raw, data_area, frame_header, overscan_area, write_raw_frame
from drcnet.frames.plan import ExposureConfig, FiberPlan
from drcnet.instrument import N_COLS, N_FIBERS, N_ROWS, PIXEL_SIZE_CM, STRIPE_HALF_ROWS, CCDConfig
from drcnet.simulate.ccd import cut_stripe, overscan_level, read_out, read_overscan, stripe_rows, subtract_overscan
from drcnet.simulate.optics import FiberGeometry, ProfileTable, fiber_geometries
from drcnet.simulate.render import STRIPE_COLS, ForwardModel

ALL_COLS = np.arange(N_COLS)
BLOCK_ROWS = 517
"""Rows read out at a time (8 blocks per frame)."""
ARMS: tuple[str, str] = ("blue", "red")
RUN0 = 10000


@dataclass
class ArmTruth:
    """What the simulator knows about one arm of one spectrograph (arrays over the 250 fibers)."""

    arm: str
    row0: np.ndarray
    tilt: np.ndarray
    bow: np.ndarray
    shift_px: np.ndarray
    throughput: np.ndarray
    stripe_saturated: np.ndarray
    stripe_cosmic: np.ndarray
    snr_expected: np.ndarray
    stripes: np.ndarray | None = None
    files: dict[str, list[str]] = field(default_factory=dict)

    def geometry(self, fiber: int) -> FiberGeometry:
        """The true geometry of 0-based ``fiber``."""
        return FiberGeometry(fiber, float(self.row0[fiber]), float(self.tilt[fiber]), float(self.bow[fiber]),
                             float(self.shift_px[fiber]), float(self.throughput[fiber]))


def arm_geometries(cfg: ExposureConfig, spid: int, arm_index: int) -> list[FiberGeometry]:
    """The one geometry draw of a spectrograph arm, shared by all its frames."""
    rng = np.random.default_rng([cfg.seed, spid, 1, arm_index])
    return fiber_geometries(cfg.instrument.fiber, rng, np.arange(N_FIBERS))


def frame_names(cfg: ExposureConfig, spid: int, arm: str) -> dict[str, list[RawName]]:
    """Names of every frame of one arm: runs and MJDs are shared by all cameras of the plate."""
    base = int(round(cfg.mjd * 1440))
    out: dict[str, list[RawName]] = {"bias": [RawName("bias", spid, arm, cfg.planid, RUN0 + i, base + i)
                                              for i in range(cfg.n_bias)]}
    n = cfg.n_bias
    for k, (kind, minutes) in enumerate((("flat", 10), ("arc", 12), ("science", 20))):
        out[kind] = [RawName(kind, spid, arm, cfg.planid, RUN0 + n + k, base + minutes)]
    return out


def fiber_light(model: ForwardModel, cfg: ExposureConfig, plan: FiberPlan, arm_index: int,
                geoms: list[FiberGeometry], arcs: ArcLines) -> dict[str, np.ndarray]:
    """Electrons per fiber and column ``(250, 4096)`` of the flat, the arc and the science exposure."""
    arm = cfg.instrument.arms[arm_index]
    gain = cfg.instrument.ccd.gain_e_per_adu
    peak_share = float(model.profile(np.array([0]), np.array([0.0]))[0, 0])  # centre pixel of a centred trace
    flat_level = cfg.flat_peak_adu * gain / peak_share
    nominal = FiberGeometry(0, 0.0, 0.0, 0.0, 0.0, 1.0)
    unit_arc = arc_electrons(arm, nominal, ALL_COLS, arcs, 1.0)
    arc_level = cfg.arc_peak_adu * gain / peak_share / max(unit_arc.max(), 1e-30)
    out = {k: np.zeros((N_FIBERS, N_COLS)) for k in ("flat", "arc", "science")}
    for f, g in enumerate(geoms):
        if plan.lit_lamps[f]:
            out["flat"][f] = flat_electrons(arm, g, ALL_COLS, flat_level)
            out["arc"][f] = arc_electrons(arm, g, ALL_COLS, arcs, arc_level)
        if plan.lit_science[f]:
            _, star_e, sky_e = model.fiber_electrons(arm, g, ALL_COLS, plan.sources[f], float(plan.sky_scale[f]))
            out["science"][f] = star_e + sky_e
    return out


class BandProfile:
    """Fast evaluation of a :class:`~drcnet.simulate.optics.ProfileTable` over a band of consecutive rows.

    Same table, same linear interpolation in the fractional offset, in float32
    and with the table padded with zeros beyond ``reach`` (so no masking is
    needed): equal to ``profile(np.arange(lo, hi), centre)`` to float32
    precision (tested).
    """

    def __init__(self, profile: ProfileTable, max_band: int = 160) -> None:
        self.reach = profile.reach
        self.oversample = profile.oversample
        self.pad = max_band
        t = profile.table.astype(np.float64).copy()
        t[0] = t[-1] = 0.0  # offsets beyond +-reach: ProfileTable gives 0 there
        n_frac = t.shape[1]
        body = np.zeros((t.shape[0] + 2 * self.pad, n_frac + 1))
        body[self.pad:self.pad + t.shape[0], :n_frac] = t
        body[self.pad:self.pad + t.shape[0], n_frac] = t[:, -1]
        self.value = body[:, :-1].astype(np.float32).ravel()
        self.slope = np.diff(body, axis=1).astype(np.float32).ravel()
        self.stride = n_frac
        # pixel m rows from floor(centre) is table row m + reach + 1, padded row m + reach + 1 + pad
        self.offset = self.reach + 1 + self.pad

    def __call__(self, lo: int, hi: int, centre: np.ndarray) -> np.ndarray:
        """Share of each column's light in rows ``lo .. hi - 1`` for a trace at ``centre``."""
        if hi - lo > self.pad:
            raise ValueError(f"band of {hi - lo} rows is wider than the padding ({self.pad})")
        base = np.floor(centre)
        pos = (centre - base) * self.oversample
        j = np.minimum(pos.astype(np.intp), self.oversample - 1)
        w = (pos - j).astype(np.float32)
        m = (lo - base.astype(np.intp)) + self.offset
        if m.min() + (hi - lo) < 0 or m.max() >= self.value.size // self.stride:
            raise ValueError("band lies outside the padded profile table")
        idx = (np.arange(hi - lo)[:, None] + m[None, :]) * self.stride + j[None, :]
        return self.value[idx] + self.slope[idx] * w[None, :]


def fiber_band(geom: FiberGeometry, reach: int) -> tuple[int, int]:
    """Rows ``lo .. hi - 1`` that a fiber's light reaches (clipped to the CCD)."""
    centre = geom.trace(ALL_COLS)
    lo = max(int(np.floor(centre.min())) - reach, 0)
    hi = min(int(np.ceil(centre.max())) + reach + 1, N_ROWS)
    return lo, hi


def expected_frames(geoms: list[FiberGeometry], light: dict[str, np.ndarray], profile: ProfileTable) -> dict[str, np.ndarray]:
    """Expected electrons of whole frames (float32 ``(4136, 4096)`` each) from per-fiber light.

    Each fiber's profile is evaluated over the rows it reaches only, once for
    all frames; the result equals :func:`~drcnet.simulate.ccd.spread_light` over
    the full rows to float32 precision (tested).
    """
    frames = {k: np.zeros((N_ROWS, N_COLS), dtype=np.float32) for k in light}
    band_profile = BandProfile(profile)
    for f, g in enumerate(geoms):
        lit = [k for k in light if np.any(light[k][f] > 0)]
        if not lit:
            continue
        lo, hi = fiber_band(g, profile.reach)
        if hi <= lo:
            continue
        share = band_profile(lo, hi, g.trace(ALL_COLS))
        for k in lit:
            frames[k][lo:hi] += light[k][f].astype(np.float32)[None, :] * share
    return frames


def deposit_cosmic_rays(data: np.ndarray, ccd: CCDConfig, exposure_s: float, rng: np.random.Generator) -> np.ndarray:
    """Add cosmic-ray tracks to raw ADU in place; return the flat indices of the hit pixels.

    Same statistics as :func:`~drcnet.simulate.ccd.add_cosmic_rays` (Poisson
    number of events over the area, tracks of 1-6 pixels at a random angle,
    exponential charge), drawn all at once.
    """
    n_rows, n_cols = data.shape
    area_cm2 = n_rows * n_cols * PIXEL_SIZE_CM**2
    n = int(rng.poisson(ccd.cosmic_rate_per_cm2_min * area_cm2 * exposure_s / 60.0))
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    length = rng.integers(1, 7, n)
    angle = rng.uniform(0, np.pi, n)
    r0, c0 = rng.uniform(0, n_rows, n), rng.uniform(0, n_cols, n)
    charge = rng.exponential(ccd.cosmic_mean_e, n) / length
    event = np.repeat(np.arange(n), length)
    t = np.arange(event.size) - np.repeat(np.cumsum(length) - length, length)
    rr = np.clip((r0[event] + t * np.sin(angle[event])).astype(np.intp), 0, n_rows - 1)
    cc = np.clip((c0[event] + t * np.cos(angle[event])).astype(np.intp), 0, n_cols - 1)
    idx, inverse = np.unique(rr * n_cols + cc, return_inverse=True)
    adu = np.bincount(inverse, weights=charge[event]) / ccd.gain_e_per_adu
    flat = data.reshape(-1)
    flat[idx] = np.clip(np.rint(flat[idx] + adu), 0, ccd.adc_max).astype(data.dtype)
    return idx


def bias_data(ccd: CCDConfig, rng: np.random.Generator) -> np.ndarray:
    """Data area of a bias frame: what :func:`~drcnet.simulate.ccd.read_out` gives with no light and no
    exposure (bias level of each amplifier plus read noise, rounded), without drawing zero photons."""
    bias = np.repeat(np.asarray(ccd.bias_adu, dtype=np.float32), N_COLS // 2)[None, :]
    adu = bias + np.float32(ccd.read_noise_e / ccd.gain_e_per_adu) * rng.standard_normal((N_ROWS, N_COLS), dtype=np.float32)
    return np.clip(np.rint(adu), 0, ccd.adc_max).astype(np.uint16)


def read_frame(expected: np.ndarray | None, exposure_s: float, ccd: CCDConfig, rng: np.random.Generator,
               prnu: np.ndarray, cosmics: bool) -> tuple[np.ndarray, np.ndarray]:
    """Raw frame ``(4136, 4160)`` uint16 and the flat indices of cosmic-ray pixels (data area).

    ``expected`` None means a bias frame (no light, zero exposure).
    """
    if expected is None:
        return assemble_raw(bias_data(ccd, rng), read_overscan(N_ROWS, ccd, rng)), np.zeros(0, np.intp)
    data = np.empty((N_ROWS, N_COLS), dtype=np.uint16)
    for lo in range(0, N_ROWS, BLOCK_ROWS):
        hi = min(lo + BLOCK_ROWS, N_ROWS)
        data[lo:hi] = read_out(expected[lo:hi], ALL_COLS, ccd, exposure_s, rng, prnu=prnu[lo:hi], cosmics=False).raw
    hits = deposit_cosmic_rays(data, ccd, exposure_s, rng) if cosmics and exposure_s > 0 else np.zeros(0, np.intp)
    return assemble_raw(data, read_overscan(N_ROWS, ccd, rng)), hits


def truth_stripes(raw: np.ndarray, geoms: list[FiberGeometry]) -> np.ndarray:
    """The paper's stripe of every fiber cut from a raw frame at its TRUE trace ``(250, 11, 3000)``.

    ``net = raw - overscan row mean of the pixel's amplifier`` cut with
    :func:`~drcnet.simulate.ccd.cut_stripe` at ``geom.trace(500..3499)``: the
    stripe a perfect reduction must give. The raw pixels are cut first and
    then each has the level of its own row subtracted, as in
    :meth:`~drcnet.simulate.render.ForwardModel.render_object` (the same
    numbers as subtracting first).
    """
    level = overscan_level(overscan_area(raw))
    data = data_area(raw)[:, STRIPE_COLS]
    out = np.empty((len(geoms), 2 * STRIPE_HALF_ROWS + 1, STRIPE_COLS.size), dtype=np.float32)
    for f, g in enumerate(geoms):
        trace = g.trace(STRIPE_COLS)
        rows = stripe_rows(trace, STRIPE_HALF_ROWS)
        out[f] = subtract_overscan(cut_stripe(data, 0, trace, STRIPE_HALF_ROWS), level, STRIPE_COLS, rows)
    return out


def _stripe_any(mask_flat_idx: np.ndarray, raw_data: np.ndarray | None, geoms: list[FiberGeometry],
                threshold: float | None = None) -> np.ndarray:
    """Per fiber: does its true stripe hold a hit pixel (flat indices) or a pixel >= threshold?"""
    hit = np.zeros((N_ROWS, N_COLS), dtype=bool)
    if raw_data is not None and threshold is not None:
        hit |= raw_data >= threshold
    hit.reshape(-1)[mask_flat_idx] = True
    out = np.zeros(len(geoms), dtype=bool)
    for f, g in enumerate(geoms):
        rows = np.clip(stripe_rows(g.trace(STRIPE_COLS), STRIPE_HALF_ROWS), 0, N_ROWS - 1)
        out[f] = bool(hit[rows, STRIPE_COLS[None, :]].any())
    return out


def expected_snr_r(model: ForwardModel, arm_index: int, geoms: list[FiberGeometry], plan: FiberPlan) -> np.ndarray:
    """Expected S/N_r of every star (NaN for other fibers), as the dataset path sets targets."""
    from drcnet.data.schema import R_BAND_A

    arm = model.instrument.arms[arm_index]
    out = np.full(N_FIBERS, np.nan)
    for f, g in enumerate(geoms):
        src = plan.sources[f]
        if src is None:
            continue
        wave, star_e, sky_e = model.fiber_electrons(arm, g, STRIPE_COLS, src, float(plan.sky_scale[f]))
        band = (wave >= R_BAND_A[0]) & (wave <= R_BAND_A[1])
        if not band.any():
            continue
        ap = model._aperture_fraction(g, STRIPE_COLS)[band]
        s = star_e[band] * ap
        out[f] = float(np.median(s / np.sqrt(s + model._background_e(sky_e[band] * ap))))
    return out


def render_arm(model: ForwardModel, cfg: ExposureConfig, plan: FiberPlan, arcs: ArcLines, arm_index: int,
               out_dir: Path, prov: dict[str, Any], keep_stripes: bool = False) -> ArmTruth:
    """Render and write every frame of one arm of one spectrograph; return its truth."""
    spid, arm = plan.spid, ARMS[arm_index]
    ccd = cfg.instrument.ccd
    geoms = arm_geometries(cfg, spid, arm_index)
    light = fiber_light(model, cfg, plan, arm_index, geoms, arcs)
    expected = expected_frames(geoms, light, model.profile)
    del light
    prnu = (1.0 + ccd.prnu_rms * np.random.default_rng([cfg.seed, spid, 3, arm_index])
            .standard_normal((N_ROWS, N_COLS), dtype=np.float32))
    names = frame_names(cfg, spid, arm)
    exptime = {"bias": 0.0, "flat": cfg.flat_exptime_s, "arc": cfg.arc_exptime_s, "science": cfg.science_exptime_s}
    extra = {"flat": {"LAMP": "quartz"}, "arc": {"LAMP": "Hg,Ne,Ar,Cd"}, "science": {"AIRMASS": cfg.airmass},
             "bias": {}}
    suffix = ".fit.gz" if cfg.gzip else ".fit"
    files: dict[str, list[str]] = {}
    stripes = sat = cos = None
    k = 0
    for kind in ("bias", "flat", "arc", "science"):
        for name in names[kind]:
            rng = np.random.default_rng([cfg.seed, spid, 2, arm_index, k])
            k += 1
            raw, hits = read_frame(expected.get(kind), exptime[kind], ccd, rng, prnu, cfg.cosmics)
            header = frame_header(name, exptime[kind], ccd, prov, {**extra[kind], "NFIBERS": N_FIBERS})
            path = write_raw_frame(out_dir / name.filename(suffix), raw, header)
            files.setdefault(kind, []).append(path.name)
            if kind == "science":
                stripes = truth_stripes(raw, geoms)
                sat = _stripe_any(np.zeros(0, np.intp), data_area(raw), geoms, threshold=ccd.adc_max)
                cos = _stripe_any(hits, None, geoms)
            del raw
    snr = expected_snr_r(model, arm_index, geoms, plan)
    arr = {a: np.array([getattr(g, a) for g in geoms]) for a in ("row0", "tilt", "bow", "shift_px", "throughput")}
    return ArmTruth(arm=arm, **arr, stripe_saturated=sat, stripe_cosmic=cos, snr_expected=snr,
                    stripes=stripes if keep_stripes else None, files=files)
