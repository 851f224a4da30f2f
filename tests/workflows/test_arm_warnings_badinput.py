"""Bad input, issue 23: warnings from the arm threads always reach the user, faint exposures stay in, clear messages.

Damaged inputs are built here from the session's simulated exposure (a folder of links with one frame
rewritten), the micro dataset, the shipped model and the LAMOST format examples.
"""

from __future__ import annotations

import gzip
import json
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from typer.testing import CliRunner

from _support.exposure import full_exposure, linked_copy, one
from _support.model_fixtures import micro_data  # noqa: F401
from drcnet.cli import app
from drcnet.conventions import FLAG_BITS
from drcnet.instrument.errors import FrameWarning
from drcnet.reduce.arm import ReduceConfig
from drcnet.workflows.reduce_exposure import reduce_exposure


def _cli(*args: object) -> tuple[int, str]:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in res.output, res.output
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def exposure(tmp_path_factory, data_root):
    return full_exposure(tmp_path_factory, data_root)


def _rewrite(path: Path, data: np.ndarray, header: fits.Header) -> None:
    path.unlink()
    fits.PrimaryHDU(np.clip(np.round(data), 0, 65535).astype(np.uint16), header=header).writeto(path)


def _scaled_science(exposure: Path, folder: Path, scale: float) -> Path:
    """Both science frames with their light scaled by ``scale`` (a real bias frame's read noise kept)."""
    linked_copy(exposure, folder)
    for arm in "br":
        sci = one(folder, f"ro-01{arm}-*.fit")
        biases = sorted(folder.glob(f"rb-01{arm}-*.fit"))
        mean = np.mean([fits.getdata(b).astype(np.float64) for b in biases], axis=0)
        light = fits.getdata(sci).astype(np.float64) - mean
        _rewrite(sci, fits.getdata(biases[0]).astype(np.float64) + scale * light, fits.getheader(sci))
    return folder


def _reduce(folder: Path, data_root: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FrameWarning)
        return reduce_exposure(folder, ReduceConfig(threads=2), data_root=data_root)[0]


# -- warnings from the two arm threads --------------------------------------------------------------
@pytest.mark.slow
def test_a_garbled_gain_card_is_printed_under_its_own_arm_every_run(exposure, tmp_path, data_root):
    folder = linked_copy(exposure, tmp_path / "exp")
    sci = one(folder, "ro-01b-*.fit")
    target = sci.resolve()
    sci.unlink()
    raw = bytearray(target.read_bytes())
    i = raw.find(b"GAIN    = ")
    assert i >= 0
    raw[i : i + 80] = b"GAIN    = 1.5 e-/ADU".ljust(80)
    sci.write_bytes(bytes(raw))
    for k in range(3):  # with --threads 2 (the default) the arms run at once
        code, out = _cli("frames", "reduce", folder, "--out", tmp_path / f"r{k}.h5", "--data-root", data_root)
        text = " ".join(out.split())
        assert code == 0, out
        lines = [ln for ln in out.splitlines() if "GAIN" in ln]
        assert len(lines) == 1, out
        assert f"warning: sp01 blue: {sci}: header card GAIN" in text and "using the configured" in text
        assert "sp01 red: " + str(sci) not in text
    got = _reduce(folder, data_root)
    assert any("GAIN" in w for w in got.arms["blue"].warnings)
    assert not any("GAIN" in w for w in got.arms["red"].warnings)


@pytest.mark.slow
def test_frames_reduce_prints_the_arm_warnings_it_records(exposure, tmp_path, data_root):
    folder = linked_copy(exposure, tmp_path / "exp")
    arc = one(folder, "ra-01r-*.fit")
    bias = sorted(folder.glob("rb-01r-*.fit"))[0]
    _rewrite(arc, fits.getdata(bias).astype(np.float64), fits.getheader(arc))  # the arc lamp off
    code, out = _cli("frames", "reduce", folder, "--out", tmp_path / "r.h5", "--data-root", data_root)
    text = " ".join(out.split())
    assert code == 0 and f"warning: sp01 red: {arc}: no arc line found in any fiber" in text
    with h5py.File(tmp_path / "r.h5") as h:
        flags = h["flags"][:]
    assert np.sum((flags & FLAG_BITS["no_arc_lines"]) > 0) >= 240


