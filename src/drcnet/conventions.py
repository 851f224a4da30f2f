"""The conventions every part of drcnet shares, one copy each.

Classes, arms, the paper's stripe window, the S/N_r bins, the r band used for
S/N_r, the dataset splits and the per-fiber flag bits. This module imports
nothing of drcnet (it sits at the bottom of the import graph) and numpy only inside the functions
that need it, so importing it (and ``drcnet``) stays cheap for the command line.

Sources: the DRC-Net paper (Zhang et al. 2023, RAA 23:125005: the stripe cut,
the classes, the S/N_r bins of Table 1) and the LAMOST data-release
documentation (``snrr``: S/N in the SDSS r band, about 5600-6900 A).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

CLASSES: tuple[str, ...] = ("F", "G", "K")
"""The three classes of the paper, in the order of model outputs."""

ARMS: tuple[str, str] = ("blue", "red")
"""Spectrograph arms in the order of the arm axis of every array (0 blue, 1 red)."""

STRIPE_HALF_ROWS = 5
"""The paper's stripe: the centre pixel of the trace +- 5 rows."""
STRIPE_ROWS = 2 * STRIPE_HALF_ROWS + 1
"""Rows of a stripe (11)."""
STRIPE_COL_START = 500
"""First wavelength pixel of the paper's stripe (data-area column)."""
STRIPE_COL_STOP = 3500
"""One past the last wavelength pixel of the paper's stripe."""
STRIPE_COLS = STRIPE_COL_STOP - STRIPE_COL_START
"""Columns of a stripe (3000)."""
COL_START = STRIPE_COL_START
"""Alias kept for the dataset file's ``col_start`` attribute."""


def stripe_columns() -> np.ndarray:
    """Data-area column index of every stripe column.

    Returns
    -------
    numpy.ndarray
        ``(3000,)`` int, ``500 .. 3499``.
    """
    import numpy as np

    return np.arange(STRIPE_COL_START, STRIPE_COL_STOP)


SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
"""Dataset splits, in the order of the ``split`` index."""

SNR_BIN_NAMES: tuple[str, ...] = (">30", "20-30", "10-20", "<10")
"""The paper's S/N_r bins (Table 1), bin 0 to 3."""
SNR_BIN_EDGES: tuple[float, float, float] = (30.0, 20.0, 10.0)
"""Lower edges of bins 0, 1 and 2 (bin 3 is everything below 10)."""

R_BAND_A: tuple[float, float] = (5600.0, 6900.0)
"""Vacuum wavelength range over which S/N_r is measured (LAMOST ``snrr``: the SDSS r band)."""

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
"""FWHM of a Gaussian in units of its sigma (2.3548...)."""

FLAG_BITS: dict[str, int] = {
    "sky": 1 << 0,
    "unused": 1 << 1,
    "dead": 1 << 2,
    "trace_lost": 1 << 3,
    "saturated": 1 << 4,
    "cosmic_ray": 1 << 5,
    "low_snr": 1 << 6,
    "bad_pixels": 1 << 7,
    "bad_calib": 1 << 8,
    "no_arc_lines": 1 << 9,
    "bad_arm": 1 << 10,
}
"""Per-fiber flag bits of the dataset file and the catalogue."""


def snr_bin(snr: np.ndarray | float) -> np.ndarray:
    """The paper's S/N_r bin index of each value.

    Parameters
    ----------
    snr : array_like or float
        S/N_r values.

    Returns
    -------
    numpy.ndarray
        int8 of the same shape: 0 for S/N_r > 30, 1 for 20-30, 2 for 10-20, 3 below 10.
    """
    import numpy as np

    snr = np.asarray(snr, dtype=float)
    out = np.full(snr.shape, 3, dtype=np.int8)
    out[snr >= SNR_BIN_EDGES[2]] = 2
    out[snr >= SNR_BIN_EDGES[1]] = 1
    out[snr > SNR_BIN_EDGES[0]] = 0
    return out


def flags_to_names(value: int) -> list[str]:
    """Decode a flag bit mask into its names (in bit order)."""
    return [name for name, bit in FLAG_BITS.items() if value & bit]
