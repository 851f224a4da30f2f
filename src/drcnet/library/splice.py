"""Extend a template's red end with a matched full-coverage PyHammer template.

MILES stops at 7410 A but the LAMOST red arm reaches 9000 A. Rather than
extrapolate, the red end is taken from the PyHammer dwarf co-add of the same
MK class with the nearest Teff (then the nearest [Fe/H]) -- or, optionally,
with the best-matching spectrum shape over 6000-7350 A -- scaled to the
template's flux and blended in linearly. The spliced pixels have mask False.

Caveat: PyHammer holds dwarfs only, so giants get a dwarf's 7350-9000 A
(Ca II triplet, TiO) shape. The mask records which pixels are borrowed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from .template import Template

#: Window (vacuum A) where the scale factor is measured (median flux ratio).
SCALE_WINDOW = (7000.0, 7350.0)
#: Window (vacuum A) over which the weight goes linearly from template to partner.
BLEND_WINDOW = (7150.0, 7350.0)
#: Partners within this many K of the best Teff match count as equally close
#: in Teff; among them the nearest [Fe/H] wins. PyHammer's Teff values are
#: photometric means that scatter by ~100 K within one subtype.
TEFF_TOLERANCE = 100.0


class SpliceError(ValueError):
    """No partner could be chosen, or the overlap is unusable."""


#: Partner-selection rules accepted by :func:`choose_partner`.
MATCH_RULES = ("teff", "shape")
#: Window (vacuum A) compared by the ``"shape"`` rule.
SHAPE_WINDOW = (6000.0, 7350.0)


class PartnerPool:
    """PyHammer templates to splice from, with a cache of rebinned fluxes.

    Parameters
    ----------
    templates
        Full-coverage templates (normally the whole PyHammer folder).
    """

    def __init__(self, templates: Sequence[Template]):
        self.templates = list(templates)
        self._rebinned: dict[tuple[str, float, float, int], NDArray[np.float64]] = {}

    def on_grid(self, partner: Template, wave: NDArray[np.float64]) -> NDArray[np.float64]:
        """``partner`` rebinned onto ``wave`` (cached: MILES stars share one grid)."""
        key = (partner.template_id, float(wave[0]), float(wave[-1]), int(wave.size))
        if key not in self._rebinned:
            self._rebinned[key] = rebin(partner.wave, partner.flux, wave)
        return self._rebinned[key]


def _shape_misfit(target: Template, partner: Template, pool: PartnerPool) -> float:
    """RMS of log(target / partner) about its median over :data:`SHAPE_WINDOW`."""
    sel = (target.wave >= SHAPE_WINDOW[0]) & (target.wave <= SHAPE_WINDOW[1])
    pflux = pool.on_grid(partner, target.wave[sel])
    good = target.mask[sel] & (target.flux[sel] > 0) & (pflux > 0)
    if good.sum() < 10:
        return math.inf
    lr = np.log(target.flux[sel][good] / pflux[good])
    return float(np.sqrt(np.mean((lr - np.median(lr)) ** 2)))


def choose_partner(target: Template, pool: PartnerPool | Sequence[Template], match: str = "teff") -> Template:
    """Pick the splice partner for ``target`` from ``pool``.

    Parameters
    ----------
    target
        The template to extend.
    pool
        Candidate partners.
    match
        ``"teff"`` (default, the project rule): same class letter; among
        partners with a known Teff, those within :data:`TEFF_TOLERANCE` of the
        smallest |dTeff|; of these the nearest [Fe/H] (bin centre), then the
        nearest Teff, then the id (deterministic). ``"shape"``: same class
        letter, the partner whose spectrum over 6000-7350 A best matches the
        target's (smallest RMS of the log ratio); needs no Teff and is immune
        to the scatter of PyHammer's photometric Teff values.

    Raises
    ------
    SpliceError
        If the target has no class (or, for ``"teff"``, no Teff), or no
        suitable partner of its class exists.
    """
    if match not in MATCH_RULES:
        raise ValueError(f"match must be one of {MATCH_RULES}, not {match!r}")
    if not isinstance(pool, PartnerPool):
        pool = PartnerPool(pool)
    if not target.cls:
        raise SpliceError("no MK class to choose a splice partner")
    if match == "shape":
        same = [p for p in pool.templates if p.cls == target.cls]
        if not same:
            raise SpliceError(f"no PyHammer template of class {target.cls} to splice from")
        return min(same, key=lambda p: (_shape_misfit(target, p, pool), p.source_id))
    if not math.isfinite(target.teff):
        raise SpliceError("no Teff to choose a splice partner")
    same = [p for p in pool.templates if p.cls == target.cls and math.isfinite(p.teff)]
    if not same:
        raise SpliceError(f"no PyHammer template of class {target.cls} with a Teff to splice from")
    dteff = [abs(p.teff - target.teff) for p in same]
    best = min(dteff)
    close = [p for p, d in zip(same, dteff) if d <= best + TEFF_TOLERANCE]

    def key(p: Template) -> tuple[float, float, str]:
        dfeh = abs(p.feh - target.feh) if math.isfinite(target.feh) and math.isfinite(p.feh) else 0.0
        return (dfeh, abs(p.teff - target.teff), p.source_id)

    return min(close, key=key)


def rebin(
    wave_in: NDArray[np.float64], flux_in: NDArray[np.float64], wave_out: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Average ``flux_in`` over the pixels of ``wave_out`` (flux-conserving).

    Output pixel edges are the midpoints between output centres; the mean is
    the integral of the linearly interpolated input over each pixel divided by
    its width. Where output pixels are finer than the input this reduces to
    linear interpolation; where coarser (PyHammer's 0.1 A onto ~0.9 A) it
    averages instead of picking every ninth noisy sample.
    """
    edges = np.empty(wave_out.size + 1)
    edges[1:-1] = 0.5 * (wave_out[1:] + wave_out[:-1])
    edges[0] = wave_out[0] - 0.5 * (wave_out[1] - wave_out[0])
    edges[-1] = wave_out[-1] + 0.5 * (wave_out[-1] - wave_out[-2])
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (flux_in[1:] + flux_in[:-1]) * np.diff(wave_in))])
    cum_edges = np.interp(edges, wave_in, cum)
    inside = (edges[:-1] >= wave_in[0]) & (edges[1:] <= wave_in[-1])
    out = np.interp(wave_out, wave_in, flux_in)
    width = np.diff(edges)
    out[inside] = (np.diff(cum_edges) / width)[inside]
    return out


