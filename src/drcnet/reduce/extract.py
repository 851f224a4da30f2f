"""Extracting 1D spectra from the paper's stripes: boxcar (aperture) and optimal (Horne 1986).

All functions work on every fiber at once: stripes are ``(n_fibers, 11, n_cols)``, cut by
:mod:`drcnet.reduce.stripes`; spikes left in the 1D spectra are :mod:`drcnet.reduce.spikes`'.

* :func:`boxcar_extract` -- the aperture sum of a stripe and its inverse variance (the forward model's
  dataset path uses it too); :func:`boxcar` applies it to every fiber;
* :func:`optimal_extract` -- Horne (1986, PASP 98, 609): profile-weighted fit with the
  spatial profile of the lamp flat, variance from gain and read noise, iterative
  rejection of cosmic-ray pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPTIMAL_CHUNK_FIBERS = 8
"""Fibers extracted together by :func:`optimal_extract` and :func:`boxcar`: their working arrays stay in
the CPU's cache."""


def boxcar_extract(stripe: np.ndarray, gain: float, read_noise_adu: float) -> tuple[np.ndarray, np.ndarray]:
    """Aperture (boxcar) sum over the stripe's rows and its inverse variance.

    The variance of each net pixel is its photo-electron count over the gain
    squared plus the read noise: ``max(net, 0) / gain + read_noise_adu**2`` ADU^2.

    Parameters
    ----------
    stripe : numpy.ndarray
        Net ADU ``(rows, n_cols, ...)``: the sum runs over axis 0.
    gain : float
        e-/ADU.
    read_noise_adu : float
        Read noise per pixel (ADU).

    Returns
    -------
    flux, ivar
        ``stripe.shape[1:]`` each: ADU and 1/ADU^2.
    """
    flux = stripe.sum(axis=0)
    var = np.clip(stripe, 0, None)  # one temporary, updated in place: the same operations
    if var.dtype.kind != "f":
        var = var.astype(np.float64)  # integer stripes: true division, as ``np.clip(...) / gain`` did
    var /= gain
    var += read_noise_adu**2
    var = var.sum(axis=0)
    return flux, 1.0 / var


def boxcar(
    stripes: np.ndarray, gain: float, read_noise_adu: float, chunk: int = OPTIMAL_CHUNK_FIBERS
) -> tuple[np.ndarray, np.ndarray]:
    """Aperture sum of every stripe and its inverse variance ``(n_fibers, n_cols)`` each.

    :func:`boxcar_extract` (the dataset path's extraction) on the stripes' row axis
    (stripes ``(n_fibers, 11, n_cols)``), ``chunk`` fibers at a time (the same numbers; the
    temporaries stay in the cache).
    """
    n_f = stripes.shape[0]
    if n_f <= chunk:
        return boxcar_extract(np.moveaxis(stripes, 1, 0), gain, read_noise_adu)
    parts = [
        boxcar_extract(np.moveaxis(stripes[i : i + chunk], 1, 0), gain, read_noise_adu) for i in range(0, n_f, chunk)
    ]
    return np.concatenate([f for f, _ in parts]), np.concatenate([v for _, v in parts])


def spatial_profile(flat_stripes: np.ndarray, smooth: int = 9) -> np.ndarray:
    """Normalised spatial profile per column from the flat's stripes (same pixels as the science stripes).

    Negative pixels are set to 0, each column is divided by its sum over the
    aperture. ``smooth`` > 1 averages the flat over that many columns first,
    along each stripe row (the profile changes slowly; where the rounded trace
    steps by a row the running mean is taken in CCD rows, not stripe rows,
    because the stripes are cut from a smoothed flat - see :func:`smooth_columns`).
    """
    if flat_stripes.dtype == np.float32:
        # the same numbers in place: no NaN/inf to replace, and a column whose sum is 0 is all zeros already;
        # a few fibers at a time (the same numbers, in the cache)
        p = np.empty_like(flat_stripes)
        chunk = OPTIMAL_CHUNK_FIBERS
        for i in range(0, flat_stripes.shape[0], chunk):
            part = flat_stripes[i : i + chunk]
            if not np.isfinite(part).all():
                break
            q = np.maximum(part, np.float32(0), out=p[i : i + chunk])
            total = q.sum(axis=1, keepdims=True)
            np.divide(q, total, out=q, where=total > 0)
        else:
            return p
    p = np.clip(np.nan_to_num(flat_stripes, nan=0.0), 0, None).astype(np.float32)
    total = p.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, p / total, 0.0)


