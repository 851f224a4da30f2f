# Over 400 lines on purpose: one fiber's forward model (source, site, spectrograph, CCD) read top to bottom.
"""The forward model for one fiber: source -> atmosphere -> spectrograph -> CCD -> stripe and 1D spectrum.

:class:`ForwardModel` holds what is prepared once (templates at the instrument
resolution, sky, extinction, reddening curves). :meth:`ForwardModel.render_object`
renders one object's blue and red stripes as windows of the CCD, with its
neighbours' light, noise, bias/overscan and cosmic rays, then cuts the paper's
11 x 3000 stripe, extracts a boxcar 1D spectrum and measures S/N_r (with the
reduction's own :func:`~drcnet.reduce.extract.boxcar_extract` and
:func:`~drcnet.reduce.snr.measure_snr_r`). :func:`expected_snr` is the one
formula of the *expected* S/N_r, used to set a star's flux for a target S/N_r
and for the fiber map of a simulated exposure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from drcnet.conventions import FLAG_BITS, R_BAND_A, STRIPE_HALF_ROWS, stripe_columns
from drcnet.instrument.config import N_FIBERS, ArmConfig, InstrumentConfig
from drcnet.library.template import Template
from drcnet.reduce.extract import boxcar_extract, optimal_extract
from drcnet.reduce.flexure import outshone, recentre_profile
from drcnet.reduce.snr import measure_snr_r
from drcnet.simulate.ccd import overscan_level, read_out, read_overscan, stripe_rows, subtract_overscan
from drcnet.simulate.optics import FiberGeometry, ProfileTable, arm_throughput, dispersion, fiber_geometries, wavelength
from drcnet.simulate.site import Site
from drcnet.simulate.spectra import prepare_template, reddening_curve

REFERENCE_MAG = 17.0
"""Magnitude at which a source's counts are first computed, before scaling to its S/N."""


@dataclass(frozen=True)
class Source:
    """One star as seen from the telescope."""

    template: int
    """Index into the model's template list."""
    rv_kms: float = 0.0
    ebv: float = 0.0
    mag_r: float = REFERENCE_MAG
    airmass: float = 1.2


@dataclass
class ArmResult:
    """One arm of one rendered object."""

    stripe: np.ndarray
    flux1d: np.ndarray
    """Boxcar (aperture) sum of the stripe's 11 rows (ADU)."""
    ivar1d: np.ndarray
    sky1d: np.ndarray
    wave: np.ndarray
    flags: int
    geometry: FiberGeometry
    flux1d_opt: np.ndarray | None = None
    """Optimal (Horne) extraction of the same stripe with the fiber's profile (ADU, the boxcar's scale)."""
    ivar1d_opt: np.ndarray | None = None


@dataclass
class ObjectResult:
    """Both arms of one object plus its measured S/N_r and parameters."""

    arms: tuple[ArmResult, ArmResult]
    snr_r: float
    source: Source
    fiber: int
    params: dict[str, float] = field(default_factory=dict)

    @property
    def flags(self) -> int:
        """Flag bits of both arms together."""
        return self.arms[0].flags | self.arms[1].flags