def _extend_grid(wave: NDArray[np.float64], stop: float) -> NDArray[np.float64]:
    """Continue ``wave`` to ``stop`` with the step of its last pixels."""
    step = float(wave[-1] - wave[-2])
    n_extra = int(np.floor((stop - wave[-1]) / step))
    if n_extra <= 0:
        return wave
    return np.concatenate([wave, wave[-1] + step * np.arange(1, n_extra + 1)])


def splice_red(target: Template, partner: Template, pool: PartnerPool | None = None) -> Template:
    """Replace ``target``'s red end with ``partner`` (scaled and blended).

    The output grid is the target's own grid up to its last pixel, continued
    with its last step until the partner ends. The partner is rebinned onto
    it, scaled by the median of target/partner over :data:`SCALE_WINDOW`
    (measured pixels of the target only), and blended with weight rising
    linearly from 0 at 7150 A to 1 at 7350 A. Pixels redder than 7150 A get
    mask False.

    Parameters
    ----------
    target, partner
        The template to extend and the full-coverage template to take from.
    pool
        Optional :class:`PartnerPool` whose rebinning cache is used.

    Returns
    -------
    Template
        With ``meta["spliced_red_from"]`` (partner ``template_id``),
        ``meta["splice_scale"]``, ``meta["splice_blend"]`` and
        ``meta["native_wave_max"]``.

    Raises
    ------
    SpliceError
        If the windows are not covered or the scale is not positive/finite.
    """
    lo, hi = BLEND_WINDOW
    if target.wave[0] > SCALE_WINDOW[0] or target.wave[-1] < hi or partner.wave[0] > SCALE_WINDOW[0]:
        raise SpliceError(f"splice windows {SCALE_WINDOW} / {BLEND_WINDOW} A not covered")
    wave = _extend_grid(target.wave, float(partner.wave[-1]))
    pflux = pool.on_grid(partner, wave) if pool is not None else rebin(partner.wave, partner.flux, wave)
    n = target.wave.size
    sel = (target.wave >= SCALE_WINDOW[0]) & (target.wave <= SCALE_WINDOW[1]) & target.mask
    ratio = target.flux[sel] / pflux[:n][sel]
    scale = float(np.median(ratio)) if ratio.size else math.nan
    if not (math.isfinite(scale) and scale > 0):
        raise SpliceError(f"bad splice scale {scale} against {partner.template_id}")
    weight = np.clip((wave - lo) / (hi - lo), 0.0, 1.0)
    own = np.concatenate([target.flux, np.zeros(wave.size - n)])
    flux = (1.0 - weight) * own + weight * scale * pflux
    mask = np.concatenate([target.mask, np.zeros(wave.size - n, dtype=bool)])
    mask &= wave < lo
    meta = dict(target.meta)
    meta.update(
        spliced_red_from=partner.template_id,
        splice_scale=scale,
        splice_blend=BLEND_WINDOW,
        native_wave_max=float(target.wave[-1]),
    )
    return replace(target, wave=wave, flux=flux, mask=mask, meta=meta)
