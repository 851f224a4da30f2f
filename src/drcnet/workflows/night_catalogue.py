"""The merged catalogue of a night: the per-task Parquet catalogues as one table.

Used by :func:`drcnet.workflows.night.classify_night` once every task is done (on the client).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["merge_catalogues"]


def merge_catalogues(paths: list[Path]) -> Any:
    """The per-task catalogues as one pyarrow table sorted by exposure, run, spectrograph, fiber.

    Tables with and without the truth columns are merged; missing values are null.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(p).replace_schema_metadata(None) for p in paths]
    if not tables:
        return pa.table(
            {
                "exposure": pa.array([], pa.string()),
                "planid": pa.array([], pa.string()),
                "run": pa.array([], pa.int64()),
                "spid": pa.array([], pa.int64()),
                "fiber": pa.array([], pa.int64()),
            }
        )
    merged = pa.concat_tables(tables, promote_options="default")
    return merged.sort_by(
        [("exposure", "ascending"), ("run", "ascending"), ("spid", "ascending"), ("fiber", "ascending")]
    )