class ForwardModel:
    """LAMOST forward model over a set of templates.

    Parameters
    ----------
    instrument
        Instrument, CCD and site configuration.
    site
        Loaded sky and atmosphere (:meth:`Site.load`).
    templates
        The source spectra; objects refer to them by index.
    """

    def __init__(self, instrument: InstrumentConfig, site: Site, templates: Sequence[Template]) -> None:
        self.instrument = instrument
        self.site = site
        self.templates = list(templates)
        rp = instrument.blue.resolving_power
        self.prepared = [prepare_template(t, rp) for t in self.templates]
        all_cols = np.arange(0, 4096)
        # reddening and throughput are smooth: evaluate once per arm on the nominal solution
        self._av_curve = {a.name: reddening_curve(wavelength(a, all_cols)) for a in instrument.arms}
        self.profile = ProfileTable(instrument.fiber)
        self._av_cache: dict[str, tuple[tuple[object, ...], np.ndarray]] = {}
        self._own_profile: dict[int, tuple[FiberGeometry, np.ndarray, np.ndarray]] = {}
        s = instrument.site
        self._photons_to_e = s.area_cm2 * s.telescope_efficiency * s.fiber_efficiency * s.exposure_s

    # -- light per column -------------------------------------------------
    def fiber_electrons(
        self, arm: ArmConfig, geom: FiberGeometry, cols: np.ndarray, source: Source | None, sky_scale: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Expected electrons per column from the star and from the sky in one fiber.

        Returns
        -------
        wave, star_e, sky_e
            Wavelength of each column and the electrons (summed over the spatial
            profile) from the star and from the sky.
        """
        wave = wavelength(arm, cols, geom.shift_px)
        ln_wave = np.log(wave)  # shared by the sky, the star and the O2 bands
        common = (
            (self._photons_to_e * geom.throughput)
            * arm_throughput(arm, wave)
            * np.abs(dispersion(arm, cols, geom.shift_px))
        )
        sky_e = self.site.sky.at_ln(ln_wave) * sky_scale * common
        if source is None:
            return wave, np.zeros_like(wave), sky_e
        star = self.prepared[source.template].at_ln(ln_wave, source.rv_kms) * 10 ** (-0.4 * source.mag_r)
        redden = 10 ** (-0.4 * source.ebv * self._av_at(arm, cols))
        atm = self.site.extinction(wave, source.airmass, ln_wave=ln_wave)
        star_e = star * redden * atm * self.instrument.site.fiber_aperture_fraction * common
        return wave, star_e, sky_e

    def _av_at(self, arm: ArmConfig, cols: np.ndarray) -> np.ndarray:
        """``A(lambda)/E(B-V)`` of ``arm`` at ``cols`` (nominal solution), remembered for the last columns asked."""
        key = (arm.name, cols.shape, cols.tobytes())
        hit = self._av_cache.get(arm.name)
        if hit is None or hit[0] != key:
            hit = (key, self._av_curve[arm.name][np.clip(cols, 0, 4095)])
            self._av_cache[arm.name] = hit
        return hit[1]

    # -- one object ---------------------------------------------------------
    def render_object(
        self,
        source: Source,
        fiber: int,
        rng: np.random.Generator,
        snr_target: float | None = None,
        neighbours: Sequence[Source | None] = (None, None),
        cols: np.ndarray | None = None,
    ) -> ObjectResult:
        """Render one object's blue and red stripes.

        Parameters
        ----------
        source
            The star. If ``snr_target`` is given its magnitude is replaced by
            the one that gives that expected S/N_r.
        fiber
            0-based fiber index on the slit (sets the trace shape and the smile).
        rng
            Random generator (geometry jitter, sky, noise, cosmic rays).
        neighbours
            The sources in fibers ``fiber - 1`` and ``fiber + 1`` (None: a sky fiber).
        cols
            CCD columns to render; default the paper's stripe, 500..3499.
        """
        cols = stripe_columns() if cols is None else cols
        inst = self.instrument
        fibers = [f for f in (fiber - 1, fiber, fiber + 1) if 0 <= f < N_FIBERS]
        geoms = {
            a.name: dict(zip(fibers, fiber_geometries(inst.fiber, rng, np.array(fibers)), strict=True))
            for a in inst.arms
        }
        sky_scale = {f: 1.0 + inst.site.sky_rms * rng.standard_normal() for f in fibers}
        light = {}
        self._own_profile.clear()
        for arm in inst.arms:
            g = geoms[arm.name][fiber]
            light[arm.name] = self.fiber_electrons(arm, g, cols, source, sky_scale[fiber])
            # the fiber's own profile over its stripe: its column sums are the aperture fraction, and
            # _render_arm spreads the fiber's light with it (the same numbers as profile(rows, trace))
            trace = g.trace(cols)
            start = np.floor(trace + 0.5).astype(np.intp) - STRIPE_HALF_ROWS
            own = self.profile.stripe(start, 2 * STRIPE_HALF_ROWS + 1, trace)
            self._own_profile[id(g)] = (g, cols, own)
            light[arm.name] = (*light[arm.name], own.sum(axis=0))
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
            # the master sky is the plate's mean sky: it misses this fiber's own small sky deviation
            mean_sky = sky_e / sky_scale[fiber]
            results.append(self._render_arm(geoms[arm.name][fiber], cols, lights, wave, mean_sky, ap, rng))
        self._own_profile.clear()
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

    def expected_snr_r(
        self,
        arm: ArmConfig,
        geom: FiberGeometry,
        source: Source,
        sky_scale: float = 1.0,
        cols: np.ndarray | None = None,
    ) -> float:
        """Expected S/N_r of a star in one fiber (no noise drawn): :func:`expected_snr` over the r band.

        Parameters
        ----------
        arm, geom, source, sky_scale
            As for :meth:`fiber_electrons`.
        cols
            Columns of the stripe (default 500..3499).

        Returns
        -------
        float
            The median expected S/N per column over the r band; NaN when the columns miss it.
        """
        cols = stripe_columns() if cols is None else cols
        wave, star_e, sky_e = self.fiber_electrons(arm, geom, cols, source, sky_scale)
        s, b = self._r_band_counts(wave, star_e, sky_e, self._aperture_fraction(geom, cols))
        return float(expected_snr(s, b)) if s.size else float("nan")

    def _r_band_counts(
        self, wave: np.ndarray, star_e: np.ndarray, sky_e: np.ndarray, ap: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Star electrons in the stripe aperture and the background variance (e-^2), r-band columns only."""
        band = (wave >= R_BAND_A[0]) & (wave <= R_BAND_A[1])
        return star_e[band] * ap[band], self._background_e(sky_e[band] * ap[band])

    def _aperture_fraction(self, geom: FiberGeometry, cols: np.ndarray) -> np.ndarray:
        """Share of the fiber's light inside its 11-row stripe, per column."""
        trace = geom.trace(cols)
        rows = np.arange(-STRIPE_HALF_ROWS, STRIPE_HALF_ROWS + 1)
        # rows relative to the rounded centre; shift the trace by the same integer
        centre = np.floor(trace + 0.5)
        return self.profile(rows, trace - centre).sum(axis=0)

    def _background_e(self, sky_ap: np.ndarray) -> np.ndarray:
        """Per-column noise variance (e-^2) of the sky-subtracted aperture sum, star excluded."""
        ccd, site = self.instrument.ccd, self.instrument.site
        n = 2 * STRIPE_HALF_ROWS + 1
        dark = n * ccd.dark_e_per_s * site.exposure_s
        read = n * ccd.read_noise_e**2
        # only the star and the fiber's own sky, dark and read noise enter the pipeline's ivar
        return sky_ap + dark + read

    def _scale_for_snr(self, red_light: tuple[np.ndarray, ...], target: float) -> float:
        """Flux scale that makes the expected S/N_r equal ``target`` (bisection in log scale)."""
        s, b = self._r_band_counts(*red_light)
        if not np.median(s) > 0:
            raise ValueError("the source has no flux in the r band of the red arm; cannot set its S/N")

        # three rounds of a 32-point grid in log(scale), each zooming into the bracket: 1e-3 in flux.
        # The expected S/N rises with the scale, so the bracket (the first grid point whose S/N reaches the
        # target, as searchsorted finds it on the whole grid) is found by bisection: 5-6 of the 32 points.
        lo, hi = -20.0, 20.0
        for _ in range(3):
            log_k = np.linspace(lo, hi, 32)
            k = np.exp(log_k)
            first, last = 0, 32  # answer in [first, last]: snr[first - 1] < target <= snr[last]
            while first < last:
                mid = (first + last) // 2
                if expected_snr(k[mid] * s, b) < target:
                    first = mid + 1
                else:
                    last = mid
            i = min(max(first, 1), 31)
            lo, hi = log_k[i - 1], log_k[i]
        return math.exp(0.5 * (lo + hi))

    def _render_arm(
        self,
        geom: FiberGeometry,
        cols: np.ndarray,
        lights: list[tuple[FiberGeometry, np.ndarray]],
        wave: np.ndarray,
        sky_e: np.ndarray,
        ap: np.ndarray,
        rng: np.random.Generator,
    ) -> ArmResult:
        """Render the stripe pixels of one arm (the pixels a frame would hold there) and extract them.

        Only the 11 x N pixels of the stripe are rendered: pixels are
        independent, so this is the same as cutting them from a full frame, at
        a fraction of the cost. Each stripe row uses the overscan level of its
        own CCD row, as a reduction of the full frame would.
        """
        inst = self.instrument
        ccd = inst.ccd
        rows = stripe_rows(geom.trace(cols), STRIPE_HALF_ROWS)
        row_lo = int(rows.min())
        expected = self._stripe_light(geom, rows, cols, lights)
        extra = self.extra_light(rows, cols, lights)
        if not (np.isscalar(extra) and extra == 0.0):
            expected = expected + extra
        readout = read_out(expected, cols, ccd, inst.site.exposure_s, rng)
        level = overscan_level(read_overscan(int(rows.max()) - row_lo + 1, ccd, rng))
        stripe = subtract_overscan(readout.raw, level, cols, rows - row_lo)
        flags = 0
        if np.any(readout.raw >= ccd.adc_max):
            flags |= FLAG_BITS["saturated"]
        if np.any(readout.cosmic):
            flags |= FLAG_BITS["cosmic_ray"]
        read_noise_adu = ccd.read_noise_e / ccd.gain_e_per_adu
        flux1d, ivar1d = boxcar_extract(stripe, ccd.gain_e_per_adu, read_noise_adu)
        # as the reduction does: not on a saturated stripe or one a >100x brighter neighbour fills
        keep = bool(flags & FLAG_BITS["saturated"]) or _outshone(geom, cols, lights)
        profile, _ = recentre_profile(
            stripe[None], self._extraction_profile(geom, rows, cols)[None], keep=np.array([keep])
        )
        opt = optimal_extract(stripe[None], profile, ccd.gain_e_per_adu, read_noise_adu)
        sky1d = self._master_sky(sky_e * ap, rng)
        return ArmResult(
            stripe=stripe,
            flux1d=flux1d,
            ivar1d=ivar1d,
            sky1d=sky1d,
            wave=wave,
            flags=flags,
            geometry=geom,
            flux1d_opt=opt.flux[0],
            ivar1d_opt=opt.ivar[0],
        )

    def _extraction_profile(self, geom: FiberGeometry, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``(11, n_cols)`` spatial profile an optimal extraction of this stripe uses, each column summing to 1.

        The fiber's own profile (the one its light was spread with) centred on the trace the stripe was cut
        around: what a reduction measures from the flat of the same exposure (:mod:`drcnet.reduce.science`).
        Normalised over the stripe's rows, so the optimal flux is on the boxcar sum's scale.
        """
        own = self._own_profile.get(id(geom))
        if own is not None and own[0] is geom and own[1] is cols:
            prof = np.asarray(own[2], dtype=np.float64)
        else:
            prof = self.profile.stripe(rows[0], rows.shape[0], geom.trace(cols))
        return prof / np.maximum(prof.sum(axis=0, keepdims=True), 1e-12)

    def _stripe_light(
        self, geom: FiberGeometry, rows: np.ndarray, cols: np.ndarray, lights: list[tuple[FiberGeometry, np.ndarray]]
    ) -> np.ndarray:
        """:func:`~drcnet.simulate.ccd.spread_light` over the stripe ``rows`` (``(11, n_cols)``, cut around
        ``geom``'s trace), the same numbers, with each fiber's profile looked up for the stripe's rows at once
        and the fiber's own profile (from :meth:`render_object`) reused."""
        image = np.zeros((rows.shape[0], cols.size))
        lo, hi = rows.min(), rows.max()
        start = rows[0]
        reach = self.profile.reach
        for g, electrons in lights:
            own = self._own_profile.get(id(g))
            if own is not None and own[0] is g and g is geom and own[1] is cols:
                image += own[2] * electrons[None, :]  # the cached profile stays as it is (same numbers)
                continue
            centre = g.trace(cols)
            if centre.max() + reach < lo or centre.min() - reach > hi:
                continue  # too far to reach these pixels
            prof = self.profile.stripe(start, rows.shape[0], centre)
            prof *= electrons[None, :]
            image += prof
        return image

    def extra_light(
        self, rows: np.ndarray, cols: np.ndarray, lights: list[tuple[FiberGeometry, np.ndarray]]
    ) -> np.ndarray | float:
        """Light (e-) added to the stripe pixels beyond the fibers' profiles; none in the nominal model.

        :class:`drcnet.simulate.randomize.RandomizedForwardModel` adds scattered light here.
        """
        return 0.0

    def _master_sky(self, sky_ap_e: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Master-sky estimate under the aperture (ADU), as the mean of the sky fibers' extractions.

        Sky fibers collect dark current too, so it is part of what is subtracted;
        averaging ``n_sky_fibers`` leaves their photon and read noise divided by that number.
        """
        ccd, site = self.instrument.ccd, self.instrument.site
        n = 2 * STRIPE_HALF_ROWS + 1
        level_e = sky_ap_e + n * ccd.dark_e_per_s * site.exposure_s
        var_e = (level_e + n * ccd.read_noise_e**2) / site.n_sky_fibers
        return (level_e + np.sqrt(var_e) * rng.standard_normal(sky_ap_e.shape)) / ccd.gain_e_per_adu


def expected_snr(star_e: np.ndarray, background_e: np.ndarray) -> np.ndarray:
    """Expected S/N_r: the median over columns of ``star / sqrt(star + background)``.

    Parameters
    ----------
    star_e : numpy.ndarray
        ``(..., n_cols)`` star electrons in the stripe aperture per r-band column.
    background_e : numpy.ndarray
        ``(n_cols,)`` noise variance (e-^2) of the sky-subtracted aperture sum without the star
        (sky, dark, read noise; see ``ForwardModel._background_e``).

    Returns
    -------
    numpy.ndarray
        The median over the last axis (a 0-d array for 1D input).

    Real (observed) source spectra have negative noise pixels: those add no photon variance, so a
    negative pixel never reaches the square root.
    """
    return np.median(star_e / np.sqrt(np.clip(star_e, 0.0, None) + background_e), axis=-1)


def _outshone(geom: FiberGeometry, cols: np.ndarray, lights: list[tuple[FiberGeometry, np.ndarray]]) -> bool:
    """Whether a neighbour's light (median e- per column) outshines the fiber's own
    (:func:`drcnet.reduce.flexure.outshone`, the reduction's test).

    The fiber's own light is the one whose trace is nearest ``geom``'s (a mis-traced ``geom`` is still
    far nearer its own light than a neighbour's, one fiber pitch away).
    """
    if len(lights) < 2:
        return False
    mid = cols[cols.size // 2 : cols.size // 2 + 1]
    centre = float(geom.trace(mid)[0])
    own = int(np.argmin([abs(float(g.trace(mid)[0]) - centre) for g, _ in lights]))
    level = [float(np.median(e)) for _, e in lights]
    brightest = max(v for k, v in enumerate(level) if k != own)
    return bool(outshone(np.array([brightest, level[own]]))[1])
