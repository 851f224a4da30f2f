"""How much of LAMOST's F/G/K label does the LAMOST spectrum itself determine? (issue 22, step 1)

Cross-validated by STAR (5 folds, scikit-learn ``StratifiedGroupKFold``, group = LAMOST designation via
``drcnet.simulate.sources.star_key``, so repeat visits stay in one fold) over every real F/G/K spectrum of
``<data>/lamost_real``, at its own S/N, with no forward model. Labellers from
:mod:`drcnet.library.spectral_labels`, trained on the training folds' F/G/K stars plus every A and M
star of ``lamost_real`` (boundary classes; never scored):

* ``template_match/flux``: minimum chi^2 against per-subclass median spectra, calibrated flux shape;
* ``template_match/norm``: the same on the continuum-normalised spectrum;
* ``cnn/norm`` (and ``cnn/flux`` unless ``--no-cnn-flux``): a compact 1D CNN.

Reports class accuracy overall, per class and per S/N_r bin (``index.csv``'s r-band S/N, else the
header's), subclass exact and within-one agreement, LAMOST F9 / G0 / K0 right, and the agreement of
repeat visits of one star; then which wavelengths carry the F9-versus-G decision (median continuum-
normalised spectra of LAMOST F9 and G0/G2/G3 stars, line-depth table, and the CNN's input x gradient
saliency of log p(F) - log p(G) on held-out F9 stars); and, with ``--library``, the best labeller fitted
on all real stars applied to PyHammer/MILES/STELIB against the parameter vote
(``drcnet.library.labels.to_lamost_convention``).

usage: DRCNET_DATA=../shared/data nice -n 10 python benchmarks/real_stars/label_ceiling.py \
           --out label_ceiling.json [--library] [--epochs 40] [--seed 0]

Runs in ~8 min on one (shared) core with --library (torch uses one thread; 40 CNN epochs, ~38 s per fit).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
import warnings
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold

from drcnet.library import load_templates
from drcnet.library import spectral_labels as sl
from drcnet.library.labels import to_lamost_convention
from drcnet.simulate.sources import star_key

SNR_BINS = ((">30", 30.0, math.inf), ("20-30", 20.0, 30.0), ("10-20", 10.0, 20.0), ("<10", -math.inf, 10.0))
WATCH = ("F0", "F9", "G0", "G5", "G8", "K0")
#: Features whose depth is compared between LAMOST F9 and G stars (vacuum A windows; name, lo, hi).
FEATURES = (
    ("H eta (3836)", 3830.0, 3843.0),
    ("CN 3883 band head + H zeta", 3862.0, 3900.0),
    ("Ca II K", 3928.0, 3942.0),
    ("Ca II H + Heps", 3964.0, 3976.0),
    ("Hdelta", 4096.0, 4110.0),
    ("Fe I 4046/4064/4072", 4043.0, 4076.0),
    ("Ca I 4227", 4223.0, 4232.0),
    ("G band (CH)", 4298.0, 4316.0),
    ("Hgamma", 4336.0, 4348.0),
    ("Fe I 4384", 4380.0, 4390.0),
    ("Fe I 4530-4590 blend", 4525.0, 4595.0),
    ("Hbeta", 4856.0, 4869.0),
    ("Fe I 4920/4958", 4915.0, 4962.0),
    ("Mg b", 5164.0, 5190.0),
    ("Fe I 5270", 5265.0, 5276.0),
    ("Fe I 5328/5335", 5324.0, 5340.0),
    ("Fe I 5406", 5400.0, 5412.0),
    ("Na D", 5888.0, 5900.0),
    ("Halpha", 6557.0, 6572.0),
    ("Ca II 8500", 8494.0, 8507.0),
    ("Ca II 8544", 8538.0, 8551.0),
    ("Ca II 8664", 8657.0, 8671.0),
)


def snr_r_of(templates, folder: Path) -> np.ndarray:
    """r-band S/N per template: ``index.csv`` column ``snr`` (u/g/r/i/z), else header ``meta['snr_r']``; NaN unknown."""
    idx = {}
    with open(folder / "index.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            parts = (row.get("snr") or "").split("/")
            try:
                idx[row["file"]] = float(parts[2]) if len(parts) == 5 else math.nan
            except ValueError:
                idx[row["file"]] = math.nan
    out = []
    for t in templates:
        v = idx.get(Path(t.path).name, math.nan)
        if not math.isfinite(v):
            try:
                v = float(t.meta.get("snr_r", math.nan))
            except (TypeError, ValueError):
                v = math.nan
        out.append(v if v < 900 else math.nan)  # 999: placeholder
    return np.array(out)


def make(method: str, args):
    kind, rep = method.split("/")
    if kind == "template_match":
        return sl.TemplateMatchLabeller(rep)
    return sl.CnnLabeller(rep, epochs=args.epochs, seed=args.seed)


def saliency(model: sl.CnnLabeller, x: np.ndarray) -> np.ndarray:
    """Mean over spectra of input x d[log p(F) - log p(G)]/d input, on the CNN's binned grid."""
    torch.set_num_threads(1)
    xin = torch.from_numpy(model._input(x)[:, None, :].astype(np.float32)).requires_grad_(True)
    logp = torch.log_softmax(model.model_(xin), dim=1)  # type: ignore[operator]
    p = logp.exp()
    f_idx = [i for i, s in enumerate(model.subclasses) if s[0] == "F"]
    g_idx = [i for i, s in enumerate(model.subclasses) if s[0] == "G"]
    score = torch.log(p[:, f_idx].sum(1)) - torch.log(p[:, g_idx].sum(1))
    score.sum().backward()
    return (xin.grad * xin).detach().numpy()[:, 0, :].mean(axis=0)  # type: ignore[union-attr]


