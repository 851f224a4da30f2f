"""Models: registry, shapes, gradients, learning, save/load, fast path == plain path, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import _support.model_fixtures  # noqa: F401  (thread settings under xdist)
from drcnet import CLASSES
from drcnet.data.normalize import EPS, prepare_input, zscore_spectra1d, zscore_stripes
from drcnet.models import create_model, list_models, model_input_kind
from drcnet.models.drcnet import SpatialReduction, reduce_arms_fast
from drcnet.models.fastpath import set_fast
from drcnet.models.run_folder import read_safetensors
from drcnet.train.checkpoint import save_weights

MODELS = list_models()


def test_registry_lists_the_three_paper_models_and_the_hybrids():
    assert MODELS == ["drcnet", "ffcnn", "hybrid", "hybrid_optimal", "rcnet"]
    assert model_input_kind("hybrid") == "hybrid" and model_input_kind("hybrid_optimal") == "hybrid_optimal"
    assert model_input_kind("drcnet") == "stripes"
    assert model_input_kind("ffcnn") == "stripes"
    assert model_input_kind("rcnet") == "spectra1d"
    with pytest.raises(KeyError, match="unknown model"):
        create_model("nope")
    with pytest.raises(ValueError, match="unknown config"):
        create_model("drcnet", widht=3)


@pytest.mark.parametrize("name", MODELS)
def test_forward_shape_and_backward(name):
    torch.manual_seed(0)
    model = create_model(name)
    x = model.example_input(3)
    expected = {
        "stripes": (3, 2, 11, 3000),
        "spectra1d": (3, 1, 6000),
        "hybrid": (3, 2, 12, 3000),
        "hybrid_optimal": (3, 2, 12, 3000),
    }[model.input_kind]
    assert tuple(x.shape) == expected
    logits = model(x)
    assert logits.shape == (3, len(CLASSES))
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # every parameter tensor gets some gradient (nothing disconnected)
    assert all(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", MODELS)
def test_a_few_steps_lower_the_loss_on_a_tiny_batch(name):
    torch.manual_seed(0)
    model = create_model(name)
    set_fast(model, True)
    model.eval()  # no dropout: the loss is a deterministic function of the weights
    x = model.example_input(6)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    t = torch.arange(x.shape[-1])
    for i in range(6):  # a class-dependent oscillation on top of the noise
        x[i] += torch.sin(t * (0.01 + 0.02 * y[i]))
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    with torch.no_grad():
        first = F.cross_entropy(model(x), y).item()
    for _ in range(12):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = F.cross_entropy(model(x), y).item()
    assert last < 0.8 * first


@pytest.mark.parametrize("name", MODELS)
def test_save_load_gives_identical_outputs(name, tmp_path):
    torch.manual_seed(1)
    model = create_model(name).eval()
    x = model.example_input(2)
    with torch.no_grad():
        ref = model(x)
    save_weights(tmp_path / "w.safetensors", model, {"model": name, "model_config": model.config_dict()})
    tensors, meta = read_safetensors(tmp_path / "w.safetensors")
    assert meta["model"] == name
    torch.manual_seed(99)  # different init: the loaded weights must overwrite all of it
    again = create_model(meta["model"], **meta["model_config"]).eval()
    again.load_state_dict(tensors)
    with torch.no_grad():
        assert torch.equal(again(x), ref)


@pytest.mark.parametrize("name", MODELS)
def test_fast_path_equals_plain_path(name):
    torch.manual_seed(2)
    model = create_model(name).eval()
    x = model.example_input(3)
    outs, grads = [], []
    for fast in (False, True):
        set_fast(model, fast)
        model.zero_grad()
        out = model(x)
        F.cross_entropy(out, torch.tensor([2, 0, 1])).backward()
        outs.append(out.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    assert torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-5 * grads[0].abs().max().item())


@pytest.mark.parametrize("activation", ["none", "relu"])
def test_fused_spatial_reduction_equals_the_convolutions(activation):
    torch.manual_seed(3)
    reds = torch.nn.ModuleList(SpatialReduction(11, (3, 2, 1), (5, 5, 3), activation) for _ in range(2))
    for r in reds:  # non-zero biases, so their composition is checked too
        for c in r.convs:
            torch.nn.init.normal_(c.bias)
    x = torch.randn(4, 2, 11, 50, requires_grad=True)
    fast = reduce_arms_fast(reds, x)
    g_fast = torch.autograd.grad(sum(f.square().sum() for f in fast), list(reds.parameters()))
    plain = [reds[a](x[:, a : a + 1]) for a in range(2)]  # (B, C, L)
    g_plain = torch.autograd.grad(sum(p.square().sum() for p in plain), list(reds.parameters()))
    for a in range(2):
        assert torch.allclose(fast[a][:, :, 0, :], plain[a], atol=1e-5)
    for gf, gp in zip(g_fast, g_plain):
        assert torch.allclose(gf, gp, rtol=1e-4, atol=1e-4)
    if activation == "none":
        e, b = reds[0].composed()
        assert e.shape == (11, 1) and b.shape == (1,)
    else:
        with pytest.raises(ValueError, match="not one linear map"):
            reds[0].composed()
    with pytest.raises(ValueError, match="not 1"):
        SpatialReduction(11, (4, 4), (5, 5))


def test_drcnet_architecture_follows_the_paper():
    m = create_model("drcnet")
    # spatial kernels 5x1, 5x1, 3x1 take 11 rows to 1
    assert [tuple(c.kernel_size) for c in m.reduce[0].convs] == [(5, 1), (5, 1), (3, 1)]
    assert len(m.reduce) == len(m.backbones) == 2
    assert m.backbones[0].out_len == 11 and m.backbones[0].fc.in_features == 1408
    assert m.backbones[0].feature_dim == 128
    assert [c.out_channels for c in (b.conv3 for b in m.backbones[0].blocks)] == [16, 16, 32, 32, 64, 64, 128, 128]
    convs = [l for l in m.fusion if isinstance(l, torch.nn.Conv1d)]
    assert len(convs) == 2 and all(c.kernel_size == (3,) for c in convs) and convs[0].in_channels == 2
    assert sum(isinstance(l, torch.nn.Linear) for l in m.classifier) == 3
    x = m.example_input(2)
    assert m.features(x).shape == (2, 2, 128)


def test_rcnet_and_ffcnn_facts():
    rc = create_model("rcnet")
    assert rc.backbone.fc.in_features == 128 * (6000 // 256)
    ff = create_model("ffcnn")
    assert all(tuple(c.kernel_size) == (3, 20) for br in ff.branches for c in br.convs)


def test_zscore_per_stripe_and_zero_std_guard():
    rng = np.random.default_rng(0)
    stripes = (rng.normal(500, 30, size=(3, 2, 11, 3000))).astype(np.float16)
    stripes[1, 1] = 7.0  # a constant stripe: std 0
    z = zscore_stripes(stripes)
    assert z.dtype == np.float32 and z.shape == stripes.shape
    good = z[[0, 0, 1, 2, 2], [0, 1, 0, 0, 1]]
    assert np.allclose(good.mean(axis=(-2, -1)), 0, atol=1e-5)
    assert np.allclose(good.std(axis=(-2, -1)), 1, atol=1e-4)
    assert np.all(z[1, 1] == 0) and np.isfinite(z).all()
    # each stripe uses its own statistics: scaling one arm does not change the other
    s2 = stripes.astype(np.float32).copy()
    s2[0, 1] *= 3
    assert np.allclose(zscore_stripes(s2)[0, 0], z[0, 0], atol=1e-5)
    nan = stripes.astype(np.float32)
    nan[2, 0, 5, 7] = np.nan
    assert np.isfinite(zscore_stripes(nan)).all()
    assert EPS > 0


def test_spectra1d_input_is_sky_subtracted_per_arm_zscore_concatenated():
    rng = np.random.default_rng(1)
    flux = rng.normal(100, 10, size=(4, 2, 3000)).astype(np.float32)
    sky = rng.normal(20, 1, size=(4, 2, 3000)).astype(np.float32)
    x = zscore_spectra1d(flux, sky)
    assert x.shape == (4, 1, 6000)
    blue = flux[:, 0] - sky[:, 0]
    expect = (blue - blue.mean(axis=1, keepdims=True)) / blue.std(axis=1, keepdims=True)
    assert np.allclose(x[:, 0, :3000], expect, atol=1e-4)
    assert np.allclose(x[:, 0, 3000:].std(axis=1), 1, atol=1e-4)
    assert np.array_equal(prepare_input("spectra1d", flux1d=flux, sky1d=sky), x)
    with pytest.raises(ValueError, match="takes 2D stripes"):
        prepare_input("stripes", flux1d=flux)
