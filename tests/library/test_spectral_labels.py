"""drcnet.library.spectral_labels: the common grid, continuum normalisation and the two labellers."""

from __future__ import annotations

import numpy as np
import pytest

from drcnet.library import spectral_labels as sl
from drcnet.library.template import Template


def _template(wave, flux, cls="G", subclass="G2", library="miles", **meta) -> Template:
    return Template(
        wave=np.asarray(wave, float),
        flux=np.asarray(flux, float),
        mask=np.ones(len(wave), bool),
        cls=cls,
        subclass=subclass,
        library=library,
        source_id=f"{subclass}-{len(meta)}",
        meta=meta,
    )


def _line_spectrum(centres_depths, sigma_a=3.0, slope=0.0, n=8000):
    wave = np.linspace(3600.0, 9200.0, n)
    flux = 1.0 + slope * (wave - 6000.0) / 1000.0
    for c, d in centres_depths:
        flux = flux * (1.0 - d * np.exp(-0.5 * ((wave - c) / sigma_a) ** 2))
    return wave, flux


def test_grid_is_lamost_log_pixel_and_halpha_lands_on_its_pixel():
    assert sl.GRID_WAVE[0] == pytest.approx(3800.0)
    assert np.allclose(np.diff(np.log10(sl.GRID_WAVE)), 1e-4)
    wave, flux = _line_spectrum([(6564.6, 0.5)], sigma_a=2.0)
    x = sl.prepare(_template(wave, flux), "norm")
    expected = int(round(np.log10(6564.6 / 3800.0) / 1e-4))  # 2374
    assert int(np.argmin(x)) == expected == 2374
    # a LAMOST spectrum in the observed frame is moved to rest by its redshift (z = 1e-3: ~6.6 A, 4.3 px)
    lam = _template(wave * (1 + 1e-3), flux, library="lamost", z=1e-3)
    assert int(np.argmin(sl.prepare(lam, "norm"))) == expected


def test_continuum_normalisation_of_flat_and_sloped_continuum_with_one_line():
    # an unresolved-ish line: sigma 8 A (broader than LAMOST's ~1.5 A sigma, so the depth survives smoothing)
    for slope in (0.0, 0.3):
        wave, flux = _line_spectrum([(5500.0, 0.4)], sigma_a=8.0, slope=slope)
        x = sl.prepare(_template(wave, flux), "norm")
        off = (np.abs(sl.GRID_WAVE - 5500.0) > 60) & sl.GRID_USE
        assert np.median(np.abs(x[off] - 1.0)) < 0.002
        assert np.max(np.abs(x[off] - 1.0)) < 0.02
        i = int(np.argmin(np.abs(sl.GRID_WAVE - 5500.0)))
        assert x[i] == pytest.approx(0.6, abs=0.02)  # depth 0.4, barely broadened by R = 1800
    # the flux representation keeps the slope and has median 1
    wave, flux = _line_spectrum([], slope=0.3)
    xf = sl.prepare(_template(wave, flux), "flux")
    assert np.median(xf[sl.GRID_USE]) == pytest.approx(1.0, abs=1e-3)
    assert xf[-1] / xf[0] == pytest.approx((1 + 0.3 * 2.9) / (1 - 0.3 * 2.2), rel=0.02)


def test_prepare_smooths_a_sharp_library_line_to_lamost_resolution():
    # a MILES-like (2.5 A FWHM) narrow line gets broader on the grid than a LAMOST one of the same width
    wave, flux = _line_spectrum([(5000.0, 0.5)], sigma_a=2.5 / 2.3548, n=40000)
    mil = sl.prepare(_template(wave, flux, library="miles"), "norm")
    lam = sl.prepare(_template(wave, flux, library="lamost", z=0.0), "norm")
    assert mil.min() > lam.min() + 0.02  # shallower: convolved to R = 1,800
    with pytest.raises(ValueError, match="representation"):
        sl.prepare(_template(wave, flux), "raw")  # type: ignore[arg-type]


def test_native_resolution_table_matches_the_simulators():
    from drcnet.simulate.spectra import NATIVE_RESOLUTION

    assert sl.NATIVE_RESOLUTION == NATIVE_RESOLUTION


