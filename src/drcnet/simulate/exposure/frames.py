"""Whole raw frames of one arm from the forward model: per-fiber light -> expected electrons -> raw ADU.

The same functions as the dataset path render every pixel:

* :meth:`~drcnet.simulate.render.ForwardModel.fiber_electrons` gives each fiber's
  star and sky electrons over all 4096 columns, :mod:`drcnet.simulate.exposure.lamps`
  the flat and arc lamps' (:func:`fiber_light`);
* the spatial profile is the model's :class:`~drcnet.simulate.optics.ProfileTable`,
  evaluated once per fiber over the band of rows its light reaches (+-``reach``
  rows around the trace) and added into the frame (:func:`expected_frames`) - exactly what
  :func:`~drcnet.simulate.ccd.spread_light` computes for one fiber, without
  touching the rest of the frame;
* :func:`~drcnet.simulate.ccd.read_out` turns electrons into ADU (one pixel
  response map per CCD, fixed for all its frames), in blocks of rows to keep
  memory low, and :func:`~drcnet.simulate.ccd.read_overscan` gives the overscan
  (:func:`read_frame`).

Cosmic rays use :func:`~drcnet.simulate.cosmics.deposit_cosmic_rays`: the
charge is added in ADU after the read-out, which differs from adding electrons
before it only in where the rounding falls.
"""

from __future__ import annotations

import numpy as np

from drcnet.hardware import Detector
from drcnet.instrument.arclines import ArcLines
from drcnet.instrument.config import DETECTOR, N_COLS, N_FIBERS, CCDConfig
from drcnet.simulate.ccd import amplifier_of, read_out, read_overscan
from drcnet.simulate.cosmics import deposit_cosmic_rays
from drcnet.simulate.exposure.lamps import arc_electrons, flat_electrons
from drcnet.simulate.exposure.plan import ExposureConfig, FiberPlan
from drcnet.simulate.optics import FiberGeometry, ProfileTable
from drcnet.simulate.render import ForwardModel

ALL_COLS = np.arange(N_COLS)
BLOCK_ROWS = 517
"""Rows read out at a time (8 blocks per frame)."""


def fiber_light(
    model: ForwardModel,
    cfg: ExposureConfig,
    plan: FiberPlan,
    arm_index: int,
    geoms: list[FiberGeometry],
    arcs: ArcLines,
) -> dict[str, np.ndarray]:
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
        body[self.pad : self.pad + t.shape[0], :n_frac] = t
        body[self.pad : self.pad + t.shape[0], n_frac] = t[:, -1]
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


def fiber_band(geom: FiberGeometry, reach: int, detector: Detector = DETECTOR) -> tuple[int, int]:
    """Rows ``lo .. hi - 1`` that a fiber's light reaches (clipped to the CCD)."""
    centre = geom.trace(np.arange(detector.n_cols))
    lo = max(int(np.floor(centre.min())) - reach, 0)
    hi = min(int(np.ceil(centre.max())) + reach + 1, detector.n_rows)
    return lo, hi


def expected_frames(
    geoms: list[FiberGeometry], light: dict[str, np.ndarray], profile: ProfileTable, detector: Detector = DETECTOR
) -> dict[str, np.ndarray]:
    """Expected electrons of whole frames (float32 ``(n_rows, n_cols)`` of ``detector`` each) from per-fiber light.

    Each fiber's profile is evaluated over the rows it reaches only, once for
    all frames; the result equals :func:`~drcnet.simulate.ccd.spread_light` over
    the full rows to float32 precision (tested).
    """
    frames = {k: np.zeros((detector.n_rows, detector.n_cols), dtype=np.float32) for k in light}
    all_cols = np.arange(detector.n_cols)
    band_profile = BandProfile(profile)
    for f, g in enumerate(geoms):
        lit = [k for k in light if np.any(light[k][f] > 0)]
        if not lit:
            continue
        lo, hi = fiber_band(g, profile.reach, detector)
        if hi <= lo:
            continue
        share = band_profile(lo, hi, g.trace(all_cols))
        for k in lit:
            frames[k][lo:hi] += light[k][f].astype(np.float32)[None, :] * share
    return frames


def bias_data(ccd: CCDConfig, rng: np.random.Generator, detector: Detector = DETECTOR) -> np.ndarray:
    """Data area of a bias frame: what :func:`~drcnet.simulate.ccd.read_out` gives with no light and no
    exposure (bias level of each amplifier plus read noise, rounded), without drawing zero photons."""
    amp = amplifier_of(np.arange(detector.n_cols), detector.amp_boundary)
    bias = np.asarray(ccd.bias_adu, dtype=np.float32)[amp][None, :]
    shape = (detector.n_rows, detector.n_cols)
    adu = bias + np.float32(ccd.read_noise_e / ccd.gain_e_per_adu) * rng.standard_normal(shape, dtype=np.float32)
    return np.clip(np.rint(adu), 0, ccd.adc_max).astype(np.uint16)


def read_frame(
    expected: np.ndarray | None,
    exposure_s: float,
    ccd: CCDConfig,
    rng: np.random.Generator,
    prnu: np.ndarray,
    cosmics: bool,
    detector: Detector = DETECTOR,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw frame ``detector.raw_shape`` (LAMOST: ``(4136, 4160)``) uint16 and the flat indices of cosmic-ray
    pixels (data area).

    ``expected`` None means a bias frame (no light, zero exposure).
    """
    n_rows, n_cols = detector.n_rows, detector.n_cols
    if expected is None:
        return (
            detector.assemble_raw(bias_data(ccd, rng, detector), read_overscan(n_rows, ccd, rng, detector.overscan)),
            np.zeros(0, np.intp),
        )
    data = np.empty((n_rows, n_cols), dtype=np.uint16)
    cols = np.arange(n_cols)
    for lo in range(0, n_rows, BLOCK_ROWS):
        hi = min(lo + BLOCK_ROWS, n_rows)
        data[lo:hi] = read_out(
            expected[lo:hi],
            cols,
            ccd,
            exposure_s,
            rng,
            prnu=prnu[lo:hi],
            cosmics=False,
            amp_boundary=detector.amp_boundary,
        ).raw
    hits = deposit_cosmic_rays(data, ccd, exposure_s, rng) if cosmics and exposure_s > 0 else np.zeros(0, np.intp)
    return detector.assemble_raw(data, read_overscan(n_rows, ccd, rng, detector.overscan)), hits
