"""The fast inference path (issue 11): batched reads + vectorised Z-score, bf16 autocast, ONNX export.

Every test compares numbers with the plain path (per-object DataLoader + float64 Z-score, torch fp32),
never wall-clock times.
"""

from __future__ import annotations

import csv

import h5py
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from _support.model_fixtures import cli, cli_runs, micro_data  # noqa: F401
from drcnet.data.batches import iter_batches
from drcnet.data.normalize import zscore, zscore_fast, zscore_spectra1d
from drcnet.data.torch_dataset import SpectraDataset, _read_rows
from drcnet.inference.engine import predict_arrays, predict_arrays_all, predict_dataset, resolve_precision
from drcnet.models import DEFAULT_MODEL, load_run, pretrained_dir


def _reference_probs(model: nn.Module, data, split) -> tuple[np.ndarray, np.ndarray]:
    """The plain path of the previous release: one object at a time, float64 Z-score, torch fp32 softmax."""
    ds = SpectraDataset(data, model.input_kind, split)
    prob = np.full((len(ds), 3), np.nan, np.float32)
    valid = np.empty(len(ds), bool)
    with h5py.File(data) as h, torch.inference_mode():
        for i, row in enumerate(ds.rows):
            if model.input_kind == "stripes":
                raw = [h["stripes"][row]]
                x = zscore(raw[0], (-2, -1))
            else:
                raw = [h["flux1d"][row], h["sky1d"][row]]
                x = zscore_spectra1d(*raw)
            valid[i] = all(np.isfinite(a).all() for a in raw)
            if valid[i]:
                prob[i] = torch.softmax(model(torch.from_numpy(x)[None]), 1).numpy()[0]
    return prob, valid


@pytest.mark.parametrize("name", ["drcnet", "rcnet"])
@pytest.mark.parametrize("batch_size,workers", [(256, 1), (5, 1), (3, 0)])
def test_batched_predict_equals_the_per_object_path(cli_runs, micro_data, name, batch_size, workers):
    model, _ = load_run(cli_runs[name])
    ref, ok = _reference_probs(model, micro_data, "test")
    got = predict_dataset(model, micro_data, "test", batch_size=batch_size, workers=workers)
    assert np.array_equal(got["valid"], ok)
    np.testing.assert_allclose(got["prob"], ref, atol=1e-5, rtol=0)
    assert np.array_equal(got["pred"], np.where(ok, np.nan_to_num(ref).argmax(1), -1))
    np.testing.assert_allclose(got["outputs"]["logits"].shape, (len(ref), 3))


def test_batched_predict_with_nan_stripes_equals_the_per_object_path(cli_runs, micro_data, tmp_path):
    path = tmp_path / "nan.h5"
    path.write_bytes(micro_data.read_bytes())
    with h5py.File(path, "r+") as h:
        test = np.flatnonzero(h["split"][:] == 2)
        s = h["stripes"][test[1]]
        s[0, 3, 100] = np.nan
        h["stripes"][test[1]] = s
        s = h["stripes"][test[4]]
        s[1, 0, 0] = np.inf
        h["stripes"][test[4]] = s
    model, _ = load_run(cli_runs["drcnet"])
    ref, ok = _reference_probs(model, path, "test")
    got = predict_dataset(model, path, "test", batch_size=7)
    assert not ok[1] and not ok[4] and ok.sum() == len(ok) - 2
    assert np.array_equal(got["valid"], ok) and np.isnan(got["prob"][~ok]).all()
    np.testing.assert_allclose(got["prob"][ok], ref[ok], atol=1e-5, rtol=0)
    assert (got["pred"][~ok] == -1).all()


def test_zscore_fast_equals_zscore():
    rng = np.random.default_rng(0)
    profile = np.exp(-0.5 * (np.arange(-5, 6) / 2.5) ** 2)[:, None]
    bright = (60000 * profile + rng.normal(0, 30, (6, 2, 11, 3000))).astype(np.float16)  # near the float16 top
    faint = (5 + rng.normal(0, 3, (6, 2, 11, 3000))).astype(np.float16)
    const = np.full((2, 2, 11, 3000), 1234.0, np.float16)
    x = np.concatenate([bright, faint, const])
    x[3, 1, 2, 50] = np.nan
    x[8, 0, 0, 0] = -np.inf
    ref = zscore(x, (-2, -1))
    got, finite = zscore_fast(x, (-2, -1), return_finite=True)
    assert got.dtype == np.float32 and got.shape == x.shape
    # a few float32 ulps of each value
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6 * max(1.0, float(np.abs(ref).max())))
    assert (got[-2:] == 0).all()
    expect = np.isfinite(x).reshape(len(x), 2, -1).all(-1)
    assert np.array_equal(finite, expect)
    spec = rng.normal(100, 20, (5, 2, 3000)).astype(np.float32)
    np.testing.assert_allclose(zscore_fast(spec, (-1,)), zscore(spec, (-1,)), atol=2e-6, rtol=0)
    assert zscore_fast(np.zeros((0, 2, 11, 3000), np.float16), (-2, -1)).shape == (0, 2, 11, 3000)
    with pytest.raises(ValueError, match="trailing"):
        zscore_fast(x, (1, 2))


