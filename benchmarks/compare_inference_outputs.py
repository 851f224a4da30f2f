"""Outputs and speed of the inference path: this tree against another (``--old``: an older checkout's src), one run.

Each command runs twice per round, once per tree (``PYTHONPATH=<tree>`` in a fresh process, the trees
alternating so load from other jobs hits both alike), on the same inputs made once by the reference
tree's simulator:

* ``drcnet predict --data FILE --out preds.csv`` - the CSV files must be byte-identical;
* ``drcnet predict --data FILE --out preds.parquet`` (this tree only; the reference wrote CSV text
  whatever the suffix) - the Parquet values, written as this tree's CSV, must give the reference's bytes;
* ``drcnet predict --exposure DIR --out cat.csv`` - byte-identical CSV (the provenance side file ignored);
* ``drcnet frames classify --exposure DIR --out cat.fits --no-qa`` - identical table data and header
  apart from the provenance cards (``DRCVERS``, ``DRCGIT``, ``DRCDATE``, ``DRCCONF``);
* with ``--night``: ``drcnet night classify ROOT --out night.parquet`` - identical Parquet columns and
  FITS data (provenance metadata, manifest and work folder ignored).

It prints the best wall time of each command per tree over ``--rounds`` rounds and the ratio new/old,
and the time of the prediction table's writer alone (``predictions_csv`` before, ``prediction_columns`` +
``csv_text`` now) on 20000 made-up objects. Exit status 1 when any output differs.

Usage::

    DRCNET_DATA=../shared/data python benchmarks/compare_inference_outputs.py --old ../old/src
        [--rounds 2] [--n 200] [--night] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from drcnet.paths import data_root

ROOT = Path(__file__).resolve().parents[1]
NEW = ROOT / "src"
PROVENANCE_CARDS = ("DRCVERS", "DRCGIT", "DRCDATE", "DRCCONF")

WRITER_TIMING = r"""
import sys, time
import numpy as np
rng = np.random.default_rng(0)
n = 20000
logits = rng.normal(size=(n, 4)).astype(np.float32)
pred = {"object_id": [f"obj{i:06d}" for i in range(n)], "label": rng.integers(-1, 4, n),
        "snr_r": rng.uniform(5, 80, n), "outputs": {"logits": logits}}
try:
    from drcnet.inference.table import csv_text, prediction_columns
    write = lambda p: csv_text(prediction_columns(p))
except ImportError:
    from drcnet.predict import predictions_csv as write
