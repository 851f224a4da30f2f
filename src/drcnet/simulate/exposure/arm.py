"""One arm of one simulated spectrograph: its fiber geometry, its frames on disk and its truth.

:func:`render_arm` draws the arm's fiber geometry once (shared by the flat, the
arc and the science frame, so their traces agree), renders and writes every
frame (:mod:`drcnet.simulate.exposure.frames`, LAMOST names and headers from
:mod:`drcnet.instrument.lamost`) and returns an :class:`ArmTruth`: the true
geometry, which stripes hold saturated or cosmic-ray pixels, the expected S/N_r
of every star and, on request, the true stripes (:func:`truth_stripes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from drcnet.conventions import ARMS, STRIPE_HALF_ROWS, STRIPE_ROWS, stripe_columns
from drcnet.instrument.arclines import ArcLines
from drcnet.instrument.base import Spectrograph
from drcnet.instrument.config import N_FIBERS
from drcnet.instrument.lamost import LAMOST, RawName, frame_header, write_raw_frame
from drcnet.simulate.ccd import cut_stripe, overscan_level, stripe_rows, subtract_overscan
from drcnet.simulate.exposure.frames import expected_frames, fiber_light, read_frame
from drcnet.simulate.exposure.plan import ExposureConfig, FiberPlan
from drcnet.simulate.optics import FiberGeometry, fiber_geometries
from drcnet.simulate.render import ForwardModel

RUN0 = 10000
"""Run number of the first frame of a plate."""


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
        return FiberGeometry(
            fiber,
            float(self.row0[fiber]),
            float(self.tilt[fiber]),
            float(self.bow[fiber]),
            float(self.shift_px[fiber]),
            float(self.throughput[fiber]),
        )


def arm_geometries(cfg: ExposureConfig, spid: int, arm_index: int) -> list[FiberGeometry]:
    """The one geometry draw of a spectrograph arm, shared by all its frames."""
    rng = np.random.default_rng([cfg.seed, spid, 1, arm_index])
    return fiber_geometries(cfg.instrument.fiber, rng, np.arange(N_FIBERS))


def frame_names(cfg: ExposureConfig, spid: int, arm: str) -> dict[str, list[RawName]]:
    """Names of every frame of one arm: runs and MJDs are shared by all cameras of the plate."""
    base = int(round(cfg.mjd * 1440))
    out: dict[str, list[RawName]] = {
        "bias": [RawName("bias", spid, arm, cfg.planid, RUN0 + i, base + i) for i in range(cfg.n_bias)]
    }
    n = cfg.n_bias
    for k, (kind, minutes) in enumerate((("flat", 10), ("arc", 12), ("science", 20))):
        out[kind] = [RawName(kind, spid, arm, cfg.planid, RUN0 + n + k, base + minutes)]
    return out


def truth_stripes(raw: np.ndarray, geoms: list[FiberGeometry], spectrograph: Spectrograph = LAMOST) -> np.ndarray:
    """The paper's stripe of every fiber cut from a raw frame at its TRUE trace ``(250, 11, 3000)``.

    ``net = raw - overscan row mean of the pixel's amplifier`` cut with
    :func:`~drcnet.simulate.ccd.cut_stripe` at ``geom.trace(500..3499)``: the
    stripe a perfect reduction must give. The raw pixels are cut first and
    then each has the level of its own row subtracted, as in
    :meth:`~drcnet.simulate.render.ForwardModel.render_object` (the same
    numbers as subtracting first).
    """
    cols = stripe_columns()
    level = overscan_level(spectrograph.overscan_area(raw))
    data = spectrograph.data_area(raw)[:, cols]
    out = np.empty((len(geoms), STRIPE_ROWS, cols.size), dtype=np.float32)
    for f, g in enumerate(geoms):
        trace = g.trace(cols)
        rows = stripe_rows(trace, STRIPE_HALF_ROWS)
        out[f] = subtract_overscan(cut_stripe(data, 0, trace, STRIPE_HALF_ROWS), level, cols, rows)
    return out


def _stripe_any(
    mask_flat_idx: np.ndarray,
    raw_data: np.ndarray | None,
    geoms: list[FiberGeometry],
    threshold: float | None = None,
    shape: tuple[int, int] = (LAMOST.n_rows, LAMOST.n_cols),
) -> np.ndarray:
    """Per fiber: does its true stripe (on a data area ``(rows, columns)``) hold a hit pixel (flat indices) or a
    pixel >= threshold?"""
    n_rows = shape[0]
    hit = np.zeros(shape, dtype=bool)
    if raw_data is not None and threshold is not None:
        hit |= raw_data >= threshold
    hit.reshape(-1)[mask_flat_idx] = True
    cols = stripe_columns()
    out = np.zeros(len(geoms), dtype=bool)
    for f, g in enumerate(geoms):
        rows = np.clip(stripe_rows(g.trace(cols), STRIPE_HALF_ROWS), 0, n_rows - 1)
        out[f] = bool(hit[rows, cols[None, :]].any())
    return out


def expected_snr_r(model: ForwardModel, arm_index: int, geoms: list[FiberGeometry], plan: FiberPlan) -> np.ndarray:
    """Expected S/N_r ``(250,)`` of every star (NaN for other fibers), as the dataset path sets targets.

    :meth:`~drcnet.simulate.render.ForwardModel.expected_snr_r` of each star's fiber
    over the paper's stripe columns.
    """
    arm = model.instrument.arms[arm_index]
    out = np.full(N_FIBERS, np.nan)
    for f, g in enumerate(geoms):
        src = plan.sources[f]
        if src is not None:
            out[f] = model.expected_snr_r(arm, g, src, float(plan.sky_scale[f]))
    return out


def render_arm(
    model: ForwardModel,
    cfg: ExposureConfig,
    plan: FiberPlan,
    arcs: ArcLines,
    arm_index: int,
    out_dir: Path,
    prov: dict[str, Any],
    keep_stripes: bool = False,
    spectrograph: Spectrograph = LAMOST,
) -> ArmTruth:
    """Render and write every frame of one arm of one spectrograph; return its truth.

    The frames' layout (rows, data columns, overscan, amplifier boundary) is ``spectrograph.detector``'s.
    """
    spid, arm = plan.spid, ARMS[arm_index]
    ccd = cfg.instrument.ccd
    det = spectrograph.detector
    geoms = arm_geometries(cfg, spid, arm_index)
    light = fiber_light(model, cfg, plan, arm_index, geoms, arcs)
    expected = expected_frames(geoms, light, model.profile, det)
    del light
    prnu = 1.0 + ccd.prnu_rms * np.random.default_rng([cfg.seed, spid, 3, arm_index]).standard_normal(
        (det.n_rows, det.n_cols), dtype=np.float32
    )
    names = frame_names(cfg, spid, arm)
    exptime = {"bias": 0.0, "flat": cfg.flat_exptime_s, "arc": cfg.arc_exptime_s, "science": cfg.science_exptime_s}
    extra = {
        "flat": {"LAMP": "quartz"},
        "arc": {"LAMP": "Hg,Ne,Ar,Cd"},
        "science": {"AIRMASS": cfg.airmass},
        "bias": {},
    }
    suffix = ".fit.gz" if cfg.gzip else ".fit"
    files: dict[str, list[str]] = {}
    stripes = sat = cos = None
    k = 0
    for kind in ("bias", "flat", "arc", "science"):
        for name in names[kind]:
            rng = np.random.default_rng([cfg.seed, spid, 2, arm_index, k])
            k += 1
            raw, hits = read_frame(expected.get(kind), exptime[kind], ccd, rng, prnu, cfg.cosmics, det)
            header = frame_header(name, exptime[kind], ccd, prov, {**extra[kind], "NFIBERS": N_FIBERS})
            path = write_raw_frame(out_dir / name.filename(suffix), raw, header)
            files.setdefault(kind, []).append(path.name)
            if kind == "science":
                stripes = truth_stripes(raw, geoms, spectrograph)
                shape = (det.n_rows, det.n_cols)
                sat = _stripe_any(np.zeros(0, np.intp), spectrograph.data_area(raw), geoms, ccd.adc_max, shape)
                cos = _stripe_any(hits, None, geoms, shape=shape)
            del raw
    snr = expected_snr_r(model, arm_index, geoms, plan)
    arr = {a: np.array([getattr(g, a) for g in geoms]) for a in ("row0", "tilt", "bow", "shift_px", "throughput")}
    return ArmTruth(
        arm=arm,
        **arr,
        stripe_saturated=sat,
        stripe_cosmic=cos,
        snr_expected=snr,
        stripes=stripes if keep_stripes else None,
        files=files,
    )
