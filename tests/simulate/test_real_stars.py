"""Issue 9: LAMOST label convention, real survey spectra as sources, domain randomisation, arm collapse fix."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from drcnet.instrument import FiberConfig
from drcnet.library.labels import LamostLabelMap, lamost_label, lumclass_from_logg, to_lamost_convention
from drcnet.library.template import Template
from drcnet.models.drcnet import DRCNet, DRCNetConfig
from drcnet.simulate.optics import profile_integral
from drcnet.simulate.population import lamost_split_of
from drcnet.simulate.randomize import DomainRandomization, draw_perturbation, throughput_factor


def _t(cls: str, sub: str, teff: float, logg: float, feh: float, library: str = "lamost", lum: str = "") -> Template:
    w = np.linspace(3600.0, 9100.0, 50)
    return Template(
        wave=w,
        flux=np.ones_like(w),
        mask=np.ones(w.size, bool),
        cls=cls,
        subclass=sub,
        teff=teff,
        logg=logg,
        feh=feh,
        lumclass=lum,
        library=library,
        source_id=f"{sub}{teff}{logg}",
        path=f"/nowhere/{library}/{sub}{teff}.fits",
    )


def test_lamost_subclass_maps_to_class() -> None:
    assert lamost_label("STAR", "G5") == ("G", "G5")
    assert lamost_label("STAR", "F9") == ("F", "F9")
    assert lamost_label("STAR", "K7") == ("K", "K7")
    assert lamost_label("GALAXY", "Non") == ("", "")
    assert lamost_label("Unknown", "Non") == ("", "")
    assert lumclass_from_logg(2.7) == "III" and lumclass_from_logg(3.8) == "IV" and lumclass_from_logg(4.4) == "V"
    assert lumclass_from_logg(math.nan) == ""


def _reference() -> list[Template]:
    # the LAMOST README's medians: G5 giants near 4880 K / logg 2.7, F9 metal-poor near 5650 K
    ref = []
    for k in range(8):
        ref.append(_t("G", "G5", 4880 + 20 * k, 2.7 + 0.02 * k, -0.2))
        ref.append(_t("F", "F9", 5650 + 20 * k, 4.2, -1.2 + 0.02 * k))
        ref.append(_t("G", "G3", 5630 + 20 * k, 4.3, 0.0 + 0.02 * k))
        ref.append(_t("F", "F0", 6560 + 20 * k, 4.1, 0.0))
    return ref


def test_library_giant_follows_lamost_convention() -> None:
    m = LamostLabelMap.fit(_reference())
    # an MK K0 III giant at 4900 K: LAMOST calls such stars G5
    k0iii = m.relabel(_t("K", "K0", 4900, 2.75, -0.2, library="miles", lum="III"))
    assert (k0iii.cls, k0iii.subclass, k0iii.lumclass) == ("G", "G5", "III")
    assert k0iii.meta["label_source"] == "lamost_knn" and k0iii.meta["mk_class"] == "K"
    # a metal-poor dwarf at 5680 K, MK G2: LAMOST calls it F9
    assert m.relabel(_t("G", "G2", 5680, 4.2, -1.15, library="stelib")).cls == "F"
    # a 4300 K dwarf lies outside the reference region: its MK class is kept
    k5v = m.relabel(_t("K", "K5", 4300, 4.6, 0.0, library="pyhammer", lum="V"))
    assert k5v.cls == "K" and k5v.meta["label_source"] == "mk"


def test_to_lamost_convention_keeps_lamost_labels() -> None:
    ref = _reference()
    out = to_lamost_convention(ref + [_t("K", "K0", 4900, 2.75, -0.2, library="miles")])
    assert [t.cls for t in out[:-1]] == [t.cls for t in ref]
    assert out[-1].cls == "G"


def test_lamost_split_is_stable_and_disjoint() -> None:
    keys = [f"J{i:06d}" for i in range(3000)]
    s = np.array([lamost_split_of(k) for k in keys])
    assert set(np.unique(s)) == {0, 1, 2}
    frac = np.bincount(s) / s.size
    assert abs(frac[0] - 0.70) < 0.03 and abs(frac[1] - 0.15) < 0.03
    assert all(lamost_split_of(k) == v for k, v in zip(keys[:50], s[:50]))


def test_randomisation_ranges_respected() -> None:
    cfg = DomainRandomization()
    rng = np.random.default_rng(1)
    cols = np.arange(500, 3500)
    for _ in range(300):
        p = draw_perturbation(cfg, rng)
        assert cfg.sky_level[0] <= p.sky_level <= cfg.sky_level[1]
        assert cfg.sky_line_scale[0] <= p.sky_line_scale <= cfg.sky_line_scale[1]
        assert cfg.profile_fwhm_px[0] <= p.profile_fwhm_px <= cfg.profile_fwhm_px[1]
        assert cfg.scattered_fraction[0] <= p.scattered_fraction <= cfg.scattered_fraction[1]
        for a in range(2):
            assert cfg.trace_offset_px[0] <= p.trace_offset_px[a] <= cfg.trace_offset_px[1]
            assert cfg.wave_offset_px[0] <= p.wave_offset_px[a] <= cfg.wave_offset_px[1]
            t = throughput_factor(p.throughput_coef[a], cols)
            assert np.all((t >= 0.5) & (t <= 2.0)) and np.all(np.abs(np.diff(np.log(t))) < 0.01)  # smooth


def test_randomisation_config_validates() -> None:
    with pytest.raises(ValueError):
        DomainRandomization(sky_level=(2.0, 1.0))
    with pytest.raises(ValueError):
        DomainRandomization(scattered_fraction=(-0.1, 0.0))
    off = DomainRandomization(sky_level=(1.0, 1.0), throughput_amplitude=0.0)
    p = draw_perturbation(off, np.random.default_rng(0))
    assert p.sky_level == 1.0 and all(c == 0 for c in p.throughput_coef[0])


def test_negative_pixels_never_reach_sqrt() -> None:
    """A real spectrum with negative noise pixels: the S/N solve and the render give finite numbers, no warning."""
    from drcnet.instrument import InstrumentConfig
    from drcnet.simulate.render import ForwardModel

    class _Sky:  # the interface of simulate.spectra.TabulatedSpectrum that the renderer uses
        def at(self, wave: np.ndarray, rv_kms: float = 0.0, fill: float = 0.0) -> np.ndarray:
            return np.full_like(wave, 0.05)

        def at_ln(self, ln_wave: np.ndarray, rv_kms: float = 0.0, fill: float = 0.0) -> np.ndarray:
            return np.full_like(ln_wave, 0.05)

    class _Site:  # and of simulate.site.Site
        sky = _Sky()

        def extinction(self, wave: np.ndarray, airmass: float, ln_wave: np.ndarray | None = None) -> np.ndarray:
            return np.ones_like(wave)

    w = np.linspace(3600.0, 9200.0, 6000)
    rng = np.random.default_rng(0)
    flux = 1e-16 * (1.0 + rng.normal(0, 1.5, w.size))  # S/N ~ 0.7 per pixel: many negative pixels
    assert (flux < 0).sum() > 1000
    t = Template(
        wave=w,
        flux=flux,
        mask=np.ones(w.size, bool),
        cls="G",
        subclass="G2",
        library="lamost",
        source_id="neg",
        path="neg.fits",
    )
    model = ForwardModel(InstrumentConfig(), _Site(), [t])  # type: ignore[arg-type]
    from drcnet.simulate.render import Source

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = model.render_object(Source(0), 120, np.random.default_rng(2), snr_target=10.0)
    assert np.isfinite(res.snr_r) and np.all(np.isfinite(res.arms[1].stripe))


def test_profile_init_is_an_extraction_profile() -> None:
    torch.manual_seed(0)
    m = DRCNet(DRCNetConfig(reduce_init="profile"))
    prof = profile_integral(np.arange(-5, 6).astype(float), FiberConfig())
    for red in m.reduce:
        e = red.composed()[0][:, 0].detach().numpy()
        cos = e @ prof / np.linalg.norm(e) / np.linalg.norm(prof)
        assert cos > 0.95 and abs(e.sum() - 1.0) < 0.05


def test_aux_heads_and_feature_spread() -> None:
    torch.manual_seed(0)
    m = DRCNet(DRCNetConfig(reduce_init="profile", aux_heads=True, arm_dropout=0.5))
    x = torch.randn(4, 2, 11, 3000)
    m.train()
    out = m(x)
    assert out.shape == (4, 3) and m.aux_logits is not None and len(m.aux_logits) == 2
    m.eval()
    m(x)
    assert m.aux_logits is None
    spread = m.feature_spread(x)
    assert len(spread) == 2 and all(s >= 0 for s in spread)


def test_robust_preset_resolves() -> None:
    from drcnet.train.config import TrainConfig

    cfg = TrainConfig(model="drcnet", data="x.h5", out="r", preset="robust").resolved()
    assert cfg.aux_weight == 0.3 and cfg.model_config["reduce_init"] == "profile" and cfg.model_config["aux_heads"]
    assert TrainConfig(model="drcnet", data="x.h5", out="r", preset="fast").resolved().aux_weight == 0.0
    rc = TrainConfig(model="rcnet", data="x.h5", out="r", preset="robust").resolved()
    assert rc.model_config == {}
    # the hybrid's DRC-Net gets the robust DRC-Net's settings (a comparison on one preset compares like with like)
    hy = TrainConfig(model="hybrid", data="x.h5", out="r", preset="robust").resolved()
    assert hy.model_config == {"drcnet": {"reduce_init": "profile", "aux_heads": True}}


def test_survey_preset_gives_every_model_the_other_class() -> None:
    from drcnet.models.factory import create_model
    from drcnet.train.config import TrainConfig

    for name, shape in (("rcnet", (2, 1, 6000)), ("ffcnn", (2, 2, 11, 3000))):
        cfg = TrainConfig(model=name, data="x.h5", out="r", preset="survey").resolved()
        assert cfg.model_config == {"n_classes": 4}
        model = create_model(name, **cfg.model_config).eval()
        with torch.no_grad():
            assert model(torch.zeros(shape)).shape == (2, 4)
    drc = TrainConfig(model="drcnet", data="x.h5", out="r", preset="survey").resolved()
    assert drc.model_config["n_classes"] == 4 and drc.model_config["heads"] is True


def test_batch_norm_options_fast_path_matches_plain() -> None:
    torch.manual_seed(0)
    m = DRCNet(DRCNetConfig(reduce_init="profile", aux_heads=True, seq_norm="batch", feature_norm="batch"))
    x = torch.randn(6, 2, 11, 3000)
    m.train()
    m(x)  # fill running statistics
    m.eval()
    m.fast = True
    a = m(x)
    m.fast = False
    b = m(x)
    assert torch.allclose(a, b, atol=1e-4)
    with pytest.raises(ValueError):
        DRCNet(DRCNetConfig(seq_norm="layer"))


@pytest.mark.slow
def test_label_map_breaks_a_subclass_tie_by_the_nearest_star_in_every_process() -> None:
    """3 G2 and 3 G4 among the 7 neighbours: the nearest star's subclass (G4) wins, whatever the string hashing."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from drcnet.library.labels import LamostLabelMap\n"
        "pts = LamostLabelMap.scale\n"
        "ref = [(5700, 'G4'), (5760, 'G2'), (5640, 'G4'), (5820, 'G2'), (5580, 'G4'), (5880, 'G2'), (6000, 'F9')]\n"
        "m = LamostLabelMap(np.array([pts(t, 4.3, 0.0) for t, _ in ref]), ['F' if s[0] == 'F' else 'G' for _, s in ref],\n"
        "                   [s for _, s in ref])\n"
        "print(m.predict(5705, 4.3, 0.0))\n"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout.strip()
        for seed in range(8)
    }
    assert outs == {"('G', 'G4')"}


