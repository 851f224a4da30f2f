"""Per-object groups for evaluation: source (library or real LAMOST), luminosity class, E(B-V) range.

They answer "where does the model fail?" (``drcnet evaluate`` reports accuracy per group and
S/N_r bin). All are read from the dataset file; objects whose group is not known get ``"unknown"``.

* ``source``: the library part of ``template_id`` (``pyhammer``, ``miles``, ``stelib``, ``lamost``
  for real LAMOST spectra).
* ``lum_class``: ``giant`` for log g < 3.5, ``dwarf`` otherwise (the split the LAMOST label table in
  ``shared/data/lamost_real/README.md`` uses); where log g is unknown, the MK luminosity class of the
  template (I-III giant, IV-V dwarf) from the file's ``/templates`` table.
* ``ebv``: the simulated reddening E(B-V) in the ranges :data:`EBV_EDGES` (real LAMOST spectra carry
  their own, unknown reddening and get ``unknown`` unless the file stores a value).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from drcnet.data.schema import decode
from drcnet.library.labels import GIANT_LOGG

EBV_EDGES: tuple[float, ...] = (0.0, 0.1, 0.3, 0.6)
"""Lower edges of the E(B-V) ranges (mag): 0-0.1, 0.1-0.3, 0.3-0.6, >= 0.6."""
GROUP_NAMES: tuple[str, ...] = ("source", "lum_class", "ebv")


def lum_class_of(logg: float, mk_lumclass: str = "") -> str:
    """``"giant"``, ``"dwarf"`` or ``"unknown"`` from log g (preferred) or an MK luminosity class.

    >>> lum_class_of(2.7), lum_class_of(4.4), lum_class_of(float("nan"), "III"), lum_class_of(float("nan"), "IV-V")
    ('giant', 'dwarf', 'giant', 'dwarf')
    """
    if logg is not None and math.isfinite(logg):
        return "giant" if logg < GIANT_LOGG else "dwarf"
    lc = mk_lumclass.strip().upper()
    if not lc:
        return "unknown"
    head = lc.replace("-", "/").split("/")[0]
    return "dwarf" if head.startswith(("IV", "V", "VI")) else "giant"


def ebv_range_of(ebv: float) -> str:
    """The E(B-V) range label of ``ebv`` (``"0.1-0.3"``, ``">=0.6"``, ``"unknown"`` for NaN)."""
    if ebv is None or not math.isfinite(ebv):
        return "unknown"
    edges = EBV_EDGES
    for lo, hi in zip(edges, edges[1:]):
        if ebv < hi:
            return f"{lo:g}-{hi:g}"
    return f">={edges[-1]:g}"


def object_groups(path: str | Path, rows: Sequence[int] | np.ndarray) -> dict[str, list[str]]:
    """Group labels of objects ``rows`` of a dataset file.

    Returns
    -------
    dict
        ``{"source": [...], "lum_class": [...], "ebv": [...]}``, one string per row.
    """
    rows = np.asarray(rows, dtype=np.int64)
    with h5py.File(path, "r") as h:
        tid = decode(h["template_id"][:]) if "template_id" in h else [""] * h["label"].shape[0]
        params = h["params"] if "params" in h else {}
        logg = params["logg"][:] if "logg" in params else np.full(len(tid), np.nan)
        ebv = params["ebv"][:] if "ebv" in params else np.full(len(tid), np.nan)
        mk: dict[str, str] = {}
        if "templates" in h and "lumclass" in h["templates"]:
            mk = dict(zip(decode(h["templates/template_id"][:]), decode(h["templates/lumclass"][:])))
    src = [tid[i].split(":")[0] if tid[i] else "unknown" for i in rows]
    lum = [lum_class_of(float(logg[i]), mk.get(tid[i], "")) for i in rows]
    # a real LAMOST spectrum arrives reddened by its own, unknown E(B-V); the stored value is only what was added
    red = [ebv_range_of(float(ebv[i])) if s != "lamost" else "unknown" for i, s in zip(rows, src)]
    return {"source": src, "lum_class": lum, "ebv": red}
