"""The public Python API (README, "Python API"): ``drcnet.load_model``, ``drcnet.predict``, ``drcnet.predict_file``,
``drcnet.classify_exposure``, ``drcnet.Predictor``.

Only that API is used for what is tested; the data are made by the project's simulator (``drcnet simulate``,
``drcnet frames simulate``) and the reference answers by the ``drcnet predict`` command.
"""

from __future__ import annotations

import csv
import subprocess
import sys

import h5py
import numpy as np
import pytest

import drcnet
from _support.exposure import full_exposure


@pytest.fixture(scope="module")
def small_file(tmp_path_factory, data_root):
    """24 objects simulated from PyHammer templates by ``drcnet simulate`` (S/N_r 15-60, all in the test split)."""
    from typer.testing import CliRunner

    from drcnet.cli import app

    out = tmp_path_factory.mktemp("api") / "small.h5"
    res = CliRunner().invoke(
        app,
        [
            "simulate",
            "--library",
            str(data_root / "spectral_libraries" / "pyhammer"),
            "--n",
            "24",
            "--snr-min",
            "15",
            "--snr-max",
            "60",
            "--all-test",
            "--seed",
            "4",
            "--workers",
            "1",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def cli_rows(small_file, tmp_path_factory):
    """The ``drcnet predict`` CSV rows of the small file (the shipped default model)."""
    from typer.testing import CliRunner

    from drcnet.cli import app

    out = tmp_path_factory.mktemp("cli") / "preds.csv"
    res = CliRunner().invoke(app, ["predict", "--data", str(small_file), "--out", str(out)])
    assert res.exit_code == 0, res.output
    with out.open() as f:
        return list(csv.DictReader(f))


def test_import_drcnet_stays_light():
    """``import drcnet`` loads neither torch nor the API; the first use of an API name loads the API."""
    code = (
        "import sys, drcnet; assert drcnet.CLASSES == ('F', 'G', 'K'), drcnet.CLASSES; "
        "assert 'torch' not in sys.modules and 'drcnet.api' not in sys.modules; "
        "drcnet.load_model; assert 'drcnet.api' in sys.modules; print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_default_model_on_a_file_gives_the_labels_of_drcnet_predict(small_file, cli_rows):
    model = drcnet.load_model()  # the shipped default model
    assert isinstance(model, drcnet.Predictor)
    assert model.info["model"] == "hybrid_optimal" and model.label_convention == "lamost"
    table = drcnet.predict_file(small_file, model=model)
    assert len(table) == len(cli_rows) == 24
    assert list(table["object_id"]) == [r["object_id"] for r in cli_rows]
    assert list(table["pred"]) == [r["pred"] for r in cli_rows]
    # the CSV holds the same probabilities, rounded to 6 decimals
    for c in ("prob_F", "prob_G", "prob_K", "prob_other"):
        np.testing.assert_allclose(np.asarray(table[c], dtype=float), [float(r[c]) for r in cli_rows], atol=5.1e-7)
    # the simulated stars are F/G/K: the default model calls most of them right
    with h5py.File(small_file) as h:
        truth = [drcnet.CLASSES[k] for k in h["label"][:]]
    assert np.mean(np.asarray(table["pred"]) == np.asarray(truth)) >= 0.6


def test_arrays_give_the_answers_of_the_file(small_file):
    with h5py.File(small_file) as h:
        stripes = h["stripes"][:8].astype(np.float32)
        snr = h["snr_r"][:8]
    model = drcnet.load_model("drcnet-survey")
    from_file = drcnet.predict_file(small_file, model=model)[:8]
    from_arrays = drcnet.predict(stripes=stripes, model=model, snr_r=snr)
    assert list(from_arrays["pred"]) == list(from_file["pred"])
    np.testing.assert_allclose(
        np.asarray(from_arrays["prob_G"], dtype=float), np.asarray(from_file["prob_G"], dtype=float), atol=1e-4
    )
    proba = model.predict_proba(stripes)
    assert proba.shape == (8, 4) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    one = model.predict_proba(stripes[0])  # one object: (C,)
    np.testing.assert_allclose(one, proba[0], atol=1e-6)


def test_onnx_engine_gives_the_same_labels(small_file):
    torch_table = drcnet.predict_file(small_file, model=drcnet.load_model())
    onnx_table = drcnet.predict_file(small_file, model=drcnet.load_model(engine="onnx"))
    assert list(onnx_table["pred"]) == list(torch_table["pred"])
    np.testing.assert_allclose(
        np.asarray(onnx_table["prob_F"], dtype=float), np.asarray(torch_table["prob_F"], dtype=float), atol=1e-4
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"stripes": np.zeros((3, 2, 10, 3000), np.float32)},
            r"stripes must have shape \(N, 2, 11, 3000\).*got \(3, 2, 10, 3000\)",
        ),
        ({"stripes": np.zeros((2, 11, 3000, 1), np.float32)}, r"stripes must have shape .*got \(2, 11, 3000, 1\)"),
        ({"flux1d": np.zeros((3, 2, 3000), np.float32)}, r"model takes stripes: pass stripes=\(N, 2, 11, 3000\)"),
    ],
)
def test_arrays_of_the_wrong_shape_are_refused_with_the_shape_expected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        drcnet.predict(**kwargs)


def test_an_unknown_model_name_lists_the_shipped_ones():
    with pytest.raises(
        FileNotFoundError, match=r"no-such-model: neither a run folder nor a shipped model.*drcnet-survey"
    ):
        drcnet.load_model("no-such-model")


@pytest.mark.slow
def test_classify_exposure_gives_one_row_per_object_fiber(tmp_path_factory, data_root, tmp_path):
    from astropy.table import Table

    folder = full_exposure(tmp_path_factory, data_root)
    out = tmp_path / "catalogue.csv"
    table = drcnet.classify_exposure(folder, out=out)
    written = Table.read(out, format="ascii.csv")
    assert len(table) == len(written) and len(table) > 200  # 250 fibers minus sky fibers
    assert {"spid", "fiber", "pred", "prob_other", "true_class", "correct"} <= set(table.colnames)
    assert list(np.asarray(table["fiber"])) == list(np.asarray(written["fiber"]))
    assert set(np.asarray(table["pred"]).astype(str)) <= {"F", "G", "K", "other", ""}
    assert table.meta["label_convention"] in ("mk", "lamost")
    known = np.asarray(table["true_class"]).astype(str) != ""
    assert np.mean(np.asarray(table["correct"])[known]) >= 0.5
