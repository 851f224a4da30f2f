"""Physics of the forward model: line positions, sky lines, S/N, fidelity to the template."""

from __future__ import annotations

import numpy as np
import pytest

from drcnet.instrument import InstrumentConfig
from drcnet.library import load_templates
from drcnet.library.template import Template
from drcnet.reduce.snr import measure_snr_r
from drcnet.simulate.optics import column_of, wavelength
from drcnet.simulate.render import ForwardModel, Source
from drcnet.simulate.site import Site
from drcnet.simulate.spectra import C_KM_S

# vacuum wavelengths (A)
LINES = {
    "blue": {"Ca II K": 3934.78, "Ca II H": 3969.59, "H-beta": 4862.68, "Mg b1": 5185.05, "Na D2": 5891.58},
    "red": {"H-alpha": 6564.61, "Ca II 8542": 8544.44},
}
ALL_COLS = np.arange(0, 4096)


def _synthetic_template() -> Template:
    """Flat continuum with narrow Gaussian absorption lines at the lab wavelengths: an analytic truth."""
    wave = np.arange(3500.0, 9300.0, 0.1)
    flux = np.ones_like(wave)
    for arm in LINES.values():
        for w in arm.values():
            flux -= 0.6 * np.exp(-0.5 * ((wave - w) / 0.4) ** 2)
    return Template(wave, flux, np.ones(wave.size, bool), "G", "G2", library="synthetic", source_id="lines")


@pytest.fixture(scope="module")
def instrument() -> InstrumentConfig:
    return InstrumentConfig()


@pytest.fixture(scope="module")
def site(instrument, data_root) -> Site:
    return Site.load(instrument, data_root)


@pytest.fixture(scope="module")
def line_model(instrument, site) -> ForwardModel:
    return ForwardModel(instrument, site, [_synthetic_template()])


@pytest.fixture(scope="module")
def pyhammer_model(instrument, site, data_root) -> ForwardModel:
    lib = data_root / "spectral_libraries" / "pyhammer"
    files = [lib / "F5_+0.0_Dwarf.fits.gz", lib / "G2_+0.0_Dwarf.fits.gz", lib / "K3_+0.0_Dwarf.fits.gz"]
    return ForwardModel(instrument, site, load_templates(files).templates)


def _centroid(y: np.ndarray, guess: float, half: int = 4, emission: bool = False) -> float:
    """Line centre (pixels) by a parabola through the three pixels around the extremum near ``guess``."""
    lo = int(round(guess)) - half
    seg = y[lo : lo + 2 * half + 1]
    k = int(np.argmax(seg) if emission else np.argmin(seg))
    a, b, c = seg[k - 1], seg[k], seg[k + 1]
    return lo + k + 0.5 * (a - c) / (a - 2 * b + c)


@pytest.mark.parametrize("rv", [0.0, 60.0])
def test_absorption_lines_land_on_predicted_pixels(line_model, instrument, rv):
    rng = np.random.default_rng(3)
    res = line_model.render_object(Source(0, rv_kms=rv, airmass=1.0), fiber=30, rng=rng, snr_target=400, cols=ALL_COLS)
    for a, arm in enumerate(instrument.arms):
        r = res.arms[a]
        spec = r.flux1d - r.sky1d
        for name, lab in LINES[arm.name].items():
            expected = column_of(arm, lab * (1 + rv / C_KM_S), r.geometry.shift_px)
            got = _centroid(spec, expected)
            assert abs(got - expected) < 0.5, f"{arm.name} {name}: line at {got:.2f}, solution says {expected:.2f}"


def test_wavelength_solution_inverts(instrument):
    for arm in instrument.arms:
        for shift in (-1.3, 0.0, 0.8):
            cols = np.array([10.0, 1000.0, 2047.5, 3900.0])
            back = [column_of(arm, w, shift) for w in wavelength(arm, cols, shift)]
            np.testing.assert_allclose(back, cols, atol=1e-6)
    # the stripe's columns 500..3499 cover Ca II H&K to 5600 A (blue) and H-alpha to the Ca triplet (red)
    blue = wavelength(instrument.blue, np.array([500, 3499]))
    red = wavelength(instrument.red, np.array([500, 3499]))
    assert 3900 < blue[0] < 3930 and 5600 < blue[1] < 5650
    assert 6000 < red[0] < 6050 and 8520 < red[1] < 8560


