"""Pool ``systematics.py`` runs of several seeds: paired differences with intervals counted by star.

One run renders each held-out star once per S/N_r bin, so a paired difference of two cells (two models on
one condition, or one model on two conditions) carries the noise of 515 renders. Runs with other
``--seed`` values render the same stars (the payload's ``stars`` are the same list) with fresh noise,
neighbours and S/N targets; pooling them narrows the interval. The bootstrap resamples stars (all of a
star's renders together), so the interval stays counted by star.

usage::

    python benchmarks/compare_2d_1d/pool_seeds.py RUN1.json RUN2.json ... \\
        --pair no_neighbours:rcnet-robust:optimal,nominal:rcnet-robust:optimal \\
        --pair nominal:drcnet-hybrid:hybrid_optimal,nominal:rcnet-robust:optimal [--json out.json]

A ``--pair`` is ``CONDITION:MODEL:INPUT,CONDITION:MODEL:INPUT`` (first minus second), in each S/N_r bin.
Runs written before ``right_by_star`` was recorded are refused, naming the file.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from drcnet.provenance import provenance, write_json_atomic


def load_runs(paths: Sequence[str]) -> list[dict[str, Any]]:
    """The runs' payloads; every run must hold the same stars and per-star outcomes."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    for p, r in zip(paths, runs, strict=True):
        if not isinstance(r, dict) or "stars" not in r or "results" not in r:
            raise SystemExit(f"{p}: not a systematics.py result (no 'stars' and 'results')")
        if r["stars"] != runs[0]["stars"]:
            raise SystemExit(f"{p}: its stars differ from {paths[0]}'s (run both with the same --stars)")
        for cond in r["results"].values():
            if any("right_by_star" not in cell for cell in cond.values()):
                raise SystemExit(f"{p}: no per-star outcomes (right_by_star); rerun it with this systematics.py")
    return runs


def outcomes(runs: Sequence[dict[str, Any]], condition: str, column: str, b: str) -> np.ndarray:
    """``(n_runs, n_stars)`` right (1) or wrong (0) of ``column`` on ``condition`` in bin ``b``."""
    try:
        return np.array([r["results"][condition][b]["right_by_star"][column] for r in runs], dtype=float)
    except KeyError as err:
        raise SystemExit(f"{condition} / {column} / {b}: not in every run ({err})") from None


def pooled_diff(a: np.ndarray, b: np.ndarray, seed: int = 0, n_boot: int = 4000) -> dict[str, Any]:
    """Mean of ``a - b`` over runs and stars, with a 95 % bootstrap interval resampling stars."""
    d = (a - b).mean(axis=0)  # per star, averaged over its renders
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    return {
        "diff": float(d.mean()),
        "ci95": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))],
        "first": float(a.mean()),
        "second": float(b.mean()),
        "n_stars": int(d.size),
        "n_runs": int(a.shape[0]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="pool systematics.py runs of several seeds (intervals by star)")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--pair", action="append", required=True, help="COND:MODEL:INPUT,COND:MODEL:INPUT")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    runs = load_runs(args.runs)
    out: dict[str, Any] = {}
    for pair in args.pair:
        first, sep, second = pair.partition(",")
        if not sep or first.count(":") != 2 or second.count(":") != 2:
            raise SystemExit(f"--pair {pair!r}: give COND:MODEL:INPUT,COND:MODEL:INPUT")
        (c1, col1), (c2, col2) = (x.split(":", 1) for x in (first, second))
        out[pair] = {}
        if c1 not in runs[0]["results"]:
            raise SystemExit(f"--pair {pair!r}: condition {c1!r} is not in {args.runs[0]}")
        for b in runs[0]["results"][c1]:
            cell = pooled_diff(outcomes(runs, c1, col1, b), outcomes(runs, c2, col2, b))
            out[pair][b] = cell
            print(
                f"{pair}  {b:6s} {cell['first']:.3f} - {cell['second']:.3f} = {100 * cell['diff']:+.1f} points "
                f"[{100 * cell['ci95'][0]:+.1f}, {100 * cell['ci95'][1]:+.1f}]  ({cell['n_runs']} runs x "
                f"{cell['n_stars']} stars)"
            )
    if args.json:
        cfg = {"runs": [Path(p).name for p in args.runs], "pairs": args.pair}
        write_json_atomic(args.json, {"provenance": provenance(cfg, seed=0), "pairs": out})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
