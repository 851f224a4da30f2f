"""One training epoch as a user runs it: ``drcnet train`` against a plain PyTorch script, whole processes.

Not a test (no asserts on time). Issue 11 asks for ``drcnet train`` at x3 the speed of a plain eager
float32 DRC-Net script that does the same HDF5 reads, Z-score and passes. This is that script, kept
here so the ratio is measured in the same run on the same machine:

* the plain script (``--role plain``, run as its own process): a ``torch.utils.data.Dataset`` that
  reads one object at a time (``h5py``, ``stripes[row]``), converts float16 -> float32 and Z-scores
  each arm's 11 x 3000 stripe with numpy; a ``DataLoader`` (batch 32, shuffled, ``--plain-workers``
  processes); DRC-Net in PyTorch's default layout (``fast=False``, NCHW) and glibc's allocator; AdamW
  at the ``fast`` preset's learning rate and weight decay, cross-entropy, gradient clipping at 1.0;
  then one pass over the validation split (batch 64, ``torch.no_grad``);
* ``drcnet train --model drcnet --preset fast --epochs 1`` on the same file (its own defaults:
  loader workers, threads, channels-last fast path, validation, per-arm spread, checkpoints).

Both are timed as whole processes (start-up and imports included), alternating, ``--rounds`` times;
the best wall time of each is kept, with the CPU time of the same round. The ratios printed are
plain / drcnet (above 1: drcnet faster). ``--previous REF`` also times ``drcnet train`` at an older
commit (a temporary git worktree on ``PYTHONPATH``), in the same rounds.

Usage::

    .venv/bin/python benchmarks/bench_epoch.py paper.h5 [--rounds 2] [--threads 2] [--plain-workers 1]
        [--previous REF]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def plain_epoch(path: str, threads: int, workers: int, seed: int = 0) -> None:
    """The plain reference: one epoch of DRC-Net training and a validation pass (see the module docstring)."""
    import h5py
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Dataset

    from drcnet.models import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(seed)

    class Stripes(Dataset):
        def __init__(self, split: str) -> None:
            with h5py.File(path, "r") as h:
                raw = h.attrs.get("split_names", "train,val,test")
                names = (raw.decode() if isinstance(raw, bytes) else str(raw)).split(",")
                split_col = h["split"][:]
                label = h["label"][:]
            self.rows = np.flatnonzero((split_col == names.index(split)) & (label >= 0))
            self.label = label[self.rows].astype(np.int64)
            self.h: h5py.File | None = None

        def __len__(self) -> int:
            return len(self.rows)

        def __getitem__(self, i: int):
            if self.h is None:
                self.h = h5py.File(path, "r")
            x = self.h["stripes"][int(self.rows[i])].astype(np.float32)  # (2, 11, 3000)
            mean = x.mean(axis=(1, 2), keepdims=True)
            std = x.std(axis=(1, 2), keepdims=True)
            return torch.from_numpy((x - mean) / np.maximum(std, 1e-8)), int(self.label[i])

    model = create_model("drcnet")  # fast=False: PyTorch's default layout
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=1e-4)
    train = DataLoader(Stripes("train"), batch_size=32, shuffle=True, num_workers=workers)
    val = DataLoader(Stripes("val"), batch_size=64, shuffle=False, num_workers=workers)
    model.train()
    n = 0
    for x, y in train:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        n += len(y)
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in val:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    print(f"plain: {n} training objects, validation accuracy {correct / max(total, 1):.3f} on {total}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--plain-workers",
        type=int,
        default=1,
        help="DataLoader processes of the plain script (a plain script usually has one or more)",
    )
    ap.add_argument(
        "--previous",
        default=None,
        metavar="REF",
        help="also time `drcnet train` at this git commit (a temporary worktree), e.g. HEAD",
    )
    ap.add_argument("--role", choices=["bench", "plain"], default="bench", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role == "plain":
        plain_epoch(str(a.data), a.threads, a.plain_workers)
        return

    import resource

    from bench_frames import previous_tree

    names = ["plain", "drcnet"] + (["previous"] if a.previous else [])
    best: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="drcnet_epoch_") as tmp, previous_tree(a.previous) as prev_src:
        for r in range(a.rounds):
            for name in names:
                env = dict(os.environ)
                if name == "plain":
                    cmd = [
                        sys.executable,
                        __file__,
                        str(a.data),
                        "--role",
                        "plain",
                        "--threads",
                        str(a.threads),
                        "--plain-workers",
                        str(a.plain_workers),
                    ]
                else:
                    env["PYTHONPATH"] = str(prev_src if name == "previous" else ROOT / "src")
                    cmd = [
                        sys.executable,
                        "-c",
                        "from drcnet.cli import app; app()",
                        "train",
                        "--model",
                        "drcnet",
                        "--data",
                        str(a.data),
                        "--out",
                        f"{tmp}/{name}{r}",
                        "--preset",
                        "fast",
                        "--epochs",
                        "1",
                        "--threads",
                        str(a.threads),
                        "--no-progress",
                    ]
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
                wall = time.perf_counter() - t0
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if proc.returncode:
                    raise SystemExit(f"{name} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-2000:]}")
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                lines = (proc.stdout + proc.stderr).strip().splitlines()
                last = next((ln for ln in reversed(lines) if "plain:" in ln or "epoch   1" in ln), "")
                print(
                    f"round {r + 1} {name:8s}: {wall:6.1f} s wall, {cpu:6.1f} CPU-s   {last.strip()[:100]}", flush=True
                )
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, cpu)
    pw, pc = best["plain"]
    print(f"best of {a.rounds} (wall; CPU of the same round):")
    for name in names:
        w, c = best[name]
        print(f"  {name:8s} {w:6.1f} s ({c:6.1f} CPU-s)   plain / this: x{pw / w:.2f} wall, x{pc / c:.2f} CPU")
    if a.previous:
        print(f"  current against previous ({a.previous}): x{best['previous'][0] / best['drcnet'][0]:.2f} wall")


if __name__ == "__main__":
    main()
