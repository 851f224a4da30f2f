"""The QA page of a classified exposure: one HTML file with PNGs.

Per spectrograph:

* the raw science frame of each arm (net ADU, binned 8 x 8, asinh stretch) with every
  fiber's trace overlaid (lost traces in red), and a full-resolution zoom with the
  11-row stripe apertures;
* a few stripes (object fibers spread in S/N and a sky fiber) with their boxcar and
  optimal 1D extractions and the master sky;
* the class map over the fibers (predicted class and its probability; the true class
  when the fiber map has it);
* calibration numbers (bias, trace rms, wavelength-solution rms, flag counts) and,
  when truth is known, the accuracy overall and per S/N_r bin and the confusion matrix
  (with ``other`` when the model or the truth has it, and the rejection rates);
* the catalogue's content: predicted class counts (F, G, K, other, none), subclass counts,
  Teff / log g / [Fe/H] medians and ranges where the model gives them, prediction sets and
  out-of-distribution counts (:func:`_catalogue_html`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from drcnet.conventions import (
    ARMS,
    CLASSES,
    CLASSES_WITH_OTHER,
    FLAG_BITS,
    OTHER,
    SNR_BIN_NAMES,
    snr_bin,
)
from drcnet.instrument.config import N_COLS
from drcnet.instrument.rawframe import read_raw_frame
from drcnet.provenance import atomic_path, write_text_atomic
from drcnet.reduce.calib import levels, net_image
from drcnet.workflows.reduce_exposure import SpectrographReduction

CLASS_COLORS = {"F": "#1f77b4", "G": "#2ca02c", "K": "#d62728", OTHER: "#9467bd", "": "#999999"}

# Figures are laid out with fixed margins (inches) instead of ``tight_layout``: tight_layout measures
# every tick label and title of every axes (about a second draw of the figure); with fixed margins each
# figure is drawn once, when it is saved (issue 11). Traces are one LineCollection per panel, not one
# Line2D per fiber.


def _margins(fig: Any, left: float, right: float, bottom: float, top: float, **kw: float) -> None:
    """``fig.subplots_adjust`` with margins in inches (``kw``: wspace/hspace as fractions)."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h, **kw)


