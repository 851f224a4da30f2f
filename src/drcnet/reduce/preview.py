"""Small pictures of a frame for the QA page, made while the frame is in memory (arrays only).

The QA page shows each arm's science frame binned 8 x 8 and a full-resolution zoom on a few
fibers. Both are net of the overscan (``raw - level[row, amplifier]``, the arithmetic of
:func:`drcnet.reduce.calib.net_image`) and are cut here, during the reduction, so the page
never reads the 34 MB frame again and the reduction keeps ~1 MB per arm instead of the frame.
"""

from __future__ import annotations

import numpy as np

from drcnet.reduce.calib import exact_sum

PREVIEW_BIN = 8
"""Block size (rows and columns) of the QA page's binned frame."""
ZOOM_ROWS, ZOOM_COLS = 100, (1900, 2200)
"""The QA page's full-resolution zoom: rows from just below the fiber two before the middle one, these columns."""


def qa_pictures(
    data: np.ndarray, level: np.ndarray | None, centres: np.ndarray, amp_boundary: int
) -> tuple[np.ndarray | None, np.ndarray | None, tuple[int, int]]:
    """The QA page's binned frame and zoom, cut while the science frame is in memory.

    Parameters
    ----------
    data
        Science data area ``(rows, n_cols)`` (ADU).
    level
        Overscan level ``(rows, 2)`` subtracted from it, or None (then no pictures).
    centres
        Trace rows ``(n_fibers, n_cols)`` at every data column: the zoom starts 12 rows below the trace, at
        column ``amp_boundary``, of the fiber two before the middle one.
    amp_boundary
        First data column of amplifier B.

    Returns
    -------
    preview, zoom, origin
        :func:`binned_net` by :data:`PREVIEW_BIN`, :func:`net_crop` of :data:`ZOOM_ROWS` rows and
        :data:`ZOOM_COLS`, and the frame row and data column of ``zoom[0, 0]``; ``(None, None, (0, 0))``
        without a level.
    """
    if level is None:
        return None, None, (0, 0)
    preview = binned_net(data, level, PREVIEW_BIN, amp_boundary=amp_boundary)
    f0 = centres.shape[0] // 2
    r0 = int(centres[max(f0 - 2, 0), amp_boundary]) - 12
    c0, c1 = ZOOM_COLS
    r0 = int(np.clip(r0, 0, data.shape[0] - 1))
    return preview, net_crop(data, level, r0, ZOOM_ROWS, c0, c1, amp_boundary=amp_boundary), (r0, c0)


def binned_net(data: np.ndarray, level: np.ndarray, factor: int = 8, *, amp_boundary: int) -> np.ndarray:
    """Mean of ``factor x factor`` pixel blocks of the net frame ``data - level[row, amp]``.

    Parameters
    ----------
    data
        Data area ``(rows, 4096)`` in ADU (uint16, or float with NaN).
    level
        Overscan level ``(rows, 2)`` of amplifiers A and B (ADU).
    factor
        Block size (rows and columns); trailing rows that do not fill a block are dropped.
    amp_boundary
        First data column of amplifier B; a multiple of ``factor`` keeps each block on one amplifier.

    Returns
    -------
    numpy.ndarray
        ``(rows // factor, 4096 // factor)`` float32, net ADU. The amplifier boundary (column
        2048) is a block boundary, so each block's level is the mean of its rows' levels.
    """
    n_rows = data.shape[0] // factor * factor
    n_cols = data.shape[1] // factor * factor
    sums = _block_sums(data[:n_rows, :n_cols], factor) if n_rows and n_cols else None
    if sums is not None:
        out = sums.astype(np.float64) / (factor * factor)
    else:
        block = data[:n_rows, :n_cols].reshape(n_rows // factor, factor, n_cols // factor, factor)
        out = block.mean(axis=(1, 3), dtype=np.float64)
    lev = np.asarray(level, dtype=np.float64)[:n_rows].reshape(n_rows // factor, factor, level.shape[1]).mean(axis=1)
    half = amp_boundary // factor
    out[:, :half] -= lev[:, :1]
    out[:, half:] -= lev[:, 1:2]
    return out.astype(np.float32)


def _block_sums(data: np.ndarray, factor: int) -> np.ndarray | None:
    """Sums of ``factor x factor`` blocks of unsigned 8/16-bit pixels, as unsigned integers (exact), or None.

    The rows of each block are added first (whole rows at a time, :func:`~drcnet.reduce.calib.exact_sum`),
    then the columns. Integer sums are exact, so ``sums / factor**2`` is bit for bit the float64 mean of
    each block. None for any other dtype (the caller takes numpy's mean).
    """
    n_rows, n_cols = data.shape
    rows = exact_sum(data.reshape(n_rows // factor, factor, n_cols), 1)
    return None if rows is None else rows.reshape(n_rows // factor, n_cols // factor, factor).sum(axis=2)


def net_crop(
    data: np.ndarray, level: np.ndarray, row0: int, n_rows: int, col0: int, col1: int, *, amp_boundary: int
) -> np.ndarray:
    """Net ADU of rows ``row0 .. row0 + n_rows - 1`` (clipped to the frame) and data columns ``col0 .. col1 - 1``.

    ``amp_boundary`` is the first data column of amplifier B.

    Returns
    -------
    numpy.ndarray
        ``(<= n_rows, col1 - col0)`` float32.
    """
    r0 = int(np.clip(row0, 0, data.shape[0] - 1))
    r1 = min(r0 + n_rows, data.shape[0])
    cols = np.arange(col0, col1)
    amp = (cols >= amp_boundary).astype(np.intp)
    crop = data[r0:r1, col0:col1].astype(np.float32)
    crop -= np.asarray(level, dtype=np.float32)[r0:r1][:, amp]
    return crop
