"""Training: CLI run folder, early stopping, exact resume, DDP steps per epoch, checkpoints, dataset."""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from _support.model_fixtures import SMALL_DRCNET, cli, cli_runs, micro_data  # noqa: F401
from drcnet.data.normalize import zscore_spectra1d, zscore_stripes
from drcnet.data.schema import dataset_fingerprint
from drcnet.data.torch_dataset import SpectraDataset
from drcnet.models import create_model, load_run
from drcnet.models.run_folder import read_safetensors
from drcnet.train import TrainConfig, lr_at, steps_per_epoch
from drcnet.train.checkpoint import load_checkpoint, save_checkpoint


def _history(run: Path) -> list[dict[str, str]]:
    with (run / "history.csv").open() as f:
        return list(csv.DictReader(f))


def test_cli_train_writes_a_complete_run_folder(cli_runs, micro_data):
    run = cli_runs["drcnet"]
    for name in ("run.json", "best.safetensors", "last.safetensors", "history.csv"):
        assert (run / name).is_file(), name
    meta = json.loads((run / "run.json").read_text())
    assert meta["model"] == "drcnet" and meta["input_kind"] == "stripes"
    assert meta["model_config"]["reduce_kernels"] == [5, 5, 3]
    assert meta["seed"] == 3 and meta["status"] == "completed" and meta["epochs_run"] == 2
    assert meta["data"]["sha256"] == dataset_fingerprint(micro_data)["sha256"]
    assert meta["provenance"]["package"] == "drcnet" and meta["provenance"]["version"]
    assert meta["train_config"]["preset"] == "fast" and meta["train_config"]["optimizer"] == "adamw"
    assert meta["train_config"]["grad_clip"] == 1.0 and meta["train_config"]["lr"] == 5e-4
    assert meta["n_train"] == 25 and meta["steps_per_epoch"] == math.ceil(25 / 8)
    rows = _history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert list(rows[0]) == [
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "lr",
        "steps",
        "time_s",
        "improved",
        "feat_std_blue",
        "feat_std_red",
        "aux_acc_blue",
        "aux_acc_red",
    ]
    assert float(rows[0]["feat_std_blue"]) >= 0 and float(rows[0]["feat_std_red"]) >= 0  # per-arm spread logged
    for r in rows:
        assert 0 <= float(r["train_acc"]) <= 1 and 0 <= float(r["val_acc"]) <= 1
        assert float(r["train_loss"]) > 0 and int(r["steps"]) == 4
    # no pickle anywhere: weights load with safetensors alone, and rebuild the model
    model, info = load_run(run)
    assert info.model_name == "drcnet" and not model.training
    tensors, meta_w = read_safetensors(run / "best.safetensors")
    assert meta_w["model"] == "drcnet" and set(tensors) == set(model.state_dict())


def test_early_stopping_stops_after_patience_epochs_without_improvement(micro_data, tmp_path):
    # lr 0: the validation loss can never get lower than after epoch 1 -> stop after 1 + 2 epochs
    out = tmp_path / "es"
    cli(
        "train",
        "--model",
        "drcnet",
        "--data",
        micro_data,
        "--out",
        out,
        "--epochs",
        10,
        "--lr",
        0,
        "--patience",
        2,
        "--batch-size",
        16,
        "--workers",
        0,
        "--no-progress",
        "--model-config",
        SMALL_DRCNET,
    )
    rows = _history(out)
    assert len(rows) == 3
    assert [r["improved"] for r in rows] == ["1", "0", "0"]
    assert rows[0]["val_loss"] == rows[1]["val_loss"] == rows[2]["val_loss"]
    meta = json.loads((out / "run.json").read_text())
    assert meta["stop_reason"] == "early_stop" and meta["epochs_run"] == 3 and meta["best_epoch"] == 1