def test_moving_the_validation_stars_into_training_keeps_the_test_stars() -> None:
    # a final refit (--lamost-shares 0.85,0,0.15) trains on the validation stars too; the test stars, held
    # out from every choice, must be exactly the same stars
    from drcnet.simulate.sources import split_other

    keys = [f"J{i:06d}" for i in range(3000)]
    before = np.array([lamost_split_of(k) for k in keys])
    after = np.array([lamost_split_of(k, (0.85, 0.0, 0.15)) for k in keys])
    assert np.array_equal(after == 2, before == 2)
    assert not (after == 1).any()
    assert np.array_equal(after == 0, before <= 1)
    # the same rule for real LAMOST 'other' objects (A/M stars, galaxies); library ones keep their split
    others = [_t("other", "A2", 8000.0 + i, 4.0, 0.0) for i in range(400)] + [
        _t("other", "A2", 8000.0 + i, 4.0, 0.0, library="stelib") for i in range(400)
    ]
    s0 = split_other(others, all_test=False)
    s1 = split_other(others, all_test=False, lamost_fractions=(0.85, 0.0, 0.15))
    lam = np.arange(800) < 400
    assert np.array_equal(s1[lam] == 2, s0[lam] == 2) and not (s1[lam] == 1).any() and (s0[lam] == 1).sum() > 20
    assert np.array_equal(s1[~lam], s0[~lam])


