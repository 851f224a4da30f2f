"""``drcnet frames simulate``: a whole simulated exposure set of one plate on disk.

Per spectrograph and arm the folder receives ``n_bias`` bias frames, a lamp
flat, an arc and a science exposure (LAMOST names and headers,
:mod:`drcnet.instrument.lamost`), plus per spectrograph a fiber map and a truth
sidecar::

    DIR/
      rb-01b-SIM00000-10000-86400720.fit ... rb-01b-SIM00000-10004-86400724.fit   bias x 5
      rf-01b-SIM00000-10005-86400730.fit                                        flat
      ra-01b-SIM00000-10006-86400732.fit                                        arc
      ro-01b-SIM00000-10007-86400740.fit                                        science
      (the same with 01r for the red arm)
      fibermap-SIM00000-sp01.fits        fiber map (FITS table, TRUE_* columns for evaluation)
      truth-SIM00000-sp01.h5             true traces, wavelength shifts, throughputs, sources
      lrs_catalogue.csv                  the plate's LAMOST LRS catalogue (every spectrograph; see
                                         drcnet.simulate.exposure.catalogue)

Arms are rendered in parallel worker processes; every random stream is
``default_rng([seed, spid, purpose, ...])``, so the files do not depend on the
number of workers.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from drcnet.conventions import ARMS, CLASSES
from drcnet.instrument.arclines import ArcLines, read_arc_lines
from drcnet.instrument.exposure import fibermap_name, truth_name
from drcnet.instrument.fibermap import FiberMap, write_fibermap
from drcnet.library.template import Template
from drcnet.paths import observatory_dir
from drcnet.provenance import atomic_path, provenance
from drcnet.simulate.convention import attach_lamost_labels
from drcnet.simulate.exposure.arm import ArmTruth, render_arm
from drcnet.simulate.exposure.catalogue import write_exposure_catalogue
from drcnet.simulate.exposure.plan import ExposureConfig, FiberPlan, plan_fibers
from drcnet.simulate.exposure.safety import die_with_parent, remove_stale_parts
from drcnet.simulate.optics import FiberGeometry
from drcnet.simulate.render import ForwardModel
from drcnet.simulate.site import Site

GEOMETRY_FIELDS: tuple[str, ...] = ("row0", "tilt", "bow", "shift_px", "throughput")


@dataclass
class SimulatedSpectrograph:
    """One simulated spectrograph: its plan, per-arm truth and the files that hold them."""

    spid: int
    plan: FiberPlan
    truth: dict[str, ArmTruth]
    fibermap: Path
    truth_file: Path


@dataclass
class SimulatedExposure:
    """What :func:`simulate_exposure` wrote."""

    folder: Path
    config: ExposureConfig
    spectrographs: list[SimulatedSpectrograph]
    seconds: float


_STATE: dict[str, Any] = {}


def _init_worker(state: dict[str, Any]) -> None:
    _STATE.update(state)


def _init_pool_worker(state: dict[str, Any]) -> None:
    die_with_parent()  # a SIGKILLed parent must not leave workers writing frames
    _init_worker(state)


def _render_job(job: tuple[int, int]) -> tuple[int, int, ArmTruth]:
    spid, arm_index = job
    s = _STATE
    truth = render_arm(
        s["model"], s["config"], s["plans"][spid], s["arcs"], arm_index, s["out"], s["prov"], keep_stripes=s["keep"]
    )
    return spid, arm_index, truth


def simulate_exposure(
    config: ExposureConfig,
    templates: Sequence[Template],
    out_dir: str | Path,
    data_root: str | Path | None = None,
    workers: int | None = None,
    keep_truth_stripes: bool = False,
    arcs: ArcLines | None = None,
    spids: Sequence[int] | None = None,
) -> SimulatedExposure:
    """Simulate the raw exposure set of spectrographs ``1..config.spectrographs`` (or ``spids``) into ``out_dir``.

    Parameters
    ----------
    config
        What to simulate.
    templates
        Source spectra (F, G and K are used; with ``config.other`` also the O/B/A/M stars, galaxies and QSOs
        among them, as class ``other``, and sky-only fibers: :func:`plate_templates`).
    out_dir
        Exposure folder (created).
    data_root
        Reference data (sky, extinction, arc lines); default ``$DRCNET_DATA``.
    workers
        Worker processes (default: up to the number of cores; one job per arm).
    keep_truth_stripes
        Return each fiber's true stripe (cut at the true trace from the written
        science frame) in memory, for tests.
    arcs
        The arc lines (default: read from ``<data_root>/observatory/arc_lines``).
    spids
        Only these spectrographs (default ``1..config.spectrographs``); each one's files are the same
        as in a full run, since every random stream is keyed by ``[seed, spid, ...]``. Only a full run
        (``spids`` None) writes the plate's ``lrs_catalogue.csv``.

    Returns
    -------
    SimulatedExposure
        The folder, the configuration and, per spectrograph, its plan, per-arm truth and files.

    Raises
    ------
    ValueError
        No F, G or K template to fill the plate with.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(out)  # what a killed run left behind
    templates = plate_templates(templates, config.other > 0)
    if not templates:
        raise ValueError("no F, G or K templates to fill the plate with")
    # both labels for every star: its own (TRUE_CLASS) and LAMOST's convention (TRUE_CLASS_LAMOST)
    templates = attach_lamost_labels(templates, data_root)
    site = Site.load(config.instrument, data_root)
    arcs = arcs if arcs is not None else read_arc_lines(observatory_dir(data_root) / "arc_lines")
    full_run = spids is None  # a subset (one Dask task) leaves the plate's catalogue to its caller
    spids = list(range(1, config.spectrographs + 1)) if spids is None else [int(s) for s in spids]
    plans = {spid: plan_fibers(config, templates, spid) for spid in spids}
    used = sorted({s.template for p in plans.values() for s in p.sources if s is not None})
    model = ForwardModel(config.instrument, site, [templates[i] for i in used])
    remap = {old: new for new, old in enumerate(used)}
    model_plans = {spid: _remap(p, remap) for spid, p in plans.items()}
    prov = provenance(config.model_dump(mode="json"), config.seed)
    state = {
        "model": model,
        "config": config,
        "plans": model_plans,
        "arcs": arcs,
        "out": out,
        "prov": prov,
        "keep": keep_truth_stripes,
    }
    jobs = [(spid, a) for spid in spids for a in range(len(ARMS))]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    results: dict[int, dict[str, ArmTruth]] = {spid: {} for spid in spids}
    if workers > 1:
        with mp.get_context("fork").Pool(workers, initializer=_init_pool_worker, initargs=(state,)) as pool:
            for spid, a, truth in pool.imap_unordered(_render_job, jobs):
                results[spid][ARMS[a]] = truth
    else:
        _init_worker(state)
        for job in jobs:
            spid, a, truth = _render_job(job)
            results[spid][ARMS[a]] = truth
    done = []
    for spid in spids:
        plan = plans[spid]
        fmap_path = write_fibermap(
            out / fibermap_name(config.planid, spid),
            fibermap_of(plan, templates, results[spid]["red"].snr_expected, config),
            prov,
        )
        truth_path = write_truth(out / truth_name(config.planid, spid), plan, templates, results[spid], prov)
        done.append(SimulatedSpectrograph(spid, plan, results[spid], fmap_path, truth_path))
    if full_run:
        write_exposure_catalogue(out, config.planid, spids)
    return SimulatedExposure(out, config, done, time.perf_counter() - t0)


