"""Benchmark ``drcnet simulate``: the paper preset's wall time, peak memory and file size.

Targets (issue: foundation): ``--preset paper`` (7,989 objects, both arms, with
1D extractions) in <= 180 s on 2 cores, peak memory <= 4 GB, file <= 2.5 GB.

It also times, in the same process, interleaved, best of ``--rounds``:

* the per-object renderer against a plain reference: the same forward model with the spatial profile
  evaluated directly (``scipy.special.ndtr``/``arctan`` for every pixel) instead of the tabulated profile;
* the renderer as it is against the renderer before the speed work of issue 11
  (``ReferenceForwardModel`` of ``tests/simulate/test_renderer_reference.py``: per-call profile look-ups, the aperture
  computed separately, the S/N scale on full 32-point grids), on the paper plan's first objects, each block
  rendered *and packed* into the file's rows as the workers do; the outputs are checked to be identical;

and prints the ratios. ``--paper`` then renders the whole paper preset (``--paper-reference`` also with the
previous renderer, for the whole-run ratio; slow).

Usage::

    DRCNET_DATA=../shared/data .venv/bin/python benchmarks/bench_simulate.py [--quick] [--rounds 3] [--objects 64]
    DRCNET_DATA=../shared/data .venv/bin/python benchmarks/bench_simulate.py --paper [--paper-reference] [--workers N]
"""

from __future__ import annotations

import argparse
import importlib.util
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

    def stripe(self, row_start: np.ndarray, n_rows: int, centre: np.ndarray) -> np.ndarray:
        return self(row_start[None, :] + np.arange(n_rows)[:, None], centre)


def time_renderer(model: ForwardModel, n: int) -> float:
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for i in range(n):
        model.render_object(
            Source(i % len(model.templates), rv_kms=10.0, ebv=0.05),
            fiber=(7 * i) % 250,
            rng=rng,
            snr_target=40.0,
            neighbours=(Source(0, mag_r=16.0), None),
        )
    return (time.perf_counter() - t0) / n


def load_reference() -> object:
    """``tests/simulate/test_renderer_reference.py`` as a module: the renderer before the speed work (``reference_model``)."""
    path = Path(__file__).resolve().parents[1] / "tests" / "simulate" / "test_renderer_reference.py"
    spec = importlib.util.spec_from_file_location("speed_reference", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def time_blocks(
    prepared: object, config: SimulationConfig, model: ForwardModel, start: int, n: int
) -> tuple[float, dict]:
    """CPU seconds per object to render and pack objects ``start .. start + n`` of the plan with ``model``."""
    from drcnet.simulate import dataset as ds

    ds._init_worker(
        model,
        prepared.plan,
        config,
        prepared.template_split,
        prepared.templates,  # type: ignore[attr-defined]
        prepared.param_names,
    )  # type: ignore[attr-defined]
    t0 = time.process_time()  # CPU time of this process: less sensitive to other load on the machine
    _, rows = ds._render_packed(list(range(start, start + n)))
    return (time.process_time() - t0) / n, rows


def paper_run(root: Path, templates: list, workers: int, reference: object | None = None) -> float:
    """Wall time of the whole paper preset (render + write), optionally with the reference renderer."""
    from drcnet.simulate import dataset as ds

    config = SimulationConfig(libraries=[str(root / "spectral_libraries" / "pyhammer")], preset="paper", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "paper.h5"
        t0 = time.perf_counter()
        prepared = ds.prepare_dataset(config, templates)
        if reference is not None:
            prepared.model = reference.reference_model(prepared.model)  # type: ignore[attr-defined]
        simulate_dataset(config, templates, out, workers=workers, progress=False, prepared=prepared)
        wall = time.perf_counter() - t0
        print(f"  file {out.stat().st_size / 1e9:.2f} GB")
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the renderer comparisons, no full paper run")
    parser.add_argument("--paper", action="store_true", help="also render the whole paper preset (new renderer)")
    parser.add_argument("--paper-reference", action="store_true", help="... and with the previous renderer")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best of)")
    parser.add_argument("--objects", type=int, default=64, help="objects per round in the block comparison")
    parser.add_argument("--workers", type=int, default=None, help="worker processes of the paper run (default: cores)")
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
    print(
        f"renderer, one object (both arms, neighbours, noise, extraction): drcnet {1e3 * t_fast:.1f} ms, "
        f"plain-profile reference {1e3 * t_plain:.1f} ms, speed-up x{t_plain / t_fast:.2f}"
    )

    # the renderer now against the renderer before the speed work, paper plan, render + pack per block
    from drcnet.simulate.dataset import prepare_dataset

    ref_module = load_reference()
    config = SimulationConfig(libraries=[str(root / "spectral_libraries" / "pyhammer")], preset="paper", seed=0)
    prepared = prepare_dataset(config, templates)
    new_model = prepared.model
    old_model = ref_module.reference_model(new_model)  # type: ignore[attr-defined]
    best = {"previous": float("inf"), "now": float("inf")}
    for r in range(args.rounds):
        start = r * args.objects
        t_old, rows_old = time_blocks(prepared, config, old_model, start, args.objects)
        t_new, rows_new = time_blocks(prepared, config, new_model, start, args.objects)
        same = all(np.array_equal(rows_old[k], rows_new[k], equal_nan=rows_old[k].dtype.kind == "f") for k in rows_old)
        best["previous"], best["now"] = min(best["previous"], t_old), min(best["now"], t_new)
        print(
            f"  round {r + 1}: previous {1e3 * t_old:.1f} ms CPU/object, now {1e3 * t_new:.1f} ms CPU/object, "
            f"x{t_old / t_new:.2f}, rows identical: {same}"
        )
        if not same:
            print("ERROR: the renderer's rows differ from the previous renderer's")
            return 1
    print(
        f"render + pack, paper plan, {args.objects} objects x {args.rounds} rounds (best, CPU time): previous "
        f"{1e3 * best['previous']:.1f} ms/object, now {1e3 * best['now']:.1f} ms/object, "
        f"x{best['previous'] / best['now']:.2f}"
    )
    if args.quick or not args.paper:
        return 0
    workers = args.workers or os.cpu_count() or 1
    wall = paper_run(root, templates, workers)
    print(
        f"paper preset (7989 objects) on {workers} workers, render + write (templates loaded): {wall:.1f} s "
        f"(target <= 45 s whole command)"
    )
    if args.paper_reference:
        wall_ref = paper_run(root, templates, workers, ref_module)
        print(f"  previous renderer: {wall_ref:.1f} s; x{wall_ref / wall:.2f}")
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6
    print(f"peak memory: main {peak_self:.2f} GB, largest worker {peak_child:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