def feature_of(wave: float) -> str:
    for name, lo, hi in FEATURES:
        if lo - 5 <= wave <= hi + 5:
            return name
    return ""


def top_regions(wave: np.ndarray, signal: np.ndarray, n: int = 10, width_a: float = 15.0) -> list[dict]:
    """The ``n`` strongest |signal| peaks at least ``width_a`` apart, with the nearest named feature."""
    order = np.argsort(-np.abs(signal))
    picked: list[int] = []
    for i in order:
        if all(abs(wave[i] - wave[j]) > width_a for j in picked):
            picked.append(int(i))
        if len(picked) == n:
            break
    return [
        {"wave_a": round(float(wave[i]), 1), "value": float(signal[i]), "feature": feature_of(float(wave[i]))}
        for i in picked
    ]


def depth(spec: np.ndarray, lo: float, hi: float) -> float:
    m = (lo <= sl.GRID_WAVE) & (hi >= sl.GRID_WAVE)
    return float(np.mean(1.0 - spec[m]))


def scores(y, ysub, pred, psub, snr, keys, margin) -> dict:
    """The numbers of one method (arrays over the scored F/G/K spectra)."""
    right = pred == y
    r: dict = {"n": int(len(y)), "all": float(right.mean())}
    for c in "FGK":
        r[c] = float(right[y == c].mean())
    for name, lo, hi in SNR_BINS:
        m = (snr > lo) & (snr <= hi) if math.isfinite(hi) else snr > lo
        r[f"snr {name}"] = float(right[m].mean()) if m.any() else math.nan
        r[f"n snr {name}"] = int(m.sum())
    i_true = np.array([sl.subclass_index(s) for s in ysub])
    i_pred = np.array([sl.subclass_index(s) for s in psub])
    r["subclass exact"] = float(np.mean(ysub == psub))
    r["subclass within one"] = float(np.mean(np.abs(i_true - i_pred) <= 1))
    for s in WATCH:
        m = ysub == s
        r[f"{s} right"] = float(right[m].mean()) if m.any() else math.nan
        r[f"n {s}"] = int(m.sum())
    # how right the confident ones are: share kept and accuracy at margin >= threshold
    thresholds = (0.1, 0.2, 0.3, 0.5) if np.nanmax(margin) <= 1.0 else (0.01, 0.02, 0.05, 0.1)
    r["by margin"] = {
        str(th): {
            "kept": float(np.mean(margin >= th)),
            "accuracy": float(right[margin >= th].mean()) if (margin >= th).any() else math.nan,
            "F9 kept": float(np.mean(margin[ysub == "F9"] >= th)),
            "F9 right of kept": float(right[(ysub == "F9") & (margin >= th)].mean())
            if ((ysub == "F9") & (margin >= th)).any()
            else math.nan,
        }
        for th in thresholds
    }
    # repeat visits: pairs of spectra of one star
    by_star = defaultdict(list)
    for i, k in enumerate(keys):
        by_star[k].append(i)
    pairs = [p for v in by_star.values() if len(v) > 1 for p in combinations(v, 2)]
    r["pairs"] = len(pairs)
    r["pairs same class (LAMOST)"] = float(np.mean([y[a] == y[b] for a, b in pairs])) if pairs else math.nan
    r["pairs same class (predicted)"] = float(np.mean([pred[a] == pred[b] for a, b in pairs])) if pairs else math.nan
    return r


