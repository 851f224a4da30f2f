"""The catalogue schema and its one writer: CSV, Parquet or FITS, chosen by the file name.

One schema (:data:`SCHEMA`) names every column a drcnet catalogue can hold; each output is a documented
run of it (the model columns, :data:`drcnet.catalogue.CATALOGUE_COLUMNS`, are the same everywhere):

==================  =====================================================================================
output              columns
==================  =====================================================================================
``drcnet predict``  :data:`PRED_COLUMNS`: ``object_id``, ``label``, model columns, ``snr_r``, ``bad_input``
exposure catalogue  :data:`EXPOSURE_COLUMNS`: fiber columns, model columns, ``snr_r``, ``flags``,
                    ``flag_names``, ``no_class`` (+ :data:`TRUTH_COLUMNS` when the fiber maps have truth)
night catalogue     :data:`NIGHT_KEY_COLUMNS` (``exposure``, ``planid``, ``run``), then the exposure
                    catalogue's columns
==================  =====================================================================================

The columns differ by output (a dataset file has objects and labels, an exposure fibers, flags and a
fiber map's truth), so they are kept as they were; what is one is the definition of each column, the
way it is written and where the provenance goes. The decimals a CSV cell gets are the column's
``info.format`` (:data:`PREDICT_FORMATS`, :data:`EXPOSURE_FORMATS`), as astropy writes them.

:func:`write_catalogue` writes an astropy :class:`~astropy.table.Table` or a ``pyarrow.Table`` atomically:

* ``.csv`` - the standard-library :mod:`csv` writer (the cells astropy's ``ascii.csv`` writes, faster);
  provenance in ``<file>.provenance.json`` beside it.
* ``.parquet`` - pyarrow; provenance as JSON in the schema metadata (``drcnet.provenance``).
* ``.fits`` / ``.fit`` / ``.fits.gz`` - a ``CATALOGUE`` binary table HDU; provenance as header cards
  (:func:`drcnet.instrument.lamost.provenance_cards`); nulls of a pyarrow table become ``""``, NaN, -1
  or False.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from drcnet.catalogue import CATALOGUE_COLUMNS
from drcnet.conventions import CLASSES_WITH_OTHER
from drcnet.provenance import atomic_path, write_json_atomic, write_text_atomic

FIBER_COLUMNS: tuple[str, ...] = ("spid", "fiber", "object_id", "fibertype", "mag_r")
"""Where an exposure catalogue's object sits: spectrograph, fiber, object id, fiber type, r magnitude."""
TAIL_COLUMNS: tuple[str, ...] = ("snr_r", "flags", "flag_names", "no_class")
"""S/N_r and the reduction's verdict on an exposure catalogue's fiber."""
TRUTH_COLUMNS: tuple[str, ...] = ("true_class", "true_subclass", "true_snr_r", "correct")
"""The fiber map's truth (simulated exposures), in the model's label convention."""
NIGHT_KEY_COLUMNS: tuple[str, ...] = ("exposure", "planid", "run")
"""The columns a night catalogue puts before an exposure catalogue's."""
PRED_COLUMNS: tuple[str, ...] = ("object_id", "label", *CATALOGUE_COLUMNS, "snr_r", "bad_input")
"""Columns of the prediction table: ``object_id``, ``label`` (true class name from the file, ``other``
included; empty when unknown), the catalogue columns (:data:`drcnet.catalogue.CATALOGUE_COLUMNS`:
``pred``, calibrated ``prob_*``, ``pred_set``, ``subclass``, ``lum_class``, Teff/log g/[Fe/H] with
errors, ``ood_score``, ``ood``), ``snr_r`` and ``bad_input``: 1 for an object whose input holds NaN/inf
pixels (it gets no class: ``pred`` empty, probabilities ``nan``)."""
EXPOSURE_COLUMNS: tuple[str, ...] = (*FIBER_COLUMNS, *CATALOGUE_COLUMNS, *TAIL_COLUMNS)
"""Columns of an exposure catalogue (then :data:`TRUTH_COLUMNS` where every fiber map has the truth)."""