# -- faint exposures ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_faint_exposure_is_reduced_and_flagged_not_refused(exposure, tmp_path, data_root):
    got = _reduce(_scaled_science(exposure, tmp_path / "faint", 0.05), data_root)
    blue = got.arms["blue"]
    assert not blue.implausible and blue.faint and "faint exposure" in blue.faint
    assert not np.any(got.flags & FLAG_BITS["bad_arm"])
    assert np.all(got.flags & FLAG_BITS["faint_arm"])  # the blue arm is faint: every fiber carries it
    assert any("faint_arm" in w for w in blue.warnings)
    objects = got.fibermap.is_object & ~blue.lost & ~got.arms["red"].lost
    snr = got.snr_r[objects]
    assert np.isfinite(snr).all() and np.median(snr) < 10  # classified with its (low) S/N_r
    from drcnet.workflows.classify_exposure import catalogue_table, predict_objects

    table = catalogue_table([got], [predict_objects(_shipped_predictor(), got)])
    assert np.sum(np.asarray(table["no_class"]) == "bad_arm") == 0
    assert np.sum(np.asarray(table["pred"]) != "") >= 0.9 * int(objects.sum())


def _shipped_predictor():
    from drcnet.inference.predictor import Predictor
    from drcnet.models import DEFAULT_MODEL, pretrained_dir

    return Predictor.load(pretrained_dir(DEFAULT_MODEL))


@pytest.mark.slow
def test_an_arm_with_no_light_at_all_is_still_refused(exposure, tmp_path, data_root):
    got = _reduce(_scaled_science(exposure, tmp_path / "dark", 0.0), data_root)
    for arm in ("blue", "red"):
        assert got.arms[arm].implausible, arm
        assert any("no light at all" in p for p in got.arms[arm].problems)
    assert np.all(got.flags & FLAG_BITS["bad_arm"])


@pytest.mark.slow
def test_a_pedestal_in_the_data_area_is_named_not_a_shifted_numbering(exposure, tmp_path, data_root):
    folder = linked_copy(exposure, tmp_path / "exp")
    sci = one(folder, "ro-01r-*.fit")
    raw = fits.getdata(sci).astype(np.float64)
    raw[:, 32:-32] += 300  # the data area only; the overscan untouched
    _rewrite(sci, raw, fits.getheader(sci))
    red = _reduce(folder, data_root).arms["red"]
    text = "; ".join(red.problems)
    assert red.implausible and "a pedestal of about 30" in text and "numbering shifted" not in text


# -- clear messages -----------------------------------------------------------------------------------
@pytest.mark.parametrize("split", ["test", "train"])
def test_a_dataset_without_a_split_says_so(micro_data, tmp_path, split):
    data = tmp_path / "nosplit.h5"
    shutil.copyfile(micro_data, data)
    with h5py.File(data, "a") as h:
        del h["split"]
    from drcnet.models import pretrained_dir

    code, out = _cli("evaluate", pretrained_dir("drcnet"), "--data", data, "--split", split, "--out", tmp_path / "ev")
    text = " ".join(out.split())
    assert code == 2 and f"{data}: the file has no 'split' dataset" in text and f"no {split!r} split" in text
    assert not (tmp_path / "ev" / "metrics.json").exists()


def test_a_library_folder_with_no_usable_spectrum_gives_the_reason(data_root, tmp_path):
    from drcnet.library import LibraryError, LibraryWarning, load_templates

    src = data_root / "lamost_format_examples" / "spec-55859-F5902_sp01-013_dr8.fits.gz"
    raw = bytearray(gzip.decompress(src.read_bytes()))
    i = raw.find(b"Z       = ")
    raw[i : i + 80] = b"Z       = 0.00012 +- 0.00002".ljust(80)
    folder = tmp_path / "lib"
    folder.mkdir()
    (folder / "garbled.fits").write_bytes(bytes(raw))
    with pytest.warns(LibraryWarning), pytest.raises(LibraryError) as err:
        load_templates([folder], classes=None, require_range=None)
    msg = str(err.value)
    assert "no usable spectrum in this folder" in msg and "garbled.fits: unreadable" in msg
    assert "unparsable header card Z" in msg


def test_a_run_without_checksums_warns_that_weights_cannot_be_verified(tmp_path):
    from drcnet.models import load_run, pretrained_dir

    run = tmp_path / "old"
    shutil.copytree(pretrained_dir("drcnet"), run)
    meta = json.loads((run / "run.json").read_text())
    del meta["checksums"]
    (run / "run.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="records no checksum for best.safetensors.*cannot be verified"):
        load_run(run)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_run(pretrained_dir("drcnet"))  # with checksums: silent


def test_the_nan_stripe_warning_of_predict_is_one_clean_line(micro_data, tmp_path):
    data = tmp_path / "nan.h5"
    shutil.copyfile(micro_data, data)
    with h5py.File(data, "a") as h:
        s = h["stripes"][0]
        s[:] = np.nan
        h["stripes"][0] = s
    from drcnet.models import pretrained_dir

    code, out = _cli("predict", pretrained_dir("drcnet"), "--data", data, "--out", tmp_path / "p.csv")
    lines = [ln for ln in out.splitlines() if "NaN/inf" in ln]
    assert code == 0 and len(lines) == 1 and lines[0].startswith(f"warning: {data}: 1 of ")
    assert "UserWarning" not in out and ".py:" not in out
