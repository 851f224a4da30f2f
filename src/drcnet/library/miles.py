"""Reader for MILES v9.1 individual-star spectra (mangadap FITS conversion)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
from astropy.io import fits

from ._common import PathLike, file_stem, finalize, to_float, typed_template
from .airvac import air_to_vacuum
from .template import Template

_MILES_ID = re.compile(r"(m\d{4})", re.IGNORECASE)


def linear_axis(header: Mapping[str, object], n: int) -> np.ndarray:
    """Wavelength of a linear FITS axis 1: ``CRVAL1 + (i + 1 - CRPIX1) * CDELT1``.

    ``CD1_1`` is used when ``CDELT1`` is absent; ``CRPIX1`` defaults to 1.
    """
    crval = float(header["CRVAL1"])  # type: ignore[arg-type]
    step = header.get("CDELT1", header.get("CD1_1"))
    if step is None:
        raise KeyError("neither CDELT1 nor CD1_1 in header")
    crpix = float(header.get("CRPIX1", 1.0))  # type: ignore[arg-type]
    return crval + (np.arange(n, dtype=np.float64) + 1.0 - crpix) * float(step)  # type: ignore[arg-type]


def miles_from_hdul(hdul: fits.HDUList, path: PathLike, labels: Mapping[str, str] | None = None) -> Template:
    """Build a Template from an open MILES ``MILES_res2.50_star_m????V.fits(.gz)`` file.

    Parameters
    ----------
    hdul
        Open FITS file with a 1-D primary image on a linear AIR wavelength axis
        (3540.5-7409.6 A, 0.9 A/pix, 2.5 A FWHM).
    path
        Where it was read from.
    labels
        The file's row of ``labels.csv`` (``miles_id``, ``spt``, ``teff``,
        ``logg``, ``feh``). The header holds no labels, so without this row
        the template has ``cls=""`` and is reported as unlabelled.

    Returns
    -------
    Template
        Wavelengths converted to vacuum. Exact zeros (one pixel in m0468,
        ~6 % of m0970) are gaps: mask False and filled by interpolation.
        cls/subclass/lumclass are parsed from the raw ``spt`` string with
        :func:`~drcnet.library.spectype.parse_spectral_type` rather than
        taken from labels.csv's ``cls`` column, which reads the cluster code
        ``"GB"`` (giant branch) as class G.
    """
    hdu = hdul[0]
    if hdu.data is None or hdu.data.ndim != 1:
        raise ValueError("MILES file has no 1-D primary image")
    flux = np.asarray(hdu.data, dtype=np.float64)
    wave_air = linear_axis(hdu.header, flux.size)
    fwhm = to_float(hdu.header.get("FWHM"))
    mask = np.isfinite(flux) & (flux != 0.0)
    wave, flux, mask = finalize(air_to_vacuum(wave_air), flux, mask)

    stem = file_stem(path)
    found = _MILES_ID.search(stem)
    meta: dict[str, object] = {
        "format": "miles",
        "fwhm_A": fwhm,
        "air_wave_range": (float(wave_air[0]), float(wave_air[-1])),
    }
    if labels:
        source_id = labels.get("miles_id") or (found.group(1) if found else stem)
        spt_raw = labels.get("spt", "")
        teff, logg, feh = (to_float(labels.get(k)) for k in ("teff", "logg", "feh"))
        meta["name"] = labels.get("name", "")
    else:
        source_id = found.group(1) if found else stem
        spt_raw = ""
        teff = logg = feh = float("nan")
        meta["unlabelled"] = True
    return typed_template(
        wave,
        flux,
        mask,
        spt_raw,
        library="miles",
        source_id=source_id.lower(),
        path=path,
        meta=meta,
        teff=teff,
        logg=logg,
        feh=feh,
        unparsed_label=spt_raw if labels else "<no labels.csv row>",
    )
