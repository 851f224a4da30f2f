"""Reader for LAMOST low-resolution 1D spectra in the DR1, DR7 and DR8+ layouts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.io import fits

from ._common import PathLike, file_stem, finalize, to_float
from .spectype import parse_spectral_type
from .template import Template

LAMOST_LAYOUTS = ("lamost_dr1", "lamost_dr7", "lamost_dr8")

# Plausible optical wavelength limits (A) used to recognise a wavelength row.
_WAVE_MIN, _WAVE_MAX = 1000.0, 20000.0


def is_wavelength_row(row: np.ndarray) -> bool:
    """True if ``row`` looks like a wavelength axis (finite, increasing, optical)."""
    r = np.asarray(row, dtype=np.float64)
    return bool(
        r.size > 1 and np.all(np.isfinite(r)) and np.all(np.diff(r) > 0) and r[0] > _WAVE_MIN and r[-1] < _WAVE_MAX
    )


def coadd_table(hdul: fits.HDUList) -> fits.BinTableHDU | None:
    """Return the DR8+ ``COADD`` table HDU if present (FLUX and WAVELENGTH columns)."""
    for hdu in hdul[1:]:
        if isinstance(hdu, fits.BinTableHDU) and hdu.name.upper() == "COADD":
            cols = {c.upper() for c in hdu.columns.names}
            if {"FLUX", "WAVELENGTH"} <= cols:
                return hdu
    return None


def lamost_layout(hdul: fits.HDUList) -> str | None:
    """Identify the LAMOST layout of an open file from its content, or None.

    * ``lamost_dr8``: a BINTABLE extension ``COADD`` with FLUX and WAVELENGTH;
    * ``lamost_dr7``: primary image (>=3, N) whose row 2 is a wavelength axis
      (the header also carries COEFF0/COEFF1, so the row decides, not the keys);
    * ``lamost_dr1``: primary image (>=3, N) with COEFF0/COEFF1 and row 2 not a
      wavelength (it holds flux/continuum ~1).
    """
    if coadd_table(hdul) is not None:
        return "lamost_dr8"
    prim = hdul[0]
    data = prim.data
    if data is None or data.ndim != 2 or not (3 <= data.shape[0] <= 9) or data.shape[1] < 100:
        return None
    if is_wavelength_row(data[2]):
        return "lamost_dr7"
    if "COEFF0" in prim.header and "COEFF1" in prim.header:
        return "lamost_dr1"
    return None


def _rows(hdul: fits.HDUList, layout: str) -> tuple[np.ndarray, ...]:
    """Return wave, flux, ivar, andmask for a layout."""
    if layout == "lamost_dr8":
        tab = coadd_table(hdul)
        assert tab is not None
        cols = {c.upper(): c for c in tab.columns.names}

        def col(name: str) -> np.ndarray:
            return np.asarray(tab.data[cols[name]][0], dtype=np.float64)

        andmask = col("ANDMASK") if "ANDMASK" in cols else np.zeros_like(col("FLUX"))
        return col("WAVELENGTH"), col("FLUX"), col("IVAR"), andmask
    data = np.asarray(hdul[0].data, dtype=np.float64)
    if layout == "lamost_dr7":
        wave = data[2]
    else:
        hdr = hdul[0].header
        # DR1 stores no wavelength: log-linear axis from the header.
        wave = 10.0 ** (float(hdr["COEFF0"]) + float(hdr["COEFF1"]) * np.arange(data.shape[1], dtype=np.float64))
    return wave, data[0], data[1], data[3]


def _header_meta(hdr: Mapping[str, Any], layout: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"format": layout}
    for key, name in (("OBSID", "obsid"), ("DATA_V", "data_v"), ("DESIG", "designation"), ("FIBERID", "fiberid")):
        if key in hdr:
            meta[name] = hdr[key]
    meta["z"] = to_float(hdr.get("Z"))
    for band in "UGRIZ":
        if f"SN_{band}" in hdr:
            meta[f"snr_{band.lower()}"] = to_float(hdr[f"SN_{band}"])
    return meta


def lamost_from_hdul(hdul: fits.HDUList, path: PathLike, labels: Mapping[str, str] | None = None) -> Template:
    """Build a Template from an open LAMOST low-resolution 1D spectrum.

    Parameters
    ----------
    hdul
        Open ``spec-*.fits(.gz)`` in the DR1, DR7 or DR8+ layout (detected from
        content by :func:`lamost_layout`).
    path
        Where it was read from.
    labels
        Unused (LAMOST labels are in the header); accepted for a uniform API.

    Returns
    -------
    Template
        Vacuum wavelengths as stored (LAMOST is vacuum; the spectrum is NOT
        shifted to the rest frame, the pipeline redshift is in ``meta["z"]``).
        ``mask = (ivar > 0) & (andmask == 0) & (flux != 0)``: exact zeros are
        the padding at the red end of DR7/DR8 files (which has ivar > 0).
        Masked pixels are filled by linear interpolation. Labels from the
        header: ``CLASS`` must be ``STAR`` for ``SUBCLASS`` to be parsed
        (``"A7V"`` -> A / A7 / V); ``source_id`` is the header ``FILENAME``
        stem (``spec-55859-F5902_sp01-001``), else OBSID, else the file stem.
    """
    layout = lamost_layout(hdul)
    if layout is None:
        raise ValueError("not a LAMOST 1D spectrum (no COADD table, no (5, N) image)")
    wave, flux, ivar, andmask = _rows(hdul, layout)
    hdr = hdul[0].header
    meta = _header_meta(hdr, layout)
    obj_class = str(hdr.get("CLASS", "")).strip()
    subclass_raw = str(hdr.get("SUBCLASS", "")).strip()
    filename = str(hdr.get("FILENAME", "")).strip()
    mask = (ivar > 0) & (andmask == 0) & (flux != 0.0)
    wave, flux, mask = finalize(wave, flux, mask)

    meta["class_raw"], meta["spt_raw"] = obj_class, subclass_raw
    st = parse_spectral_type(subclass_raw) if obj_class.upper() == "STAR" else None
    if st is None or not st.parsed:
        meta["unparsed_label"] = f"{obj_class} {subclass_raw}".strip()
        cls = subclass = lumclass = ""
    else:
        cls, subclass, lumclass = st.cls, st.subclass, st.lumclass
    if filename:
        source_id = file_stem(filename)
    elif "obsid" in meta:
        source_id = str(meta["obsid"])
    else:
        source_id = file_stem(path)
    return Template(
        wave=wave,
        flux=flux,
        mask=mask,
        cls=cls,
        subclass=subclass,
        lumclass=lumclass,
        library="lamost",
        source_id=source_id,
        path=str(path),
        meta=meta,
    )
