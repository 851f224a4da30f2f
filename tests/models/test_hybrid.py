"""The hybrid model (issue 21 item 4): DRC-Net on the stripes and RC-Net on the 1D spectrum, probabilities mixed."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from _support.model_fixtures import SMALL_DRCNET, cli, cli_runs, micro_data  # noqa: F401  (pytest fixtures)
from drcnet.data.normalize import prepare_input, zscore_spectra1d, zscore_stripes
from drcnet.inference.engine import predict_arrays, predict_arrays_all
from drcnet.models import create_model, load_run
from drcnet.models.hybrid import HYBRID_ROWS, HybridNet
from drcnet.models.run_folder import resolve_run
from drcnet.train.warm_start import warm_start


def _arrays(path, n=6):
    with h5py.File(path, "r") as h:
        return {k: h[k][:n].astype(np.float32) for k in ("stripes", "flux1d", "sky1d")}


def test_answer_is_the_weighted_mixture_of_the_two_networks_probabilities():
    torch.manual_seed(0)
    model = create_model("hybrid", mix_init=0.3).eval()
    x = model.example_input(4)
    stripes, spec = model.split_input(x)
    assert stripes.shape == (4, 2, 11, 3000) and spec.shape == (4, 1, 6000)
    assert torch.equal(spec[:, 0, 3000:], x[:, 1, 11])  # red arm's spectrum after the blue one
    with torch.no_grad():
        p2d = torch.softmax(model.net2d(stripes), 1)
        p1d = torch.softmax(model.net1d(spec), 1)
        mixed = torch.softmax(model(x), 1)
    assert model.weight_2d == pytest.approx(0.3)
    torch.testing.assert_close(mixed, 0.3 * p2d + 0.7 * p1d, rtol=1e-5, atol=1e-6)
    # the energy (OOD score) is the mixture of the networks' energies, not the constant of log-probabilities
    with torch.no_grad():
        energy = torch.logsumexp(model(x), 1)
        expected = 0.3 * torch.logsumexp(model.net2d(stripes), 1) + 0.7 * torch.logsumexp(model.net1d(spec), 1)
    torch.testing.assert_close(energy, expected, rtol=1e-5, atol=1e-5)
    assert energy.std() > 0
    assert model.aux_logits is None  # eval mode: no auxiliary losses


def test_training_mode_returns_each_networks_logits_for_the_auxiliary_loss():
    torch.manual_seed(0)
    model = create_model("hybrid", drcnet={"aux_heads": True}).train()
    x = model.example_input(2)
    model(x)
    aux = model.aux_logits
    assert aux is not None and len(aux) == 4  # blue head, red head, DRC-Net, RC-Net
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(aux[3].detach(), model.net1d(model.split_input(x)[1]))


def test_hybrid_input_puts_each_arms_1d_spectrum_under_its_stripe():
    rng = np.random.default_rng(4)
    stripes = rng.normal(100, 10, (3, 2, 11, 3000)).astype(np.float32)
    flux1d = rng.normal(500, 30, (3, 2, 3000)).astype(np.float32)
    sky1d = rng.normal(50, 3, (3, 2, 3000)).astype(np.float32)
    x = prepare_input("hybrid", stripes=stripes, flux1d=flux1d, sky1d=sky1d)
    assert x.shape == (3, 2, HYBRID_ROWS, 3000) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, :, :11], zscore_stripes(stripes))
    z1d = zscore_spectra1d(flux1d, sky1d)
    np.testing.assert_array_equal(x[:, 0, 11], z1d[:, 0, :3000])
    np.testing.assert_array_equal(x[:, 1, 11], z1d[:, 0, 3000:])
    # one object
    one = prepare_input("hybrid", stripes=stripes[0], flux1d=flux1d[0], sky1d=sky1d[0])
    np.testing.assert_allclose(one, x[0], atol=1e-6)
    with pytest.raises(ValueError, match="this hybrid model takes 1D spectra"):
        prepare_input("hybrid", stripes=stripes)
    with pytest.raises(ValueError, match="this hybrid model takes 2D stripes"):
        prepare_input("hybrid", flux1d=flux1d, sky1d=sky1d)


def test_config_refuses_what_the_input_fixes_and_a_mixing_weight_outside_0_1():
    with pytest.raises(ValueError, match=r"may not set \['n_classes'\]"):
        HybridNet(HybridNet.Config(drcnet={"n_classes": 4}))
    with pytest.raises(ValueError, match=r"may not set \['length'\]"):
        HybridNet(HybridNet.Config(rcnet={"length": 3000}))
    with pytest.raises(ValueError, match="mix_init must be in"):
        HybridNet(HybridNet.Config(mix_init=1.0))


def test_config_dict_holds_every_option_of_both_networks_and_rebuilds_the_same_model():
    model = HybridNet(HybridNet.Config(n_classes=4, drcnet={"reduce_init": "profile", "heads": True}))
    saved = json.loads(json.dumps(model.config_dict()))
    assert saved["drcnet"]["reduce_init"] == "profile" and saved["drcnet"]["reduce_activation"] == "none"
    assert saved["drcnet"]["backbone_channels"] == [16, 16, 32, 32, 64, 64, 128, 128]
    assert saved["rcnet"] == {"channels": [16, 16, 32, 32, 64, 64, 128, 128], "kernel": 3, "feature_dim": 128}
    assert not {"n_classes", "rows", "length"} & (set(saved["drcnet"]) | set(saved["rcnet"]))
    again = create_model("hybrid", **saved)
    assert json.loads(json.dumps(again.config_dict())) == saved
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    # the shipped default's run.json holds the filled configs too
    assert load_run(resolve_run("drcnet-hybrid"))[1].model_config["drcnet"]["reduce_activation"] == "none"


def test_warm_start_gives_each_part_one_run(cli_runs):  # noqa: F811
    model = create_model("hybrid")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"(?s)both fill net2d; give one run per part"):
        warm_start(model, f"{cli_runs['drcnet']},{cli_runs['drcnet']}")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # refused before any copy
    for target, sources, words in (
        (create_model("hybrid", n_classes=4), f"drcnet-hybrid,{cli_runs['rcnet']}", "is a whole hybrid run and would"),
        (create_model("rcnet"), f"{cli_runs['rcnet']},{cli_runs['rcnet']}", "the rcnet model is one network"),
        (model, f"{cli_runs['drcnet']},rcnet-robust,drcnet-robust", "both fill net2d"),
    ):
        before = {k: v.clone() for k, v in target.state_dict().items()}
        with pytest.raises(ValueError, match=words):
            warm_start(target, sources)
        assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())
    # a trailing comma is one source
    assert warm_start(create_model("hybrid"), f"{cli_runs['drcnet']},")["source_model"] == "drcnet"


def _hybrid_like(runs):
    """A hybrid whose parts have the configs of the two trained runs, warm-started from them."""
    cfg2d = {
        k: v for k, v in load_run(runs["drcnet"])[1].model_config.items() if k not in ("n_classes", "rows", "length")
    }
    cfg1d = {k: v for k, v in load_run(runs["rcnet"])[1].model_config.items() if k not in ("n_classes", "length")}
    model = create_model("hybrid", drcnet=cfg2d, rcnet=cfg1d)
    info = warm_start(model, f"{runs['drcnet']},{runs['rcnet']}")
    return model.eval(), info


def test_warm_started_from_a_2d_and_a_1d_run_it_answers_the_mean_of_their_probabilities(cli_runs, micro_data):  # noqa: F811
    model, info = _hybrid_like(cli_runs)
    assert info["source_model"] == ["drcnet", "rcnet"] and info["fresh"] == ["mix"]
    assert info["copied"] == len(model.state_dict()) - 1
    raw = _arrays(micro_data)
    p2d = predict_arrays(load_run(cli_runs["drcnet"])[0], stripes=raw["stripes"])
    p1d = predict_arrays(load_run(cli_runs["rcnet"])[0], flux1d=raw["flux1d"], sky1d=raw["sky1d"])
    got = predict_arrays(model, **raw)
    np.testing.assert_allclose(got, 0.5 * (p2d + p1d), rtol=1e-4, atol=1e-6)
    # a NaN pixel in either input gives no answer for that object only
    raw["flux1d"][2, 1, 100] = np.nan
    raw["stripes"][4, 0, 5, 7] = np.inf
    out = predict_arrays_all(model, **raw)["logits"]
    assert np.isnan(out[[2, 4]]).all() and np.isfinite(out[[0, 1, 3, 5]]).all()
    with pytest.raises(ValueError, match=r"takes 'hybrid' input: pass stripes=\(N, 2, 11, 3000\) and flux1d"):
        predict_arrays_all(model, stripes=raw["stripes"])


@pytest.mark.parametrize("name", ["hybrid", "hybrid_optimal"])
def test_trained_through_the_cli_it_predicts_files_arrays_and_onnx_alike(cli_runs, micro_data, tmp_path, name):  # noqa: F811
    """The same for both hybrids; ``hybrid_optimal`` reads the file's optimal extraction ``flux1d_opt``."""
    from drcnet.inference.predictor import Predictor
    from drcnet.models.onnx_export import export_onnx

    model, _ = _hybrid_like(cli_runs)
    out = tmp_path / "hyb"
    cli(
        "train", "--model", name, "--data", micro_data, "--out", out, "--epochs", 1, "--batch-size", 8,
        "--init-from", f"{cli_runs['drcnet']},{cli_runs['rcnet']}", "--no-progress", "--seed", 2,
        "--model-config", json.dumps({"drcnet": model.config.drcnet, "rcnet": model.config.rcnet}),
    )  # fmt: skip
    meta = json.loads((out / "run.json").read_text())
    assert meta["model"] == name and meta["input_kind"] == name
    assert meta["warm_start"]["source_model"] == ["drcnet", "rcnet"] and meta["warm_start"]["fresh"] == ["mix"]
    predictor = Predictor.load(out)
    assert predictor.input_kind == name
    raw = _arrays(micro_data, 8)
    boxcar = predictor.predict_proba(**raw)[:, 0]
    if name == "hybrid_optimal":
        with h5py.File(micro_data, "r") as h:
            raw["flux1d"] = h["flux1d_opt"][:8]
    table = predictor.predict_file(micro_data)
    np.testing.assert_allclose(
        np.asarray(table["prob_F"])[:8], predictor.predict_proba(**raw)[:, 0], rtol=1e-4, atol=1e-5
    )
    # the file's 1D spectra are the ones the model was trained on: the two extractions give other answers
    assert (name == "hybrid") == np.allclose(np.asarray(table["prob_F"])[:8], boxcar, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="this hybrid model takes 1D spectra"):
        predictor.predict_proba(stripes=raw["stripes"])
    with pytest.raises(ValueError, match="must be of the same objects"):
        predictor.predict_proba(stripes=raw["stripes"], flux1d=raw["flux1d"][:5], sky1d=raw["sky1d"][:5])
    export_onnx(predictor.model, tmp_path / "hyb.onnx")
    onnx = Predictor.load(tmp_path / "hyb.onnx", engine="onnx")
    assert onnx.input_kind == name
    np.testing.assert_allclose(onnx.predict_proba(**raw), predictor.predict_proba(**raw), atol=2e-4)


