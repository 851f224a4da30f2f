"""Cutting the paper's stripes and extracting 1D spectra: boxcar (aperture) and optimal (Horne 1986).

All functions work on every fiber at once: stripes are ``(n_fibers, 11, n_cols)``.

* :func:`stripe_rows_all` -- ``round(trace) + k``, ``k = -5..5`` (the paper's centre pixel +-5);
* :func:`cut_stripes` -- raw pixels minus the overscan level of their own row and amplifier, the
  same arithmetic as :func:`drcnet.simulate.ccd.subtract_overscan` in the forward model;
* :func:`boxcar_extract` -- the aperture sum of a stripe and its inverse variance (the forward model's
  dataset path uses it too); :func:`boxcar` applies it to every fiber;
* :func:`optimal_extract` -- Horne (1986, PASP 98, 609): profile-weighted fit with the
  spatial profile of the lamp flat, variance from gain and read noise, iterative
  rejection of cosmic-ray pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from drcnet.conventions import STRIPE_HALF_ROWS
from drcnet.reduce.calib import amplifier_of


def stripe_rows_all(centres: np.ndarray, half: int = STRIPE_HALF_ROWS, dtype: type = np.int32) -> np.ndarray:
    """Row of every stripe pixel ``(n_fibers, 2 half + 1, n_cols)`` from trace centres ``(n_fibers, n_cols)``.

    Same rounding as :func:`drcnet.simulate.ccd.stripe_rows` (``floor(trace + 0.5)``).
    """
    centre = np.floor(centres + 0.5).astype(dtype)
    return centre[:, None, :] + np.arange(-half, half + 1, dtype=dtype)[None, :, None]


OPTIMAL_CHUNK_FIBERS = 8
"""Fibers extracted together by :func:`optimal_extract` and :func:`boxcar`: their working arrays stay in
the CPU's cache."""
RUN_MIN_MEAN_COLS = 8
"""Gather by runs (:class:`StripeRuns`) when a fiber's stripe holds runs this many columns long on average."""


@dataclass(frozen=True)
class StripeRuns:
    """The stripes cut into runs: consecutive columns of one fiber whose stripe rows are the same CCD rows.

    Run ``i`` is fiber ``fiber[i]``, stripe columns ``start[i]:stop[i]`` (consecutive data columns, one
    amplifier), CCD rows ``top[i]`` .. ``top[i] + n_rows - 1``: a plain 2D block of the image, so the
    stripes are filled by block copies instead of a pixel-by-pixel gather.
    """

    fiber: list[int]
    start: list[int]
    stop: list[int]
    top: list[int]
    col: list[int]
    """Data column of ``start``."""
    amp: list[int]
    """Amplifier of the run (0 = A, 1 = B)."""

    @classmethod
    def from_top(cls, top: np.ndarray, cols: np.ndarray, amp_boundary: int,
                 min_mean_cols: int = RUN_MIN_MEAN_COLS) -> StripeRuns | None:
        """The runs of stripes whose first row is ``top`` ``(n_fibers, n_cols)`` at ``cols``, or None.

        A run stays on one amplifier (``amp_boundary``: the first data column of amplifier B).

        None when the runs are shorter than ``min_mean_cols`` on average (then the pixel
        gather is as fast). Rows must lie on the image (the caller checks).
        """
        n_f, n_c = top.shape
        if n_f * n_c == 0:
            return None
        c = cols.astype(np.intp)
        amp = amplifier_of(c, amp_boundary)
        breaks = np.ones((n_f, n_c), dtype=bool)
        np.not_equal(top[:, 1:], top[:, :-1], out=breaks[:, 1:])
        breaks[:, 1:] |= ((c[1:] != c[:-1] + 1) | (amp[1:] != amp[:-1]))[None, :]
        fiber, start = np.nonzero(breaks)
        if fiber.size * min_mean_cols > n_f * n_c:
            return None
        stop = np.empty_like(start)
        stop[:-1] = start[1:]
        stop[np.append(fiber[1:] != fiber[:-1], True)] = n_c
        return cls(fiber=fiber.tolist(), start=start.tolist(), stop=stop.tolist(),
                   top=top[fiber, start].tolist(), col=c[start].tolist(), amp=amp[start].tolist())

    def copy_into(self, out: np.ndarray, image: np.ndarray, col_offset: int = 0) -> None:
        """``out[f, :, a:b] = image[top:top + n_rows, col + col_offset ...]`` for every run (exact copies)."""
        n_r = out.shape[1]
        for f, a, b, r, c in zip(self.fiber, self.start, self.stop, self.top, self.col):
            c += col_offset
            out[f, :, a:b] = image[r:r + n_r, c:c + b - a]

    def fill_levels(self, out: np.ndarray, level: np.ndarray) -> None:
        """``out[f, k, c] = level[row, amplifier]`` of every stripe pixel (``level`` ``(rows, 2)``)."""
        n_r = out.shape[1]
        for f, a, b, r, m in zip(self.fiber, self.start, self.stop, self.top, self.amp):
            out[f, :, a:b] = level[r:r + n_r, m, None]