@pytest.mark.parametrize(("arm_index", "line"), [(0, 5578.89), (1, 6302.05), (1, 6365.54)])
def test_sky_emission_lines_land_where_they_should(line_model, instrument, arm_index, line):
    rng = np.random.default_rng(11)
    # a star far too faint to matter: what is left is the sky
    res = line_model.render_object(Source(0, mag_r=30.0), fiber=200, rng=rng, cols=ALL_COLS)
    r = res.arms[arm_index]
    arm = instrument.arms[arm_index]
    expected = column_of(arm, line, r.geometry.shift_px)
    got = _centroid(r.flux1d, expected, emission=True)
    assert abs(got - expected) < 0.5, f"[O I] {line}: peak at {got:.2f}, expected {expected:.2f}"


@pytest.mark.parametrize("target", [5.0, 10.0, 20.0, 40.0, 80.0])
def test_measured_snr_tracks_requested(pyhammer_model, target):
    rng = np.random.default_rng(int(target))
    measured = []
    for i in range(12):
        res = pyhammer_model.render_object(
            Source(i % 3, rv_kms=10.0, ebv=0.05),
            fiber=20 * i,
            rng=rng,
            snr_target=target,
            neighbours=(Source(1, mag_r=16.0), None),
        )
        r = res.arms[1]
        assert res.snr_r == pytest.approx(measure_snr_r(r.flux1d, r.sky1d, r.ivar1d, r.wave))
        measured.append(res.snr_r)
    ratio = np.median(measured) / target
    assert 0.85 < ratio < 1.15, f"median measured S/N_r {np.median(measured):.2f} for a requested {target}"
    if target >= 10:
        assert np.all(np.abs(np.array(measured) / target - 1) < 0.15), measured


def test_brighter_star_needs_no_more_than_magnitude(pyhammer_model):
    """S/N is set by the magnitude: the solved magnitudes fall as the requested S/N rises."""
    mags = [
        pyhammer_model.render_object(Source(1), 100, np.random.default_rng(0), snr_target=s).source.mag_r
        for s in (5, 20, 80)
    ]
    assert mags[0] > mags[1] > mags[2]
    assert 16.0 < mags[1] < 19.5  # LAMOST reaches S/N ~ 20 near r ~ 17-18 in one exposure


def _continuum_normalised(obs: np.ndarray, truth: np.ndarray, wave: np.ndarray, good: np.ndarray):
    """Divide out the smooth instrument response (a degree-5 fit of obs/truth), then both by the truth's continuum.

    Only smooth shapes are removed (throughput, extinction, reddening), so the
    correlation that follows is carried by the lines.
    """
    from scipy.ndimage import percentile_filter, uniform_filter1d

    x = (wave - wave.mean()) / np.ptp(wave)
    response = np.polyval(np.polyfit(x[good], (obs / truth)[good], 5), x)
    cont = uniform_filter1d(percentile_filter(truth, 90, size=151, mode="nearest"), 151, mode="nearest")
    return obs / response / cont, truth / cont


@pytest.fixture(scope="module")
def flat_fielded_model(pyhammer_model) -> ForwardModel:
    """The same templates on a CCD without pixel-response variations (a perfectly flat-fielded frame).

    Raw stripes keep the 1 % pixel response pattern, which alone limits a raw
    extraction to ~0.5 % per column; the fidelity test looks through it.
    """
    inst = pyhammer_model.instrument
    flat = inst.model_copy(update={"ccd": inst.ccd.model_copy(update={"prnu_rms": 0.0})})
    return ForwardModel(flat, pyhammer_model.site, pyhammer_model.templates)


