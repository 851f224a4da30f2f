"""The shipped pretrained DRC-Net loads, classifies, and says where it came from."""

from __future__ import annotations

import json

import numpy as np

from drcnet.demo import PRETRAINED
from drcnet.predict import predict_arrays
from drcnet.models import load_run


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
