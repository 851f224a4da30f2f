"""Writing a reduced exposure in the dataset schema of :mod:`drcnet.data.schema`.

Every fiber of every reduced spectrograph is one row - object, sky, unused
and dead fibers alike - so nothing is silently dropped; sky, unused and dead
fibers carry their flags and label -1. ``drcnet frames classify`` lists the
object fibers (Obj, F-std, PosErr).

Beyond the common schema the file holds:

* ``/flux1d_opt``, ``/ivar1d_opt`` ``(N, 2, 3000)`` float32: the optimal (Horne) extraction;
* ``/fibertype`` ``(N,)`` S8, ``/spid`` ``(N,)`` int8, ``/fiber`` ``(N,)`` int16;
* ``/params/*``: measured per-fiber values (trace row at the centre column,
  trace fit rms, wavelength offset, relative fiber throughput per arm,
  S/N_r of the optimal extraction) and, for simulated exposures, the
  fiber map's expected S/N_r and magnitude;
* root attribute ``calibration`` (JSON): per spectrograph and arm the bias,
  trace and wavelength-solution summaries, the files used and warnings.

With a survey catalogue (``drcnet frames reduce --catalogue``, :mod:`drcnet.workflows.crossmatch`)
``label`` and ``subclass`` come from the catalogue instead of the fiber map (-1 / ``b""`` for fibers
without a row), and the file adds ``/designation`` ``(N,)`` S40 (the star, for the split),
``/obsid`` ``(N,)`` int64, ``/params/{snr_r_cat, snr_g_cat, teff, teff_err, logg, logg_err, feh,
feh_err}`` (NaN where none) and the root attribute ``catalogue`` (JSON: the match report).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from drcnet.conventions import ARMS, CLASSES, SPLIT_NAMES, snr_bin
from drcnet.data.schema import OPTIMAL_1D, DatasetWriter
from drcnet.instrument.config import U0
from drcnet.provenance import atomic_path, provenance
from drcnet.reduce.arm import ReduceConfig
from drcnet.workflows.crossmatch import DESIGNATION_DTYPE, PARAM_COLUMNS, CatalogueMatcher, FiberKeys
from drcnet.workflows.reduce_exposure import SpectrographReduction

PARAM_NAMES: tuple[str, ...] = (
    "fiber",
    "spid",
    "mag_r",
    "snr_r_true",
    "snr_r_opt",
    "trace_row0_blue",
    "trace_row0_red",
    "trace_rms_blue",
    "trace_rms_red",
    "wave_shift_px_blue",
    "wave_shift_px_red",
    "fiber_throughput_blue",
    "fiber_throughput_red",
    "profile_shift_blue",
    "profile_shift_red",
    "extraction_chi2_blue",
    "extraction_chi2_red",
)


def object_ids(sr: SpectrographReduction) -> np.ndarray:
    """The fiber map's object id, or ``<type>-<spid>-<fiber>`` for fibers without one."""
    fm = sr.fibermap
    ids = [
        o if o else f"{t.lower()}-{sr.planid}-{sr.spid:02d}-{f:03d}"
        for o, t, f in zip(fm.objid, fm.fibertype, fm.fiber, strict=True)
    ]
    return np.array(ids)


