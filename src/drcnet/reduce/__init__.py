"""Reduction of raw frames, instrument-free: overscan and bias, traces, wavelength solution, stripes,
boxcar and optimal extraction, master sky, per-fiber flags.

:func:`drcnet.reduce.pipeline.reduce_exposure` runs it on an exposure folder (the LAMOST file layout is
read by :mod:`drcnet.frames`); :func:`drcnet.reduce.output.write_reduced_dataset` writes the result in
the dataset schema of :mod:`drcnet.data.schema`.
"""