SCHEMA: dict[str, str] = {
    "exposure": "exposure folder, relative to the night root",
    "planid": "plan id of the exposure",
    "run": "run number of the science exposure",
    "spid": "spectrograph (1-16)",
    "fiber": "fiber id (fiberid, 1-250)",
    "object_id": "object id (dataset file) or obsid-like PLANID-spNN-FFF (exposure)",
    "fibertype": "fiber type of the fiber map (Obj, F-std, PosErr)",
    "mag_r": "r magnitude of the fiber map",
    "label": "true class name from the dataset file, empty when unknown",
    "pred": "F, G, K or other; empty when not classified",
    "prob_F": "probability of F (calibrated per S/N_r bin when the model has a calibration)",
    "prob_G": "probability of G",
    "prob_K": "probability of K",
    "prob_other": "probability of other (NaN for a three-class model)",
    "pred_set": "classes of the conformal prediction set, |-joined",
    "subclass": "most probable LAMOST subclass",
    "subclass_prob": "its probability",
    "lum_class": "dwarf or giant",
    "teff": "effective temperature (K)",
    "teff_err": "its 1-sigma error (K)",
    "logg": "surface gravity log g (dex)",
    "logg_err": "its 1-sigma error (dex)",
    "feh": "metallicity [Fe/H] (dex)",
    "feh_err": "its 1-sigma error (dex)",
    "ood_score": "energy score of the (calibrated) logits: higher = less like the training data",
    "ood": "1 when ood_score is above the calibration's threshold",
    "snr_r": "S/N_r",
    "bad_input": "1 when the input holds NaN/inf pixels (no class)",
    "flags": "reduction flag bits (drcnet.conventions.FLAG_BITS)",
    "flag_names": "the flags' names, comma-joined",
    "no_class": "why no class was given: trace_lost, bad_arm or bad_input; empty otherwise",
    "true_class": "class of the fiber map's truth (empty: not scored)",
    "true_subclass": "subclass of the fiber map's truth",
    "true_snr_r": "S/N_r of the fiber map's truth",
    "correct": "pred equals true_class",
}
"""Every column a catalogue can hold, with its meaning (units in brackets)."""

PREDICT_FORMATS: dict[str, str] = {
    "prob_F": ".6f",
    "prob_G": ".6f",
    "prob_K": ".6f",
    "prob_other": ".6f",
    "subclass_prob": ".6f",
    "teff": ".1f",
    "teff_err": ".1f",
    "logg": ".4f",
    "logg_err": ".4f",
    "feh": ".4f",
    "feh_err": ".4f",
    "ood_score": ".4f",
    "snr_r": ".3f",
}
"""Decimals of each float column of the prediction table."""
EXPOSURE_FORMATS: dict[str, str] = {
    **{c: ".4f" for c in ("prob_F", "prob_G", "prob_K", "prob_other", "subclass_prob", "snr_r", "mag_r", "ood_score")},
    "teff": ".0f",
    "teff_err": ".0f",
    **{c: ".3f" for c in ("logg", "logg_err", "feh", "feh_err")},
}
"""Decimals of each float column of an exposure (and night) catalogue."""

FITS_SUFFIXES = (".fits", ".fit", ".fits.gz")
SUFFIXES = (".csv", ".parquet", *FITS_SUFFIXES)
"""File name endings :func:`write_catalogue` knows."""


def catalogue_format(path: str | Path) -> str:
    """``"csv"``, ``"parquet"`` or ``"fits"`` from the end of ``path``'s name (case-insensitive).

    Raises
    ------
    ValueError
        Naming the file, for any other ending.
    """
    name = Path(path).name.lower()
    if name.endswith(FITS_SUFFIXES):
        return "fits"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".csv"):
        return "csv"
    raise ValueError(f"{path}: a catalogue must end in {', '.join(SUFFIXES)}")


def set_formats(table: Any, formats: dict[str, str]) -> Any:
    """Set ``info.format`` of the columns of astropy ``table`` named in ``formats``; returns ``table``."""
    for name, fmt in formats.items():
        if name in table.colnames:
            table[name].info.format = fmt
    return table


