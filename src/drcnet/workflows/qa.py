"""The QA page of a classified exposure: one HTML file with PNGs, cheap enough for a whole exposure.

For the exposure:

* the catalogue's content: predicted class counts (F, G, K, other, none), subclass counts,
  Teff / log g / [Fe/H] medians and ranges where the model gives them, prediction sets and
  out-of-distribution counts (:func:`_catalogue_html`); when truth is known, the accuracy overall
  and per S/N_r bin and the confusion matrix (with ``other`` and the rejection rates);
* one figure of stripes with their boxcar and optimal 1D extractions and the master sky: object
  fibers spread in S/N_r over the whole exposure, and a sky fiber (``stripes.png``).

Per spectrograph:

* calibration numbers (bias, trace rms, wavelength-solution rms, flags, warnings);
* the class map over the fibers (``classmap_spXX.png``: predicted class, brightness = its
  probability; the true class below; wrong predictions and fibers without a class marked);
* the raw science frame of each arm (``frame_spXX_<arm>.png``: net ADU binned 8 x 8, asinh
  stretch, every trace drawn into the pixels, lost ones in red) beside a full-resolution zoom
  with the traces and the 11-row stripe apertures.

Cost (issue 11): the frame pictures are cut during the reduction, while the frame is in memory
(:mod:`drcnet.reduce.preview`, ``ArmReduction.preview``/``zoom``), and the per-spectrograph
pictures are written as images (``matplotlib.pyplot.imsave``) with the traces drawn into the
pixels: no figure, axes or per-fiber artist (:mod:`drcnet.workflows.qa_pictures`). Only the stripes
figure is a matplotlib figure, drawn once per exposure. The raw frame is never read again. What the page needs of a spectrograph is kept in a small
:class:`QASpectrograph` (:func:`qa_summary`), so a whole exposure's reductions need not be held.
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
from drcnet.provenance import write_text_atomic
from drcnet.workflows.qa_pictures import (
    CLASS_COLORS,
    N_PICKS,
    QAArm,
    QASpectrograph,
    classmap_png,
    frame_png,
    stripes_png,
)
from drcnet.workflows.reduce_exposure import SpectrographReduction


def _pick_fibers(sr: SpectrographReduction, n: int = N_PICKS) -> list[int]:
    ok = sr.fibermap.is_object & ((sr.flags & FLAG_BITS["trace_lost"]) == 0)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return []
    order = idx[np.argsort(sr.snr_r[idx])]
    picks = [int(order[int(round(q * (order.size - 1)))]) for q in np.linspace(0.05, 0.95, n)]
    sky = np.flatnonzero(sr.fibermap.of_type("Sky") & ((sr.flags & FLAG_BITS["trace_lost"]) == 0))
    return list(dict.fromkeys(picks + ([int(sky[0])] if sky.size else [])))


def qa_summary(sr: SpectrographReduction, catalogue: Any = None) -> QASpectrograph:
    """The small :class:`QASpectrograph` of a reduced spectrograph.

    Parameters
    ----------
    sr
        The reduced spectrograph.
    catalogue
        Its catalogue rows (:func:`~drcnet.workflows.classify_exposure.catalogue_rows`, or a table with
        ``spid``, ``fiber`` and ``pred``), for the predicted classes; None: no predictions.

    Raises
    ------
    ValueError
        An arm was reduced without the QA pictures (the recipe, :func:`drcnet.reduce.recipe.reduce_arm`,
        always cuts them; the raw frame is never read again for the page).
    """
    pred: dict[int, str] = {}
    if catalogue is not None:
        spid = np.asarray(catalogue["spid"])
        for s, f, p in zip(spid, np.asarray(catalogue["fiber"]), np.asarray(catalogue["pred"]), strict=True):
            if int(s) == sr.spid:
                pred[int(f)] = str(p)
    picks = _pick_fibers(sr)
    arms = {}
    for arm in ARMS:
        a = sr.arms[arm]
        preview, zoom, origin = a.preview, a.zoom, a.zoom_origin
        if preview is None or zoom is None:
            raise ValueError(
                f"sp{sr.spid:02d} {arm}: the reduction holds no QA pictures (preview, zoom); reduce "
                "the exposure with drcnet.reduce.recipe.reduce_arm, which cuts them"
            )
        # copies, not views: a view would keep the whole (fibers, 3000) array of the reduction alive
        spectra = {
            f: {
                "wave": np.array(a.wave1d[f], dtype=np.float64),
                "flux": np.array(a.flux1d[f]),
                "flux_opt": np.array(a.flux_opt[f]),
                "sky": np.array(a.sky1d[f]),
                "stripe": np.array(a.stripes[f], dtype=np.float32),
            }
            for f in picks
        }
        arms[arm] = QAArm(
            arm=arm,
            traces=a.traces,
            lost=np.array(a.lost, dtype=bool),
            preview=preview,
            zoom=zoom,
            zoom_origin=origin,
            summary={
                "bias_frames": a.bias.n_frames,
                "bias_applied": a.bias.applied,
                "trace_rms": a.traces.summary()["median_rms_px"],
                "arc_rms": a.wave.summary()["median_rms_px"],
            },
            problems=list(a.problems),
            warnings=list(a.warnings),
            spectra=spectra,
        )
    fm = sr.fibermap
    return QASpectrograph(
        spid=sr.spid,
        planid=sr.planid,
        fiber=np.asarray(fm.fiber).copy(),
        fibertype=np.asarray(fm.fibertype).astype(str),
        flags=np.asarray(sr.flags).copy(),
        snr_r=np.asarray(sr.snr_r, dtype=np.float64).copy(),
        picks=picks,
        pred=pred,
        arms=arms,
    )


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
        if np.any(ok & (bins == b))
        else f"<tr><td>{name}</td><td>0</td><td>-</td></tr>"
        for b, name in enumerate(SNR_BIN_NAMES)
    )
    names = CLASSES_WITH_OTHER if np.any(true == OTHER) or np.any(pred == OTHER) else CLASSES
    known = (pred != "") & np.isin(true, names)
    cm = np.array([[int(np.sum(known & (true == t) & (pred == p))) for p in names] for t in names])
    cm_rows = "".join(
        f"<tr><th>{t}</th>" + "".join(f"<td>{v}</td>" for v in cm[i]) + "</tr>" for i, t in enumerate(names)
    )
    rejection = ""
    if OTHER in names:
        oth = known & (true == OTHER)
        rejection = (
            f"<p>Rejection: {int(np.sum(oth & (pred == OTHER)))} of {int(oth.sum())} true <i>other</i> "
            f"objects called other; {int(np.sum(ok & (pred == OTHER)))} of {int(ok.sum())} F/G/K stars "
            "wrongly called other.</p>"
        )
    conv = {
        "lamost": "LAMOST's convention (the fiber maps' TRUE_CLASS_LAMOST: the model was trained on LAMOST's "
        "labels; stars whose LAMOST class is ambiguous are not scored)",
        "mk": "MK types (the fiber maps' TRUE_CLASS)",
    }.get(str(table.meta.get("label_convention", "mk")), "mixed conventions (some fiber maps lack TRUE_CLASS_LAMOST)")
    return (
        f"<p><b>Accuracy against truth: {acc:.3f}</b> over {int(ok.sum())} object fibers with a true F/G/K star; "
        f"labels on {conv}.</p>"
        f"<table><tr><th>S/N_r bin</th><th>n</th><th>accuracy</th></tr>{rows}</table>{rejection}"
        f"<p>Confusion matrix (rows: true, columns: predicted)</p>"
        f"<table><tr><th></th>{''.join(f'<th>{c}</th>' for c in names)}</tr>{cm_rows}</table>"
    )


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
            parts.append(
                "<p>Subclass, luminosity class, Teff, log g, [Fe/H]: none (the model has no catalogue heads).</p>"
            )
    rows = []
    for name, unit, fmt in (("teff", "K", ".0f"), ("logg", "dex", ".2f"), ("feh", "dex", ".2f")):
        if name not in table.colnames:
            continue
        v = np.asarray(table[name], dtype=float)
        e = np.asarray(table[f"{name}_err"], dtype=float)
        ok = np.isfinite(v)
        if ok.any():
            rows.append(
                f"<tr><td>{name} ({unit})</td><td>{int(ok.sum())}</td><td>{np.median(v[ok]):{fmt}}</td>"
                f"<td>{np.min(v[ok]):{fmt}} .. {np.max(v[ok]):{fmt}}</td><td>{np.nanmedian(e[ok]):{fmt}}</td></tr>"
            )
    if rows:
        parts.append(
            "<table><tr><th>parameter</th><th>n</th><th>median</th><th>range</th><th>median error</th></tr>"
            + "".join(rows)
            + "</table>"
        )
    if "lum_class" in table.colnames:
        lum = np.asarray(table["lum_class"]).astype(str)
        if np.any(lum != ""):
            parts.append(
                "<p>Luminosity class: "
                + ", ".join(f"{c} {int(np.sum(lum == c))}" for c in ("dwarf", "giant"))
                + ".</p>"
            )
    if "ood" in table.colnames:
        ood = np.asarray(table["ood"], dtype=int)
        sets = np.asarray(table["pred_set"]).astype(str) if "pred_set" in table.colnames else np.array([""])
        calibrated = bool(np.any(sets != ""))
        parts.append(
            f"<p>Out of distribution (energy score above the calibration's threshold): {int(ood.sum())}"
            + ("" if calibrated else " (no calibration with this model: no threshold, no prediction sets)")
            + ".</p>"
        )
        if calibrated:
            size = np.array([len(x.split("|")) if x else 0 for x in sets])
            parts.append(
                f"<p>Prediction sets: {int(np.sum(size == 1))} single-class, {int(np.sum(size > 1))} "
                "with several classes.</p>"
            )
    return "".join(parts)


def _num(value: object) -> str:
    """A number with 4 decimals, or "none" (e.g. no arc line measured)."""
    return f"{value:.4f}" if isinstance(value, (int, float)) and np.isfinite(value) else "none"


def _legend_html() -> str:
    items = "".join(
        f'<span style="background:{c};color:white;padding:0 6px;margin-right:4px">{k or "none"}</span>'
        for k, c in CLASS_COLORS.items()
    )
    return (
        f"<p>Class maps: fibers left to right; top band the predicted class (paler = less probable), middle band "
        f"the true class, bottom band black where the prediction is wrong, red where there is no class. {items}</p>"
    )


def write_qa_page(
    out_dir: str | Path,
    reductions: Sequence[QASpectrograph | SpectrographReduction],
    table: Table,
    exposure: str | Path,
    prov: dict[str, Any],
) -> Path:
    """Write ``out_dir/index.html`` and its PNGs; return the HTML path.

    Parameters
    ----------
    out_dir
        The QA folder (created).
    reductions
        Per spectrograph its :class:`QASpectrograph` (:func:`qa_summary`), or the full reduction.
    table
        The catalogue (:func:`~drcnet.workflows.classify_exposure.catalogue_table`).
    exposure
        The exposure folder (named on the page).
    prov
        Provenance record (version, commit, time on the page).
    """
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exposure = Path(exposure)
    items = [r if isinstance(r, QASpectrograph) else qa_summary(r, table) for r in reductions]
    stamp = (
        f"<p>drcnet {html.escape(str(prov.get('version')))}, commit {html.escape(str(prov.get('git_commit')))}, "
        f"written {html.escape(str(prov.get('created_utc')))}</p>"
    )
    parts = [
        f"<h1>drcnet QA: {html.escape(str(exposure))}</h1>",
        stamp,
        "<h2>Classification</h2>",
        _catalogue_html(table),
        _accuracy_html(table),
    ]
    stripes = stripes_png(out, items)
    if stripes:
        parts.append(
            "<h2>Stripes and 1D spectra</h2><p>Object fibers spread in S/N_r over the exposure and a sky "
            "fiber: the 11-row stripe above each panel, its boxcar and optimal extraction and the master "
            f'sky below.</p><img src="{stripes}" width="100%">'
        )
    parts.append(_legend_html())
    parts.append(
        "<p>Frames: the science frame net of overscan, binned 8 x 8 (asinh stretch, row 0 at the bottom), "
        "every fiber's trace in orange (lost traces in red); right: a full-resolution zoom near the middle "
        "of the slit with the traces and the 11-row stripe apertures (blue).</p>"
    )
    for q in items:
        parts.append(f"<h2>Spectrograph {q.spid} (plan {html.escape(q.planid)})</h2>")
        counts = {name: int(np.sum((q.flags & bit) > 0)) for name, bit in FLAG_BITS.items()}
        parts.append("<p>Fibers flagged: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + "</p>")
        cal_rows = "".join(
            f"<tr><td>{arm}</td><td>{a.summary['bias_frames']} / {'yes' if a.summary['bias_applied'] else 'no'}</td>"
            f"<td>{_num(a.summary['trace_rms'])}</td><td>{_num(a.summary['arc_rms'])}</td>"
            f"<td>{int(a.lost.sum())}</td>"
            f"<td>{'<b>IMPLAUSIBLE</b>: ' + html.escape('; '.join(a.problems)) if a.problems else 'ok'}</td></tr>"
            for arm, a in ((arm, q.arms[arm]) for arm in ARMS)
        )
        parts.append(
            "<table><tr><th>arm</th><th>bias frames / pattern subtracted</th><th>trace fit rms (px)</th>"
            f"<th>arc line rms (px)</th><th>lost traces</th><th>science frame</th></tr>{cal_rows}</table>"
        )
        notes = [w for arm in ARMS for w in q.arms[arm].warnings]
        if notes:
            parts.append("<p>Warnings:</p><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in notes) + "</ul>")
        parts.append(
            f'<p>Class map sp{q.spid:02d}</p><img src="{classmap_png(out, q, table)}" width="100%" '
            'style="image-rendering:pixelated">'
        )
        for arm in ARMS:
            parts.append(
                f"<p>sp{q.spid:02d} {arm}: science frame (binned 8x8) and traces; zoom</p>"
                f'<img src="{frame_png(out, q, arm)}" width="100%">'
            )
    style = "<style>body{font-family:sans-serif;margin:2em} table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:2px 8px}</style>"
    page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>drcnet QA</title>{style}</head><body>{''.join(parts)}</body></html>"
    return write_text_atomic(out / "index.html", page)