def plate_templates(templates: Sequence[Template], other: bool) -> list[Template]:
    """The templates a plate is filled from: the F/G/K ones, then with ``other`` the non-F/G/K ones relabelled
    ``other`` (:func:`drcnet.simulate.sources.other_templates`) and three sky-only pseudo-templates."""
    fgk = [t for t in templates if t.cls in CLASSES]
    if not other or not fgk:
        return fgk
    from drcnet.simulate.sources import no_light_templates, other_templates

    return fgk + other_templates(templates) + no_light_templates(fgk[0])


def _remap(plan: FiberPlan, remap: dict[int, int]) -> FiberPlan:
    from dataclasses import replace

    sources = [None if s is None else replace(s, template=remap[s.template]) for s in plan.sources]
    return replace(plan, sources=sources)


def fibermap_of(plan: FiberPlan, templates: Sequence[Template], snr: np.ndarray, cfg: ExposureConfig) -> FiberMap:
    """The fiber map of a simulated plan, with the TRUE_* evaluation columns.

    ``TRUE_CLASS``/``TRUE_SUBCLASS`` hold each template's own label (a library star's MK type);
    ``TRUE_CLASS_LAMOST``/``TRUE_SUBCLASS_LAMOST`` its LAMOST-convention label when the templates carry one
    (:func:`drcnet.simulate.convention.attach_lamost_labels`).
    """
    n = len(plan.sources)
    cls = np.array([templates[s.template].cls if s else "" for s in plan.sources])
    sub = np.array([templates[s.template].subclass if s else "" for s in plan.sources])
    mag = np.array([s.mag_r if s else np.nan for s in plan.sources], dtype=np.float32)
    truth = {
        "TRUE_CLASS": cls,
        "TRUE_SUBCLASS": sub,
        "TRUE_SNR_R": np.asarray(snr, dtype=np.float32),
        "TRUE_TEMPLATE": plan.template_id,
    }
    used = [templates[s.template] for s in plan.sources if s]
    if used and all("lamost_class" in t.meta for t in used):
        truth["TRUE_CLASS_LAMOST"] = np.array(
            [str(templates[s.template].meta["lamost_class"]) if s else "" for s in plan.sources]
        )
        truth["TRUE_SUBCLASS_LAMOST"] = np.array(
            [str(templates[s.template].meta["lamost_subclass"]) if s else "" for s in plan.sources]
        )
    return FiberMap(
        spid=plan.spid,
        planid=cfg.planid,
        fiber=np.arange(1, n + 1),
        objid=plan.objid,
        fibertype=plan.fibertype,
        mag=mag,
        truth=truth,
    )


