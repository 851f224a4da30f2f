"""The merged catalogue of a night: the per-task Parquet catalogues as one table, and its FITS copy.

Used by :func:`drcnet.workflows.night.classify_night` once every task is done (on the client).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from drcnet.provenance import atomic_path

__all__ = ["merge_catalogues", "write_fits_catalogue"]


def merge_catalogues(paths: list[Path]) -> Any:
    """The per-task catalogues as one pyarrow table sorted by exposure, run, spectrograph, fiber.

    Tables with and without the truth columns are merged; missing values are null.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(p).replace_schema_metadata(None) for p in paths]
    if not tables:
        return pa.table({"exposure": pa.array([], pa.string()), "planid": pa.array([], pa.string()),
                         "run": pa.array([], pa.int64()), "spid": pa.array([], pa.int64()),
                         "fiber": pa.array([], pa.int64())})
    merged = pa.concat_tables(tables, promote_options="default")
    return merged.sort_by([("exposure", "ascending"), ("run", "ascending"), ("spid", "ascending"),
                           ("fiber", "ascending")])


def write_fits_catalogue(table: Any, path: Path, prov: dict[str, Any]) -> Path:
    """The merged catalogue as a FITS binary table (nulls: "" / NaN / -1 / False), provenance in the header."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from astropy.io import fits
    from astropy.table import Table

    from drcnet.instrument.lamost import provenance_cards

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
    hdu = fits.BinTableHDU(Table(cols), name="CATALOGUE")
    for key, value, comment in provenance_cards(prov):
        hdu.header[key] = (value, comment)
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)
    return path