def test_split_shares_are_checked_before_any_work() -> None:
    from drcnet.simulate.population import plan_population
    from drcnet.simulate.sources import check_split_fractions

    assert check_split_fractions([0.85, 0, 0.15]) == (0.85, 0.0, 0.15)
    for bad in ([float("nan"), 0, 1], [float("inf"), 0, 1], [0, 0, 0], [1, -1, 1], [1, 1]):
        with pytest.raises(ValueError, match="three finite shares"):
            check_split_fractions(bad)
    # asking for objects of a split that holds no source spectrum is an error, not a silently smaller file
    ts = [_t("F", "F5", 6300.0, 4.2, 0.0), _t("G", "G2", 5700.0, 4.3, 0.0)]
    with pytest.raises(ValueError, match="no source spectrum is in the val split"):
        plan_population(ts, np.array([0, 0]), {"val": 2, "train": 4}, (5.0, 50.0), np.random.default_rng(0))
    with pytest.warns(UserWarning, match="no K source spectrum in the train split: its 1 K objects"):
        plan = plan_population(ts, np.array([0, 0]), {"train": 4}, (5.0, 50.0), np.random.default_rng(0))
    assert len(plan.cls) == 3
    ts.append(_t("K", "K2", 4900.0, 4.5, 0.0))
    plan = plan_population(ts, np.array([0, 0, 0]), {"train": 4}, (5.0, 50.0), np.random.default_rng(0))
    assert len(plan.cls) == 4 and sorted(plan.cls.tolist()).count(2) >= 1


