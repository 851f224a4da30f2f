"""Evaluation and prediction: hand-computed metrics, metrics.json, predictions CSV, predict_arrays."""

from __future__ import annotations

import csv
import json
import math

import h5py
import numpy as np
import pytest

from _support.model_fixtures import cli, cli_runs, micro_data  # noqa: F401
from drcnet.inference.engine import predict_arrays, predict_dataset
from drcnet.inference.table import PRED_COLUMNS
from drcnet.metrics import MIN_SOURCES, accuracy_interval, classification_metrics, evaluate_predictions
from drcnet.models import load_run


def test_metrics_match_hand_computed_values():
    # true (F=0, G=1, K=2; -1 unknown is ignored) and predicted classes
    y_true = [0, 0, 0, 1, 1, 2, 2, 2, 2, -1]
    y_pred = [0, 1, 0, 1, 1, 2, 2, 0, 2, 1]
    # confusion matrix, rows true F, G, K; columns predicted F, G, K:
    #   F: 2 1 0
    #   G: 0 2 0
    #   K: 1 0 3
    m = classification_metrics(y_true, y_pred)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 3]]
    assert m["n"] == 9
    assert m["accuracy"] == pytest.approx(7 / 9)
    pc = m["per_class"]
    # precision = diagonal / column sum: F 2/3, G 2/3, K 3/3
    assert pc["F"]["precision"] == pytest.approx(2 / 3)
    assert pc["G"]["precision"] == pytest.approx(2 / 3)
    assert pc["K"]["precision"] == pytest.approx(1.0)
    # recall = diagonal / row sum: F 2/3, G 2/2, K 3/4
    assert pc["F"]["recall"] == pytest.approx(2 / 3)
    assert pc["G"]["recall"] == pytest.approx(1.0)
    assert pc["K"]["recall"] == pytest.approx(3 / 4)
    # F1 = 2PR / (P + R): F 2/3, G 2(2/3)(1)/(5/3) = 0.8, K 2(1)(3/4)/(7/4) = 6/7
    assert pc["F"]["f1"] == pytest.approx(2 / 3)
    assert pc["G"]["f1"] == pytest.approx(0.8)
    assert pc["K"]["f1"] == pytest.approx(6 / 7)
    assert [pc[c]["support"] for c in "FGK"] == [3, 2, 4]


def test_accuracy_interval_is_the_wilson_score_interval():
    # Wilson (1927): (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z = 1.95996 for 95 %
    z = 1.959963984540054
    for k, n in ((7, 9), (548, 605), (0, 2), (40, 40)):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        lo, hi = accuracy_interval(k, n)
        assert lo == pytest.approx(centre - half, abs=1e-9) and hi == pytest.approx(centre + half, abs=1e-9)
        assert 0 <= lo <= p <= hi <= 1
    lo, hi = accuracy_interval(548, 605)  # 90.6 % on the paper's 605 test objects at S/N > 30
    assert 0.023 < (hi - lo) / 2 < 0.024
    m = classification_metrics([0, 1, 2, 0, 1, 2, 0, 1, 2], [0, 1, 2, 0, 1, 2, 0, 0, 0])
    assert m["accuracy_ci95"] == pytest.approx(accuracy_interval(7, 9))
    assert accuracy_interval(0, 0) is None and classification_metrics([-1], [0])["accuracy_ci95"] is None


