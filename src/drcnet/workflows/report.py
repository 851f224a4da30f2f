# Over 400 lines on purpose: one report: its Markdown and HTML sections are small functions over the same metrics.
"""``drcnet report``: Markdown + HTML report over one or more runs, beside the paper's numbers.

Contents: the paper's Table 3 for every run next to the published values, per-S/N-bin tables
(Tables 4-5), the survey-catalogue sections (subclass, stellar parameters, rejection of ``other``
objects, calibration, OOD flag; :func:`drcnet.metrics.catalogue_metrics`), Figure 7 (accuracy against
S/N bin, with the paper's DRC-Net minus RC-Net differences), confusion matrices and training curves. ``report.md`` links PNG files written beside
it; ``report.html`` embeds the same PNGs as base64, so it is one self-contained file.
Runs without a ``metrics.json`` for this data file and split are evaluated on the fly.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drcnet.conventions import CLASSES, SNR_BIN_NAMES
from drcnet.data.schema import dataset_fingerprint
from drcnet.models import read_run
from drcnet.paper import PAPER_DRC_MINUS_RC, PAPER_NAMES, PAPER_TABLE3
from drcnet.plots.figures import plot_accuracy_vs_snr, plot_confusions, plot_history
from drcnet.provenance import provenance, write_json_atomic, write_text_atomic
from drcnet.workflows.evaluate import METRICS_JSON, evaluate_run

Block = tuple  # ("h", level, text) | ("p", text) | ("table", headers, rows) | ("img", file, alt)


def _fmt(x: Any, nd: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _interval(ci: Sequence[float] | None) -> str:
    return f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else "-"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


def load_or_evaluate(
    run_dir: str | Path, data: str | Path, split: str, fingerprint: dict[str, Any]
) -> tuple[dict, bool]:
    """The run's ``metrics.json`` if it was made from this data file and split, else a fresh evaluation."""
    p = Path(run_dir) / METRICS_JSON
    if p.is_file():
        m = json.loads(p.read_text())
        if m.get("data", {}).get("sha256") == fingerprint["sha256"] and m.get("split") == split:
            return m, False
    return evaluate_run(run_dir, data, split=split, write=False), True


def _read_history(run_dir: Path) -> list[dict[str, str]]:
    p = run_dir / "history.csv"
    if not p.is_file():
        return []
    with p.open() as f:
        return list(csv.DictReader(f))


def _table3_row(name: str, m: dict[str, Any]) -> list[str]:
    row = [name]
    for c in CLASSES:
        pc = (m.get("per_class") or {}).get(c) or {}
        row += [_fmt(pc.get("precision")), _fmt(pc.get("recall")), _fmt(pc.get("f1"))]
    return row + [_fmt(m.get("accuracy")), str(m.get("n", 0))]


def _paper_row(key: str) -> list[str]:
    v = PAPER_TABLE3[key]
    row = [f"{PAPER_NAMES[key]} (paper)"]
    for c in CLASSES:
        row += [_fmt(v[f"{c}_P"]), _fmt(v[f"{c}_R"]), _fmt(v[f"{c}_F1"])]
    return row + [_fmt(v["ACC"]), "605"]