def test_paper_preset_settings():
    cfg = TrainConfig(model="drcnet", data="x", out="y", preset="paper").resolved()
    assert (cfg.optimizer, cfg.lr, cfg.batch_size, cfg.epochs, cfg.patience, cfg.schedule) == (
        "adagrad",
        1e-3,
        4,
        300,
        50,
        "constant",
    )
    assert lr_at(cfg, 1234, 5000) == 1e-3
    fast = TrainConfig(model="drcnet", data="x", out="y", preset="fast", lr=0.01).resolved()
    lrs = [lr_at(fast, s, 100) for s in range(100)]
    assert max(lrs) == pytest.approx(0.01) and lrs[0] < 0.01 / 5 and lrs[-1] == pytest.approx(0.01 / 100)
    assert np.argmax(lrs) == 9  # end of the 10 % warm-up
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig(model="drcnet", data="x", out="y", preset="slow").resolved()


@pytest.mark.slow
def test_resume_gives_the_same_result_as_an_uninterrupted_run(micro_data, tmp_path):
    common = [
        "--model",
        "drcnet",
        "--data",
        micro_data,
        "--epochs",
        4,
        "--batch-size",
        8,
        "--workers",
        0,
        "--no-progress",
        "--seed",
        5,
        "--model-config",
        SMALL_DRCNET[:-1] + ', "dropout": 0.2}',
    ]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    cli("train", *common, "--out", straight)
    cli("train", *common, "--out", resumed, "--stop-after-epochs", 2)
    assert json.loads((resumed / "run.json").read_text())["status"] == "interrupted"
    assert len(_history(resumed)) == 2
    cli("train", *common, "--out", resumed, "--resume")
    h1, h2 = _history(straight), _history(resumed)
    assert len(h1) == len(h2) == 4
    for a, b in zip(h1, h2):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "steps"):
            assert a[key] == b[key], (a["epoch"], key)
    for name in ("last.safetensors", "best.safetensors"):
        ta, _ = read_safetensors(straight / name)
        tb, _ = read_safetensors(resumed / name)
        assert set(ta) == set(tb)
        for k in ta:
            if not k.startswith("rng."):
                assert torch.equal(ta[k], tb[k]), (name, k)
    # a finished run resumes to itself, a new run refuses to overwrite it
    cli("train", *common, "--out", resumed, "--resume")
    assert len(_history(resumed)) == 4
    from typer.testing import CliRunner

    from drcnet.cli import app

    res = CliRunner().invoke(app, ["train", *map(str, common), "--out", str(resumed)])
    assert res.exit_code == 2 and "--resume" in res.output


@pytest.mark.parametrize("n", [1, 7, 25, 64, 101])
@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 4, 8])
def test_steps_per_epoch_rule_matches_distributed_sampler(n, world, batch):
    ds = list(range(n))
    lens = {
        len(DataLoader(ds, batch_size=batch, sampler=DistributedSampler(ds, world, r, shuffle=True, seed=0)))
        for r in range(world)
    }
    assert lens == {steps_per_epoch(n, world, batch)} == {math.ceil(n / (world * batch))}