def test_resume_rebuilds_the_saved_network_and_reports_nested_changes(micro_data, tmp_path, monkeypatch):  # noqa: F811
    from typer.testing import CliRunner

    from drcnet.cli import app
    from drcnet.train import config as train_config

    small = {"drcnet": json.loads(SMALL_DRCNET), "rcnet": {"channels": [4, 4, 8, 8, 8, 8, 16, 16]}}
    out = tmp_path / "hyb"
    common = ["train", "--model", "hybrid", "--preset", "robust", "--data", micro_data, "--out", out,
              "--epochs", 2, "--batch-size", 8, "--no-progress", "--model-config", json.dumps(small)]  # fmt: skip
    cli(*common, "--stop-after-epochs", 1)
    saved = json.loads((out / "run.json").read_text())["model_config"]
    assert saved["drcnet"]["aux_heads"] is True and saved["drcnet"]["reduce_init"] == "profile"  # the preset's
    # a later release adds a default for the hybrid (and changes one): the resumed run is still the network
    # that was trained
    robust = train_config.PRESETS["robust"]
    later = {"drcnet": {"reduce_init": "profile", "aux_heads": False, "arm_dropout": 0.4}}
    monkeypatch.setitem(robust, "model_defaults", {**robust["model_defaults"], "hybrid": later})
    # an explicit change of one nested option is a conflict named by its key
    res = CliRunner().invoke(app, [str(a) for a in common[:-1]] + ['{"drcnet": {"dropout": 0.5}}', "--resume"])
    assert res.exit_code == 2 and "cannot resume" in res.output and "model_config.drcnet:" in res.output, res.output
    assert "model_config.rcnet" not in res.output
    # the saved config given back in full (as run.json shows it) is no change
    cli(*common[:-1], json.dumps(saved), "--resume")
    meta = json.loads((out / "run.json").read_text())
    assert meta["epochs_run"] == 2 and meta["model_config"] == saved