def test_read_batch_and_iter_batches_equal_the_items(micro_data):
    ds = SpectraDataset(micro_data, "stripes", "test")
    pos = [5, 2, 3, 3, 0, len(ds) - 1]
    x, valid = ds.read_batch(pos)
    for k, p in enumerate(pos):
        np.testing.assert_allclose(x[k], ds[p][0].numpy(), atol=2e-6 * max(1.0, float(np.abs(x[k]).max())), rtol=0)
    assert valid.all()
    with h5py.File(micro_data) as h:
        rows = np.array([7, 3, 4, 5, 40, 3])
        assert np.array_equal(_read_rows(h["label"], rows), h["label"][:][rows])
    for prefetch in (True, False):
        batches = list(iter_batches(ds, batch_size=6, prefetch=prefetch))
        assert [len(b.index) for b in batches] == [6, 6, 6, 2]
        assert np.array_equal(np.concatenate([b.index for b in batches]), np.arange(len(ds)))
        np.testing.assert_array_equal(batches[1].x, ds.read_batch(np.arange(6, 12))[0])
    ds1 = SpectraDataset(micro_data, "spectra1d", "val")
    x1, _ = ds1.read_batch(slice(0, 4))
    np.testing.assert_array_equal(x1, np.stack([ds1[i][0].numpy() for i in range(4)]))


def test_iter_batches_passes_reader_errors_on(micro_data):
    ds = SpectraDataset(micro_data, "stripes", "test")

    def broken(positions):
        raise OSError("disk gone")

    ds.read_batch = broken  # type: ignore[method-assign]
    with pytest.raises(OSError, match="disk gone"):
        list(iter_batches(ds, batch_size=4, prefetch=True))


def test_bf16_autocast_agrees_with_fp32(micro_data):
    # emulated where the CPU lacks bf16: the numbers are those of bf16 hardware, only slower
    model, _ = load_run(pretrained_dir(DEFAULT_MODEL))
    with h5py.File(micro_data) as h:
        arrays = {k: h[k][:] for k in ("stripes", "flux1d", "sky1d")}  # the default hybrid reads all three
    fp32 = predict_arrays(model, **arrays, batch_size=16)
    bf16 = predict_arrays(model, **arrays, batch_size=16, precision="bf16")
    agree = (fp32.argmax(1) == bf16.argmax(1)).mean()
    assert agree >= 0.95, agree
    assert np.abs(fp32 - bf16).mean() < 0.02  # 255 paper-file objects: mean 0.005, max 0.10
    assert not np.array_equal(fp32, bf16)  # bf16 really ran


def test_bf16_falls_back_cleanly_without_hardware(monkeypatch, cli_runs, micro_data, tmp_path):
    import drcnet.inference.engine as predict

    monkeypatch.setattr(predict, "bf16_support", lambda device="cpu": (False, "this CPU has no native bf16"))
    with pytest.warns(UserWarning, match="no native bf16.*running in fp32"):
        assert resolve_precision("bf16", "cpu") == "fp32"
    with pytest.raises(RuntimeError, match="no native bf16"):
        resolve_precision("bf16", "cpu", on_unsupported="error")
    assert resolve_precision("bf16", "cpu", on_unsupported="emulate") == "bf16"
    assert resolve_precision("fp32", "cpu", on_unsupported="error") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16")
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    out = cli("predict", cli_runs["drcnet"], "--data", micro_data, "--out", a, "--precision", "bf16")
    assert "running in fp32" in out
    cli("predict", cli_runs["drcnet"], "--data", micro_data, "--out", b)
    assert a.read_text() == b.read_text()


class _Heads(nn.Module):
    """A small 1D model with ``forward_all`` (the extended model API): logits plus extra heads."""

    input_kind = "spectra1d"
    name = "heads"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv1d(1, 4, 8, stride=8), nn.ReLU(), nn.AvgPool1d(75), nn.Flatten())
        self.logits, self.sub, self.lum = nn.Linear(40, 3), nn.Linear(40, 24), nn.Linear(40, 2)
        self.mean, self.sigma = nn.Linear(40, 3), nn.Linear(40, 3)

    def example_input(self, batch: int = 2) -> torch.Tensor:
        return torch.randn(batch, 1, 6000)

    def config_dict(self) -> dict:
        return {}

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.body(x)
        return {
            "logits": self.logits(f),
            "subclass_logits": self.sub(f),
            "lum_logits": self.lum(f),
            "params_mean": self.mean(f),
            "params_sigma": nn.functional.softplus(self.sigma(f)),
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)["logits"]


