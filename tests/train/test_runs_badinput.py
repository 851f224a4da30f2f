"""Bad input on the model side: run folders, weights, dataset files, prediction inputs, file modes.

Each case builds its damaged input here and asserts the behaviour: a one-line error naming the file
or option (exit status 2), a refusal to overwrite, or a flag instead of a made-up answer.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from _support.model_fixtures import SMALL_DRCNET, cli, cli_runs, micro_data  # noqa: F401
from drcnet.cli import app
from drcnet.models import load_run, pretrained_dir
from drcnet.models.run_folder import read_safetensors


def run_cli(*args: object) -> tuple[int, str]:
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def one_line_error(output: str) -> str:
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    assert lines and "Traceback" not in output, output
    return " ".join(lines)  # rich may wrap a long line; it is one message


@pytest.fixture()
def shipped_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "shipped"
    shutil.copytree(pretrained_dir("drcnet"), dst)
    return dst


# -- run folders -----------------------------------------------------------------------------------
def test_train_refuses_to_overwrite_a_run_folder_without_a_checkpoint(shipped_copy, micro_data):
    before = (shipped_copy / "best.safetensors").read_bytes()
    code, out = run_cli(
        "train",
        "--model",
        "drcnet",
        "--data",
        micro_data,
        "--out",
        shipped_copy,
        "--epochs",
        1,
        "--no-progress",
        "--model-config",
        SMALL_DRCNET,
    )
    assert code == 2 and "--overwrite" in out and str(shipped_copy.name) in out
    assert (shipped_copy / "best.safetensors").read_bytes() == before
    assert json.loads((shipped_copy / "metrics.json").read_text())["table3"]["n"] == 605  # untouched


def test_train_overwrite_replaces_the_run_and_its_stale_metrics(shipped_copy, micro_data):
    cli(
        "train",
        "--model",
        "drcnet",
        "--data",
        micro_data,
        "--out",
        shipped_copy,
        "--epochs",
        1,
        "--no-progress",
        "--model-config",
        SMALL_DRCNET,
        "--overwrite",
        "--batch-size",
        8,
    )
    assert not (shipped_copy / "metrics.json").exists()  # it described the replaced model
    run = json.loads((shipped_copy / "run.json").read_text())
    assert run["epochs_run"] == 1 and run["model_config"]["fc_widths"] == [32, 16]


def test_resume_refuses_changed_settings(micro_data, tmp_path):
    out = tmp_path / "r"
    common = [
        "--model",
        "drcnet",
        "--data",
        micro_data,
        "--out",
        out,
        "--epochs",
        3,
        "--batch-size",
        8,
        "--no-progress",
        "--model-config",
        SMALL_DRCNET,
    ]
    cli("train", *common, "--stop-after-epochs", 1)
    for extra, name in ((["--lr", "0.01"], "lr"), (["--seed", "5"], "seed"), (["--batch-size", "4"], "batch_size")):
        args = [a for a in common if a not in ("--batch-size", 8)] + extra if name == "batch_size" else common + extra
        code, text = run_cli("train", *args, "--resume")
        assert code == 2 and f"{name}:" in text and "cannot resume" in text, text
    cli("train", *common, "--resume")  # the same settings continue
    assert json.loads((out / "run.json").read_text())["epochs_run"] == 3


@pytest.mark.parametrize("value, words", [("{bad json", "not valid JSON"), ("[1, 2]", "JSON object")])
def test_model_config_errors_name_the_option(micro_data, tmp_path, value, words):
    code, out = run_cli(
        "train", "--model", "drcnet", "--data", micro_data, "--out", tmp_path / "x", "--model-config", value
    )
    assert code == 2 and "--model-config" in out and words in out


# -- weights ---------------------------------------------------------------------------------------
def test_damaged_weights_are_refused_by_checksum(shipped_copy):
    path = shipped_copy / "best.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4096] = bytes(4096)  # 4 KB of zeros inside the tensors
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"best\.safetensors: damaged weights file"):
        load_run(shipped_copy)


@pytest.mark.parametrize("damage", ["garbled_header", "cut_short"])
def test_unreadable_safetensors_name_the_file(shipped_copy, damage, micro_data, tmp_path):
    path = shipped_copy / "best.safetensors"
    data = path.read_bytes()
    path.write_bytes(b"\xff" * 8 + data[8:] if damage == "garbled_header" else data[: len(data) // 3])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        read_safetensors(path)
    run = json.loads((shipped_copy / "run.json").read_text())
    run.pop("checksums")  # without a recorded checksum the reader itself must catch it
    (shipped_copy / "run.json").write_text(json.dumps(run))
    code, out = run_cli("predict", shipped_copy, "--data", micro_data, "--out", tmp_path / "p.csv")
    assert code == 2 and "best.safetensors" in one_line_error(out)


# -- dataset files ---------------------------------------------------------------------------------
def _truncated(micro_data: Path, tmp: Path) -> Path:
    p = tmp / "truncated.h5"
    p.write_bytes(micro_data.read_bytes()[:5000])
    return p


def _not_hdf5(micro_data: Path, tmp: Path) -> Path:
    p = tmp / "notes.h5"
    p.write_text("object_id,label\n1,F\n")
    return p


def _no_label(micro_data: Path, tmp: Path) -> Path:
    p = tmp / "nolabel.h5"
    shutil.copyfile(micro_data, p)
    with h5py.File(p, "a") as h:
        del h["label"]
    return p


@pytest.mark.parametrize(
    "make, words",
    [
        (_truncated, "cannot be read as an HDF5"),
        (_not_hdf5, "cannot be read as an HDF5"),
        (_no_label, "not a drcnet dataset file"),
    ],
)
def test_bad_dataset_files_are_named_in_one_line(cli_runs, micro_data, tmp_path, make, words):
    bad = make(micro_data, tmp_path)
    code, out = run_cli("evaluate", cli_runs["drcnet"], "--data", bad, "--out", tmp_path / "ev")
    msg = one_line_error(out)
    assert code == 2 and bad.name in msg and words in msg


def test_a_dataset_locked_by_another_process_is_named(cli_runs, micro_data, tmp_path):
    locked = tmp_path / "locked.h5"
    shutil.copyfile(micro_data, locked)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import h5py, sys, time; f = h5py.File(sys.argv[1], 'a'); print('open', flush=True); time.sleep(60)",
            str(locked),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "HDF5_USE_FILE_LOCKING": "TRUE"},
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        code, out = run_cli("evaluate", cli_runs["drcnet"], "--data", locked, "--out", tmp_path / "ev")
    finally:
        holder.kill()
    msg = one_line_error(out)
    assert code == 2 and locked.name in msg and "locked by another process" in msg


def test_evaluate_without_objects_or_labels_is_an_error(cli_runs, micro_data, tmp_path):
    empty = tmp_path / "notest.h5"
    shutil.copyfile(micro_data, empty)
    with h5py.File(empty, "a") as h:
        split = h["split"][:]
        split[split == 2] = 0
        h["split"][:] = split
    code, out = run_cli("evaluate", cli_runs["drcnet"], "--data", empty, "--out", tmp_path / "ev")
    assert code == 2 and "'test' split holds no objects" in one_line_error(out)
    assert not (tmp_path / "ev" / "metrics.json").exists()
    unlabelled = tmp_path / "unlabelled.h5"
    shutil.copyfile(micro_data, unlabelled)
    with h5py.File(unlabelled, "a") as h:
        h["label"][:] = -1
    code, out = run_cli("evaluate", cli_runs["drcnet"], "--data", unlabelled, "--out", tmp_path / "ev")
    assert code == 2 and "has a label" in one_line_error(out)


# -- prediction inputs -----------------------------------------------------------------------------
def test_nan_stripes_get_no_class_and_leave_the_metrics(cli_runs, micro_data, tmp_path):
    damaged = tmp_path / "nan.h5"
    shutil.copyfile(micro_data, damaged)
    with h5py.File(damaged, "a") as h:
        test_rows = np.flatnonzero(h["split"][:] == 2)
        labelled = [int(i) for i in test_rows if h["label"][i] >= 0][:2]
        s = h["stripes"][labelled[0]]
        s[:] = np.nan  # an all-NaN object
        h["stripes"][labelled[0]] = s
        s = h["stripes"][labelled[1]]
        s[0, 4:7, 1000:1010] = np.nan  # a small NaN block in one arm
        h["stripes"][labelled[1]] = s
        oids = [h["object_id"][i].decode() for i in labelled]
    out = tmp_path / "p.csv"
    with pytest.warns(UserWarning, match="2 of 20 objects have NaN/inf pixels"):
        from drcnet.workflows.evaluate import predict_run

        predict_run(cli_runs["drcnet"], damaged, out, split="test")
    rows = {r["object_id"]: r for r in csv.DictReader(out.open())}
    for oid in oids:
        assert rows[oid]["bad_input"] == "1" and rows[oid]["pred"] == "" and rows[oid]["prob_F"] == "nan"
    assert sum(r["bad_input"] == "1" for r in rows.values()) == 2
    code, text = run_cli("evaluate", cli_runs["drcnet"], "--data", damaged, "--out", tmp_path / "ev")
    assert code == 0 and "2 object(s) have NaN/inf pixels" in text
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    clean = json.loads(
        cli("evaluate", cli_runs["drcnet"], "--data", micro_data, "--out", tmp_path / "ev0")
        and (tmp_path / "ev0" / "metrics.json").read_text()
    )
    assert m["n_bad_input"] == 2 and m["all"]["n"] == clean["all"]["n"] - 2
    assert sum(c["bad_input"] for c in m["counts"].values()) == 2


def test_predict_arrays_returns_nan_for_nonfinite_objects(cli_runs):
    from drcnet.inference.engine import predict_arrays

    model, _ = load_run(cli_runs["drcnet"])
    x = np.random.default_rng(0).normal(100, 5, (3, 2, 11, 3000)).astype(np.float32)
    x[1, 1, 5, 100] = np.inf
    p = predict_arrays(model, stripes=x)
    assert np.isnan(p[1]).all() and np.isfinite(p[[0, 2]]).all()
    np.testing.assert_allclose(p[[0, 2]].sum(axis=1), 1.0, atol=1e-5)


# -- file modes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_outputs_respect_the_umask(tmp_path, umask, mode):
    from drcnet.provenance import write_json_atomic

    old = os.umask(umask)
    try:
        p = write_json_atomic(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(old)
    assert os.stat(p).st_mode & 0o777 == mode
