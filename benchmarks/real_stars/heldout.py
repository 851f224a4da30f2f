"""Held-out real LAMOST stars: accuracy per class and S/N_r bin, LAMOST F9, rejection, intervals by star.

The measurement behind issues 21 and 22: one or more models (run folders or shipped names) on one or
more files of real LAMOST spectra rendered by the nominal forward model (``drcnet simulate --library
STARS/val ...``), pooled, scored against LAMOST's own labels.

usage::

    python benchmarks/real_stars/heldout.py MODEL [MODEL ...] [A+B] --data eval_val.h5 --data eval_test.h5 \
        [--other eval_other.h5] [--json out.json] [--other-bias 1 --other-bias 2]

For every model it prints, per S/N_r bin (> 30, 20-30, 10-20, < 10): accuracy with its 95 % interval
counted by star (a cluster bootstrap over the source spectra, :func:`drcnet.metrics.source_clustered_accuracy`),
the accuracy of each true class, LAMOST F9 right, and the share of F/G/K renders (and stars) called
``other``; with ``--other`` (a file rendered with ``--other``), the share of non-F/G/K objects called
``other`` above S/N_r 20 (and of its A stars alone). ``--other-bias B`` adds the rejection's operating curve:
every number again with ``B`` added to the ``other`` log-probability (a larger prior on ``other``). A model given as ``A+B`` (``drcnet-survey+runs/rcnet``) is the mean of
the two models' class probabilities (a late-fusion 2D + 1D hybrid; a three-class model's ``other``
probability counts as 0); ``RUN@last`` scores a run folder's last epoch instead of its best. Predictions come from :func:`drcnet.inference.engine.predict_dataset`, the code path of
``drcnet predict``. A four-class model's ``other`` answers count as wrong on F/G/K stars.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections import defaultdict
from typing import Any

import h5py
import numpy as np

from drcnet.conventions import CLASSES
from drcnet.data.schema import decode
from drcnet.inference.engine import predict_dataset
from drcnet.inference.predictor import load_model
from drcnet.metrics import source_clustered_accuracy

BINS = (">30", "20-30", "10-20", "<10")


def load_file(path: str, model: Any) -> dict[str, np.ndarray]:
    """Predictions of ``model`` on every object of ``path`` with the truth columns needed here."""
    p = predict_dataset(model, path)
    with h5py.File(path, "r") as h:
        rows = p["rows"]
        tid = np.array(decode(h["template_id"][:]), dtype=object)[rows]
        sub = np.array(decode(h["subclass"][:]), dtype=object)[rows]
    prob = np.asarray(p["prob"], dtype=np.float64)
    if prob.shape[1] == len(CLASSES):  # a three-class model: never 'other'
        prob = np.concatenate([prob, np.zeros((prob.shape[0], 1))], axis=1)
    return {
        "label": p["label"],
        "pred": p["pred"],
        "prob": prob,
        "snr_bin": p["snr_bin"],
        "tid": tid,
        "subclass": sub,
        "rows": rows,
    }


@functools.lru_cache(maxsize=8)
def _model(name: str) -> Any:
    """Each model loaded once however many files it scores; ``RUN@last`` takes a run's last epoch."""
    run, at, which = name.rpartition("@")
    return load_model(run, which=which) if at and which in ("best", "last") else load_model(name)


def load_mean(path: str, spec: str) -> dict[str, np.ndarray]:
    """``A+B+...``: the models' class probabilities averaged (a late-fusion hybrid), argmax as the answer."""
    parts = [load_file(path, _model(name)) for name in spec.split("+")]
    for q in parts[1:]:
        if not np.array_equal(q["rows"], parts[0]["rows"]):
            raise SystemExit(f"{path}: the models of {spec} predicted different rows")
    out = dict(parts[0])
    out["prob"] = np.mean([q["prob"] for q in parts], axis=0)
    bad = np.any([q["pred"] < 0 for q in parts], axis=0)
    out["pred"] = np.where(bad, -1, out["prob"].argmax(1))
    return out


