"""The dataset file: one HDF5 layout shared by ``drcnet simulate``, ``drcnet frames reduce``
and everything that reads datasets (training, evaluation, prediction).

Layout (N objects, arm axis 0 = blue, 1 = red)::

    /stripes      (N, 2, 11, 3000) float16  raw stripe in ADU after overscan/bias subtraction
    /flux1d       (N, 2, 3000)     float32  boxcar (aperture) sum of the stripe's 11 rows, ADU, sky included
    /ivar1d       (N, 2, 3000)     float32  inverse variance of flux1d (ADU^-2)
    /sky1d        (N, 2, 3000)     float32  master-sky estimate under the same aperture (ADU)
    /wave1d       (N, 2, 3000)     float32  vacuum wavelength of each stripe column for that fiber (Angstrom)
    /label        (N,)  int8       0 F, 1 G, 2 K, -1 unknown
    /subclass     (N,)  S8         MK subclass, b"" when unknown
    /snr_r        (N,)  float32    measured S/N_r (median flux*sqrt(ivar) over 5600-6900 A, sky subtracted)
    /snr_bin      (N,)  int8       0: S/N_r > 30, 1: 20-30, 2: 10-20, 3: < 10
    /split        (N,)  int8       index into the ``split_names`` attribute
    /object_id    (N,)  S40
    /template_id  (N,)  S80        "<library>:<source id>" (b"" for real data with no template)
    /flags        (N,)  uint16     bit mask, see :data:`FLAG_BITS`
    /params/<name> (N,) float32    true simulation parameters (rv_kms, ebv, mag_r, airmass, ...)
    /templates/*                   which template went to which split (simulated data only)
    /label_lamost    (N,) int8     optional (``drcnet simulate``): the label on LAMOST's convention, 0 F, 1 G,
                                   2 K, 3 other (A/M stars, galaxies, ...), -1 ambiguous or unknown
    /subclass_lamost (N,) S8       optional: LAMOST subclass (the labeller's best even when ambiguous)
    /flux1d_opt   (N, 2, 3000)     float32  optional (``drcnet simulate``, ``drcnet frames reduce``): optimal
                                   (Horne 1986) extraction of the stripe with the fiber's spatial profile from
                                   the flat, ADU on the boxcar's scale, sky included; the ``hybrid_optimal``
                                   input reads it instead of ``flux1d``
    /ivar1d_opt   (N, 2, 3000)     float32  optional: inverse variance of flux1d_opt (ADU^-2)

Root attributes: ``schema_version``, ``classes``, ``arms``, ``split_names``,
``stripe_rows``, ``stripe_cols``, ``col_start``, ``provenance`` (JSON),
``config`` (JSON), ``seed``, and ``label_convention`` (``"mk"``: ``label`` holds library stars' MK
types, as ``drcnet simulate`` writes; ``"lamost"``: LAMOST's labels, as the survey population and a
catalogue cross-match write; :func:`label_convention` reads it).

float16 is used for the stripes to halve the file: its rounding error is at
most 1/2048 of the value, below 9 % of the photon noise at the 65535 ADU
ceiling and far below it elsewhere (it adds < 0.4 % to the noise in quadrature).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

SCHEMA_VERSION = 1
from drcnet.conventions import (  # noqa: F401  (re-exported: the schema's vocabulary)
    ARMS,
    CLASSES_WITH_OTHER,
    COL_START,
    FLAG_BITS,
    R_BAND_A,
    SNR_BIN_EDGES,
    SNR_BIN_NAMES,
    SPLIT_NAMES,
    STRIPE_COLS,
    STRIPE_ROWS,
    flags_to_names,
    snr_bin,
)

_PER_OBJECT: dict[str, tuple[tuple[int, ...], Any]] = {
    "stripes": ((2, STRIPE_ROWS, STRIPE_COLS), np.float16),
    "flux1d": ((2, STRIPE_COLS), np.float32),
    "ivar1d": ((2, STRIPE_COLS), np.float32),
    "sky1d": ((2, STRIPE_COLS), np.float32),
    "wave1d": ((2, STRIPE_COLS), np.float32),
    "label": ((), np.int8),
    "subclass": ((), "S8"),
    "snr_r": ((), np.float32),
    "snr_bin": ((), np.int8),
    "split": ((), np.int8),
    "object_id": ((), "S40"),
    "template_id": ((), "S80"),
    "flags": ((), np.uint16),
}

#: Per-object datasets a writer creates only when asked (``optional``).
OPTIONAL_PER_OBJECT: dict[str, tuple[tuple[int, ...], Any]] = {
    "label_lamost": ((), np.int8),
    "subclass_lamost": ((), "S8"),
    "flux1d_opt": ((2, STRIPE_COLS), np.float32),
    "ivar1d_opt": ((2, STRIPE_COLS), np.float32),
}
OPTIMAL_1D = ("flux1d_opt", "ivar1d_opt")
"""The optional datasets of the optimal extraction, which every simulated and reduced file holds."""
LABEL_CONVENTIONS = ("mk", "lamost")


def label_convention(h: h5py.File) -> str:
    """The convention of an open dataset file's ``label`` column: ``"mk"`` or ``"lamost"``.

    The ``label_convention`` root attribute where present; else ``"lamost"`` for a survey-population file
    (its ``config`` holds ``population``), ``"mk"`` for other files (``drcnet simulate`` before the attribute).
    """
    value = h.attrs.get("label_convention")
    if isinstance(value, bytes):
        value = value.decode()
    if value in LABEL_CONVENTIONS:
        return str(value)
    cfg = h.attrs.get("config")
    try:
        cfg = json.loads(cfg) if isinstance(cfg, (str, bytes)) else {}
    except json.JSONDecodeError:
        cfg = {}
    return "lamost" if isinstance(cfg, dict) and "population" in cfg else "mk"


def dataset_label_convention(path: str | Path) -> str:
    """:func:`label_convention` of a dataset file (opened and closed here)."""
    with open_dataset(path) as h:
        return label_convention(h)


class DatasetWriter:
    """Write a dataset file object by object (or in blocks) without holding it in memory.

    Use as a context manager on a temporary path (see
    :func:`drcnet.provenance.atomic_path`)::

        with atomic_path(out) as tmp, DatasetWriter(tmp, n, param_names, attrs) as w:
            w.write(start, block)

    Parameters
    ----------
    path
        File to create (overwritten).
    n_objects
        Number of objects the file will hold.
    param_names
        Names of the per-object true parameters stored under ``/params``.
    attrs
        Root attributes; dicts are stored as JSON strings.
    optional
        Names from :data:`OPTIONAL_PER_OBJECT` to create too (e.g. ``label_lamost``).
    """

    def __init__(
        self,
        path: str | Path,
        n_objects: int,
        param_names: Sequence[str] = (),
        attrs: Mapping[str, Any] | None = None,
        optional: Sequence[str] = (),
    ) -> None:
        self.path = Path(path)
        self.n = int(n_objects)
        self._h5 = h5py.File(self.path, "w")
        h = self._h5
        base = {
            "schema_version": SCHEMA_VERSION,
            "classes": ",".join(CLASSES_WITH_OTHER),  # label index -> name; 3 ("other") only in --other files
            "arms": ",".join(ARMS),
            "split_names": ",".join(SPLIT_NAMES),
            "snr_bin_names": ",".join(SNR_BIN_NAMES),
            "stripe_rows": STRIPE_ROWS,
            "stripe_cols": STRIPE_COLS,
            "col_start": COL_START,
        }
        base.update(attrs or {})
        for key, value in base.items():
            h.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
        unknown = sorted(set(optional) - set(OPTIONAL_PER_OBJECT))
        if unknown:
            raise ValueError(
                f"DatasetWriter: unknown optional dataset(s) {unknown}; known: {sorted(OPTIONAL_PER_OBJECT)}"
            )
        per_object = {**_PER_OBJECT, **{k: OPTIONAL_PER_OBJECT[k] for k in optional}}
        for name, (shape, dtype) in per_object.items():
            chunks = (1, *shape) if shape else (min(max(self.n, 1), 4096),)
            h.create_dataset(name, shape=(self.n, *shape), dtype=dtype, chunks=chunks if self.n else None)
        params = h.create_group("params")
        for name in param_names:
            params.create_dataset(name, shape=(self.n,), dtype=np.float32)

    def write(self, start: int, block: Mapping[str, np.ndarray]) -> None:
        """Write arrays for objects ``start .. start + len`` (keys as in the layout, ``params/<name>`` too)."""
        for key, value in block.items():
            value = np.asarray(value)
            self._h5[key][start : start + len(value)] = value

    def add_table(self, group: str, columns: Mapping[str, Sequence[Any]]) -> None:
        """Store a small table (e.g. the template-to-split assignment) as one dataset per column."""
        g = self._h5.require_group(group)
        for key, values in columns.items():
            arr = np.asarray(values)
            if arr.dtype.kind == "U":
                arr = np.char.encode(arr, "utf-8")
            g.create_dataset(key, data=arr)

    def close(self) -> None:
        """Flush and close the file."""
        self._h5.close()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_attrs(path: str | Path) -> dict[str, Any]:
    """Return the root attributes of a dataset file, JSON strings decoded."""
    with h5py.File(path, "r") as h:
        out: dict[str, Any] = {}
        for key, value in h.attrs.items():
            if isinstance(value, bytes):
                value = value.decode()
            if key in ("provenance", "config") and isinstance(value, str):
                value = json.loads(value)
            out[key] = value.item() if isinstance(value, np.generic) else value
    return out


def open_dataset(path: str | Path, mode: str = "r") -> h5py.File:
    """Open a dataset file with h5py, turning low-level HDF5 errors into one line naming the file.

    Raises
    ------
    FileNotFoundError
        No such file.
    OSError
        Naming the file: not HDF5, truncated, or locked by another process (with what to do).
    KeyError
        Naming the file: it is HDF5 but has no ``label`` dataset, so it is not a drcnet dataset file.
    """
    path = Path(path)
    if mode == "r" and not path.is_file():
        raise FileNotFoundError(
            f"dataset file {path} does not exist (make one with `drcnet simulate` or `drcnet frames reduce`)"
        )
    try:
        h = h5py.File(path, mode)
    except OSError as err:
        raise OSError(
            f"{path}: cannot be read as an HDF5 dataset file ({err}); it may be truncated, not HDF5, or "
            "locked by another process (close it there, or set HDF5_USE_FILE_LOCKING=FALSE on a "
            "read-only share)"
        ) from err
    if mode == "r" and "label" not in h:
        h.close()
        raise KeyError(
            f"{path}: not a drcnet dataset file (no 'label' dataset); make one with `drcnet simulate` "
            "or `drcnet frames reduce`"
        )
    return h


def decode(values: np.ndarray) -> list[str]:
    """Decode an array of bytes strings to a list of str."""
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def dataset_fingerprint(path: str | Path) -> dict[str, Any]:
    """Identify a dataset file by content without reading all of it.

    The ``sha256`` covers: the root attributes (sorted, JSON), every dataset's name, shape and dtype,
    the full small per-object columns (``label``, ``split``, ``snr_r``, ``object_id``) and the first
    and last object's ``stripes`` and ``flux1d``. Any change in the object list, labels, splits or the
    simulation config changes it; it takes milliseconds for a paper-size file. File size and mtime
    are recorded alongside for information only (a copy of the file keeps the same fingerprint).
    """
    path = Path(path)
    h = hashlib.sha256()
    with open_dataset(path) as f:
        attrs = {}
        for key, value in sorted(f.attrs.items()):
            if isinstance(value, bytes):
                value = value.decode()
            attrs[key] = value.tolist() if hasattr(value, "tolist") else value
        h.update(json.dumps(attrs, sort_keys=True, default=str).encode())
        items: list[tuple[str, h5py.Dataset]] = []
        f.visititems(lambda name, obj: items.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
        for name, ds in sorted(items, key=lambda t: t[0]):
            h.update(f"{name}:{ds.shape}:{ds.dtype}".encode())
        for key in ("label", "split", "snr_r", "object_id"):
            if key in f:
                h.update(np.ascontiguousarray(f[key][:]).tobytes())
        n = f["label"].shape[0] if "label" in f else 0
        for key in ("stripes", "flux1d"):
            if key in f and n:
                h.update(np.ascontiguousarray(f[key][0]).tobytes())
                h.update(np.ascontiguousarray(f[key][n - 1]).tobytes())
    st = path.stat()
    return {
        "sha256": h.hexdigest(),
        "path": str(path.resolve()),
        "size_bytes": st.st_size,
        "mtime": st.st_mtime,
        "n_objects": int(n),
    }
