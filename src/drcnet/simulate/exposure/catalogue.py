"""The LAMOST LRS catalogue of a simulated exposure (``lrs_catalogue.csv``), as a user would download it.

One row per object fiber (Obj, F-std, PosErr) with LAMOST's column names
(:data:`drcnet.instrument.lrs_catalogue.WRITE_COLUMNS`), built from the fiber maps' truth:

* ``class``/``subclass`` on LAMOST's convention (the fiber map's ``TRUE_CLASS_LAMOST``/
  ``TRUE_SUBCLASS_LAMOST``, :mod:`drcnet.simulate.convention`): F/G/K and the other stars are ``STAR`` with
  their LAMOST subclass (LAMOST's own label for real LAMOST spectra, the shipped labeller's for library
  stars); a star whose LAMOST class is ambiguous (labeller margin < 0.3) is written as ``STAR`` with the
  labeller's best subclass all the same, since LAMOST's template match always names one (the fiber map
  leaves its ``TRUE_CLASS_LAMOST`` empty, so the truth never scores it); galaxies and QSOs
  ``GALAXY``/``QSO`` with subclass ``Non``, sky-only fibers ``Unknown``. A fiber map without the LAMOST
  columns (an exposure simulated before they existed) gives the template's own subclass (MK for library stars);
* ``obsid``: unique per (plan, lmjd, spectrograph, fiber), from a hash;
* ``designation``: one per source star (a hash of the template id, so a star observed on two plates
  keeps it), written like LAMOST's ``JHHMMSS.ss+DDMMSS.s``; ``ra``/``dec`` follow from it;
* ``snrr``: the expected S/N_r the simulator aimed at (``TRUE_SNR_R``); ``snrg`` and the LASP columns
  are empty (the simulator runs no LASP).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from drcnet.instrument.exposure import fibermap_name
from drcnet.instrument.fibermap import OBJECT_TYPES, read_fibermap
from drcnet.instrument.lrs_catalogue import WRITE_COLUMNS, science_lmjd
from drcnet.provenance import atomic_path

CATALOGUE_NAME = "lrs_catalogue.csv"
"""File name of the catalogue in the exposure folder."""


def _hash(text: str, digits: int) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:16], 16) % (10**digits)


def designation_of(key: str) -> tuple[str, float, float]:
    """A LAMOST-style designation and its (ra, dec) in degrees, from a hash of ``key`` (stable)."""
    h = _hash(key, 15)
    ra = (h % 8640000) / 100.0 / 240.0  # 0.01 s of time steps
    dec = ((h // 8640000) % 1800000) / 10.0 / 3600.0 - 25.0  # 0.1 arcsec steps, -25 .. +25 deg
    ra_s = ra * 240.0
    hh, rem = divmod(ra_s, 3600.0)
    mm, ss = divmod(rem, 60.0)
    sign = "+" if dec >= 0 else "-"
    d_s = abs(dec) * 3600.0
    dd, rem = divmod(d_s, 3600.0)
    dm, ds = divmod(rem, 60.0)
    return f"J{int(hh):02d}{int(mm):02d}{ss:05.2f}{sign}{int(dd):02d}{int(dm):02d}{ds:04.1f}", ra, dec


def lamost_class(true_class: str, true_subclass: str) -> tuple[str, str]:
    """LAMOST ``class``/``subclass`` of a simulated object from the fiber map's truth."""
    sub = true_subclass.strip()
    if sub.upper() in ("GALAXY", "QSO"):
        return sub.upper(), "Non"
    if sub.upper() == "SKY":
        return "Unknown", "Non"
    return "STAR", sub or true_class


def convention_label(truth: dict[str, np.ndarray], i: int) -> tuple[str, str]:
    """(class, subclass) of fiber row ``i`` on LAMOST's convention from a fiber map's truth columns.

    ``TRUE_CLASS_LAMOST``/``TRUE_SUBCLASS_LAMOST`` when present (an ambiguous star, class ``""``, keeps the
    labeller's best subclass, read as its class); else, or when both are empty, ``TRUE_CLASS``/``TRUE_SUBCLASS``.
    """
    if "TRUE_CLASS_LAMOST" in truth:
        cls, sub = str(truth["TRUE_CLASS_LAMOST"][i]), str(truth["TRUE_SUBCLASS_LAMOST"][i])
        if cls or sub:
            return (cls or sub[:1]), sub
    return str(truth["TRUE_CLASS"][i]), str(truth["TRUE_SUBCLASS"][i])


def write_exposure_catalogue(folder: str | Path, planid: str, spids: list[int]) -> Path:
    """Write ``folder/lrs_catalogue.csv`` from the fiber maps of spectrographs ``spids`` (atomically).

    Raises
    ------
    drcnet.instrument.errors.FrameError
        A fiber map cannot be read.
    """
    from astropy.table import Table

    folder = Path(folder)
    rows: dict[str, list[object]] = {c: [] for c in WRITE_COLUMNS}
    for spid in spids:
        fmap = read_fibermap(folder / fibermap_name(planid, spid), spid=spid)
        if fmap.truth is None:
            continue
        lmjd = science_lmjd(folder, planid, spid)
        from astropy.time import Time

        obsdate = Time(lmjd - 1, format="mjd").iso[:10] if lmjd > 0 else ""
        for i in range(len(fmap)):
            cls = str(fmap.truth["TRUE_CLASS"][i])
            if fmap.fibertype[i] not in OBJECT_TYPES or not cls:
                continue
            fiber = int(fmap.fiber[i])
            c, sub = lamost_class(*convention_label(fmap.truth, i))
            template = str(fmap.truth["TRUE_TEMPLATE"][i])
            star = template if c == "STAR" or c in ("GALAXY", "QSO") else f"{planid}-{spid}-{fiber}"
            desig, ra, dec = designation_of(star or f"{planid}-{spid}-{fiber}")
            values = {
                "obsid": 100_000_000_000 + _hash(f"{planid}:{lmjd}:{spid}:{fiber}", 11),
                "designation": desig,
                "obsdate": obsdate,
                "lmjd": lmjd,
                "planid": planid,
                "spid": spid,
                "fiberid": fiber,
                "ra": round(ra, 6),
                "dec": round(dec, 6),
                "class": c,
                "subclass": sub,
                "snrg": np.nan,
                "snrr": round(float(fmap.truth["TRUE_SNR_R"][i]), 2),
                "mag_r": round(float(fmap.mag[i]), 3),
                "teff": np.nan,
                "teff_err": np.nan,
                "logg": np.nan,
                "logg_err": np.nan,
                "feh": np.nan,
                "feh_err": np.nan,
            }
            for k in WRITE_COLUMNS:
                rows[k].append(values[k])
    table = Table({k: np.array(v) if v else np.array([], dtype=float) for k, v in rows.items()})
    path = folder / CATALOGUE_NAME
    with atomic_path(path) as tmp:
        table.write(tmp, format="ascii.csv", overwrite=True)
    return path
