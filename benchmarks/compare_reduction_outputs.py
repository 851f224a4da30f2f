"""Are two source trees' raw-exposure outputs the same, file by file? And is the reduction as fast?

For each case (the demo exposure, seed 0; a perturbed one, seed 7 with ``--other 0.15``):

1. ``drcnet frames simulate`` with each tree (the raw frames, fiber map, truth file and LRS catalogue);
2. on the old tree's exposure, with each tree: ``drcnet frames reduce`` (the dataset file) and
   ``drcnet frames classify MODEL --qa DIR --dataset`` (catalogue, its provenance, the QA page and its
   pictures, the reduced dataset);
3. every output file of the old tree is compared with the new tree's: byte for byte, else field by field with
   the provenance fields masked - the package version, git commit, creation times, python version, the
   per-stage wall times (``timings_s``) of the calibration record, which differ between any two runs, and the
   source tree's own folder in paths (a shipped model's ``run_dir``).
   FITS files are compared HDU by HDU (pixels and header cards, ``DRCVERS``/``DRCGIT``/``DRCDATE`` and the
   provenance inside JSON cards masked), HDF5 files dataset by dataset (bytes) and attribute by attribute.

Then the reduction alone (:func:`drcnet.workflows.reduce_exposure.reduce_exposure`) is timed for each tree on
the same exposure in the same run: per round and tree one process reduces once to warm up (imports, page cache,
first calls) and then three times; the processes of the two trees alternate, ``--rounds`` each, and the best
time of each tree is compared (ratio new / old).

Usage::

    DRCNET_DATA=../shared/data .venv/bin/python benchmarks/compare_reduction_outputs.py \\
        --old ../main/src --new src [--work /tmp/cmp] [--model drcnet] [--rounds 2]

Exit status 0 when every file is identical (up to provenance), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

CASES: dict[str, list[str]] = {"seed0": ["--seed", "0"], "seed7_other015": ["--seed", "7", "--other", "0.15"]}
"""Case name -> ``frames simulate`` options."""
MASKED_KEYS = {"version", "git_commit", "created_utc", "python", "timings_s", "git_dirty", "host", "hostname"}
"""Provenance fields (JSON keys) left out of the comparison."""
MASKED_CARDS = {"DRCVERS", "DRCGIT", "DRCDATE"}
"""FITS header cards holding the package version, git commit and writing time."""
_TEXT_MASKS = [
    (re.compile(r"\bcommit [^,<]+"), "commit <commit>"),
    (re.compile(r"\b[0-9a-f]{40}\b"), "<commit>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?"), "<time>"),
    (re.compile(r"drcnet \d+\.\d+\.\d+\S*"), "drcnet <version>"),
]


def _drcnet(src: Path, args: list[str], cwd: Path) -> None:
    """Run the ``drcnet`` command line of the source tree ``src`` (a ``src/`` folder) in a child process."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-c", "from drcnet.cli import app; app()", *args]
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed with {src}:\n{out.stdout}\n{out.stderr}")


SOURCE_ROOTS: list[str] = []
"""The two trees' ``src`` folders: a path inside one (a shipped model's folder) is written as ``<src>/...``."""


def _mask(obj: Any) -> Any:
    """``obj`` (parsed JSON) without the provenance fields, source-tree paths as ``<src>``."""
    if isinstance(obj, dict):
        return {k: _mask(v) for k, v in obj.items() if k not in MASKED_KEYS}
    if isinstance(obj, list):
        return [_mask(v) for v in obj]
    if isinstance(obj, str):
        return _mask_text(obj)
    return obj


