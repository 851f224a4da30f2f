"""The LAMOST adapter: instrument numbers, raw-frame and fiber-map I/O, arc line lists.

* :mod:`drcnet.instrument.config` -- the LAMOST numbers (``DETECTOR``, ``N_COLS``, ...) and the
  configuration classes of :mod:`drcnet.hardware` (pydantic; no file I/O). Its names are re-exported
  here, so ``from drcnet.instrument import N_COLS, InstrumentConfig`` works;
* :mod:`drcnet.instrument.base` -- :class:`~drcnet.instrument.base.Spectrograph`, what the reduction
  needs to know about an instrument's raw files (its detector, header cards, frame types);
* :mod:`drcnet.instrument.lamost` -- the LAMOST LRS behind it: raw-file names, headers, writing frames;
* :mod:`drcnet.instrument.rawframe` -- reading and checking one raw frame (:class:`RawFrame`);
* :mod:`drcnet.instrument.exposure` -- which files of an exposure folder belong to which spectrograph and arm;
* :mod:`drcnet.instrument.fibermap` -- the fiber map (FITS table) of a spectrograph;
* :mod:`drcnet.instrument.arclines` -- arc-lamp line lists;
* :mod:`drcnet.instrument.errors` -- :class:`FrameError`, :class:`MissingFrameError`, :class:`FrameWarning`.

Importing this package loads only the numbers (:mod:`~drcnet.instrument.config`); the I/O
modules are imported by name. A second instrument is a new module with its own
:class:`~drcnet.instrument.base.Spectrograph` subclass.
"""

from __future__ import annotations

from drcnet.instrument.config import (  # noqa: F401  (the package's public numbers)
    BLUE,
    DETECTOR,
    FIBER_DIAMETER_ARCSEC,
    LAMPS,
    N_COLS,
    N_FIBERS,
    N_ROWS,
    N_SPECTROGRAPHS,
    OVERSCAN,
    PIXEL_SIZE_CM,
    RED,
    STRIPE_COL_START,
    STRIPE_COL_STOP,
    STRIPE_HALF_ROWS,
    U0,
    ArmConfig,
    CCDConfig,
    Detector,
    FiberConfig,
    InstrumentConfig,
    SiteConfig,
    arm_throughput,
    fiber_row_at_centre,
    slit_position,
)