def pack(sr: SpectrographReduction) -> dict[str, np.ndarray]:
    """All per-fiber arrays of one spectrograph, keyed like the dataset layout."""
    fm = sr.fibermap
    n = len(fm)
    arms = [sr.arms[a] for a in ARMS]
    truth = fm.truth or {}
    cls = truth.get("TRUE_CLASS", np.full(n, ""))
    label = np.array([CLASSES.index(c) if c in CLASSES else -1 for c in cls], dtype=np.int8)
    out: dict[str, np.ndarray] = {
        "stripes": np.stack([a.stripes for a in arms], axis=1).astype(np.float16),
        "flux1d": np.stack([a.flux1d for a in arms], axis=1).astype(np.float32),
        "ivar1d": np.stack([a.ivar1d for a in arms], axis=1).astype(np.float32),
        "sky1d": np.stack([a.sky1d for a in arms], axis=1).astype(np.float32),
        "wave1d": np.stack([a.wave1d for a in arms], axis=1).astype(np.float32),
        "flux1d_opt": np.stack([a.flux_opt for a in arms], axis=1).astype(np.float32),
        "ivar1d_opt": np.stack([a.ivar_opt for a in arms], axis=1).astype(np.float32),
        "label": label,
        "subclass": np.char.encode(np.asarray(truth.get("TRUE_SUBCLASS", np.full(n, ""))).astype(str)).astype("S8"),
        "snr_r": sr.snr_r.astype(np.float32),
        "snr_bin": snr_bin(sr.snr_r),
        "split": np.full(n, SPLIT_NAMES.index("test"), dtype=np.int8),
        "object_id": np.char.encode(object_ids(sr)).astype("S40"),
        "template_id": np.char.encode(np.asarray(truth.get("TRUE_TEMPLATE", np.full(n, ""))).astype(str)).astype("S80"),
        "flags": sr.flags.astype(np.uint16),
        "fibertype": np.char.encode(fm.fibertype.astype(str)).astype("S8"),
        "spid": np.full(n, sr.spid, dtype=np.int8),
        "fiber": fm.fiber.astype(np.int16),
    }
    params = {
        "fiber": fm.fiber,
        "spid": np.full(n, sr.spid),
        "mag_r": fm.mag,
        "snr_r_true": truth.get("TRUE_SNR_R", np.full(n, np.nan)),
        "snr_r_opt": sr.snr_r_opt,
    }
    for a in arms:
        centre = a.traces.centres(np.array([U0]))[:, 0]
        params[f"trace_row0_{a.arm}"] = np.where(a.lost, np.nan, centre)
        params[f"trace_rms_{a.arm}"] = a.traces.rms
        params[f"wave_shift_px_{a.arm}"] = a.wave.shift_px
        params[f"fiber_throughput_{a.arm}"] = np.where(a.lost, np.nan, np.median(a.efficiency, axis=1))
        params[f"profile_shift_{a.arm}"] = a.profile_shift if a.profile_shift is not None else np.full(n, np.nan)
        params[f"extraction_chi2_{a.arm}"] = a.extraction_chi2 if a.extraction_chi2 is not None else np.full(n, np.nan)
    for name in PARAM_NAMES:
        out[f"params/{name}"] = np.asarray(params[name], dtype=np.float32)
    return out


EXTRA = {
    "fibertype": ((), "S8"),
    "spid": ((), np.int8),
    "fiber": ((), np.int16),
}


def _finite(obj: Any) -> Any:
    """``obj`` with every NaN/inf float replaced by None, so the JSON record holds no bare ``NaN``."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


class ReducedDatasetWriter:
    """Write a reduced exposure spectrograph by spectrograph (atomically), never holding more than one in memory.

    Use as a context manager; the file appears under its name only when the block ends without
    an error and every fiber was written::

        with ReducedDatasetWriter(out, check_exposure(folder), config, folder) as w:
            for sr in iter_reductions(...):
                w.write(sr)

    Parameters
    ----------
    out
        The HDF5 file to write.
    spectrographs
        What will be written, in order: objects with ``n_fibers``, ``headers`` (arm -> science header)
        and ``files.spid`` (:class:`~drcnet.workflows.exposure_check.CheckedSpectrograph`), or
        :class:`SpectrographReduction` objects.
    config
        The reduction's options (stored in the provenance).
    folder
        The exposure folder (stored in the provenance).
    catalogue
        A survey catalogue to take the labels from (:class:`~drcnet.workflows.crossmatch.CatalogueMatcher`);
        ``None``: the fiber map's truth.

    Raises
    ------
    drcnet.instrument.lrs_catalogue.CatalogueError
        With ``catalogue``: no fiber of ``spectrographs`` is in it (raised before the file is created).
    """

    def __init__(
        self,
        out: str | Path,
        spectrographs: Sequence[Any],
        config: ReduceConfig,
        folder: str | Path,
        catalogue: CatalogueMatcher | None = None,
    ) -> None:
        self.out = Path(out)
        self.catalogue = catalogue
        if catalogue is not None:
            catalogue.check_any([spectrograph_keys(s) for s in spectrographs])
        self._spec = list(spectrographs)
        self.n = sum(_n_fibers(s) for s in self._spec)
        seeds = {_seed(s) for s in self._spec}
        seed = seeds.pop() if len(seeds) == 1 else None
        cfg = {
            "reduce": config.model_dump(mode="json"),
            "exposure": str(Path(folder).resolve()),
            "spectrographs": [_spid(s) for s in self._spec],
        }
        self._attrs = {
            "provenance": provenance(cfg, seed if seed is not None and seed >= 0 else None),
            "config": cfg,
            "seed": -1 if seed is None else seed,
            "n_objects": self.n,
            "kind": "reduced",
            # labels from a LAMOST catalogue are LAMOST's; without one they are the simulation's own TRUE_CLASS
            "label_convention": "lamost" if catalogue is not None else "mk",
        }
        self._start = 0
        self._calibration: dict[str, Any] = {}
        self._planids: set[str] = set()
        self._stack: contextlib.ExitStack | None = None
        self._h5: Any = None

    def __enter__(self) -> ReducedDatasetWriter:
        import h5py

        stack = contextlib.ExitStack()
        try:
            tmp = stack.enter_context(atomic_path(self.out))
            with DatasetWriter(tmp, self.n, PARAM_NAMES, self._attrs, OPTIMAL_1D):
                pass  # the schema's datasets and attributes
            self._h5 = h5py.File(tmp, "r+")
            stack.callback(self._h5.close)
            for name, (shape, dtype) in EXTRA.items():
                self._h5.create_dataset(name, shape=(self.n, *shape), dtype=dtype)
            if self.catalogue is not None:
                self._h5.create_dataset("designation", shape=(self.n,), dtype=DESIGNATION_DTYPE)
                self._h5.create_dataset("obsid", shape=(self.n,), dtype=np.int64)
                for name in PARAM_COLUMNS:
                    self._h5["params"].create_dataset(name, shape=(self.n,), dtype=np.float32)
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def write(self, sr: SpectrographReduction) -> None:
        """Write one reduced spectrograph's fibers (the next rows of the file)."""
        block = pack(sr)
        n = len(sr.fibermap)
        if self.catalogue is not None:
            block.update(catalogue_block(self.catalogue.match(spectrograph_keys(sr), object_ids(sr).tolist())))
        if self._start + n > self.n:
            raise ValueError(f"{self.out}: more fibers written ({self._start + n}) than announced ({self.n})")
        for key, value in block.items():
            self._h5[key][self._start : self._start + n] = np.asarray(value)
        self._start += n
        self._calibration[f"sp{sr.spid:02d}"] = {a: sr.arms[a].summary() for a in ARMS}
        self._planids.add(sr.planid)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self._stack is not None
        if exc_type is None and self._start != self.n:
            exc = ValueError(f"{self.out}: {self._start} of {self.n} fibers were written; the file is not kept")
            self._stack.__exit__(type(exc), exc, None)
            raise exc
        if exc_type is None:
            self._h5.attrs["calibration"] = json.dumps(_finite(self._calibration))
            self._h5.attrs["planid"] = ",".join(sorted(self._planids))
            if self.catalogue is not None:
                self._h5.attrs["catalogue"] = json.dumps(_finite(self.catalogue.report()))
        self._stack.__exit__(exc_type, exc, tb)


