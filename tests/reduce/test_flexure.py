"""Re-centring the flat's profile on the science light (drcnet.reduce.flexure)."""

from __future__ import annotations

import numpy as np
import pytest

from drcnet.reduce.extract import optimal_extract
from drcnet.reduce.flexure import MIN_SHIFT_PX, measure_profile_shift, recentre_profile, shift_profile

ROWS = np.arange(11.0)[:, None]
COLS = np.arange(3000)
SIGMA = 2.55  # the flat's profile: a 6 px FWHM Gaussian


def gaussian_profile(centre: float, tilt: float = 0.0) -> np.ndarray:
    """``(11, 3000)`` a Gaussian profile about ``centre`` (+ ``tilt`` rows per column), columns summing to 1."""
    g = np.exp(-0.5 * ((ROWS - centre - tilt * (COLS - 1500)) / SIGMA) ** 2)
    return g / g.sum(axis=0)


def science(offset: float, rng: np.random.Generator, level: float = 2000.0, noise: float = 20.0) -> np.ndarray:
    """A stripe whose light sits ``offset`` rows from the flat's centre (row 5), with continuum shape and noise."""
    flux = level * (1.0 + 0.3 * np.sin(COLS / 50.0))
    return flux * gaussian_profile(5.0 + offset, tilt=3e-4) + rng.normal(0.0, noise, (11, COLS.size))


def test_shift_profile_moves_a_profile_onto_the_shifted_one() -> None:
    flat = gaussian_profile(5.0)[None]
    moved = shift_profile(flat, np.array([1.0]))
    np.testing.assert_allclose(moved[0, 1:], gaussian_profile(6.0)[1:] / gaussian_profile(6.0)[1:].sum(0), atol=1e-12)
    np.testing.assert_allclose(moved.sum(axis=1), 1.0)
    assert moved[0, 0].max() == 0.0  # row 0 would read row -1: not known
    # a whole-pixel shift and back is the identity on the rows both keep
    back = shift_profile(moved, np.array([-1.0]))
    np.testing.assert_allclose(back[0, :-1] / back[0, :-1].sum(0), flat[0, :-1] / flat[0, :-1].sum(0), atol=1e-12)
    with pytest.raises(ValueError, match="2 shifts for 1 fibers"):
        shift_profile(flat, np.array([0.0, 1.0]))


@pytest.mark.parametrize("offset", [0.0, 0.4, -1.5, 2.2])
def test_measured_shift_is_the_offset_of_the_light(offset: float) -> None:
    rng = np.random.default_rng(3)
    shift = measure_profile_shift(science(offset, rng)[None], gaussian_profile(5.0, tilt=3e-4)[None])
    assert shift.shape == (1,)
    assert shift[0] == pytest.approx(offset, abs=0.05)


def test_cosmic_rays_and_bad_pixels_do_not_move_the_measurement() -> None:
    rng = np.random.default_rng(4)
    stripe = science(-1.5, rng)
    hits = rng.choice(stripe.size, 300, replace=False)
    stripe.flat[hits] += 5e4  # cosmic rays: 1 % of the pixels, 25x the peak
    bad = np.zeros(stripe.shape, dtype=bool)
    bad[:, 100:160] = True
    stripe[bad] = -1e4  # a dead column block, marked bad
    shift = measure_profile_shift(stripe[None], gaussian_profile(5.0, tilt=3e-4)[None], bad[None])
    assert shift[0] == pytest.approx(-1.5, abs=0.05)


def test_recentre_keeps_small_shifts_and_fixes_large_ones() -> None:
    rng = np.random.default_rng(5)
    flat = np.stack([gaussian_profile(5.0, tilt=3e-4)] * 3)
    stripes = np.stack([science(0.1, rng), science(-1.5, rng), np.zeros((11, COLS.size))])
    profile, shift = recentre_profile(stripes, flat)
    assert shift[0] == pytest.approx(0.1, abs=0.05) and abs(shift[0]) < MIN_SHIFT_PX
    assert shift[2] == 0.0  # no light: nothing measured
    np.testing.assert_array_equal(profile[[0, 2]], flat[[0, 2]])  # the flat's own numbers
    assert profile.dtype == flat.dtype
    # the mis-traced fiber: its optimal flux comes back to the true flux, the flat's profile loses a lot
    truth = 2000.0 * (1.0 + 0.3 * np.sin(COLS / 50.0))
    kw = {"gain": 1.0, "read_noise_adu": 20.0}
    on_flat = optimal_extract(stripes[1:2], flat[1:2], **kw).flux[0]
    recentred = optimal_extract(stripes[1:2], profile[1:2], **kw).flux[0]
    assert np.median(recentred / truth) == pytest.approx(1.0, abs=0.03)
    assert np.median(on_flat / truth) < 0.9


def test_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match=r"stripes \(1, 11, 10\) and profile \(1, 11, 9\)"):
        measure_profile_shift(np.zeros((1, 11, 10)), np.zeros((1, 11, 9)))


class _Sky:
    """The interface of ``simulate.spectra.TabulatedSpectrum`` that the renderer uses: a faint flat sky."""

    def at(self, wave: np.ndarray, rv_kms: float = 0.0, fill: float = 0.0) -> np.ndarray:
        return np.full_like(wave, 1e-3)

    def at_ln(self, ln_wave: np.ndarray, rv_kms: float = 0.0, fill: float = 0.0) -> np.ndarray:
        return np.full_like(ln_wave, 1e-3)


