"""Per-fiber reference implementations of the reduction steps that now run on all fibers at once.

Kept here, outside the package, as the truth the batched versions in ``drcnet.reduce`` are tested against
(``tests/reduce/test_vectorised_reduce.py``): the same clipped fits and medians, one fiber after the other.
"""

from __future__ import annotations

import numpy as np

from drcnet.instrument.config import U0
from drcnet.reduce.trace import TraceConfig
from drcnet.reduce.wavecal import WavecalConfig


def fit_traces_per_fiber(
    centres: np.ndarray, skip: np.ndarray, design: np.ndarray, cfg: TraceConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def fit_offsets_per_fiber(
    measured: np.ndarray, nominal: np.ndarray, lost: np.ndarray, cfg: WavecalConfig
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


def cut_stripes_by_gather(
    raw_frame: np.ndarray,
    level: np.ndarray,
    centres: np.ndarray,
    cols: np.ndarray,
    data_col_offset: int,
    bias_columns: np.ndarray | None = None,
    half: int = 5,
    n_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Stripes net of overscan by a pixel-by-pixel gather: the reference for the run copies of ``cut_stripes``.

    Rows ``floor(trace + 0.5) + k``; rows off the CCD are clipped and their pixels set to NaN.
    """
    n_rows = raw_frame.shape[0] if n_rows is None else n_rows
    rows = np.floor(centres + 0.5).astype(np.intp)[:, None, :] + np.arange(-half, half + 1)[None, :, None]
    off = (rows < 0) | (rows >= n_rows)
    rows = np.clip(rows, 0, n_rows - 1)
    c = np.asarray(cols, dtype=np.intp)[None, None, :]
    raw = raw_frame[rows, c + data_col_offset]
    amp = (c >= 2048).astype(np.intp)
    net = raw.astype(np.float64) - np.asarray(level, dtype=np.float64)[rows, amp]
    if bias_columns is not None:
        net -= bias_columns[np.asarray(cols)]
    net[off] = np.nan
    return net, raw


def optimal_extract_one_pass(
    stripes: np.ndarray,
    profile: np.ndarray,
    gain: float,
    read_noise_adu: float,
    clip_sigma: float = 5.0,
    iterations: int = 3,
    bad: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Horne extraction of all fibers in one pass over the whole arrays (the implementation the chunked
    ``optimal_extract`` replaced); returns flux, ivar, rejected, model. ``stripes`` float32."""
    d = np.nan_to_num(stripes, nan=0.0).astype(np.float32, copy=False)
    p = profile.astype(np.float32, copy=False)
    maskf = (np.ones(d.shape, dtype=bool) if bad is None else ~bad).astype(np.float32)
    rn2, inv_gain, clip2 = np.float32(read_noise_adu**2), np.float32(1.0 / gain), np.float32(clip_sigma**2)
    f = (np.einsum("ijk,ijk->ik", d, maskf) / np.maximum(np.einsum("ijk,ijk->ik", p, maskf), 1e-12)).astype(np.float32)
    rejected = np.zeros(d.shape, dtype=bool)
    model, var, work = np.empty_like(d), np.empty_like(d), np.empty_like(d)

    def update(f: np.ndarray) -> None:
        np.multiply(f[:, None, :], p, out=model)
        np.maximum(model, 0, out=var)
        np.multiply(var, inv_gain, out=var)
        np.add(var, rn2, out=var)

    for _ in range(iterations):
        update(f)
        np.subtract(d, model, out=work)
        work *= work
        work /= var
        work *= maskf
        worst = work.max(axis=1, keepdims=True)
        hit = (work == worst) & (worst > clip2)
        maskf[hit] = 0.0
        rejected |= hit
        np.divide(p, var, out=work)
        work *= maskf
        denom = np.einsum("ijk,ijk->ik", work, p)
        num = np.einsum("ijk,ijk->ik", work, d)
        with np.errstate(invalid="ignore", divide="ignore"):
            f = np.where(denom > 0, num / denom, 0.0).astype(np.float32)
    update(f)
    np.divide(p, var, out=work)
    work *= maskf
    denom = np.einsum("ijk,ijk->ik", work, p)
    psum = np.einsum("ijk,ijk->ik", p, maskf)
    with np.errstate(invalid="ignore", divide="ignore"):
        ivar = np.where((denom > 0) & (psum > 0), denom / psum, 0.0)
    empty = psum <= 0  # columns with no pixel left: flux interpolated from the fiber's other columns
    cols = np.arange(f.shape[1])
    for i in range(f.shape[0]):
        if empty[i].any() and not empty[i].all():
            f[i, empty[i]] = np.interp(cols[empty[i]], cols[~empty[i]], f[i, ~empty[i]])
    np.multiply(f[:, None, :], p, out=model)
    return f, ivar, rejected, model
