"""The reduction's algorithms against analytic truths: centroids, boxcar on a noiseless frame, optimal
extraction (variance, cosmic rays), the bias check, the master sky, and tracing against specreduce."""

from __future__ import annotations

import numpy as np
import pytest

from _support.exposure import full_exposure, one, rms
from drcnet.instrument import N_COLS, N_ROWS, InstrumentConfig
from drcnet.instrument.config import DETECTOR, U0
from drcnet.instrument.lamost import OVERSCAN, RAW_SHAPE
from drcnet.instrument.rawframe import read_raw_frame
from drcnet.reduce.calib import bias_model, levels, net_image
from drcnet.reduce.centroid import windowed_centroid
from drcnet.reduce.extract import boxcar, extraction_chi2, interpolate_row_gaps, optimal_extract
from drcnet.reduce.sky import master_sky
from drcnet.reduce.stripes import StripePixels, cut_stripes
from drcnet.reduce.trace import trace_fibers
from drcnet.simulate.ccd import spread_light
from drcnet.simulate.exposure.frames import expected_frames
from drcnet.simulate.exposure.run import read_truth_geometries
from drcnet.simulate.optics import ProfileTable, fiber_geometries

INST = InstrumentConfig()
CCD = INST.ccd
GAIN = CCD.gain_e_per_adu
RN_ADU = CCD.read_noise_e / GAIN
COLS = np.arange(500, 3500)
ALL = np.arange(N_COLS)


def test_windowed_centroid_is_unbiased():
    x = np.arange(200, dtype=float)
    true = np.array([20.0, 36.3, 52.5, 68.77, 85.01])
    sigma = 2.55
    prof = sum(np.exp(-0.5 * ((x - t) / sigma) ** 2) for t in true) + 0.01
    got, flux = windowed_centroid(prof, np.round(true) + 0.4, sigma)
    assert np.abs(got - true).max() < 5e-3 and np.all(flux > 0)  # truncation of the window: ~1e-3 px


@pytest.fixture(scope="module")
def noiseless():
    """A noiseless flat of all 250 fibers and a noiseless 'science' frame where every 3rd fiber is lit,
    as raw float frames (data = electrons / gain + bias, overscan = bias)."""
    geoms = fiber_geometries(INST.fiber, np.random.default_rng(5), np.arange(250))
    profile = ProfileTable(INST.fiber)
    flat_e = np.full((250, N_COLS), 2e5)
    sci_e = np.zeros((250, N_COLS))
    lit = np.arange(0, 250, 3)
    sci_e[lit] = np.linspace(1e4, 3e4, N_COLS)[None, :] * (1 + 0.01 * lit[:, None])
    frames = expected_frames(geoms, {"flat": flat_e, "sci": sci_e}, profile)
    raws = {}
    for k, img in frames.items():
        raw = np.empty(RAW_SHAPE, np.float64)
        raw[:, OVERSCAN : OVERSCAN + N_COLS] = img / GAIN + CCD.bias_adu[0]
        raw[:, OVERSCAN + 2048 : OVERSCAN + N_COLS] += CCD.bias_adu[1] - CCD.bias_adu[0]
        raw[:, :OVERSCAN] = CCD.bias_adu[0]
        raw[:, OVERSCAN + N_COLS :] = CCD.bias_adu[1]
        raws[k] = raw
    return geoms, profile, sci_e, lit, raws


