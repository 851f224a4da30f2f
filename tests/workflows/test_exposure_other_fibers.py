"""Exposures with ``other`` fibers: the plan (exact share, F/G/K fibers unchanged), the truth table,
and a whole exposure classified end to end by a four-class model with catalogue heads."""

from __future__ import annotations

import numpy as np
import pytest

from drcnet.conventions import CLASSES, OTHER
from drcnet.library import load_templates
from drcnet.simulate.dataset import NO_LIGHT_MAG
from drcnet.simulate.exposure import ExposureConfig
from drcnet.simulate.exposure.plan import plan_fibers
from drcnet.simulate.exposure.run import fibermap_of, plate_templates


@pytest.fixture(scope="module")
def templates(data_root):
    libs = [data_root / "spectral_libraries" / "pyhammer", data_root / "spectral_libraries" / "stelib"]
    return load_templates(libs, classes=None).templates


def test_other_share_of_program_fibers_is_exact_and_fgk_fibers_unchanged(templates):
    plain = plate_templates(templates, other=False)
    mixed = plate_templates(templates, other=True)
    assert mixed[: len(plain)] == plain and {t.cls for t in mixed[len(plain) :]} == {OTHER}
    base = plan_fibers(ExposureConfig(seed=3), plain, 1)
    cfg = ExposureConfig(seed=3, other=0.2)
    plan = plan_fibers(cfg, mixed, 1)
    program = (base.fibertype == "Obj") & np.array([s is not None and s.mag_r > 11 for s in base.sources])
    is_other = np.array([s is not None and mixed[s.template].cls == OTHER for s in plan.sources])
    assert is_other.sum() == int(np.floor(0.2 * program.sum() + 0.5))
    assert np.all(program[is_other])
    assert np.array_equal(plan.fibertype, base.fibertype)
    for f in np.flatnonzero(~is_other):  # every other fiber keeps exactly its star
        assert plan.sources[f] == base.sources[f] and plan.template_id[f] == base.template_id[f]
    sky = [f for f in np.flatnonzero(is_other) if mixed[plan.sources[f].template].meta.get("no_light")]
    assert sky and all(plan.sources[f].mag_r == NO_LIGHT_MAG for f in sky)
    # the truth table says "other" with the subclass kept
    fm = fibermap_of(plan, mixed, np.zeros(len(plan.sources)), cfg)
    assert set(fm.truth["TRUE_CLASS"][is_other]) == {OTHER}
    assert set(fm.truth["TRUE_CLASS"][fm.is_object & ~is_other]) <= set(CLASSES)
    subs = set(fm.truth["TRUE_SUBCLASS"][is_other])
    assert "SKY" in subs and all(s == "SKY" or s[:1] in "OBAM" for s in subs)


def test_other_without_sources_is_refused_by_default_zero(templates):
    plain = plate_templates(templates, other=False)
    plan = plan_fibers(ExposureConfig(seed=3, other=0.0), plain, 1)
    assert all(s is None or plain[s.template].cls in CLASSES for s in plan.sources)
    with pytest.raises(ValueError, match="O/B/A/M"):
        plan_fibers(ExposureConfig(seed=3, other=0.2), plain, 1)


# -- end to end: an exposure with other fibers, reduced and classified by a 4-class model with heads ----------
HEADER = (
    "spid,fiber,object_id,fibertype,mag_r,pred,prob_F,prob_G,prob_K,prob_other,pred_set,subclass,subclass_prob,"
    "lum_class,teff,teff_err,logg,logg_err,feh,feh_err,ood_score,ood,snr_r,flags,flag_names,no_class,"
    "true_class,true_subclass,true_snr_r,correct"
)


def _run_folder(path, model, name="drcnet"):
    import json

    from drcnet.models.run_folder import BEST, RUN_JSON
    from drcnet.train.checkpoint import save_weights

    path.mkdir()
    save_weights(path / BEST, model, {"model": name})
    (path / RUN_JSON).write_text(
        json.dumps({"model": name, "model_config": model.config_dict(), "input_kind": model.input_kind})
    )
    return path


@pytest.fixture(scope="module")
def other_exposure(tmp_path_factory, data_root, templates):
    from drcnet.simulate.exposure import simulate_exposure

    folder = tmp_path_factory.mktemp("other_exposure")
    simulate_exposure(
        ExposureConfig(seed=3, other=0.2, cosmics=False), templates, folder, data_root=data_root, workers=2
    )
    return folder


