"""Spatial flexure: re-centre the flat's profile on the science light before the optimal extraction.

The optimal (Horne 1986) extraction weights each pixel by the fiber's spatial profile measured on the
flat. When the science light sits off that profile (flexure between the flat and the science exposure,
or a trace fitted off the light), the weights miss the light and the outlier rejection throws away the
fiber's own brightest pixels: issue 21 measured the default model falling from 0.76 to 0.38 below
S/N_r 10 with a 1.5 px offset, while the boxcar sum over the aperture loses little. Extraction
software re-centres the apertures on the object frame itself for this reason (IRAF ``apall``'s
``recenter``); this module does the same per fiber and arm with the flat's profile:

* :func:`measure_profile_shift` -- the shift (px, along the CCD rows of the stripe) that best matches
  the flat's profile to the science stripe, both collapsed along wavelength with a median (robust to
  cosmic rays, bad pixels and sky lines);
* :func:`shift_profile` -- the profile moved by that shift (linear interpolation along the rows), each
  column normalised again over the stripe;
* :func:`recentre_profile` -- both, applied only where the measured shift is at least
  :data:`MIN_SHIFT_PX` (smaller shifts cost the optimal extraction little and are within what neighbour
  light and noise can fake, so the flat's profile is kept as it is there) and not to the fibers the caller
  keeps: :func:`outshone` marks those next to a fiber more than :data:`NEIGHBOUR_RATIO` times brighter,
  whose halo would pull the fit towards it.

Arrays: stripes and profiles ``(n_fibers, n_rows, n_cols)`` (the paper's stripes: 11 rows, 3000 columns).
"""

from __future__ import annotations

import warnings

import numpy as np

MAX_SHIFT_PX = 3.0
"""Largest shift searched (px): beyond it the light is mostly outside an 11-row stripe anyway."""

MIN_SHIFT_PX = 0.5
"""Shifts smaller than this (px) leave the flat's profile as it is (:func:`recentre_profile`)."""

NEIGHBOUR_RATIO = 100.0
"""A fiber with an adjacent fiber this many times brighter keeps the flat's profile (:func:`outshone`). In
the forward model's renders, neighbours up to ~150 times brighter (r = 14 next to 19.5) fake shifts of at
most 0.22 px; in a simulated exposure, saturated neighbours 135-190 times brighter faked 0.6-1.6 px."""

EDGE_ROWS = 2
"""Rows at each edge of the stripe left out of the fit: a bright neighbour's halo is strongest there."""

_GRID_STEP_PX = 0.05


