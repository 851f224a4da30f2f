"""LAMOST low-resolution spectrograph, CCD and site: every instrument number in one place.

This module imports only numpy, :mod:`drcnet.hardware` and :mod:`drcnet.conventions`;
the file I/O of the adapter lives in the sibling modules. The configuration classes
(:class:`ArmConfig`, :class:`InstrumentConfig`, ...) and :class:`~drcnet.hardware.Detector`
live in :mod:`drcnet.hardware` and are re-exported here; the LAMOST detector is :data:`DETECTOR`.
The reduction (:mod:`drcnet.reduce`) never imports this module: it is handed a ``Detector``.

Published values (``../shared/REFERENCE.md`` section 4) are used as given; values
that are not published are chosen to be plausible, marked *chosen* below, and can
be changed through the configuration (every class is a validated pydantic model,
so a wrong value fails early with its name).

Geometry convention used everywhere in drcnet: a raw frame is
``(N_ROWS, OVERSCAN + N_COLS + OVERSCAN)``; the dispersion runs along the columns
(``x``, wavelength pixel 0..4095 of the data area), fibers are stacked along the
rows (``y``). Amplifier A reads data columns 0..2047 and has the left overscan
strip, amplifier B reads 2048..4095 and has the right one.
"""

from __future__ import annotations

import numpy as np

from drcnet.conventions import STRIPE_COL_START, STRIPE_COL_STOP, STRIPE_HALF_ROWS  # noqa: F401  (re-exported)
from drcnet.hardware import (  # noqa: F401  (re-exported: the configuration classes live in the bottom layer)
    BLUE,
    FIBER_DIAMETER_ARCSEC,
    LAMPS,
    RED,
    ArmConfig,
    CCDConfig,
    Detector,
    FiberConfig,
    InstrumentConfig,
    SiteConfig,
    arm_throughput,
)

N_ROWS = 4136
"""CCD rows (spatial axis)."""
N_COLS = 4096
"""CCD data columns (dispersion axis)."""
OVERSCAN = 32
"""Overscan columns per amplifier (left strip for amplifier A, right strip for B)."""
N_FIBERS = 250
"""Fibers per spectrograph."""
N_SPECTROGRAPHS = 16
U0 = (N_COLS - 1) / 2.0
"""Centre of the data columns; wavelength solutions and traces are polynomials in x - U0."""
PIXEL_SIZE_CM = 12e-4
"""e2v CCD203-82: 12 micron pixels."""
DETECTOR = Detector(
    n_rows=N_ROWS,
    n_cols=N_COLS,
    overscan=OVERSCAN,
    amp_boundary=N_COLS // 2,
    u0=U0,
    gain_e_per_adu=CCDConfig().gain_e_per_adu,
    read_noise_e=CCDConfig().read_noise_e,
)
"""The e2v CCD203-82 of every LAMOST LRS arm: 4136 rows, 4096 data columns, 32 overscan columns per amplifier."""


def fiber_row_at_centre(fiber_index: np.ndarray | int, cfg: FiberConfig) -> np.ndarray:
    """Nominal trace row at the CCD centre column of 0-based fiber ``fiber_index`` (no jitter)."""
    return cfg.first_row + cfg.pitch_px * np.asarray(fiber_index, dtype=float)


def slit_position(fiber_index: np.ndarray | int) -> np.ndarray:
    """Position of a fiber along the slit, -1 (first fiber) .. +1 (last fiber)."""
    return (np.asarray(fiber_index, dtype=float) - (N_FIBERS - 1) / 2) / ((N_FIBERS - 1) / 2)
