"""The dataset: Table 1 split counts, splits by source star, reproducibility, provenance, CLI errors."""

from __future__ import annotations

from collections import Counter

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from drcnet import CLASSES
from drcnet.cli import app
from drcnet.data.schema import SPLIT_NAMES, decode, read_attrs, snr_bin
from drcnet.library import load_templates
from drcnet.simulate.plan import PRESETS, TABLE1, apportion, group_sources, plan_objects, split_templates

runner = CliRunner()


@pytest.fixture(scope="module")
def pyhammer(data_root):
    return load_templates([data_root / "spectral_libraries" / "pyhammer"]).templates


def test_apportion_is_exact_and_proportional():
    assert apportion(4840, [4500, 6500, 4680]).tolist() == [1389, 2006, 1445]
    assert apportion(7, [1, 1, 1]).sum() == 7


def test_paper_preset_reproduces_table1_exactly(pyhammer):
    rng = np.random.default_rng(0)
    split = split_templates(pyhammer, rng)
    plan = plan_objects(TABLE1, pyhammer, split, rng)
    assert len(plan) == 7989
    counts = Counter(zip(plan.split.tolist(), plan.snr_bin.tolist(), strict=True))
    for (split_name, b), n in TABLE1.items():
        assert counts[(SPLIT_NAMES.index(split_name), b)] == n
    assert sum(counts.values()) == sum(TABLE1.values())
    # the classes follow F 4500 : G 6500 : K 4680
    frac = np.bincount(plan.cls, minlength=3) / len(plan)
    np.testing.assert_allclose(frac, np.array([4500, 6500, 4680]) / 15680, atol=2e-4)
    # every object uses a template of its own class assigned to its own split
    cls_of = np.array([CLASSES.index(t.cls) for t in pyhammer])
    assert np.all(cls_of[plan.template] == plan.cls)
    assert np.all(split[plan.template] == plan.split)


def test_no_template_crosses_splits_and_classes_are_stratified(pyhammer):
    split = split_templates(pyhammer, np.random.default_rng(5))
    assert np.all(split >= 0)
    for c in CLASSES:
        members = np.array([t.cls == c for t in pyhammer])
        per_split = np.bincount(split[members], minlength=3)
        assert per_split.min() >= 1
        np.testing.assert_allclose(per_split / members.sum(), [0.8, 0.1, 0.1], atol=0.06)


@pytest.mark.slow
def test_same_star_in_two_libraries_is_one_source(data_root):
    res = load_templates([data_root / "spectral_libraries" / "miles", data_root / "spectral_libraries" / "stelib"])
    groups = group_sources(res.templates)
    by_group: dict[int, set[str]] = {}
    for g, t in zip(groups, res.templates, strict=True):
        by_group.setdefault(g, set()).add(t.library)
    shared = [g for g, libs in by_group.items() if len(libs) > 1]
    assert shared, "MILES and STELIB share stars (e.g. HD stars); they must be grouped"
    split = split_templates(res.templates, np.random.default_rng(0))
    for g in shared:
        assert len({split[i] for i, gg in enumerate(groups) if gg == g}) == 1


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("sim") / "tiny.h5"
    result = runner.invoke(app, ["simulate", "--preset", "tiny", "--out", str(out), "--seed", "7", "--workers", "2"])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_tiny_dataset_has_exact_cells_and_consistent_labels(tiny_file):
    with h5py.File(tiny_file, "r") as h:
        split, b, label = h["split"][:], h["snr_bin"][:], h["label"][:]
        snr = h["snr_r"][:]
        assert h["stripes"].shape == (112, 2, 11, 3000) and h["stripes"].dtype == np.float16
        assert h["stripes"].chunks == (1, 2, 11, 3000)
        assert np.isfinite(h["stripes"][:5].astype(np.float32)).all()
        # both extractions of every stripe: the boxcar sum and the optimal one, the same light within 10 %
        for key in ("flux1d", "ivar1d", "flux1d_opt", "ivar1d_opt"):
            assert h[key].shape == (112, 2, 3000) and h[key].dtype == np.float32, key
        net_box = h["flux1d"][:, 1] - h["sky1d"][:, 1]
        net_opt = h["flux1d_opt"][:, 1] - h["sky1d"][:, 1]
        bright = h["snr_r"][:] > 30
        ratio = np.median(net_opt[bright], axis=1) / np.median(net_box[bright], axis=1)
        assert bright.sum() >= 20 and np.all(np.abs(ratio - 1) < 0.1), ratio
        assert not np.array_equal(net_opt, net_box)
        tids = decode(h["template_id"][:])
        table = dict(zip(decode(h["templates/template_id"][:]), decode(h["templates/split"][:]), strict=True))
        subclass = decode(h["subclass"][:])
    for (split_name, k), n in PRESETS["tiny"].items():
        assert np.sum((split == SPLIT_NAMES.index(split_name)) & (b == k)) == n
    np.testing.assert_array_equal(b, snr_bin(snr))  # the bin is the measured S/N's bin
    for s, tid in zip(split, tids, strict=True):
        assert table[tid] == SPLIT_NAMES[s]
    for lab, sub in zip(label, subclass, strict=True):
        assert sub[0] == CLASSES[lab]


