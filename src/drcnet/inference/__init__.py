"""The one inference path: engine, predictor and catalogue writer.

* :mod:`drcnet.inference.engine` - every model output for arrays or a dataset file (torch fp32/bf16 or
  ONNX Runtime).
* :mod:`drcnet.inference.predictor` - :class:`~drcnet.inference.predictor.Predictor`: a run folder or
  shipped model, torch or ONNX, on arrays, a dataset file or an exposure's stripes.
* :mod:`drcnet.inference.table` - the catalogue schema and :func:`~drcnet.inference.table.write_catalogue`
  (CSV, Parquet or FITS by suffix, atomic, provenance in the metadata).

Nothing heavy is imported until a name is used (``from drcnet.inference import Predictor`` loads torch).
"""

from __future__ import annotations

from typing import Any

_NAMES = {
    "Predictor": "predictor",
    "load_model": "predictor",
    "predict_table": "predictor",
    "write_catalogue": "table",
    "read_catalogue": "table",
    "prediction_table": "table",
    "predict_arrays": "engine",
    "predict_arrays_all": "engine",
    "predict_dataset": "engine",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    """The names of :data:`__all__`, imported from their module on first use."""
    if name in _NAMES:
        import importlib

        value = getattr(importlib.import_module(f"drcnet.inference.{_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'drcnet.inference' has no attribute {name!r}")
