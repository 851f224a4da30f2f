"""The public API and ``drcnet predict`` on hostile input: one clear error naming the value and what to do.

Arrays of the wrong kind, no object, one object, S/N_r of the wrong length, batch sizes below 1, a model
that is no path, a folder where a file goes (and back), outputs over an exposure's raw frames, over a
pipe, in a folder that cannot be written. Every case runs before any heavy work (no exposure is reduced).
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from typer.testing import CliRunner

import drcnet
from _support.synthetic_dataset import make_synthetic_dataset
from drcnet.catalogue import CATALOGUE_COLUMNS
from drcnet.outputs import OutputError

FRAME = "ro-01b-SIM00007-10007-86400740.fit"


@pytest.fixture(scope="module")
def model() -> drcnet.Predictor:
    """The 2D model: these tests give stripes alone (the default hybrid needs the 1D spectra too)."""
    return drcnet.load_model("drcnet-survey")


@pytest.fixture(scope="module")
def stripes() -> np.ndarray:
    """Two objects of smooth positive counts (a Gaussian profile across the trace times a sloped continuum)."""
    rng = np.random.default_rng(5)
    profile = np.exp(-0.5 * ((np.arange(11) - 5) / 1.5) ** 2)
    continuum = np.linspace(500.0, 900.0, 3000)
    clean = 100.0 + profile[None, None, :, None] * continuum[None, None, None, :] * np.ones((2, 2, 1, 1))
    return (clean + rng.normal(0, 10, clean.shape)).astype(np.float32)


def _run(*args: object):
    from drcnet.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(
    "dtype, name", [(np.complex64, "complex64"), (bool, "bool"), ("<U1", "<U1"), (object, "object")]
)
def test_arrays_of_other_than_real_numbers_are_refused_naming_the_dtype(model, dtype, name):
    bad = np.zeros((1, 2, 11, 3000), dtype=dtype)
    msg = f"stripes must hold real numbers (float or integer ADU), got dtype {name}; pass a float32 array"
    with pytest.raises(ValueError, match=re.escape(msg)):
        model.predict_proba(bad)


def test_a_ragged_list_is_refused_with_the_shape_expected(model, stripes):
    with pytest.raises(ValueError, match=r"^stripes must be one array of shape \(N, 2, 11, 3000\), not a ragged list"):
        model.predict_proba([stripes[0], stripes[0][:, :5]])


def test_integer_counts_give_the_answer_of_the_same_floats(model, stripes):
    counts = np.round(stripes).astype(np.int32)
    np.testing.assert_allclose(model.predict_proba(counts), model.predict_proba(counts.astype(np.float32)), atol=1e-6)


def test_no_object_gives_empty_answers_with_every_column(model):
    none = np.zeros((0, 2, 11, 3000), np.float32)
    proba = model.predict_proba(none)
    assert proba.shape == (0, 4) and proba.dtype == np.float32
    table = drcnet.predict(stripes=none, model=model)
    assert len(table) == 0 and table.colnames == list(CATALOGUE_COLUMNS)


def test_one_object_gives_a_one_row_catalogue_equal_to_its_row_in_a_stack(model, stripes):
    one = drcnet.predict(stripes=stripes[1], model=model, snr_r=25.0)
    both = drcnet.predict(stripes=stripes, model=model, snr_r=[40.0, 25.0])
    assert len(one) == 1
    assert one["pred"][0] == both["pred"][1]
    for c in ("prob_F", "prob_G", "prob_K", "prob_other"):
        np.testing.assert_allclose(float(one[c][0]), float(both[c][1]), atol=1e-5)  # batch of 1 vs 2: float32 sums


@pytest.mark.parametrize(
    "snr, message",
    [
        ([20.0], "snr_r must hold one S/N_r per object: shape (2,), got (1,)"),
        (np.ones((2, 1)), "snr_r must hold one S/N_r per object: shape (2,), got (2, 1)"),
        ("abc", "snr_r must be numbers (the S/N_r of each object), got 'abc'"),
    ],
)
def test_snr_r_that_is_not_one_number_per_object_is_refused(model, stripes, snr, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        drcnet.predict(stripes=stripes, model=model, snr_r=snr)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_a_batch_size_below_one_or_not_whole_is_refused(model, batch_size):
    msg = f"batch_size must be a whole number of objects per forward pass, >= 1; got {batch_size!r}"
    with pytest.raises(ValueError, match=re.escape(msg)):
        drcnet.Predictor(model.model, batch_size=batch_size)
    with pytest.raises(ValueError, match=re.escape(msg)):
        model.predict_file("never-read.h5", batch_size=batch_size)


def test_a_model_that_is_no_name_or_path_is_refused():
    msg = (
        "the model must be a shipped model's name (`drcnet models`), a run folder or an .onnx file "
        "(str or Path), or None for the default model; got int 5"
    )
    with pytest.raises(TypeError, match=re.escape(msg)):
        drcnet.load_model(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("the model name is empty: give a shipped model's name")):
        drcnet.load_model("")  # not the current folder


def test_a_folder_given_as_dataset_file_and_a_file_given_as_exposure_folder_say_which_call_to_use(model, tmp_path):
    with pytest.raises(IsADirectoryError) as err:
        drcnet.predict_file(tmp_path, model=model)
    assert str(err.value) == (
        f"{tmp_path}: is a folder, not a dataset HDF5 file; for a folder of raw frames use "
        "drcnet.classify_exposure (command line: drcnet predict --exposure)"
    )
    data = tmp_path / "data.h5"
    data.write_bytes(b"not read")
    with pytest.raises(NotADirectoryError) as err2:
        drcnet.classify_exposure(data, model=model)
    assert str(err2.value) == (
        f"{data}: is a file, not an exposure folder of raw frames; for a dataset HDF5 file use "
        "drcnet.predict_file (command line: drcnet predict --data)"
    )


def test_classify_exposure_refuses_an_out_over_a_raw_frame_before_any_work(tmp_path):
    folder = tmp_path / "exposure"
    folder.mkdir()
    frame = folder / FRAME
    frame.write_bytes(b"raw frame bytes")
    with pytest.raises(OutputError) as err:
        drcnet.classify_exposure(folder, out=frame, model="no-model-is-loaded-first")
    assert str(err.value) == (
        f"{frame} (--out) is the input file {frame} that this command reads; "
        "writing it would replace the input: choose another --out"
    )
    assert frame.read_bytes() == b"raw frame bytes"
    with pytest.raises(OutputError, match=re.escape(f"{folder} (--out) is the folder {folder} that this command")):
        drcnet.classify_exposure(folder, out=folder, model="no-model-is-loaded-first")
    with pytest.raises(ValueError, match=re.escape("cat.txt: the catalogue (--out) must end in .csv, .parquet")):
        drcnet.classify_exposure(folder, out=tmp_path / "cat.txt", model="no-model-is-loaded-first")


def test_an_output_never_replaces_a_pipe_or_device(tmp_path):
    from drcnet.inference.table import Columns, write_csv

    fifo = tmp_path / "preds.csv"
    os.mkfifo(fifo)
    with pytest.raises(FileExistsError) as err:
        write_csv(Columns({"a": np.arange(3)}), fifo)
    assert str(err.value) == (
        f"{fifo}: is a device, pipe or socket, not a file; the output is renamed over the name and would "
        "replace it: give the path of a file to write"
    )
    assert fifo.is_fifo()
    res = _run("predict", "--data", tmp_path / "never-read.h5", "--out", fifo)
    assert res.exit_code == 2
    assert f"{fifo}: --out is a device, pipe or socket, not a file; writing would replace it" in " ".join(
        res.output.split()
    )
    assert fifo.is_fifo()


def test_an_unwritable_output_folder_is_named_not_the_temporary(tmp_path, monkeypatch):
    import drcnet.provenance
    from drcnet.inference.table import Columns, write_csv

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".preds.csv.abcdefgh.part"))

    monkeypatch.setattr(drcnet.provenance.tempfile, "mkstemp", refuse)
    out = tmp_path / "preds.csv"
    with pytest.raises(PermissionError) as err:
        write_csv(Columns({"a": np.arange(3)}), out)
    assert str(err.value) == (
        f"{out}: cannot write a file in {tmp_path} (Permission denied); choose a folder you can write to"
    )


def test_predict_refuses_an_unwritable_folder_before_any_work(tmp_path, monkeypatch):
    import drcnet.outputs

    folder = tmp_path / "read-only"
    folder.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        drcnet.outputs.os, "access", lambda p, mode: False if str(p) == str(folder) else real_access(p, mode)
    )
    res = _run("predict", "--data", tmp_path / "never-read.h5", "--out", folder / "preds.csv")
    assert res.exit_code == 2
    assert (
        f"{folder / 'preds.csv'}: cannot write --out there: the folder {folder} is not writable; choose another --out"
    ) in " ".join(res.output.split())


def test_predict_cli_names_a_folder_given_as_data_and_a_batch_size_of_zero(tmp_path):
    res = _run("predict", "--data", tmp_path, "--out", tmp_path / "p.csv")
    assert res.exit_code == 2
    assert f"{tmp_path}: is a folder, not a dataset HDF5 file; for a folder of raw frames use" in " ".join(
        res.output.split()
    )
    res = _run("predict", "--data", tmp_path / "x.h5", "--out", tmp_path / "p.csv", "--batch-size", "0")
    assert res.exit_code == 2
    assert "--batch-size must be at least 1 object per forward pass, got 0" in " ".join(res.output.split())


def test_predict_to_another_ending_writes_csv_with_its_provenance(tmp_path):
    data = make_synthetic_dataset(tmp_path / "tiny.h5", {"test": (3, 0, 0, 0)}, seed=2)
    out = tmp_path / "preds.txt"
    res = _run("predict", "--data", data, "--out", out)
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("object_id,label,pred,prob_F") and len(lines) == 4
    prov = json.loads((tmp_path / "preds.txt.provenance.json").read_text())
    assert prov["config"]["data"] == str(data.resolve()) and prov["config"]["engine"] == "torch"


def test_the_default_hybrid_given_stripes_alone_says_what_else_it_needs_and_which_model_reads_stripes(stripes):
    default = drcnet.load_model()
    assert default.input_kind == "hybrid_optimal"
    with pytest.raises(
        ValueError,
        match=r"hybrid model takes 1D spectra too: pass flux1d=\(N, 2, 3000\) \(the optimal extraction, flux1d_opt\)"
        r".*load_model\('drcnet-survey'\)",
    ):
        default.predict_proba(stripes)
    flux1d = stripes[:, :, 3:8].sum(axis=2)  # a boxcar over the five central rows
    sky1d = np.full_like(flux1d, 500.0)  # five rows of the 100-count background
    proba = default.predict_proba(stripes, flux1d, sky1d)
    assert proba.shape == (2, 4) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    table = drcnet.predict(stripes=stripes, flux1d=flux1d, sky1d=sky1d, snr_r=[40.0, 25.0])
    assert list(table["pred"]) == [["F", "G", "K", "other"][i] for i in proba.argmax(1)]