def test_boxcar_of_a_noiseless_frame_returns_the_injected_counts(noiseless):
    geoms, profile, sci_e, lit, raws = noiseless
    flat = raws["flat"]
    traces = trace_fibers(
        net_image(flat[:, OVERSCAN:-OVERSCAN], levels(np.stack([flat[:, :32], flat[:, -32:]], 1)), 2048),
        250,
        INST.fiber,
        u0=U0,
    )
    assert not traces.lost.any()
    true = np.array([g.trace(COLS) for g in geoms])
    assert rms(traces.centres(COLS) - true) < 0.01
    sci = raws["sci"]
    pixels = StripePixels.from_centres(traces.centres(COLS), COLS, n_rows=N_ROWS, amp_boundary=2048)
    stripes, _ = cut_stripes(sci, levels(np.stack([sci[:, :32], sci[:, -32:]], 1)), pixels, OVERSCAN)
    flux, ivar = boxcar(stripes, GAIN, RN_ADU)
    for f in lit[::7]:
        # the counts injected into this fiber's 11 x 3000 pixels, by the forward model's own spread_light
        rows = pixels.rows[f]
        near = [(geoms[k], sci_e[k][COLS]) for k in range(max(f - 4, 0), min(f + 5, 250))]
        injected = spread_light(rows, COLS, near, profile).sum(axis=0) / GAIN
        assert np.allclose(flux[f], injected, rtol=2e-5)
        # and its own light is the fiber's electrons times the profile's share in the aperture
        own = sci_e[f][COLS] * profile(rows, geoms[f].trace(COLS)).sum(axis=0) / GAIN
        assert np.allclose(flux[f], own, rtol=2e-3)
    assert np.all(ivar[lit] > 0)


def _noisy_stripes(rng, n_fib=200, star_e=300.0, sky_e=80.0):
    """Stripes of faint stars: profile from the forward model at random trace offsets, Poisson + read noise."""
    profile = ProfileTable(INST.fiber)
    offsets = rng.uniform(-0.5, 0.5, (n_fib, COLS.size))
    k = np.arange(-5, 6)
    share = np.stack([profile(k, offsets[f]) for f in range(n_fib)])  # (n, 11, cols)
    total = star_e + sky_e
    expected = total * share
    counts = rng.poisson(expected) + CCD.read_noise_e * rng.standard_normal(expected.shape)
    truth = expected.sum(axis=1) / GAIN
    return counts / GAIN, share / share.sum(axis=1, keepdims=True), truth


def test_optimal_extraction_beats_boxcar_on_a_noisy_frame():
    rng = np.random.default_rng(11)
    stripes, prof, truth = _noisy_stripes(rng, star_e=80.0, sky_e=30.0)  # faint: read noise matters
    box, box_ivar = boxcar(stripes, GAIN, RN_ADU)
    opt = optimal_extract(stripes.astype(np.float32), prof.astype(np.float32), GAIN, RN_ADU)
    s_box, s_opt = np.std(box - truth), np.std(opt.flux - truth)
    print(f"scatter: boxcar {s_box:.3f} ADU, optimal {s_opt:.3f} ADU ({s_opt / s_box:.3f})")
    # 600k columns: the scatter is known to 0.1 %, so a few per cent is a many-sigma difference
    assert s_opt < 0.97 * s_box
    assert abs(np.mean(opt.flux - truth)) < 0.05 * s_opt  # unbiased
    # the inverse variances describe the scatter
    assert 0.9 < np.std((opt.flux - truth) * np.sqrt(opt.ivar)) < 1.1
    assert 0.9 < np.std((box - truth) * np.sqrt(box_ivar)) < 1.1
    assert np.median(opt.ivar) > np.median(box_ivar)


def test_optimal_extraction_rejects_cosmic_rays():
    rng = np.random.default_rng(12)
    stripes, prof, truth = _noisy_stripes(rng, n_fib=20, star_e=3000.0)
    hit = stripes.copy()
    hit[3, 4, 100] += 2000.0
    hit[7, 6, 2000:2003] += 800.0
    opt = optimal_extract(hit.astype(np.float32), prof.astype(np.float32), GAIN, RN_ADU)
    clean = optimal_extract(stripes.astype(np.float32), prof.astype(np.float32), GAIN, RN_ADU)
    assert opt.rejected[3, 4, 100] and opt.rejected[7, 6, 2000:2003].all()
    assert abs(opt.flux[3, 100] - truth[3, 100]) < 5 / np.sqrt(clean.ivar[3, 100])
    assert opt.rejected.sum() < 0.002 * opt.rejected.size + 4


