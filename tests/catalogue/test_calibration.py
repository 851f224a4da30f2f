"""Calibration: temperature scaling, ECE, conformal sets, OOD threshold (analytic truths), ``drcnet calibrate``."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from _support.model_fixtures import cli, cli_runs, micro_data  # noqa: F401
from drcnet.calibration import (
    CALIBRATION_JSON,
    Calibration,
    energy,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    load_calibration,
    save_calibration,
    softmax,
)


def draw(
    n: int, k: float | np.ndarray, seed: int, n_classes: int = 3, scale: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``z`` ``(n, C)`` and labels drawn from ``softmax(z * k)`` (the true temperature is ``1 / k``)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, scale, size=(n, n_classes))
    p = softmax(z * np.broadcast_to(np.asarray(k, float), (n,))[:, None])
    u = rng.random(n)[:, None]
    labels = (u > np.cumsum(p, axis=1)).sum(axis=1)
    return z, np.minimum(labels, n_classes - 1)


@pytest.mark.parametrize("k", [0.5, 2.0])
def test_temperature_fit_recovers_the_generating_temperature(k):
    z, y = draw(20000, k, seed=1)
    assert fit_temperature(z, y) == pytest.approx(1.0 / k, rel=0.06)


def test_ece_is_small_for_calibrated_and_large_for_over_confident_probabilities():
    z, y = draw(20000, 1.0, seed=2)
    assert expected_calibration_error(softmax(z), y) < 0.02
    z, y = draw(20000, 0.3, seed=3)  # the truth is much less sure than softmax(z) says
    ece = expected_calibration_error(softmax(z), y)
    assert ece > 0.15
    # temperature scaling repairs it
    assert expected_calibration_error(softmax(z, fit_temperature(z, y)), y) < 0.02
    assert np.isnan(expected_calibration_error(np.zeros((0, 3)), np.zeros(0, int)))


def test_ece_hand_computed():
    # two confidence bins: 0.9 (2 objects, 1 right) and 0.6 (1 object, right)
    prob = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.2, 0.6, 0.2]])
    y = np.array([0, 1, 1])
    assert expected_calibration_error(prob, y) == pytest.approx(2 / 3 * abs(0.5 - 0.9) + 1 / 3 * abs(1.0 - 0.6))


def _snr_per_bin(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice([50.0, 25.0, 15.0, 5.0], size=n)


def test_fit_calibration_per_snr_bin_and_conformal_coverage():
    rng = np.random.default_rng(4)
    n = 8000
    snr = _snr_per_bin(n, rng)
    k = np.select([snr > 30, snr > 20, snr > 10], [2.0, 1.0, 0.7], 0.4)  # more over-confident at low S/N
    z, y = draw(n, k, seed=5)
    fit, test = slice(0, n // 2), slice(n // 2, n)
    cal = fit_calibration(z[fit], y[fit], snr[fit], coverage=0.9, provenance={"split": "val"})
    assert cal.temperatures == pytest.approx([0.5, 1.0, 1 / 0.7, 2.5], rel=0.12)
    assert sum(cal.n_objects) == n // 2 and cal.provenance == {"split": "val"}
    for before, after in zip(cal.ece_before, cal.ece_after, strict=True):
        assert after <= before + 0.01 and after < 0.04
    # split-conformal coverage on the held-out half
    for coverage in (0.9, 0.8):
        c = fit_calibration(z[fit], y[fit], snr[fit], coverage=coverage)
        sets = c.prediction_sets(c.probabilities(z[test], snr[test]))
        covered = sets[np.arange(n // 2), y[test]].mean()
        assert covered == pytest.approx(coverage, abs=0.03)
    # 1 % of the fitting objects lie above the OOD threshold
    assert (cal.ood_score(z[fit], snr[fit]) > cal.ood_threshold).mean() == pytest.approx(0.01, abs=0.005)
    # temperature scaling never changes the predicted class
    assert (cal.probabilities(z, snr).argmax(1) == z.argmax(1)).all()
    # temperature="none": the model's own probabilities, the thresholds fitted on them
    plain = fit_calibration(z[fit], y[fit], snr[fit], coverage=0.9, temperature="none")
    assert plain.temperatures == [1.0, 1.0, 1.0, 1.0] and plain.ece_after == plain.ece_before
    np.testing.assert_allclose(plain.probabilities(z[test], snr[test]), softmax(z[test]))
    assert plain.ood_threshold == pytest.approx(float(np.quantile(energy(z[fit]), 0.99)))
    assert plain.ood_threshold != pytest.approx(cal.ood_threshold)
    sets = plain.prediction_sets(softmax(z[test]))
    assert sets[np.arange(n // 2), y[test]].mean() == pytest.approx(0.9, abs=0.03)
    with pytest.raises(ValueError, match=r"temperature must be one of \('per-bin', 'none'\), got 'global'"):
        fit_calibration(z[fit], y[fit], snr[fit], temperature="global")


def test_fit_calibration_small_bins_use_the_global_temperature_and_bad_input_is_refused():
    z, y = draw(300, 1.0, seed=6)
    snr = np.full(300, 50.0)
    snr[:10] = 5.0  # 10 objects in the lowest bin: below min_objects, the all-object temperature
    cal = fit_calibration(z, y, snr, coverage=None)
    assert cal.temperatures[3] == pytest.approx(fit_temperature(z, y))
    assert cal.conformal_qhat is None and cal.prediction_sets(softmax(z)) is None
    with pytest.raises(ValueError, match="do not match"):
        fit_calibration(z, y[:-1], snr)
    with pytest.raises(ValueError, match="no labelled object"):
        fit_calibration(np.zeros((0, 3)), np.zeros(0, int), np.zeros(0))
    with pytest.raises(ValueError, match="coverage"):
        fit_calibration(z, y, snr, coverage=1.5)


def test_calibration_json_round_trip(tmp_path):
    assert load_calibration(tmp_path) is None
    cal = Calibration(
        temperatures=[1.0, 1.5, 2.0, 3.0],
        ood_threshold=-1.2,
        conformal_qhat=0.7,
        coverage=0.9,
        provenance={"split": "val"},
    )
    path = save_calibration(tmp_path, cal)
    assert path.name == CALIBRATION_JSON and load_calibration(tmp_path) == cal
    path.write_text('{"temperature": 1}')
    with pytest.raises(ValueError, match="calibration.json: not a drcnet calibration"):
        load_calibration(tmp_path)


def _probs(path) -> tuple[np.ndarray, list[str]]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return np.array([[float(r[f"prob_{c}"]) for c in "FGK"] for r in rows]), [r["pred"] for r in rows]


def test_cli_calibrate_writes_calibration_and_predict_uses_it(cli_runs, micro_data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(cli_runs["drcnet"], run)
    out = cli("calibrate", run, "--data", micro_data, "--split", "val", "--coverage", "0.8")
    assert "ECE before" in out and ">30" in out and "calibration.json" in out
    values = json.loads((run / CALIBRATION_JSON).read_text())
    prov = values["provenance"]
    assert prov["split"] == "val" and prov["package"] == "drcnet" and prov["version"] and prov["git_commit"]
    assert len(prov["data"]["sha256"]) == 64 and prov["n_fitted"] == 8
    cal = load_calibration(run)
    assert cal.coverage == 0.8 and len(cal.temperatures) == 4 and cal.n_objects == [8, 0, 0, 0]
    # predict: calibrated probabilities differ from the uncalibrated run's, the classes do not
    cli("predict", cli_runs["drcnet"], "--data", micro_data, "--split", "test", "--out", tmp_path / "raw.csv")
    cli("predict", run, "--data", micro_data, "--split", "test", "--out", tmp_path / "cal.csv")
    p_raw, c_raw = _probs(tmp_path / "raw.csv")
    p_cal, c_cal = _probs(tmp_path / "cal.csv")
    assert c_raw == c_cal
    assert np.abs(p_raw - p_cal).max() > 1e-4
    assert np.allclose(p_cal.sum(axis=1), 1.0, atol=1e-5)
    with open(tmp_path / "cal.csv") as f:
        assert all(r["pred"] in r["pred_set"].split("|") or r["pred_set"] == "" for r in csv.DictReader(f))
    # evaluate reports the ECE with and without the calibration
    cli("evaluate", run, "--data", micro_data, "--out", tmp_path / "ev")
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    m = metrics["catalogue"]
    assert m["calibration"]["calibrated"] is True and m["calibration"]["all"]["ece_calibrated"] is not None
    assert m["calibration"]["temperatures"] == cal.temperatures
    assert m["ood"]["all"]["n"] == sum(v["objects"] for v in metrics["counts"].values())  # every test object
    # --temperature none keeps the probabilities; an unknown mode is refused before any work
    out = cli("calibrate", run, "--data", micro_data, "--split", "val", "--temperature", "none")
    assert load_calibration(run).temperatures == [1.0, 1.0, 1.0, 1.0]
    assert json.loads((run / CALIBRATION_JSON).read_text())["provenance"]["temperature"] == "none"
    cli("predict", run, "--data", micro_data, "--split", "test", "--out", tmp_path / "none.csv")
    np.testing.assert_allclose(_probs(tmp_path / "none.csv")[0], p_raw, atol=1e-5)
    from drcnet.cli import app

    res = CliRunner().invoke(app, ["calibrate", str(run), "--data", str(micro_data), "--temperature", "global"])
    assert res.exit_code != 0 and "--temperature must be one of per-bin, none, got 'global'" in res.output


def test_cli_calibrate_refuses_what_it_must_not_write(tmp_path, micro_data):
    from drcnet.cli import app
    from drcnet.models import pretrained_dir

    runner = CliRunner()
    res = runner.invoke(app, ["calibrate", str(tmp_path), "--data", str(micro_data)])
    assert res.exit_code == 2 and "not a run folder" in res.output
    shipped = pretrained_dir()
    before = (shipped / CALIBRATION_JSON).read_bytes()  # the default model ships its calibration
    res = runner.invoke(app, ["calibrate", str(shipped), "--data", str(micro_data)])
    assert res.exit_code == 2 and "shipped model" in res.output
    assert (shipped / CALIBRATION_JSON).read_bytes() == before


def test_ece_floor_matches_the_binomial_truth_for_one_confidence_bin():
    # every object at confidence 0.8, one ECE bin: a perfectly calibrated model's ECE is E|k/n - 0.8|,
    # k ~ Binomial(n, 0.8), which scipy gives exactly
    from scipy.stats import binom

    from drcnet.calibration import ece_floor

    for n in (50, 400):
        prob = np.tile([0.8, 0.15, 0.05], (n, 1))
        k = np.arange(n + 1)
        truth = float(np.sum(binom.pmf(k, n, 0.8) * np.abs(k / n - 0.8)))
        assert ece_floor(prob, n_draws=4000) == pytest.approx(truth, rel=0.05)
    # it shrinks like 1/sqrt(n) and is reproducible
    small, big = ece_floor(np.tile([0.8, 0.2], (100, 1))), ece_floor(np.tile([0.8, 0.2], (1600, 1)))
    assert small / big == pytest.approx(4.0, rel=0.15)
    assert ece_floor(np.tile([0.8, 0.2], (100, 1)), seed=3) == ece_floor(np.tile([0.8, 0.2], (100, 1)), seed=3)
    assert np.isnan(ece_floor(np.zeros((0, 3))))


def test_a_calibrated_model_sits_at_its_ece_floor_on_a_small_set():
    # 300 objects drawn from the model's own probabilities: the ECE is well above 0 and near the floor
    from drcnet.calibration import ece_floor

    z, y = draw(300, 1.0, seed=5)
    p = softmax(z)
    ece, floor = expected_calibration_error(p, y), ece_floor(p)
    assert 0.02 < floor < 0.08
    assert ece < 2.5 * floor
