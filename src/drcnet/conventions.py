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

OTHER = "other"
"""Label of every object that is not an F, G or K star (A, M, O/B stars, galaxies, sky fibers)."""
CLASSES_WITH_OTHER: tuple[str, ...] = (*CLASSES, OTHER)
"""Outputs of a four-class model (label 3 is :data:`OTHER`)."""


def class_names(n_classes: int) -> tuple[str, ...]:
    """The class names of a model with ``n_classes`` outputs (3: F/G/K, 4: F/G/K/other).

    Raises
    ------
    ValueError
        For any other number of outputs.
    """
    if n_classes == len(CLASSES):
        return CLASSES
    if n_classes == len(CLASSES_WITH_OTHER):
        return CLASSES_WITH_OTHER
    raise ValueError(f"a model with {n_classes} outputs has no class names; drcnet knows 3 (F/G/K) and 4 (+other)")


SUBCLASSES: tuple[str, ...] = (
    "F0",
    "F2",
    "F5",
    "F6",
    "F7",
    "F8",
    "F9",
    "G0",
    "G1",
    "G2",
    "G3",
    "G4",
    "G5",
    "G6",
    "G7",
    "G8",
    "G9",
    "K0",
    "K1",
    "K2",
    "K3",
    "K4",
    "K5",
    "K7",
)
"""LAMOST's F/G/K subclass grid (the 1D pipeline's templates, e.g. DR5-DR10 ``SUBCLASS``), in order;
"within one subtype" means one step along this tuple."""

LUM_CLASSES: tuple[str, ...] = ("dwarf", "giant")
"""Luminosity classes of the ``lum_class`` output: dwarf (log g >= 3.5, incl. subgiants) and giant."""


def _subtype_value(subclass: str) -> float | None:
    letter, num = subclass[:1].upper(), subclass[1:]
    if letter not in "FGK" or not letter:
        return None
    try:
        value = float(num)
    except ValueError:
        return None
    return 10.0 * "FGK".index(letter) + value


def subclass_index(subclass: str) -> int:
    """Index in :data:`SUBCLASSES` of the grid subtype nearest to an F/G/K subclass string.

    ``"G5"`` -> 12; off-grid MK subtypes go to the nearest grid point (``"F3"`` -> F2, ``"F4"`` -> F5,
    ``"K0.5"`` -> K0, ``"K6"`` -> K5; a tie goes to the earlier type). Returns -1 for anything that is
    not an F/G/K subtype (``""``, ``"A0"``, ``"GALAXY"``, ``"G"`` without a number).
    """
    value = _subtype_value(subclass.strip())
    if value is None:
        return -1
    grid = [_subtype_value(s) for s in SUBCLASSES]
    return min(range(len(grid)), key=lambda i: (abs(grid[i] - value), i))  # type: ignore[operator]


STELLAR_PARAMS: tuple[str, ...] = ("teff", "logg", "feh")
"""Stellar parameters of the regression outputs: Teff (K), log g (cgs dex), [Fe/H] (dex)."""

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
    "faint_arm": 1 << 11,  # the arm's sky is detected but under 3 column read noises: classified, low S/N
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