def _save(fig: Any, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


def _frame_png(out: Path, sr: SpectrographReduction, arm: str, exposure: Path) -> str:
    import matplotlib.pyplot as plt

    a = sr.arms[arm]
    frame = read_raw_frame(Path(str(a.files.get("folder", exposure))) / str(a.files["science"]))
    net = net_image(frame.data, levels(frame.overscan))
    b = 8
    small = net[: net.shape[0] // b * b].reshape(-1, b, N_COLS // b, b).mean(axis=(1, 3))
    fig, (ax, az) = plt.subplots(1, 2, figsize=(14, 7), gridspec_kw={"width_ratios": [1, 1]})
    ax.imshow(np.arcsinh(np.clip(small, 0, None) / 20), origin="lower", cmap="gray_r", aspect="auto",
              extent=(0, N_COLS, 0, small.shape[0] * b))
    from matplotlib.collections import LineCollection

    cols = np.arange(0, N_COLS, 32)
    centres = a.traces.centres(cols)
    lost = np.asarray(a.lost[:centres.shape[0]], dtype=bool)
    segs = np.stack([np.broadcast_to(cols, centres.shape), centres], axis=-1)
    ax.add_collection(LineCollection(list(segs), linewidths=0.3,
                                     colors=["red" if x else "tab:orange" for x in lost]))
    ax.set(title=f"sp{sr.spid:02d} {arm}: science frame (binned 8x8) and traces", xlabel="column", ylabel="row")
    # zoom: a few fibers near the middle of the slit, full resolution
    f0 = centres.shape[0] // 2
    r0 = int(a.traces.centres(np.array([2048.0]))[f0 - 2, 0]) - 12
    c0, c1 = 1900, 2200
    zoom = net[r0:r0 + 100, c0:c1]
    az.imshow(np.arcsinh(np.clip(zoom, 0, None) / 20), origin="lower", cmap="gray_r", aspect="auto",
              extent=(c0, c1, r0, r0 + zoom.shape[0]))
    zc = np.arange(c0, c1)
    zcentres = a.traces.centres(zc)
    for f in range(max(f0 - 4, 0), min(f0 + 4, centres.shape[0])):
        tr = zcentres[f]
        centre = np.floor(tr + 0.5)
        az.plot(zc, tr, color="tab:orange", lw=1)
        az.plot(zc, centre - 5.5, color="tab:blue", lw=0.6)
        az.plot(zc, centre + 5.5, color="tab:blue", lw=0.6)
    az.set(ylim=(r0, r0 + zoom.shape[0]), title="zoom: traces and 11-row stripe apertures", xlabel="column")
    _margins(fig, left=0.75, right=0.3, bottom=0.6, top=0.4, wspace=0.12)
    return _save(fig, out / f"frame_sp{sr.spid:02d}_{arm}.png")


def _pick_fibers(sr: SpectrographReduction, n: int = 4) -> list[int]:
    ok = sr.fibermap.is_object & ((sr.flags & FLAG_BITS["trace_lost"]) == 0)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return []
    order = idx[np.argsort(sr.snr_r[idx])]
    picks = [int(order[int(round(q * (order.size - 1)))]) for q in np.linspace(0.05, 0.95, n)]
    sky = np.flatnonzero(sr.fibermap.of_type("Sky") & ((sr.flags & FLAG_BITS["trace_lost"]) == 0))
    return list(dict.fromkeys(picks + ([int(sky[0])] if sky.size else [])))


def _stripes_png(out: Path, sr: SpectrographReduction, table: Table) -> str:
    import matplotlib.pyplot as plt

    fibers = _pick_fibers(sr)
    n_rows = max(len(fibers), 1)
    fig, axes = plt.subplots(n_rows, 2, figsize=(14, 2.6 * n_rows), squeeze=False)
    # each panel needs room above it for its stripe inset (a quarter of its height) and its title
    above, below = 0.95, 0.35  # inches
    height = (2.6 * n_rows - below - n_rows * above) / n_rows + 0.0
    _margins(fig, left=0.55, right=0.15, bottom=below, top=above - 0.05,
             hspace=(above + 0.05) / max(height, 0.1), wspace=0.12)
    pred = {int(f): p for s, f, p in zip(table["spid"], table["fiber"], table["pred"], strict=True) if s == sr.spid}
    for row, f in enumerate(fibers):
        for col, arm in enumerate(ARMS):
            a = sr.arms[arm]
            ax = axes[row, col]
            w = a.wave1d[f]
            ax.plot(w, a.flux1d[f], lw=0.5, label="boxcar")
            ax.plot(w, a.flux_opt[f], lw=0.5, label="optimal")
            ax.plot(w, a.sky1d[f], lw=0.5, label="master sky")
            inset = ax.inset_axes((0.0, 1.0, 1.0, 0.25))
            s = a.stripes[f]
            inset.imshow(s, aspect="auto", cmap="gray_r", vmin=np.percentile(s, 1), vmax=np.percentile(s, 99.5),
                         extent=(w[0], w[-1], -5.5, 5.5))
            inset.set_axis_off()
            fm = sr.fibermap
            ax.set_title(f"fiber {fm.fiber[f]} ({fm.fibertype[f]}) {arm}  S/N_r={sr.snr_r[f]:.1f}  "
                         f"pred={pred.get(int(fm.fiber[f]), '-')}", fontsize=8, pad=38)
            ax.tick_params(labelsize=7)
            if row == 0 and col == 0:
                ax.legend(fontsize=7)
    return _save(fig, out / f"stripes_sp{sr.spid:02d}.png")


def _classmap_png(out: Path, sr: SpectrographReduction, table: Table) -> str:
    import matplotlib.pyplot as plt

    sel = np.asarray(table["spid"]) == sr.spid
    t = table[sel]
    fig, ax = plt.subplots(figsize=(14, 3.2))
    fib = np.asarray(t["fiber"])
    pmax = np.nanmax(np.stack([np.asarray(t[f"prob_{c}"], dtype=float) for c in CLASSES_WITH_OTHER
                               if f"prob_{c}" in t.colnames]), axis=0)
    colors = [CLASS_COLORS.get(str(p), "#999999") for p in t["pred"]]
    ax.bar(fib, np.nan_to_num(pmax), color=colors, width=0.9)
    if "true_class" in t.colnames:
        tc = [CLASS_COLORS.get(str(c), "#999999") for c in t["true_class"]]
        ax.scatter(fib, np.full(fib.size, 1.05), c=tc, s=8, marker="s")
        wrong = ~np.asarray(t["correct"], dtype=bool) & (np.asarray(t["pred"]) != "")
        ax.scatter(fib[wrong], np.full(int(wrong.sum()), 1.12), c="k", s=10, marker="x", label="wrong")
    lost = np.asarray(t["pred"]) == ""
    ax.scatter(fib[lost], np.full(int(lost.sum()), 0.02), c="r", s=12, marker="^", label="trace lost")
    from matplotlib.patches import Patch

    handles = ax.get_legend_handles_labels()[0]
    handles += [Patch(color=col, label=f"pred {c}") for c, col in CLASS_COLORS.items() if c]  # empty bars lose their colour
    ax.set(xlim=(0, len(sr.fibermap) + 1), ylim=(0, 1.2), xlabel="fiber", ylabel="max probability",
           title=f"sp{sr.spid:02d}: class map (bars: prediction; squares: truth)")
    ax.legend(handles=handles, fontsize=7, ncol=6, loc="lower right")
    _margins(fig, left=0.7, right=0.15, bottom=0.5, top=0.35)
    return _save(fig, out / f"classmap_sp{sr.spid:02d}.png")


def _accuracy_html(table: Table) -> str:
    if "true_class" not in table.colnames:
        return "<p>No truth in the fiber maps: no accuracy.</p>"
    pred = np.asarray(table["pred"]).astype(str)
    true = np.asarray(table["true_class"]).astype(str)
    ok = (pred != "") & np.isin(true, CLASSES)
    if not ok.any():
        return "<p>No classified object with a known class.</p>"
    acc = float(np.mean(pred[ok] == true[ok]))
    bins = snr_bin(np.asarray(table["snr_r"], dtype=float))
    rows = "".join(
        f"<tr><td>{name}</td><td>{int(np.sum(ok & (bins == b)))}</td>"
        f"<td>{np.mean(pred[ok & (bins == b)] == true[ok & (bins == b)]):.3f}</td></tr>"
        if np.any(ok & (bins == b)) else f"<tr><td>{name}</td><td>0</td><td>-</td></tr>"
        for b, name in enumerate(SNR_BIN_NAMES))
    names = CLASSES_WITH_OTHER if np.any(true == OTHER) or np.any(pred == OTHER) else CLASSES
    known = (pred != "") & np.isin(true, names)
    cm = np.array([[int(np.sum(known & (true == t) & (pred == p))) for p in names] for t in names])
    cm_rows = "".join(f"<tr><th>{t}</th>" + "".join(f"<td>{v}</td>" for v in cm[i]) + "</tr>"
                      for i, t in enumerate(names))
    rejection = ""
    if OTHER in names:
        oth = known & (true == OTHER)
        rejection = (f"<p>Rejection: {int(np.sum(oth & (pred == OTHER)))} of {int(oth.sum())} true <i>other</i> "
                     f"objects called other; {int(np.sum(ok & (pred == OTHER)))} of {int(ok.sum())} F/G/K stars "
                     "wrongly called other.</p>")
    return (f"<p><b>Accuracy against truth: {acc:.3f}</b> over {int(ok.sum())} object fibers with a true F/G/K star.</p>"
            f"<table><tr><th>S/N_r bin</th><th>n</th><th>accuracy</th></tr>{rows}</table>{rejection}"
            f"<p>Confusion matrix (rows: true, columns: predicted)</p>"
            f"<table><tr><th></th>{''.join(f'<th>{c}</th>' for c in names)}</tr>{cm_rows}</table>")


def _catalogue_html(table: Table) -> str:
    """The catalogue's content in numbers: class counts (incl. other and no class), subclasses, parameters, OOD."""
    pred = np.asarray(table["pred"]).astype(str)
    counts = ", ".join(f"{c} {int(np.sum(pred == c))}" for c in CLASSES_WITH_OTHER)
    parts = [f"<p>Predicted classes over {len(pred)} object fibers: {counts}, no class {int(np.sum(pred == ''))}.</p>"]
    if "subclass" in table.colnames:
        sub = np.asarray(table["subclass"]).astype(str)
        if np.any(sub != ""):
            vals, n = np.unique(sub[sub != ""], return_counts=True)
            top = ", ".join(f"{v} {k}" for v, k in sorted(zip(vals, n, strict=True), key=lambda x: -x[1])[:12])
            parts.append(f"<p>Subclasses ({int(np.sum(sub != ''))} stars): {html.escape(top)}.</p>")
        else:
            parts.append("<p>Subclass, luminosity class, Teff, log g, [Fe/H]: none (the model has no catalogue heads).</p>")
    rows = []
    for name, unit, fmt in (("teff", "K", ".0f"), ("logg", "dex", ".2f"), ("feh", "dex", ".2f")):
        if name not in table.colnames:
            continue
        v = np.asarray(table[name], dtype=float)
        e = np.asarray(table[f"{name}_err"], dtype=float)
        ok = np.isfinite(v)
        if ok.any():
            rows.append(f"<tr><td>{name} ({unit})</td><td>{int(ok.sum())}</td><td>{np.median(v[ok]):{fmt}}</td>"
                        f"<td>{np.min(v[ok]):{fmt}} .. {np.max(v[ok]):{fmt}}</td><td>{np.nanmedian(e[ok]):{fmt}}</td></tr>")
    if rows:
        parts.append("<table><tr><th>parameter</th><th>n</th><th>median</th><th>range</th><th>median error</th></tr>"
                     + "".join(rows) + "</table>")
    if "lum_class" in table.colnames:
        lum = np.asarray(table["lum_class"]).astype(str)
        if np.any(lum != ""):
            parts.append("<p>Luminosity class: " + ", ".join(f"{c} {int(np.sum(lum == c))}" for c in ("dwarf", "giant")) + ".</p>")
    if "ood" in table.colnames:
        ood = np.asarray(table["ood"], dtype=int)
        sets = np.asarray(table["pred_set"]).astype(str) if "pred_set" in table.colnames else np.array([""])
        calibrated = bool(np.any(sets != ""))
        parts.append(f"<p>Out of distribution (energy score above the calibration's threshold): {int(ood.sum())}"
                     + ("" if calibrated else " (no calibration with this model: no threshold, no prediction sets)")
                     + ".</p>")
        if calibrated:
            size = np.array([len(x.split("|")) if x else 0 for x in sets])
            parts.append(f"<p>Prediction sets: {int(np.sum(size == 1))} single-class, {int(np.sum(size > 1))} "
                         "with several classes.</p>")
    return "".join(parts)


def _num(value: object) -> str:
    """A number with 4 decimals, or "none" (e.g. no arc line measured)."""
    return f"{value:.4f}" if isinstance(value, (int, float)) and np.isfinite(value) else "none"


def write_qa_page(out_dir: str | Path, reductions: Sequence[SpectrographReduction], table: Table,
                  exposure: str | Path, prov: dict[str, Any]) -> Path:
    """Write ``out_dir/index.html`` and its PNGs; return the HTML path."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exposure = Path(exposure)
    stamp = (f"<p>drcnet {html.escape(str(prov.get('version')))}, commit {html.escape(str(prov.get('git_commit')))}, "
             f"written {html.escape(str(prov.get('created_utc')))}</p>")
    parts = [f"<h1>drcnet QA: {html.escape(str(exposure))}</h1>", stamp, "<h2>Classification</h2>",
             _catalogue_html(table), _accuracy_html(table)]
    for sr in reductions:
        parts.append(f"<h2>Spectrograph {sr.spid} (plan {html.escape(sr.planid)})</h2>")
        counts = {name: int(np.sum((sr.flags & bit) > 0)) for name, bit in FLAG_BITS.items()}
        parts.append("<p>Fibers flagged: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + "</p>")
        cal_rows = "".join(
            f"<tr><td>{arm}</td><td>{sr.arms[arm].bias.n_frames} / {'yes' if sr.arms[arm].bias.applied else 'no'}</td>"
            f"<td>{_num(sr.arms[arm].traces.summary()['median_rms_px'])}</td>"
            f"<td>{_num(sr.arms[arm].wave.summary()['median_rms_px'])}</td>"
            f"<td>{int(sr.arms[arm].lost.sum())}</td>"
            f"<td>{'<b>IMPLAUSIBLE</b>: ' + html.escape('; '.join(sr.arms[arm].problems)) if sr.arms[arm].problems else 'ok'}"
            "</td></tr>" for arm in ARMS)
        parts.append("<table><tr><th>arm</th><th>bias frames / pattern subtracted</th><th>trace fit rms (px)</th>"
                     f"<th>arc line rms (px)</th><th>lost traces</th><th>science frame</th></tr>{cal_rows}</table>")
        notes = [w for arm in ARMS for w in sr.arms[arm].warnings]
        if notes:
            parts.append("<p>Warnings:</p><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in notes) + "</ul>")
        parts.append(f'<img src="{_classmap_png(out, sr, table)}" width="100%">')
        for arm in ARMS:
            parts.append(f'<img src="{_frame_png(out, sr, arm, exposure)}" width="100%">')
        parts.append(f'<img src="{_stripes_png(out, sr, table)}" width="100%">')
    style = "<style>body{font-family:sans-serif;margin:2em} table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:2px 8px}</style>"
    page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>drcnet QA</title>{style}</head><body>{''.join(parts)}</body></html>"
    return write_text_atomic(out / "index.html", page)