def test_a_column_with_no_pixel_left_gets_interpolated_flux_and_no_weight():
    rng = np.random.default_rng(14)
    stripes, prof, truth = _noisy_stripes(rng, n_fib=6, star_e=3000.0)
    dead = stripes.copy()
    dead[2, :, 700:705] = 0.0  # a dead column segment across fiber 2's aperture, in the bad-pixel map
    dead[4, :, 0:3] = 0.0  # and one at the start of fiber 4
    bad = np.zeros(stripes.shape, dtype=bool)
    bad[2, :, 700:705] = bad[4, :, 0:3] = True
    bad[1, :10, 300] = True  # ten of eleven rows: still fitted from the one left
    opt = optimal_extract(dead.astype(np.float32), prof.astype(np.float32), GAIN, RN_ADU, bad=bad)
    want = np.zeros(opt.flux.shape, dtype=bool)
    want[2, 700:705] = want[4, 0:3] = True
    np.testing.assert_array_equal(opt.filled, want)
    assert (opt.ivar[want] == 0).all() and (opt.ivar[~want] > 0).all()
    # linear between the fitted columns on either side, the nearest one before the first column
    np.testing.assert_allclose(
        opt.flux[2, 700:705], np.interp(np.arange(700, 705), [699, 705], opt.flux[2, [699, 705]])
    )
    np.testing.assert_array_equal(opt.flux[4, 0:3], opt.flux[4, 3])
    np.testing.assert_allclose(opt.flux[2, 700:705], truth[2, 700:705], rtol=0.1)  # a smooth star: close
    np.testing.assert_allclose(opt.model[2, :, 702], prof[2, :, 702] * opt.flux[2, 702], rtol=1e-6)
    assert opt.flux[2, 702] > 0.5 * truth[2, 702]  # not the zero the fit alone would give


def test_the_reduction_repairs_masked_pixels_and_keeps_cosmic_rays():
    from types import SimpleNamespace

    from drcnet.reduce.extract import repaired_stripes
    from drcnet.reduce.science import extract_spectra

    rng = np.random.default_rng(15)
    stripes, prof, _ = _noisy_stripes(rng, n_fib=3, star_e=2000.0)
    hit = stripes.copy()
    for f in range(3):
        hit[f, 5, 1000] += 3000.0  # a cosmic ray in every fiber's core
    bad = np.zeros(stripes.shape, dtype=bool)
    bad[1, 3, 200] = True  # a mapped bad pixel of fiber 1
    hit[1, 3, 200] = np.nan
    sci = SimpleNamespace(stripes=hit, bad=bad, defect=None, saturated=np.zeros(3, bool))
    out, box, _, opt = extract_spectra(sci, prof.astype(np.float32), GAIN, RN_ADU, 5.0)  # type: ignore[arg-type]
    assert opt.rejected[:, 5, 1000].all()
    assert out[1, 3, 200] == opt.model[1, 3, 200] and np.isfinite(out).all()  # the masked pixel: the fit
    np.testing.assert_array_equal(out[:, 5, 1000], hit[:, 5, 1000])  # the cosmic rays: kept (flag, checks)
    np.testing.assert_allclose(box[1, 200], out[1, :, 200].sum(), rtol=1e-6)  # the boxcar sums the repaired stripe
    # outliers=True (or per fiber) replaces what the fit rejected as well; nothing to replace: the same array
    both = repaired_stripes(hit, opt, bad, outliers=np.array([True, False, True]))
    np.testing.assert_array_equal(both[[0, 2], 5, 1000], opt.model[[0, 2], 5, 1000])
    assert both[1, 5, 1000] == hit[1, 5, 1000] and both[1, 3, 200] == opt.model[1, 3, 200]
    clean = optimal_extract(stripes.astype(np.float32), prof.astype(np.float32), GAIN, RN_ADU)
    assert not clean.rejected.any() and repaired_stripes(stripes, clean, None, outliers=True) is stripes


