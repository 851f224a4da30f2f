"""Can LAMOST's A/F boundary be learnt from LAMOST spectra? (issue 22 item 3, the rejection target)

The catalogue's rejection target asks that >= 0.95 of the A stars above S/N_r 20 be called ``other``. The
default model's misses on the held-out `other` files are LAMOST's late-A stars (A8/A9), which it calls F.
This benchmark measures, with the step-1 labellers of ``label_ceiling.py`` (template match on the
calibrated and on the continuum-normalised spectrum, the 1D CNN on both), how many LAMOST A stars of each
subclass a learner trained on real LAMOST spectra calls A when the star was not in its training folds, and
how many F0 stars it calls A in return: the ceiling the target is held against at the A/F boundary.

Cross-validated by STAR (``StratifiedGroupKFold``, group = LAMOST designation, stratified by class) over
every real F, G, K and A spectrum of ``<data>/lamost_real`` at its own S/N, no forward model; the M stars
are in every training fold. It also prints LASP's median Teff, log g and [Fe/H] of the subclasses around
the boundary (A5-F2) and every A8/A9 spectrum with its LASP values, since the survey's own parameter
pipeline is the other witness of what LAMOST's A9 means.

usage: DRCNET_DATA=../shared/data nice -n 10 python benchmarks/real_stars/fa_boundary.py \
           --out fa_boundary.json [--epochs 40] [--seed 0] [--no-cnn]

Runs in ~6 min on one core (torch one thread; two CNNs x 5 folds).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold

sys.path.insert(0, str(Path(__file__).resolve().parent))
from label_ceiling import common_arguments, load_real, make, snr_r_of  # noqa: E402

from drcnet.library import spectral_labels as sl  # noqa: E402
from drcnet.library.labels import read_lamost_index  # noqa: E402
from drcnet.simulate.sources import star_key  # noqa: E402

#: Subclass groups of the A stars whose recall is reported (LAMOST subclass, integer part).
A_GROUPS = {"A0-A5": tuple(range(0, 6)), "A6-A7": (6, 7), "A8-A9": (8, 9)}
#: Subclasses whose LASP medians are printed.
BOUNDARY = ("A5", "A6", "A7", "A8", "A9", "F0", "F2", "F3")
SNR_MIN = 20.0
"""The rejection target's S/N_r cut."""


def subclass_number(s: str) -> int:
    """Integer part of a LAMOST subclass (``"A9V"`` -> 9; -1 when it has none)."""
    digits = ""
    for ch in s[1:]:
        if ch.isdigit():
            digits += ch
        else:
            break
    return int(digits) if digits else -1


def boundary_scores(cls: np.ndarray, sub: np.ndarray, pred: np.ndarray, snr: np.ndarray) -> dict:
    """Recall of A per subclass group (all and above S/N_r 20) and what the F/G/K stars lose to A."""
    r: dict = {}
    is_a = cls == "A"
    hi = snr > SNR_MIN
    called_a = pred == "A"
    num = np.array([subclass_number(s) for s in sub])
    for name, group in A_GROUPS.items():
        m = is_a & np.isin(num, group)
        r[f"A {name} called A"] = [int(called_a[m].sum()), int(m.sum())]
        r[f"A {name} called A, S/N_r > 20"] = [int(called_a[m & hi].sum()), int((m & hi).sum())]
    r["A called A, S/N_r > 20"] = [int(called_a[is_a & hi].sum()), int((is_a & hi).sum())]
    r["A called A"] = [int(called_a[is_a].sum()), int(is_a.sum())]
    f0 = (cls == "F") & (num == 0)
    r["F0 called A"] = [int(called_a[f0].sum()), int(f0.sum())]
    fgk = np.isin(cls, ("F", "G", "K"))
    r["F/G/K called A, S/N_r > 20"] = [int(called_a[fgk & hi].sum()), int((fgk & hi).sum())]
    r["F/G/K class right"] = float(np.mean(pred[fgk] == cls[fgk]))
    r["A8/A9 called"] = {c: int((pred[is_a & (num >= 8)] == c).sum()) for c in "AFGKM"}
    return r