def build_blocks(
    runs: list[dict[str, Any]], data: str, split: str, fingerprint: dict[str, Any], figs: dict[str, str]
) -> list[Block]:
    """The report's content as blocks (rendered to Markdown and HTML)."""
    b: list[Block] = [("h", 1, "DRC-Net reproduction report")]
    b.append(
        (
            "p",
            f"Data: `{data}` (sha256 {fingerprint['sha256'][:16]}, {fingerprint['n_objects']} objects); "
            f"split `{split}`. Runs: " + ", ".join(f"`{r['label']}`" for r in runs) + ".",
        )
    )
    heads = ["model"] + [f"{c} {m}" for c in CLASSES for m in ("P", "R", "F1")] + ["ACC", "n"]
    rows = []
    for r in runs:
        rows.append(_table3_row(r["label"], r["metrics"]["table3"]))
    for key in PAPER_TABLE3:
        rows.append(_paper_row(key))
    b.append(("h", 2, "Table 3: test set, S/N_r > 30"))
    b.append(
        (
            "p",
            "Precision (P), recall (R) and F1 per class and overall accuracy (ACC) on the test objects "
            "with S/N_r > 30; rows marked (paper) are the published values of Zhang et al. (2023).",
        )
    )
    b.append(("table", heads, rows))

    b.append(("h", 2, "Tables 4-5: per S/N_r bin"))
    b.append(
        (
            "p",
            "Accuracy and per-class precision (the paper's Tables 4-5), recall and F1 in each S/N_r bin. "
            "The paper publishes only DRC-Net minus RC-Net accuracy differences per bin: "
            + ", ".join(f"{k}: {v:+.1f}" for k, v in PAPER_DRC_MINUS_RC.items())
            + " points.",
        )
    )
    b.append(
        (
            "p",
            "ACC 95 % is the Wilson interval of the accuracy from the test set's size alone (the "
            "scatter between training runs with different seeds comes on top). ACC 95 % by source is "
            "the cluster-bootstrap interval that counts source spectra instead of renders (one real "
            "star rendered several times is one draw); `sources` is their number.",
        )
    )
    heads = ["S/N_r", "n", "ACC", "ACC 95 %", "sources", "ACC 95 % by source"] + [
        f"{m} {c}" for m in ("P", "R", "F1") for c in CLASSES
    ]
    for r in runs:
        rows = []
        by_src = (r["metrics"].get("by_source_spectrum") or {}).get("bins", {})
        for name in SNR_BIN_NAMES:
            m = r["metrics"]["bins"][name]
            pc = m.get("per_class") or {}
            src = by_src.get(name) or {}
            cells = [
                name,
                str(m.get("n", 0)),
                _fmt(m.get("accuracy")),
                _interval(m.get("accuracy_ci95")),
                str(src.get("n_sources", "-")),
                _interval(src.get("accuracy_ci95_by_source")),
            ]
            for key in ("precision", "recall", "f1"):
                cells += [_fmt((pc.get(c) or {}).get(key)) for c in CLASSES]
            rows.append(cells)
        b.append(("h", 3, r["label"]))
        b.append(("table", heads, rows))

    b += _group_blocks(runs)
    b += catalogue_blocks(runs)

    b.append(("h", 2, "Figure 7: accuracy against S/N_r"))
    b.append(("img", figs["fig7"], "accuracy against S/N bin"))
    b.append(("h", 2, "Confusion matrices"))
    for r in runs:
        b.append(("h", 3, r["label"]))
        b.append(("img", figs[f"cm:{r['label']}"], f"confusion matrices {r['label']}"))
    b.append(("h", 2, "Training curves"))
    for r in runs:
        if f"hist:{r['label']}" in figs:
            meta = r["meta"]
            b.append(("h", 3, r["label"]))
            b.append(
                (
                    "p",
                    f"{meta.get('epochs_run')} epochs ({meta.get('stop_reason')}), best epoch "
                    f"{meta.get('best_epoch')} (val loss {_fmt(meta.get('best_val_loss'), 4)}); preset "
                    f"`{meta.get('train_config', {}).get('preset')}`, {meta.get('n_parameters')} parameters.",
                )
            )
            b.append(("img", figs[f"hist:{r['label']}"], f"training curves {r['label']}"))
    return b


def _group_blocks(runs: list[dict[str, Any]]) -> list[Block]:
    """Accuracy by source, luminosity class and E(B-V) range, per S/N_r bin (runs whose metrics have groups)."""
    with_groups = [r for r in runs if r["metrics"].get("groups")]
    if not with_groups:
        return []
    b: list[Block] = [
        ("h", 2, "Where it fails: accuracy by source, luminosity class and E(B-V)"),
        (
            "p",
            "Accuracy (number of labelled objects) per group and S/N_r bin. Sources: the "
            "library of each object's template, `lamost` for real LAMOST spectra; giants have "
            "log g < 3.5.",
        ),
    ]
    heads = ["group", "value", "all"] + [f"S/N_r {k}" for k in SNR_BIN_NAMES]
    for r in with_groups:
        rows = []
        for group, table in r["metrics"]["groups"].items():
            for value, cell in table.items():
                rows.append([group, value, _cell(cell)] + [_cell(cell["bins"][k]) for k in SNR_BIN_NAMES])
        b.append(("h", 3, r["label"]))
        b.append(("table", heads, rows))
    return b


