"""Several simulated exposures (plates of one or more nights): ``drcnet frames simulate --exposures N``.

Exposure ``k`` (0-based) is its own plate: seed ``seed + k``, plan id ``SIM<seed + k>`` (or
``<planid><k+1:03d>`` when a plan id was given), first bias frame ``k`` x 2 h after ``mjd``, in
its own subfolder ``OUT/<planid>/``, the layout ``drcnet night classify`` reads.

Engine: without a Dask client the exposures are simulated one after the other, each with
:func:`~drcnet.simulate.exposure.run.simulate_exposure`'s process pool over its arms (on one
machine that pool already keeps every core busy, shares the forward model copy-on-write and
needs no cluster start). With a ``distributed.Client`` (``--scheduler``) every (exposure,
spectrograph) is one Dask task, so a cluster simulates a whole night in parallel; the files
are the same either way, since every random stream is keyed by ``[seed, spid, ...]``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drcnet.instrument.arclines import ArcLines, read_arc_lines
from drcnet.library.template import Template
from drcnet.paths import observatory_dir
from drcnet.simulate.exposure.plan import ExposureConfig
from drcnet.simulate.exposure.run import SimulatedExposure, simulate_exposure

__all__ = ["night_configs", "simulate_night"]

MJD_STEP_DAYS = 2.0 / 24.0
"""Time between the exposures of a simulated night (2 h: one plate after another)."""

_SERIAL = threading.Lock()  # simulate_exposure keeps per-process state: one at a time per process


def night_configs(config: ExposureConfig, n_exposures: int) -> list[ExposureConfig]:
    """The configuration of each exposure of a simulated night (distinct seeds, plan ids and times)."""
    if n_exposures < 1:
        raise ValueError(f"n_exposures must be >= 1, got {n_exposures}")
    default_plan = config.planid == f"SIM{config.seed:05d}"
    out = []
    for k in range(n_exposures):
        seed = config.seed + k
        planid = f"SIM{seed:05d}" if default_plan else f"{config.planid}{k + 1:03d}"
        out.append(config.model_copy(update={"seed": seed, "planid": planid, "mjd": config.mjd + k * MJD_STEP_DAYS}))
    return out


def _simulate_one(
    config: ExposureConfig, templates: Sequence[Template], folder: str, data_root: str | None, spid: int, arcs: ArcLines
) -> tuple[str, int, float]:
    """A Dask task: one spectrograph of one exposure (rendered in this worker, one arm after the other)."""
    with _SERIAL:
        sim = simulate_exposure(config, templates, folder, data_root=data_root, workers=1, arcs=arcs, spids=[spid])
    return config.planid, spid, sim.seconds


def simulate_night(
    config: ExposureConfig,
    templates: Sequence[Template],
    out_root: str | Path,
    n_exposures: int,
    data_root: str | Path | None = None,
    workers: int | None = None,
    client: Any = None,
    arcs: ArcLines | None = None,
) -> list[SimulatedExposure]:
    """Simulate ``n_exposures`` exposures, each into ``out_root/<planid>/``.

    Parameters
    ----------
    config
        The first exposure's configuration (:func:`night_configs` derives the others).
    templates
        Source spectra.
    out_root
        Night folder (created).
    workers
        Processes per exposure when no ``client`` is given.
    client
        A ``distributed.Client``: one task per (exposure, spectrograph) on its workers, which must
        see ``out_root`` and the reference data at the same paths.

    Returns
    -------
    list of SimulatedExposure
        One per exposure. With a client, the spectrographs' truth stays in the files (the
        returned entries list no spectrographs).
    """
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    configs = night_configs(config, n_exposures)
    arcs = arcs if arcs is not None else read_arc_lines(observatory_dir(data_root) / "arc_lines")
    if client is None:
        return [
            simulate_exposure(cfg, templates, out_root / cfg.planid, data_root=data_root, workers=workers, arcs=arcs)
            for cfg in configs
        ]
    t0 = time.perf_counter()
    [shared_templates] = client.scatter([list(templates)], broadcast=True)
    [shared_arcs] = client.scatter([arcs], broadcast=True)
    root = None if data_root is None else str(Path(data_root).resolve())
    futures = [
        client.submit(
            _simulate_one,
            cfg,
            shared_templates,
            str((out_root / cfg.planid).resolve()),
            root,
            spid,
            shared_arcs,
            key=f"drcnet-simulate-{cfg.planid}-sp{spid:02d}",
            pure=False,
        )
        for cfg in configs
        for spid in range(1, cfg.spectrographs + 1)
    ]
    client.gather(futures)
    from drcnet.simulate.exposure.catalogue import write_exposure_catalogue

    for cfg in configs:
        write_exposure_catalogue(out_root / cfg.planid, cfg.planid, list(range(1, cfg.spectrographs + 1)))
    seconds = time.perf_counter() - t0
    return [SimulatedExposure(out_root / cfg.planid, cfg, [], seconds) for cfg in configs]
