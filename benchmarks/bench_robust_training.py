"""Cost of training the robust / survey model on a 2-core machine: wall, CPU time, peak memory.

Runs ``drcnet train`` on a population file (``drcnet simulate-population``) for a few epochs in a child
process and measures, from the operating system, the child's wall time, user+system CPU time and peak
resident memory (``resource.getrusage(RUSAGE_CHILDREN)``). In the same run, a plain reference - an
eager fp32 PyTorch loop (AdamW, same model and batch size, same objects, per-object HDF5 reads and
Z-score, no drcnet training loop, no fast path) - trains for the same number of steps, so the ratio
says what the drcnet loop costs or saves around the model. The per-epoch figures are then scaled to the
preset's epoch count (training from scratch; a warm-started fine-tune needs fewer).

Usage::

    python benchmarks/bench_robust_training.py POPULATION.h5 [--preset survey] [--epochs 1] [--threads 2]
        [--init-from drcnet-robust] [--reference-steps 60]

Prints one table; nothing is written except a temporary run folder (deleted).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child_usage() -> tuple[float, float]:
    """(CPU seconds, peak RSS in GB) of all waited-for children so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime, r.ru_maxrss / 1024**2


def run_train(data: Path, preset: str, epochs: int, threads: int, init_from: str | None) -> dict[str, float]:
    """One ``drcnet train`` in a child process; its wall, CPU and peak memory."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-c",
            "from drcnet.cli import app; app()",
            "train",
            "--model",
            "drcnet",
            "--data",
            str(data),
            "--out",
            str(Path(tmp) / "run"),
            "--preset",
            preset,
            "--epochs",
            str(epochs),
            "--threads",
            str(threads),
            "--workers",
            "1",
            "--no-progress",
        ]
        if init_from:
            cmd += ["--init-from", init_from]
        cpu0, _ = child_usage()
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
        cpu1, peak = child_usage()
        import json

        meta = json.loads((Path(tmp) / "run" / "run.json").read_text())
    return {
        "wall_s": wall,
        "cpu_s": cpu1 - cpu0,
        "peak_gb": peak,
        "n_train": meta["n_train"],
        "steps_per_epoch": meta["steps_per_epoch"],
    }


def plain_reference(data: Path, steps: int, batch: int, threads: int, model_config: dict) -> float:
    """Seconds per optimiser step of a plain eager fp32 loop (same model, per-object reads and Z-score)."""
    import h5py
    import numpy as np
    import torch
    import torch.nn.functional as F

    from drcnet.models import create_model

    torch.set_num_threads(threads)
    model = create_model("drcnet", pretrained=False, **model_config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with h5py.File(data, "r") as h:
        label = h["label"][:].astype(np.int64)
        rows = np.flatnonzero(h["split"][:] == 0)[: steps * batch]
        t0 = time.perf_counter()
        for k in range(0, len(rows), batch):
            xs = []
            for r in rows[k : k + batch]:
                s = h["stripes"][r].astype(np.float32)
                m = s.mean(axis=(1, 2), keepdims=True)
                sd = s.std(axis=(1, 2), keepdims=True)
                xs.append((s - m) / np.where(sd > 0, sd, 1.0))
            x = torch.from_numpy(np.stack(xs))
            y = torch.from_numpy(np.minimum(label[rows[k : k + batch]], model.config.n_classes - 1))
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        n_steps = (len(rows) + batch - 1) // batch
    return (time.perf_counter() - t0) / max(n_steps, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="population file (drcnet simulate-population)")
    ap.add_argument("--preset", default="survey")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--init-from", default=None, help="warm start, e.g. drcnet-robust")
    ap.add_argument("--reference-steps", type=int, default=60)
    args = ap.parse_args()
    from drcnet.train.config import PRESETS

    res = run_train(args.data, args.preset, args.epochs, args.threads, args.init_from)
    mc = dict(PRESETS[args.preset].get("model_defaults", {}).get("drcnet", {}))
    batch = int(PRESETS[args.preset]["batch_size"])
    ref = plain_reference(args.data, args.reference_steps, batch, args.threads, mc)
    per_epoch_wall = res["wall_s"] / args.epochs
    per_epoch_cpu = res["cpu_s"] / args.epochs
    step = per_epoch_wall / res["steps_per_epoch"]
    full = int(PRESETS[args.preset]["epochs"])
    print(
        f"machine: {os.cpu_count()} cores; preset {args.preset}; {res['n_train']} training objects; "
        f"{args.epochs} epoch(s) measured, threads {args.threads}"
    )
    print(f"{'figure':<44}{'value':>12}")
    print(f"{'drcnet train, wall per epoch (s, incl. val)':<44}{per_epoch_wall:>12.1f}")
    print(f"{'drcnet train, CPU per epoch (s)':<44}{per_epoch_cpu:>12.1f}")
    print(f"{'drcnet train, peak RSS (GB)':<44}{res['peak_gb']:>12.2f}")
    print(f"{'drcnet train, s per step (incl. val share)':<44}{step:>12.3f}")
    print(f"{'plain eager loop, s per step':<44}{ref:>12.3f}")
    print(f"{'ratio plain / drcnet per step':<44}{ref / step:>12.2f}")
    print("  (the drcnet step also carries the validation pass, the per-arm and catalogue-head losses and the")
    print("   per-epoch arm diagnostics; the plain loop is the classification loss alone)")
    print(f"{f'full preset ({full} epochs), wall (min)':<44}{per_epoch_wall * full / 60:>12.1f}")
    print(f"{f'full preset ({full} epochs), CPU (h)':<44}{per_epoch_cpu * full / 3600:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