class Columns(dict):
    """A table as ``{name: (N,) numpy array}`` in column order, with the CSV ``formats`` of its float columns.

    What ``drcnet predict`` writes: building an astropy Table would import astropy (~0.3 s of every
    command's start). :func:`write_catalogue` takes it like a Table; :meth:`to_astropy` makes one.
    """

    def __init__(self, data: dict[str, np.ndarray], formats: dict[str, str] | None = None) -> None:
        super().__init__(data)
        self.formats: dict[str, str] = {k: v for k, v in (formats or {}).items() if k in data}

    @property
    def colnames(self) -> list[str]:
        """Column names in order."""
        return list(self)

    def to_astropy(self) -> Any:
        """The same columns as an astropy Table, ``info.format`` set from :attr:`formats`."""
        from astropy.table import Table

        return set_formats(Table(dict(self)), self.formats)


def prediction_columns(pred: dict[str, Any], calibration: Any = None) -> Columns:
    """The ``drcnet predict`` table (:data:`PRED_COLUMNS`) of :func:`drcnet.inference.engine.predict_dataset`'s output.

    Parameters
    ----------
    pred
        :func:`~drcnet.inference.engine.predict_dataset` output (``outputs`` holds the raw model outputs;
        a dict with only ``prob`` is taken as the logits ``log(prob)``).
    calibration
        The run's calibration (:func:`drcnet.calibration.load_calibration`); None: plain softmax, empty
        ``pred_set``, ``ood`` 0.

    Returns
    -------
    Columns
        One row per object; ``label`` and ``pred`` as class names (``other`` included), empty when unknown /
        not classified; non-finite model floats as NaN; :data:`PREDICT_FORMATS`.
    """
    from drcnet.catalogue import catalogue_columns

    outputs = pred.get("outputs")
    if not outputs:
        with np.errstate(divide="ignore", invalid="ignore"):
            outputs = {"logits": np.log(np.clip(np.asarray(pred["prob"], dtype=np.float64), 1e-300, None))}
    snr = np.asarray(pred["snr_r"], dtype=np.float64)
    cols = catalogue_columns(outputs, snr, calibration)
    n = len(pred["object_id"])
    labels = np.asarray(pred["label"]).astype(np.int64)
    names = np.array([*CLASSES_WITH_OTHER, ""], dtype=str)
    data: dict[str, Any] = {
        "object_id": np.array([str(o) for o in pred["object_id"]], dtype=str) if n else np.zeros(0, dtype="U1"),
        "label": names[np.where((labels >= 0) & (labels < len(CLASSES_WITH_OTHER)), labels, -1)]
        if n
        else np.zeros(0, dtype="U1"),
    }
    for name in CATALOGUE_COLUMNS:
        v = np.asarray(cols[name])
        if name in PREDICT_FORMATS:
            v = v.astype(np.float64)
            v = np.where(np.isfinite(v), v, np.nan)  # a missing value is written "nan" (never "inf")
        elif v.dtype == object:
            v = v.astype(str) if n else np.zeros(0, dtype="U1")
        data[name] = v
    data["snr_r"] = snr
    data["bad_input"] = (np.asarray(cols["pred_index"]) < 0).astype(np.int64)
    return Columns(data, PREDICT_FORMATS)


def prediction_table(pred: dict[str, Any], calibration: Any = None) -> Any:
    """:func:`prediction_columns` as an astropy Table (``info.format`` set from :data:`PREDICT_FORMATS`)."""
    return prediction_columns(pred, calibration).to_astropy()


def _cells(col: Any, fmt: str | None = None) -> list[str]:
    """The CSV cells of one column, as astropy's ``ascii.csv`` writes them (``info.format``, ``str``)."""
    values = np.asarray(col)
    if fmt is None and hasattr(col, "info"):
        fmt = getattr(col.info, "format", None)
    if values.dtype.kind == "f":
        if fmt:
            return [format(v, fmt) for v in values.tolist()]
        return [str(v) for v in values.tolist()]
    if values.dtype.kind in "US":
        return values.astype(str).tolist()
    if fmt:
        return [format(v, fmt) for v in values.tolist()]
    return [str(v) for v in values.tolist()]


def csv_text(table: Any) -> str:
    """``table`` (astropy or :class:`Columns`) as CSV text: a header row, then one row per object."""
    formats = getattr(table, "formats", {})
    columns = [_cells(table[name], formats.get(name)) for name in table.colnames]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(table.colnames)
    w.writerows(zip(*columns, strict=True))
    return buf.getvalue()