@pytest.mark.slow
def test_ddp_two_cpu_processes(micro_data, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    assert torchrun.exists(), "torchrun (installed with torch) should sit beside the interpreter"
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "drcnet",
        "train",
        "--model",
        "drcnet",
        "--data",
        str(micro_data),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--threads",
        "1",
        "--no-progress",
        "--model-config",
        SMALL_DRCNET,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    meta = json.loads((out / "run.json").read_text())
    assert meta["world_size"] == 2 and meta["status"] == "completed"
    expected = math.ceil(25 / (2 * 4))  # 25 train objects, 2 processes, batch 4 per process -> 4
    assert expected == 4 and meta["steps_per_epoch"] == expected
    assert [int(r["steps"]) for r in _history(out)] == [expected, expected]
    model, _ = load_run(out)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.slow
def test_sigterm_marks_the_run_interrupted_and_it_resumes(micro_data, tmp_path):
    import signal
    import time

    out = tmp_path / "killed"
    args = [
        "--model",
        "drcnet",
        "--data",
        str(micro_data),
        "--out",
        str(out),
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--threads",
        "1",
        "--no-progress",
        "--model-config",
        SMALL_DRCNET,
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "drcnet", "train", *args, "--epochs", "500"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 240
        while not ((out / "history.csv").is_file() and len(_history(out)) >= 1):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no epoch finished in 240 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr and "--resume" in stderr
    meta = json.loads((out / "run.json").read_text())
    done = len(_history(out))
    assert meta["status"] == "interrupted" and meta["epochs_run"] == done and 1 <= done < 500
    cli("train", *args, "--resume", "--epochs", done + 1)
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "completed" and len(_history(out)) == done + 1


@pytest.mark.parametrize("opt_name", ["adamw", "adam", "adagrad", "sgd"])
def test_optimizer_is_fused_and_equals_the_per_tensor_loop(opt_name):
    from drcnet.train.optim import build_optimizer

    cfg = TrainConfig(model="rcnet", data="x", out="y", optimizer=opt_name, lr=3e-3, weight_decay=1e-2).resolved()
    torch.manual_seed(0)
    model = create_model("rcnet", channels=(4, 4, 4, 4, 4, 4, 8, 8), feature_dim=16)
    ref, start = copy.deepcopy(model), copy.deepcopy(model)
    opt = build_optimizer(cfg, model.parameters())
    assert opt.defaults["fused"] is True  # torch 2.13 has fused CPU kernels for all four
    kinds = {
        "adamw": torch.optim.AdamW,
        "adam": torch.optim.Adam,
        "adagrad": torch.optim.Adagrad,
        "sgd": torch.optim.SGD,
    }
    extra = {"momentum": 0.9} if opt_name == "sgd" else {}
    ref_opt = kinds[opt_name](ref.parameters(), lr=3e-3, weight_decay=1e-2, foreach=False, **extra)
    assert type(opt) is type(ref_opt)
    x = model.example_input(3)
    for _ in range(5):
        for m, o in ((model, opt), (ref, ref_opt)):
            o.zero_grad()
            (m(x) ** 2).sum().backward()
            o.step()
    moved = 0.0
    for a, b, c in zip(model.parameters(), ref.parameters(), start.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        moved += float((b - c).detach().abs().sum())
    assert moved > 0.1  # the five steps changed the weights


def test_checkpoint_of_a_per_tensor_optimiser_resumes_into_a_fused_one_and_back(tmp_path):
    from drcnet.train.optim import build_optimizer

    cfg = TrainConfig(model="rcnet", data="x", out="y", optimizer="adamw").resolved()
    torch.manual_seed(0)
    model = create_model("rcnet", channels=(4, 4, 4, 4, 4, 4, 8, 8), feature_dim=16)
    x = model.example_input(2)
    loop = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False)

    def step(m, o):
        o.zero_grad()
        (m(x) ** 2).sum().backward()
        o.step()

    for _ in range(2):
        step(model, loop)
    save_checkpoint(tmp_path / "loop.safetensors", model, loop, {"epoch": 1})
    fused_model = create_model("rcnet", channels=(4, 4, 4, 4, 4, 4, 8, 8), feature_dim=16)
    fused = build_optimizer(cfg, fused_model.parameters())
    load_checkpoint(tmp_path / "loop.safetensors", fused_model, fused)
    assert fused.param_groups[0]["fused"] is True  # this machine's kernel, not the checkpoint's
    step(model, loop)
    step(fused_model, fused)
    for a, b in zip(model.parameters(), fused_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # and back: a fused checkpoint into a per-tensor optimiser
    save_checkpoint(tmp_path / "fused.safetensors", fused_model, fused, {"epoch": 2})
    again = create_model("rcnet", channels=(4, 4, 4, 4, 4, 4, 8, 8), feature_dim=16)
    plain = torch.optim.AdamW(again.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False)
    load_checkpoint(tmp_path / "fused.safetensors", again, plain)
    assert not plain.param_groups[0]["fused"]
    step(again, plain)
    step(fused_model, fused)
    for a, b in zip(again.parameters(), fused_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opt_name", ["adamw", "adagrad"])
def test_checkpoint_round_trip_restores_weights_optimizer_and_rng(tmp_path, opt_name):
    from drcnet.train.optim import build_optimizer

    torch.manual_seed(0)
    model = create_model("rcnet", channels=(4, 4, 4, 4, 4, 4, 8, 8), feature_dim=16)
    cfg = TrainConfig(model="rcnet", data="x", out="y", optimizer=opt_name).resolved()
    opt = build_optimizer(cfg, model.parameters())
    x = model.example_input(2)
    for _ in range(2):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
    state = {"epoch": 3, "step": 17, "history": [{"epoch": 1, "val_loss": 0.5}]}
    save_checkpoint(tmp_path / "c.safetensors", model, opt, state)
    expect_next = torch.rand(3)
    torch.manual_seed(123)
    model2 = create_model("rcnet", channels=(4, 4, 4, 4, 4, 4, 8, 8), feature_dim=16)
    opt2 = build_optimizer(cfg, model2.parameters())
    got = load_checkpoint(tmp_path / "c.safetensors", model2, opt2)
    assert got == state
    assert torch.equal(torch.rand(3), expect_next)  # RNG state restored
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    for pid in s1["state"]:
        for key, v in s1["state"][pid].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(s2["state"][pid][key]))
    assert s1["param_groups"][0]["lr"] == s2["param_groups"][0]["lr"]
    with open(tmp_path / "c.safetensors", "rb") as f:
        assert b"\x80\x04" not in f.read(64)  # not a pickle


def test_dataset_reads_lazily_and_normalises_like_the_paper(micro_data):
    ds = SpectraDataset(micro_data, "stripes", "test")
    assert ds._h5 is None  # nothing open until an item is read
    x, y, i = ds[3]
    with h5py.File(micro_data) as h:
        row = ds.rows[3]
        raw = h["stripes"][row]
        assert int(h["label"][row]) == int(y) and i == 3
        assert h["split"][row] == 2
        flux, sky = h["flux1d"][row], h["sky1d"][row]
    assert np.allclose(x.numpy(), zscore_stripes(raw))
    clone = pickle.loads(pickle.dumps(ds))  # what a spawned DataLoader worker receives
    assert clone._h5 is None and torch.equal(clone[3][0], x)
    ds1 = SpectraDataset(micro_data, "spectra1d", "test")
    assert np.allclose(ds1[3][0].numpy(), zscore_spectra1d(flux, sky))
    assert len(SpectraDataset(micro_data, "stripes", "train")) == 25
    with pytest.raises(ValueError, match="no split named"):
        SpectraDataset(micro_data, "stripes", "holdout")


def test_fingerprint_follows_content_not_location(micro_data, tmp_path):
    copy = tmp_path / "copy.h5"
    shutil.copy(micro_data, copy)
    assert dataset_fingerprint(copy)["sha256"] == dataset_fingerprint(micro_data)["sha256"]
    with h5py.File(copy, "r+") as h:
        h["label"][0] = (int(h["label"][0]) + 1) % 3
    assert dataset_fingerprint(copy)["sha256"] != dataset_fingerprint(micro_data)["sha256"]


def test_default_loader_workers_leave_two_cores_to_the_model():
    from drcnet.train.config import default_workers

    assert default_workers("cpu", cores=2) == 0
    assert default_workers("cpu", cores=1) == 0
    assert default_workers("cpu", cores=8) == 1
    assert default_workers("cuda", cores=2) == 1  # the GPU runs the model; the loader overlaps it
    assert default_workers("cpu") in (0, 1)  # this process's own CPU count
