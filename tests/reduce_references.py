"""Per-fiber reference implementations of the reduction steps that now run on all fibers at once.

Kept here, outside the package, as the truth the batched versions in ``drcnet.reduce`` are tested against
(``tests/test_reduce_speed.py``): the same clipped fits and medians, one fiber after the other.
"""

from __future__ import annotations

import numpy as np

from drcnet.instrument.config import U0
from drcnet.reduce.trace import TraceConfig
from drcnet.reduce.wavecal import WavecalConfig


def fit_traces_per_fiber(centres: np.ndarray, skip: np.ndarray, design: np.ndarray,
                          cfg: TraceConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference for ``drcnet.reduce.trace._fit_traces``: the same clipped fit, one fiber after the other (``np.linalg.lstsq``)."""
    n_fibers = centres.shape[0]
    lost = skip.copy()
    coeffs = np.zeros((n_fibers, design.shape[1]))
    rms = np.full(n_fibers, np.nan)
    for f in np.flatnonzero(~skip):
        use = np.isfinite(centres[f])
        c = np.zeros(design.shape[1])
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
    return coeffs, rms, lost


def fit_offsets_per_fiber(measured: np.ndarray, nominal: np.ndarray, lost: np.ndarray, cfg: WavecalConfig
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reference for ``drcnet.reduce.wavecal.fit_offsets``: the same clipped fit, one fiber after the other."""
    n_f = measured.shape[0]
    shift = np.zeros(n_f)
    stretch = np.zeros(n_f)
    rms = np.full(n_f, np.nan)
    n_lines = np.zeros(n_f, dtype=int)
    used = np.zeros(measured.shape, dtype=bool)
    u = nominal - U0
    for f in np.flatnonzero(~lost):
        d = measured[f] - nominal
        ok = np.isfinite(d)
        for _ in range(4):
            if ok.sum() < cfg.degree + 2:
                break
            if cfg.degree == 0:
                a, b = float(np.mean(d[ok])), 0.0
            else:
                b, a = np.polyfit(u[ok], d[ok], 1)
            resid = d - (a + b * u)
            s = max(1.4826 * float(np.nanmedian(np.abs(resid[ok]))), 0.02)
            new = np.isfinite(d) & (np.abs(resid) < cfg.clip_sigma * s)
            if np.array_equal(new, ok):
                break
            ok = new
        if ok.sum() < cfg.degree + 2:
            continue
        shift[f], stretch[f] = a, b
        rms[f] = float(np.sqrt(np.mean((d[ok] - (a + b * u[ok])) ** 2)))
        n_lines[f] = int(ok.sum())
        used[f] = ok
    return shift, stretch, rms, n_lines, used


def clean_sky_per_fiber(norm: np.ndarray, sky_wave: np.ndarray, clip_sigma: float = 4.0) -> np.ndarray:
    """Reference for ``drcnet.reduce.sky.clean_sky``: one sky fiber after the other."""
    n_sky = norm.shape[0]
    clean = norm.copy()
    if n_sky >= 3:
        for s in range(n_sky):
            others = np.stack([np.interp(sky_wave[s], sky_wave[t], norm[t]) for t in range(n_sky)])
            med = np.median(others, axis=0)
            mad = 1.4826 * np.median(np.abs(others - med), axis=0)
            scale = np.maximum(mad, np.sqrt(np.clip(np.abs(med), 1.0, None)))
            bad = np.abs(norm[s] - med) > clip_sigma * scale
            bad = bad | np.roll(bad, 1) | np.roll(bad, -1)
            clean[s] = np.where(bad, med, norm[s])
    return clean
