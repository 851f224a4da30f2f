"""Tracing every fiber on a lamp flat, vectorised over the fibers.

1. The flat's columns are averaged in bins (default 64 columns).
2. Fibers are found as peaks of the central bins and numbered by their
   position on the nominal slit (first row + pitch * index, offset fitted), so
   a dead fiber leaves a gap rather than shifting the numbering.
3. From the centre outward, every fiber's centre in each bin is refined by a
   Gaussian-weighted windowed centroid started from its centre in the
   previous bin (all fibers at once).
4. A low-order polynomial in ``v = (x - u0) / u0`` (``u0`` the detector's centre column, 2047.5 for LAMOST) is fitted per fiber,
   with sigma clipping; bins with too little flat signal are left out.

A fiber whose flat signal is absent (below ``min_signal`` of the median fiber)
is *lost*: its trace is interpolated from its neighbours (for plots) and the
reduction flags it ``trace_lost``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.signal import find_peaks

from drcnet.conventions import FWHM_PER_SIGMA
from drcnet.hardware import FiberConfig
from drcnet.notices import quiet
from drcnet.reduce.centroid import windowed_centroid


class TraceConfig(BaseModel):
    """Options of :func:`trace_fibers`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bin_width: int = Field(64, ge=4, description="columns averaged per bin")
    degree: int = Field(3, ge=1, le=6, description="polynomial degree of each trace")
    half_window: int = Field(7, ge=2, description="centroid window half width (rows)")
    min_signal: float = Field(
        0.1, gt=0, lt=1, description="a bin is used when its flat signal exceeds this share of the fiber's median"
    )
    lost_signal: float = Field(
        0.05, gt=0, lt=1, description="a fiber is lost when its flat signal is below this share of the median fiber"
    )
    min_bins: int = Field(8, ge=3, description="fewest usable bins for a trace")
    clip_sigma: float = Field(4.0, gt=1)
    max_slit_shift: int = Field(
        5, ge=0, description="largest shift of the whole slit image (in fibers) searched when numbering the fibers"
    )


@dataclass
class TraceSet:
    """Traces of every fiber of one arm.

    Attributes
    ----------
    coeffs
        ``(n_fibers, degree + 1)`` polynomial coefficients in ``v`` (lowest order first).
    lost
        Fibers without a usable flat signal.
    rms
        Residual rms of the fit (rows), NaN for lost fibers.
    bin_cols, bin_centres
        Bin centres (columns) and the measured centre of each fiber in each
        bin (NaN where unusable), for QA.
    signal
        Flat signal of each fiber at the centre, relative to the median fiber.
    """

    coeffs: np.ndarray
    lost: np.ndarray
    rms: np.ndarray
    bin_cols: np.ndarray
    bin_centres: np.ndarray
    signal: np.ndarray
    u0: float
    """Origin of the polynomials: ``v = (x - u0) / u0`` (:attr:`drcnet.hardware.Detector.u0`)."""
    bad_flat: np.ndarray | None = None
    """Fibers whose flat aperture holds bad (NaN) pixels: traced without them, or from the neighbours."""
    slit_shift: int = 0
    """Whole fibers by which the slit image is shifted from its nominal place (fiber numbering anchor)."""

    def __post_init__(self) -> None:
        if self.bad_flat is None:
            self.bad_flat = np.zeros(self.lost.shape, dtype=bool)

    @property
    def n_fibers(self) -> int:
        """Fibers on the slit."""
        return int(self.coeffs.shape[0])

    def centres(self, cols: np.ndarray) -> np.ndarray:
        """Trace rows ``(n_fibers, len(cols))`` at columns ``cols``."""
        v = (np.asarray(cols, dtype=float) - self.u0) / self.u0
        powers = v[None, :] ** np.arange(self.coeffs.shape[1])[:, None]
        return self.coeffs @ powers

    def summary(self) -> dict[str, object]:
        """JSON-ready numbers: fibers, lost fibers (1-based), median fit rms (rows)."""
        ok = ~self.lost
        assert self.bad_flat is not None
        return {
            "n_fibers": self.n_fibers,
            "n_lost": int(self.lost.sum()),
            "lost_fibers": (np.flatnonzero(self.lost) + 1).tolist(),
            "bad_flat_fibers": (np.flatnonzero(self.bad_flat) + 1).tolist(),
            "slit_shift_fibers": self.slit_shift,
            "median_rms_px": float(np.nanmedian(self.rms[ok]))
            if ok.any() and np.isfinite(self.rms[ok]).any()
            else None,
        }