def smooth_columns(image: np.ndarray, size: int) -> np.ndarray:
    """Running mean of ``image`` along its columns (``size`` columns), NaN-safe (NaN counts as 0)."""
    from scipy.ndimage import uniform_filter1d

    if size <= 1:
        return image
    img = image if image.dtype == np.float32 else image.astype(np.float32)
    if np.isnan(img).any():
        img = np.nan_to_num(img, nan=0.0)  # a copy: the caller's image is left alone
    return uniform_filter1d(img, size, axis=1, mode="nearest")


@dataclass
class OptimalResult:
    """Result of :func:`optimal_extract` (arrays ``(n_fibers, n_cols)`` unless said otherwise)."""

    flux: np.ndarray
    ivar: np.ndarray
    rejected: np.ndarray
    """``(n_fibers, 11, n_cols)`` pixels rejected as outliers (cosmic rays, bad pixels)."""
    model: np.ndarray
    """``(n_fibers, 11, n_cols)`` ``flux * profile``: the fitted stripe."""
    spikes: np.ndarray | None = None
    """``(n_fibers, n_cols)`` columns repaired as spikes along wavelength (set by the caller), or None."""
    profile_shift: np.ndarray | None = None
    """``(n_fibers,)`` shift (px) of the science light against the flat's profile, measured before the
    extraction (:func:`drcnet.reduce.flexure.recentre_profile`; set by the caller), or None."""
    chi2: np.ndarray | None = None
    """``(n_fibers,)`` chi^2 per degree of freedom of each stripe after the fit (:func:`extraction_chi2`, its
    first column; set by the caller), or None: about 1 where the stripe is the profile times the spectrum."""
    filled: np.ndarray | None = None
    """``(n_fibers, n_cols)`` columns with no pixel left to fit (all masked ``bad`` or rejected): their flux
    is interpolated along wavelength from the fiber's nearest fitted columns and ``model`` follows it; ivar 0."""


def optimal_extract(
    stripes: np.ndarray,
    profile: np.ndarray,
    gain: float,
    read_noise_adu: float,
    clip_sigma: float = 5.0,
    iterations: int = 3,
    bad: np.ndarray | None = None,
    chunk: int = OPTIMAL_CHUNK_FIBERS,
) -> OptimalResult:
    """Horne (1986) optimal extraction of every stripe.

    With the normalised spatial profile ``P`` (sum 1 over the aperture, per
    column), the data ``D`` and the variance model ``V = max(f P, 0) / gain +
    read_noise^2`` (ADU^2), each column's flux is ``f = sum(M P D / V) / sum(M P^2 / V)``
    with variance ``sum(M P) / sum(M P^2 / V)``. ``M`` masks pixels whose
    residual exceeds ``clip_sigma`` standard deviations (the worst one per
    column and iteration, as Horne does) and ``bad`` pixels. The flux is on
    the same scale as the boxcar sum over the aperture. A column with no pixel
    left (a bad column segment across the aperture) has no measurement: its ivar is 0, and its flux
    is interpolated linearly along wavelength from the fiber's nearest fitted columns (``filled``;
    the model follows), so a repaired stripe or a network's 1D input holds no zero column there.

    The stripes are converted to float32, then NaN pixels set to 0. Every fiber's fit is its
    own: the fibers are fitted ``chunk`` at a time (:func:`_optimal_fibers`), which gives the
    numbers of one pass over all of them while the working arrays fit in the cache.
    """
    n_f = stripes.shape[0]
    model = np.empty(stripes.shape, dtype=np.float32)
    rejected = np.zeros(stripes.shape, dtype=bool)
    filled = np.zeros((n_f, stripes.shape[2]), dtype=bool)
    flux, ivar = [], []
    step = max(chunk, 1)
    for i in range(0, n_f, step):
        part = slice(i, i + step)
        f, v = _optimal_fibers(
            stripes[part],
            profile[part],
            gain,
            read_noise_adu,
            clip_sigma,
            iterations,
            None if bad is None else bad[part],
            model[part],
            rejected[part],
            filled[part],
        )
        flux.append(f)
        ivar.append(v)
    if not flux:
        empty = np.zeros((0, stripes.shape[2]), dtype=np.float32)
        return OptimalResult(flux=empty, ivar=empty.copy(), rejected=rejected, model=model, filled=filled)
    return OptimalResult(
        flux=np.concatenate(flux), ivar=np.concatenate(ivar), rejected=rejected, model=model, filled=filled
    )