@dataclass
class StripePixels:
    """Where every stripe pixel lies on the CCD: rows ``(n_fibers, 11, n_cols)`` and columns ``(n_cols,)``.

    Computed once per arm and reused for the science frame, the flat and its
    smoothed copy. :meth:`take` copies blocks of constant rows (:class:`StripeRuns`) when
    the traces allow it (every pixel on the CCD, runs of several columns), else gathers with
    flat indices (:meth:`take_indexed`). Rows and indices are ``intp``: numpy's ``take``
    converts any other index type to it first, which cost ~5x the gather itself (issue 11).
    """

    centre: np.ndarray
    """``(n_fibers, n_cols)`` intp the stripe's middle row (the rounded trace; not clipped)."""
    half: int
    cols: np.ndarray
    off: np.ndarray
    """``(n_fibers, 2 half + 1, n_cols)`` pixels off the CCD (their rows are clipped to it)."""
    n_rows: int
    """Rows of the CCD."""
    amp_boundary: int
    """First data column of amplifier B."""
    _rows: np.ndarray | None = field(default=None, repr=False, compare=False)
    _index: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    _runs: list[StripeRuns | None] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def from_centres(cls, centres: np.ndarray, cols: np.ndarray, half: int = STRIPE_HALF_ROWS, *,
                     n_rows: int, amp_boundary: int) -> StripePixels:
        """Stripe pixels of traces ``centres`` ``(n_fibers, n_cols)`` at columns ``cols``; rows off the CCD are clipped (and marked in ``off``).

        ``n_rows`` and ``amp_boundary`` are the CCD's rows and the first data column of amplifier B
        (:class:`drcnet.hardware.Detector`).
        """
        centre = np.floor(centres + 0.5).astype(np.intp)   # stripe_rows_all's rounding
        cols = np.asarray(cols, dtype=np.int32)
        shape = (centre.shape[0], 2 * half + 1, centre.shape[1])
        # a NaN or huge centre is off the CCD (its integer cast wraps around: test the floats)
        on_ccd = bool(np.isfinite(centres).all()) and (centre.min() - half >= 0 and centre.max() + half < n_rows)
        if centre.size == 0 or on_ccd:
            return cls(centre=centre, half=half, cols=cols, off=np.zeros(shape, dtype=bool), n_rows=n_rows,
                       amp_boundary=amp_boundary)
        rows = centre[:, None, :] + np.arange(-half, half + 1, dtype=np.intp)[None, :, None]
        off = (rows < 0) | (rows >= n_rows)
        np.clip(rows, 0, n_rows - 1, out=rows)
        return cls(centre=centre, half=half, cols=cols, off=off, n_rows=n_rows, amp_boundary=amp_boundary, _rows=rows)

    @property
    def rows(self) -> np.ndarray:
        """``(n_fibers, 2 half + 1, n_cols)`` intp CCD row of every stripe pixel (clipped to the CCD; made once)."""
        if self._rows is None:
            k = np.arange(-self.half, self.half + 1, dtype=np.intp)
            self._rows = self.centre[:, None, :] + k[None, :, None]
        return self._rows

    @property
    def shape(self) -> tuple[int, int, int]:
        """The stripes' shape ``(n_fibers, 2 half + 1, n_cols)``."""
        return (self.centre.shape[0], 2 * self.half + 1, self.centre.shape[1])

    def runs(self) -> StripeRuns | None:
        """The stripes' :class:`StripeRuns` (computed once), or None when the pixel gather is to be used."""
        if not self._runs:
            on_ccd = not self.off.any()
            self._runs.append(StripeRuns.from_top(self.centre - self.half, self.cols, self.amp_boundary) if on_ccd
                              else None)
        return self._runs[0]

    def index(self, width: int, col_offset: int = 0) -> np.ndarray:
        """Flat indices (``intp``) of the stripe pixels in a C-contiguous image ``width`` columns wide.

        The most recent one is kept (the flat's is asked for twice in a row when it has bad pixels);
        each is as large as the stripes, so no more are kept.
        """
        key = (width, col_offset)
        if key not in self._index:
            self._index.clear()
            idx = self.rows * width
            idx += (self.cols.astype(np.intp) + col_offset)[None, None, :]
            self._index[key] = idx
        return self._index[key]

    def take(self, image: np.ndarray, col_offset: int = 0) -> np.ndarray:
        """Pixels of a 2D ``image`` at the stripe pixels (column ``c`` is image column ``c + col_offset``)."""
        runs = self.runs()
        if runs is None:
            return self.take_indexed(image, col_offset)
        out = np.empty(self.shape, dtype=image.dtype)
        runs.copy_into(out, image, col_offset)
        return out

    def take_indexed(self, image: np.ndarray, col_offset: int = 0) -> np.ndarray:
        """:meth:`take` by a gather with flat indices (any traces; the reference for the run copies)."""
        image = np.ascontiguousarray(image)
        return np.take(image.reshape(-1), self.index(image.shape[1], col_offset))