def test_every_head_of_forward_all_is_returned(micro_data):
    model = _Heads().eval()
    got = predict_dataset(model, micro_data, "test", batch_size=6)
    shapes = {k: v.shape for k, v in got["outputs"].items()}
    n = len(got["prob"])
    assert shapes == {
        "logits": (n, 3),
        "subclass_logits": (n, 24),
        "lum_logits": (n, 2),
        "params_mean": (n, 3),
        "params_sigma": (n, 3),
    }
    ds = SpectraDataset(micro_data, "spectra1d", "test")
    with torch.inference_mode():
        ref = model.forward_all(torch.stack([ds[i][0] for i in range(n)]))
    for k, v in ref.items():
        np.testing.assert_allclose(got["outputs"][k], v.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["prob"], torch.softmax(ref["logits"], 1).numpy(), atol=1e-6, rtol=0)
    with h5py.File(micro_data) as h:
        rows = ds.rows
        arr = predict_arrays_all(model, flux1d=h["flux1d"][:][rows], sky1d=h["sky1d"][:][rows], batch_size=4)
    assert set(arr) == set(shapes)
    for k in shapes:
        np.testing.assert_allclose(arr[k], got["outputs"][k], atol=1e-5, rtol=0)
    np.testing.assert_allclose(
        predict_arrays(
            model, flux1d=h5py.File(micro_data)["flux1d"][:][rows], sky1d=h5py.File(micro_data)["sky1d"][:][rows]
        ),
        got["prob"],
        atol=1e-6,
    )


def test_onnx_export_equals_torch(cli_runs, tmp_path):
    from drcnet.models.onnx_export import OnnxModel, export_onnx

    rng = np.random.default_rng(0)
    for name in ("drcnet", "rcnet"):
        model, _ = load_run(cli_runs[name])
        path = tmp_path / f"{name}.onnx"
        meta = export_onnx(model, path)
        assert meta["outputs"] == ["logits"] and meta["input_kind"] == model.input_kind
        om = OnnxModel(path)
        assert om.input_kind == model.input_kind
        for batch in (1, 5):
            x = rng.standard_normal((batch, *model.example_input(1).shape[1:])).astype(np.float32)
            with torch.inference_mode():
                ref = model(torch.from_numpy(x)).numpy()
            np.testing.assert_allclose(om.run(x)["logits"], ref, atol=1e-4, rtol=0)
        assert model.fast  # the export switched the fast path off only while tracing
    heads = _Heads().eval()
    meta = export_onnx(heads, tmp_path / "heads.onnx")
    assert meta["outputs"] == ["logits", "subclass_logits", "lum_logits", "params_mean", "params_sigma"]
    x = rng.standard_normal((3, 1, 6000)).astype(np.float32)
    got = OnnxModel(tmp_path / "heads.onnx").run(x)
    with torch.inference_mode():
        ref = heads.forward_all(torch.from_numpy(x))
    for k, v in ref.items():
        np.testing.assert_allclose(got[k], v.numpy(), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_cli_export_and_predict_with_onnx(cli_runs, micro_data, tmp_path):
    onnx_file = tmp_path / "m.onnx"
    assert "outputs logits" in cli("export", "--onnx", cli_runs["drcnet"], "--out", onnx_file)
    ref, a, b = tmp_path / "ref.csv", tmp_path / "a.csv", tmp_path / "b.csv"
    cli("predict", cli_runs["drcnet"], "--data", micro_data, "--out", ref)
    cli("predict", onnx_file, "--data", micro_data, "--out", a)
    cli("predict", cli_runs["drcnet"], "--data", micro_data, "--out", b, "--engine", "onnx")
    rows = [list(csv.DictReader(p.open())) for p in (ref, a, b)]
    for other in rows[1:]:
        assert [r["object_id"] for r in other] == [r["object_id"] for r in rows[0]]
        for r, o in zip(rows[0], other):
            for c in ("prob_F", "prob_G", "prob_K"):
                assert abs(float(r[c]) - float(o[c])) <= 1e-4 + 1e-6


def test_onnx_errors_are_one_line(cli_runs, micro_data, tmp_path):
    from typer.testing import CliRunner

    from drcnet.cli import app
    from drcnet.models.onnx_export import _need

    with pytest.raises(ImportError, match="pip install onnx onnxruntime"):
        _need("drcnet_no_such_module")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    for args in (
        ["predict", str(bad), "--data", str(micro_data), "--out", str(tmp_path / "x.csv")],
        ["export", "--onnx", str(cli_runs["drcnet"]), "--out", str(tmp_path / "x.txt")],
        ["export", "--onnx", "no-such-model", "--out", str(tmp_path / "x.onnx")],
        ["predict", "--data", str(micro_data), "--out", str(tmp_path / "x.csv"), "--precision", "fp16"],
    ):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert "error:" in res.output and "Traceback" not in res.output


def test_dataloader_batches_equal_single_items(micro_data):
    ds = SpectraDataset(micro_data, "stripes", "train", with_validity=True)
    order = [7, 3, 4, 5, 20, 0, 1]
    batched = next(iter(DataLoader(Subset(ds, order), batch_size=len(order), num_workers=0)))
    for k, i in enumerate(order):
        x, y, j, ok = ds[i]
        assert torch.equal(batched[0][k], x) and int(batched[1][k]) == int(y) and ok == bool(batched[3][k])
    assert batched[2].tolist() == order