def write_csv(table: Any, path: str | Path) -> Path:
    """``table`` (astropy or :class:`Columns`) as CSV at ``path``, atomically (:func:`csv_text`)."""
    return write_text_atomic(path, csv_text(table))


def arrow_to_astropy(table: Any) -> Any:
    """A ``pyarrow.Table`` as an astropy Table with nulls filled: ``""``, NaN, -1 or False."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from astropy.table import Table

    cols: dict[str, Any] = {}
    for name in table.column_names:
        col = table[name]
        typ = col.type
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            vals = pc.fill_null(col, "").to_pylist()
            cols[name] = np.array(vals, dtype=str) if vals else np.array([], dtype="U1")
        elif pa.types.is_floating(typ):
            cols[name] = pc.fill_null(col, np.nan).to_numpy()
        elif pa.types.is_integer(typ):
            cols[name] = pc.fill_null(col, -1).to_numpy()
        elif pa.types.is_boolean(typ):
            cols[name] = pc.fill_null(col, False).to_numpy(zero_copy_only=False)
        else:
            cols[name] = np.array([str(v) for v in col.to_pylist()], dtype=str)
    return Table(cols)


def astropy_to_arrow(table: Any) -> Any:
    """An astropy Table or :class:`Columns` as a ``pyarrow.Table`` (strings as ``string``, numbers as they are)."""
    import pyarrow as pa

    cols = {}
    for name in table.colnames:
        values = np.asarray(table[name])
        cols[name] = pa.array(values.tolist(), pa.string()) if values.dtype.kind in "US" else pa.array(values)
    return pa.table(cols)


def _is_arrow(table: Any) -> bool:
    return type(table).__module__.startswith("pyarrow")


def write_catalogue(
    table: Any, path: str | Path, prov: dict[str, Any] | None = None, metadata_key: str = "drcnet.provenance"
) -> Path:
    """Write a catalogue atomically as CSV, Parquet or FITS, chosen by the end of ``path``'s name.

    Parameters
    ----------
    table
        An astropy :class:`~astropy.table.Table` (CSV cells use each column's ``info.format``), a
        :class:`Columns` (its ``formats``) or a ``pyarrow.Table`` (nulls allowed).
    path
        ``.csv``, ``.parquet``, ``.fits``, ``.fit`` or ``.fits.gz``.
    prov
        Provenance (:func:`drcnet.provenance.provenance`): ``<path>.provenance.json`` beside a CSV, JSON in
        the Parquet schema metadata under ``metadata_key``, header cards of the FITS HDU. ``None``: none
        is written.
    metadata_key
        The Parquet schema metadata key of ``prov``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        ``path`` ends in none of the known suffixes (:data:`SUFFIXES`).
    """
    path = Path(path)
    kind = catalogue_format(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        arrow = table if _is_arrow(table) else astropy_to_arrow(table)
        if prov is not None:
            arrow = arrow.replace_schema_metadata({metadata_key: json.dumps(prov, default=str)})
        with atomic_path(path) as tmp:
            pq.write_table(arrow, tmp)
        return path
    if kind == "fits":
        astro = arrow_to_astropy(table) if _is_arrow(table) else table
        astro = astro.to_astropy() if isinstance(astro, Columns) else astro
        from astropy.io import fits

        from drcnet.instrument.lamost import provenance_cards

        hdu = fits.BinTableHDU(astro, name="CATALOGUE")
        for key, value, comment in provenance_cards(prov) if prov is not None else []:
            hdu.header[key] = (value, comment)
        with atomic_path(path) as tmp:
            fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)
        return path
    write_csv(arrow_to_astropy(table) if _is_arrow(table) else table, path)
    if prov is not None:
        write_json_atomic(path.with_name(path.name + ".provenance.json"), prov)
    return path


def read_catalogue(path: str | Path) -> Any:
    """A catalogue written by :func:`write_catalogue` as an astropy Table (CSV, Parquet or FITS)."""
    from astropy.table import Table

    kind = catalogue_format(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return arrow_to_astropy(pq.read_table(path))
    if kind == "fits":
        return Table.read(path, hdu="CATALOGUE")
    return Table.read(path, format="ascii.csv")
