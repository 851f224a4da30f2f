"""Overscan and bias: from raw ADU to net ADU, per amplifier.

LAMOST's rule (``../shared/REFERENCE.md`` section 4): every pixel minus the
mean of its own row of its amplifier's overscan strip. The five bias frames of
a set then tell whether anything is left: their overscan-subtracted mean (the
master bias) is reduced to a per-column pattern, and that pattern is
subtracted only when it is *significant* - when it exceeds what the read noise
alone leaves in a mean of ``n_frames x 4136`` pixels. A master bias made of
noise only would just add its noise to every science pixel (and break the
reproduction of the forward model's stripes); a real pattern (a column
structure, an offset between the overscan and the data area) is removed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter

from drcnet.hardware import Detector
from drcnet.notices import quiet


def amp_sections(n_cols: int, amp_boundary: int) -> tuple[slice, slice]:
    """Data columns of amplifiers A (``0 .. amp_boundary - 1``) and B (the rest of ``n_cols``)."""
    return (slice(0, amp_boundary), slice(amp_boundary, n_cols))


def amplifier_of(cols: np.ndarray, amp_boundary: int) -> np.ndarray:
    """Amplifier index (0 = A, left; 1 = B, right) of data columns (int, the shape of ``cols``).

    ``amp_boundary`` is the first data column of amplifier B (:attr:`drcnet.hardware.Detector.amp_boundary`).
    """
    return (np.asarray(cols) >= amp_boundary).astype(np.intp)


def overscan_level(overscan: np.ndarray) -> np.ndarray:
    """Row mean of each amplifier's overscan strip, ``(rows, 2)`` float64 (LAMOST's bias rule).

    Parameters
    ----------
    overscan : numpy.ndarray
        Overscan pixels ``(rows, 2, n_overscan)`` of amplifiers A and B (ADU).
    """
    return overscan.astype(np.float64).mean(axis=2)


OVERSCAN_CLIP = 8.0
"""Overscan pixels further than this many robust sigma from their row's median are left out of its level."""
MIN_OVERSCAN_PIXELS = 8
"""A row with fewer usable overscan pixels takes its level from the neighbouring rows (and is reported)."""


def levels(overscan: np.ndarray) -> np.ndarray:
    """Overscan level of every row and amplifier ``(rows, 2)``: outlier-resistant, NaN pixels ignored.

    Equals :func:`overscan_level` (the plain row mean, the forward model's rule) for a
    frame without NaN or outlying overscan pixels. See :func:`robust_levels`.
    """
    return robust_levels(overscan)[0]


def robust_levels(
    overscan: np.ndarray, clip: float = OVERSCAN_CLIP, min_pixels: int = MIN_OVERSCAN_PIXELS, row_window: int = 401
) -> tuple[np.ndarray, np.ndarray]:
    """Row levels of the overscan that a cosmic ray or hot pixel cannot pull, and the rows they could not save.

    Each pixel further than ``clip`` robust standard deviations (the amplifier's
    median absolute deviation about the row medians, at least 0.5 ADU) from its
    row's median is left out, as are NaN pixels; the level is the mean of the rest
    (exactly the plain mean when nothing is left out). A row with fewer than
    ``min_pixels`` usable pixels, or whose median lies further than ``clip`` sigma
    from the running median of its ``row_window`` neighbouring rows' medians (a
    flooded or saturated overscan row), takes the level interpolated from the
    nearest good rows of its amplifier.

    Parameters
    ----------
    overscan
        ``(rows, 2, n_overscan)`` pixels of amplifiers A and B (ADU).

    Returns
    -------
    level, repaired
        ``(rows, 2)`` float64 levels, and ``(rows, 2)`` bool: rows whose level was
        interpolated (the fibers crossing them should be flagged).
    """
    o = overscan.astype(np.float64)
    finite = np.isfinite(o)
    if finite.all():
        med = sorted_median(o, axis=2, keepdims=True)
    else:
        with np.errstate(invalid="ignore"), quiet_nan_warnings():
            med = np.nanmedian(o, axis=2, keepdims=True)
    with np.errstate(invalid="ignore"), quiet_nan_warnings():
        dev = np.abs(o - med)
        sigma = np.maximum(1.4826 * np.nanmedian(dev, axis=(0, 2)), 0.5)  # (2,)
        good = finite & (dev < clip * sigma[None, :, None])
        # a whole row off its neighbours' level (a saturated or flooded overscan row) cannot be trusted either
        row_med = med[:, :, 0]
        filled = np.nan_to_num(row_med, nan=np.nanmedian(row_med))
        # one 1D running median per amplifier: scipy's 1D path is ~100x faster than the 2D
        # filter with a (row_window, 1) footprint, and gives the same numbers
        ref = np.stack(
            [median_filter(filled[:, a], size=row_window, mode="nearest") for a in range(filled.shape[1])], axis=1
        )
        row_off = ~(np.abs(row_med - ref) < clip * sigma[None, :])
    if good.all() and not row_off.any():
        return o.mean(axis=2), np.zeros(o.shape[:2], dtype=bool)
    n_good = good.sum(axis=2)
    level = np.where(good, o, 0.0).sum(axis=2) / np.maximum(n_good, 1)
    repaired = (n_good < min_pixels) | row_off
    rows = np.arange(o.shape[0])
    for a in range(o.shape[1]):
        bad = repaired[:, a]
        if bad.any():
            ok = ~bad
            level[bad, a] = np.interp(rows[bad], rows[ok], level[ok, a]) if ok.any() else np.nan
    return level, repaired


