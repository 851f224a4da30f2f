"""Bad input: each case gives a clear error naming the file and the problem, or flags the affected fibers.

Every case works on a folder of links to the session's simulated exposure with
one file removed or replaced, so no case needs a new simulation.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from typer.testing import CliRunner

from _support.exposure import clean_reduction, full_exposure, linked_copy, one, replace_with_copy
from drcnet.cli import app
from drcnet.data.schema import FLAG_BITS
from drcnet.instrument.errors import FrameError, MissingFrameError
from drcnet.instrument.exposure import find_exposure
from drcnet.instrument.rawframe import read_raw_frame
from drcnet.reduce.arm import ReduceConfig
from drcnet.workflows.reduce_exposure import reduce_exposure

runner = CliRunner()


@pytest.fixture(scope="module")
def exposure(tmp_path_factory, data_root):
    return full_exposure(tmp_path_factory, data_root)


def _reduce(folder, data_root):
    return reduce_exposure(folder, ReduceConfig(threads=1), data_root=data_root)


@pytest.mark.slow
def test_missing_arm(exposure, tmp_path, data_root):
    red = tuple(p.name for p in exposure.glob("r?-01r-*"))
    folder = linked_copy(exposure, tmp_path / "exp", skip=red)
    with pytest.raises(MissingFrameError, match=r"spectrograph 1 has no red-arm frames.*needs both arms"):
        _reduce(folder, data_root)
    res = runner.invoke(app, ["frames", "reduce", str(folder), "--out", str(tmp_path / "x.h5")])
    assert res.exit_code == 2 and "red-arm" in res.output and str(folder) in res.output.replace("\n", "")
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.slow
def test_missing_flat(exposure, tmp_path, data_root):
    flat = one(exposure, "rf-01b-*.fit").name
    folder = linked_copy(exposure, tmp_path / "exp", skip=(flat,))
    with pytest.raises(MissingFrameError, match=r"blue arm: no flat frame \(rf-01b-SIM\d+-\*\.fit\)"):
        _reduce(folder, data_root)


@pytest.mark.slow
def test_missing_fibermap(exposure, tmp_path, data_root):
    fm = one(exposure, "fibermap-*").name
    folder = linked_copy(exposure, tmp_path / "exp", skip=(fm,))
    with pytest.raises(MissingFrameError, match=f"fiber map of spectrograph 1 .*{fm}.* is missing"):
        _reduce(folder, data_root)


@pytest.mark.slow
def test_truncated_fits(exposure, tmp_path, data_root):
    folder = linked_copy(exposure, tmp_path / "exp")
    sci = replace_with_copy(one(folder, "ro-01r-*.fit"))
    data = sci.read_bytes()
    sci.write_bytes(data[: len(data) // 2])
    with pytest.raises(FrameError, match=f"{sci.name}: the file is truncated"):
        _reduce(folder, data_root)
    with pytest.raises(FrameError, match="truncated or corrupt"):
        read_raw_frame(sci)


@pytest.mark.slow
def test_corrupt_fits(exposure, tmp_path, data_root):
    folder = linked_copy(exposure, tmp_path / "exp")
    arc = one(folder, "ra-01b-*.fit")
    arc.unlink()
    arc.write_bytes(b"this is not a FITS file\n" * 200)
    with pytest.raises(FrameError, match=f"{arc.name}: cannot be read as a FITS file.*truncated or corrupt"):
        _reduce(folder, data_root)
    res = runner.invoke(app, ["frames", "reduce", str(folder), "--out", str(tmp_path / "x.h5")])
    assert res.exit_code == 2 and "cannot be read as a FITS file" in res.output


@pytest.mark.slow
def test_wrong_shape(exposure, tmp_path, data_root):
    folder = linked_copy(exposure, tmp_path / "exp")
    flat = one(folder, "rf-01r-*.fit")
    header = fits.getheader(flat)
    data = fits.getdata(flat)[:, 32:-32]  # overscan strips cut off
    flat.unlink()
    fits.PrimaryHDU(data, header=header).writeto(flat)
    with pytest.raises(FrameError, match=r"frame shape is \(4136, 4096\), expected \(4136, 4160\)"):
        _reduce(folder, data_root)


@pytest.mark.slow
def test_header_that_contradicts_the_name(exposure, tmp_path):
    folder = linked_copy(exposure, tmp_path / "exp")
    arc = replace_with_copy(one(folder, "ra-01b-*.fit"))
    with fits.open(arc, mode="update") as hdul:
        hdul[0].header["OBSTYPE"] = "FLAT"
    with pytest.raises(FrameError, match="header OBSTYPE is 'FLAT' but this file is used as the arc frame"):
        read_raw_frame(arc, "arc", 1, "blue")


def _rewrite_fibermap(folder, edit):
    path = replace_with_copy(one(folder, "fibermap-*"))
    with fits.open(path) as hdul:
        header = hdul[1].header.copy()
        table = Table(hdul[1].data)
    table = edit(table, header)
    path.unlink()
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(table, header=header, name="FIBERMAP")]).writeto(path)
    return path


@pytest.mark.slow
def test_fibermap_of_another_size(exposure, tmp_path, data_root):
    folder = linked_copy(exposure, tmp_path / "exp")
    path = _rewrite_fibermap(folder, lambda t, h: t[:249])
    with pytest.raises(FrameError, match=f"{path.name}: the fiber map lists 249 fibers but the frames hold 250"):
        _reduce(folder, data_root)


@pytest.mark.slow
def test_fibermap_of_another_spectrograph(exposure, tmp_path, data_root):
    folder = linked_copy(exposure, tmp_path / "exp")

    def edit(t, h):
        h["SPID"] = 7
        return t

    _rewrite_fibermap(folder, edit)
    with pytest.raises(FrameError, match="fiber map is for spectrograph 7, the frames are spectrograph 1"):
        _reduce(folder, data_root)


@pytest.mark.slow
def test_fibermap_with_unknown_type(exposure, tmp_path, data_root):
    folder = linked_copy(exposure, tmp_path / "exp")

    def edit(t, h):
        t["FIBERTYPE"][3] = "Galaxy"
        return t

    _rewrite_fibermap(folder, edit)
    with pytest.raises(FrameError, match=r"unknown FIBERTYPE value\(s\) \['Galaxy'\]"):
        _reduce(folder, data_root)


def test_exposure_folder_layout_errors(tmp_path):
    with pytest.raises(MissingFrameError, match="exposure folder not found"):
        find_exposure(tmp_path / "nope")
    with pytest.raises(MissingFrameError, match="no LAMOST raw frames"):
        find_exposure(tmp_path)
    plan = tmp_path / "P1"
    plan.mkdir()
    for name in ("rf-01b-P1-1-10.fit", "rf-01b-P1-2-11.fit", "ra-01b-P1-3-12.fit", "ro-01b-P1-4-13.fit"):
        (plan / name).touch()
    with pytest.raises(FrameError, match="2 spectrograph 1 blue flat frames"):
        find_exposure(tmp_path)  # a folder holding one exposure folder is followed into it
    with pytest.raises(FrameError, match="2 spectrograph 1 blue flat frames"):
        find_exposure(plan / "ra-01b-P1-3-12.fit")  # a file of the exposure stands for its folder
    (tmp_path / "P2").mkdir()
    (tmp_path / "P2" / "ro-01b-P2-4-13.fit").touch()
    with pytest.raises(FrameError, match="several exposure folders"):
        find_exposure(tmp_path)


@pytest.mark.slow
def test_nan_pixels_flag_only_the_fibers_they_touch(exposure, tmp_path, data_root):
    """NaN pixels in a few fibers' rows of the science frame, no bias frames, and a dead fiber that the fiber
    map calls an object: the rest of the exposure is reduced exactly as the clean one."""
    biases = tuple(p.name for p in exposure.glob("rb-01*"))
    folder = linked_copy(exposure, tmp_path / "exp", skip=biases)
    clean = clean_reduction(exposure, data_root)
    sci = one(folder, "ro-01r-*.fit")
    frame = read_raw_frame(sci)
    data = frame.raw.astype(np.float32)
    centre = clean.arms["red"].traces.centres(np.array([2000.0]))[:, 0]
    hit = [40, 41, 120]
    for f in hit:
        r = int(round(centre[f]))
        data[r - 1 : r + 2, 32 + 1990 : 32 + 2010] = np.nan
    sci.unlink()
    fits.PrimaryHDU(data, header=frame.header).writeto(sci)
    dead = int(np.flatnonzero(clean.fibermap.fibertype == "Dead")[0])

    def edit(t, h):
        t["FIBERTYPE"][dead] = "Obj"
        t["OBJID"][dead] = "claimed-object"
        return t

    _rewrite_fibermap(folder, edit)
    got = _reduce(folder, data_root)[0]
    bad = (got.flags & FLAG_BITS["bad_pixels"]) > 0
    assert sorted(np.flatnonzero(bad).tolist()) == hit
    assert got.arms["red"].bias.n_frames == 0
    assert any("no bias frames" in w for w in got.arms["red"].warnings)
    # the dead fiber claimed as an object: flagged trace_lost, not dead
    assert got.flags[dead] & FLAG_BITS["trace_lost"] and not got.flags[dead] & FLAG_BITS["dead"]
    others = np.setdiff1d(np.arange(250), hit)
    assert np.array_equal(got.arms["red"].stripes[others], clean.arms["red"].stripes[others])
    assert np.array_equal(got.arms["blue"].stripes, clean.arms["blue"].stripes)
    # NaN pixels are replaced by the fitted profile: the stripe stays finite and close to the clean one
    for f in hit:
        s = got.arms["red"].stripes[f]
        assert np.all(np.isfinite(s))
        assert abs(got.arms["red"].flux1d[f].sum() / clean.arms["red"].flux1d[f].sum() - 1) < 0.01
