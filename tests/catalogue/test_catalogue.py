"""Catalogue columns, the prediction table and the survey-catalogue metrics on hand-made model outputs."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from _support.model_fixtures import micro_data  # noqa: F401
from drcnet.calibration import Calibration, softmax
from drcnet.catalogue import CATALOGUE_COLUMNS, catalogue_columns
from drcnet.conventions import SUBCLASSES
from drcnet.inference.table import PRED_COLUMNS, csv_text, prediction_table
from drcnet.metrics import (
    catalogue_metrics,
    evaluate_predictions,
    other_family,
    param_errors,
    rejection_metrics,
    subclass_accuracy,
)

NAN = float("nan")


def four_class_outputs() -> dict[str, np.ndarray]:
    """Three objects of a four-class model with heads: an F star (subclass G2), an ``other``, a damaged input."""
    sub = np.zeros((3, len(SUBCLASSES)))
    sub[:, SUBCLASSES.index("G2")] = 4.0
    return {
        "logits": np.array([[3.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 5.0], [NAN, 0.0, 0.0, 0.0]]),
        "subclass_logits": sub,
        "lum_logits": np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]),
        "params_mean": np.array([[5800.0, 4.4, -0.1], [9000.0, 4.0, 0.0], [NAN, NAN, NAN]]),
        "params_sigma": np.array([[120.0, 0.2, 0.1], [500.0, 1.0, 0.5], [NAN, NAN, NAN]]),
    }


def test_catalogue_columns_of_hand_made_logits():
    c = catalogue_columns(four_class_outputs(), np.array([50.0, 50.0, 50.0]))
    assert set(CATALOGUE_COLUMNS) <= set(c)
    assert c["pred"] == ["F", "other", ""] and list(c["pred_index"]) == [0, 3, -1]
    e3 = math.exp(3.0)
    assert c["prob_F"][0] == pytest.approx(e3 / (e3 + 3)) and c["prob_other"][0] == pytest.approx(1 / (e3 + 3))
    assert c["prob_other"][1] == pytest.approx(math.exp(5) / (math.exp(5) + math.e + 2))
    # the F star gets subclass, luminosity class and parameters; the other object and the damaged one do not
    assert c["subclass"] == ["G2", "", ""] and c["lum_class"] == ["dwarf", "", ""]
    assert c["teff"][0] == 5800.0 and c["teff_err"][0] == 120.0 and c["feh"][0] == -0.1
    assert np.isnan(c["teff"][1:]).all() and np.isnan(c["subclass_prob"][1:]).all()
    # a damaged input: every number NaN, no class, no OOD flag
    assert all(np.isnan(c[k][2]) for k in ("prob_F", "prob_G", "prob_K", "prob_other", "ood_score"))
    assert list(c["ood"]) == [0, 0, 0] and c["pred_set"] == ["", "", ""]


def test_catalogue_columns_of_a_three_class_model_without_heads():
    c = catalogue_columns({"logits": np.array([[0.0, 2.0, 0.0]])}, np.array([12.0]))
    assert c["pred"] == ["G"] and np.isnan(c["prob_other"]).all()
    assert c["subclass"] == [""] and c["lum_class"] == [""] and np.isnan(c["teff"]).all()
    assert c["ood_score"][0] == pytest.approx(-math.log(math.exp(2) + 2))


def test_calibration_changes_probabilities_not_classes_and_flags_ood():
    out = four_class_outputs()
    snr = np.array([50.0, 5.0, 50.0])
    cal = Calibration(temperatures=[2.0, 1.0, 1.0, 0.5], ood_threshold=-4.0, conformal_qhat=0.5, coverage=0.9)
    c = catalogue_columns(out, snr, cal)
    raw = catalogue_columns(out, snr)
    assert c["pred"] == raw["pred"]
    assert c["prob_F"][0] == pytest.approx(softmax(out["logits"][:1], 2.0)[0, 0])
    assert c["prob_other"][1] == pytest.approx(softmax(out["logits"][1:2], 0.5)[0, 3])
    # energy -T logsumexp(l / T): the F star -2 log(e^1.5 + 3) = -4.03, the other object about -5.0
    assert c["ood_score"][0] == pytest.approx(-2 * math.log(math.exp(1.5) + 3))
    assert list(c["ood"]) == [0, 0, 0]
    cal.ood_threshold = -4.5
    assert list(catalogue_columns(out, snr, cal)["ood"]) == [1, 0, 0]
    # the conformal set holds every class with 1 - p <= 0.5
    assert c["pred_set"][0] == "F" and c["pred_set"][1] == "other" and c["pred_set"][2] == ""


def test_prediction_table_header_and_rows():
    pred = {
        "object_id": ["a", "b", "c"],
        "label": np.array([0, 3, -1]),
        "snr_r": np.array([50.0, 50.0, 9.5]),
        "prob": softmax(np.nan_to_num(four_class_outputs()["logits"])),
        "outputs": four_class_outputs(),
    }
    text = csv_text(prediction_table(pred))
    assert text.splitlines()[0] == (
        "object_id,label,pred,prob_F,prob_G,prob_K,prob_other,pred_set,subclass,subclass_prob,lum_class,"
        "teff,teff_err,logg,logg_err,feh,feh_err,ood_score,ood,snr_r,bad_input"
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == PRED_COLUMNS
    assert [r["label"] for r in rows] == ["F", "other", ""] and [r["pred"] for r in rows] == ["F", "other", ""]
    assert rows[0]["subclass"] == "G2" and rows[0]["teff"] == "5800.0" and rows[0]["logg_err"] == "0.2000"
    assert rows[1]["subclass"] == "" and rows[1]["teff"] == "nan"
    assert [r["bad_input"] for r in rows] == ["0", "0", "1"] and rows[2]["prob_F"] == "nan"
    assert rows[2]["snr_r"] == "9.500"


def test_subclass_accuracy_within_one_step_hand_counts():
    # true and predicted grid indices; -1 is unknown (left out)
    true = [0, 5, 5, 10, 23, -1, 7]
    pred = [0, 6, 7, 10, 22, 3, -1]
    m = subclass_accuracy(true, pred)
    assert m["n"] == 5 and m["n_exact"] == 2 and m["n_within_one"] == 4
    assert m["exact"] == pytest.approx(0.4) and m["within_one"] == pytest.approx(0.8)
    assert subclass_accuracy([-1], [0]) == {"n": 0, "exact": None, "within_one": None, "n_exact": 0, "n_within_one": 0}


def test_param_errors_hand_computed():
    m = param_errors([5001.0, 4999.0, 5003.0, 5100.0, NAN], [5000.0] * 5, sigma=[1.0, 1.0, 1.0, 100.0, 1.0])
    # d = 1, -1, 3, 100: median 2; |d - 2| = 1, 3, 1, 98: median 2
    assert m["n"] == 4 and m["bias"] == pytest.approx(2.0)
    assert m["std"] == pytest.approx(np.std([1, -1, 3, 100], ddof=1))
    assert m["robust_std"] == pytest.approx(1.4826 * 2.0)
    # pulls d / sigma = 1, -1, 3, 1: median 1, |z - 1| = 0, 2, 2, 0: median 1
    assert m["median_sigma"] == pytest.approx(1.0) and m["pull_std"] == pytest.approx(1.4826)
    assert param_errors([NAN], [1.0])["bias"] is None


def test_other_family_and_rejection_hand_counts():
    assert [other_family(s) for s in ("A7", "a0", "M2", "O9.5", "B7", "GALAXY", "QSO", "SKY", "WD", "Mira")] == [
        "A",
        "A",
        "M",
        "O/B",
        "O/B",
        "GALAXY",
        "QSO",
        "SKY",
        "rest",
        "rest",
    ]
    label = np.array([3, 3, 3, 0, 1, 2, 3, -1])
    pred = np.array([3, 0, 3, 3, 1, 2, -1, 3])
    sbin = np.array([0, 0, 3, 0, 3, 3, 0, 0])
    fam = ["A", "A", "SKY", "", "", "", "A", ""]
    r = rejection_metrics(label, pred, sbin, fam)
    # other objects classified: 3 (one not classified); 2 called other
    assert r["other_called_other"]["all"]["n"] == 3 and r["other_called_other"]["all"]["k"] == 2
    assert r["other_called_other"]["bins"][">30"]["share"] == pytest.approx(0.5)
    assert r["fgk_called_other"]["all"]["share"] == pytest.approx(1 / 3)
    assert r["fgk_called_other"]["bins"]["<10"]["share"] == 0.0
    assert r["by_family"]["A"]["all"]["share"] == pytest.approx(0.5) and r["by_family"]["SKY"]["all"]["share"] == 1.0
    assert r["by_family"]["QSO"]["all"]["n"] == 0 and r["by_family"]["QSO"]["all"]["share"] is None


def test_three_class_accuracy_ignores_other_objects_and_catalogue_metrics_degrade_gracefully():
    logits = np.array([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0], [2.0, 0, 0]])
    pred = {
        "label": np.array([0, 1, 1, 3]),
        "pred": logits.argmax(1),
        "snr_bin": np.zeros(4, int),
        "snr_r": np.full(4, 40.0),
        "valid": np.ones(4, bool),
        "prob": softmax(logits),
        "outputs": {"logits": logits},
    }
    m = evaluate_predictions(pred)
    assert m["all"]["n"] == 3 and m["all"]["accuracy"] == pytest.approx(2 / 3)  # the other object is left out
    targets = np.full((4, 5), np.nan)
    targets[:, :2] = -1
    c = catalogue_metrics(pred, targets, ["F5", "G2", "G8", "A1"])
    assert c["subclass"] is None and c["params"] is None and c["ood"] is None
    assert c["fgk_accuracy"]["all"]["accuracy"] == pytest.approx(2 / 3)
    assert c["rejection"]["other_called_other"]["all"] == {
        "n": 1,
        "k": 0,
        "share": 0.0,
        "share_ci95": c["rejection"]["other_called_other"]["all"]["share_ci95"],
    }
    assert c["calibration"]["calibrated"] is False and c["calibration"]["all"]["n"] == 3
    assert c["calibration"]["all"]["ece_calibrated"] is None


def test_catalogue_metrics_with_heads():
    out = four_class_outputs()
    out["logits"][2] = [0.0, 0.0, 4.0, 0.0]  # a K star
    pred = {
        "label": np.array([0, 3, 2]),
        "pred": np.array([0, 3, 2]),
        "snr_bin": np.array([0, 0, 3]),
        "snr_r": np.array([50.0, 50.0, 5.0]),
        "valid": np.ones(3, bool),
        "prob": softmax(out["logits"]),
        "outputs": out,
    }
    targets = np.array(
        [
            [SUBCLASSES.index("G1"), 0, 5700.0, 4.3, 0.0],
            [-1, -1, NAN, NAN, NAN],
            [SUBCLASSES.index("K5"), 0, 4400.0, 4.6, -0.5],
        ]
    )
    cal = Calibration(temperatures=[1.0] * 4, ood_threshold=0.0)
    c = catalogue_metrics(pred, targets, ["F5", "A1", "K5"], cal)
    # the subclass head says G2 for all: one step from G1 (object 0), far from K5 (object 2)
    assert c["subclass"]["all"]["n"] == 2 and c["subclass"]["all"]["n_exact"] == 0
    assert c["subclass"]["all"]["n_within_one"] == 1 and c["subclass"]["bins"][">30"]["within_one"] == 1.0
    assert c["params"]["teff"]["bins"][">30"]["bias"] == pytest.approx(100.0)
    assert c["rejection"]["by_family"]["A"]["all"]["share"] == 1.0
    assert c["ood"]["all"]["n"] == 3 and c["ood"]["other"]["n"] == 1


SMALL_HEADS = {
    "backbone_channels": [4, 4, 8, 8, 8, 8, 16, 16],
    "fusion_channels": [4, 4],
    "fc_widths": [32, 16],
    "heads": True,
    "n_classes": 4,
}


def test_every_model_output_reaches_the_prediction(micro_data):
    import h5py
    import torch

    from drcnet.inference.engine import predict_arrays, predict_arrays_all, predict_dataset
    from drcnet.models import create_model

    torch.manual_seed(0)
    model = create_model("drcnet", **SMALL_HEADS)
    ref = predict_dataset(model, micro_data, "val", workers=0)
    out = ref["outputs"]
    n = len(ref["object_id"])
    assert {"logits", "subclass_logits", "lum_logits", "params_mean", "params_sigma"} <= set(out)
    assert out["logits"].shape == (n, 4) and out["subclass_logits"].shape == (n, len(SUBCLASSES))
    assert out["params_mean"].shape == (n, 3) and ref["prob"].shape == (n, 4)
    assert np.allclose(ref["prob"], softmax(out["logits"]), atol=1e-6)
    with h5py.File(micro_data) as h:
        stripes = h["stripes"][ref["rows"][0] : ref["rows"][-1] + 1].astype(np.float32)
    stripes[1, 0, 3, 100] = np.nan  # a damaged input: NaN in every output
    arr = predict_arrays_all(model, stripes=stripes, batch_size=3)
    assert set(arr) == set(out)
    keep = np.arange(n) != 1
    for name in out:
        assert np.allclose(arr[name][keep], out[name][keep], rtol=1e-4, atol=1e-3), name
        assert np.isnan(arr[name][1]).all()
    assert np.allclose(predict_arrays(model, stripes=stripes)[keep], ref["prob"][keep], atol=1e-5)
    one = predict_arrays_all(model, stripes=stripes[0])
    assert one["logits"].shape == (4,) and np.allclose(one["logits"], out["logits"][0], atol=1e-4)
    rows = list(csv.DictReader(io.StringIO(csv_text(prediction_table(ref)))))
    assert all(r["prob_other"] != "nan" and r["teff"] != "nan" or r["pred"] == "other" for r in rows)
    assert all((r["subclass"] in SUBCLASSES) == (r["pred"] != "other") for r in rows)


def test_prediction_table_from_probabilities_only():
    # a prediction dict without raw outputs (older callers): the probabilities are kept as they are
    pred = {
        "object_id": ["a", "b"],
        "label": np.array([0, -1]),
        "snr_r": np.array([40.0, 5.0]),
        "prob": np.array([[0.7, 0.3, 0.0], [NAN, NAN, NAN]]),
    }
    rows = list(csv.DictReader(io.StringIO(csv_text(prediction_table(pred)))))
    assert [r["pred"] for r in rows] == ["F", ""] and [r["bad_input"] for r in rows] == ["0", "1"]
    assert [rows[0][f"prob_{c}"] for c in ("F", "G", "K", "other")] == ["0.700000", "0.300000", "0.000000", "nan"]