def test_zero_division_and_empty_bins_give_zero_or_none():
    m = classification_metrics([0, 0], [1, 1])  # nothing predicted F, no true G
    assert m["accuracy"] == 0.0
    assert m["per_class"]["F"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert m["per_class"]["G"]["precision"] == 0.0 and m["per_class"]["G"]["recall"] == 0.0
    empty = classification_metrics([-1], [0])
    assert empty["n"] == 0 and empty["accuracy"] is None


def test_metrics_per_snr_bin():
    pred = {
        "label": np.array([0, 1, 2, 0, 1, 2, -1]),
        "pred": np.array([0, 1, 1, 0, 0, 2, 2]),
        "snr_bin": np.array([0, 0, 0, 3, 3, 3, 3]),
    }
    m = evaluate_predictions(pred)
    assert m["table3"]["accuracy"] == pytest.approx(2 / 3) and m["table3"]["n"] == 3
    assert m["bins"][">30"]["accuracy"] == m["table3"]["accuracy"]
    assert m["bins"]["<10"]["accuracy"] == pytest.approx(2 / 3)
    assert m["bins"]["20-30"]["n"] == 0 and m["bins"]["20-30"]["accuracy"] is None
    assert m["counts"]["<10"] == {"objects": 4, "labelled": 3, "bad_input": 0}
    assert m["all"]["accuracy"] == pytest.approx(4 / 6)


def test_cli_evaluate_writes_paper_metrics(cli_runs, micro_data, tmp_path):
    out = tmp_path / "ev"
    cli("evaluate", cli_runs["drcnet"], "--data", micro_data, "--out", out)
    m = json.loads((out / "metrics.json").read_text())
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert m["model"] == "drcnet" and m["split"] == "test" and m["provenance"]["package"] == "drcnet"
    assert list(m["bins"]) == [">30", "20-30", "10-20", "<10"]
    with h5py.File(micro_data) as h:
        test = h["split"][:] == 2
        lab = h["label"][:]
        sbin = h["snr_bin"][:]
    for b, name in enumerate(m["bins"]):
        sel = test & (sbin == b)
        assert m["counts"][name]["objects"] == int(sel.sum())
        assert m["bins"][name]["n"] == int((sel & (lab >= 0)).sum())
        cm = np.array(m["bins"][name]["confusion_matrix"])
        assert cm.sum() == m["bins"][name]["n"]
        assert m["bins"][name]["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
        for c in m["bins"][name]["per_class"].values():
            assert 0 <= c["precision"] <= 1 and 0 <= c["recall"] <= 1 and 0 <= c["f1"] <= 1
    assert m["table3"]["n"] == m["bins"][">30"]["n"]


def test_cli_predict_csv(cli_runs, micro_data, tmp_path):
    out = tmp_path / "preds.csv"
    cli("predict", cli_runs["rcnet"], "--data", micro_data, "--split", "test", "--out", out)
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == PRED_COLUMNS
    assert out.read_text().splitlines()[0] == (
        "object_id,label,pred,prob_F,prob_G,prob_K,prob_other,pred_set,subclass,subclass_prob,lum_class,"
        "teff,teff_err,logg,logg_err,feh,feh_err,ood_score,ood,snr_r,bad_input"
    )
    with h5py.File(micro_data) as h:
        test = np.flatnonzero(h["split"][:] == 2)
        labels = h["label"][:][test]
        ids = [v.decode() for v in h["object_id"][:][test]]
    assert [r["object_id"] for r in rows] == ids
    assert (labels == -1).any()
    for r, lab in zip(rows, labels):
        assert r["label"] == ("" if lab < 0 else "FGK"[lab])
        probs = [float(r[f"prob_{c}"]) for c in "FGK"]
        assert all(0 <= p <= 1 for p in probs) and sum(probs) == pytest.approx(1, abs=1e-5)
        assert r["pred"] == "FGK"[int(np.argmax(probs))]
        assert float(r["snr_r"]) > 0
        # a three-class model without catalogue heads and without calibration: no other, no subclass, no OOD flag
        assert r["prob_other"] == "nan" and r["subclass"] == "" and r["lum_class"] == "" and r["pred_set"] == ""
        assert r["teff"] == "nan" and r["feh_err"] == "nan" and r["ood"] == "0" and r["bad_input"] == "0"
        assert math.isfinite(float(r["ood_score"]))


@pytest.mark.parametrize("name", ["drcnet", "rcnet"])
def test_predict_arrays_equals_dataset_prediction(cli_runs, micro_data, name):
    model, _ = load_run(cli_runs[name])
    ref = predict_dataset(model, micro_data, "val", workers=0)
    with h5py.File(micro_data) as h:
        rows = np.flatnonzero(h["split"][:] == 1)
        if name == "drcnet":
            probs = predict_arrays(model, stripes=h["stripes"][rows[0] : rows[-1] + 1], batch_size=3)
            one = predict_arrays(model, stripes=h["stripes"][rows[0]])
        else:
            sl = slice(rows[0], rows[-1] + 1)
            probs = predict_arrays(model, flux1d=h["flux1d"][sl], sky1d=h["sky1d"][sl], batch_size=3)
            one = predict_arrays(model, flux1d=h["flux1d"][rows[0]], sky1d=h["sky1d"][rows[0]])
    assert probs.shape == (len(rows), 3)
    assert np.allclose(probs, ref["prob"], atol=1e-5)
    assert np.allclose(one, probs[0], atol=1e-5)
    with pytest.raises(ValueError, match="takes"):
        predict_arrays(model)


def test_group_metrics_match_hand_counts():
    from drcnet.metrics import group_metrics

    label = np.array([0, 1, 2, 0, 1, -1])
    pred = np.array([0, 2, 2, 1, 1, 0])
    sbin = np.array([0, 0, 3, 3, 0, 0])
    g = group_metrics(label, pred, sbin, {"source": ["miles", "miles", "lamost", "lamost", "miles", "miles"]})
    miles, lamost = g["source"]["miles"], g["source"]["lamost"]
    assert miles["n"] == 3 and miles["accuracy"] == pytest.approx(2 / 3)  # the unlabelled object is left out
    assert miles["bins"][">30"]["n"] == 3 and miles["bins"]["<10"] == {"n": 0, "accuracy": None, "accuracy_ci95": None}
    assert lamost["n"] == 2 and lamost["accuracy"] == pytest.approx(0.5) and lamost["bins"]["<10"]["accuracy"] == 0.5
    assert lamost["accuracy_ci95"][0] < 0.5 < lamost["accuracy_ci95"][1]


def test_luminosity_class_and_reddening_ranges():
    from drcnet.data.groups import ebv_range_of, lum_class_of

    assert [lum_class_of(x) for x in (2.7, 3.49, 3.5, 4.6)] == ["giant", "giant", "dwarf", "dwarf"]
    assert lum_class_of(float("nan"), "III") == "giant" and lum_class_of(float("nan"), "IV") == "dwarf"
    assert lum_class_of(float("nan"), "") == "unknown"
    assert [ebv_range_of(x) for x in (0.0, 0.099, 0.1, 0.45, 0.6, 1.2, float("nan"))] == [
        "0-0.1",
        "0-0.1",
        "0.1-0.3",
        "0.3-0.6",
        ">=0.6",
        ">=0.6",
        "unknown",
    ]


def test_cli_evaluate_reports_accuracy_by_source(cli_runs, micro_data, tmp_path):
    out = tmp_path / "ev"
    cli("evaluate", cli_runs["drcnet"], "--data", micro_data, "--out", out)
    m = json.loads((out / "metrics.json").read_text())
    # every test object of the synthetic file comes from the "synthetic" source with unknown log g and E(B-V)
    assert set(m["groups"]) == {"source", "lum_class", "ebv"}
    assert list(m["groups"]["source"]) == ["synthetic"] and m["groups"]["source"]["synthetic"]["n"] == m["all"]["n"]
    assert m["groups"]["source"]["synthetic"]["accuracy"] == pytest.approx(m["all"]["accuracy"])
    assert list(m["groups"]["lum_class"]) == ["unknown"] and list(m["groups"]["ebv"]) == ["unknown"]
    # the interval counted by source spectrum covers the same objects, each source once
    with h5py.File(micro_data) as h:
        n_test_sources = len(set(h["template_id"][:][h["split"][:] == 2].tolist()))
    by_src = m["by_source_spectrum"]["all"]
    assert by_src["n"] == m["all"]["n"] and by_src["n_sources"] == n_test_sources
    assert by_src["accuracy"] == pytest.approx(m["all"]["accuracy"])
    if n_test_sources >= MIN_SOURCES:
        lo, hi = by_src["accuracy_ci95_by_source"]
        assert lo <= by_src["accuracy"] <= hi
    else:  # too few source spectra for an interval
        assert by_src["accuracy_ci95_by_source"] is None


def test_clustered_interval_counts_sources_not_renders():
    from drcnet.metrics import clustered_accuracy_interval, source_clustered_accuracy

    rng = np.random.default_rng(0)
    right = (rng.random(60) < 0.8).astype(float)
    once = clustered_accuracy_interval(right, np.arange(60), seed=1)
    # the same 60 stars rendered 10 times each: the same resampled stars, so exactly the same interval,
    # while the Wilson interval of the 600 renders is about sqrt(10) narrower
    tenfold = clustered_accuracy_interval(np.repeat(right, 10), np.repeat(np.arange(60), 10), seed=1)
    assert tenfold == pytest.approx(once)
    acc = right.mean()
    assert once[0] < acc < once[1]
    wilson = accuracy_interval(int(right.sum()) * 10, 600)
    assert (once[1] - once[0]) > 2.5 * (wilson[1] - wilson[0])
    assert clustered_accuracy_interval([], []) is None
    # per bin: counts, distinct sources, accuracy; unlabelled and unanswered objects left out
    label = np.array([0, 0, 1, 1, 2, -1, 2])
    pred = np.array([0, 1, 1, 1, 2, 0, -1])
    sbin = np.array([0, 0, 0, 3, 3, 3, 3])
    src = np.array(["a", "a", "b", "c", "c", "d", "e"])
    m = source_clustered_accuracy(label, pred, sbin, src)
    assert (m["all"]["n"], m["all"]["n_sources"], m["all"]["accuracy"]) == (5, 3, pytest.approx(0.8))
    assert (m["bins"][">30"]["n"], m["bins"][">30"]["n_sources"]) == (3, 2)
    # one or two sources give no interval
    assert m["bins"]["<10"]["accuracy"] == 1.0 and m["bins"]["<10"]["accuracy_ci95_by_source"] is None
    # every render right: the bootstrap has no width, so each of the 8 sources counts as one Wilson draw
    assert clustered_accuracy_interval(np.ones(40), np.repeat(np.arange(8), 5)) == pytest.approx(
        accuracy_interval(8, 8)
    )
    assert clustered_accuracy_interval(np.ones(40), np.repeat(np.arange(8), 5))[0] < 0.8
    assert m["bins"]["20-30"] == {"n": 0, "n_sources": 0, "accuracy": None, "accuracy_ci95_by_source": None}


def test_evaluate_leaves_out_classes_the_model_does_not_have(cli_runs, micro_data, tmp_path):
    # a three-class model on a file with 'other' objects: every metric counts the same F/G/K objects
    data = tmp_path / "with_other.h5"
    data.write_bytes(micro_data.read_bytes())
    with h5py.File(data, "r+") as h:
        label = h["label"][:]
        test = np.flatnonzero(h["split"][:] == 2)
        label[test[::4]] = 3
        h["label"][...] = label
        n_fgk = int(((label[test] >= 0) & (label[test] < 3)).sum())
    out = tmp_path / "ev"
    cli("evaluate", cli_runs["drcnet"], "--data", data, "--out", out)
    m = json.loads((out / "metrics.json").read_text())
    assert m["all"]["n"] == n_fgk
    assert m["by_source_spectrum"]["all"]["n"] == n_fgk
    assert m["by_source_spectrum"]["all"]["accuracy"] == pytest.approx(m["all"]["accuracy"])
    assert sum(cell["n"] for cell in m["groups"]["source"].values()) == n_fgk