def repaired_stripes(
    stripes: np.ndarray, fit: OptimalResult, bad: np.ndarray | None = None, outliers: bool | np.ndarray = False
) -> np.ndarray:
    """``stripes`` with the pixels ``bad`` marks (and, with ``outliers``, those the fit rejected) replaced
    by the fit's model (profile x optimal flux): what the reduction hands a network that reads stripes.

    Parameters
    ----------
    stripes
        ``(n_fibers, 11, n_cols)`` net ADU, the stripes :func:`optimal_extract` fitted.
    fit
        That fit.
    bad
        ``(n_fibers, 11, n_cols)`` masked pixels (the bad-pixel map, NaN pixels), or None.
    outliers
        Replace the pixels the fit rejected as well (cosmic rays, hot pixels in no map): True for every
        fiber, or a ``(n_fibers,)`` bool array naming the fibers.

    Returns
    -------
    numpy.ndarray
        A new array (``stripes`` itself when nothing is to be replaced).
    """
    mask = None if bad is None or not bad.any() else bad
    which = np.broadcast_to(np.asarray(outliers, dtype=bool), (stripes.shape[0],))
    if which.any() and fit.rejected.any():
        out = fit.rejected & which[:, None, None]
        mask = out if mask is None else mask | out
    return stripes if mask is None else np.where(mask, fit.model, stripes)