best = min((lambda t0: (write(pred), time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(3))
text = write(pred)
import hashlib
print(f"{best:.4f} {hashlib.sha256(text.encode()).hexdigest()}")
"""


def run(tree: Path, args: list[str], cwd: Path) -> float:
    """Run the ``drcnet`` CLI with ARGS, ``tree`` first on the path, in a new process; its wall time (s)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    code = "import sys; from drcnet.cli import app; app(prog_name='drcnet')"
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{tree}: drcnet {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return dt


def fits_equal(a: Path, b: Path) -> tuple[bool, str]:
    """Same table data and header cards, the provenance cards aside."""
    import numpy as np
    from astropy.io import fits

    with fits.open(a) as fa, fits.open(b) as fb:
        ha, hb = fa["CATALOGUE"].header, fb["CATALOGUE"].header
        ka = [(k, v) for k, v in ha.items() if k not in PROVENANCE_CARDS]
        kb = [(k, v) for k, v in hb.items() if k not in PROVENANCE_CARDS]
        if ka != kb:
            return False, f"header differs: {set(ka) ^ set(kb)}"
        da, db = fa["CATALOGUE"].data, fb["CATALOGUE"].data
        if da.tobytes() != db.tobytes():
            return False, "table bytes differ"
        if not np.array_equal(np.asarray(fa[0].data is None), np.asarray(fb[0].data is None)):
            return False, "primary HDU differs"
    return True, f"{len(da)} rows, {len(ka)} cards equal"


def parquet_equal(a: Path, b: Path) -> tuple[bool, str]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    ta, tb = pq.read_table(a).replace_schema_metadata(None), pq.read_table(b).replace_schema_metadata(None)
    if not ta.schema.equals(tb.schema):
        return False, "schemas differ"
    for name in ta.column_names:
        ca, cb = ta[name], tb[name]
        if pa.types.is_floating(ca.type):  # NaN == NaN here; nulls must sit at the same rows
            same = (
                ca.null_count == cb.null_count
                and np.array_equal(
                    ca.is_null().to_numpy(zero_copy_only=False), cb.is_null().to_numpy(zero_copy_only=False)
                )
                and np.array_equal(ca.to_numpy(zero_copy_only=False), cb.to_numpy(zero_copy_only=False), equal_nan=True)
            )
        else:
            same = ca.equals(cb)
        if not same:
            return False, f"column {name} differs"
    return True, f"{ta.num_rows} rows, {ta.num_columns} columns"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--old", type=Path, required=True, help="reference tree's src folder (e.g. a worktree of the old commit)"
    )
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n", type=int, default=200, help="objects of the simulated dataset file")
    ap.add_argument("--night", action="store_true", help="also compare `drcnet night classify`")
    ap.add_argument("--keep", type=Path, default=None, help="work here instead of a temporary folder")
    a = ap.parse_args()
    trees = {"old": a.old.resolve(), "new": NEW}
    lib = data_root() / "spectral_libraries" / "pyhammer"
    work = a.keep or Path(tempfile.mkdtemp(prefix="drcnet-compare-"))
    work.mkdir(parents=True, exist_ok=True)
    data, exposure = work / "small.h5", work / "night" / "exposure"
    if not data.exists():
        run(
            trees["old"],
            [
                "simulate",
                "--library",
                str(lib),
                "--n",
                str(a.n),
                "--snr-min",
                "5",
                "--snr-max",
                "80",
                "--all-test",
                "--seed",
                "3",
                "--workers",
                "2",
                "--out",
                str(data),
            ],
            work,
        )
    if not exposure.exists():
        run(
            trees["old"],
            ["frames", "simulate", "--out", str(exposure), "--seed", "11", "--workers", "2", "--library", str(lib)],
            work,
        )
    commands = {
        "predict --data (csv)": lambda t, o: ["predict", "--data", str(data), "--out", str(o / "preds.csv")],
        "predict --exposure (csv)": lambda t, o: ["predict", "--exposure", str(exposure), "--out", str(o / "cat.csv")],
        "frames classify (fits)": lambda t, o: [
            "frames",
            "classify",
            "--exposure",
            str(exposure),
            "--out",
            str(o / "cat.fits"),
            "--no-qa",
        ],
    }
    if a.night:
        commands["night classify"] = lambda t, o: [
            "night",
            "classify",
            str(exposure.parent),
            "--out",
            str(o / "night.parquet"),
            "--workers",
            "1",
            "--threads",
        ]
    times: dict[tuple[str, str], float] = {}
    last = {k: work / k / f"round{a.rounds - 1}" for k in trees}
    for r in range(a.rounds):
        for key in trees:  # a kept work folder: outputs of an earlier call go first
            o = work / key / f"round{r}"
            if o.exists():
                shutil.rmtree(o)
            o.mkdir(parents=True)
        for name, cmd in commands.items():
            for key in ("old", "new") if r % 2 == 0 else ("new", "old"):
                o = work / key / f"round{r}"
                dt = run(trees[key], cmd(key, o), work)
                times[(name, key)] = min(times.get((name, key), float("inf")), dt)
    run(trees["new"], ["predict", "--data", str(data), "--out", str(last["new"] / "preds.parquet")], work)
    outs = last

    ok = True
    print("output                          result")
    same = (outs["old"] / "preds.csv").read_bytes() == (outs["new"] / "preds.csv").read_bytes()
    ok &= same
    print(f"predict --data CSV              {'identical bytes' if same else 'DIFFER'}")
    sys.path.insert(0, str(NEW))
    from drcnet.inference.table import PREDICT_FORMATS, csv_text, read_catalogue, set_formats

    back = csv_text(set_formats(read_catalogue(outs["new"] / "preds.parquet"), PREDICT_FORMATS))
    same = back.encode() == (outs["old"] / "preds.csv").read_bytes()
    ok &= same
    print(f"predict --data Parquet          {'same values as the reference CSV' if same else 'DIFFER'}")
    same = (outs["old"] / "cat.csv").read_bytes() == (outs["new"] / "cat.csv").read_bytes()
    ok &= same
    print(f"predict --exposure CSV          {'identical bytes' if same else 'DIFFER'}")
    same, why = fits_equal(outs["old"] / "cat.fits", outs["new"] / "cat.fits")
    ok &= same
    print(f"frames classify FITS            {'identical apart from provenance cards' if same else 'DIFFER'} ({why})")
    if a.night:
        same, why = parquet_equal(outs["old"] / "night.parquet", outs["new"] / "night.parquet")
        ok &= same
        print(f"night classify Parquet          {'identical columns' if same else 'DIFFER'} ({why})")
        same, why = fits_equal(outs["old"] / "night.fits", outs["new"] / "night.fits")
        ok &= same
        verdict = "identical apart from provenance cards" if same else "DIFFER"
        print(f"night classify FITS             {verdict} ({why})")

    print(f"\nbest wall time of {a.rounds} round(s), whole process (s)")
    print(f"{'command':28s} {'old':>8s} {'new':>8s} {'new/old':>8s}")
    for name in commands:
        o, n = times[(name, "old")], times[(name, "new")]
        print(f"{name:28s} {o:8.2f} {n:8.2f} {n / o:8.3f}")
    w = {}
    for key, tree in trees.items():
        env = {**os.environ, "PYTHONPATH": str(tree)}
        res = subprocess.run([sys.executable, "-c", WRITER_TIMING], env=env, capture_output=True, text=True, check=True)
        sec, digest = res.stdout.split()
        w[key] = (float(sec), digest)
    same = w["old"][1] == w["new"][1]
    ok &= same
    print(
        f"{'prediction table writer':28s} {w['old'][0]:8.3f} {w['new'][0]:8.3f} {w['new'][0] / w['old'][0]:8.3f}"
        f"  (20000 objects; text {'identical' if same else 'DIFFERS'})"
    )
    print(f"\nwork folder: {work}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
