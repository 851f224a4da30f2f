"""The fiber map of one spectrograph: which fiber holds which object (a FITS binary table).

Columns (one row per fiber, ``FIBERID`` 1..250)::

    FIBERID     int16   fiber number on the slit, 1-based
    OBJID       str     object id ("" for sky, unused and dead fibers)
    FIBERTYPE   str     Obj, Sky, F-std, Unused, PosErr or Dead (REFERENCE section 4)
    MAG         float32 r magnitude (NaN when none)
    TRUE_CLASS      str     F/G/K or "other" of a simulated object ("" otherwise) -- evaluation only
    TRUE_SUBCLASS   str     MK subclass, GALAXY/QSO, or SKY (sky-only)   -- evaluation only
    TRUE_SNR_R      float32 expected S/N_r of the rendered star         -- evaluation only
    TRUE_TEMPLATE   str     template id the star was rendered from       -- evaluation only
    TRUE_CLASS_LAMOST    str  optional: the class on LAMOST's convention: F/G/K, "other", or ""
                              (ambiguous: the labeller's margin < 0.3; sky, unused)  -- evaluation only
    TRUE_SUBCLASS_LAMOST str  optional: LAMOST subclass (the labeller's best even when ambiguous)

The ``TRUE_*`` columns exist only for simulated exposures (the two ``*_LAMOST`` ones only in exposures
simulated since they were added: readers accept fiber maps without them); a real fiber map
has just the first four, and may carry ``OBSID`` (int, the LAMOST catalogue's obsid; -1 none), which
``--catalogue`` then matches on. The header holds ``SPID``, ``PLANID``, ``NFIBERS``
and the provenance cards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table

from drcnet.instrument.errors import FrameError, MissingFrameError
from drcnet.instrument.lamost import provenance_cards
from drcnet.provenance import atomic_path

FIBERTYPES: tuple[str, ...] = ("Obj", "Sky", "F-std", "Unused", "PosErr", "Dead")
OBJECT_TYPES: frozenset[str] = frozenset({"Obj", "F-std", "PosErr"})
"""Fiber types that point at a star and are classified."""
TRUTH_COLUMNS: tuple[str, ...] = ("TRUE_CLASS", "TRUE_SUBCLASS", "TRUE_SNR_R", "TRUE_TEMPLATE")
TRUTH_LAMOST_COLUMNS: tuple[str, ...] = ("TRUE_CLASS_LAMOST", "TRUE_SUBCLASS_LAMOST")
"""Optional truth: the simulated star's label on LAMOST's convention (read when present)."""


@dataclass
class FiberMap:
    """A spectrograph's fiber map in memory (arrays of one value per fiber, ordered by fiber)."""

    spid: int
    planid: str
    fiber: np.ndarray  # 1-based
    objid: np.ndarray  # str
    fibertype: np.ndarray  # str
    mag: np.ndarray
    truth: dict[str, np.ndarray] | None = None
    path: Path | None = None
    obsid: np.ndarray | None = None  # int64 LAMOST obsid per fiber (-1 none), from an optional OBSID column

    def __len__(self) -> int:
        return int(self.fiber.size)

    @property
    def is_object(self) -> np.ndarray:
        """Fibers on a star (Obj, F-std, PosErr)."""
        return np.isin(self.fibertype, list(OBJECT_TYPES))

    def of_type(self, *types: str) -> np.ndarray:
        """Mask ``(n_fibers,)`` of the fibers whose FIBERTYPE is one of ``types``."""
        return np.isin(self.fibertype, list(types))


def write_fibermap(path: str | Path, fmap: FiberMap, prov: Mapping[str, Any]) -> Path:
    """Write ``fmap`` as a FITS binary table (atomically)."""
    cols: dict[str, Any] = {
        "FIBERID": fmap.fiber.astype(np.int16),
        "OBJID": fmap.objid.astype(str),
        "FIBERTYPE": fmap.fibertype.astype(str),
        "MAG": fmap.mag.astype(np.float32),
    }
    for key, values in (fmap.truth or {}).items():
        cols[key] = values
    table = Table(cols)
    hdu = fits.BinTableHDU(table, name="FIBERMAP")
    hdu.header["SPID"] = (fmap.spid, "spectrograph 1-16")
    hdu.header["PLANID"] = (fmap.planid, "plan (plate) id")
    hdu.header["NFIBERS"] = (len(fmap), "fibers in this spectrograph")
    for key, value, comment in provenance_cards(prov):
        hdu.header[key] = (value, comment)
    path = Path(path)
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)
    return path


