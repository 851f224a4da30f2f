"""DRC-Net CPU throughput and streaming-memory benchmark (not a test; no asserts on time).

Runs, in one process, the plain eager float32 reference (the models' ``fast=False`` path:
``nn.Conv1d``/``nn.Conv2d`` in PyTorch's default NCHW layout, glibc's default allocator) and the
project's optimised path (``fast=True`` plus :func:`drcnet.models.fastpath.configure_cpu`), on the
same weights and the same batch, and prints objects/s for training (forward + backward + AdamW
step) and inference (``torch.inference_mode``), and the ratios. The allocator setting is
process-wide and cannot be undone, so the reference is measured first.

Then (unless ``--skip-memory``) it streams every training object of a paper-size dataset file
(``--memory-file``, e.g. the output of ``drcnet simulate --preset paper``; by default a synthetic
file with Table 1's 7,989 objects, ~1 GB, is written and removed) through the training DataLoader
and trains ``--memory-steps`` batches, in a fresh subprocess, and reports the peak resident memory
(``ru_maxrss``) of the training process and of its DataLoader worker.

Usage::

    .venv/bin/python benchmarks/bench_training.py [--batch 64] [--rounds 5] [--skip-memory]
        [--compile] [--memory-file runs/paper.h5] [--memory-steps 20]

Targets on 2 CPU cores, batch 64: training >= 150 objects/s, inference >= 800 objects/s;
peak memory when training on the paper-size file <= 3 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from drcnet.models import create_model  # noqa: E402
from drcnet.models.fastpath import configure_cpu, set_fast  # noqa: E402


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(fn, n_iter: int, rounds: int) -> dict[str, float]:
    """Best (minimum) wall time per call over ``rounds`` rounds of ``n_iter`` calls, after 2 warm-up calls."""
    fn()
    fn()
    best, cpu = float("inf"), float("inf")
    for _ in range(rounds):
        t, c = time.perf_counter(), _cpu_s()
        for _ in range(n_iter):
            fn()
        best = min(best, (time.perf_counter() - t) / n_iter)
        cpu = min(cpu, (_cpu_s() - c) / n_iter)
    return {"wall_s": best, "cpu_s": cpu}


def bench_model(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n_iter: int, rounds: int, compiled: bool = False
) -> dict[str, float]:
    """Objects/s for a training step and an inference pass of ``model`` on batch ``x``."""
    b = len(x)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    fwd = torch.compile(model) if compiled else model

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(fwd(x), y).backward()
        opt.step()

    def infer() -> None:
        with torch.inference_mode():
            fwd(x)

    model.train()
    t = measure(train_step, n_iter, rounds)
    model.eval()
    i = measure(infer, n_iter * 2, rounds)
    return {
        "train_obj_s": b / t["wall_s"],
        "infer_obj_s": b / i["wall_s"],
        "train_obj_cpu_s": b / t["cpu_s"],
        "infer_obj_cpu_s": b / i["cpu_s"],
    }


_MEMORY_CODE = """
import json, resource, sys, time
import torch, torch.nn.functional as F
from torch.utils.data import DataLoader
from drcnet.data.torch_dataset import SpectraDataset
from drcnet.models import create_model
from drcnet.models.fastpath import configure_cpu
path, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
configure_cpu(2)
ds = SpectraDataset(path, "stripes", "train")
loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=1, generator=torch.Generator().manual_seed(0))
t = time.perf_counter(); n = 0
for x, y, _ in loader:          # every training object streamed from disk once
    n += len(x)
stream_s = time.perf_counter() - t
model = create_model("drcnet"); opt = torch.optim.AdamW(model.parameters(), 1e-3)
t = time.perf_counter(); k = 0
for x, y, _ in loader:          # training steps with the same streaming loader
    opt.zero_grad(); F.cross_entropy(model(x), y).backward(); opt.step(); k += 1
    if k >= steps: break
