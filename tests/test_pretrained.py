"""The shipped pretrained DRC-Net loads, classifies, and says where it came from."""

from __future__ import annotations

import json

import numpy as np

from conftest_models import cli, cli_runs, micro_data  # noqa: F401
from drcnet.models import create_model, load_run, pretrained_dir, shipped_models
from drcnet.predict import predict_arrays

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


def test_shipped_files_name_no_machine_paths():
    for path in PRETRAINED.iterdir():
        if path.suffix in (".json", ".csv", ".md"):
            text = path.read_text()
            for marker in ('"/', "/work/", "/home/", "/tmp/", "C:\\"):
                assert marker not in text, f"{path.name} holds a machine path ({marker!r})"


def test_predict_without_a_run_folder_uses_the_default_model(micro_data, tmp_path):
    out = tmp_path / "p.csv"
    cli("predict", "--data", micro_data, "--split", "test", "--out", out)
    explicit = tmp_path / "q.csv"
    cli("predict", str(PRETRAINED), "--data", micro_data, "--split", "test", "--out", explicit)
    assert out.read_text() == explicit.read_text() and len(out.read_text().splitlines()) == 1 + 20


def test_models_lists_the_shipped_default_with_its_version():
    text = cli("models")
    assert "drcnet (default): drcnet, version 0.1.0" in text
    assert [s["name"] for s in shipped_models()] == ["drcnet"]
    assert create_model("drcnet", pretrained=True).training is False


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
