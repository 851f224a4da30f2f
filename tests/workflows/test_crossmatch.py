"""Issue 20: a survey's own frames to its own model - catalogue cross-match, the paper's split, fine-tuning.

The unit tests build small LAMOST catalogues and datasets here; the end-to-end test takes the session's
simulated exposure (``tests/_support/exposure.py``: simulate -> its ``lrs_catalogue.csv``), reduces it
with the catalogue and no reference data folder, splits, fine-tunes ``drcnet-survey`` for one epoch and
evaluates before and after.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.table import Table
from typer.testing import CliRunner

from _support.exposure import full_exposure
from _support.synthetic_dataset import make_synthetic_dataset
from drcnet.cli import app
from drcnet.conventions import SPLIT_NAMES
from drcnet.instrument.lrs_catalogue import CatalogueError, local_mjd, read_lrs_catalogue
from drcnet.simulate.plan import TABLE1, apportion
from drcnet.workflows.crossmatch import CatalogueMatcher, FiberKeys, catalogue_label
from drcnet.workflows.split_dataset import assign_splits, table1_rows

runner = CliRunner()


def _catalogue(rows: list[dict], path: Path, drop: tuple[str, ...] = ()) -> Path:
    cols = [
        "obsid",
        "designation",
        "lmjd",
        "planid",
        "spid",
        "fiberid",
        "class",
        "subclass",
        "snrg",
        "snrr",
        "teff",
        "teff_err",
        "logg",
        "logg_err",
        "feh",
        "feh_err",
    ]
    table = Table({c: [r[c] for r in rows] for c in cols if c not in drop})
    table.write(path, format="fits" if path.suffix == ".fits" else "ascii.csv", overwrite=True)
    return path


def _row(
    fiber: int,
    cls: str = "STAR",
    sub: str = "G5",
    lmjd: int = 60001,
    planid: str = "P1",
    spid: int = 1,
    obsid: int | None = None,
    desig: str | None = None,
) -> dict:
    return {
        "obsid": obsid if obsid is not None else 1000 + fiber,
        "designation": desig or f"LAMOST J0000{fiber:02d}+0000",
        "lmjd": lmjd,
        "planid": planid,
        "spid": spid,
        "fiberid": fiber,
        "class": cls,
        "subclass": sub,
        "snrg": 20.0,
        "snrr": 10.0 * fiber,
        "teff": 5500.0 + fiber,
        "teff_err": 50.0,
        "logg": 4.4,
        "logg_err": 0.1,
        "feh": -0.1,
        "feh_err": 0.05,
    }


def _keys(n: int = 6, lmjd: int = 60001, planid: str = "P1", spid: int = 1, objects: int | None = None) -> FiberKeys:
    is_obj = np.ones(n, bool)
    if objects is not None:
        is_obj[objects:] = False
    return FiberKeys(
        lmjd=lmjd, planid=planid, spid=spid, fiber=np.arange(1, n + 1), is_object=is_obj, obsid=np.full(n, -1, np.int64)
    )


def test_lmjd_is_the_local_julian_day_number_constant_through_a_night():
    # 20:00 and 05:00 Beijing time of the night of 2011-10-24 (UTC 12:00 and 21:00): LAMOST's spec-55859-...
    assert local_mjd(55858.5) == 55859
    assert local_mjd(55858.875) == 55859
    assert local_mjd(55859.16) == 55859  # 11:50 local: still that night
    assert local_mjd(55859.2) == 55860  # 12:48 local (after local noon): the next night
    assert local_mjd(float("nan")) == -1


def test_labels_follow_lamosts_class_and_subclass():
    assert catalogue_label("STAR", "G5") == ("G", "G5")
    assert catalogue_label("STAR", "K3") == ("K", "K3")
    assert catalogue_label("STAR", "A1V") == ("other", "A1V")
    assert catalogue_label("STAR", "dM2")[0] == "other"
    assert catalogue_label("QSO", "Non") == ("other", "QSO")


@pytest.mark.parametrize("suffix", [".csv", ".fits"])
def test_catalogue_columns_go_to_the_matched_fibers(tmp_path, suffix):
    rows = [_row(1, sub="F5"), _row(2, sub="G2"), _row(3, sub="K4"), _row(4, sub="A3V"), _row(5, "GALAXY", "Non")]
    cat = _catalogue(rows, tmp_path / f"cat{suffix}")
    m = CatalogueMatcher(cat, non_fgk="other")
    got = m.match(_keys(6))
    assert got.label.tolist() == [0, 1, 2, 3, 3, -1]
    assert got.subclass.tolist()[:5] == ["F5", "G2", "K4", "A3V", "GALAXY"]
    assert got.designation[0] == "J000001+0000"  # "LAMOST " prefix and spaces removed
    assert got.obsid.tolist() == [1001, 1002, 1003, 1004, 1005, -1]
    np.testing.assert_allclose(got.params["snr_r_cat"][:5], [10, 20, 30, 40, 50])
    np.testing.assert_allclose(got.params["teff"][:3], [5501, 5502, 5503])
    r = m.report()
    assert (r["matched"], r["object_fibers"], r["object_fibers_without_row"]) == (5, 6, 1)
    assert r["object_fibers_without_row_examples"] == ["P1-sp01-006"]
    assert r["non_fgk_objects"] == 2 and r["non_fgk_by_class"] == {"STAR:A3V": 1, "GALAXY:GALAXY": 1}
    assert r["labels"] == {"F": 1, "G": 1, "K": 1}


def test_non_fgk_drop_leaves_them_unlabelled_and_counted(tmp_path):
    cat = _catalogue([_row(1, sub="G2"), _row(2, sub="M0")], tmp_path / "c.csv")
    m = CatalogueMatcher(cat, non_fgk="drop")
    assert m.match(_keys(2)).label.tolist() == [1, -1]
    assert m.report()["non_fgk_objects"] == 1
    with pytest.raises(ValueError, match="--non-fgk 'maybe'"):
        CatalogueMatcher(cat, non_fgk="maybe")


def test_duplicates_rows_without_fiber_and_other_spectrographs_are_counted(tmp_path):
    rows = [_row(1), _row(1, obsid=77), _row(2), _row(9), _row(3, spid=2), _row(1, planid="P9")]
    m = CatalogueMatcher(_catalogue(rows, tmp_path / "c.csv"))
    got = m.match(_keys(4))
    assert got.label.tolist() == [-1, 1, -1, -1]  # fiber 1 ambiguous (two rows): no label rather than a guess
    r = m.report()
    assert r["duplicate_keys"] == 1 and r["duplicate_rows"] == 2 and r["fibers_with_duplicate_rows"] == 1
    assert r["rows_without_fiber"] == 1 and r["rows_without_fiber_examples"] == [1009]  # fiber 9 of a 4-fiber map
    assert r["rows_for_other_spectrographs"] == 2
    assert r["object_fibers_without_row"] == 2
    text = "\n".join(m.report_lines())
    assert "1 duplicated key(s) (2 rows)" in text and "without a fiber" in text


def test_obsid_in_the_fiber_map_wins_over_the_position_keys(tmp_path):
    m = CatalogueMatcher(_catalogue([_row(1, sub="K1", obsid=555, planid="OTHER")], tmp_path / "c.csv"))
    keys = _keys(2)
    keys = FiberKeys(keys.lmjd, keys.planid, keys.spid, keys.fiber, keys.is_object, np.array([-1, 555]))
    assert m.match(keys).label.tolist() == [-1, 2]


def test_missing_columns_are_one_line_naming_them(tmp_path):
    cat = _catalogue([_row(1)], tmp_path / "c.csv", drop=("lmjd", "subclass"))
    with pytest.raises(CatalogueError, match=r"lacks column\(s\) lmjd, subclass") as err:
        read_lrs_catalogue(cat)
    assert "\n" not in str(err.value)
    # optional columns may be missing: NaN
    cat2 = _catalogue([_row(1)], tmp_path / "c2.csv", drop=("teff", "teff_err", "snrg"))
    got = read_lrs_catalogue(cat2)
    assert np.isnan(got["teff"][0]) and "teff" not in got["present"].tolist()


def test_catalogue_of_another_plate_is_a_clear_error(tmp_path):
    m = CatalogueMatcher(_catalogue([_row(1, planid="Q7"), _row(2, planid="Q7")], tmp_path / "c.csv"))
    with pytest.raises(
        CatalogueError,
        match=r"no fiber of the frames is in the catalogue.*P1 lmjd 60001.*Q7 lmjd 60001 "
        r"\(2 rows\).*another plate",
    ):
        m.check_any([_keys(3)])
    # same plan on another lmjd: the message says so and names the option that ignores the lmjd
    m2 = CatalogueMatcher(_catalogue([_row(1, lmjd=60000)], tmp_path / "d.csv"))
    with pytest.raises(CatalogueError, match="same plan on lmjd 60000.*--catalogue-ignore-lmjd"):
        m2.check_any([_keys(3)])
    m3 = CatalogueMatcher(tmp_path / "d.csv", ignore_lmjd=True)
    m3.check_any([_keys(3)])
    assert m3.match(_keys(3)).label.tolist() == [1, -1, -1]


def test_cli_reduce_with_a_broken_catalogue_exits_2_before_any_work(tmp_path):
    bad = _catalogue([_row(1)], tmp_path / "c.csv", drop=("fiberid",))
    res = runner.invoke(
        app, ["frames", "reduce", str(tmp_path), "--out", str(tmp_path / "x.h5"), "--catalogue", str(bad)]
    )
    assert res.exit_code == 2, res.output
    assert "lacks column(s) fiberid" in res.output
    assert not (tmp_path / "x.h5").exists()


# -- the split -------------------------------------------------------------------------------------
def test_split_rule_by_star_is_stable_and_low_snr_goes_to_test():
    stars = [f"J{i:05d}" for i in range(400)] * 2
    snr = np.r_[np.full(400, 50.0), np.full(400, 45.0)]
    split = assign_splits(stars, snr)
    assert np.array_equal(split[:400], split[400:])  # a star's spectra stay together
    frac = np.bincount(split[:400], minlength=3) / 400
    np.testing.assert_allclose(frac, [0.8, 0.1, 0.1], atol=0.05)
    low = assign_splits(["J00001"], np.array([29.9]))
    assert low.tolist() == [SPLIT_NAMES.index("test")]
    assert np.array_equal(assign_splits(stars[:50], snr[:50]), split[:50])  # independent of the other stars


def test_table1_exact_counts_or_what_is_missing():
    n = 15000
    rng = np.random.default_rng(0)
    snr = np.r_[rng.uniform(31, 100, 9000), rng.uniform(2, 30, 6000)]
    label = rng.integers(0, 3, n)
    stars = [f"S{i}" for i in range(n)]
    split = assign_splits(stars, snr)
    from drcnet.conventions import snr_bin

    sbin = snr_bin(snr)
    rows = table1_rows(split, sbin, label, stars)
    got = {(SPLIT_NAMES[s], b): int(np.sum((split[rows] == s) & (sbin[rows] == b))) for s in range(3) for b in range(4)}
    assert {k: v for k, v in got.items() if v} == TABLE1
    for (name, b), count in TABLE1.items():  # each cell's classes in the paper's ratio, as --preset paper
        cell = rows[(split[rows] == SPLIT_NAMES.index(name)) & (sbin[rows] == b)]
        assert np.bincount(label[cell], minlength=3).tolist() == apportion(count, [4500, 6500, 4680]).tolist()
    with pytest.raises(ValueError, match=r"missing .*train >30 F: \d+ of 1389"):
        table1_rows(split[:500], sbin[:500], label[:500], stars[:500])


@pytest.mark.slow
def test_split_command_merges_compatible_files_and_refuses_others(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a.h5", seed=1, unknown_fraction=0.25)
    b = make_synthetic_dataset(tmp_path / "b.h5", seed=2)
    # the synthetic files have one "star" per class (template_id synthetic:<class>): one split each
    res = runner.invoke(app, ["split", str(a), "--out", str(tmp_path / "three_stars.h5")])
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "three_stars.h5") as h:
        high = h["snr_r"][:] > 30
        tid, split = h["template_id"][:][high], h["split"][:][high]
    assert all(len(set(split[tid == t].tolist())) == 1 for t in set(tid.tolist()))
    for path, offset in ((a, 0), (b, 10000)):  # now every object its own star
        with h5py.File(path, "r+") as h:
            h["template_id"][:] = [f"star{offset + i}".encode() for i in range(h["label"].shape[0])]
    res = runner.invoke(app, ["split", str(a), str(b), "--out", str(tmp_path / "s.h5")])
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "s.h5") as h:
        n = h["label"].shape[0]
        split, snr, sbin, label = h["split"][:], h["snr_r"][:], h["snr_bin"][:], h["label"][:]
        rule = json.loads(h.attrs["split_rule"])
        assert h["stripes"].shape == (n, 2, 11, 3000)
    assert n == 240 - 10 and rule["left_out"]["unlabelled (label -1)"] == 10  # 25 % of a's 40 test objects
    assert (label >= 0).all()
    assert (split[snr <= 30] == SPLIT_NAMES.index("test")).all()
    assert set(np.unique(split[snr > 30])) == {0, 1, 2}
    assert np.array_equal(sbin, (snr <= 30) * 1 + (snr <= 20) * 1 + (snr <= 10) * 1)
    assert "left out: 10 unlabelled" in res.output
    # another schema: one line naming the file and the difference
    with h5py.File(b, "r+") as h:
        h.create_dataset("extra", data=np.zeros(h["label"].shape[0]))
    res = runner.invoke(app, ["split", str(a), str(b), "--out", str(tmp_path / "t.h5")])
    assert res.exit_code == 2 and "has extra that" in res.output and "cannot be merged" in res.output
    assert not (tmp_path / "t.h5").exists()


# -- the end-to-end case -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exposure(tmp_path_factory, data_root):
    return full_exposure(tmp_path_factory, data_root)


@pytest.mark.slow
def test_simulated_exposure_carries_its_lamost_catalogue(exposure):
    cat = read_lrs_catalogue(exposure / "lrs_catalogue.csv")
    from drcnet.instrument.fibermap import read_fibermap

    fm = read_fibermap(next(exposure.glob("fibermap-*-sp01.fits")))
    assert len(cat["obsid"]) == int(fm.is_object.sum())
    assert len(np.unique(cat["obsid"])) == len(cat["obsid"])
    assert set(cat["lmjd"].tolist()) == {60001} and set(cat["class"].tolist()) == {"STAR"}
    obj = np.flatnonzero(fm.is_object)
    # the same star (template) keeps its designation on every fiber; the S/N_r is the truth's
    by_template: dict[str, set[str]] = {}
    differs = 0
    for k, i in enumerate(obj):
        by_template.setdefault(fm.truth["TRUE_TEMPLATE"][i], set()).add(cat["designation"][k])
        # LAMOST's convention (the shipped labeller's label; the labeller's best subclass for an ambiguous star)
        lam = fm.truth["TRUE_SUBCLASS_LAMOST"][i]
        assert cat["subclass"][k] == lam and lam
        differs += lam != fm.truth["TRUE_SUBCLASS"][i]
    assert differs > 0  # the catalogue is not the MK truth
    assert all(len(v) == 1 for v in by_template.values())
    np.testing.assert_allclose(cat["snrr"], fm.truth["TRUE_SNR_R"][obj], atol=0.006)


@pytest.mark.slow
def test_frames_to_fine_tuned_model_without_reference_data(exposure, tmp_path, monkeypatch):
    monkeypatch.delenv("DRCNET_DATA", raising=False)
    # the session's exposure renders 9 templates (9 "stars"): too few for 8:1:1 by star, so here every
    # fiber is its own star (a plate of 225 stars, as on the sky)
    cat = Table.read(exposure / "lrs_catalogue.csv", format="ascii.csv")
    cat["designation"] = [f"J{o}" for o in cat["obsid"]]
    cat.write(tmp_path / "lrs_catalogue.csv", format="ascii.csv")
    red = tmp_path / "red.h5"
    res = runner.invoke(
        app, ["frames", "reduce", str(exposure), "--out", str(red), "--catalogue", str(tmp_path / "lrs_catalogue.csv")]
    )
    assert res.exit_code == 0, res.output
    assert "225 of 225 object fibers matched" in res.output
    with h5py.File(red) as h:
        label, fibertype = h["label"][:], h["fibertype"][:]
        report = json.loads(h.attrs["catalogue"])
        assert (label[fibertype == b"Sky"] == -1).all() and (label[fibertype == b"Obj"] >= 0).all()
        assert h["designation"][0].startswith(b"J") and np.isfinite(h["params/snr_r_cat"][0])
    assert report["object_fibers_without_row"] == 0 and report["rows_without_fiber"] == 0

    split = tmp_path / "split.h5"
    res = runner.invoke(app, ["split", str(red), "--out", str(split)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["split", str(red), "--out", str(tmp_path / "t1.h5"), "--table1"])
    assert res.exit_code == 2 and "train >30 F" in res.output

    # fine-tune the shipped model one epoch on the train split (training reads no reference data either)
    run = tmp_path / "ft"
    res = runner.invoke(
        app,
        [
            "train",
            "--init-from",
            "drcnet-survey",
            "--data",
            str(split),
            "--preset",
            "finetune",
            "--epochs",
            "1",
            "--out",
            str(run),
            "--no-progress",
            "--threads",
            "1",
            "--workers",
            "0",
            "--freeze",
            "reduce",
        ],
    )
    assert res.exit_code == 0, res.output
    meta = json.loads((run / "run.json").read_text())
    assert meta["model_config"]["n_classes"] == 4 and meta["model_config"]["heads"] is True
    assert meta["warm_start"]["fresh"] == [] and meta["train_config"]["freeze"] == ["reduce"]
    from drcnet.models.run_folder import pretrained_dir, read_safetensors

    ft, _ = read_safetensors(run / "best.safetensors")
    src, _ = read_safetensors(pretrained_dir("drcnet-survey") / "best.safetensors")
    reduce_keys = [k for k in ft if k.startswith("reduce.")]
    assert reduce_keys and all(np.array_equal(ft[k].float().numpy(), src[k].float().numpy()) for k in reduce_keys)
    assert any(
        not np.array_equal(ft[k].float().numpy(), src[k].float().numpy()) for k in ft if k.startswith("classifier.")
    )

    accs = {}
    for name, args in (("shipped", []), ("finetuned", [str(run)])):
        res = runner.invoke(app, ["evaluate", *args, "--data", str(split), "--out", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
        m = json.loads((tmp_path / name / "metrics.json").read_text())
        accs[name] = m["all"]
        assert sum(m["bins"][b]["n"] for b in m["bins"]) == m["all"]["n"] > 50
    assert accs["shipped"]["n"] == accs["finetuned"]["n"]

    # the default hybrid fine-tunes the same way: both networks' feature extractors stay as shipped
    hyb = tmp_path / "ft_hybrid"
    res = runner.invoke(
        app,
        ["train", "--init-from", "drcnet-hybrid", "--data", str(split), "--preset", "finetune", "--epochs", "1",
         "--out", str(hyb), "--no-progress", "--threads", "1", "--workers", "0"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    meta = json.loads((hyb / "run.json").read_text())
    assert meta["model"] == "hybrid_optimal" and meta["input_kind"] == "hybrid_optimal"
    assert meta["train_config"]["freeze"] == ["net2d.reduce", "net2d.backbones", "net1d.backbone"]
    ft, _ = read_safetensors(hyb / "best.safetensors")
    src, _ = read_safetensors(pretrained_dir("drcnet-hybrid") / "best.safetensors")
    frozen = [k for k in ft if k.startswith(("net2d.reduce.", "net2d.backbones.", "net1d.backbone."))]
    assert frozen and all(np.array_equal(ft[k].float().numpy(), src[k].float().numpy()) for k in frozen)
    assert not np.array_equal(ft["net1d.head.weight"].float().numpy(), src["net1d.head.weight"].float().numpy())
    res = runner.invoke(app, ["evaluate", str(hyb), "--data", str(split), "--out", str(tmp_path / "hyb_eval")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "hyb_eval" / "metrics.json").read_text())["all"]["n"] == accs["shipped"]["n"]


@pytest.mark.slow
def test_predict_exposure_without_reference_data(exposure, tmp_path, monkeypatch):
    monkeypatch.delenv("DRCNET_DATA", raising=False)
    from drcnet.paths import DataNotFoundError, data_root

    with pytest.raises(DataNotFoundError):
        data_root()  # truly unset (and no checkout fallback is used by the frames path)
    out = tmp_path / "cat.csv"
    res = runner.invoke(app, ["predict", "--exposure", str(exposure), "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = Table.read(out)
    assert len(table) == 225 and np.isin(table["pred"], ["F", "G", "K", "other"]).all()


@pytest.mark.slow
def test_night_classify_with_catalogue_without_reference_data(exposure, tmp_path, monkeypatch):
    monkeypatch.delenv("DRCNET_DATA", raising=False)
    import pyarrow.parquet as pq

    cat = Table.read(exposure / "lrs_catalogue.csv", format="ascii.csv")
    cat = cat[cat["fiberid"] != 4]  # one object fiber without a catalogue row
    cat["class"][cat["fiberid"] == 5] = "QSO"
    cat.write(tmp_path / "cat.csv", format="ascii.csv")
    out = tmp_path / "night" / "night.parquet"
    res = runner.invoke(
        app,
        [
            "night",
            "classify",
            str(exposure),
            "--out",
            str(out),
            "--threads",
            "--workers",
            "1",
            "--catalogue",
            str(tmp_path / "cat.csv"),
            "--non-fgk",
            "drop",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (
        "224 of 225 object fibers matched" in res.output and "1 object fiber(s) without a catalogue row" in res.output
    )
    t = pq.read_table(out).to_pandas()
    assert len(t) == 225
    row4, row5 = t[t.fiber == 4].iloc[0], t[t.fiber == 5].iloc[0]
    assert row4.lamost_obsid == -1 and row4.lamost_class == "" and row4.lamost_correct is None
    assert row5.lamost_class == "" and row5.lamost_subclass == "QSO"  # dropped: no class, subclass kept
    good = t[t.lamost_class != ""]
    assert len(good) == 223 and set(good.lamost_class) <= {"F", "G", "K"}
    assert (good.lamost_correct == (good.pred == good.lamost_class)).all()
    assert "accuracy against the catalogue" in res.output
    assert Table.read(out.with_suffix(".fits"))["lamost_obsid"].dtype.kind == "i"


def test_finetune_preset_takes_the_source_architecture_and_freeze_names_parts():
    from drcnet.models import create_model
    from drcnet.train.config import TrainConfig
    from drcnet.train.warm_start import freeze_parts, with_source_architecture

    cfg = with_source_architecture(
        TrainConfig(
            model="drcnet",
            data="x.h5",
            out="o",
            preset="finetune",
            init_from="drcnet-survey",
            model_config={"dropout": 0.1},
        ).resolved()
    )
    assert cfg.lr == 1e-4 and cfg.epochs == 4 and cfg.schedule == "cosine"
    assert cfg.freeze == ["reduce", "backbones"]  # a DRC-Net fine-tune keeps its reductions and backbones
    none = TrainConfig(model="drcnet", data="x.h5", out="o", preset="finetune", freeze=[]).resolved()
    assert none.freeze == []  # --freeze none trains everything
    from drcnet.cli.train import _freeze_parts

    assert _freeze_parts("none") == [] and _freeze_parts(None) is None and _freeze_parts("reduce, x") == ["reduce", "x"]
    for empty in ("", " ", ",", "reduce,"):
        with pytest.raises(ValueError, match="an empty part name; name the parts .* or --freeze none"):
            _freeze_parts(empty)
    assert cfg.model_config["n_classes"] == 4 and cfg.model_config["heads"] and cfg.model_config["dropout"] == 0.1
    same = with_source_architecture(
        TrainConfig(model="drcnet", data="x.h5", out="o", preset="fast", init_from="drcnet-survey").resolved()
    )
    assert "n_classes" not in same.model_config  # other presets: unchanged
    with pytest.raises(ValueError, match="is a drcnet run but --model is rcnet"):
        with_source_architecture(
            TrainConfig(model="rcnet", data="x.h5", out="o", preset="finetune", init_from="drcnet-survey").resolved()
        )
    model = create_model("drcnet", **cfg.model_config)
    n = freeze_parts(model, ["reduce", "backbones"])
    assert n > 0 and all(not p.requires_grad for p in model.reduce.parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())
    with pytest.raises(ValueError, match="--freeze wings: not a part .*parts with weights: reduce, backbones"):
        freeze_parts(model, ["wings"])
    hybrid = create_model("hybrid")
    n = freeze_parts(hybrid, ["net2d.reduce", "net2d.backbones", "net1d.backbone"])
    assert n == len(list(hybrid.net2d.reduce.parameters())) + len(list(hybrid.net2d.backbones.parameters())) + len(
        list(hybrid.net1d.backbone.parameters())
    )
    trainable = {".".join(name.split(".")[:2]) for name, p in hybrid.named_parameters() if p.requires_grad}
    assert trainable == {"net2d.fusion", "net2d.classifier", "net1d.head", "mix"}
    with pytest.raises(ValueError, match="--freeze net2d.wings: not a part .*parts with weights: net2d, net1d"):
        freeze_parts(hybrid, ["net2d.wings"])
    with pytest.raises(ValueError, match="an empty part name .*would freeze the whole model"):
        freeze_parts(hybrid, ["net2d.reduce", ""])
    with pytest.raises(ValueError, match="the finetune preset fine-tunes one trained run .*--init-from drcnet-hybrid"):
        with_source_architecture(
            TrainConfig(
                model="hybrid", data="x.h5", out="o", preset="finetune", init_from="drcnet-survey,rcnet-robust"
            ).resolved()
        )


def test_nested_model_config_overrides_keep_the_presets_and_the_source_runs_other_options():
    from drcnet.train.config import PRESETS, TrainConfig, merge_model_config
    from drcnet.train.warm_start import with_source_architecture

    base = {"n_classes": 4, "drcnet": {"reduce_init": "profile", "heads": True}, "rcnet": {}}
    got = merge_model_config(base, {"drcnet": {"dropout": 0.2}, "mix_init": 0.3})
    assert got == {"n_classes": 4, "drcnet": {"reduce_init": "profile", "heads": True, "dropout": 0.2}, "rcnet": {},
                   "mix_init": 0.3}  # fmt: skip
    assert base["drcnet"] == {"reduce_init": "profile", "heads": True}  # the arguments stay as they were
    got["drcnet"]["heads"] = False
    assert base["drcnet"]["heads"] is True  # nested dicts are copies too
    survey = PRESETS["survey"]["model_defaults"]["hybrid"]
    cfg = TrainConfig(
        model="hybrid", data="x.h5", out="o", preset="survey", model_config={"drcnet": {"dropout": 0.2}}
    ).resolved()
    assert cfg.model_config["drcnet"] == {**survey["drcnet"], "dropout": 0.2}
    cfg.model_config["drcnet"]["dropout"] = 0.9
    assert "dropout" not in PRESETS["survey"]["model_defaults"]["hybrid"]["drcnet"]  # the preset is not shared
    # the two hybrids get equal defaults, not one shared dict
    optimal = PRESETS["survey"]["model_defaults"]["hybrid_optimal"]
    assert optimal == survey and optimal is not survey and optimal["drcnet"] is not survey["drcnet"]
    # resuming: a nested option given again unchanged is no conflict; a changed one is named by its key
    from drcnet.train.config import resume_conflicts

    saved = TrainConfig(
        model="hybrid", data="x.h5", out="o", model_config={"drcnet": {"dropout": 0.2}, "mix_init": 0.5}
    )
    same = TrainConfig(model="hybrid", data="x.h5", out="o", model_config={"drcnet": {"dropout": 0.2}})
    assert resume_conflicts(saved, same) == []
    other = TrainConfig(model="hybrid", data="x.h5", out="o", model_config={"drcnet": {"aux_heads": True}})
    assert resume_conflicts(saved, other) == [
        "model_config.drcnet: {'dropout': 0.2} -> {'dropout': 0.2, 'aux_heads': True}"
    ]
    # fine-tuning the shipped hybrid with one option of its 2D network changed keeps the rest of its architecture
    tuned = with_source_architecture(
        TrainConfig(
            model="hybrid_optimal",
            data="x.h5",
            out="o",
            preset="finetune",
            init_from="drcnet-hybrid",
            model_config={"drcnet": {"dropout": 0.1}},
        ).resolved()
    )
    assert tuned.model == "hybrid_optimal" and tuned.model_config["drcnet"]["dropout"] == 0.1
    assert tuned.model_config["drcnet"]["reduce_init"] == "profile" and tuned.model_config["drcnet"]["heads"] is True
    assert tuned.model_config["rcnet"]["channels"] == [16, 16, 32, 32, 64, 64, 128, 128]