def shift_profile(profile: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The profile moved by ``shift`` px along the rows, each column summing to 1 again.

    Parameters
    ----------
    profile
        ``(n_fibers, n_rows, ...)`` spatial profile (any trailing axes, e.g. the columns).
    shift
        ``(n_fibers,)`` shift in px; positive moves the light to higher rows. Linear interpolation
        along the rows; rows beyond the stripe are zero (the profile is not known there).

    Returns
    -------
    numpy.ndarray
        float64 array of ``profile``'s shape; a column with no light left sums to 0.
    """
    p = np.asarray(profile, dtype=np.float64)
    s = np.asarray(shift, dtype=np.float64).reshape(-1)
    if s.shape[0] != p.shape[0]:
        raise ValueError(f"{s.shape[0]} shifts for {p.shape[0]} fibers")
    n_rows = p.shape[1]
    src = np.arange(n_rows, dtype=np.float64)[None, :] - s[:, None]  # (fibers, rows): where each row reads
    lo = np.floor(src).astype(np.int64)
    t = src - lo
    out = np.zeros_like(p)
    extra = (1,) * (p.ndim - 2)
    fib = np.arange(p.shape[0])[:, None]
    for k, w in ((lo, 1.0 - t), (lo + 1, t)):
        ok = (k >= 0) & (k < n_rows)
        vals = p[fib, np.clip(k, 0, n_rows - 1)]
        out += np.where(ok.reshape(ok.shape + extra), vals * w.reshape(w.shape + extra), 0.0)
    total = out.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, out / total, 0.0)


def measure_profile_shift(stripes: np.ndarray, profile: np.ndarray, bad: np.ndarray | None = None) -> np.ndarray:
    """Shift (px) of each fiber's science light against its flat profile.

    Both are collapsed along wavelength with a median per row (the light's median over columns, the
    profile's too) and the flat's collapsed profile is moved in steps of 0.05 px over
    +-:data:`MAX_SHIFT_PX`; at each step the light of the stripe's core rows (all but
    :data:`EDGE_ROWS` at each edge, where a neighbour's halo is strongest) is fitted as ``a profile +
    b`` by least squares. The shift with the least squared residual, refined by a parabola through it
    and its two neighbours, is the answer.

    Parameters
    ----------
    stripes
        ``(n_fibers, n_rows, n_cols)`` science stripes (ADU or e-, sky not subtracted: the sky fills the
        fiber like the star does).
    profile
        ``(n_fibers, n_rows, n_cols)`` the flat's normalised spatial profile in the same pixels.
    bad
        ``(n_fibers, n_rows, n_cols)`` pixels to ignore (NaN pixels are ignored anyway).

    Returns
    -------
    numpy.ndarray
        ``(n_fibers,)`` float64 shift in px (positive: the light is at higher rows than the profile);
        0 where a fiber has no positive light in its stripe.

    Raises
    ------
    ValueError
        The shapes disagree.
    """
    d = np.asarray(stripes)  # the medians along wavelength in the arrays' own precision: no float64 copy
    p = np.asarray(profile)
    if d.shape != p.shape or d.ndim != 3:
        raise ValueError(f"stripes {d.shape} and profile {p.shape} must be the same (n_fibers, n_rows, n_cols)")
    if bad is not None:
        d = np.where(bad, np.nan, d)
    if np.isnan(d).any():
        with warnings.catch_warnings():  # a row with no good pixel: NaN, taken as no light below
            warnings.simplefilter("ignore", RuntimeWarning)
            light = np.nanmedian(d, axis=2)
    else:
        light = np.median(d, axis=2)
    light = np.nan_to_num(light.astype(np.float64), nan=0.0)
    model = np.median(p, axis=2).astype(np.float64)
    n, n_rows = light.shape
    core = slice(EDGE_ROWS, n_rows - EDGE_ROWS) if n_rows > 2 * EDGE_ROWS + 2 else slice(0, n_rows)
    grid = np.arange(-MAX_SHIFT_PX, MAX_SHIFT_PX + _GRID_STEP_PX / 2, _GRID_STEP_PX)
    m = shift_profile(np.repeat(model, grid.size, axis=0), np.tile(grid, n)).reshape(n, grid.size, n_rows)
    m = m[:, :, core]
    target = np.broadcast_to(light[:, None, core], m.shape)
    # light = a m + b on the core rows at every shift (b: a level the fiber's profile does not explain)
    x = np.stack([m, np.ones_like(m)], axis=3).reshape(-1, m.shape[2], 2)
    coef = _solve(x, target.reshape(-1, m.shape[2])).reshape(n, grid.size, 2)
    cost = ((m * coef[..., :1] + coef[..., 1:] - target) ** 2).sum(axis=2)
    best = np.clip(cost.argmin(axis=1), 1, grid.size - 2)
    rows = np.arange(n)
    c0, c1, c2 = cost[rows, best - 1], cost[rows, best], cost[rows, best + 1]
    curv = c0 - 2 * c1 + c2
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(curv > 0, 0.5 * (c0 - c2) / curv, 0.0)
    shift = grid[best] + np.clip(frac, -1.0, 1.0) * _GRID_STEP_PX
    return np.where(light.sum(axis=1) > 0, shift, 0.0)


def _solve(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least-squares coefficients ``(n, k)`` of ``x`` ``(n, rows, k)`` against ``b`` ``(n, rows)``, per fiber."""
    xtx = np.einsum("nrk,nrl->nkl", x, x)
    xtb = np.einsum("nrk,nr->nk", x, b)
    ok = np.abs(np.linalg.det(xtx)) > 1e-12
    out = np.zeros(xtb.shape)
    if ok.any():
        out[ok] = np.linalg.solve(xtx[ok], xtb[ok][..., None])[..., 0]
    return out


def outshone(levels: np.ndarray, ratio: float = NEIGHBOUR_RATIO) -> np.ndarray:
    """``(n_fibers,)`` fibers with an adjacent fiber (one fiber number away) more than ``ratio`` times brighter.

    Parameters
    ----------
    levels
        ``(n_fibers,)`` each fiber's light in fiber order (e.g. the median of its aperture sum), any unit.
    ratio
        How much brighter a neighbour must be.
    """
    lv = np.nan_to_num(np.asarray(levels, dtype=np.float64), nan=0.0)
    own = np.maximum(lv, 0.0)
    brightest = np.zeros_like(own)
    brightest[1:] = np.maximum(brightest[1:], lv[:-1])
    brightest[:-1] = np.maximum(brightest[:-1], lv[1:])
    return brightest > ratio * own


def adjacent(mask: np.ndarray) -> np.ndarray:
    """``(n_fibers,)`` fibers next to (one fiber number from) a fiber of ``mask``, e.g. a saturated one."""
    m = np.asarray(mask, dtype=bool)
    out = np.zeros_like(m)
    out[1:] |= m[:-1]
    out[:-1] |= m[1:]
    return out


def recentre_profile(
    stripes: np.ndarray,
    profile: np.ndarray,
    bad: np.ndarray | None = None,
    min_shift: float = MIN_SHIFT_PX,
    keep: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The flat's profile re-centred on the science light where it is off by at least ``min_shift`` px.

    Parameters
    ----------
    stripes, profile, bad
        As in :func:`measure_profile_shift`.
    min_shift
        Fibers whose measured shift is smaller keep ``profile`` unchanged (the same numbers).
    keep
        ``(n_fibers,)`` fibers that keep ``profile`` whatever their shift: those whose stripe a much
        brighter or a saturated neighbour's halo fills (:func:`outshone`, :func:`adjacent`; its light
        fakes a shift of up to 1.6 px in a simulated exposure) and saturated fibers (their flat-topped
        light fakes one too).

    Returns
    -------
    profile, shift
        The profile to extract with (``profile``'s shape and dtype) and the ``(n_fibers,)`` measured
        shift in px (also where it was not applied).
    """
    shift = measure_profile_shift(stripes, profile, bad)
    move = np.abs(shift) >= min_shift
    if keep is not None:
        move &= ~np.asarray(keep, dtype=bool)
    if not move.any():
        return profile, shift
    out = np.array(profile, copy=True)
    out[move] = shift_profile(out[move], shift[move]).astype(out.dtype)
    return out, shift