def test_interpolate_row_gaps_is_numpys_interp_per_row():
    values = np.array([[0.0, 9.0, 9.0, 3.0, 4.0], [5.0, 1.0, 1.0, 1.0, 1.0], [7.0, 7.0, 7.0, 7.0, 7.0]])
    empty = np.array([[False, True, True, False, True], [True, True, True, True, True], [False] * 5])
    got = interpolate_row_gaps(values, empty)
    np.testing.assert_array_equal(got[0], [0.0, 1.0, 2.0, 3.0, 3.0])  # linear inside, the nearest beyond
    np.testing.assert_array_equal(got[1:], values[1:])  # nothing to interpolate from, or nothing missing
    assert values[0, 1] == 9.0  # the input is left alone


def test_extraction_chi2_is_one_for_profile_times_spectrum_and_sees_a_halo():
    rng = np.random.default_rng(13)
    stripes, prof, _ = _noisy_stripes(rng, n_fib=12, star_e=400.0, sky_e=30.0)
    fit = optimal_extract(stripes.astype(np.float32), prof.astype(np.float32), GAIN, RN_ADU)
    chi = extraction_chi2(stripes, fit, GAIN, RN_ADU)
    assert chi.shape == (12, 3)
    np.testing.assert_array_equal(extraction_chi2(stripes, fit, GAIN, RN_ADU, chunk=5), chi)  # chunks: same numbers
    # profile x spectrum + noise: the residual is noise (30,000 dof per stripe: sd 0.008; Poisson, not Gaussian)
    np.testing.assert_allclose(chi[:, 0], 1.0, atol=0.04)
    assert (chi[:, 1] < 1.0).all() and (chi[:, 2] > chi[:, 1]).all()  # the flux is fitted on the core
    # a neighbour's halo: light rising towards one edge that the profile does not describe
    halo = stripes + 4.0 * np.linspace(0.0, 1.0, stripes.shape[1])[None, :, None] ** 2
    fit_h = optimal_extract(halo.astype(np.float32), prof.astype(np.float32), GAIN, RN_ADU)
    chi_h = extraction_chi2(halo, fit_h, GAIN, RN_ADU)
    assert (chi_h[:, 0] > 1.1).all() and (chi_h[:, 2] > chi[:, 2] + 0.3).all()  # 12 sd and more
    # a pixel the mask marks is left out: a dead block does not count, unmasked it does
    dead = stripes.copy()
    dead[:, 2:5, 100:400] = 0.0
    bad = np.zeros(stripes.shape, dtype=bool)
    bad[:, 2:5, 100:400] = True
    fit_d = optimal_extract(dead.astype(np.float32), prof.astype(np.float32), GAIN, RN_ADU, bad=bad)
    np.testing.assert_allclose(extraction_chi2(dead, fit_d, GAIN, RN_ADU, bad=bad)[:, 0], chi[:, 0], atol=0.02)
    assert (extraction_chi2(dead, fit_d, GAIN, RN_ADU)[:, 0] > 1.5).all()
    # whole columns masked fit no flux and cost no degree of freedom; a NaN pixel is left out
    cols = np.zeros(stripes.shape, dtype=bool)
    cols[:, :, :2000] = True  # counting their columns as fitted would give 1.25
    fit_c = optimal_extract(stripes.astype(np.float32), prof.astype(np.float32), GAIN, RN_ADU, bad=cols)
    np.testing.assert_allclose(extraction_chi2(stripes, fit_c, GAIN, RN_ADU, bad=cols)[:, 0], 1.0, atol=0.04)
    nan = stripes.copy()
    nan[0, 5, 50] = np.nan
    fit_n = optimal_extract(nan.astype(np.float32), prof.astype(np.float32), GAIN, RN_ADU)
    assert np.isfinite(extraction_chi2(nan, fit_n, GAIN, RN_ADU)).all()
    with pytest.raises(ValueError, match="odd number of rows >= 11, got 9"):
        extraction_chi2(stripes[:, 1:10], fit, GAIN, RN_ADU)