class _Site:
    """The interface of ``simulate.site.Site`` that the renderer uses: no extinction."""

    sky = _Sky()

    def extinction(self, wave: np.ndarray, airmass: float, ln_wave: np.ndarray | None = None) -> np.ndarray:
        return np.ones_like(wave)


@pytest.mark.parametrize("offset", [0.0, 1.5])
def test_forward_model_optimal_spectrum_keeps_the_light_of_a_mis_traced_stripe(offset: float) -> None:
    """A stripe cut 1.5 px off the light: the stored optimal spectrum stays on the boxcar's scale, while the same
    render extracted on the profile about the wrong trace (what was stored before) keeps 0.82 of it; on a
    stripe cut on the light the two extractions agree."""
    from drcnet.instrument import InstrumentConfig
    from drcnet.library.template import Template
    from drcnet.simulate.ccd import stripe_rows
    from drcnet.simulate.randomize import DomainRandomization, RandomizedForwardModel
    from drcnet.simulate.render import Source

    w = np.linspace(3600.0, 9200.0, 6000)
    star = Template(w, 1e-16 * np.ones_like(w), np.ones(w.size, bool), "G", "G2", "lamost", "flat", "flat.fits")
    fixed = {
        "throughput_amplitude": 0.0,
        "sky_level": (1.0, 1.0),
        "sky_line_scale": (1.0, 1.0),
        "profile_fwhm_px": (6.0, 6.0),
        "trace_offset_px": (offset, offset),
        "wave_offset_px": (0.0, 0.0),
        "scattered_fraction": (0.0, 0.0),
    }
    model = RandomizedForwardModel(InstrumentConfig(), _Site(), [star], DomainRandomization(**fixed))  # type: ignore[arg-type]
    res = model.render_object(Source(0), 120, np.random.default_rng(2), snr_target=60.0)
    red = res.arms[1]
    assert red.flux1d_opt is not None
    assert np.median(red.flux1d_opt / red.flux1d) == pytest.approx(1.0, abs=0.03)
    ccd = model.instrument.ccd
    cols = np.arange(500, 3500)
    flat = model._extraction_profile(red.geometry, stripe_rows(red.geometry.trace(cols), 5), cols)[None]
    on_flat = optimal_extract(red.stripe[None], flat, ccd.gain_e_per_adu, ccd.read_noise_e / ccd.gain_e_per_adu)
    ratio = np.median(on_flat.flux[0] / red.flux1d)
    assert ratio == pytest.approx(1.0, abs=0.03) if offset == 0.0 else ratio < 0.9


def test_reduction_reports_the_shift_and_extracts_on_the_recentred_profile() -> None:
    from types import SimpleNamespace

    from drcnet.reduce.science import extract_spectra

    rng = np.random.default_rng(6)
    stripes = np.stack([science(0.0, rng), science(-1.5, rng)]).astype(np.float32)
    flat = np.stack([gaussian_profile(5.0, tilt=3e-4)] * 2).astype(np.float32)
    sci = SimpleNamespace(stripes=stripes, bad=np.zeros(stripes.shape, bool), defect=None, saturated=np.zeros(2, bool))
    _, boxcar_flux, _, opt = extract_spectra(sci, flat, gain=1.0, read_noise_adu=20.0, clip_sigma=5.0)  # type: ignore[arg-type]
    assert opt.profile_shift is not None
    np.testing.assert_allclose(opt.profile_shift, [0.0, -1.5], atol=0.05)
    truth = 2000.0 * (1.0 + 0.3 * np.sin(COLS / 50.0))
    assert np.median(opt.flux / truth, axis=1) == pytest.approx([1.0, 1.0], abs=0.03)


def test_a_fiber_with_no_good_pixel_gives_no_shift_and_no_warning() -> None:
    import warnings

    rng = np.random.default_rng(7)
    stripes = np.stack([science(1.0, rng), np.full((11, COLS.size), np.nan)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shift = measure_profile_shift(stripes, np.stack([gaussian_profile(5.0)] * 2))
    assert shift[0] == pytest.approx(1.0, abs=0.05) and shift[1] == 0.0


def test_outshone_marks_fibers_next_to_a_much_brighter_one_and_keep_is_obeyed() -> None:
    from drcnet.reduce.flexure import adjacent, outshone

    levels = np.array([100.0, 5.0, 2000.0, 150.0, np.nan, 1.0])
    # fiber 4 has no light of its own (NaN): any lit neighbour outshines it
    np.testing.assert_array_equal(outshone(levels, ratio=10.0), [False, True, False, True, True, False])
    np.testing.assert_array_equal(outshone(levels), [False, True, False, False, True, False])  # 100 x
    np.testing.assert_array_equal(adjacent(np.array([0, 0, 1, 0, 0, 1], bool)), [0, 1, 0, 1, 1, 0])
    rng = np.random.default_rng(8)
    stripes = np.stack([science(-1.5, rng), science(-1.5, rng)])
    flat = np.stack([gaussian_profile(5.0, tilt=3e-4)] * 2)
    profile, shift = recentre_profile(stripes, flat, keep=np.array([True, False]))
    np.testing.assert_allclose(shift, [-1.5, -1.5], atol=0.05)
    np.testing.assert_array_equal(profile[0], flat[0])
    assert not np.array_equal(profile[1], flat[1])