def write_truth(
    path: Path, plan: FiberPlan, templates: Sequence[Template], truth: dict[str, ArmTruth], prov: dict[str, Any]
) -> Path:
    """Write the simulation truth of one spectrograph (HDF5, atomically).

    Layout: ``/<arm>/{row0,tilt,bow,shift_px,throughput,stripe_saturated,stripe_cosmic}``,
    ``/fibers/{fibertype,objid,template_id,template,mag_r,rv_kms,ebv,airmass,sky_scale,snr_expected}``;
    attributes ``provenance`` (JSON) and ``spid``. The true stripes are not stored:
    :func:`drcnet.simulate.exposure.arm.truth_stripes` recomputes them exactly from the
    science frame and :func:`read_truth_geometries`.
    """
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h:
        h.attrs["provenance"] = json.dumps(prov)
        h.attrs["spid"] = plan.spid
        for arm, t in truth.items():
            g = h.create_group(arm)
            for name in (*GEOMETRY_FIELDS, "stripe_saturated", "stripe_cosmic", "snr_expected"):
                g.create_dataset(name, data=np.asarray(getattr(t, name)))
            g.attrs["files"] = json.dumps(t.files)
        f = h.create_group("fibers")
        f.create_dataset("fibertype", data=np.char.encode(plan.fibertype.astype(str)))
        f.create_dataset("objid", data=np.char.encode(plan.objid.astype(str)))
        f.create_dataset("template_id", data=np.char.encode(plan.template_id.astype(str)))
        for name in ("mag_r", "rv_kms", "ebv", "airmass"):
            f.create_dataset(name, data=np.array([getattr(s, name) if s else np.nan for s in plan.sources]))
        f.create_dataset("template", data=np.array([s.template if s else -1 for s in plan.sources]))
        f.create_dataset("sky_scale", data=plan.sky_scale)
        f.create_dataset("snr_expected", data=truth["red"].snr_expected)
    return path


def read_truth_geometries(path: str | Path, arm: str) -> list[FiberGeometry]:
    """The true fiber geometries of one arm (``"blue"`` or ``"red"``) from a truth sidecar, in fiber order."""
    with h5py.File(path, "r") as h:
        g = h[arm]
        cols = [g[name][:] for name in GEOMETRY_FIELDS]
    return [FiberGeometry(i, *(float(c[i]) for c in cols)) for i in range(cols[0].size)]