@pytest.mark.parametrize("template", [0, 1, 2])
def test_high_snr_extraction_matches_template(flat_fielded_model, instrument, template):
    rng = np.random.default_rng(template)
    res = flat_fielded_model.render_object(
        Source(template, rv_kms=25.0, ebv=0.1, airmass=1.0), fiber=125, rng=rng, snr_target=500
    )
    assert res.flags == 0 or res.flags & 0x20  # not saturated (cosmic-ray hits allowed)
    prepared = flat_fielded_model.prepared[template]
    for a, arm in enumerate(instrument.arms):
        r = res.arms[a]
        truth = prepared.at(r.wave, 25.0)
        obs = r.flux1d - r.sky1d
        good = np.ones(obs.size, bool)
        if arm.name == "red":  # the O2 bands are in the observation, not in the template
            for lo, hi in ((6855.0, 6970.0), (7580.0, 7720.0)):
                good &= ~((r.wave > lo) & (r.wave < hi))
        norm_obs, norm_truth = _continuum_normalised(obs, truth, r.wave, good)
        rho = np.corrcoef(norm_obs[good], norm_truth[good])[0, 1]
        assert rho >= 0.98, f"{arm.name}: correlation {rho:.4f}"


def test_optimal_extraction_uses_the_fibers_profile_over_the_stripe(pyhammer_model, instrument):
    """Each arm's ``flux1d_opt`` is the Horne extraction of its stripe with the fiber's own profile over the
    stripe's rows, each column normalised to 1: without neighbours it is on the boxcar's scale, and it is
    the reduction's :func:`~drcnet.reduce.extract.optimal_extract` with that profile, number for number."""
    from drcnet.conventions import STRIPE_HALF_ROWS, stripe_columns
    from drcnet.reduce.extract import optimal_extract
    from drcnet.simulate.ccd import stripe_rows

    rng = np.random.default_rng(5)
    res = pyhammer_model.render_object(Source(1, rv_kms=10.0), fiber=77, rng=rng, snr_target=200)
    cols = stripe_columns()
    for r in res.arms:
        trace = r.geometry.trace(cols)
        rows = stripe_rows(trace, STRIPE_HALF_ROWS)
        prof = pyhammer_model.profile.stripe(rows[0], rows.shape[0], trace)
        prof = prof / prof.sum(axis=0, keepdims=True)
        ccd = instrument.ccd
        ref = optimal_extract(r.stripe[None], prof[None], ccd.gain_e_per_adu, ccd.read_noise_e / ccd.gain_e_per_adu)
        np.testing.assert_array_equal(r.flux1d_opt, ref.flux[0])
        np.testing.assert_array_equal(r.ivar1d_opt, ref.ivar[0])
        # the same light as the aperture sum (no neighbours): the star's flux within 1 % per arm
        ratio = np.median((r.flux1d_opt - r.sky1d) / (r.flux1d - r.sky1d))
        assert ratio == pytest.approx(1.0, abs=0.01), ratio
        assert np.median(r.ivar1d_opt / r.ivar1d) >= 1.0  # profile weighting never loses information


def test_optimal_extraction_rejects_the_cosmic_rays_the_boxcar_keeps(pyhammer_model):
    """Two renders of one star at S/N_r ~7 (their difference holds only noise): the optimal spectrum's
    Gaussian noise is the boxcar's within 1 % (the profile fills the 11-row aperture, so weighting gains
    little), but the cosmic-ray hits inside the aperture, which the boxcar sums, are rejected: the full
    scatter of the difference falls by more than a third."""
    from drcnet.conventions import FLAG_BITS

    rng = np.random.default_rng(11)
    results = [pyhammer_model.render_object(Source(2, mag_r=19.0), fiber=150, rng=rng) for _ in range(2)]
    assert all(r.flags & FLAG_BITS["cosmic_ray"] for r in results)
    assert all(5 < r.snr_r < 10 for r in results)
    box = [r.arms[1].flux1d - r.arms[1].sky1d for r in results]
    opt = [r.arms[1].flux1d_opt - r.arms[1].sky1d for r in results]

    def robust_sd(x: np.ndarray) -> float:
        return float(1.4826 * np.median(np.abs(x - np.median(x))))

    assert robust_sd(opt[0] - opt[1]) == pytest.approx(robust_sd(box[0] - box[1]), rel=0.01)
    assert np.std(opt[0] - opt[1]) < 0.65 * np.std(box[0] - box[1])