def read_fibermap(path: str | Path, spid: int | None = None, n_fibers: int | None = None) -> FiberMap:
    """Read and check a fiber map.

    Raises
    ------
    FrameError
        Unreadable file, missing columns, unknown fiber types, fiber numbers
        that are not 1..N exactly once, or a spectrograph / fiber count that
        does not match the frames (``spid``, ``n_fibers``).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFrameError(f"{path}: fiber map not found")
    try:
        table = Table.read(path, hdu=1)
        header = fits.getheader(path, 1)
    except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise FrameError(f"{path}: cannot read the fiber map table ({exc}); the file is truncated or corrupt") from exc
    missing = [c for c in ("FIBERID", "OBJID", "FIBERTYPE", "MAG") if c not in table.colnames]
    if missing:
        raise FrameError(
            f"{path}: fiber map lacks column(s) {', '.join(missing)} (needs FIBERID, OBJID, FIBERTYPE, MAG)"
        )
    fiber = np.asarray(table["FIBERID"], dtype=int)
    order = np.argsort(fiber)
    n = fiber.size
    if n_fibers is not None and n != n_fibers:
        raise FrameError(
            f"{path}: the fiber map lists {n} fibers but the frames hold {n_fibers}; "
            "it belongs to another spectrograph or plan"
        )
    if not np.array_equal(fiber[order], np.arange(1, n + 1)):
        vals, counts = np.unique(fiber, return_counts=True)
        raise FrameError(
            f"{path}: FIBERID must hold 1..{n} once each (duplicates: {vals[counts > 1].tolist()[:5]}, "
            f"range {fiber.min()}..{fiber.max()})"
        )
    ftype = np.char.strip(np.asarray(table["FIBERTYPE"]).astype(str))[order]
    bad = sorted(set(ftype.tolist()) - set(FIBERTYPES))
    if bad:
        raise FrameError(f"{path}: unknown FIBERTYPE value(s) {bad}; expected one of {', '.join(FIBERTYPES)}")
    file_spid = int(header.get("SPID", -1))
    if spid is not None and file_spid not in (-1, spid):
        raise FrameError(f"{path}: fiber map is for spectrograph {file_spid}, the frames are spectrograph {spid}")
    truth = None
    if all(c in table.colnames for c in TRUTH_COLUMNS):
        truth = {c: np.asarray(table[c])[order] for c in TRUTH_COLUMNS}
        for c in TRUTH_LAMOST_COLUMNS:
            if c in table.colnames:
                truth[c] = np.asarray(table[c])[order]
        for c in ("TRUE_CLASS", "TRUE_SUBCLASS", "TRUE_TEMPLATE", *TRUTH_LAMOST_COLUMNS):
            if c in truth:
                truth[c] = np.char.strip(truth[c].astype(str))
    obsid = None
    if "OBSID" in table.colnames:
        col = table["OBSID"]
        col = col.filled(-1) if hasattr(col, "filled") and getattr(col, "mask", None) is not None else col
        try:
            obsid = np.asarray(col, dtype=np.int64)[order]
        except (TypeError, ValueError) as exc:
            raise FrameError(f"{path}: column OBSID must hold integers (LAMOST obsids, -1 for none): {exc}") from exc
    return FiberMap(
        spid=spid if spid is not None else file_spid,
        planid=str(header.get("PLANID", "")),
        fiber=fiber[order],
        objid=np.char.strip(np.asarray(table["OBJID"]).astype(str))[order],
        fibertype=ftype,
        mag=np.asarray(table["MAG"], dtype=np.float32)[order],
        truth=truth,
        path=path,
        obsid=obsid,
    )
