"""The shipped pretrained DRC-Net loads, classifies, and says where it came from."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _support.model_fixtures import cli, cli_runs, micro_data  # noqa: F401
from drcnet.inference.engine import predict_arrays
from drcnet.models import DEFAULT_MODEL, create_model, load_run, pretrained_dir, shipped_models

PRETRAINED = pretrained_dir("drcnet")


def test_pretrained_drcnet_loads_and_predicts():
    model, info = load_run(PRETRAINED)
    assert info.model_name == "drcnet" and model.input_kind == "stripes"
    rng = np.random.default_rng(0)
    # a flat stripe with a Gaussian spatial profile: any class, but valid probabilities
    profile = np.exp(-0.5 * (np.arange(-5, 6) / 2.5) ** 2)[:, None]
    stripes = (1000 * profile * np.ones((2, 1, 3000)) + rng.normal(0, 10, (4, 2, 11, 3000))).astype(np.float32)
    probs = np.asarray(predict_arrays(model, stripes=stripes))
    assert probs.shape == (4, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_pretrained_records_its_training_and_score():
    metrics = json.loads((PRETRAINED / "metrics.json").read_text())
    run = json.loads((PRETRAINED / "run.json").read_text())
    export = json.loads((PRETRAINED / "EXPORT.json").read_text())
    assert run["model"] == "drcnet" and "provenance" in run
    assert metrics["table3"]["n"] == 605 and metrics["table3"]["accuracy"] > 0.85
    assert export["config"]["weights"] == "float16"


@pytest.mark.parametrize("name", ["drcnet", "drcnet-robust", "rcnet-robust", "drcnet-survey", "drcnet-hybrid"])
def test_shipped_files_name_no_machine_paths(name):
    for path in pretrained_dir(name).iterdir():
        if path.suffix in (".json", ".csv", ".md"):
            text = path.read_text()
            for marker in ('"/', "/work/", "/home/", "/tmp/", "C:\\"):
                assert marker not in text, f"{path.name} holds a machine path ({marker!r})"


def test_predict_without_a_run_folder_uses_the_default_model(micro_data, tmp_path):
    out = tmp_path / "p.csv"
    cli("predict", "--data", micro_data, "--split", "test", "--out", out)
    explicit = tmp_path / "q.csv"
    cli("predict", str(pretrained_dir(DEFAULT_MODEL)), "--data", micro_data, "--split", "test", "--out", explicit)
    assert out.read_text() == explicit.read_text() and len(out.read_text().splitlines()) == 1 + 20


def test_models_lists_the_shipped_default_with_its_version():
    text = cli("models")
    assert "drcnet-hybrid (default): hybrid_optimal, version 0.1.0" in text and "rcnet-robust: rcnet" in text
    assert "drcnet-survey: drcnet" in text
    assert [s["name"] for s in shipped_models()] == [
        "drcnet",
        "drcnet-hybrid",
        "drcnet-robust",
        "drcnet-survey",
        "rcnet-robust",
    ]
    model = create_model("hybrid_optimal", pretrained=True)  # the default is a hybrid on the optimal 1D extraction
    assert model.training is False and model.net2d.config.aux_heads and model.net1d.config.n_classes == 4
    assert model.input_kind == "hybrid_optimal"
    with pytest.raises(FileNotFoundError, match="no shipped 'hybrid' model"):
        create_model("hybrid", pretrained=True)
    paper = create_model("drcnet", pretrained=True)  # not the default's architecture: the folder named drcnet
    assert paper.config.n_classes == 3 and not paper.config.aux_heads
    assert create_model("rcnet", pretrained=True).input_kind == "spectra1d"


def test_export_round_trip_keeps_predictions_and_strips_paths(cli_runs, micro_data, tmp_path):
    import torch

    from drcnet.train.export import export_run

    target = export_run(cli_runs["drcnet"], tmp_path / "shipped")
    full, _ = load_run(cli_runs["drcnet"])
    half, _ = load_run(target)
    x = torch.randn(3, 2, 11, 3000)
    with torch.no_grad():
        p_full, p_half = torch.softmax(full(x), 1), torch.softmax(half(x), 1)
    assert float((p_full - p_half).abs().max()) < 1e-3
    run = json.loads((target / "run.json").read_text())
    assert run["train_config"]["data"] == micro_data.name and run["train_config"]["out"] == "drcnet"


@pytest.mark.parametrize("name", ["drcnet-survey", "drcnet-hybrid"])
def test_survey_models_are_calibrated_and_scored_on_held_out_real_spectra(name):
    from drcnet.calibration import load_calibration

    folder = pretrained_dir(name)
    card = (folder / "MODEL_CARD.md").read_text()
    for heading in ("Training population", "Accuracy", "Known limits", "Licence and acknowledgements"):
        assert heading.lower() in card.lower(), heading
    run = json.loads((folder / "run.json").read_text())
    assert run["train_config"]["preset"] == "survey" and run["model_config"]["n_classes"] == 4
    heads = run["model_config"]["drcnet"] if name == "drcnet-hybrid" else run["model_config"]
    assert run["model"] == {"drcnet-hybrid": "hybrid_optimal", "drcnet-survey": "drcnet"}[name]
    assert heads["heads"] is True and set(run["checksums"]) == {"best.safetensors"}
    cal = load_calibration(folder)
    assert cal is not None and len(cal.temperatures) == 4 and cal.coverage == 0.9
    m = json.loads((folder / "metrics.json").read_text())
    # real LAMOST spectra never used in training (F/G/K and A/M/galaxies), rendered over S/N_r 3-80
    cat = m["catalogue"]
    assert cat["n_classes"] == 4 and cat["fgk_accuracy"]["bins"][">30"]["accuracy"] > 0.9
    assert cat["rejection"]["other_called_other"]["bins"][">30"]["share"] > 0.95
    assert cat["rejection"]["fgk_called_other"]["bins"][">30"]["share"] < 0.03
    assert cat["params"]["teff"]["bins"][">30"]["std"] < 150


@pytest.mark.parametrize("name", ["drcnet-robust", "rcnet-robust"])
def test_robust_models_carry_a_model_card_and_their_real_star_scores(name):
    folder = pretrained_dir(name)
    card = (folder / "MODEL_CARD.md").read_text()
    for heading in ("Training population", "Accuracy", "Known limits", "Licence and acknowledgements"):
        assert heading.lower() in card.lower(), heading
    m = json.loads((folder / "metrics.json").read_text())
    # evaluated on real LAMOST stars never used in training, rendered over S/N_r 3-80
    assert list(m["groups"]["source"]) == ["lamost"] and m["table3"]["n"] == 439
    assert m["table3"]["accuracy"] > 0.9 and m["bins"]["<10"]["accuracy"] > 0.75
    run = json.loads((folder / "run.json").read_text())
    assert run["train_config"]["preset"] == "robust" and set(run["checksums"]) == {"best.safetensors"}


@pytest.fixture(scope="module")
def real_star_stripes(tmp_path_factory, data_root):
    """Stripes and 1D spectra of 36 real LAMOST F/G/K spectra (12 per class) rendered at S/N_r 5-20 (``drcnet simulate``).

    Faint: above S/N_r 30 the blue arm alone classifies nearly as well (red -> noise costs the default model
    4-5 points there on the 515 held-out stars, 15-21 below S/N_r 10), so a bright set cannot show the red
    arm counting."""
    import csv

    import h5py

    folder = data_root / "lamost_real"  # the conftest fixture fails the test when the data are missing
    rows = sorted(csv.DictReader((folder / "index.csv").open()), key=lambda r: r["file"])
    picked = {c: [r["file"] for r in rows if r["sptype"] == c and r["cls"] == "STAR"][:12] for c in "FGK"}
    lib = tmp_path_factory.mktemp("stars")
    for names in picked.values():
        for name in names:
            (lib / name).symlink_to(folder / name)
    out = lib.parent / "real.h5"
    cli(
        "simulate",
        "--library",
        lib,
        "--n",
        72,
        "--snr-min",
        5,
        "--snr-max",
        20,
        "--all-test",
        "--seed",
        5,
        "--workers",
        1,
        "--out",
        out,
    )
    # the 1D spectrum the default model reads: the optimal extraction (hybrid_optimal) or the boxcar sum
    spectrum = "flux1d_opt" if load_run(pretrained_dir(DEFAULT_MODEL))[0].input_kind == "hybrid_optimal" else "flux1d"
    with h5py.File(out) as h:
        arrays = {k: h[k][:].astype(np.float32) for k in ("stripes", "sky1d")}
        arrays["flux1d"] = h[spectrum][:].astype(np.float32)
        return arrays, h["label"][:].astype(int)


def _accuracy_with_arm_replaced(arrays, label, arm):
    """Accuracy of the default model on clean input and with ``arm`` replaced by noise of its mean and spread.

    The arm is replaced in every input the model reads: its stripe and, for a model that reads 1D spectra
    too (the hybrid), its sky-subtracted 1D spectrum (sky set to 0)."""
    model, _ = load_run(pretrained_dir(DEFAULT_MODEL))
    rng = np.random.default_rng(0)
    clean = (predict_arrays(model, **arrays).argmax(1) == label).mean()
    noisy = {k: a.copy() for k, a in arrays.items()}
    part = arrays["stripes"][:, arm]
    noisy["stripes"][:, arm] = rng.normal(
        part.mean(axis=(1, 2), keepdims=True), part.std(axis=(1, 2), keepdims=True), part.shape
    )
    spec = arrays["flux1d"][:, arm] - arrays["sky1d"][:, arm]
    noisy["flux1d"][:, arm] = rng.normal(spec.mean(axis=1, keepdims=True), spec.std(axis=1, keepdims=True), spec.shape)
    noisy["sky1d"][:, arm] = 0.0
    return clean, (predict_arrays(model, **noisy).argmax(1) == label).mean()


def test_default_model_needs_its_blue_arm(real_star_stripes):
    """Blue arm replaced by noise of the same mean and spread: the default model falls towards chance."""
    clean, ablated = _accuracy_with_arm_replaced(*real_star_stripes, arm=0)
    assert clean >= 0.7 and ablated < clean - 0.3, (clean, ablated)


def test_default_model_needs_its_red_arm(real_star_stripes):
    """Red arm replaced by noise: the default model loses accuracy too (drcnet-robust did not)."""
    clean, ablated = _accuracy_with_arm_replaced(*real_star_stripes, arm=1)
    assert ablated < clean - 0.05, (clean, ablated)


def test_strip_machine_paths_keeps_only_the_last_component(tmp_path):
    from drcnet.train.export import strip_machine_paths

    local = str(tmp_path / "runs" / "paper.h5")  # an absolute path of this machine
    obj = {"data": local, "n": 3, "nested": [str(tmp_path) + "/", "rel/x", {"w": "C:\\runs\\a.h5"}], "home": "~/r/b"}
    assert strip_machine_paths(obj) == {
        "data": "paper.h5",
        "n": 3,
        "nested": [tmp_path.name, "rel/x", {"w": "a.h5"}],
        "home": "b",
    }