def bin_columns(image: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Average ``image`` over bins of ``width`` columns: ``(rows, n_bins)`` and the bins' mean columns."""
    n_bins = image.shape[1] // width
    used = image[:, : n_bins * width].reshape(image.shape[0], n_bins, width)
    if image.dtype.kind == "f" and np.isnan(used).any():
        with quiet(RuntimeWarning):
            binned = np.nanmean(used, axis=2)
    else:
        binned = used.mean(axis=2)
    cols = np.arange(n_bins) * width + (width - 1) / 2.0
    return binned, cols


def find_fibers(
    profile: np.ndarray,
    n_fibers: int,
    fiber: FiberConfig,
    lost_signal: float,
    expected_lit: np.ndarray | None = None,
    max_shift: int = 5,
) -> tuple[np.ndarray, int]:
    """Row of each fiber's peak in a cross-section (NaN where no fiber is found), and the slit shift.

    Peaks are numbered by their place on the nominal slit
    ``first_row + pitch * index``, after fitting a common offset. The offset is
    only known modulo one pitch from the peaks' rows; the whole number of fibers
    by which the slit image is shifted is chosen so that the lit and dark fibers
    match ``expected_lit`` (the fiber map: dead fibers show no flat light) and no
    peak falls beyond the first or last fiber.

    Raises
    ------
    ValueError
        Two shifts fit the expected pattern equally well (the numbering is
        ambiguous), or none fits it (the message names the shifts and mismatches).
    """
    p = np.nan_to_num(profile, nan=0.0)
    height = np.percentile(p, 99.5)
    peaks, _ = find_peaks(p, distance=max(2, int(0.6 * fiber.pitch_px)), prominence=lost_signal * height)
    if peaks.size == 0:
        return np.full(n_fibers, np.nan), 0
    d = peaks - fiber.first_row
    offset = 0.0
    for _ in range(3):
        k = np.round((d - offset) / fiber.pitch_px)
        offset = float(np.median(d - k * fiber.pitch_px))
    k = np.round((d - offset) / fiber.pitch_px).astype(int)
    shift = slit_shift(k, n_fibers, expected_lit, max_shift)
    k = k - shift
    out = np.full(n_fibers, np.nan)
    best = np.full(n_fibers, -np.inf)
    for pk, idx in zip(peaks, k, strict=True):
        if 0 <= idx < n_fibers and p[pk] > best[idx]:
            out[idx], best[idx] = pk, p[pk]
    return out, shift


def slit_shift(k: np.ndarray, n_fibers: int, expected_lit: np.ndarray | None, max_shift: int) -> int:
    """Whole-fiber shift ``s`` of the slit image: peak ``k`` is fiber ``k - s`` (see :func:`find_fibers`).

    Each candidate ``s`` in ``-max_shift..max_shift`` is scored by its mismatches:
    peaks numbered outside ``0..n_fibers-1``, expected-dark fibers with a peak,
    expected-lit fibers without one.
    """
    lit = np.ones(n_fibers, dtype=bool) if expected_lit is None else np.asarray(expected_lit, dtype=bool)
    scores = {}
    for s in range(-max_shift, max_shift + 1):
        idx = k - s
        inside = (idx >= 0) & (idx < n_fibers)
        seen = np.zeros(n_fibers, dtype=bool)
        seen[idx[inside]] = True
        scores[s] = int((~inside).sum() + (seen & ~lit).sum() + (~seen & lit).sum())
    order = sorted(scores, key=lambda s: (scores[s], abs(s)))
    best, second = order[0], order[1]
    if scores[best] == scores[second]:
        raise ValueError(
            f"the fiber numbering is ambiguous: a slit shift of {best:+d} or {second:+d} fibers fits "
            f"the fiber map's pattern of lit and dead fibers equally well ({scores[best]} mismatches); "
            "cannot tell which fiber is which"
        )
    if scores[best] > max(5, n_fibers // 10):
        raise ValueError(
            f"the fibers on the flat do not match the fiber map: the best slit shift ({best:+d} fibers) "
            f"leaves {scores[best]} of {n_fibers} fibers lit where the map says dead or dark where it "
            "says lit"
        )
    return best


def trace_fibers(
    flat: np.ndarray,
    n_fibers: int,
    fiber: FiberConfig,
    config: TraceConfig | None = None,
    expected_lit: np.ndarray | None = None,
    *,
    u0: float,
) -> TraceSet:
    """Trace ``n_fibers`` fibers on a net flat ``(rows, n_cols)`` (ADU, overscan removed).

    ``u0`` is the origin of the trace polynomials (:attr:`drcnet.hardware.Detector.u0`).

    ``expected_lit`` (``(n_fibers,)`` bool, default all) says which fibers should
    show flat light (the fiber map's non-dead fibers); it anchors the fiber
    numbering (:func:`find_fibers`). NaN pixels of the flat are left out of the
    traces of the fibers whose apertures they touch (``bad_flat``); such a fiber
    with too little left is traced from its neighbours, not lost.
    """
    cfg = config or TraceConfig()
    binned, bin_cols = bin_columns(flat, cfg.bin_width)
    n_bins = bin_cols.size
    sigma = fiber.profile_fwhm_px / FWHM_PER_SIGMA
    mid = n_bins // 2
    nan_bins = None
    if flat.dtype.kind == "f" and np.isnan(flat).any():
        nan_bins = bin_columns(np.isnan(flat).astype(np.float32), cfg.bin_width)[0] > 0  # (rows, n_bins)
        binned = np.where(nan_bins, np.nan, binned)
    with np.errstate(invalid="ignore"), quiet(RuntimeWarning):
        central = np.nanmean(binned[:, max(mid - 2, 0) : mid + 2], axis=1)
    start, shift = find_fibers(central, n_fibers, fiber, cfg.lost_signal, expected_lit, cfg.max_slit_shift)
    found = np.isfinite(start)
    if found.sum() < max(cfg.degree + 2, n_fibers // 2):
        raise ValueError(f"only {int(found.sum())} of {n_fibers} fibers show light on the flat")
    centres = np.full((n_fibers, n_bins), np.nan)
    flux = np.zeros((n_fibers, n_bins))
    ids = np.flatnonzero(found)
    x0, f0 = windowed_centroid(central, start[ids], sigma, cfg.half_window)
    ref = np.median(f0[np.isfinite(x0)])
    signal = np.zeros(n_fibers)
    signal[ids] = f0 / ref
    filled = np.nan_to_num(binned, nan=0.0) if nan_bins is not None else binned
    for direction in (range(mid, n_bins), range(mid - 1, -1, -1)):
        x = x0.copy()
        for b in direction:
            xb, fb = windowed_centroid(filled[:, b], x, sigma, cfg.half_window)
            good = np.isfinite(xb) & (fb > cfg.min_signal * f0) & (np.abs(xb - x) < 3.0)
            centres[ids[good], b] = xb[good]
            flux[ids, b] = fb
            x = np.where(good, xb, x)
    lost = ~found | (signal < cfg.lost_signal)
    v = (bin_cols - u0) / u0
    design = v[:, None] ** np.arange(cfg.degree + 1)[None, :]
    coeffs, rms, lost = _fit_traces(centres, lost, design, cfg)
    _fill_lost(coeffs, lost, fiber)
    bad_flat = np.zeros(n_fibers, dtype=bool)
    if nan_bins is not None:
        # bins where a fiber's aperture (+-half_window rows about its trace) holds NaN pixels
        rows = np.clip(np.round(coeffs @ design.T).astype(int), 0, flat.shape[0] - 1)  # (fibers, bins)
        touched = np.zeros((n_fibers, n_bins), dtype=bool)
        for dr in range(-cfg.half_window, cfg.half_window + 1):
            r = np.clip(rows + dr, 0, flat.shape[0] - 1)
            touched |= nan_bins[r, np.arange(n_bins)[None, :]]
        bad_flat = np.asarray(touched.any(axis=1))
        # a fiber hidden by bad pixels is not a fiber without light: trace it without them, else from its neighbours
        lit = np.ones(n_fibers, dtype=bool) if expected_lit is None else np.asarray(expected_lit, dtype=bool)
        hidden = bad_flat & lit & (lost | touched[:, max(mid - 2, 0) : mid + 2].any(axis=1))
        centres[touched] = np.nan
        retry = bad_flat.copy()
        c2, r2, lost2 = _fit_traces(centres, ~retry, design, cfg)
        ok = retry & ~lost2
        coeffs[ok], rms[ok] = c2[ok], r2[ok]
        lost = lost & ~hidden
        interp = bad_flat & ~ok
        _fill_lost(coeffs, lost | interp, fiber)
        rms[interp] = np.nan
        signal[hidden] = np.nan
    return TraceSet(
        coeffs=coeffs,
        lost=lost,
        rms=rms,
        bin_cols=bin_cols,
        bin_centres=centres,
        signal=signal,
        u0=u0,
        bad_flat=bad_flat,
        slit_shift=shift,
    )


def _fit_traces(
    centres: np.ndarray, skip: np.ndarray, design: np.ndarray, cfg: TraceConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clipped polynomial fit of every fiber not in ``skip``; fibers with too few bins join ``lost``.

    All fibers at once: each clipping round is one batched least-squares solve (normal equations
    of the ``(bins, degree + 1)`` design, weights 0/1), the same rounds and stopping rule as fitting
    one fiber after the other (``tests/reduce_references.py`` keeps the per-fiber loop as the reference); the
    coefficients agree with it to ~1e-12 rows.
    """
    n_fibers = centres.shape[0]
    n_par = design.shape[1]
    lost = skip.copy()
    coeffs = np.zeros((n_fibers, n_par))
    rms = np.full(n_fibers, np.nan)
    finite = np.isfinite(centres)
    y = np.where(finite, centres, 0.0)
    use = finite.copy()
    active = ~skip
    c = np.zeros((n_fibers, n_par))
    for _ in range(3):
        short = active & (use.sum(axis=1) < cfg.min_bins)
        active &= ~short
        if not active.any():
            break
        ids = np.flatnonzero(active)
        w = use[ids].astype(np.float64)  # (k, bins)
        ata = np.einsum("kb,bi,bj->kij", w, design, design)
        aty = np.einsum("kb,bi->ki", w * y[ids], design)
        full = w.sum(axis=1) >= n_par
        c[ids[full]] = np.linalg.solve(ata[full], aty[full][..., None])[..., 0]
        for k in np.flatnonzero(~full):  # fewer bins than parameters: lstsq's minimum-norm answer
            c[ids[k]] = np.linalg.lstsq(design[use[ids[k]]], centres[ids[k], use[ids[k]]], rcond=None)[0]
        resid = centres[ids] - c[ids] @ design.T  # NaN where not finite
        med = np.nanmedian(np.where(use[ids], np.abs(resid), np.nan), axis=1)
        sig = 1.4826 * med + 1e-3
        with np.errstate(invalid="ignore"):
            new = finite[ids] & (np.abs(resid) < cfg.clip_sigma * sig[:, None])
        done = np.all(new == use[ids], axis=1)
        use[ids[~done]] = new[~done]
        active[ids[done]] = False
    bad = ~skip & (use.sum(axis=1) < cfg.min_bins)
    lost |= bad
    ok = ~skip & ~bad
    coeffs[ok] = c[ok]
    fit = c[ok] @ design.T
    n_use = use[ok].sum(axis=1)
    rms[ok] = np.sqrt(np.sum(np.where(use[ok], (y[ok] - fit) ** 2, 0.0), axis=1) / n_use)
    return coeffs, rms, lost


def _fill_lost(coeffs: np.ndarray, lost: np.ndarray, fiber: FiberConfig) -> None:
    """Give ``lost`` fibers a trace interpolated (or extrapolated at the ends) from the traced ones."""
    good = np.flatnonzero(~lost)
    if good.size == 0:
        return
    idx = np.arange(coeffs.shape[0])
    for k in range(coeffs.shape[1]):
        if good.size >= 2:
            coeffs[lost, k] = np.interp(idx[lost], good, coeffs[good, k])
            if k == 0:  # beyond the ends, keep the pitch
                lo, hi = idx[lost] < good[0], idx[lost] > good[-1]
                coeffs[np.flatnonzero(lost)[lo], 0] = coeffs[good[0], 0] - fiber.pitch_px * (good[0] - idx[lost][lo])
                coeffs[np.flatnonzero(lost)[hi], 0] = coeffs[good[-1], 0] + fiber.pitch_px * (idx[lost][hi] - good[-1])
        else:
            coeffs[lost, k] = coeffs[good[0], k]
            if k == 0:
                coeffs[lost, 0] += fiber.pitch_px * (idx[lost] - good[0])
