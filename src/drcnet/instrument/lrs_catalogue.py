"""The LAMOST low-resolution (LRS) catalogue as the survey releases it: column names, reading, fiber keys.

A LAMOST LRS catalogue (the General Catalog, or the A/F/G/K Type Star catalogue, CSV or FITS) has
one row per spectrum. The columns drcnet uses, by their LAMOST names::

    obsid        int     unique id of the spectrum
    designation  str     the star: "JHHMMSS.ss+DDMMSS.s" (with or without a "LAMOST " prefix)
    lmjd         int     local modified Julian day of the night (see :func:`local_mjd`)
    planid       str     plan (plate) id
    spid         int     spectrograph 1-16
    fiberid      int     fiber 1-250
    class        str     STAR, GALAXY, QSO or Unknown
    subclass     str     MK-like subtype of a star ("G5", "K3", "A1V", "dM2", ...), "Non" otherwise
    snrr         float   S/N in the r band (LAMOST's S/N_r)
    snrg, teff, teff_err, logg, logg_err, feh, feh_err   (optional: NaN where absent; the LASP
                 parameters are only in the A/F/G/K catalogue)

A fiber of a raw exposure is found by (lmjd, planid, spid, fiberid) - the lmjd from the science
frame's ``MJD`` header card, the plan from ``PLANID`` - or by ``obsid`` where the fiber map carries
an ``OBSID`` column. Everything LAMOST-specific about the catalogue is here; the matching itself is
:mod:`drcnet.workflows.crossmatch`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

REQUIRED_COLUMNS: tuple[str, ...] = (
    "obsid",
    "designation",
    "lmjd",
    "planid",
    "spid",
    "fiberid",
    "class",
    "subclass",
    "snrr",
)
"""Columns a catalogue must have (LAMOST names, case-insensitive)."""
OPTIONAL_COLUMNS: tuple[str, ...] = ("snrg", "teff", "teff_err", "logg", "logg_err", "feh", "feh_err")
"""Columns read when present (NaN otherwise)."""
WRITE_COLUMNS: tuple[str, ...] = (
    "obsid",
    "designation",
    "obsdate",
    "lmjd",
    "planid",
    "spid",
    "fiberid",
    "ra",
    "dec",
    "class",
    "subclass",
    "snrg",
    "snrr",
    "mag_r",
    "teff",
    "teff_err",
    "logg",
    "logg_err",
    "feh",
    "feh_err",
)
"""Column order of a catalogue drcnet writes (``drcnet frames simulate``'s ``lrs_catalogue.csv``)."""

HEADER_PLANID = "PLANID"
"""Raw-frame header card holding the plan id."""
HEADER_MJD = "MJD"
"""Raw-frame header card holding the UTC MJD (days) of the exposure start."""
FIBERMAP_OBSID = "OBSID"
"""Optional fiber-map column with each fiber's LAMOST obsid (matched on when present)."""

SITE_UTC_OFFSET_H = 8.0
"""Xinglong (LAMOST) local time: UTC+8 (Beijing time)."""


class CatalogueError(ValueError):
    """A catalogue that cannot be used (unreadable, missing columns, no fiber of the frames in it)."""


def local_mjd(mjd_utc: float) -> int:
    """LAMOST's ``lmjd`` of an exposure starting at UTC MJD ``mjd_utc``.

    The local (UTC+8) Julian date's integer part minus 2 400 000: ``floor(MJD + 0.5 + 8/24)``. It
    changes at local noon, so one night's exposures share one lmjd (an exposure at 20:00 Beijing
    time on 2011-10-24, MJD 55858.5, has lmjd 55859, the number in LAMOST's file names
    ``spec-55859-...`` of that night). *Chosen* from that naming; a catalogue whose lmjd follows
    another rule still matches on (planid, spid, fiberid) when the error message suggests it.
    """
    if not math.isfinite(mjd_utc):
        return -1
    return int(math.floor(float(mjd_utc) + 0.5 + SITE_UTC_OFFSET_H / 24.0))


def frame_keys(header: Mapping[str, Any], fallback_planid: str = "") -> tuple[int, str]:
    """(lmjd, planid) of a raw science frame from its ``MJD`` and ``PLANID`` cards (-1 / fallback when absent)."""
    try:
        lmjd = local_mjd(float(header.get(HEADER_MJD, float("nan"))))
    except (TypeError, ValueError):
        lmjd = -1
    planid = str(header.get(HEADER_PLANID, "") or fallback_planid).strip()
    return lmjd, planid


def science_lmjd(folder: str | Path, planid: str, spid: int, run: int | None = None) -> int:
    """lmjd of the science exposure of spectrograph ``spid`` in ``folder``, from its LAMOST file name
    (the MJD in minutes, ``ro-XXb-PLANID-RUN-MJDMIN.fit``); -1 when there is none.
    With several science runs and no ``run``, the first."""
    from drcnet.instrument.lamost import parse_raw_name

    for path in sorted(Path(folder).iterdir()):
        name = parse_raw_name(path.name)
        if (
            name is not None
            and name.kind == "science"
            and name.spid == spid
            and name.planid == planid
            and (run is None or name.run == run)
        ):
            return local_mjd(name.mjd_min / 1440.0)
    return -1


def normalise_designation(value: Any) -> str:
    """A star's designation without the ``LAMOST`` prefix and spaces (``"LAMOST J0012+3456"`` -> ``"J0012+3456"``)."""
    text = str(value).strip()
    if text.upper().startswith("LAMOST"):
        text = text[6:]
    return "".join(text.split())


def read_lrs_catalogue(path: str | Path) -> dict[str, np.ndarray]:
    """Read a LAMOST LRS catalogue (CSV, or FITS table in HDU 1) into plain arrays.

    Parameters
    ----------
    path
        ``.csv`` (comma-separated, header row) or ``.fits`` / ``.fit`` / ``.fits.gz``.

    Returns
    -------
    dict of numpy.ndarray
        One array per column of :data:`REQUIRED_COLUMNS` + :data:`OPTIONAL_COLUMNS` (lower-case names):
        ``obsid``, ``lmjd``, ``spid``, ``fiberid`` int64 (-1 where empty), ``planid``, ``designation``,
        ``class``, ``subclass`` str (stripped; designation without the ``LAMOST`` prefix), the rest
        float64 (NaN where empty or absent); plus ``present``: the optional columns the file has.

    Raises
    ------
    FileNotFoundError
        No such file.
    CatalogueError
        Unreadable file, or required columns missing (one line naming them).
    """
    from astropy.table import Table

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"catalogue {path} does not exist")
    name = path.name.lower()
    try:
        if name.endswith(".csv") or name.endswith(".csv.gz"):
            table = Table.read(path, format="ascii.csv", guess=False, fast_reader=False)
        else:
            table = (
                Table.read(path, hdu=1) if name.endswith((".fits", ".fit", ".fits.gz", ".fit.gz")) else Table.read(path)
            )
    except Exception as exc:  # noqa: BLE001 - astropy raises many kinds for a bad file
        raise CatalogueError(f"{path}: cannot be read as a LAMOST catalogue table (CSV or FITS): {exc}") from exc
    cols = {c.lower().strip(): c for c in table.colnames}
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing:
        raise CatalogueError(
            f"{path}: the catalogue lacks column(s) {', '.join(missing)} (LAMOST LRS names needed: "
            f"{', '.join(REQUIRED_COLUMNS)})"
        )
    n = len(table)
    out: dict[str, np.ndarray] = {}
    for key in ("obsid", "lmjd", "spid", "fiberid"):
        out[key] = _ints(table[cols[key]], path, key)
    for key in ("planid", "designation", "class", "subclass"):
        out[key] = _strings(table[cols[key]])
    out["designation"] = np.array([normalise_designation(d) for d in out["designation"]], dtype=object).astype(str)
    out["snrr"] = _floats(table[cols["snrr"]])
    present = []
    for key in OPTIONAL_COLUMNS:
        if key in cols:
            out[key] = _floats(table[cols[key]])
            present.append(key)
        else:
            out[key] = np.full(n, np.nan)
    out["present"] = np.array(present, dtype=str)
    return out