def operating_curve(cls: np.ndarray, sub: np.ndarray, p_a: np.ndarray, snr: np.ndarray, keys: np.ndarray) -> list[dict]:
    """A recall above S/N_r 20 against the F0 stars called A, calling A wherever p(A) >= tau.

    The learner's other choices are untouched; ``tau`` runs over a grid, so the best recall at any F0
    cost (by spectrum and by star: a star counts as called A when most of its spectra are) can be read off.
    """
    num = np.array([subclass_number(s) for s in sub])
    a_hi = (cls == "A") & (snr > SNR_MIN)
    f0 = (cls == "F") & (num == 0)
    fgk_hi = np.isin(cls, ("F", "G", "K")) & (snr > SNR_MIN)
    rows = []
    for tau in (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        called = p_a >= tau
        f0_stars = sorted(set(keys[f0]))
        f0_star_called = sum(called[f0 & (keys == k)].mean() > 0.5 for k in f0_stars)
        rows.append(
            {
                "tau": tau,
                "A called A, S/N_r > 20": float(called[a_hi].mean()),
                "A8-A9 called A": [
                    int(called[(cls == "A") & (num >= 8)].sum()),
                    int(((cls == "A") & (num >= 8)).sum()),
                ],
                "F0 called A": float(called[f0].mean()),
                "F0 stars called A": float(f0_star_called / max(len(f0_stars), 1)),
                "F/G/K called A, S/N_r > 20": float(called[fgk_hi].mean()),
            }
        )
    return rows


def teff_table(cls: np.ndarray, sub: np.ndarray, pred: np.ndarray, teff: np.ndarray) -> list[dict]:
    """LAMOST A and F0 stars per LASP Teff bin, and how many of each the learner calls A."""
    num = np.array([subclass_number(s) for s in sub])
    rows = []
    for lo, hi in ((0, 6500), (6500, 7000), (7000, 7500), (7500, 8000), (8000, 1e6)):
        m = (teff >= lo) & (teff < hi)
        a, f0 = m & (cls == "A"), m & (cls == "F") & (num == 0)
        rows.append(
            {
                "teff": f"{lo:.0f}-{hi:.0f}" if hi < 1e6 else f">= {lo:.0f}",
                "A": int(a.sum()),
                "A called A": int((pred[a] == "A").sum()),
                "F0": int(f0.sum()),
                "F0 called A": int((pred[f0] == "A").sum()),
            }
        )
    return rows


def main() -> None:
    a = common_arguments(__doc__.splitlines()[0], "fa_boundary.json").parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    t_start = time.time()
    folder = Path(a.data) / "lamost_real"
    lam, x, _ = load_real(folder)
    cls = np.array([t.cls for t in lam])
    sub = np.array(sl.training_labels(lam)[1])
    keys = np.array([star_key(t) for t in lam])
    snr = snr_r_of(lam, folder)
    scored = np.flatnonzero(cls != "M")
    always = np.flatnonzero(cls == "M")
    print(f"{len(scored)} F/G/K/A spectra of {len(set(keys[scored]))} stars; {len(always)} M in every fold")
    methods = ["template_match/flux", "template_match/norm"] + ([] if a.no_cnn else ["cnn/norm", "cnn/flux"])
    folds = list(
        StratifiedGroupKFold(a.folds, shuffle=True, random_state=a.seed).split(
            np.zeros(len(scored)), cls[scored], keys[scored]
        )
    )
    idx = read_lamost_index(folder)
    teff = np.array([idx.get(Path(lam[i].path).name, {}).get("teff", math.nan) for i in scored])
    results: dict = {}
    for method in methods:
        rep = method.split("/")[1]
        pred = np.empty(len(scored), dtype=object)
        p_a = np.zeros(len(scored))
        for tr, te in folds:
            tr_idx = np.concatenate([scored[tr], always])
            lab = make(method, a).fit([lam[i] for i in tr_idx], x[rep][tr_idx])
            out = lab.predict([lam[i] for i in scored[te]], x[rep][scored[te]])
            pred[te] = [o.cls for o in out]
            p_a[te] = [o.class_scores.get("A", 0.0) for o in out]
        pred = pred.astype(str)
        results[method] = boundary_scores(cls[scored], sub[scored], pred, snr[scored])
        results[method]["operating curve"] = operating_curve(cls[scored], sub[scored], p_a, snr[scored], keys[scored])
        results[method]["by LASP Teff"] = teff_table(cls[scored], sub[scored], pred, teff)
        print(f"{method}: {json.dumps(results[method])} ({time.time() - t_start:.0f} s)", flush=True)
    lasp: dict = {}
    for s in BOUNDARY:
        vals = [idx.get(Path(t.path).name, {}) for t, ss in zip(lam, sub) if ss == s]
        lasp[s] = {
            k: float(np.nanmedian([v.get(k, math.nan) for v in vals] or [math.nan])) for k in ("teff", "logg", "feh")
        }
        lasp[s]["n"] = len(vals)
        lasp[s]["n_with_lasp"] = int(sum(math.isfinite(v.get("teff", math.nan)) for v in vals))
    late_a = [
        {
            "file": Path(t.path).name,
            "subclass": t.subclass,
            "snr_r": float(s),
            **{k: idx.get(Path(t.path).name, {}).get(k, math.nan) for k in ("teff", "logg", "feh")},
        }
        for t, c, n, s in zip(lam, cls, sub, snr)
        if c == "A" and subclass_number(n) >= 8
    ]
    report = {
        "n_scored": int(len(scored)),
        "n_stars": int(len(set(keys[scored]))),
        "folds": a.folds,
        "seed": a.seed,
        "epochs": a.epochs,
        "results": results,
        "lasp_medians": lasp,
        "late_a": late_a,
        "wall_s": time.time() - t_start,
    }
    print("\nLASP medians (Teff K, log g, [Fe/H]):")
    for s, v in lasp.items():
        print(f"  {s}: {v['teff']:.0f} {v['logg']:.2f} {v['feh']:+.2f} ({v['n_with_lasp']} of {v['n']})")
    print("LAMOST A8/A9 spectra:")
    for row in late_a:
        print(f"  {row}")
    tmp = Path(a.out).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    os.replace(tmp, a.out)
    print(f"\nwritten {a.out} ({report['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