def library_check(args, best: str, lam_all, x_all_by_rep) -> dict:
    """Fit ``best`` on every real star, label the library stars, compare with the parameter vote."""
    root = Path(args.data) / "spectral_libraries"
    lib = []
    for name in ("pyhammer", "miles", "stelib"):
        lib += load_templates([root / name], classes=None).templates
    knn = to_lamost_convention(list(lam_all) + lib)[len(lam_all) :]
    rep = best.split("/")[1]
    t0 = time.time()
    lab = make(best, args).fit(lam_all, x_all_by_rep[rep])
    t_fit = time.time() - t0
    ok, xs, skipped = [], [], []
    for t, k in zip(lib, knn):
        try:
            xs.append(sl.prepare(t, rep))
            ok.append((t, k))
        except ValueError as e:
            skipped.append(str(e))
    t0 = time.time()
    pred = lab.predict([t for t, _ in ok], np.stack(xs))
    t_pred = time.time() - t0
    rows = []
    for (t, k), p in zip(ok, pred):
        rows.append(
            {
                "id": t.template_id,
                "mk": t.cls,
                "mk_sub": t.subclass,
                "knn": k.cls,
                "knn_sub": k.subclass,
                "source": k.meta.get("label_source", ""),
                "pred": p.cls,
                "pred_sub": p.subclass,
                "margin": p.margin,
                "teff": t.teff,
                "logg": t.logg,
                "feh": t.feh,
            }
        )
    out: dict = {"labeller": best, "fit_s_all_real": t_fit, "predict_s": t_pred, "n": len(rows), "skipped": skipped}
    conf: dict = defaultdict(int)
    for r in rows:
        conf[f"{r['knn']}->{r['pred']}"] += 1
    out["knn_to_pred"] = dict(sorted(conf.items()))
    fgk = [r for r in rows if r["knn"] in ("F", "G", "K")]
    out["fgk_agree_with_knn"] = float(np.mean([r["pred"] == r["knn"] for r in fgk])) if fgk else math.nan
    out["fgk_agree_knn_relabelled_only"] = float(
        np.mean([r["pred"] == r["knn"] for r in fgk if r["source"] == "lamost_knn"])
    )
    out["fgk_agree_mk"] = float(np.mean([r["pred"] == r["mk"] for r in rows if r["mk"] in ("F", "G", "K")]))
    dw = [r for r in rows if 5500 <= r["teff"] <= 5800 and r["logg"] >= 4.0]
    out["dwarfs_5500_5800"] = {
        "n": len(dw),
        "pred": dict(sorted(defaultdict(int, {c: sum(r["pred"] == c for r in dw) for c in "AFGKM"}).items())),
        "pred_F9": sum(r["pred_sub"] == "F9" for r in dw),
        "knn": {c: sum(r["knn"] == c for r in dw) for c in "AFGKM"},
        "feh_median_pred_F": float(np.nanmedian([r["feh"] for r in dw if r["pred"] == "F"]))
        if any(r["pred"] == "F" for r in dw)
        else math.nan,
        "feh_median_pred_G": float(np.nanmedian([r["feh"] for r in dw if r["pred"] == "G"]))
        if any(r["pred"] == "G" for r in dw)
        else math.nan,
    }
    m = np.array([r["margin"] for r in rows])
    out["margin_quantiles"] = {q: float(np.quantile(m, q)) for q in (0.05, 0.1, 0.25, 0.5, 0.75)}
    out["margin_below"] = {str(th): int((m < th).sum()) for th in (0.1, 0.2, 0.3, 0.5)}
    out["rows"] = rows
    return out