def load_any(path: str, spec: str) -> dict[str, np.ndarray]:
    """Predictions of one model, or of the probability mean of ``A+B``."""
    return load_mean(path, spec) if "+" in spec else load_file(path, _model(spec))


def pooled(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The files' columns concatenated."""
    return {k: np.concatenate([q[k] for q in parts]) for k in parts[0]}


def star_share(mask: np.ndarray, hit: np.ndarray, tid: np.ndarray) -> tuple[int, int]:
    """(stars with a majority of their renders hit, stars) among ``mask``."""
    by: dict[str, list[bool]] = defaultdict(list)
    for t, h in zip(tid[mask], hit[mask], strict=True):
        by[t].append(bool(h))
    return int(sum(np.mean(v) > 0.5 for v in by.values())), len(by)


def score(d: dict[str, np.ndarray]) -> dict[str, Any]:
    """Every number this benchmark reports for one model on the pooled F/G/K files."""
    fgk = (d["label"] >= 0) & (d["label"] < len(CLASSES))
    y, p, b, tid, sub = d["label"][fgk], d["pred"][fgk], d["snr_bin"][fgk], d["tid"][fgk], d["subclass"][fgk]
    out: dict[str, Any] = {"clustered": source_clustered_accuracy(y, p, b, tid)}
    per_class: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(CLASSES):
        per_class[name] = {BINS[k]: _acc(p[(y == c) & (b == k)] == c) for k in range(4)}
    out["per_class"] = per_class
    f9 = sub == "F9"
    out["F9"] = {BINS[k]: _acc(p[f9 & (b == k)] == 0) for k in range(4)}
    hi = b <= 1  # S/N_r > 20
    out["fgk_called_other_above20"] = _acc(p[hi] == 3)
    k_, n_ = star_share(hi, p == 3, tid)
    out["fgk_stars_called_other_above20"] = [k_, n_]
    return out


def score_other(d: dict[str, np.ndarray]) -> dict[str, Any]:
    """Rejection on a file rendered with ``--other``: non-F/G/K called ``other``, F/G/K called ``other``, above S/N_r 20."""
    hi = d["snr_bin"] <= 1
    oth = hi & (d["label"] == 3)
    fgk = hi & (d["label"] >= 0) & (d["label"] < 3)
    k_, n_ = star_share(oth, d["pred"] == 3, d["tid"])
    a_star = oth & np.array([str(s).startswith("A") for s in d["subclass"]])
    ka, na = star_share(a_star, d["pred"] == 3, d["tid"])
    return {
        "other_called_other_above20": _acc(d["pred"][oth] == 3),
        "other_stars": [k_, n_],
        "A_called_other_above20": _acc(d["pred"][a_star] == 3),
        "A_stars": [ka, na],
        "fgk_called_other_above20": _acc(d["pred"][fgk] == 3),
    }


def with_other_bias(d: dict[str, np.ndarray], bias: float) -> dict[str, np.ndarray]:
    """``d`` with ``bias`` added to the ``other`` log-probability (a prior shift) and the answers re-taken.

    The operating curve of the rejection: how many A stars a larger ``other`` prior catches and how many
    F/G/K stars it costs. Objects without an answer (``pred`` < 0) stay without one.
    """
    prob = d["prob"].copy()
    prob[:, 3] *= np.exp(bias)
    prob /= prob.sum(axis=1, keepdims=True)
    out = dict(d)
    out["prob"] = prob
    out["pred"] = np.where(d["pred"] < 0, -1, prob.argmax(1))
    return out


def _acc(hit: np.ndarray) -> list[float | int | None]:
    return [round(float(hit.mean()), 3) if hit.size else None, int(hit.size)]


def other_bias_curve(
    d: dict[str, np.ndarray], other: dict[str, np.ndarray] | None, biases: list[float]
) -> dict[str, Any]:
    """Accuracy, F/G/K and F0 called ``other``, and the rejection at each ``other`` log-prior shift; printed."""
    if d["prob"].shape[1] != len(CLASSES) + 1 or not d["prob"][:, 3].any():
        raise SystemExit("--other-bias needs a four-class model (F/G/K/other)")
    curve: dict[str, Any] = {}
    print(
        "\n| other bias | "
        + " | ".join(BINS)
        + " | F/G/K called other > 20 (renders; stars) | F0 called other > 20 | A called other > 20 (renders; stars) | all other > 20 |"
    )
    print("|---" * 9 + "|")
    for bias in [0.0, *biases]:
        db = with_other_bias(d, bias)
        r = score(db)
        f0 = (db["subclass"] == "F0") & (db["snr_bin"] <= 1)
        r["F0_called_other_above20"] = _acc(db["pred"][f0] == 3)
        if other is not None:
            r["rejection"] = score_other(with_other_bias(other, bias))
        curve[str(bias)] = r
        cells = [r["clustered"]["bins"].get(k, {}).get("accuracy") for k in BINS]
        rej = r.get("rejection", {})
        print(
            f"| {bias:g} | "
            + " | ".join("-" if c is None else f"{c:.3f}" for c in cells)
            + f" | {r['fgk_called_other_above20'][0]}; {r['fgk_stars_called_other_above20'][0]} of "
            f"{r['fgk_stars_called_other_above20'][1]} | {r['F0_called_other_above20'][0]} ({r['F0_called_other_above20'][1]})"
            + (
                f" | {rej['A_called_other_above20'][0]}; {rej['A_stars'][0]} of {rej['A_stars'][1]} | {rej['other_called_other_above20'][0]} |"
                if rej
                else " | - | - |"
            )
        )
    return curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "models", nargs="+", help="run folders or shipped model names; A+B scores the mean of their probabilities"
    )
    ap.add_argument("--data", action="append", required=True, help="F/G/K file(s) of held-out real stars (pooled)")
    ap.add_argument("--other", default=None, help="file rendered with --other (rejection)")
    ap.add_argument("--json", default=None, help="write every number here")
    ap.add_argument(
        "--other-bias",
        type=float,
        action="append",
        default=[],
        help="also score with this added to the 'other' log-probability (repeatable; the rejection's operating curve)",
    )
    a = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    report = {}
    for m in a.models:
        d = pooled([load_any(f, m) for f in a.data])
        r = score(d)
        if a.other:
            r["rejection"] = score_other(load_any(a.other, m))
        report[m] = r
        cl = r["clustered"]
        cells = [cl["bins"].get(k, {}) for k in BINS]
        print(f"\n## {m}  ({cl['all']['n']} renders of {cl['all']['n_sources']} stars)")
        print("| | " + " | ".join(BINS) + " |\n|---|---|---|---|---|")
        print(
            "| all (95 % by star) | "
            + " | ".join(
                f"{c['accuracy']:.3f} ({c['accuracy_ci95_by_source'][0]:.3f}-{c['accuracy_ci95_by_source'][1]:.3f})"
                if c.get("accuracy") is not None and c.get("accuracy_ci95_by_source")
                else "-"
                for c in cells
            )
            + " |"
        )
        for name, row in list(r["per_class"].items()) + [("LAMOST F9", r["F9"])]:
            print(f"| {name} | " + " | ".join(f"{row[k][0]} ({row[k][1]})" for k in BINS) + " |")
        print(
            f"F/G/K called other above S/N_r 20: {r['fgk_called_other_above20']} renders, "
            f"{r['fgk_stars_called_other_above20']} stars (majority)"
        )
        if "rejection" in r:
            print(f"rejection file: {r['rejection']}")
        if a.other_bias:
            r["other_bias"] = other_bias_curve(d, load_any(a.other, m) if a.other else None, a.other_bias)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
