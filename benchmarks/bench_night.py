"""Benchmark a night on Dask: fibers/s with 1 and 2 workers, memory per worker, vs the plain sequential loop.

Target (issue 12): report fibers/s of ``drcnet night classify`` with 1 and 2 ``LocalCluster`` worker
processes on this machine and the memory per worker, against the plain reference in the same run:
a sequential loop calling :func:`drcnet.workflows.classify_exposure.classify_exposure` on each
exposure folder with the model loaded once (its own two-thread arm parallelism, the default).

Timing: fibers/s = object fibers classified / seconds from the first task submitted to the last
result back (the cluster start is printed separately; the reference's model load is excluded too).
Memory per worker: the largest resident set size a worker process reported after any of its
tasks (model, reduction buffers and all); the reference's peak RSS is that of this process.
CPU seconds (the tasks' own, and this process's for the reference) and "cores busy" (CPU-s / wall s)
show what the machine actually gave: on a machine shared with other jobs the wall-clock speed-up of
2 workers is capped by the cores left free; fibers per CPU-second is not.

Usage::

    DRCNET_DATA=../shared/data .venv/bin/python benchmarks/bench_night.py [--quick] [--root NIGHT_ROOT]
        [--exposures 3] [--spectrographs 2] [--run RUN_DIR] [--keep DIR]

Without ``--root`` a night is simulated first (``--quick``: 2 exposures x 2 spectrographs; else 3 x 2)
into a temporary folder (``--keep DIR`` keeps it, and reuses it when it already exists).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _simulate(root: Path, exposures: int, spectrographs: int) -> None:
    from drcnet.library import load_templates
    from drcnet.paths import data_root
    from drcnet.simulate.exposure import ExposureConfig, simulate_night

    temps = load_templates([data_root() / "spectral_libraries" / "pyhammer"], classes=("F", "G", "K")).templates
    t0 = time.perf_counter()
    simulate_night(ExposureConfig(seed=100, spectrographs=spectrographs), temps, root, exposures, workers=2)
    print(f"simulated {exposures} exposures x {spectrographs} spectrographs in {time.perf_counter() - t0:.1f} s")


def _sequential(root: Path, run_dir: Path, out: Path) -> dict:
    from drcnet.inference.predictor import Predictor
    from drcnet.workflows.classify_exposure import classify_exposure
    from drcnet.workflows.manifest import exposure_folders

    t0 = time.perf_counter()
    predictor = Predictor.load(run_dir)
    load = time.perf_counter() - t0
    t1, cpu1 = time.perf_counter(), _cpu()
    rows = 0
    for k, folder in enumerate(exposure_folders(root)):
        res = classify_exposure(None, folder, out / f"seq_{k}.csv", predictor=predictor)
        rows += len(res.table)
    seconds, cpu = time.perf_counter() - t1, _cpu() - cpu1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "fibers": rows,
        "seconds": seconds,
        "fibers_per_s": rows / seconds,
        "load_model_s": load,
        "rss_mb": rss,
        "cpu_s": cpu,
    }


def _night(root: Path, run_dir: Path, out: Path, workers: int) -> dict:
    from drcnet.workflows.night import classify_night

    t0 = time.perf_counter()
    res = classify_night(root, out / f"night_w{workers}.parquet", run_dir, workers=workers, processes=True, force=True)
    wall = time.perf_counter() - t0
    s = res.summary
    per_worker: dict[str, float] = {}
    for r in res.records:
        if r.get("rss_mb") is not None:
            per_worker[r["worker"]] = max(per_worker.get(r["worker"], 0.0), r["rss_mb"])
    if res.failed:
        print(f"  warning: {len(res.failed)} task(s) failed: {[r['error'] for r in res.failed]}")
    return {
        "fibers": s["fibers_new"],
        "seconds": s["task_seconds"],
        "fibers_per_s": s["fibers_per_s"],
        "startup_s": wall - s["task_seconds"],
        "wall_s": wall,
        "worker_rss_mb": per_worker,
        "models_loaded": s["models_loaded"],
        "tasks": s["tasks"],
        "cpu_s": sum(r.get("cpu_s") or 0.0 for r in res.records),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 exposures x 2 spectrographs")
    ap.add_argument("--root", type=Path, help="an existing night root (skip the simulation)")
    ap.add_argument("--exposures", type=int, default=None)
    ap.add_argument("--spectrographs", type=int, default=2)
    ap.add_argument("--run", type=Path, default=None, help="run folder (default: the shipped DRC-Net)")
    ap.add_argument("--keep", type=Path, default=None, help="simulate into (or reuse) this folder")
    args = ap.parse_args(argv)

    from drcnet.models import DEFAULT_MODEL, pretrained_dir

    run_dir = args.run or pretrained_dir(DEFAULT_MODEL)
    exposures = args.exposures or (2 if args.quick else 3)
    with tempfile.TemporaryDirectory(prefix="bench_night_") as tmp:
        tmp_path = Path(tmp)
        root = args.root
        if root is None:
            root = args.keep or tmp_path / "root"
            if not (root.is_dir() and any(root.iterdir())):
                _simulate(root, exposures, args.spectrographs)
        out = tmp_path / "out"
        out.mkdir()
        print(f"night root {root}; model {run_dir}")
        seq = _sequential(root, run_dir, out)
        print(
            f"sequential classify_exposure loop: {seq['fibers']} fibers in {seq['seconds']:.1f} s = "
            f"{seq['fibers_per_s']:.1f} fibers/s (model load {seq['load_model_s']:.1f} s, peak RSS {seq['rss_mb']:.0f} MB); "
            f"{seq['cpu_s']:.1f} CPU-s = {seq['fibers'] / seq['cpu_s']:.1f} fibers/CPU-s, "
            f"{seq['cpu_s'] / seq['seconds']:.2f} cores busy"
        )
        results = {}
        for w in (1, 2):
            r = _night(root, run_dir, out, w)
            results[w] = r
            mem = ", ".join(f"{v:.0f}" for v in r["worker_rss_mb"].values())
            print(
                f"night, {w} worker(s): {r['fibers']} fibers in {r['seconds']:.1f} s = {r['fibers_per_s']:.1f} "
                f"fibers/s (+ {r['startup_s']:.1f} s cluster start and merge); worker RSS {mem} MB; "
                f"model loaded {r['models_loaded']}x for {r['tasks']} tasks; {r['cpu_s']:.1f} CPU-s = "
                f"{r['fibers'] / r['cpu_s']:.1f} fibers/CPU-s, {r['cpu_s'] / r['seconds']:.2f} cores busy"
            )
        base = seq["fibers_per_s"]
        print(
            "ratios (fibers/s): "
            + ", ".join(
                [
                    f"1 worker / sequential x{results[1]['fibers_per_s'] / base:.2f}",
                    f"2 workers / sequential x{results[2]['fibers_per_s'] / base:.2f}",
                    f"2 workers / 1 worker x{results[2]['fibers_per_s'] / results[1]['fibers_per_s']:.2f}",
                ]
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