def test_cli_lamost_split_refuses_a_malformed_value(tmp_path) -> None:
    from typer.testing import CliRunner

    from drcnet.cli import app

    for bad in ("0.85,0.15", "a,b,c", "0.9,-0.1,0.2", "nan,0,1", "inf,0,1", "0,0,0", "1e308,1e308,1"):
        res = CliRunner().invoke(app, ["simulate-population", "--out", str(tmp_path / "p.h5"), "--lamost-shares", bad])
        assert res.exit_code == 2, res.output
        assert "--lamost-shares" in res.output and "train,val,test" in res.output
        assert not (tmp_path / "p.h5").exists()


def test_library_labels_option_is_checked_before_any_work(tmp_path) -> None:
    from typer.testing import CliRunner

    from drcnet.cli import app

    res = CliRunner().invoke(app, ["simulate-population", "--out", str(tmp_path / "p.h5"), "--library-labels", "mk"])
    assert res.exit_code == 2 and "--library-labels 'mk': give 'spectra' or 'parameters'" in res.output
    assert not (tmp_path / "p.h5").exists()


def test_real_stars_take_their_share_of_each_class_whatever_the_library_sizes() -> None:
    from drcnet.simulate.population import SOURCE_SHARE, real_share, sampling_weights

    assert real_share(0.9, {"miles": 0.15, "pyhammer": 0.1, "stelib": 0.1}) == pytest.approx(
        {"lamost": 0.9, "miles": 0.1 * 3 / 7, "pyhammer": 0.1 * 2 / 7, "stelib": 0.1 * 2 / 7}
    )
    assert SOURCE_SHARE["F"]["lamost"] == SOURCE_SHARE["G"]["lamost"] == 0.9 and SOURCE_SHARE["K"]["lamost"] == 0.75
    with pytest.raises(ValueError, match="a real share must lie in"):
        real_share(1.2, {"miles": 1.0})
    # 3 real K stars and 2 MILES K stars in training, 1 real F star (alone in its class), 1 real K in val
    ts = [_t("K", "K1", 5000 + i, 4.5, 0.0) for i in range(3)]
    ts += [_t("K", "K3", 4700 + i, 2.5, 0.0, library="miles") for i in range(2)]
    ts += [_t("F", "F5", 6500, 4.2, 0.0), _t("K", "K0", 5200, 4.5, 0.0)]
    w = sampling_weights(ts, np.array([0, 0, 0, 0, 0, 0, 1]), split=0)
    # K: lamost 0.75 : miles 0.25 * 0.3 / 0.65, renormalised over the two groups present
    miles = 0.25 * 0.3 / 0.65
    np.testing.assert_allclose(w[:3], 0.75 / (0.75 + miles) / 3)
    np.testing.assert_allclose(w[3:5], miles / (0.75 + miles) / 2)
    assert w[5] == pytest.approx(1.0) and w[6] == 0.0


