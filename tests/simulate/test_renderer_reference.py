"""The vectorised renderer gives the same data as the plain one (issue 11).

``ReferenceForwardModel`` below is the forward model as it was before the speed work (per-call
profile look-ups, the aperture fraction computed separately, a 32-point grid per round for the
S/N scale, per-object packing): kept here verbatim as the reference. Same seed -> identical stripes,
1D spectra, S/N_r and parameters (bit for bit), for the nominal and the domain-randomised model.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from drcnet.conventions import FLAG_BITS, STRIPE_HALF_ROWS, stripe_columns
from drcnet.instrument.config import N_FIBERS, InstrumentConfig
from drcnet.reduce.calib import amplifier_of
from drcnet.reduce.extract import boxcar_extract, optimal_extract
from drcnet.reduce.flexure import recentre_profile
from drcnet.reduce.snr import measure_snr_r
from drcnet.simulate.ccd import (
    overscan_level,
    read_overscan,
    stripe_rows,
    subtract_overscan,
)
from drcnet.simulate.cosmics import draw_cosmic_rays
from drcnet.simulate.optics import (
    arm_throughput,
    dispersion,
    fiber_geometries,
    wavelength,
)
from drcnet.simulate.render import (
    ArmResult,
    ForwardModel,
    ObjectResult,
    Source,
    _outshone,
    expected_snr,
)


# -- the reference: the renderer before the speed work ------------------------------------------------
def ref_profile(table, rows: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """``ProfileTable.__call__`` as it was."""
    base = np.floor(centre)
    pos = (centre - base) * table.oversample
    j = np.minimum(pos.astype(np.intp), table.oversample - 1)
    w = pos - j
    rows = np.asarray(rows, dtype=np.intp)
    m = (rows[:, None] if rows.ndim == 1 else rows) - base.astype(np.intp)[None, :]
    outside = np.abs(m) > table.reach
    k = np.clip(m, -table.reach, table.reach) + table.reach + 1
    t = table.table
    out = t[k, j[None, :]] * (1.0 - w[None, :]) + t[k, j[None, :] + 1] * w[None, :]
    out[outside] = 0.0
    return out


def ref_spread_light(rows, cols, fibers, profile):
    rows = np.asarray(rows)
    image = np.zeros((rows.shape[0], cols.size))
    lo, hi = rows.min(), rows.max()
    for geom, electrons in fibers:
        centre = geom.trace(cols)
        if centre.max() + profile.reach < lo or centre.min() - profile.reach > hi:
            continue
        image += electrons[None, :] * ref_profile(profile, rows, centre)
    return image


def ref_add_cosmic_rays(electrons, ccd, exposure_s, rng):
    rays = draw_cosmic_rays(electrons.shape, ccd, exposure_s, rng, per_event=True)
    np.add.at(electrons, (rays.rows, rays.cols), rays.charge_e)
    hit = np.zeros(electrons.shape, dtype=bool)
    hit[rays.rows, rays.cols] = True
    return hit


def ref_read_out(expected_e, cols, ccd, exposure_s, rng):
    prnu = 1.0 + ccd.prnu_rms * rng.standard_normal(expected_e.shape, dtype=np.float32)
    mean_e = expected_e * prnu + ccd.dark_e_per_s * exposure_s
    electrons = rng.poisson(np.clip(mean_e, 0, None)).astype(np.float64)
    cosmic = ref_add_cosmic_rays(electrons, ccd, exposure_s, rng)
    bias = np.asarray(ccd.bias_adu)[amplifier_of(cols, 2048)][None, :]
    rn_adu = ccd.read_noise_e / ccd.gain_e_per_adu
    adu = electrons / ccd.gain_e_per_adu + bias + rn_adu * rng.standard_normal(electrons.shape, dtype=np.float32)
    raw = np.clip(np.rint(adu), 0, ccd.adc_max).astype(np.uint16)
    return raw, cosmic


def ref_at(spec, wave, rv_kms=0.0, fill=0.0):
    pos = (np.log(wave) - math.log1p(rv_kms / 299792.458) - spec.ln_start) / spec.ln_step
    return np.interp(pos, np.arange(spec.flux.size, dtype=float), spec.flux, left=fill, right=fill)


def ref_extinction(site, wave, airmass):
    mag = np.interp(wave, site.ext_wave, site.ext_mag)
    t_o2 = np.clip(ref_at(site.telluric, wave, fill=1.0), 1e-6, 1.0)
    return 10 ** (-0.4 * mag * airmass) * t_o2**airmass


class ReferenceForwardModel(ForwardModel):
    """The nominal forward model before the speed work: its methods verbatim."""

    def fiber_electrons(self, arm, geom, cols, source, sky_scale=1.0):
        wave = wavelength(arm, cols, geom.shift_px)
        common = (
            (self._photons_to_e * geom.throughput)
            * arm_throughput(arm, wave)
            * np.abs(dispersion(arm, cols, geom.shift_px))
        )
        sky_e = ref_at(self.site.sky, wave) * sky_scale * common
        if source is None:
            return wave, np.zeros_like(wave), sky_e
        star = ref_at(self.prepared[source.template], wave, source.rv_kms) * 10 ** (-0.4 * source.mag_r)
        redden = 10 ** (-0.4 * source.ebv * self._av_curve[arm.name][np.clip(cols, 0, 4095)])
        atm = ref_extinction(self.site, wave, source.airmass)
        star_e = star * redden * atm * self.instrument.site.fiber_aperture_fraction * common
        return wave, star_e, sky_e

    def render_object(self, source, fiber, rng, snr_target=None, neighbours=(None, None), cols=None):
        cols = stripe_columns() if cols is None else cols
        inst = self.instrument
        fibers = [f for f in (fiber - 1, fiber, fiber + 1) if 0 <= f < N_FIBERS]
        geoms = {
            a.name: dict(zip(fibers, fiber_geometries(inst.fiber, rng, np.array(fibers)), strict=True))
            for a in inst.arms
        }
        sky_scale = {f: 1.0 + inst.site.sky_rms * rng.standard_normal() for f in fibers}
        light = {}
        for arm in inst.arms:
            g = geoms[arm.name][fiber]
            light[arm.name] = self.fiber_electrons(arm, g, cols, source, sky_scale[fiber])
            ap = self._aperture_fraction(g, cols)
            light[arm.name] = (*light[arm.name], ap)
        if snr_target is not None:
            scale = self._scale_for_snr(light["red"], snr_target)
            source = Source(
                source.template, source.rv_kms, source.ebv, source.mag_r - 2.5 * math.log10(scale), source.airmass
            )
            for name, (w, s, k, ap) in light.items():
                light[name] = (w, s * scale, k, ap)
        results = []
        for arm in inst.arms:
            wave, star_e, sky_e, ap = light[arm.name]
            lights = [(geoms[arm.name][fiber], star_e + sky_e)]
            for nb_fiber, nb in zip((fiber - 1, fiber + 1), neighbours, strict=True):
                if nb_fiber in geoms[arm.name]:
                    g = geoms[arm.name][nb_fiber]
                    _, s, k = self.fiber_electrons(arm, g, cols, nb, sky_scale[nb_fiber])
                    lights.append((g, s + k))
            mean_sky = sky_e / sky_scale[fiber]
            results.append(self._render_arm(geoms[arm.name][fiber], cols, lights, wave, mean_sky, ap, rng))
        snr = measure_snr_r(results[1].flux1d, results[1].sky1d, results[1].ivar1d, results[1].wave)
        params = {
            "rv_kms": source.rv_kms,
            "ebv": source.ebv,
            "mag_r": source.mag_r,
            "airmass": source.airmass,
            "fiber": float(fiber + 1),
            "snr_target": float("nan") if snr_target is None else snr_target,
            "trace_row0_blue": results[0].geometry.row0,
            "trace_row0_red": results[1].geometry.row0,
            "wave_shift_px_blue": results[0].geometry.shift_px,
            "wave_shift_px_red": results[1].geometry.shift_px,
            "fiber_throughput": results[1].geometry.throughput,
        }
        return ObjectResult(arms=(results[0], results[1]), snr_r=snr, source=source, fiber=fiber, params=params)

    def _aperture_fraction(self, geom, cols):
        trace = geom.trace(cols)
        rows = np.arange(-STRIPE_HALF_ROWS, STRIPE_HALF_ROWS + 1)
        centre = np.floor(trace + 0.5)
        return ref_profile(self.profile, rows, trace - centre).sum(axis=0)

    def _scale_for_snr(self, red_light, target):
        s, b = self._r_band_counts(*red_light)
        if not np.median(s) > 0:
            raise ValueError("the source has no flux in the r band of the red arm; cannot set its S/N")
        lo, hi = -20.0, 20.0
        for _ in range(3):
            log_k = np.linspace(lo, hi, 32)
            k = np.exp(log_k)[:, None]
            snr = expected_snr(k * s, b)
            i = int(np.clip(np.searchsorted(snr, target), 1, 31))
            lo, hi = log_k[i - 1], log_k[i]
        return math.exp(0.5 * (lo + hi))

    def _render_arm(self, geom, cols, lights, wave, sky_e, ap, rng):
        inst = self.instrument
        ccd = inst.ccd
        rows = stripe_rows(geom.trace(cols), STRIPE_HALF_ROWS)
        row_lo = int(rows.min())
        expected = ref_spread_light(rows, cols, lights, self.profile)
        expected = expected + self.extra_light(rows, cols, lights)
        raw, cosmic = ref_read_out(expected, cols, ccd, inst.site.exposure_s, rng)
        level = overscan_level(read_overscan(int(rows.max()) - row_lo + 1, ccd, rng))
        stripe = subtract_overscan(raw, level, cols, rows - row_lo)
        flags = 0
        if np.any(raw >= ccd.adc_max):
            flags |= FLAG_BITS["saturated"]
        if np.any(cosmic):
            flags |= FLAG_BITS["cosmic_ray"]
        flux1d, ivar1d = boxcar_extract(stripe, ccd.gain_e_per_adu, ccd.read_noise_e / ccd.gain_e_per_adu)
        # the optimal extraction (added with the hybrid_optimal model): the fiber's profile over the stripe's
        # rows, evaluated pixel by pixel, each column normalised to 1, re-centred on the light (session 25)
        prof = ref_profile(self.profile, rows, geom.trace(cols))
        prof = prof / np.maximum(prof.sum(axis=0, keepdims=True), 1e-12)
        keep = bool(flags & FLAG_BITS["saturated"]) or _outshone(geom, cols, lights)
        prof_c, _ = recentre_profile(stripe[None], prof[None], keep=np.array([keep]))
        opt = optimal_extract(stripe[None], prof_c, ccd.gain_e_per_adu, ccd.read_noise_e / ccd.gain_e_per_adu)
        sky1d = self._master_sky(sky_e * ap, rng)
        return ArmResult(stripe, flux1d, ivar1d, sky1d, wave, flags, geom, opt.flux[0], opt.ivar[0])


def reference_model(model: ForwardModel) -> ForwardModel:
    """A reference twin of ``model`` (same templates, site, instrument, prepared spectra)."""
    from drcnet.simulate.randomize import RandomizedForwardModel

    if isinstance(model, RandomizedForwardModel):
        # MRO: RandomizedForwardModel -> ReferenceForwardModel -> ForwardModel
        cls = type("ReferenceRandomizedForwardModel", (RandomizedForwardModel, ReferenceForwardModel), {})
    else:
        cls = ReferenceForwardModel
    twin = cls.__new__(cls)
    twin.__dict__.update(model.__dict__)
    return twin


def _assert_same(a: ObjectResult, b: ObjectResult) -> None:
    for x, y in zip(a.arms, b.arms, strict=True):
        for name in ("stripe", "flux1d", "ivar1d", "sky1d", "wave", "flux1d_opt", "ivar1d_opt"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)
        assert x.flags == y.flags and x.geometry == y.geometry
    assert a.snr_r == b.snr_r
    assert a.source == b.source
    assert a.params.keys() == b.params.keys()
    for k in a.params:
        assert a.params[k] == b.params[k] or (math.isnan(a.params[k]) and math.isnan(b.params[k])), k


# -- tests ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model(data_root):
    from drcnet.library import load_templates
    from drcnet.simulate.site import Site

    templates = load_templates([data_root / "spectral_libraries" / "pyhammer"]).templates[:10]
    inst = InstrumentConfig()
    return ForwardModel(inst, Site.load(inst, data_root), templates)


def _objects(n: int) -> list[tuple[Source, int, float | None, tuple[Source | None, Source | None]]]:
    rng = np.random.default_rng(42)
    out = []
    for i in range(n):
        fiber = [0, 249, 1, 248][i] if i < 4 else int(rng.integers(0, N_FIBERS))  # slit ends: one neighbour only
        nbs = tuple(
            None
            if rng.uniform() < 0.3
            else Source(
                int(rng.integers(0, 10)),
                float(rng.normal(0, 40)),
                float(rng.exponential(0.08)),
                float(rng.uniform(14, 18.5)),
                1.3,
            )
            for _ in range(2)
        )
        target = None if i == 5 else float(np.exp(rng.uniform(np.log(2), np.log(150))))
        src = Source(i % 10, float(rng.normal(0, 40)), float(rng.exponential(0.08)), 17.0, float(rng.uniform(1, 1.6)))
        out.append((src, fiber, target, nbs))
    return out


def test_renderer_equals_reference(model):
    ref = reference_model(model)
    for k, (src, fiber, target, nbs) in enumerate(_objects(24)):
        a = model.render_object(src, fiber, np.random.default_rng([7, k]), snr_target=target, neighbours=nbs)
        b = ref.render_object(src, fiber, np.random.default_rng([7, k]), snr_target=target, neighbours=nbs)
        _assert_same(a, b)


def test_randomized_renderer_equals_reference(model):
    from drcnet.simulate.randomize import RandomizedForwardModel

    rmodel = RandomizedForwardModel(model.instrument, model.site, model.templates)
    ref = reference_model(rmodel)
    for k, (src, fiber, target, nbs) in enumerate(_objects(12)):
        a = rmodel.render_object(src, fiber, np.random.default_rng([8, k]), snr_target=target, neighbours=nbs)
        b = ref.render_object(src, fiber, np.random.default_rng([8, k]), snr_target=target, neighbours=nbs)
        _assert_same(a, b)