@pytest.fixture(scope="module")
def four_class_run(tmp_path_factory):
    import torch

    from drcnet.calibration import Calibration, save_calibration
    from drcnet.models import create_model

    torch.manual_seed(0)
    model = create_model("drcnet", pretrained=False, heads=True, n_classes=4)
    run = _run_folder(tmp_path_factory.mktemp("runs") / "drcnet4", model)
    save_calibration(
        run, Calibration(temperatures=[1.0, 1.2, 1.5, 2.0], ood_threshold=0.0, conformal_qhat=0.8, coverage=0.9)
    )
    return run


@pytest.mark.slow
def test_exposure_with_other_fibers_classified_end_to_end(other_exposure, four_class_run, tmp_path, data_root):
    from drcnet.workflows.classify_exposure import classify_exposure

    out = tmp_path / "catalogue.csv"
    res = classify_exposure(four_class_run, other_exposure, out, qa_dir=tmp_path / "qa", data_root=data_root)
    assert out.read_text().splitlines()[0] == HEADER
    t = res.table
    assert ",".join(t.colnames) == HEADER
    true = np.asarray(t["true_class"]).astype(str)
    assert np.sum(true == OTHER) >= 20 and set(true) <= {*CLASSES, OTHER}
    assert "SKY" in set(np.asarray(t["true_subclass"]).astype(str)[true == OTHER])
    pred = np.asarray(t["pred"]).astype(str)
    done = pred != ""
    assert done.sum() >= len(t) - 5 and set(pred[done]) <= {*CLASSES, OTHER}
    prob = np.stack([np.asarray(t[f"prob_{c}"], dtype=float) for c in (*CLASSES, OTHER)], axis=1)
    np.testing.assert_allclose(prob[done].sum(axis=1), 1.0, atol=1e-5)
    star = done & (pred != OTHER)
    sub = np.asarray(t["subclass"]).astype(str)
    assert np.all(sub[star] != "") and np.all(sub[~star] == "")
    teff, err = np.asarray(t["teff"], dtype=float), np.asarray(t["teff_err"], dtype=float)
    assert np.all(np.isfinite(teff[star])) and np.all(err[star] > 0) and np.all(np.isnan(teff[~star]))
    sets = np.asarray(t["pred_set"]).astype(str)
    assert np.all(sets[done] != "")  # the run's calibration.json was used
    assert set(np.asarray(t["ood"]).tolist()) <= {0, 1} and np.all(np.isfinite(np.asarray(t["ood_score"])[done]))
    # accuracy over the true F/G/K stars, rejection over the true other objects
    fgk = done & np.isin(true, CLASSES)
    assert res.accuracy == pytest.approx(float(np.mean(pred[fgk] == true[fgk])))
    assert res.rejection == pytest.approx(float(np.mean(pred[done & (true == OTHER)] == OTHER)))
    page = (tmp_path / "qa" / "index.html").read_text()
    assert "Predicted classes over" in page and f"{OTHER} {int(np.sum(pred == OTHER))}" in page
    assert "Rejection:" in page and "Out of distribution" in page and "Prediction sets:" in page
    # a random-init model may call everything other: the parameter table then has no row
    assert ("teff (K)" in page) == bool(star.any()), (int(star.sum()), page[:3000])


@pytest.mark.slow
def test_three_class_models_still_work_on_an_exposure_with_other_fibers(other_exposure, tmp_path, data_root):
    import torch

    from drcnet.inference.predictor import Predictor
    from drcnet.models import create_model
    from drcnet.workflows.classify_exposure import catalogue_table, predict_objects
    from drcnet.workflows.reduce_exposure import reduce_exposure

    (sr,) = reduce_exposure(other_exposure, data_root=data_root)
    torch.manual_seed(0)
    predictor = Predictor.load(_run_folder(tmp_path / "ffcnn", create_model("ffcnn"), "ffcnn"))
    assert predictor.info["calibrated"] is False

    def plain(stripes, flux1d, sky1d):  # a legacy predictor: probabilities only
        return np.tile([0.2, 0.5, 0.3], (len(stripes), 1))

    for got, has_logits in ((predict_objects(predictor, sr), True), (predict_objects(plain, sr), False)):
        t = catalogue_table([sr], [got])
        assert ",".join(t.colnames) == HEADER
        pred = np.asarray(t["pred"]).astype(str)
        done = pred != ""
        assert done.any() and set(pred[done]) <= set(CLASSES)
        assert np.all(np.isnan(np.asarray(t["prob_other"], dtype=float)))
        assert set(np.asarray(t["subclass"]).astype(str)) == {""} and np.all(
            np.isnan(np.asarray(t["teff"], dtype=float))
        )
        assert np.all(np.isfinite(np.asarray(t["ood_score"], dtype=float)[done])) == has_logits
        # a three-class model never answers "other": every true other object counts as wrong
        true = np.asarray(t["true_class"]).astype(str)
        assert not np.any(np.asarray(t["correct"])[true == OTHER])