def spectrograph_keys(s: Any) -> FiberKeys:
    """Catalogue keys of a checked or reduced spectrograph: its fiber map and the red science header."""
    header = s.arms["red"].header if isinstance(s, SpectrographReduction) else s.headers.get("red", {})
    return FiberKeys.of(s.fibermap, header)


def catalogue_block(m: Any) -> dict[str, np.ndarray]:
    """Dataset arrays from a :class:`~drcnet.workflows.crossmatch.FiberMatch`: label, subclass, designation,
    obsid, the catalogue's S/N and LASP parameters (``params/...``)."""
    out: dict[str, np.ndarray] = {
        "label": m.label.astype(np.int8),
        "subclass": np.char.encode(m.subclass.astype(str)).astype("S8"),
        "designation": np.char.encode(m.designation.astype(str)).astype(DESIGNATION_DTYPE),
        "obsid": m.obsid.astype(np.int64),
    }
    for name, values in m.params.items():
        out[f"params/{name}"] = values.astype(np.float32)
    return out


def _n_fibers(s: Any) -> int:
    return len(s.fibermap) if isinstance(s, SpectrographReduction) else int(s.n_fibers)


def _seed(s: Any) -> int:
    header = s.arms["red"].header if isinstance(s, SpectrographReduction) else s.headers.get("red", {})
    try:
        return int(header.get("DRCSEED", -1))
    except (TypeError, ValueError):
        return -1


def _spid(s: Any) -> int:
    return int(s.spid) if isinstance(s, SpectrographReduction) else int(s.files.spid)


def write_reduced_dataset(
    reductions: Sequence[SpectrographReduction],
    out: str | Path,
    config: ReduceConfig,
    folder: str | Path,
    catalogue: CatalogueMatcher | None = None,
) -> Path:
    """Write reduced spectrographs as one dataset file (atomically).

    Parameters
    ----------
    reductions
        From :func:`drcnet.workflows.reduce_exposure.reduce_exposure`; one row per fiber, in order.
        To write while reducing, without holding every spectrograph, use :class:`ReducedDatasetWriter`.
    out
        The HDF5 file to write.
    config
        The reduction's options (stored in the provenance).
    folder
        The exposure folder (stored in the provenance).
    catalogue
        Take the labels from this survey catalogue (see :class:`ReducedDatasetWriter`).

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    with ReducedDatasetWriter(out, reductions, config, folder, catalogue) as writer:
        for sr in reductions:
            writer.write(sr)
    return Path(out)