def _two_class_set(rng, n_per=12, noise=0.02):
    """Class F: strong Balmer-like line at 4862 A; class G: strong metal-like line at 5175 A."""
    out = []
    for cls, sub, lines in (("F", "F5", [(4862.7, 0.5), (5175.0, 0.05)]), ("G", "G5", [(4862.7, 0.1), (5175.0, 0.4)])):
        wave, flux = _line_spectrum(lines, sigma_a=4.0, n=6000)
        for k in range(n_per):
            f = flux * (1 + noise * rng.standard_normal(flux.size))
            out.append(
                Template(
                    wave=wave,
                    flux=f,
                    mask=np.ones(wave.size, bool),
                    cls=cls,
                    subclass=sub,
                    library="lamost",
                    source_id=f"{sub}-{k}",
                    meta={"z": 0.0},
                )
            )
    return out


def test_template_match_classifies_noisy_copies():
    rng = np.random.default_rng(1)
    train = _two_class_set(rng, 5)
    test = _two_class_set(rng, 6, noise=0.1)
    lab = sl.TemplateMatchLabeller("norm").fit(train)
    assert lab.subclasses == ["F5", "G5"]
    pred = lab.predict(test)
    assert [p.cls for p in pred] == [t.cls for t in test]
    assert all(p.margin > 0 and p.labeller == "template_match/norm" for p in pred)
    assert sum(pred[0].class_scores.values()) == pytest.approx(1.0)
    assert sl.subclass_index("F9") + 1 == sl.subclass_index("G0")


def test_cnn_labeller_learns_and_is_deterministic():
    pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    train = _two_class_set(rng, 10)
    test = _two_class_set(rng, 4, noise=0.05)
    x_train = sl.prepare_many(train, "norm")
    x_test = sl.prepare_many(test, "norm")
    runs = []
    for _ in range(2):
        lab = sl.CnnLabeller("norm", epochs=8, batch_size=8, seed=3).fit(train, x_train)
        runs.append(lab.subclass_probabilities(x_test))
    assert np.array_equal(runs[0], runs[1])
    pred = lab.predict(test, x_test)
    assert np.mean([p.cls == t.cls for p, t in zip(pred, test)]) >= 0.85
    assert all(0.0 <= p.margin <= 1.0 for p in pred)


def test_spectral_relabel_trusts_the_spectrum_inside_the_real_stars_region_only():
    from drcnet.library.labels import SPECTRAL_MIN_MARGIN, LamostLabelMap, spectral_relabel

    # reference stars: a cloud of LAMOST "F9" stars at 5,650 K, log g 4.2, [Fe/H] 0 (the vote says F there)
    rng = np.random.default_rng(0)
    pts = np.stack(
        [LamostLabelMap.scale(5650 + 50 * a, 4.2 + 0.1 * b, 0.1 * c) for a, b, c in rng.normal(size=(20, 3))]
    )
    vote = LamostLabelMap(pts, ["F"] * 20, ["F9"] * 20)
    wave, flux = _line_spectrum([(5500.0, 0.3)])

    def star(teff):
        t = _template(wave, flux, cls="G", subclass="G3")
        from dataclasses import replace

        return replace(t, teff=teff, logg=4.2, feh=0.0)

    says_g = sl.SpectralLabel("G", "G2", 0.8, {"F": 0.1, "G": 0.9}, "cnn/norm")
    t = spectral_relabel(star(5650.0), says_g, vote)
    assert (t.cls, t.subclass, t.meta["label_source"], t.meta["label_margin"]) == ("G", "G2", "cnn/norm", 0.8)
    assert t.meta["mk_class"] == "G"
    # a margin under the threshold: ambiguous, left out of every class
    unsure = sl.SpectralLabel("F", "F9", SPECTRAL_MIN_MARGIN - 0.01, {"F": 0.645, "G": 0.355}, "cnn/norm")
    t = spectral_relabel(star(5650.0), unsure, vote)
    assert (t.cls, t.subclass, t.meta["label_source"]) == ("", "", "ambiguous")
    # outside the real stars' region (a 4,300 K star: no 7 reference stars within 1.5 units) the MK class stays
    t = spectral_relabel(star(4300.0), says_g, vote)
    assert (t.cls, t.subclass, t.meta["label_source"]) == ("G", "G3", "mk")
    # no spectral label (spectrum off the grid): the parameter vote decides
    t = spectral_relabel(star(5650.0), None, vote)
    assert (t.cls, t.subclass, t.meta["label_source"]) == ("F", "F9", "lamost_knn")
