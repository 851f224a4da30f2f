"""Reduction of raw frames as array algorithms, instrument-free: overscan and bias, traces, wavelength
solution, stripes, boxcar and optimal extraction, master sky, S/N_r.

Nothing here reads a file or imports the forward model: the instrument adapter (:mod:`drcnet.instrument`)
reads the frames and :mod:`drcnet.workflows.reduce_exposure` hands their arrays to the named steps of
:mod:`drcnet.reduce.arm`; :func:`drcnet.workflows.reduced_dataset.write_reduced_dataset` writes the result
in the dataset schema of :mod:`drcnet.data.schema`. The forward model (:mod:`drcnet.simulate`) reuses the
shared arithmetic: :mod:`~drcnet.reduce.wavesol` (nominal wavelength solution),
:func:`~drcnet.reduce.calib.overscan_level`, :func:`~drcnet.reduce.extract.boxcar_extract` and
:func:`~drcnet.reduce.snr.measure_snr_r`.
"""