def sorted_median(values: np.ndarray, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """``np.median(values, axis=axis, keepdims=keepdims)``, the same numbers, by a sort along ``axis``.

    The median is the middle value of the sorted values, or the mean (``np.mean``, as numpy's
    median takes it) of the two middle ones: numpy's per-row selection (``partition``) costs
    ~3x a sort for short rows. Where numpy's answer could differ - NaN values (its median is
    NaN), a median of 0 (which of +0 and -0 a selection picks), non-float values - numpy's
    median is returned.
    """
    a = np.asarray(values)
    if a.dtype.kind != "f" or a.ndim == 0 or a.shape[axis] == 0 or np.isnan(a).any():
        return np.median(a, axis=axis, keepdims=keepdims)
    ax = axis % a.ndim
    n = a.shape[ax]
    s = np.sort(a, axis=ax)
    middle = s[(slice(None),) * ax + (slice((n - 1) // 2, n // 2 + 1),)]
    med = np.mean(middle, axis=ax, keepdims=keepdims)
    if not np.all(med != 0):
        return np.median(a, axis=axis, keepdims=keepdims)
    return med


@contextlib.contextmanager
def quiet_nan_warnings() -> Iterator[None]:
    """Silence numpy's all-NaN / empty-slice ``RuntimeWarning`` (the caller handles the NaN results)."""
    with quiet(RuntimeWarning):  # thread-safe: the two arms run in two threads
        yield


def net_image(
    data: np.ndarray,
    level: np.ndarray,
    amp_boundary: int,
    bias_columns: np.ndarray | None = None,
    dtype: type = np.float32,
) -> np.ndarray:
    """Net ADU of a whole data area: ``data - level[row, amp(col)] (- bias pattern)``.

    ``amp_boundary`` is the first data column of amplifier B.
    """
    out: np.ndarray = data.astype(dtype)
    for a, cols in enumerate(amp_sections(data.shape[1], amp_boundary)):
        out[:, cols] -= level[:, a].astype(dtype)[:, None]
    if bias_columns is not None:
        out -= bias_columns.astype(dtype)[None, :]
    return out


@dataclass
class BiasModel:
    """What the bias frames say about the bias left after the overscan.

    Attributes
    ----------
    columns
        Per-column pattern (ADU) of the master bias, ``(4096,)``.
    applied
        Whether the reduction subtracts it (it is significant).
    n_frames
        Bias frames used (0: none given; then nothing is subtracted).
    read_noise_adu
        Read noise measured from the bias frames (NaN without them).
    chi2
        Mean squared pattern over its expected noise (about 1 for pure noise).
    offset_adu
        Mean pattern of each amplifier (data area minus overscan).
    """

    columns: np.ndarray
    applied: bool
    n_frames: int
    read_noise_adu: float
    chi2: float
    offset_adu: tuple[float, float]

    @property
    def pattern(self) -> np.ndarray | None:
        """The per-column pattern to subtract ``(4096,)``, or None when it is not significant."""
        return self.columns if self.applied else None

    def summary(self) -> dict[str, object]:
        """JSON-ready numbers for the dataset file's calibration record."""
        return {
            "n_frames": self.n_frames,
            "applied": self.applied,
            "read_noise_adu": round(self.read_noise_adu, 3),
            "chi2": round(self.chi2, 3),
            "offset_adu": [round(o, 4) for o in self.offset_adu],
            "pattern_rms_adu": round(float(np.std(self.columns)), 4),
        }


def exact_sum(data: np.ndarray, axis: int) -> np.ndarray | None:
    """Exact integer sum of unsigned 8/16-bit pixels along ``axis``, or None for any other input.

    The accumulator (uint32, or uint64 past 65,536 terms) cannot overflow, so ``exact_sum(a, k) / n`` is
    bit for bit the float64 mean numpy computes, ~1.5x faster (raw uint16 frames: bias column means, QA
    block means). None for other dtypes or an empty axis: the caller then takes numpy's float64 mean.
    """
    n = data.shape[axis]
    if data.dtype.kind != "u" or data.dtype.itemsize > 2 or n == 0:
        return None
    return data.sum(axis=axis, dtype=np.uint32 if n <= 65536 else np.uint64)


def column_means(data: np.ndarray, level: np.ndarray, amp_boundary: int) -> np.ndarray:
    """Mean over rows of each column of ``data - level[row, amp]``, without forming the net image.

    ``amp_boundary`` is the first data column of amplifier B.
    """
    if data.dtype.kind == "f":
        raw_mean = np.nanmean(data, axis=0)
    elif (sums := exact_sum(data, 0)) is not None:
        raw_mean = sums.astype(np.float64) / data.shape[0]
    else:
        raw_mean = data.mean(axis=0, dtype=np.float64)
    lev = np.nanmean(level, axis=0)
    out = raw_mean.astype(np.float64)
    for a, cols in enumerate(amp_sections(data.shape[1], amp_boundary)):
        out[cols] -= lev[a]
    return out


def bias_model(
    bias_frames: Iterable[tuple[np.ndarray, np.ndarray]], significance: float = 5.0, *, detector: Detector
) -> BiasModel:
    """Build the master-bias pattern from ``(data, overscan)`` pairs of bias frames.

    Each frame's overscan-subtracted column means are combined over the frames
    with a clipped mean (a cosmic ray or hot pixel in one frame shifts one
    column of that frame only, and is dropped); the read noise is measured from
    differences of consecutive frames.

    Parameters
    ----------
    bias_frames
        Data areas ``(rows, 4096)`` and overscans ``(rows, 2, 32)`` of the bias frames; any iterable
        (each frame is used once and may be dropped after it: a generator reading them one by one keeps
        one frame in memory, not five).
    significance
        The pattern is applied when its chi-square per column exceeds
        ``1 + significance * sqrt(2 / n_columns)`` or an amplifier's mean offset
        exceeds ``significance`` standard errors.
    detector
        The CCD: its data columns (the empty model's length) and amplifier boundary.
    """
    n_cols, boundary = detector.n_cols, detector.amp_boundary
    sections = amp_sections(n_cols, boundary)
    means = []
    samples = []
    rows = n_over = 0
    for data, over in bias_frames:
        rows, n_over = data.shape[0], over.shape[2]
        level = levels(over)
        means.append(column_means(data, level, boundary))
        sub = data[::8, ::8].astype(np.float32)
        lev = level[::8].astype(np.float32)
        b = -(-boundary // 8)  # sampled columns 0, 8, 16, ... of amplifier A
        sub[:, :b] -= lev[:, :1]
        sub[:, b:] -= lev[:, 1:2]
        samples.append(sub)
        del data, over
    n = len(means)
    if n == 0:
        return BiasModel(np.zeros(n_cols), False, 0, float("nan"), float("nan"), (0.0, 0.0))
    # read noise: robust scatter of the difference of two frames (1/64 of the pixels is plenty)
    d = (samples[1] - samples[0]).ravel() / np.sqrt(2) if n >= 2 else samples[0].ravel()
    d = d[np.isfinite(d)]
    rn = float(1.4826 * np.median(np.abs(d - np.median(d))))
    sigma_frame_col = rn / np.sqrt(rows)  # noise of one frame's column mean
    m = np.array(means)
    if n >= 3:
        med = np.median(m, axis=0)
        keep = np.abs(m - med) < 6 * sigma_frame_col
        columns = (m * keep).sum(axis=0) / np.maximum(keep.sum(axis=0), 1)
    else:
        columns = m.mean(axis=0)
    # a column mean's noise: the read noise of its own pixels; an amplifier's mean offset also carries the
    # noise of the overscan levels (32 pixels per row), common to all its columns
    sigma_col = rn / np.sqrt(rows * n)
    sigma_amp = rn * np.sqrt(1.0 / (n_over * rows * n) + 1.0 / (rows * n * n_cols // 2))
    chi2 = float(np.mean([np.mean(((columns[c] - columns[c].mean()) / sigma_col) ** 2) for c in sections]))
    offsets = tuple(float(columns[c].mean()) for c in sections)
    offset_sig = max(abs(o) / sigma_amp for o in offsets)
    applied = chi2 > 1 + significance * np.sqrt(2.0 / n_cols) or offset_sig > significance
    return BiasModel(
        columns=columns,
        applied=bool(applied),
        n_frames=n,
        read_noise_adu=rn,
        chi2=chi2,
        offset_adu=offsets,  # type: ignore[arg-type]  # one offset per amplifier section
    )