train_s = time.perf_counter() - t
del loader
ru = resource.getrusage
print(json.dumps({"n_train": n, "stream_s": stream_s, "train_steps": k, "train_s": train_s,
                  "maxrss_mb": ru(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "worker_maxrss_mb": ru(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def memory_run(path: Path | None, keep: bool, steps: int, batch: int) -> dict[str, object]:
    """Stream every training object of a paper-size file, then train ``steps`` batches; peak RSS.

    Runs in a fresh subprocess (so the benchmark's own tensors do not count): the main process's
    ``ru_maxrss`` (model, optimiser, batches) and the DataLoader worker's (HDF5 reads, Z-score).
    Without ``path`` a synthetic file with the paper's Table 1 layout (7,989 objects) is written first.
    """
    from _support.synthetic_dataset import PAPER_LAYOUT, make_synthetic_dataset

    tmp = Path(tempfile.mkdtemp(prefix="drcnet_bench_"))
    data = path or tmp / "paper_size.h5"
    t0 = time.perf_counter()
    if not data.exists():
        make_synthetic_dataset(data, PAPER_LAYOUT, seed=0)
    gen_s = time.perf_counter() - t0
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_CODE, str(data), str(steps), str(batch)],
        capture_output=True,
        text=True,
        check=True,
    )
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update({"file": str(data), "file_gb": data.stat().st_size / 1e9, "generate_s": gen_s})
    if not keep and path is None:
        data.unlink()
    return res


def epoch_data(path: Path, rounds: int) -> None:
    """CPU time per object of the data work of one epoch, now against the previous per-object path.

    Rows: training batches of 32 in shuffled order (``__getitems__`` vs one ``__getitem__`` per object),
    validation batches of 64 in file order, and the 256 validation objects of the per-arm feature spread
    (one ``read_batch`` slice vs 256 ``__getitem__`` calls, as before issue 11). Interleaved, best of
    ``rounds``; the inputs are checked to be equal.
    """
    import numpy as np

    from drcnet.data.torch_dataset import SpectraDataset
    from drcnet.train.epoch import FEATURE_SPREAD_OBJECTS

    train = SpectraDataset(path, "stripes", "train", labelled_only=True)
    val = SpectraDataset(path, "stripes", "val", labelled_only=True)
    perm = np.random.default_rng(0).permutation(len(train))
    k = min(FEATURE_SPREAD_OBJECTS, len(val))

    def cpu(fn) -> float:
        t = time.process_time()
        fn()
        return time.process_time() - t

    cases = {
        "training batches (32, shuffled)": (
            len(train),
            lambda: [torch.stack([train[i][0] for i in perm[a : a + 32]]) for a in range(0, len(train), 32)],
            lambda: [
                torch.stack([it[0] for it in train.__getitems__(list(perm[a : a + 32]))])
                for a in range(0, len(train), 32)
            ],
        ),
        "validation batches (64)": (
            len(val),
            lambda: [torch.stack([val[i][0] for i in range(a, min(a + 64, len(val)))]) for a in range(0, len(val), 64)],
            lambda: [
                torch.stack([it[0] for it in val.__getitems__(list(range(a, min(a + 64, len(val)))))])
                for a in range(0, len(val), 64)
            ],
        ),
        f"feature spread ({k} val objects)": (
            k,
            lambda: [torch.stack([val[i][0] for i in range(k)])],
            lambda: [torch.from_numpy(val.read_batch(slice(0, k))[0])],
        ),
    }
    print(f"epoch data work on {path} ({len(train)} train, {len(val)} val), CPU ms per object, best of {rounds}:")
    for name, (n, old, new) in cases.items():
        a = np.array_equal(torch.cat(old()).numpy(), torch.cat(new()).numpy())
        t_old = min(cpu(old) for _ in range(rounds)) / n
        t_new = min(cpu(new) for _ in range(rounds)) / n
        print(
            f"  {name:38s} per-object {1e3 * t_old:6.2f}  now {1e3 * t_new:6.2f}  x{t_old / t_new:.1f}"
            f"  inputs identical: {a}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=3, help="calls per timing round")
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds (the best is kept)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (inductor) on the fast path")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument(
        "--memory-file",
        type=Path,
        default=None,
        help="paper-size dataset file to stream (default: write a synthetic one and delete it)",
    )
    ap.add_argument("--memory-steps", type=int, default=20, help="training steps in the memory run")
    ap.add_argument(
        "--epoch-data",
        type=Path,
        default=None,
        help="dataset file: also time the epoch's data work around the model (training batches, "
        "validation, the per-arm feature spread) against the per-object path, and exit",
    )
    args = ap.parse_args()
    if args.epoch_data is not None:
        epoch_data(args.epoch_data, args.rounds)
        return

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model("drcnet")
    x = torch.randn(args.batch, 2, 11, 3000)
    y = torch.randint(0, 3, (args.batch,))
    state = {k: v.clone() for k, v in model.state_dict().items()}

    with torch.no_grad():
        set_fast(model, False)
        ref_out = model.eval()(x)
        set_fast(model, True)
        fast_out = model(x)
    max_diff = (ref_out - fast_out).abs().max().item()

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"DRC-Net {model.num_parameters():,} parameters, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"max |logit difference| reference vs optimised path: {max_diff:.2e}")

    set_fast(model, False)
    ref = bench_model(model, x, y, args.iters, args.rounds)
    model.load_state_dict(state)
    cpu = configure_cpu(args.threads)
    set_fast(model, True)
    opt = bench_model(model, x, y, args.iters, args.rounds)
    model.load_state_dict(state)
    rows = [("plain eager reference", ref), (f"optimised path {cpu}", opt)]
    if args.compile:
        t = time.perf_counter()
        comp = torch.compile(model)
        with torch.inference_mode():
            comp(x)
        compile_s = time.perf_counter() - t
        rows.append(
            (
                f"optimised + torch.compile (compile {compile_s:.0f} s)",
                bench_model(model, x, y, args.iters, args.rounds, compiled=True),
            )
        )
    print(f"{'path':60s} {'train obj/s':>12s} {'infer obj/s':>12s}")
    for name, r in rows:
        print(f"{name:60s} {r['train_obj_s']:12.1f} {r['infer_obj_s']:12.1f}")
    print(
        f"{'ratio optimised / reference':60s} {opt['train_obj_s'] / ref['train_obj_s']:12.2f} "
        f"{opt['infer_obj_s'] / ref['infer_obj_s']:12.2f}"
    )
    print(
        f"(per CPU-second, less sensitive to other load: reference {ref['train_obj_cpu_s']:.1f} / "
        f"{ref['infer_obj_cpu_s']:.1f}, optimised {opt['train_obj_cpu_s']:.1f} / {opt['infer_obj_cpu_s']:.1f} "
        "objects per CPU-second / 1 core)"
    )
    if not args.skip_memory:
        mem = memory_run(args.memory_file, keep=args.memory_file is not None, steps=args.memory_steps, batch=args.batch)
        print(
            f"memory: {mem['file']} ({mem['file_gb']:.2f} GB); streamed all {mem['n_train']} training objects "
            f"in {mem['stream_s']:.1f} s ({mem['n_train'] / mem['stream_s']:.0f} objects/s read + Z-score), then "
            f"{mem['train_steps']} training steps of {args.batch} in {mem['train_s']:.1f} s; peak RSS main process "
            f"{mem['maxrss_mb']:.0f} MB, DataLoader worker {mem['worker_maxrss_mb']:.0f} MB, "
            f"sum {mem['maxrss_mb'] + mem['worker_maxrss_mb']:.0f} MB (target <= 3072 MB)"
        )


if __name__ == "__main__":
    main()
