"""``drcnet predict --data`` throughput against a plain reference, in one process (not a test).

Measured on the same file, the same weights and the same objects, in one process, interleaved
(round by round) so that load from other jobs hits every variant alike; each figure is the best
(minimum) wall time over ``--rounds`` rounds, printed as objects/s and as a ratio to the plain
reference:

* ``plain``: what a plain script does - read each object from the HDF5 file, Z-score it in float64
  (:func:`drcnet.data.normalize.zscore`), batches of 64 through the eager fp32 network (``fast=False``);
* ``dataloader (old)``: the previous ``predict_dataset`` - a ``torch.utils.data.DataLoader`` over single
  items (one worker process, batch 64, per-object float64 Z-score), CPU fast path;
* ``batched``: :func:`drcnet.inference.engine.predict_dataset` as ``drcnet predict`` runs it now (chunk-aligned
  batch reads, one vectorised Z-score per batch, a read-ahead thread, batch 256, fast path);
* ``batched onnx``: the same data path with the model exported to ONNX and run by ONNX Runtime;
* ``batched bf16``: the same under bf16 autocast (only where the CPU has native bf16; emulated bf16 is
  slower than fp32 and is not timed);
* ``model only``: forward passes alone on inputs already normalised in memory (batch 256, fast path):
  the ceiling for the end-to-end figures.

It also reports the agreement of each variant with the plain reference (max |p - p_ref|, share of equal
argmax) - and, with ``--bf16-check``, of emulated bf16 with fp32.

With ``--train-loader`` it also times the training data path alone: one pass of a shuffled
``DataLoader`` (batch 32, in the main process) over the ``train`` split, items one at a time (the
previous path: per-object read + float64 Z-score) against ``SpectraDataset.__getitems__`` (one batched
read + vectorised Z-score per batch), same sampler and seed, and checks the batches are equal.

Usage::

    DRCNET_DATA=../shared/data .venv/bin/python benchmarks/bench_predict.py [--data FILE.h5] [--split test]
        [--run RUN_DIR] [--rounds 3] [--threads 2] [--bf16-check] [--train-loader]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from drcnet.data.normalize import zscore, zscore_spectra1d
from drcnet.data.torch_dataset import SpectraDataset
from drcnet.inference.engine import bf16_support, predict_arrays, predict_dataset
from drcnet.models import load_run, pretrained_dir
from drcnet.models.fastpath import configure_cpu, set_fast

ROOT = Path(__file__).resolve().parents[1]


def plain(model: torch.nn.Module, data: str, rows: np.ndarray, batch: int = 64) -> np.ndarray:
    """The plain script: per-object reads, float64 Z-score, eager fp32 network (fast path off)."""
    set_fast(model, False)
    out = np.empty((len(rows), 3), np.float32)
    try:
        with h5py.File(data) as h, torch.inference_mode():
            for a in range(0, len(rows), batch):
                if model.input_kind == "stripes":
                    x = np.stack([zscore(h["stripes"][int(r)], (-2, -1)) for r in rows[a : a + batch]])
                else:
                    x = np.stack(
                        [zscore_spectra1d(h["flux1d"][int(r)], h["sky1d"][int(r)]) for r in rows[a : a + batch]]
                    )
                out[a : a + batch] = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
    finally:
        set_fast(model, True)
    return out


class _OldItems(Dataset):
    """The previous per-item dataset: one HDF5 read and one float64 Z-score per object, no ``__getitems__``."""

    def __init__(self, ds: SpectraDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        raw = self.ds.read_raw(i)
        if self.ds.input_kind == "stripes":
            x = zscore(raw["stripes"], (-2, -1))
        else:
            x = zscore_spectra1d(raw["flux1d"], raw["sky1d"])
        return torch.from_numpy(x), int(i)


def dataloader_old(model: torch.nn.Module, data: str, split: str | None, batch: int = 64) -> np.ndarray:
    """The previous ``predict_dataset``: a DataLoader over single items, one worker process, batch 64."""
    ds = SpectraDataset(data, model.input_kind, split)
    out = np.empty((len(ds), 3), np.float32)
    with torch.inference_mode():
        for x, idx in DataLoader(_OldItems(ds), batch_size=batch, num_workers=1):
            out[idx.numpy()] = torch.softmax(model(x), 1).numpy()
    return out


class _ItemsOnly(Dataset):
    """The previous training items: ``(x, y, i)`` one object at a time, float64 Z-score, no ``__getitems__``."""

    def __init__(self, ds: SpectraDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        raw = self.ds.read_raw(i)
        x = zscore(raw["stripes"], (-2, -1)) if self.ds.input_kind == "stripes" else zscore_spectra1d(**raw)
        return torch.from_numpy(x), torch.tensor(self.ds.labels[i], dtype=torch.int64), int(i)


def train_loader(data: str, kind: str, rounds: int, batch: int = 32) -> None:
    """Time one shuffled pass over the train split: single items vs ``__getitems__`` batches."""
    ds = SpectraDataset(data, kind, "train", labelled_only=True)

    def run(dataset: Dataset) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        return [b[0] for b in DataLoader(dataset, batch_size=batch, shuffle=True, generator=g, num_workers=0)]

    best = {"items": float("inf"), "getitems": float("inf")}
    out = {}
    for _ in range(rounds):
        for k, d in (("items", _ItemsOnly(ds)), ("getitems", ds)):
            t = time.perf_counter()
            out[k] = run(d)
            best[k] = min(best[k], time.perf_counter() - t)
    diff = max(float((a - b).abs().max()) for a, b in zip(out["items"], out["getitems"]))
    n = len(ds)
    print(f"\ntraining DataLoader, {n} train objects, batch {batch}, shuffled, main process:")
    print(f"  single items (previous) {n / best['items']:8.0f} obj/s")
    print(
        f"  __getitems__ batches    {n / best['getitems']:8.0f} obj/s  x{best['items'] / best['getitems']:.2f}; "
        f"max |x diff| {diff:.1e}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "out" / "demo" / "small.h5"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--run", default=None, help="run folder (default: the shipped default model)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--bf16-check", action="store_true", help="also run emulated bf16 for its agreement with fp32")
    ap.add_argument("--train-loader", action="store_true", help="also time the training DataLoader's data path")
    ap.add_argument("--only-train-loader", action="store_true", help="time only the training DataLoader")
    args = ap.parse_args()
    if args.only_train_loader:
        train_loader(args.data, "stripes", args.rounds)
        return

    configure_cpu(args.threads)
    model, _ = load_run(args.run or pretrained_dir())
    ds = SpectraDataset(args.data, model.input_kind, args.split)
    rows, n = ds.rows, len(ds)
    print(
        f"{args.data} split {args.split}: {n} objects; model {type(model).__name__}; threads "
        f"{torch.get_num_threads()}; cpu {torch.backends.cpu.get_cpu_capability()}"
    )

    from drcnet.models.onnx_export import OnnxModel, export_onnx

    tmp = tempfile.mkdtemp(prefix="bench-onnx-")
    export_onnx(model, Path(tmp) / "m.onnx")
    onnx_model = OnnxModel(Path(tmp) / "m.onnx")
    x_mem = ds.read_batch(np.arange(min(n, 256)))[0]
    x_t = torch.from_numpy(x_mem)

    def model_only() -> None:
        with torch.inference_mode():
            for _ in range(max(1, n // len(x_mem))):
                model(x_t)

    variants = {
        "plain": lambda: plain(model, args.data, rows),
        "dataloader (old)": lambda: dataloader_old(model, args.data, args.split),
        "batched": lambda: predict_dataset(model, args.data, args.split)["prob"],
        "batched onnx": lambda: predict_dataset(onnx_model, args.data, args.split)["prob"],
    }
    bf16_ok, why = bf16_support("cpu")
    if bf16_ok:
        variants["batched bf16"] = lambda: predict_dataset(model, args.data, args.split, precision="bf16")["prob"]
    variants["model only"] = model_only
    n_model = max(1, n // len(x_mem)) * len(x_mem)

    best = {k: float("inf") for k in variants}
    result: dict[str, np.ndarray] = {}
    for v in variants.values():  # warm-up
        v()
    for _ in range(args.rounds):
        for k, v in variants.items():
            t = time.perf_counter()
            r = v()
            best[k] = min(best[k], time.perf_counter() - t)
            if r is not None:
                result[k] = r
    ref = result["plain"]
    print(f"\n{'variant':20s} {'time s':>8s} {'obj/s':>8s} {'x plain':>8s} {'max|dp|':>9s} {'argmax=':>8s}")
    for k in variants:
        cnt = n_model if k == "model only" else n
        line = f"{k:20s} {best[k]:8.3f} {cnt / best[k]:8.0f} {(cnt / best[k]) / (n / best['plain']):8.2f}"
        if k in result:
            d = np.abs(result[k] - ref).max()
            line += f" {d:9.2e} {(result[k].argmax(1) == ref.argmax(1)).mean():8.4f}"
        print(line)
    if not bf16_ok:
        print(f"batched bf16: not timed: {why}")
    if args.bf16_check:
        with h5py.File(args.data) as h:
            raw = np.stack([h["stripes"][int(r)] for r in rows]) if model.input_kind == "stripes" else None
        if raw is not None:
            p32 = predict_arrays(model, stripes=raw, batch_size=64)
            p16 = predict_arrays(model, stripes=raw, batch_size=64, precision="bf16")
            print(
                f"bf16 vs fp32 ({'native' if bf16_ok else 'emulated'}): argmax equal "
                f"{(p32.argmax(1) == p16.argmax(1)).mean():.4f}, max |dp| {np.abs(p32 - p16).max():.4f}, "
                f"mean |dp| {np.abs(p32 - p16).mean():.5f} over {len(rows)} objects"
            )
    if args.train_loader:
        train_loader(args.data, model.input_kind, args.rounds)


if __name__ == "__main__":
    sys.exit(main())
