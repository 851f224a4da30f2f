"""Whole simulated exposures: a plate's raw frames, fiber maps and truth from the forward model.

* :mod:`~drcnet.simulate.exposure.plan` -- :class:`ExposureConfig` and which object sits in which fiber;
* :mod:`~drcnet.simulate.exposure.lamps` -- the flat and arc lamps' light in a fiber;
* :mod:`~drcnet.simulate.exposure.frames` -- per-fiber light -> whole expected frames -> raw ADU;
* :mod:`~drcnet.simulate.exposure.arm` -- one arm: geometry, frames on disk, truth (:func:`truth_stripes`);
* :mod:`~drcnet.simulate.exposure.run` -- :func:`simulate_exposure` (``drcnet frames simulate``), truth files;
* :mod:`~drcnet.simulate.exposure.night` -- :func:`simulate_night` (``--exposures N``: several plates).
"""

from __future__ import annotations

from drcnet.simulate.exposure.night import night_configs, simulate_night
from drcnet.simulate.exposure.plan import ExposureConfig
from drcnet.simulate.exposure.run import SimulatedExposure, read_truth_geometries, simulate_exposure

__all__ = [
    "ExposureConfig",
    "SimulatedExposure",
    "night_configs",
    "read_truth_geometries",
    "simulate_exposure",
    "simulate_night",
]
