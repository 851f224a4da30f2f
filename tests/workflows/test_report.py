"""Report: Markdown + HTML with the paper's tables, Figure 7, confusion matrices and curves."""

from __future__ import annotations

import base64
import re

from _support.model_fixtures import cli, cli_runs, micro_data  # noqa: F401
from drcnet.paper import PAPER_TABLE3


def test_cli_report_over_two_runs(cli_runs, micro_data, tmp_path):
    out = tmp_path / "report"
    # the RC-Net run has no metrics.json: evaluated on the fly; DRC-Net's is evaluated beforehand
    cli("evaluate", cli_runs["drcnet"], "--data", micro_data)
    cli("report", cli_runs["drcnet"], cli_runs["rcnet"], "--data", micro_data, "--out", out)
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for head in ("Table 3", "Tables 4-5", "Figure 7", "Confusion matrices", "Training curves"):
        assert head in md and head in html
    # survey-catalogue sections: three-class models without heads have rejection and calibration, no subclass
    for head in ("Rejection of objects that are not F/G/K", "## Calibration"):
        assert head in md
    assert "Subclass on LAMOST" not in md and "Out-of-distribution flag" not in md
    assert md.count("| F/G/K called other | 0.000 (0/") == 2  # a three-class model never says other
    assert md.count("| ECE calibrated | - |") == 2  # no calibration.json in either run
    # our rows and the paper's published rows
    assert "| drcnet (drcnet) |" in md and "| rcnet (rcnet) |" in md
    assert "| DRC-Net (paper) | 0.930 | 0.816 | 0.869 | 0.835 | 0.925 | 0.878 | 0.869 | 0.785 | 0.825 | 0.866 |" in md
    assert f"{PAPER_TABLE3['rcnet']['ACC']:.3f}" in md and f"{PAPER_TABLE3['ffcnn']['ACC']:.3f}" in md
    assert "+0.6" in md and "-6.6" in md and "+6.5" in md
    # markdown links PNG files beside it; the HTML embeds the same images
    images = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)
    assert "fig7_accuracy_vs_snr.png" in images and len(images) == 5  # fig7 + 2 confusion + 2 curves
    for name in images:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(embedded) == len(images)
    assert base64.b64decode(embedded[0])[:4] == b"\x89PNG"
    assert "<table>" in html and "provenance" in html
    # a table row per S/N bin for each run
    assert md.count("| <10 |") == 2 and md.count("| 20-30 |") == 2
    # each bin's accuracy sits inside its 95 % interval, which is the one metrics.json holds
    metrics = (cli_runs["drcnet"] / "metrics.json").read_text()
    rows = re.findall(r"\| (>30|20-30|10-20|<10) \| (\d+) \| ([0-9.]+) \| ([0-9.]+)-([0-9.]+) \|", md)
    assert len(rows) == 8, rows
    for _, n, acc, lo, hi in rows:
        assert int(n) > 0 and float(lo) <= float(acc) <= float(hi) and float(hi) - float(lo) < 1
    assert '"accuracy_ci95"' in metrics
    # then the number of source spectra and the interval counted by source: the synthetic file's objects
    # come from 3 sources (one per class), too few for an interval
    rows = re.findall(
        r"\| (>30|20-30|10-20|<10) \| \d+ \| [0-9.]+ \| [0-9.]+-[0-9.]+ \| (\d+) \| (-|[0-9.]+-[0-9.]+) \|", md
    )
    assert len(rows) == 8, rows
    assert all(1 <= int(n_src) <= 3 and ci == "-" for _, n_src, ci in rows), rows
    # the calibration table gives the ECE floor of each run's set
    assert md.count("| floor, uncalibrated | 0.") == 2