def gather(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of ``image`` at ``rows`` (``(..., n_cols)``) and columns ``cols``; rows off the CCD are clipped.

    Returns the pixels and a mask of the ones that were off the CCD.
    """
    off = (rows < 0) | (rows >= image.shape[0])
    r = np.clip(rows, 0, image.shape[0] - 1)
    return image[r, cols], off


def cut_stripes(raw_frame: np.ndarray, level: np.ndarray, pixels: StripePixels, data_col_offset: int,
                bias_columns: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The paper's stripes of every fiber, net of overscan (and bias pattern when given).

    Parameters
    ----------
    raw_frame
        The raw frame (uint16, or float with NaN); data column ``c`` is frame
        column ``c + data_col_offset``.
    level
        Overscan level ``(rows, 2)`` of amplifiers A and B.
    pixels
        The stripe pixels (:meth:`StripePixels.from_centres`).

    Returns
    -------
    stripes, raw
        Net ADU ``(n_fibers, 11, n_cols)`` float64 (NaN off the CCD), and the
        raw pixel values (for the saturation test). The arithmetic is the
        forward model's: ``raw.astype(float64) - level[row, amplifier]``.
    """
    runs = pixels.runs()
    if runs is not None:
        raw = pixels.take(raw_frame, data_col_offset)
        net = np.empty(raw.shape, dtype=np.float64)
        runs.fill_levels(net, np.asarray(level, dtype=np.float64))     # the level of each pixel
        np.subtract(raw, net, out=net, dtype=np.float64)
    else:
        raw, net = _net_indexed(raw_frame, level, pixels, data_col_offset)
    if bias_columns is not None:
        net -= bias_columns[pixels.cols]
    if pixels.off.any():
        net[pixels.off] = np.nan
    return net, raw


def _net_indexed(raw_frame: np.ndarray, level: np.ndarray, pixels: StripePixels,
                 data_col_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw stripe pixels and ``raw - level[row, amplifier]`` (float64) by pixel gathers (any traces).

    The path of :func:`cut_stripes` when the stripes have no runs (:meth:`StripePixels.runs`), and
    the reference for the run copies.
    """
    raw = pixels.take_indexed(raw_frame, data_col_offset)
    amp = amplifier_of(pixels.cols, pixels.amp_boundary).astype(np.intp)
    where = pixels.rows * level.shape[1]
    where += amp[None, None, :]
    net = np.take(np.ascontiguousarray(level, dtype=np.float64).reshape(-1), where)   # the level of each pixel
    del where
    np.subtract(raw, net, out=net, dtype=np.float64)   # raw.astype(float64) - level, without a second array
    return raw, net


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
    var = np.clip(stripe, 0, None)      # one temporary, updated in place: the same operations
    if var.dtype.kind != "f":
        var = var.astype(np.float64)    # integer stripes: true division, as ``np.clip(...) / gain`` did
    var /= gain
    var += read_noise_adu**2
    var = var.sum(axis=0)
    return flux, 1.0 / var


def boxcar(stripes: np.ndarray, gain: float, read_noise_adu: float,
           chunk: int = OPTIMAL_CHUNK_FIBERS) -> tuple[np.ndarray, np.ndarray]:
    """Aperture sum of every stripe and its inverse variance ``(n_fibers, n_cols)`` each.

    :func:`boxcar_extract` (the dataset path's extraction) on the stripes' row axis
    (stripes ``(n_fibers, 11, n_cols)``), ``chunk`` fibers at a time (the same numbers; the
    temporaries stay in the cache).
    """
    n_f = stripes.shape[0]
    if n_f <= chunk:
        return boxcar_extract(np.moveaxis(stripes, 1, 0), gain, read_noise_adu)
    parts = [boxcar_extract(np.moveaxis(stripes[i:i + chunk], 1, 0), gain, read_noise_adu)
             for i in range(0, n_f, chunk)]
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
            part = flat_stripes[i:i + chunk]
            if not np.isfinite(part).all():
                break
            q = np.maximum(part, np.float32(0), out=p[i:i + chunk])
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


def optimal_extract(stripes: np.ndarray, profile: np.ndarray, gain: float, read_noise_adu: float,
                    clip_sigma: float = 5.0, iterations: int = 3, bad: np.ndarray | None = None,
                    chunk: int = OPTIMAL_CHUNK_FIBERS) -> OptimalResult:
    """Horne (1986) optimal extraction of every stripe.

    With the normalised spatial profile ``P`` (sum 1 over the aperture, per
    column), the data ``D`` and the variance model ``V = max(f P, 0) / gain +
    read_noise^2`` (ADU^2), each column's flux is ``f = sum(M P D / V) / sum(M P^2 / V)``
    with variance ``sum(M P) / sum(M P^2 / V)``. ``M`` masks pixels whose
    residual exceeds ``clip_sigma`` standard deviations (the worst one per
    column and iteration, as Horne does) and ``bad`` pixels. The flux is on
    the same scale as the boxcar sum over the aperture.

    The stripes are converted to float32, then NaN pixels set to 0. Every fiber's fit is its
    own: the fibers are fitted ``chunk`` at a time (:func:`_optimal_fibers`), which gives the
    numbers of one pass over all of them while the working arrays fit in the cache.
    """
    n_f = stripes.shape[0]
    model = np.empty(stripes.shape, dtype=np.float32)
    rejected = np.zeros(stripes.shape, dtype=bool)
    flux, ivar = [], []
    step = max(chunk, 1)
    for i in range(0, n_f, step):
        part = slice(i, i + step)
        f, v = _optimal_fibers(stripes[part], profile[part], gain, read_noise_adu, clip_sigma, iterations,
                               None if bad is None else bad[part], model[part], rejected[part])
        flux.append(f)
        ivar.append(v)
    if not flux:
        empty = np.zeros((0, stripes.shape[2]), dtype=np.float32)
        return OptimalResult(flux=empty, ivar=empty.copy(), rejected=rejected, model=model)
    return OptimalResult(flux=np.concatenate(flux), ivar=np.concatenate(ivar), rejected=rejected, model=model)


def _optimal_fibers(stripes: np.ndarray, profile: np.ndarray, gain: float, read_noise_adu: float,
                    clip_sigma: float, iterations: int, bad: np.ndarray | None, model: np.ndarray,
                    rejected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`optimal_extract` of some fibers; fills ``model`` and ``rejected`` (their slices), returns flux and ivar."""
    # the float32 cast first, then NaN -> 0 and +-inf -> float32's extremes: what the reduction did when it cast
    # the stripes before calling this (an inf pixel, masked bad, then weighs 0 instead of giving inf x 0 = NaN)
    d = np.nan_to_num(stripes.astype(np.float32), copy=False, nan=0.0)
    p = profile.astype(np.float32, copy=False)
    mask = np.ones(d.shape, dtype=bool) if bad is None else ~bad
    maskf = mask.astype(np.float32)
    rn2 = np.float32(read_noise_adu**2)
    inv_gain = np.float32(1.0 / gain)
    clip2 = np.float32(clip_sigma**2)
    f = np.einsum("ijk,ijk->ik", d, maskf) / np.maximum(np.einsum("ijk,ijk->ik", p, maskf), 1e-12)
    f = f.astype(np.float32)
    var = np.empty_like(d)
    work = np.empty_like(d)

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
        worst = work.max(axis=1)
        fib, col = np.nonzero(worst > clip2)
        if fib.size:
            # only the columns whose worst pixel is an outlier: its pixels equal to that worst residual
            hit = work[fib, :, col] == worst[fib, col][:, None]            # (columns, rows)
            maskf[fib, :, col] = np.where(hit, np.float32(0), maskf[fib, :, col])
            rejected[fib, :, col] |= hit
        np.divide(p, var, out=work)
        work *= maskf                                   # w = M P / V
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
    return f, ivar


def spike_columns(flux: np.ndarray, ivar: np.ndarray, clip: float = 8.0, sharpness: float = 0.2,
                  gap: int = 3, width: int = 6, common: float = 0.03) -> np.ndarray:
    """Columns of 1D spectra that hold a spike narrower than any spectral feature (a cosmic-ray residue).

    A hit that covers every row of the aperture in one column (a track along the
    slit) is invisible to a per-column rejection: the whole column rises together.
    Along wavelength it stands out: a real line or sky line is resolved by several
    columns (its neighbours carry most of its peak), a hit is one or two columns
    wide. The baseline of column ``c`` is the median of columns ``c +- gap ..
    c +- (gap + width - 1)``; a column (or a pair of adjacent columns) is a spike when
    it exceeds the baseline by more than ``clip`` standard deviations while its
    outer neighbours exceed it by less than ``sharpness`` times as much. Only
    positive spikes count, and a column where more than ``common`` of the fibers
    (at least 3) show one within +-2 columns holds a narrow sky or lamp line, not a hit.

    Parameters
    ----------
    flux, ivar
        ``(n_fibers, n_cols)`` spectra and inverse variances (fibers on a common column grid, to within a few
        columns).

    Returns
    -------
    numpy.ndarray
        ``(n_fibers, n_cols)`` bool.
    """
    from scipy.ndimage import median_filter

    f = np.asarray(flux, dtype=np.float64)
    reach = gap + width - 1
    base = _gapped_median(f, gap, width) if width == 6 and np.isfinite(f).all() else None
    if base is None:
        footprint = np.zeros((1, 2 * reach + 1), dtype=bool)
        footprint[0, :width] = True
        footprint[0, -width:] = True
        base = median_filter(f, footprint=footprint, mode="nearest")
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.where(ivar > 0, 1.0 / np.sqrt(np.maximum(ivar, 1e-30)), np.inf)
    ex = f - base
    pad = np.pad(ex, ((0, 0), (2, 2)), mode="edge")
    left1, right1, right2 = pad[:, 1:-3], pad[:, 3:-1], pad[:, 4:]
    strong = ex > clip * sigma
    single = strong & (left1 < sharpness * ex) & (right1 < sharpness * ex)
    pair_peak = np.minimum(ex, right1)
    pair = strong & np.roll(strong, -1, axis=1) & (left1 < sharpness * pair_peak) & (right2 < sharpness * pair_peak)
    pair[:, -1] = False
    out = single | pair
    out[:, 1:] |= pair[:, :-1]
    per_col = np.convolve(out.sum(axis=0), np.ones(5), mode="same")
    out &= (per_col <= max(3, common * out.shape[0]))[None, :]
    return out


# A sorting network for 12 inputs (39 comparators, depth 9; checked on all 2**12 0-1 inputs in the tests)
_SORT12 = (((0, 8), (1, 7), (2, 6), (3, 11), (4, 10), (5, 9)), ((0, 1), (2, 5), (3, 4), (6, 9), (7, 8), (10, 11)),
           ((0, 2), (1, 6), (5, 10), (9, 11)), ((0, 3), (1, 2), (4, 6), (5, 7), (8, 11), (9, 10)),
           ((1, 4), (3, 5), (6, 8), (7, 10)), ((1, 3), (2, 5), (6, 9), (8, 10)), ((2, 3), (4, 5), (6, 7), (8, 9)),
           ((4, 6), (5, 7)), ((3, 4), (5, 6), (7, 8)))


def _selection_network(network: tuple[tuple[tuple[int, int], ...], ...], out: int) -> list[tuple[int, int]]:
    """The comparators of a sorting network that the output ``out`` depends on, in order."""
    need = {out}
    keep = []
    for layer in reversed(network):
        for a, b in reversed(layer):
            if a in need or b in need:
                need |= {a, b}
                keep.append((a, b))
    return keep[::-1]


_MEDIAN12 = _selection_network(_SORT12, 6)


def _gapped_median(f: np.ndarray, gap: int, width: int, chunk: int = 64) -> np.ndarray:
    """``scipy.ndimage.median_filter(f, footprint=[width x True, gap gap, width x True], mode="nearest")`` for
    ``width == 6`` (12 neighbours: the 7th smallest, scipy's rank ``size // 2``), exactly, by a selection
    network of element-wise min/max over the shifted rows (~3x faster than scipy's generic rank filter).

    ``f`` ``(n, n_cols)`` float64 holding float32 values (the optimal spectra): the network runs in float32,
    which holds them exactly.
    """
    reach = gap + width - 1
    offs = [*range(-reach, -gap + 1), *range(gap, reach + 1)]
    n, m = f.shape
    f32 = f.astype(np.float32)
    if not np.array_equal(f32, f):
        return median_filter_exact(f, gap, width)
    p = np.pad(f32, ((0, 0), (reach, reach)), mode="edge")
    out = np.empty(f.shape, dtype=np.float64)
    for a in range(0, n, chunk):
        v = [np.array(p[a:a + chunk, reach + o: reach + o + m]) for o in offs]
        for i, j in _MEDIAN12:
            lo = np.minimum(v[i], v[j])
            np.maximum(v[i], v[j], out=v[j])
            v[i] = lo
        out[a:a + chunk] = v[6]
    return out


def median_filter_exact(f: np.ndarray, gap: int, width: int) -> np.ndarray:
    """The reference for :func:`_gapped_median`: scipy's median filter with the gapped footprint."""
    from scipy.ndimage import median_filter

    reach = gap + width - 1
    footprint = np.zeros((1, 2 * reach + 1), dtype=bool)
    footprint[0, :width] = True
    footprint[0, -width:] = True
    return median_filter(f, footprint=footprint, mode="nearest")


def repair_spikes(flux: np.ndarray, ivar: np.ndarray, spikes: np.ndarray) -> None:
    """Replace spike columns (:func:`spike_columns`) in place: flux by the mean of the nearest clean columns, ivar 0."""
    for f in np.flatnonzero(spikes.any(axis=1)):
        bad = spikes[f]
        good = np.flatnonzero(~bad)
        if good.size:
            cols = np.flatnonzero(bad)
            flux[f, cols] = np.interp(cols, good, flux[f, good])
        ivar[f, bad] = 0.0