def interpolate_row_gaps(values: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """``values`` ``(n, n_cols)`` with each row's ``empty`` columns interpolated from its other columns.

    Linear in the column index (:func:`numpy.interp`), the nearest value beyond either end; a row with no
    other column is left as it is. Returns a new array of ``values``' dtype.
    """
    out = np.array(values, copy=True)
    cols = np.arange(out.shape[1])
    for i in np.flatnonzero(empty.any(axis=1) & ~empty.all(axis=1)):
        good = ~empty[i]
        out[i, empty[i]] = np.interp(cols[empty[i]], cols[good], out[i, good])
    return out


def extraction_chi2(
    stripes: np.ndarray,
    fit: OptimalResult,
    gain: float,
    read_noise_adu: float,
    bad: np.ndarray | None = None,
    chunk: int = OPTIMAL_CHUNK_FIBERS,
) -> np.ndarray:
    """What each stripe holds beyond its optimal spectrum: the residual of ``stripes - fit.model``.

    Parameters
    ----------
    stripes : numpy.ndarray
        ``(n_fibers, n_rows, n_cols)`` net ADU, the stripes ``fit`` was made from.
    fit : OptimalResult
        :func:`optimal_extract` of them (its ``model`` is profile x flux, ``rejected`` its outliers).
    gain, read_noise_adu : float
        e-/ADU and ADU: the fit's variance model ``max(model, 0) / gain + read_noise_adu^2`` (ADU^2).
    bad : numpy.ndarray, optional
        ``(n_fibers, n_rows, n_cols)`` pixels to leave out as well (a bad-pixel mask).
    chunk : int
        Fibers per step (the working arrays stay small; the numbers do not depend on it).

    Returns
    -------
    numpy.ndarray
        ``(n_fibers, 3)``: chi^2 per degree of freedom over all rows (pixels used less one fitted flux per
        column that has a pixel used), and chi^2 per pixel over the 7 central rows and over the 2 + 2
        outermost rows. Pixels the fit rejected, ``bad`` marks (pass the mask the fit was given) or that
        are not finite are left out.

    Raises
    ------
    ValueError
        Stripes of an even number of rows or fewer than 11 (the central and outer rows would overlap).

    Notes
    -----
    If a stripe is its profile times a spectrum plus Gaussian noise of the variance model, the optimal
    spectrum is a sufficient statistic for that spectrum (the weighted least-squares estimate of a linear
    model, Horne 1986) and the residual is noise: the first number is 1 (to ``sqrt(2 / dof)``), the central
    rows give a little less and the outer rows a little more per pixel, since each column's flux is fitted
    mostly on the centre. An excess is light the profile model does not describe (a neighbour's halo,
    scattered light, a trace error, defects): what a 2D stripe holds that its 1D spectrum lacks.
    """
    data = np.asarray(stripes)
    n_rows = data.shape[1]
    if n_rows < 11 or n_rows % 2 == 0:
        raise ValueError(f"extraction_chi2 needs stripes of an odd number of rows >= 11, got {n_rows}")
    # float32, in place and a chunk of fibers at a time (as the fit itself): about a quarter of the fit's cost,
    # no stripe-sized temporaries; the sums are float64
    mid = n_rows // 2
    rows = (np.arange(mid - 3, mid + 4), np.r_[0:2, n_rows - 2 : n_rows])
    out = np.empty((data.shape[0], 3))
    step = max(chunk, 1)
    for i in range(0, data.shape[0], step):
        part = slice(i, i + step)
        use = np.isfinite(data[part])
        use &= ~fit.rejected[part]
        if bad is not None:
            use &= ~bad[part]
        model = fit.model[part]
        chi = np.subtract(data[part], model, dtype=np.float32)
        np.square(chi, out=chi)
        chi /= _variance(model, gain, read_noise_adu, np.empty(model.shape, dtype=np.float32))
        chi[~use] = 0.0
        fitted_cols = use.any(axis=1).sum(axis=1)  # one flux fitted per column that has a pixel left
        out[part, 0] = chi.sum(axis=(1, 2), dtype=np.float64) / np.maximum(use.sum(axis=(1, 2)) - fitted_cols, 1)
        for k, r in enumerate(rows, start=1):
            out[part, k] = chi[:, r].sum(axis=(1, 2), dtype=np.float64) / np.maximum(use[:, r].sum(axis=(1, 2)), 1)
    return out


def _variance(model: np.ndarray, gain: float, read_noise_adu: float, out: np.ndarray) -> np.ndarray:
    """Horne's variance model ``max(model, 0) / gain + read_noise^2`` (ADU^2) into ``out`` (float32)."""
    np.maximum(model, 0, out=out)
    np.multiply(out, np.float32(1.0 / gain), out=out)
    np.add(out, np.float32(read_noise_adu**2), out=out)
    return out


def _optimal_fibers(
    stripes: np.ndarray,
    profile: np.ndarray,
    gain: float,
    read_noise_adu: float,
    clip_sigma: float,
    iterations: int,
    bad: np.ndarray | None,
    model: np.ndarray,
    rejected: np.ndarray,
    filled: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`optimal_extract` of some fibers; fills ``model``, ``rejected`` and ``filled`` (their slices),
    returns flux and ivar."""
    # the float32 cast first, then NaN -> 0 and +-inf -> float32's extremes: what the reduction did when it cast
    # the stripes before calling this (an inf pixel, masked bad, then weighs 0 instead of giving inf x 0 = NaN)
    d = np.nan_to_num(stripes.astype(np.float32), copy=False, nan=0.0)
    p = profile.astype(np.float32, copy=False)
    mask = np.ones(d.shape, dtype=bool) if bad is None else ~bad
    maskf = mask.astype(np.float32)
    clip2 = np.float32(clip_sigma**2)
    f = np.einsum("ijk,ijk->ik", d, maskf) / np.maximum(np.einsum("ijk,ijk->ik", p, maskf), 1e-12)
    f = f.astype(np.float32)
    var = np.empty_like(d)
    work = np.empty_like(d)

    def update(f: np.ndarray) -> None:
        np.multiply(f[:, None, :], p, out=model)
        _variance(model, gain, read_noise_adu, var)

    for _ in range(iterations):
        update(f)
        np.subtract(d, model, out=work)
        work *= work
        work /= var
        work *= maskf
        worst = work.max(axis=1)
        fib, col = np.nonzero(worst > clip2)
        if fib.size:
            # only the columns whose worst pixel is an outlier: its pixels equal to that worst residual
            hit = work[fib, :, col] == worst[fib, col][:, None]  # (columns, rows)
            maskf[fib, :, col] = np.where(hit, np.float32(0), maskf[fib, :, col])
            rejected[fib, :, col] |= hit
        np.divide(p, var, out=work)
        work *= maskf  # w = M P / V
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
    empty = psum <= 0
    if empty.any():  # no pixel left in the column: the flux from the fiber's neighbouring columns
        filled[:] = empty
        f = interpolate_row_gaps(f, empty)
        np.multiply(f[:, None, :], p, out=model)
    return f, ivar
