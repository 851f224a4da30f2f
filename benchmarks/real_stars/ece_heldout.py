"""Calibration on held-out real stars: ECE per S/N_r bin, uncalibrated and calibrated, beside its floor.

Issue 22 asks for the expected calibration error of the default model on the pooled held-out real stars,
reported beside its small-set floor (:func:`drcnet.calibration.ece_floor`: the ECE a perfectly
calibrated model with the same confidences shows on a set of that size). This script scores one model
(a run folder or a shipped name, not an ``.onnx`` file; its ``calibration.json`` is applied for the
calibrated column) on one or more F/G/K files of held-out **real LAMOST** stars (``drcnet simulate --library
stars/val ...``: their ``label`` is LAMOST's own class; for a library-star file, whose ``label`` holds MK
types, use ``drcnet evaluate``, which scores on the model's convention), pooled,
with the same top-label ECE (15 bins) that ``drcnet evaluate`` reports. A four-class model's probabilities
are used as they are (an F/G/K star called ``other`` is a wrong top label).

usage::

    python benchmarks/real_stars/ece_heldout.py drcnet-hybrid --data eval_val.h5 --data eval_test.h5 \
        [--json out.json] [--crossfit 20]

``--crossfit N`` also asks whether a temperature fitted on these stars themselves would help: per S/N_r
bin, N times, the stars are split into random halves, a temperature is fitted (likelihood,
:func:`drcnet.calibration.fit_temperature`) on one half's renders and the other half's ECE is compared
with and without it (means over the N splits).
"""

from __future__ import annotations

import argparse
from typing import Any

import h5py
import numpy as np

from drcnet.calibration import ece_floor as floor_of
from drcnet.calibration import expected_calibration_error, fit_temperature, load_calibration, softmax
from drcnet.conventions import SNR_BIN_NAMES, snr_bin
from drcnet.inference.engine import predict_dataset
from drcnet.inference.predictor import load_model
from drcnet.models.run_folder import resolve_run
from drcnet.provenance import provenance, write_json_atomic


def ece_cells(logits: np.ndarray, labels: np.ndarray, snr: np.ndarray, cal: Any) -> dict[str, dict[str, float]]:
    """ECE uncalibrated / calibrated and their floors, per S/N_r bin and for all objects."""
    raw = softmax(logits)
    fitted = cal.probabilities(logits, snr) if cal is not None else raw
    bins = snr_bin(snr)
    out: dict[str, dict[str, float]] = {}
    for name, sel in [("all", np.ones(len(labels), bool)), *((b, bins == k) for k, b in enumerate(SNR_BIN_NAMES))]:
        if not sel.any():
            continue
        out[name] = {
            "n": int(sel.sum()),
            "ece_uncalibrated": expected_calibration_error(raw[sel], labels[sel]),
            "ece_calibrated": expected_calibration_error(fitted[sel], labels[sel]),
            "floor_uncalibrated": floor_of(raw[sel]),
            "floor_calibrated": floor_of(fitted[sel]),
        }
    return out


def crossfit(
    logits: np.ndarray, labels: np.ndarray, snr: np.ndarray, star: np.ndarray, n_splits: int, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Per S/N_r bin: mean fitted temperature and held-out-half ECE without / with it over ``n_splits``
    random halves of the stars (a star's renders stay together)."""
    rng = np.random.default_rng(seed)
    bins = snr_bin(snr)
    stars = np.unique(star)
    out: dict[str, dict[str, float]] = {}
    for k, name in enumerate(SNR_BIN_NAMES):
        t_l, raw_l, fit_l = [], [], []
        for _ in range(n_splits):
            half = np.isin(star, rng.choice(stars, stars.size // 2, replace=False))
            a, b = (bins == k) & half, (bins == k) & ~half
            if a.sum() < 10 or b.sum() < 10:
                continue
            t = fit_temperature(logits[a], labels[a])
            t_l.append(t)
            raw_l.append(expected_calibration_error(softmax(logits[b]), labels[b]))
            fit_l.append(expected_calibration_error(softmax(logits[b], t), labels[b]))
        if t_l:
            out[name] = {
                "temperature": float(np.mean(t_l)),
                "ece_other_half": float(np.mean(raw_l)),
                "ece_other_half_fitted": float(np.mean(fit_l)),
                "n_splits": len(t_l),
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="run folder or shipped model name")
    ap.add_argument("--data", action="append", required=True, help="held-out F/G/K file(s), pooled")
    ap.add_argument("--json", default=None, help="write every number here")
    ap.add_argument("--crossfit", type=int, default=0, help="random star halves for a cross-fitted temperature")
    args = ap.parse_args()
    model = load_model(args.model)
    cal = load_calibration(resolve_run(args.model))
    parts = []
    for path in args.data:
        pred = predict_dataset(model, path)
        logits = pred["outputs"]["logits"]
        labels, snr = np.asarray(pred["label"], dtype=int), np.asarray(pred["snr_r"], dtype=float)
        keep = (labels >= 0) & pred["valid"]
        with h5py.File(path, "r") as h:
            star = np.array([f"{path}:{t}" for t in h["template_id"][:].astype(str)])
        parts.append((logits[keep], labels[keep], snr[keep], star[keep]))
    logits, labels, snr, star = (np.concatenate(p) for p in zip(*parts, strict=True))
    cells = ece_cells(logits, labels, snr, cal)
    print(f"{args.model}: {len(labels)} renders; temperatures {cal.temperatures if cal else None}")
    print("| S/N_r | n | ECE uncalibrated (floor) | ECE calibrated (floor) |\n|---|---|---|---|")
    for name, c in cells.items():
        print(
            f"| {name} | {c['n']} | {c['ece_uncalibrated']:.3f} ({c['floor_uncalibrated']:.3f}) | "
            f"{c['ece_calibrated']:.3f} ({c['floor_calibrated']:.3f}) |"
        )
    cross = crossfit(logits, labels, snr, star, args.crossfit) if args.crossfit > 0 else {}
    if cross:
        print("| S/N_r | cross-fitted T | ECE of the other half, T = 1 | with the fitted T |\n|---|---|---|---|")
        for name, c in cross.items():
            print(f"| {name} | {c['temperature']:.2f} | {c['ece_other_half']:.3f} | {c['ece_other_half_fitted']:.3f} |")
    if args.json:
        files = [p.rsplit("/", 1)[-1] for p in args.data]
        cfg = {"model": args.model.rsplit("/", 1)[-1], "data": files, "crossfit": args.crossfit}
        write_json_atomic(args.json, {"provenance": provenance(cfg, seed=0), "bins": cells, "crossfit": cross})


if __name__ == "__main__":
    main()