_BIN_HEADS = ["all"] + [f"S/N_r {k}" for k in SNR_BIN_NAMES]


def _row(name: str, by_bin: dict[str, Any], value: Any) -> list[str]:
    """A table row: ``name``, then ``value(cell)`` overall and per S/N_r bin of a ``{"all", "bins"}`` dict."""
    return [name, value(by_bin["all"])] + [value(by_bin["bins"][k]) for k in SNR_BIN_NAMES]


def _share_cell(cell: dict[str, Any]) -> str:
    return f"{_fmt(cell.get('share'))} ({cell.get('k', 0)}/{cell['n']})" if cell.get("n") else "-"


def _catalogue_runs(runs: list[dict[str, Any]], key: str) -> list[tuple[str, dict[str, Any]]]:
    """``(run label, catalogue metrics)`` of the runs whose metrics have a non-empty ``catalogue[key]``."""
    return [
        (r["label"], r["metrics"]["catalogue"])
        for r in runs
        if (r["metrics"].get("catalogue") or {}).get(key) is not None
    ]


def catalogue_blocks(runs: list[dict[str, Any]]) -> list[Block]:
    """Sections for the survey-catalogue metrics (runs evaluated before them have none and are left out)."""
    b: list[Block] = []
    subs = _catalogue_runs(runs, "subclass")
    if subs:
        b += [
            ("h", 2, "Subclass on LAMOST's grid"),
            (
                "p",
                "Subclass head on the F/G/K objects whose subclass is known (its answer whatever class was "
                "predicted), on LAMOST's 24-step grid F0 ... K7; within one = at most one grid step off. "
                "Cells: share (objects).",
            ),
        ]
        for label, c in subs:
            rows = [
                _row("exact", c["subclass"], lambda x: f"{_fmt(x['exact'])} ({x['n']})" if x["n"] else "-"),
                _row(
                    "within one step", c["subclass"], lambda x: f"{_fmt(x['within_one'])} ({x['n']})" if x["n"] else "-"
                ),
            ]
            b += [("h", 3, label), ("table", ["subclass accuracy", *_BIN_HEADS], rows)]
    pars = _catalogue_runs(runs, "params")
    if pars:
        b += [
            ("h", 2, "Stellar parameters"),
            (
                "p",
                "Predicted minus true Teff (K), log g and [Fe/H] (dex) on the F/G/K objects with a known value: "
                "bias = median, std = standard deviation, robust = 1.4826 x median absolute deviation, "
                "sigma = median predicted uncertainty, pull = robust scatter of (pred - true) / sigma (1 when "
                "the uncertainties are right). The truth is the file's `params/teff`, `params/logg`, "
                "`params/feh`: the template's parameters for library stars and, for real LAMOST sources, "
                "LAMOST's own LASP values, so for those it is agreement with LASP, not with an independent "
                "truth.",
            ),
        ]
        for label, c in pars:
            rows = []
            for name, unit, nd in (("teff", "K", 0), ("logg", "dex", 2), ("feh", "dex", 2)):
                cells = c["params"][name]
                for key, what in (
                    ("bias", "bias"),
                    ("std", "std"),
                    ("robust_std", "robust"),
                    ("median_sigma", "sigma"),
                    ("pull_std", "pull"),
                ):
                    rows.append(
                        _row(
                            f"{name} {what}" + ("" if key == "pull_std" else f" ({unit})"),
                            cells,
                            lambda x, key=key, nd=nd: (
                                _fmt(x.get(key), 2 if key == "pull_std" else nd) if x["n"] else "-"
                            ),
                        )
                    )
                rows.append(_row(f"{name} n", cells, lambda x: str(x["n"])))
            b += [("h", 3, label), ("table", ["parameter", *_BIN_HEADS], rows)]
    rej = _catalogue_runs(runs, "rejection")
    if rej:
        b += [
            ("h", 2, "Rejection of objects that are not F/G/K"),
            (
                "p",
                "Share of `other` objects (A, M, O/B stars, galaxies, QSOs, sky fibers) called `other`, per "
                "family (the file's `subclass`), and of F/G/K stars wrongly called `other`. A three-class model "
                "cannot say `other`: its shares are 0. Cells: share (called other / objects).",
            ),
        ]
        for label, c in rej:
            r = c["rejection"]
            rows = [
                _row("other called other", r["other_called_other"], _share_cell),
                _row("F/G/K called other", r["fgk_called_other"], _share_cell),
            ]
            rows += [
                _row(f"{fam} called other", cells, _share_cell)
                for fam, cells in r["by_family"].items()
                if cells["all"]["n"]
            ]
            rows.append(_row("F/G/K accuracy (other = wrong)", c["fgk_accuracy"], _cell))
            b += [("h", 3, label), ("table", ["rejection", *_BIN_HEADS], rows)]
    cals = _catalogue_runs(runs, "calibration")
    if cals:
        b += [
            ("h", 2, "Calibration"),
            (
                "p",
                "Expected calibration error of the top-label probability (15 confidence bins) on the labelled "
                "objects, with plain softmax and with the run's `calibration.json` (temperature per S/N_r bin, "
                "`drcnet calibrate` on the validation split); `-` where the run has no calibration. The floor "
                "is the ECE a perfectly calibrated model with the same confidences would show on a set of "
                "this size (the binned ECE is biased upwards on small sets): an ECE at its floor is as "
                "calibrated as the set can tell.",
            ),
        ]
        for label, c in cals:
            cal = c["calibration"]
            rows = [
                _row("ECE uncalibrated", cal, lambda x: _fmt(x["ece_uncalibrated"]) if x["n"] else "-"),
                _row("ECE calibrated", cal, lambda x: _fmt(x["ece_calibrated"]) if x["n"] else "-"),
                _row("floor, uncalibrated", cal, lambda x: _fmt(x.get("ece_floor_uncalibrated")) if x["n"] else "-"),
                _row("floor, calibrated", cal, lambda x: _fmt(x.get("ece_floor_calibrated")) if x["n"] else "-"),
                _row("objects", cal, lambda x: str(x["n"])),
            ]
            temps = cal.get("temperatures")
            b += [("h", 3, label), ("table", ["calibration", *_BIN_HEADS], rows)]
            if temps:
                b.append(
                    (
                        "p",
                        "Temperatures per S/N_r bin: "
                        + ", ".join(f"{k} {t:.3f}" for k, t in zip(SNR_BIN_NAMES, temps, strict=True))
                        + ".",
                    )
                )
    oods = _catalogue_runs(runs, "ood")
    if oods:
        b += [
            ("h", 2, "Out-of-distribution flag"),
            (
                "p",
                "Share of objects flagged `ood` (energy score of the calibrated logits above the 99th percentile "
                "of the validation objects): over all objects per S/N_r bin, and over all bins by what the "
                "object really is.",
            ),
        ]
        for label, c in oods:
            o = c["ood"]
            rows = [
                _row("all objects", o, _share_cell),
                ["F/G/K", _share_cell(o["fgk"])] + ["" for _ in SNR_BIN_NAMES],
                ["other", _share_cell(o["other"])] + ["" for _ in SNR_BIN_NAMES],
                ["unlabelled", _share_cell(o["unknown"])] + ["" for _ in SNR_BIN_NAMES],
            ]
            b += [("h", 3, label), ("table", ["flagged ood", *_BIN_HEADS], rows)]
    return b


