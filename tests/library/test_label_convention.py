"""One convention in the product (issue 22 step 5): the shipped labeller, both labels in simulated data,
fiber maps and catalogues on LAMOST's convention, and scoring a model against the labels it was trained on."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from _support.model_fixtures import micro_data  # noqa: F401
from drcnet.cli import app
from drcnet.conventions import CLASSES
from drcnet.data.schema import decode
from drcnet.library import load_templates
from drcnet.library.labels import LamostLabelMap, spectral_relabel, with_lamost_parameters
from drcnet.library.spectral_labels import (
    CnnLabeller,
    load_labeller,
    load_shipped_labeller,
    prepare_many,
    save_labeller,
    shipped_labeller_metadata,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def lamost_subset(data_root, tmp_path_factory):
    """30 real LAMOST spectra with LASP parameters (links) and their index.csv rows, in a folder of their own."""
    src = data_root / "lamost_real"
    with open(src / "index.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        rows = [r for r in reader if r["teff"] and r["logg"] and r["feh"] and r["cls"] == "STAR"][::50][:30]
    out = tmp_path_factory.mktemp("lamost_subset")
    for r in rows:
        (out / r["file"]).symlink_to(src / r["file"])
    with open(out / "index.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return out


def test_shipped_labeller_metadata_names_its_data_and_no_machine_path(data_root):
    lab = load_shipped_labeller()
    meta = shipped_labeller_metadata()
    assert lab is load_shipped_labeller()  # cached
    assert meta["subclasses"] == lab.subclasses and "F9" in lab.subclasses and lab.name == "cnn/norm"
    assert meta["index_sha256"] == hashlib.sha256((data_root / "lamost_real" / "index.csv").read_bytes()).hexdigest()
    assert meta["n_training_spectra"] == 1576 and meta["seed"] == 0 and meta["settings"]["epochs"] == 40
    assert meta["drcnet_version"] and len(str(meta["git_commit"])) >= 40
    text = json.dumps(meta)
    assert "/work/" not in text and "/home/" not in text and "/tmp/" not in text


def test_labeller_round_trip_keeps_probabilities(lamost_subset, tmp_path):
    templates = [with_lamost_parameters(t) for t in load_templates([lamost_subset], classes=None).templates]
    x = prepare_many(templates)
    fitted = CnnLabeller(epochs=2, seed=3, min_members=1).fit(templates, x=x)
    path = save_labeller(fitted, tmp_path / "lab.safetensors", {"note": "test"})
    loaded, meta = load_labeller(path)
    assert meta["note"] == "test" and loaded.subclasses == fitted.subclasses and loaded.epochs == 2
    np.testing.assert_allclose(loaded.subclass_probabilities(x), fitted.subclass_probabilities(x), atol=1e-7)
    # the shipped one survives the same trip, and it labels the real stars it learnt from as LAMOST does
    shipped = load_shipped_labeller()
    again, _ = load_labeller(save_labeller(shipped, tmp_path / "again.safetensors"))
    np.testing.assert_allclose(again.subclass_probabilities(x), shipped.subclass_probabilities(x), atol=1e-7)
    fgk = [i for i, t in enumerate(templates) if t.cls in CLASSES]
    got = shipped.predict([templates[i] for i in fgk], x=x[fgk])
    agree = np.mean([g.cls == templates[i].cls for g, i in zip(got, fgk, strict=True)])
    assert agree >= 0.8, agree
    with pytest.raises(ValueError, match="not a readable safetensors"):
        (tmp_path / "bad.safetensors").write_bytes(b"garbage")
        load_labeller(tmp_path / "bad.safetensors")


def test_label_map_from_index_equals_the_map_from_the_files(lamost_subset, tmp_path):
    loaded = load_templates([lamost_subset], classes=None)
    templates = [with_lamost_parameters(t) for t in loaded.templates]
    from_files = LamostLabelMap.fit(templates)
    from_index = LamostLabelMap.from_index(lamost_subset / "index.csv")
    # the index also lists the stars whose spectra the loader skips (too little coverage): their LASP parameters
    # and label still mark the region; here one such star
    assert len(loaded.skipped) == 1 and len(from_index.classes) == len(from_files.classes) + 1 == 30
    skipped = [
        r
        for r in csv.DictReader(open(lamost_subset / "index.csv", newline="", encoding="utf-8"))
        if r["file"] in str(loaded.skipped[0][0])
    ][0]
    extra = LamostLabelMap.scale(*(float(skipped[k]) for k in ("teff", "logg", "feh")))
    keep = ~np.all(np.isclose(from_index.points, extra), axis=1)
    from_index = LamostLabelMap(
        from_index.points[keep],
        [c for c, k in zip(from_index.classes, keep, strict=True) if k],
        [c for c, k in zip(from_index.subclasses, keep, strict=True) if k],
    )
    order_f = np.lexsort(from_files.points.T)
    order_i = np.lexsort(from_index.points.T)
    np.testing.assert_allclose(from_index.points[order_i], from_files.points[order_f])
    assert [from_index.classes[i] for i in order_i] == [from_files.classes[i] for i in order_f]
    assert [from_index.subclasses[i] for i in order_i] == [from_files.subclasses[i] for i in order_f]
    (tmp_path / "index.csv").write_text("file,cls,subclass,teff\nx.fits,STAR,G2,5700\n")
    with pytest.raises(ValueError, match=r"index\.csv: index lacks column\(s\) logg, feh"):
        LamostLabelMap.from_index(tmp_path)


@pytest.mark.slow
def test_simulate_records_the_mk_and_the_lamost_label(data_root, tmp_path):
    lib = data_root / "spectral_libraries" / "pyhammer"
    out = tmp_path / "both.h5"
    res = runner.invoke(
        app,
        [
            "simulate",
            "--library",
            str(lib),
            "--n",
            "16",
            "--snr-min",
            "10",
            "--snr-max",
            "60",
            "--all-test",
            "--out",
            str(out),
            "--workers",
            "1",
            "--seed",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    with h5py.File(out, "r") as h:
        assert h.attrs["label_convention"] == "mk"
        label, sub = h["label"][:], decode(h["subclass"][:])
        label_l, sub_l, tid = h["label_lamost"][:], decode(h["subclass_lamost"][:]), decode(h["template_id"][:])
        t = {
            k: decode(h[f"templates/{k}"][:])
            for k in ("template_id", "cls", "lamost_class", "lamost_subclass", "labeller")
        }
        margin = h["templates/label_margin"][:]
    # the MK label is unchanged: the subclass's letter is the class
    assert all(s[0] == CLASSES[k] for s, k in zip(sub, label, strict=True))
    # the LAMOST label is what spectral_relabel gives for those templates (shipped labeller, index region)
    templates = load_templates([lib]).templates
    by_id = {x.template_id: x for x in templates}
    lab, region = load_shipped_labeller(), LamostLabelMap.from_index(data_root / "lamost_real" / "index.csv")
    spectral = dict(zip([x.template_id for x in templates], lab.predict(templates), strict=True))
    n_diff = 0
    for i, key in enumerate(t["template_id"]):
        r = spectral_relabel(by_id[key], spectral[key], region)
        want = r.cls if r.cls in CLASSES else ("other" if r.cls in ("A", "M") else "")
        assert t["lamost_class"][i] == want, (key, t["lamost_class"][i], want)
        if want:
            assert t["lamost_subclass"][i] == r.subclass
        else:  # ambiguous: the labeller's best subclass is kept, the class left empty
            assert t["labeller"][i] == "ambiguous" and t["lamost_subclass"][i] == spectral[key].subclass
            assert margin[i] < 0.3
        n_diff += t["lamost_class"][i] != t["cls"][i]
    assert n_diff > 0  # the two conventions differ on some PyHammer stars
    row = {k: i for i, k in enumerate(t["template_id"])}
    for k, s, key in zip(label_l, sub_l, tid, strict=True):
        c = t["lamost_class"][row[key]]
        assert k == (["F", "G", "K", "other"].index(c) if c else -1) and s == t["lamost_subclass"][row[key]]


def test_fibermap_lamost_truth_round_trip_and_catalogue(tmp_path):
    from drcnet.instrument.fibermap import FiberMap, read_fibermap, write_fibermap
    from drcnet.simulate.exposure.catalogue import write_exposure_catalogue

    n = 6
    truth = {
        "TRUE_CLASS": np.array(["F", "G", "K", "other", "", "G"]),
        "TRUE_SUBCLASS": np.array(["F2", "G0", "K3", "GALAXY", "", "G5"]),
        "TRUE_SNR_R": np.array([40, 30, 20, 10, 0, 15], dtype=np.float32),
        "TRUE_TEMPLATE": np.array(["pyhammer:a", "pyhammer:b", "miles:c", "lamost:g", "", "pyhammer:d"]),
        "TRUE_CLASS_LAMOST": np.array(["other", "F", "K", "other", "", ""]),
        "TRUE_SUBCLASS_LAMOST": np.array(["A7", "F9", "K3", "GALAXY", "", "G2"]),
    }
    fm = FiberMap(
        spid=1,
        planid="SIMX",
        fiber=np.arange(1, n + 1),
        objid=np.array(["o1", "o2", "o3", "o4", "", "o6"]),
        fibertype=np.array(["Obj", "Obj", "F-std", "Obj", "Sky", "Obj"]),
        mag=np.full(n, 16.0, dtype=np.float32),
        truth=truth,
    )
    write_fibermap(tmp_path / "fibermap-SIMX-sp01.fits", fm, {"package": "drcnet"})
    back = read_fibermap(tmp_path / "fibermap-SIMX-sp01.fits", spid=1)
    for key in truth:
        np.testing.assert_array_equal(back.truth[key], truth[key], err_msg=key)
    cat = write_exposure_catalogue(tmp_path, "SIMX", [1])
    rows = list(csv.DictReader(open(cat, newline="", encoding="utf-8")))
    got = [(r["class"], r["subclass"]) for r in rows]
    # LAMOST's convention: an MK F2 that LAMOST calls A7 is STAR A7; the ambiguous G5 keeps the labeller's best
    assert got == [("STAR", "A7"), ("STAR", "F9"), ("STAR", "K3"), ("GALAXY", "Non"), ("STAR", "G2")]
    # a fiber map without the LAMOST columns (simulated before them) still reads, and its catalogue is MK
    old = FiberMap(**{**fm.__dict__, "truth": {k: v for k, v in truth.items() if not k.endswith("_LAMOST")}})
    write_fibermap(tmp_path / "fibermap-SIMX-sp01.fits", old, {"package": "drcnet"})
    back = read_fibermap(tmp_path / "fibermap-SIMX-sp01.fits", spid=1)
    assert "TRUE_CLASS_LAMOST" not in back.truth and list(back.truth["TRUE_CLASS"]) == list(truth["TRUE_CLASS"])
    rows = list(csv.DictReader(open(write_exposure_catalogue(tmp_path, "SIMX", [1]), newline="", encoding="utf-8")))
    assert [r["subclass"] for r in rows] == ["F2", "G0", "K3", "Non", "G5"]


def test_evaluate_scores_each_model_on_its_own_convention(micro_data, tmp_path):  # noqa: F811
    from drcnet.models import pretrained_dir
    from drcnet.workflows.evaluate import evaluate_run

    data = tmp_path / "both.h5"
    shutil.copy(micro_data, data)
    with h5py.File(data, "r+") as h:
        label = h["label"][:]
        # LAMOST's labels differ from the MK ones here: each F/G/K object moves one class on
        lamost = np.where(label >= 0, (label + 1) % 3, -1).astype(np.int8)
        h.create_dataset("label_lamost", data=lamost)
        h.create_dataset("subclass_lamost", data=np.array([b"F9"] * len(label), dtype="S8"))
        h.attrs["label_convention"] = "mk"
    runs = {}
    for conv in ("mk", "lamost"):
        runs[conv] = shutil.copytree(pretrained_dir("drcnet"), tmp_path / f"run_{conv}")
        meta = json.loads((runs[conv] / "run.json").read_text())
        meta["label_convention"] = conv
        (runs[conv] / "run.json").write_text(json.dumps(meta))
    m_mk = evaluate_run(runs["mk"], data, split="test", write=False)
    m_lam = evaluate_run(runs["lamost"], data, split="test", write=False)
    assert m_mk["label_convention"] == "mk" and m_lam["label_convention"] == "lamost"
    assert m_lam["model_label_convention"] == "lamost"
    # same weights, same predictions: the confusion matrices are those of the two label sets
    cm_mk, cm_lam = (np.array(m["all"]["confusion_matrix"]) for m in (m_mk, m_lam))
    assert cm_mk.sum() == cm_lam.sum() > 0
    np.testing.assert_array_equal(cm_lam, np.roll(cm_mk, 1, axis=0))  # row k (true k) moves to row k+1
    # the printed line says which labels were used
    res = runner.invoke(app, ["evaluate", str(runs["lamost"]), "--data", str(data), "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    assert "(labels: LAMOST's convention)" in res.output
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["label_convention"] == "lamost"


def test_shipped_models_state_their_label_convention():
    from drcnet.models.run_folder import pretrained_dir, run_label_convention

    got = {
        n: run_label_convention(pretrained_dir(n))
        for n in ("drcnet", "drcnet-robust", "rcnet-robust", "drcnet-survey", "drcnet-hybrid")
    }
    assert got == {
        "drcnet": "mk",
        "drcnet-robust": "lamost",
        "rcnet-robust": "lamost",
        "drcnet-survey": "lamost",
        "drcnet-hybrid": "lamost",
    }