def _filled(column: Any, fill: Any) -> np.ndarray:
    col = column.filled(fill) if hasattr(column, "filled") and getattr(column, "mask", None) is not None else column
    return np.asarray(col)


def _ints(column: Any, path: Path, key: str) -> np.ndarray:
    values = _filled(column, -1)
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    out = np.full(values.size, -1, dtype=np.int64)
    for i, v in enumerate(values.tolist()):
        text = v.decode() if isinstance(v, bytes) else str(v)
        text = text.strip()
        if text in ("", "--", "nan", "NaN", "-1"):
            continue
        try:
            f = float(text)
        except ValueError:
            raise CatalogueError(f"{path}: column {key} row {i + 1} holds {text!r}, not an integer") from None
        if math.isfinite(f):
            out[i] = int(round(f))
    return out


def _strings(column: Any) -> np.ndarray:
    values = _filled(column, "")
    return (
        np.array(
            [(v.decode() if isinstance(v, bytes) else str(v)).strip() for v in values.tolist()], dtype=object
        ).astype(str)
        if len(values)
        else np.array([], dtype=str)
    )


def _floats(column: Any) -> np.ndarray:
    values = _filled(column, np.nan)
    try:
        return values.astype(np.float64)
    except (TypeError, ValueError):
        out = np.full(values.size, np.nan)
        for i, v in enumerate(values.tolist()):
            try:
                out[i] = float(v)
            except (TypeError, ValueError):
                pass
        return out