def _cell(cell: dict[str, Any]) -> str:
    return f"{_fmt(cell.get('accuracy'))} ({cell.get('n', 0)})" if cell.get("n") else "-"


def render_markdown(blocks: Sequence[Block]) -> str:
    """Blocks -> Markdown (images linked by file name)."""
    out: list[str] = []
    for blk in blocks:
        if blk[0] == "h":
            out.append("#" * blk[1] + " " + blk[2])
        elif blk[0] == "p":
            out.append(blk[1])
        elif blk[0] == "table":
            heads, rows = blk[1], blk[2]
            out.append("| " + " | ".join(heads) + " |")
            out.append("|" + "|".join("---" for _ in heads) + "|")
            out += ["| " + " | ".join(r) + " |" for r in rows]
        elif blk[0] == "img":
            out.append(f"![{blk[2]}]({blk[1]})")
        out.append("")
    return "\n".join(out)


def _inline_md(text: str) -> str:
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def render_html(blocks: Sequence[Block], folder: Path) -> str:
    """Blocks -> a self-contained HTML page (PNG images embedded as base64)."""
    body: list[str] = []
    for blk in blocks:
        if blk[0] == "h":
            body.append(f"<h{blk[1]}>{html.escape(blk[2])}</h{blk[1]}>")
        elif blk[0] == "p":
            body.append(f"<p>{_inline_md(blk[1])}</p>")
        elif blk[0] == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in blk[1])
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in blk[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif blk[0] == "img":
            data = base64.b64encode((folder / blk[1]).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(blk[2])}" src="data:image/png;base64,{data}">')
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
        "td,th{border:1px solid #bbb;padding:3px 7px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>DRC-Net report</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def make_report(
    run_dirs: Sequence[str | Path], data: str | Path, out: str | Path, split: str = "test"
) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and the PNG figures into ``out``; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = dataset_fingerprint(data)
    runs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for rd in run_dirs:
        info = read_run(rd)
        label = info.label
        k = 2
        while label in seen:
            label, k = f"{info.label} #{k}", k + 1
        seen.add(label)
        metrics, fresh = load_or_evaluate(rd, data, split, fingerprint)
        runs.append(
            {
                "label": label,
                "model": info.model_name,
                "dir": Path(rd),
                "meta": info.meta,
                "metrics": metrics,
                "evaluated_now": fresh,
            }
        )
        write_json_atomic(out / f"metrics_{_slug(label)}.json", metrics)
    figs: dict[str, str] = {}
    curves = {r["label"]: [r["metrics"]["bins"][b]["accuracy"] for b in SNR_BIN_NAMES] for r in runs}
    intervals = {r["label"]: [r["metrics"]["bins"][b].get("accuracy_ci95") for b in SNR_BIN_NAMES] for r in runs}
    drc = next((r["label"] for r in runs if r["model"] == "drcnet"), None)
    rc = next((r["label"] for r in runs if r["model"] == "rcnet"), None)
    plot_accuracy_vs_snr(
        curves,
        SNR_BIN_NAMES,
        out / "fig7_accuracy_vs_snr.png",
        diff_pair=(drc, rc) if drc and rc else None,
        intervals=intervals,
    )
    figs["fig7"] = "fig7_accuracy_vs_snr.png"
    for r in runs:
        name = f"confusion_{_slug(r['label'])}.png"
        panels = {
            f"S/N {k} (n={v['n']})": (v["confusion_matrix"] if v["n"] else None)
            for k, v in r["metrics"]["bins"].items()
        }
        plot_confusions(panels, out / name, suptitle=r["label"], classes=r["metrics"].get("classes", CLASSES))
        figs[f"cm:{r['label']}"] = name
        hist = _read_history(r["dir"])
        if hist:
            name = f"history_{_slug(r['label'])}.png"
            plot_history(hist, out / name, title=r["label"])
            figs[f"hist:{r['label']}"] = name
    blocks = build_blocks(runs, str(data), split, fingerprint, figs)
    prov = provenance({"runs": [str(r["dir"]) for r in runs], "data": str(data), "split": split})
    md = render_markdown(blocks) + f"\n<!-- provenance: {json.dumps(prov)} -->\n"
    paths = {
        "md": write_text_atomic(out / "report.md", md),
        "html": write_text_atomic(
            out / "report.html",
            render_html(blocks, out).replace(
                "</body>", f"<!-- provenance: {html.escape(json.dumps(prov))} -->\n</body>"
            ),
        ),
    }
    write_json_atomic(out / "report_provenance.json", prov)
    return paths
