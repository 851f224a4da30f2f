"""Recognise a spectrum file's format from its content and dispatch to a reader."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from astropy.io import fits

from ._common import PathLike, labels_for, open_fits
from .errors import UnrecognisedFormatError
from .lamost import lamost_from_hdul, lamost_layout
from .miles import miles_from_hdul
from .pyhammer import pyhammer_from_hdul
from .stelib import stelib_from_hdul
from .template import Template

FORMATS = ("pyhammer", "miles", "stelib", "lamost_dr1", "lamost_dr7", "lamost_dr8")

HduReader = Callable[[fits.HDUList, PathLike, Mapping[str, str] | None], Template]

#: Format name -> function building a Template from an open file.
HDU_READERS: dict[str, HduReader] = {
    "pyhammer": pyhammer_from_hdul,
    "miles": miles_from_hdul,
    "stelib": stelib_from_hdul,
    "lamost_dr1": lamost_from_hdul,
    "lamost_dr7": lamost_from_hdul,
    "lamost_dr8": lamost_from_hdul,
}


def _has_columns(hdu: fits.hdu.base.ExtensionHDU, *names: str) -> bool:
    if not isinstance(hdu, fits.BinTableHDU):
        return False
    cols = {c.lower() for c in hdu.columns.names}
    return all(n.lower() in cols for n in names)


def format_of(hdul: fits.HDUList) -> str | None:
    """Return the format name of an open FITS file, or None if unrecognised.

    Criteria (checked on the real headers of every file in the shared data):

    * ``pyhammer``: a BINTABLE extension with ``LogLam`` and ``Flux`` columns;
    * ``lamost_dr8`` / ``lamost_dr7`` / ``lamost_dr1``: see
      :func:`drcnet.library.lamost.lamost_layout` (COADD table; (5, N) image
      whose row 2 is a wavelength; (5, N) image with COEFF0/COEFF1);
    * ``stelib``: 1-D primary image with a linear axis (CRVAL1) and the
      STELIB label keys ``SPECTYPE`` and ``TEFF``;
    * ``miles``: 1-D primary image with CRVAL1/CDELT1 and ``TPLLIB = 'MILES'``.
    """
    if any(_has_columns(h, "LogLam", "Flux") for h in hdul[1:]):
        return "pyhammer"
    layout = lamost_layout(hdul)
    if layout is not None:
        return layout
    prim = hdul[0]
    hdr = prim.header
    if prim.data is not None and prim.data.ndim == 1 and "CRVAL1" in hdr:
        if "SPECTYPE" in hdr and "TEFF" in hdr:
            return "stelib"
        if str(hdr.get("TPLLIB", "")).strip().upper() == "MILES":
            return "miles"
    return None


def detect_format(path: PathLike) -> str:
    """Detect the format of a spectrum file from its HDU structure and header.

    Parameters
    ----------
    path
        A FITS file, gzipped or not.

    Returns
    -------
    str
        One of ``'pyhammer'``, ``'miles'``, ``'stelib'``, ``'lamost_dr1'``,
        ``'lamost_dr7'``, ``'lamost_dr8'``.

    Raises
    ------
    UnrecognisedFormatError
        If the file is FITS but matches none of the layouts.
    OSError, EOFError, ValueError
        If the file cannot be read as FITS (corrupt or truncated).
    """
    with open_fits(path) as hdul:
        return _require_format(hdul, path)


def _require_format(hdul: fits.HDUList, path: PathLike) -> str:
    fmt = format_of(hdul)
    if fmt is None:
        raise UnrecognisedFormatError(
            f"{path}: not a recognised spectrum file (expected a PyHammer LogLam/Flux table, a MILES or STELIB "
            "1-D linear image, or a LAMOST DR1/DR7 (5, N) image / DR8+ COADD table)"
        )
    return fmt


def read_spectrum(path: PathLike, labels: Mapping[str, str] | None = None, fmt: str | None = None) -> Template:
    """Read any supported spectrum file into a :class:`Template`.

    Parameters
    ----------
    path
        The file.
    labels
        Its ``labels.csv`` row; when None, the row is looked up in
        ``labels.csv`` beside the file if there is one.
    fmt
        Skip detection and use this format.

    Returns
    -------
    Template

    Raises
    ------
    UnrecognisedFormatError
        If the format cannot be recognised.
    OSError, EOFError, ValueError, KeyError
        If the file is corrupt, truncated or lacks a required item.
    """
    if labels is None:
        labels = labels_for(path)
    # Open once: detection and reading share the decompressed file.
    with open_fits(path) as hdul:
        fmt = fmt or _require_format(hdul, path)
        if fmt not in HDU_READERS:
            raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
        return HDU_READERS[fmt](hdul, Path(path), labels)
