"""Tracing every fiber on a lamp flat, vectorised over the fibers.

1. The flat's columns are averaged in bins (default 64 columns).
2. Fibers are found as peaks of the central bins and numbered by their
   position on the nominal slit (first row + pitch * index, offset fitted), so
   a dead fiber leaves a gap rather than shifting the numbering.
3. From the centre outward, every fiber's centre in each bin is refined by a
   Gaussian-weighted windowed centroid started from its centre in the
   previous bin (all fibers at once).
4. A low-order polynomial in ``v = (x - 2047.5) / 2047.5`` is fitted per fiber,
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
from drcnet.instrument.config import U0, FiberConfig
from drcnet.reduce.centroid import windowed_centroid


class TraceConfig(BaseModel):
    """Options of :func:`trace_fibers`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bin_width: int = Field(64, ge=4, description="columns averaged per bin")
    degree: int = Field(3, ge=1, le=6, description="polynomial degree of each trace")
    half_window: int = Field(7, ge=2, description="centroid window half width (rows)")
    min_signal: float = Field(0.1, gt=0, lt=1, description="a bin is used when its flat signal exceeds this share of the fiber's median")
    lost_signal: float = Field(0.05, gt=0, lt=1, description="a fiber is lost when its flat signal is below this share of the median fiber")
    min_bins: int = Field(8, ge=3, description="fewest usable bins for a trace")
    clip_sigma: float = Field(4.0, gt=1)


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

    @property
    def n_fibers(self) -> int:
        """Fibers on the slit."""
        return int(self.coeffs.shape[0])

    def centres(self, cols: np.ndarray) -> np.ndarray:
        """Trace rows ``(n_fibers, len(cols))`` at columns ``cols``."""
        v = (np.asarray(cols, dtype=float) - U0) / U0
        powers = v[None, :] ** np.arange(self.coeffs.shape[1])[:, None]
        return self.coeffs @ powers

    def summary(self) -> dict[str, object]:
        """JSON-ready numbers: fibers, lost fibers (1-based), median fit rms (rows)."""
        ok = ~self.lost
        return {"n_fibers": self.n_fibers, "n_lost": int(self.lost.sum()),
                "lost_fibers": (np.flatnonzero(self.lost) + 1).tolist(),
                "median_rms_px": float(np.nanmedian(self.rms[ok])) if ok.any() else float("nan")}


def bin_columns(image: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Average ``image`` over bins of ``width`` columns: ``(rows, n_bins)`` and the bins' mean columns."""
    n_bins = image.shape[1] // width
    used = image[:, :n_bins * width].reshape(image.shape[0], n_bins, width)
    if image.dtype.kind == "f" and np.isnan(used).any():
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            binned = np.nanmean(used, axis=2)
    else:
        binned = used.mean(axis=2)
    cols = np.arange(n_bins) * width + (width - 1) / 2.0
    return binned, cols


def find_fibers(profile: np.ndarray, n_fibers: int, fiber: FiberConfig, lost_signal: float) -> np.ndarray:
    """Row of each fiber's peak in a cross-section (NaN where no fiber is found).

    Peaks are numbered by their place on the nominal slit
    ``first_row + pitch * index``, after fitting a common offset.
    """
    p = np.nan_to_num(profile, nan=0.0)
    height = np.percentile(p, 99.5)
    peaks, _ = find_peaks(p, distance=max(2, int(0.6 * fiber.pitch_px)), prominence=lost_signal * height)
    if peaks.size == 0:
        return np.full(n_fibers, np.nan)
    d = peaks - fiber.first_row
    offset = 0.0
    for _ in range(3):
        k = np.round((d - offset) / fiber.pitch_px)
        offset = float(np.median(d - k * fiber.pitch_px))
    k = np.round((d - offset) / fiber.pitch_px).astype(int)
    out = np.full(n_fibers, np.nan)
    best = np.full(n_fibers, -np.inf)
    for pk, idx in zip(peaks, k, strict=True):
        if 0 <= idx < n_fibers and p[pk] > best[idx]:
            out[idx], best[idx] = pk, p[pk]
    return out


def trace_fibers(flat: np.ndarray, n_fibers: int, fiber: FiberConfig, config: TraceConfig | None = None) -> TraceSet:
    """Trace ``n_fibers`` fibers on a net flat ``(rows, 4096)`` (ADU, overscan removed)."""
    cfg = config or TraceConfig()
    binned, bin_cols = bin_columns(flat, cfg.bin_width)
    n_bins = bin_cols.size
    sigma = fiber.profile_fwhm_px / FWHM_PER_SIGMA
    mid = n_bins // 2
    central = np.nanmean(binned[:, max(mid - 2, 0):mid + 2], axis=1)
    start = find_fibers(central, n_fibers, fiber, cfg.lost_signal)
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
    for direction in (range(mid, n_bins), range(mid - 1, -1, -1)):
        x = x0.copy()
        for b in direction:
            xb, fb = windowed_centroid(binned[:, b], x, sigma, cfg.half_window)
            good = np.isfinite(xb) & (fb > cfg.min_signal * f0) & (np.abs(xb - x) < 3.0)
            centres[ids[good], b] = xb[good]
            flux[ids, b] = fb
            x = np.where(good, xb, x)
    lost = ~found | (signal < cfg.lost_signal)
    coeffs = np.zeros((n_fibers, cfg.degree + 1))
    rms = np.full(n_fibers, np.nan)
    v = (bin_cols - U0) / U0
    design = v[:, None] ** np.arange(cfg.degree + 1)[None, :]
    for f in np.flatnonzero(~lost):
        use = np.isfinite(centres[f])
        for _ in range(3):
            if use.sum() < cfg.min_bins:
                break
            c, *_ = np.linalg.lstsq(design[use], centres[f, use], rcond=None)
            resid = centres[f] - design @ c
            s = 1.4826 * np.median(np.abs(resid[use])) + 1e-3
            new = np.isfinite(centres[f]) & (np.abs(resid) < cfg.clip_sigma * s)
            if np.array_equal(new, use):
                break
            use = new
        if use.sum() < cfg.min_bins:
            lost[f] = True
            continue
        coeffs[f] = c
        rms[f] = float(np.sqrt(np.mean((centres[f, use] - design[use] @ c) ** 2)))
    _fill_lost(coeffs, lost, fiber)
    return TraceSet(coeffs=coeffs, lost=lost, rms=rms, bin_cols=bin_cols, bin_centres=centres, signal=signal)


def _fill_lost(coeffs: np.ndarray, lost: np.ndarray, fiber: FiberConfig) -> None:
    """Give lost fibers a trace interpolated (or extrapolated at the ends) from the traced ones."""
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
