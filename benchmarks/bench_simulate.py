"""Benchmark ``drcnet simulate``: the paper preset's wall time, peak memory and file size.

Targets (issue: foundation): ``--preset paper`` (7,989 objects, both arms, with
1D extractions) in <= 180 s on 2 cores, peak memory <= 4 GB, file <= 2.5 GB.

It also times the per-object renderer against a plain reference in the same
process: the same forward model with the spatial profile evaluated directly
(``scipy.special.ndtr``/``arctan`` for every pixel) instead of the tabulated
profile, and prints the ratio.

Usage::

    DRCNET_DATA=../shared/data .venv/bin/python benchmarks/bench_simulate.py [--quick] [--out /tmp/paper.h5]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from drcnet.instrument import FiberConfig, InstrumentConfig
from drcnet.library import load_templates
from drcnet.paths import data_root
from drcnet.simulate.dataset import SimulationConfig
from drcnet.simulate.optics import profile_integral
from drcnet.simulate.render import ForwardModel, Source
from drcnet.simulate.site import Site
from drcnet.workflows.simulate_dataset import simulate_dataset


class PlainProfile:
    """Reference: evaluate the pixel-integrated profile directly for every pixel."""

    def __init__(self, cfg: FiberConfig, reach: int = 40) -> None:
        self.cfg = cfg
        self.reach = reach

    def __call__(self, rows: np.ndarray, centre: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=float)
        rows = rows[:, None] if rows.ndim == 1 else rows
        return profile_integral(rows - centre[None, :], self.cfg)


def time_renderer(model: ForwardModel, n: int) -> float:
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for i in range(n):
        model.render_object(Source(i % len(model.templates), rv_kms=10.0, ebv=0.05), fiber=(7 * i) % 250, rng=rng,
                            snr_target=40.0, neighbours=(Source(0, mag_r=16.0), None))
    return (time.perf_counter() - t0) / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the renderer comparison, no full paper run")
    parser.add_argument("--out", type=Path, default=None, help="where to write the paper dataset (default: a temp dir)")
    args = parser.parse_args()
    root = data_root()
    templates = load_templates([root / "spectral_libraries" / "pyhammer"]).templates
    inst = InstrumentConfig()
    site = Site.load(inst, root)
    fast = ForwardModel(inst, site, templates[:12])
    plain = ForwardModel(inst, site, templates[:12])
    plain.profile = PlainProfile(inst.fiber)  # type: ignore[assignment]
    n = 60
    t_fast, t_plain = time_renderer(fast, n), time_renderer(plain, n)
    print(f"renderer, one object (both arms, neighbours, noise, extraction): drcnet {1e3 * t_fast:.1f} ms, "
          f"plain reference {1e3 * t_plain:.1f} ms, speed-up x{t_plain / t_fast:.2f}")
    if args.quick:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "paper.h5"
        config = SimulationConfig(libraries=[str(root / "spectral_libraries" / "pyhammer")], preset="paper", seed=0)
        t0 = time.perf_counter()
        simulate_dataset(config, templates, out, workers=os.cpu_count(), progress=False)
        wall = time.perf_counter() - t0
        size_gb = out.stat().st_size / 1e9
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6
    # workers are forked copies: main + (cores) workers together bound the peak
    peak_total = peak_self + (os.cpu_count() or 1) * peak_child
    print(f"paper preset (7989 objects) on {os.cpu_count()} cores: {wall:.1f} s (target <= 180 s, ratio {wall / 180:.2f})")
    print(f"peak memory: main {peak_self:.2f} GB, largest worker {peak_child:.2f} GB, bound on the sum {peak_total:.2f} GB (target <= 4 GB)")
    print(f"file: {size_gb:.2f} GB (target <= 2.5 GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