def _json_or_text(value: Any) -> Any:
    """A header card or attribute: parsed and masked when it holds JSON, else the text with commits/times masked."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            return _mask(json.loads(value))
        except ValueError:
            return _mask_text(value)
    return value


def _mask_text(text: str) -> str:
    for root in SOURCE_ROOTS:
        text = text.replace(root, "<src>")
    for pattern, repl in _TEXT_MASKS:
        text = pattern.sub(repl, text)
    return text


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return bool(_json_or_text(a) == _json_or_text(b))


def _compare_fits(a: Path, b: Path) -> str:
    from astropy.io import fits

    with fits.open(a) as ha, fits.open(b) as hb:
        if len(ha) != len(hb):
            return f"{len(ha)} vs {len(hb)} HDUs"
        for i, (x, y) in enumerate(zip(ha, hb, strict=True)):
            kx = [k for k in x.header if k not in MASKED_CARDS]
            ky = [k for k in y.header if k not in MASKED_CARDS]
            if kx != ky:
                return f"HDU {i}: header cards differ"
            for k in kx:
                if not _same_value(x.header[k], y.header[k]):
                    return f"HDU {i}: card {k} differs"
            dx, dy = x.data, y.data
            if (dx is None) != (dy is None):
                return f"HDU {i}: data in one file only"
            if dx is not None:
                ax, ay = np.asarray(dx), np.asarray(dy)
                if ax.dtype != ay.dtype or ax.shape != ay.shape or ax.tobytes() != ay.tobytes():
                    return f"HDU {i}: data differ"
    return ""


def _compare_h5(a: Path, b: Path) -> str:
    import h5py

    def items(f: h5py.File) -> dict[str, Any]:
        out: dict[str, Any] = {"/": f}
        f.visititems(lambda name, obj: out.__setitem__(name, obj))
        return out

    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        ia, ib = items(fa), items(fb)
        if sorted(ia) != sorted(ib):
            return f"objects differ: {sorted(set(ia) ^ set(ib))[:5]}"
        for name, x in ia.items():
            y = ib[name]
            if sorted(x.attrs) != sorted(y.attrs):
                return f"{name}: attribute names differ"
            for k in x.attrs:
                if not _same_value(x.attrs[k], y.attrs[k]):
                    return f"{name}: attribute {k} differs"
            if isinstance(x, h5py.Dataset):
                vx, vy = x[()], y[()]
                if not _same_value(np.asarray(vx), np.asarray(vy)):
                    return f"{name}: data differ"
    return ""


def compare(a: Path, b: Path) -> tuple[str, str]:
    """``("bytes", "")``: identical files; ``("masked", "")``: identical but for provenance; else ``("differ", why)``."""
    if a.read_bytes() == b.read_bytes():
        return "bytes", ""
    name = a.name
    if name.endswith((".fit", ".fits", ".fit.gz", ".fits.gz")):
        why = _compare_fits(a, b)
    elif name.endswith((".h5", ".hdf5")):
        why = _compare_h5(a, b)
    elif name.endswith(".json"):
        why = "" if _mask(json.loads(a.read_text())) == _mask(json.loads(b.read_text())) else "JSON differs"
    elif name.endswith((".png", ".npy")):
        why = "bytes differ"
    else:
        why = "" if _mask_text(a.read_text()) == _mask_text(b.read_text()) else "text differs"
    return ("masked", "") if not why else ("differ", why)


def _compare_trees(old: Path, new: Path, label: str) -> dict[str, int]:
    counts = {"bytes": 0, "masked": 0, "differ": 0, "missing": 0}
    files_old = sorted(p.relative_to(old) for p in old.rglob("*") if p.is_file())
    files_new = {p.relative_to(new) for p in new.rglob("*") if p.is_file()}
    for rel in files_old:
        if rel not in files_new:
            counts["missing"] += 1
            print(f"  {label}/{rel}: missing in the new tree's outputs")
            continue
        kind, why = compare(old / rel, new / rel)
        counts[kind] += 1
        if why:
            print(f"  {label}/{rel}: {why}")
    extra = files_new - set(files_old)
    counts["missing"] += len(extra)
    for rel in sorted(extra):
        print(f"  {label}/{rel}: only in the new tree's outputs")
    return counts


_TIMER = """
import sys, time
from drcnet.workflows.reduce_exposure import reduce_exposure
reduce_exposure(sys.argv[1])  # warm-up: imports done, files in the page cache, first-call costs paid
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    reduce_exposure(sys.argv[1])
    times.append(time.perf_counter() - t)
print(min(times))
"""


def _time_reduce(src: Path, exposure: Path, repeats: int = 3) -> float:
    """Best of ``repeats`` reductions of ``exposure`` in one process of the tree ``src``, after a warm-up."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, "-c", _TIMER, str(exposure), str(repeats)], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", type=Path, required=True, help="the reference tree's src/ folder (e.g. ../main/src)")
    p.add_argument("--new", type=Path, required=True, help="the changed tree's src/ folder")
    p.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one, removed)")
    p.add_argument("--model", default="drcnet", help="run folder or shipped model name for frames classify")
    p.add_argument("--rounds", type=int, default=2, help="reduction timings per tree (alternating); best is kept")
    p.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    p.add_argument("--compare-only", action="store_true", help="compare the outputs already in --work (no runs)")
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="drcnet-compare-"))
    work.mkdir(parents=True, exist_ok=True)
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    SOURCE_ROOTS.extend(str(t) for t in trees.values())
    total = {"bytes": 0, "masked": 0, "differ": 0, "missing": 0}
    timings: dict[str, list[float]] = {"old": [], "new": []}
    try:
        for case in args.cases:
            base = work / case
            if args.compare_only:
                for part in ("exposure", "outputs"):
                    counts = _compare_trees(base / "old" / part, base / "new" / part, f"{case}/{part}")
                    print(f"{case} {part}: {counts}")
                continue
            shutil.rmtree(base, ignore_errors=True)
            for name, src in trees.items():
                _drcnet(src, ["frames", "simulate", "--out", str(base / name / "exposure"), *CASES[case]], work)
            exposure = base / "old" / "exposure"  # both trees reduce the same raw frames
            for name, src in trees.items():
                out = base / name / "outputs"
                out.mkdir(parents=True)
                _drcnet(src, ["frames", "reduce", str(exposure), "--out", str(out / "reduced.h5")], work)
                _drcnet(
                    src,
                    [
                        "frames",
                        "classify",
                        args.model,
                        "--exposure",
                        str(exposure),
                        "--out",
                        str(out / "catalogue.csv"),
                        "--qa",
                        str(out / "qa"),
                        "--dataset",
                        str(out / "classified.h5"),
                    ],
                    work,
                )
            for part in ("exposure", "outputs"):
                counts = _compare_trees(base / "old" / part, base / "new" / part, f"{case}/{part}")
                n = sum(counts.values())
                print(
                    f"{case} {part}: {n} files, {counts['bytes']} byte-identical, {counts['masked']} identical but "
                    f"for provenance, {counts['differ']} different, {counts['missing']} missing"
                )
                for k, v in counts.items():
                    total[k] += v
            for _ in range(args.rounds):
                for name, src in trees.items():
                    timings[name].append(_time_reduce(src, exposure))
        if args.compare_only:
            return 0
        n = sum(total.values())
        print(
            f"all: {n} files, {total['bytes']} byte-identical, {total['masked']} identical but for provenance, "
            f"{total['differ']} different, {total['missing']} missing"
        )
        old_t, new_t = min(timings["old"]), min(timings["new"])
        print(
            f"reduce_exposure (one spectrograph), best of {3 * len(timings['old'])} warm runs per tree over "
            f"{len(args.cases)} exposures, trees alternating: old {old_t:.2f} s, new {new_t:.2f} s, "
            f"ratio new/old {new_t / old_t:.3f}"
        )
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if total["differ"] == 0 and total["missing"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
