"""``drcnet simulate --other``: exact counts, kept subclasses, sky-only fibers, F/G/K path unchanged."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from drcnet.cli import app
from drcnet.library import load_templates
from drcnet.simulate.dataset import NO_LIGHT_MAG, SimulationConfig, prepare_dataset
from drcnet.simulate.plan import (
    OTHER_LABEL,
    other_counts,
    plan_objects,
    split_templates,
)
from drcnet.simulate.render import Source

runner = CliRunner()

#: real LAMOST files of lamost_real: two A stars, one M star, one galaxy (one galaxy with no r-band flux)
LAMOST_OTHER = (
    "spec-55859-F5902_sp06-207.fits.gz",
    "spec-55859-F5902_sp15-091.fits.gz",
    "spec-55863-M31_011N40_B1_sp07-211.fits.gz",
    "spec-58575-HD103621N361936B01_sp03-008.fits",
    "spec-58575-HD103621N361936B01_sp03-039.fits",
)


def _read(path):
    with h5py.File(path, "r") as h:
        return {k: h[k][:] for k in ("label", "subclass", "snr_r", "split", "template_id")}


@pytest.fixture(scope="module")
def stelib_other(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("other") / "o25.h5"
    res = runner.invoke(
        app,
        [
            "simulate",
            "--out",
            str(out),
            "--n",
            "40",
            "--snr-min",
            "3",
            "--snr-max",
            "80",
            "--other",
            "0.25",
            "--library",
            str(data_root / "spectral_libraries" / "stelib"),
            "--workers",
            "2",
            "--seed",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    return _read(out)


@pytest.mark.slow
def test_other_share_is_exact_and_split_8_1_1(stelib_other):
    label, split = stelib_other["label"], stelib_other["split"]
    assert int(np.sum(label == OTHER_LABEL)) == 10
    assert np.bincount(split[label == OTHER_LABEL], minlength=3).tolist() == [8, 1, 1]
    assert np.bincount(label, minlength=4)[:3].sum() == 30


def test_other_objects_keep_their_subclass(stelib_other):
    sub = [s.decode() for s in stelib_other["subclass"][stelib_other["label"] == OTHER_LABEL]]
    tid = [s.decode() for s in stelib_other["template_id"][stelib_other["label"] == OTHER_LABEL]]
    assert all(s[:1] in "OBAM" or s == "SKY" for s in sub), sub
    assert any(s.startswith("A") for s in sub)
    # a library A star keeps its MK subclass, a sky fiber says SKY
    for s, t in zip(sub, tid, strict=True):
        assert (s == "SKY") == t.startswith("sky:")
    fgk = [s.decode()[:1] for s in stelib_other["subclass"][stelib_other["label"] < OTHER_LABEL]]
    assert set(fgk) <= set("FGK")


def test_sky_only_fibers_are_faint(stelib_other):
    lab, sub, snr = stelib_other["label"], stelib_other["subclass"], stelib_other["snr_r"]
    sky = (lab == OTHER_LABEL) & (sub == b"SKY")
    assert sky.sum() >= 1
    # no object light: only the sky residual and the halo of the neighbours (up to ~3.5 beside a 14 mag star)
    assert np.all(snr[sky] < 5.0)


@pytest.mark.slow
def test_sky_fiber_without_bright_neighbours_has_snr_below_one(data_root):
    templates = load_templates([data_root / "spectral_libraries" / "pyhammer"]).templates
    prepared = prepare_dataset(
        SimulationConfig(libraries=["pyhammer"], n=4, snr_min=3, snr_max=80, other=1.0, all_test=True),
        templates,
        data_root,
    )
    sky = next(i for i, t in enumerate(prepared.templates) if t.meta.get("no_light"))
    for j in range(4):
        rng = np.random.default_rng([5, j])
        faint = [Source(0, 0.0, 0.0, 18.5, 1.2), Source(1, 0.0, 0.0, 18.5, 1.2)]
        r = prepared.model.render_object(
            Source(sky, 0.0, 0.0, NO_LIGHT_MAG, 1.2), int(rng.integers(1, 249)), rng, snr_target=None, neighbours=faint
        )
        assert abs(r.snr_r) < 1.0


def test_only_other_objects_of_a_lamost_folder(tmp_path, data_root):
    folder = tmp_path / "lamost"
    folder.mkdir()
    for name in LAMOST_OTHER:
        (folder / name).symlink_to(data_root / "lamost_real" / name)
    out = tmp_path / "rej.h5"
    res = runner.invoke(
        app,
        [
            "simulate",
            "--out",
            str(out),
            "--n",
            "12",
            "--snr-min",
            "3",
            "--snr-max",
            "80",
            "--other",
            "1",
            "--all-test",
            "--no-sky-fibers",
            "--library",
            str(folder),
            "--workers",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    d = _read(out)
    assert np.all(d["label"] == OTHER_LABEL) and np.all(d["split"] == 2)
    sub = {s.decode() for s in d["subclass"]}
    assert "GALAXY" in sub and any(s.startswith("A") for s in sub) and "SKY" not in sub


def test_other_counts_follow_preset_cells():
    cells = {("train", 0): 60, ("val", 0): 12, ("test", 3): 28}
    other, fgk, n = other_counts(0.2, cells, None, False)
    assert sum(other.values()) == 20 and n is None
    assert {k: other.get(k, 0) + fgk[k] for k in cells} == cells
    assert other_counts(0.25, None, 40, True)[0] == {("test", -1): 10}


@pytest.mark.slow
def test_fgk_plan_unchanged_without_other(data_root):
    templates = load_templates([data_root / "spectral_libraries" / "pyhammer"]).templates
    config = SimulationConfig(libraries=["pyhammer"], n=30, snr_min=3, snr_max=80, seed=4)
    prepared = prepare_dataset(config, templates, data_root)
    rng = np.random.default_rng(4)
    split = split_templates(templates, rng)
    plan = plan_objects(None, templates, split, rng, n=30, snr_range=(3, 80))
    assert np.array_equal(prepared.template_split, split)
    for name in ("cls", "split", "snr_bin", "snr_range", "template"):
        assert np.array_equal(getattr(prepared.plan, name), getattr(plan, name)), name
    assert [t.template_id for t in prepared.templates] == [t.template_id for t in templates]


def test_other_without_any_source_is_a_clear_error(tmp_path, data_root):
    res = runner.invoke(
        app,
        [
            "simulate",
            "--out",
            str(tmp_path / "x.h5"),
            "--n",
            "10",
            "--snr-min",
            "3",
            "--snr-max",
            "80",
            "--other",
            "0.5",
            "--no-sky-fibers",
        ],
    )
    assert res.exit_code == 2
    assert "O/B/A/M" in res.output