def _a_star(sub: str, i: int) -> Template:
    from dataclasses import replace

    return replace(_t("other", sub, 7500.0 + i, 4.0, 0.0), meta={"mk_class": "A"}, source_id=f"{sub}-{i}")


def test_boundary_weight_draws_late_a_stars_more_often_in_training_only() -> None:
    from drcnet.simulate.population import OTHER_SHARE, plan_population, sampling_weights
    from drcnet.simulate.sources import at_fa_boundary

    # 3 early-A (A1, A3, A5) and 2 late-A (A7, A9V) real stars, 1 STELIB A star, all in training
    ts = [_a_star("A1", 0), _a_star("A3", 1), _a_star("A5", 2), _a_star("A7", 3), _a_star("A9V", 4)]
    ts.append(replace_library(_a_star("A7", 5), "stelib"))
    assert [at_fa_boundary(t) for t in ts] == [False, False, False, True, True, False]
    split = np.zeros(len(ts), dtype=int)
    a_share = OTHER_SHARE["lamost:A"] / (OTHER_SHARE["lamost:A"] + OTHER_SHARE["stelib"])
    w1 = sampling_weights(ts, split, 0)
    np.testing.assert_allclose(w1[:5], a_share / 5)
    w3 = sampling_weights(ts, split, 0, boundary_weight=3.0)
    # mass 1 + 1 + 1 + 3 + 3 = 9 within the group; the group keeps its share, STELIB keeps its own
    np.testing.assert_allclose(w3[:3], a_share / 9)
    np.testing.assert_allclose(w3[3:5], a_share * 3 / 9)
    assert w3[5] == pytest.approx(w1[5]) == pytest.approx(1 - a_share)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="boundary_weight must be a finite number > 0"):
            sampling_weights(ts, split, 0, boundary_weight=bad)
    # the weight reaches the training split and nothing else: a validation draw is the same with or without
    fgk = [_t("F", "F5", 6300.0, 4.2, 0.0), _t("G", "G2", 5700.0, 4.3, 0.0), _t("K", "K2", 4900.0, 4.5, 0.0)]
    ts2 = ts + fgk + [replace_library(t, t.library) for t in ts + fgk]
    both = np.repeat([0, 1], 9)
    plans = [
        plan_population(ts2, both, {"train": 4000, "val": 600}, (5, 50), np.random.default_rng(3), 0.9, bw)
        for bw in (1.0, 3.0)
    ]
    val = plans[0].split == 1
    assert np.array_equal(plans[0].template[val], plans[1].template[val])
    assert np.isin(plans[0].template[val], [12, 13]).sum() > 20
    n_late = [int(np.isin(p.template[p.split == 0], [3, 4]).sum()) for p in plans]
    n_a = [int(np.isin(p.template[p.split == 0], [0, 1, 2, 3, 4]).sum()) for p in plans]
    assert abs(n_a[1] - n_a[0]) < 150  # the A share stays the same (about 2,520 of 4,000)
    assert 0.33 < n_late[0] / n_a[0] < 0.47 and 0.60 < n_late[1] / n_a[1] < 0.73  # 2/5 -> 6/9


def replace_library(t: Template, library: str) -> Template:
    from dataclasses import replace

    return replace(t, library=library)


def test_cli_boundary_weight_is_checked_before_any_work(tmp_path) -> None:
    from typer.testing import CliRunner

    from drcnet.cli import app

    for bad in ("0", "-2", "nan", "inf"):
        res = CliRunner().invoke(
            app, ["simulate-population", "--out", str(tmp_path / "p.h5"), "--boundary-weight", bad]
        )
        assert res.exit_code == 2, res.output
        assert f"--boundary-weight {float(bad)}: give a finite number > 0" in res.output
        assert not (tmp_path / "p.h5").exists()