def common_arguments(description: str, out: str) -> argparse.ArgumentParser:
    """The options this benchmark shares with ``fa_boundary.py`` (data folder, output, folds, seed, epochs)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data", default=os.environ.get("DRCNET_DATA", "../shared/data"))
    ap.add_argument("--out", default=out)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--no-cnn", action="store_true", help="template match only")
    return ap


def load_real(folder: Path) -> tuple[list, dict[str, np.ndarray], list[str]]:
    """Every F, G, K, A and M spectrum of ``lamost_real`` with a subclass, prepared as calibrated flux and
    continuum-normalised (:func:`drcnet.library.spectral_labels.prepare`); the ones that cannot be, named."""
    lam, x_by_rep, skipped = [], {"flux": [], "norm": []}, []
    for t in load_templates([folder], classes=None).templates:
        if t.cls not in ("F", "G", "K", "A", "M") or not t.subclass:
            continue
        try:
            xs = {rep: sl.prepare(t, rep) for rep in ("flux", "norm")}
        except ValueError as e:
            skipped.append(str(e))
            print(f"skipped: {e}")
            continue
        lam.append(t)
        for rep in xs:
            x_by_rep[rep].append(xs[rep])
    return lam, {rep: np.stack(v) for rep, v in x_by_rep.items()}, skipped


def main() -> None:
    ap = common_arguments(__doc__.splitlines()[0], "label_ceiling.json")
    ap.add_argument("--no-cnn-flux", action="store_true", help="CNN on the normalised spectrum only")
    ap.add_argument("--library", action="store_true", help="also label the library stars with the best labeller")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    t_start = time.time()
    folder = Path(a.data) / "lamost_real"
    lam, X, skipped = load_real(folder)
    t_prep = time.time() - t_start
    cls = np.array([t.cls for t in lam])
    _, sub_list = sl.training_labels(lam)
    sub = np.array(sub_list)
    keys = np.array([star_key(t) for t in lam])
    snr = snr_r_of(lam, folder)
    fgk = np.flatnonzero(np.isin(cls, ("F", "G", "K")))
    am = np.flatnonzero(~np.isin(cls, ("F", "G", "K")))
    print(
        f"{len(fgk)} F/G/K spectra of {len(set(keys[fgk]))} stars (F {int((cls == 'F').sum())}, G {int((cls == 'G').sum())}, "
        f"K {int((cls == 'K').sum())}); {len(am)} A/M in every training fold; prepared in {t_prep:.0f} s"
    )
    methods = ["template_match/flux", "template_match/norm"]
    if not a.no_cnn:
        methods.append("cnn/norm")
        if not a.no_cnn_flux:
            methods.append("cnn/flux")
    cv = StratifiedGroupKFold(a.folds, shuffle=True, random_state=a.seed)
    folds = list(cv.split(np.zeros(len(fgk)), cls[fgk], keys[fgk]))
    results: dict = {}
    sal_sum, sal_n = None, 0
    timing: dict = {}
    for method in methods:
        rep = method.split("/")[1]
        pred = np.empty(len(fgk), dtype=object)
        psub = np.empty(len(fgk), dtype=object)
        marg = np.zeros(len(fgk))
        t_fit = t_pred = 0.0
        for tr, te in folds:
            tr_idx = np.concatenate([fgk[tr], am])
            te_idx = fgk[te]
            t0 = time.time()
            lab = make(method, a).fit([lam[i] for i in tr_idx], X[rep][tr_idx])
            t_fit += time.time() - t0
            t0 = time.time()
            out = lab.predict([lam[i] for i in te_idx], X[rep][te_idx])
            t_pred += time.time() - t0
            pred[te] = [o.cls for o in out]
            psub[te] = [o.subclass for o in out]
            marg[te] = [o.margin for o in out]
            if method == "cnn/norm":
                f9 = te_idx[sub[te_idx] == "F9"]
                if len(f9):
                    s = saliency(lab, X[rep][f9]) * len(f9)
                    sal_sum = s if sal_sum is None else sal_sum + s
                    sal_n += len(f9)
        timing[method] = {
            "fit_s_per_fold": t_fit / a.folds,
            "predict_s_per_fold": t_pred / a.folds,
            "train_spectra_per_fold": int(len(fgk) * (a.folds - 1) / a.folds + len(am)),
        }
        results[method] = scores(cls[fgk], sub[fgk], pred.astype(str), psub.astype(str), snr[fgk], keys[fgk], marg)
        print(
            f"{method}: all {results[method]['all']:.3f}, F9 right {results[method]['F9 right']:.2f} "
            f"(fit {t_fit / a.folds:.1f} s/fold, {time.time() - t_start:.0f} s so far)",
            flush=True,
        )

    # --- physics: what separates LAMOST F9 from G0-G3 ---------------------------------------------
    xn = X["norm"]
    med = {s: np.median(xn[sub == s], axis=0) for s in ("F7", "F9", "G0", "G2", "G3")}
    diff = med["F9"] - med["G3"]
    feat = []
    for name, lo, hi in FEATURES:
        d = {s: depth(med[s], lo, hi) for s in med}
        feat.append({"feature": name, **{f"depth {s}": round(v, 4) for s, v in d.items()}})
    lasp = {}
    for s in ("F7", "F9", "G0", "G2", "G3"):
        m = sub == s
        lasp[s] = {
            k: float(np.nanmedian([getattr(t, k) for t, mm in zip(lam, m) if mm])) for k in ("teff", "logg", "feh")
        }
    from drcnet.library.labels import read_lamost_index

    idx = read_lamost_index(folder)
    for s in lasp:
        vals = [idx.get(Path(t.path).name, {}) for t, ss in zip(lam, sub) if ss == s]
        lasp[s] = {k: float(np.nanmedian([v.get(k, math.nan) for v in vals])) for k in ("teff", "logg", "feh")}
        lasp[s]["n_with_lasp"] = int(sum(math.isfinite(v.get("teff", math.nan)) for v in vals))
    physics: dict = {
        "median_depths": feat,
        "lasp_medians": lasp,
        "F9_minus_G3_norm_top": top_regions(sl.GRID_WAVE, gaussian(diff), 12),
    }
    if sal_sum is not None:
        wb = sl.GRID_WAVE[: (sl.N_PIX // 2) * 2].reshape(-1, 2).mean(axis=1)
        sal = sal_sum / sal_n
        physics["cnn_saliency_F9_top"] = top_regions(wb, gaussian(sal, 2.0), 12)
        physics["cnn_saliency_share_by_feature"] = {
            name: float(np.abs(sal[(wb >= lo - 5) & (wb <= hi + 5)]).sum() / np.abs(sal).sum())
            for name, lo, hi in FEATURES
        }
    report = {
        "n_spectra": int(len(fgk)),
        "n_stars": int(len(set(keys[fgk]))),
        "folds": a.folds,
        "seed": a.seed,
        "epochs": a.epochs,
        "results": results,
        "timing": timing,
        "physics": physics,
        "skipped": skipped,
    }
    if a.library:
        best = max(results, key=lambda m: (round(results[m]["all"], 2), results[m]["F9 right"]))
        report["library"] = library_check(a, best, lam, X)
    report["wall_s"] = time.time() - t_start
    print_report(report)
    tmp = Path(a.out).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    os.replace(tmp, a.out)
    print(f"\nwritten {a.out} ({report['wall_s']:.0f} s)")


def gaussian(v: np.ndarray, s: float = 1.5) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(np.asarray(v, float), s)


def print_report(r: dict) -> None:
    cols = [
        "all",
        "F",
        "G",
        "K",
        "snr >30",
        "snr 20-30",
        "snr 10-20",
        "snr <10",
        "subclass exact",
        "subclass within one",
        "F9 right",
        "G0 right",
        "K0 right",
        "pairs same class (predicted)",
    ]
    print(f"\n{r['n_spectra']} spectra of {r['n_stars']} stars, {r['folds']} folds by star\n")
    print("| method | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for m, v in r["results"].items():
        print(f"| {m} | " + " | ".join(f"{v[c]:.3f}" for c in cols) + " |")
    v = next(iter(r["results"].values()))
    print(
        "\nn: snr bins "
        + ", ".join(f"{b} {v['n snr ' + b]}" for b, _, _ in SNR_BINS)
        + f"; F9 {v['n F9']}, G0 {v['n G0']}, K0 {v['n K0']}; {v['pairs']} repeat pairs, LAMOST same class {v['pairs same class (LAMOST)']:.3f}"
    )
    print("\nshare kept / accuracy / F9 kept / F9 right among kept, at margin >= threshold:")
    for m, v in r["results"].items():
        print(
            f"  {m}: "
            + "; ".join(
                f">= {th}: {d['kept']:.2f} / {d['accuracy']:.3f} / {d['F9 kept']:.2f} / {d['F9 right of kept']:.2f}"
                for th, d in v["by margin"].items()
            )
        )
    print("\nmedian continuum-normalised depth (1 - f) by LAMOST subclass:")
    print("| feature | " + " | ".join(k for k in r["physics"]["median_depths"][0] if k != "feature") + " |")
    for row in r["physics"]["median_depths"]:
        print(f"| {row['feature']} | " + " | ".join(f"{v:.3f}" for k, v in row.items() if k != "feature") + " |")
    print("\nLASP medians:", json.dumps(r["physics"]["lasp_medians"]))
    print(
        "F9 - G3 median norm spectrum, strongest:",
        [(d["wave_a"], round(d["value"], 3), d["feature"]) for d in r["physics"]["F9_minus_G3_norm_top"]],
    )
    if "cnn_saliency_F9_top" in r["physics"]:
        print(
            "CNN saliency (log pF - log pG) on held-out F9, strongest:",
            [(d["wave_a"], round(d["value"], 4), d["feature"]) for d in r["physics"]["cnn_saliency_F9_top"]],
        )
        sh = sorted(r["physics"]["cnn_saliency_share_by_feature"].items(), key=lambda kv: -kv[1])
        print("saliency share by feature:", [(k, round(v, 3)) for k, v in sh[:10]])
    print("\ntiming:", json.dumps(r["timing"]))
    if "library" in r:
        lib = {k: v for k, v in r["library"].items() if k != "rows"}
        print("\nlibrary check:", json.dumps(lib, indent=1, default=str))


if __name__ == "__main__":
    main()
