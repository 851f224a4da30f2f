"""Raw LAMOST exposures: simulate whole frames, read and check them, classify a whole exposure.

* :mod:`drcnet.frames.lamost` -- LAMOST raw-file names, headers and reading (the instrument adapter);
* :mod:`drcnet.frames.exposure` -- which files of an exposure folder belong to which spectrograph and arm;
* :mod:`drcnet.frames.fibermap` -- the fiber map (FITS table) of a spectrograph;
* :mod:`drcnet.frames.arcs` -- arc-lamp line lists and the lamp spectra of flats and arcs;
* :mod:`drcnet.frames.plan` -- which object sits in which fiber (:class:`ExposureConfig`);
* :mod:`drcnet.frames.render` -- bias, flat, arc and science frames from the forward model;
* :mod:`drcnet.frames.simulate` -- ``drcnet frames simulate``: a whole exposure set on disk;
* :mod:`drcnet.frames.catalogue` -- ``drcnet frames classify``: raw frames to a catalogue of classes;
* :mod:`drcnet.frames.qa` -- the QA page of an exposure.

The reduction itself (overscan, tracing, extraction, wavelength calibration)
is instrument-free and lives in :mod:`drcnet.reduce`.
"""

from __future__ import annotations

from drcnet.frames.errors import FrameError, MissingFrameError

__all__ = ["FrameError", "MissingFrameError"]