def test_provenance_is_recorded(tiny_file):
    attrs = read_attrs(tiny_file)
    prov = attrs["provenance"]
    assert prov["package"] == "drcnet" and prov["version"] and prov["git_commit"]
    assert attrs["seed"] == 7 and prov["seed"] == 7
    assert attrs["config"]["preset"] == "tiny"
    assert attrs["config"]["instrument"]["ccd"]["read_noise_e"] == 3.5


@pytest.mark.slow
def test_same_seed_same_data_whatever_the_worker_count(tiny_file, tmp_path):
    out = tmp_path / "again.h5"
    result = runner.invoke(app, ["simulate", "--preset", "tiny", "--out", str(out), "--seed", "7", "--workers", "1"])
    assert result.exit_code == 0, result.output
    with h5py.File(tiny_file, "r") as a, h5py.File(out, "r") as b:
        for key in ("stripes", "flux1d", "flux1d_opt", "snr_r", "split", "label", "template_id", "params/mag_r"):
            np.testing.assert_array_equal(a[key][:], b[key][:], err_msg=key)


@pytest.mark.slow
def test_free_snr_all_test_mode(tmp_path, data_root):
    out = tmp_path / "eval.h5"
    result = runner.invoke(
        app,
        [
            "simulate",
            "--library",
            str(data_root / "spectral_libraries" / "pyhammer"),
            "--n",
            "30",
            "--snr-min",
            "5",
            "--snr-max",
            "50",
            "--all-test",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as h:
        assert h["split"].shape == (30,) and np.all(h["split"][:] == 2)
        snr = h["snr_r"][:]
    assert snr.min() > 3.5 and snr.max() < 60


def test_bad_arguments_give_clear_errors(tmp_path):
    result = runner.invoke(app, ["simulate", "--library", str(tmp_path / "nope"), "--out", str(tmp_path / "x.h5")])
    assert result.exit_code == 2
    assert "nope" in result.output and "does not exist" in result.output
    result = runner.invoke(app, ["simulate", "--n", "10", "--out", str(tmp_path / "x.h5")])
    assert result.exit_code == 2 and "--snr-min" in result.output
    assert not (tmp_path / "x.h5").exists()


def test_missing_data_root_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("DRCNET_DATA", raising=False)
    result = runner.invoke(app, ["simulate", "--preset", "tiny", "--out", str(tmp_path / "x.h5")])
    assert result.exit_code == 2 and "DRCNET_DATA" in result.output


def test_plot_sample_writes_png(tiny_file, tmp_path):
    out = tmp_path / "s.png"
    result = runner.invoke(app, ["plot-sample", str(tiny_file), "--index", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = runner.invoke(app, ["plot-sample", str(tiny_file), "--index", "500", "--out", str(out)])
    assert result.exit_code == 2 and "out of range" in result.output