def test_bias_pattern_is_subtracted_only_when_significant():
    rng = np.random.default_rng(3)
    rows = 400
    pattern = 1.5 * np.sin(np.arange(N_COLS) / 40.0)

    def frames(with_pattern):
        out = []
        for _ in range(5):
            data = np.asarray(CCD.bias_adu)[(np.arange(N_COLS) >= 2048).astype(int)][
                None, :
            ] + RN_ADU * rng.standard_normal((rows, N_COLS))
            if with_pattern:
                data = data + pattern[None, :]
            over = np.asarray(CCD.bias_adu)[None, :, None] + RN_ADU * rng.standard_normal((rows, 2, 32))
            out.append((np.rint(data).astype(np.uint16), np.rint(over).astype(np.uint16)))
        return out

    plain = bias_model(frames(False), detector=DETECTOR)
    assert not plain.applied and plain.chi2 < 1.2
    assert abs(plain.read_noise_adu - np.sqrt(RN_ADU**2 + 1 / 12)) < 0.1
    structured = bias_model(frames(True), detector=DETECTOR)
    assert structured.applied
    assert rms(structured.columns - structured.columns.mean() - (pattern - pattern.mean())) < 0.1
    assert not bias_model([], detector=DETECTOR).applied


def test_master_sky_follows_each_fibers_wavelengths_and_drops_cosmic_rays():
    rng = np.random.default_rng(8)
    x = np.arange(3000.0)

    def sky(w):
        return 200 + 3000 * np.exp(-0.5 * ((w - 6300.0) / 2.5) ** 2) + 1500 * np.exp(-0.5 * ((w - 6864.0) / 2.5) ** 2)

    def wave(shift):
        return 6000.0 + 0.84 * (x - shift)

    sky_shift = rng.uniform(-1.5, 1.5, 20)
    sky_w = np.stack([wave(s) for s in sky_shift])
    eff_sky = rng.uniform(0.9, 1.1, (20, 1)) * np.ones((20, 3000))
    flux = np.stack([sky(w) for w in sky_w]) * eff_sky
    flux[4, 500:503] += 5000.0  # a cosmic ray in one sky fiber
    tgt_w = np.stack([wave(s) for s in (-1.2, 0.0, 0.7)])
    tgt_eff = np.array([[0.95], [1.0], [1.05]]) * np.ones((3, 3000))
    got = master_sky(flux, sky_w, eff_sky, tgt_w, tgt_eff)
    want = np.stack([sky(w) for w in tgt_w]) * tgt_eff
    assert np.abs(got - want).max() < 0.03 * want.max()
    assert np.abs(got[:, 480:520] - want[:, 480:520]).max() < 2.0


@pytest.mark.slow
def test_traces_agree_with_specreduce_fittrace(tmp_path_factory, data_root):
    """Our vectorised tracing and specreduce's FitTrace (Gaussian peaks in 64 bins, cubic) on the same flat."""
    import warnings

    from astropy.modeling import models
    from specreduce.tracing import FitTrace

    folder = full_exposure(tmp_path_factory, data_root)
    frame = read_raw_frame(one(folder, "rf-01r-*.fit"))
    net = net_image(frame.data, levels(frame.overscan), 2048)
    ours = trace_fibers(net, 250, INST.fiber, u0=U0)
    truth = read_truth_geometries(one(folder, "truth-*.h5"), "red")
    for f in (10, 125, 240):
        centre = ours.centres(np.array([2047.5]))[f, 0]
        lo = int(round(centre)) - 9
        sub = net[lo : lo + 19].astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = FitTrace(
                sub, bins=64, guess=9, window=8, peak_method="gaussian", trace_model=models.Polynomial1D(degree=3)
            )
        theirs = np.asarray(fit.trace)[COLS] + lo
        mine = ours.centres(COLS)[f]
        true = truth[f].trace(COLS)
        print(
            f"fiber {f + 1}: ours-specreduce rms {rms(mine - theirs):.4f} px, ours-truth {rms(mine - true):.4f}, "
            f"specreduce-truth {rms(theirs - true):.4f}"
        )
        assert rms(mine - theirs) < 0.05
        assert rms(mine - true) <= rms(theirs - true) + 0.01
    assert net.shape[0] == N_ROWS
