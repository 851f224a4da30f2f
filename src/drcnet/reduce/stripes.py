"""Cutting the paper's stripes: where every stripe pixel lies on the CCD, and its raw and net values.

Stripes are ``(n_fibers, 11, n_cols)``: rows ``round(trace) + k``, ``k = -5..5`` (the paper's centre pixel
+-5) of each fiber at the chosen data columns.

* :func:`stripe_rows_all` -- the rows of every stripe pixel;
* :class:`StripePixels` -- the pixels of every stripe, computed once per arm (rows clipped to the CCD,
  the ones off it marked), copied by blocks of constant rows (:class:`StripeRuns`) or gathered;
* :func:`cut_stripes` -- raw pixels minus the overscan level of their own row and amplifier, the
  same arithmetic as :func:`drcnet.simulate.ccd.subtract_overscan` in the forward model.

The CCD's rows and amplifier boundary come in as arguments (:class:`drcnet.hardware.Detector`).
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
    centre: np.ndarray = np.floor(centres + 0.5).astype(dtype)
    return centre[:, None, :] + np.arange(-half, half + 1, dtype=dtype)[None, :, None]


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
    def from_top(
        cls, top: np.ndarray, cols: np.ndarray, amp_boundary: int, min_mean_cols: int = RUN_MIN_MEAN_COLS
    ) -> StripeRuns | None:
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
        return cls(
            fiber=fiber.tolist(),
            start=start.tolist(),
            stop=stop.tolist(),
            top=top[fiber, start].tolist(),
            col=c[start].tolist(),
            amp=amp[start].tolist(),
        )

    def copy_into(self, out: np.ndarray, image: np.ndarray, col_offset: int = 0) -> None:
        """``out[f, :, a:b] = image[top:top + n_rows, col + col_offset ...]`` for every run (exact copies)."""
        n_r = out.shape[1]
        for f, a, b, r, c in zip(self.fiber, self.start, self.stop, self.top, self.col):
            c += col_offset
            out[f, :, a:b] = image[r : r + n_r, c : c + b - a]

    def fill_levels(self, out: np.ndarray, level: np.ndarray) -> None:
        """``out[f, k, c] = level[row, amplifier]`` of every stripe pixel (``level`` ``(rows, 2)``)."""
        n_r = out.shape[1]
        for f, a, b, r, m in zip(self.fiber, self.start, self.stop, self.top, self.amp):
            out[f, :, a:b] = level[r : r + n_r, m, None]


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
    def from_centres(
        cls, centres: np.ndarray, cols: np.ndarray, half: int = STRIPE_HALF_ROWS, *, n_rows: int, amp_boundary: int
    ) -> StripePixels:
        """Stripe pixels of traces ``centres`` ``(n_fibers, n_cols)`` at columns ``cols``; rows off the CCD are clipped (and marked in ``off``).

        ``n_rows`` and ``amp_boundary`` are the CCD's rows and the first data column of amplifier B
        (:class:`drcnet.hardware.Detector`).
        """
        centre = np.floor(centres + 0.5).astype(np.intp)  # stripe_rows_all's rounding
        cols = np.asarray(cols, dtype=np.int32)
        shape = (centre.shape[0], 2 * half + 1, centre.shape[1])
        # a NaN or huge centre is off the CCD (its integer cast wraps around: test the floats)
        on_ccd = bool(np.isfinite(centres).all()) and (centre.min() - half >= 0 and centre.max() + half < n_rows)
        if centre.size == 0 or on_ccd:
            return cls(
                centre=centre,
                half=half,
                cols=cols,
                off=np.zeros(shape, dtype=bool),
                n_rows=n_rows,
                amp_boundary=amp_boundary,
            )
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
            self._runs.append(
                StripeRuns.from_top(self.centre - self.half, self.cols, self.amp_boundary) if on_ccd else None
            )
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


def cut_stripes(
    raw_frame: np.ndarray,
    level: np.ndarray,
    pixels: StripePixels,
    data_col_offset: int,
    bias_columns: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
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
        runs.fill_levels(net, np.asarray(level, dtype=np.float64))  # the level of each pixel
        np.subtract(raw, net, out=net, dtype=np.float64)
    else:
        raw, net = _net_indexed(raw_frame, level, pixels, data_col_offset)
    if bias_columns is not None:
        net -= bias_columns[pixels.cols]
    if pixels.off.any():
        net[pixels.off] = np.nan
    return net, raw


def _net_indexed(
    raw_frame: np.ndarray, level: np.ndarray, pixels: StripePixels, data_col_offset: int
) -> tuple[np.ndarray, np.ndarray]:
    """Raw stripe pixels and ``raw - level[row, amplifier]`` (float64) by pixel gathers (any traces).

    The path of :func:`cut_stripes` when the stripes have no runs (:meth:`StripePixels.runs`), and
    the reference for the run copies.
    """
    raw = pixels.take_indexed(raw_frame, data_col_offset)
    amp = amplifier_of(pixels.cols, pixels.amp_boundary).astype(np.intp)
    where = pixels.rows * level.shape[1]
    where += amp[None, None, :]
    net = np.take(np.ascontiguousarray(level, dtype=np.float64).reshape(-1), where)  # the level of each pixel
    del where
    np.subtract(raw, net, out=net, dtype=np.float64)  # raw.astype(float64) - level, without a second array
    return raw, net