def test_one_hybrid_starts_whole_from_a_run_of_the_other_and_the_optimal_one_needs_its_extraction(micro_data, tmp_path):  # noqa: F811
    """The two hybrids are the same networks: ``--init-from drcnet-hybrid`` (a ``hybrid_optimal``) fills every
    tensor of a boxcar ``hybrid``; a file without ``flux1d_opt`` is refused naming the array and what to do."""
    from drcnet.data.torch_dataset import SpectraDataset
    from drcnet.models.hybrid import HybridOptimalNet

    src, info = load_run(resolve_run("drcnet-hybrid"))
    assert isinstance(src, HybridOptimalNet) and src.input_kind == "hybrid_optimal"
    model = create_model("hybrid", **info.model_config)
    assert model.input_kind == "hybrid"
    done = warm_start(model, "drcnet-hybrid")
    assert done["source_model"] == "hybrid_optimal" and done["fresh"] == [] and done["partial"] == []
    assert done["copied"] == len(model.state_dict())
    for key, value in src.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    # the input: row 11 is the Z-scored optimal spectrum
    ds = SpectraDataset(micro_data, "hybrid_optimal")
    x, _ = ds.read_batch(slice(0, 4))
    with h5py.File(micro_data, "r") as h:
        z1d = zscore_spectra1d(h["flux1d_opt"][:4], h["sky1d"][:4])
    np.testing.assert_allclose(x[:, 1, 11], z1d[:, 0, 3000:], atol=1e-5)
    np.testing.assert_allclose(ds[1][0].numpy(), x[1], atol=1e-5)
    old = tmp_path / "old.h5"
    with h5py.File(micro_data, "r") as h, h5py.File(old, "w") as o:
        for key in h:
            if key not in ("flux1d_opt", "ivar1d_opt"):
                h.copy(key, o)
        o.attrs.update(h.attrs)
    with pytest.raises(KeyError, match=r"old.h5 has no flux1d_opt, needed for input kind 'hybrid_optimal'") as err:
        SpectraDataset(old, "hybrid_optimal")
    assert "re-make the file" in str(err.value) and "drcnet predict drcnet-survey --data old.h5" in str(err.value)
    assert not str(err.value).startswith(("'", '"'))  # the CLI prints the message, not its repr
    SpectraDataset(old, "hybrid")  # the boxcar hybrid still reads it
    # `drcnet train --overwrite` refuses such a file before it deletes the run it would replace
    from typer.testing import CliRunner

    from drcnet.cli import app

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    args = ["train", "--model", "hybrid_optimal", "--data", str(old), "--out", str(run), "--overwrite"]
    res = CliRunner().invoke(app, [*args, "--epochs", "1", "--no-progress"])
    assert res.exit_code != 0 and "has no flux1d_opt" in res.output
    assert (run / "run.json").read_text() == "{}"
