"""Reader for STELIB v3.2 (Le Borgne et al. 2003) spectra."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from astropy.io import fits

from ._common import PathLike, file_stem, finalize, to_float, typed_template
from .airvac import air_to_vacuum
from .miles import linear_axis
from .template import Template

#: Telluric O2 bands left in STELIB, VACUUM Angstrom (B band, A band). Chosen
#: from the continuum-normalised median of 72 F/G spectra with full coverage: the B band
#: absorbs from 6866 A (head) to ~6955 A, the A band from 7594 A to ~7700 A.
#: The forward model applies its own telluric absorption, so these pixels are
#: replaced by a straight line and masked. Water bands (7170-7350, 8100-8400,
#: 8900-9800 A) are weaker and are left as they are.
TELLURIC_WINDOWS_VAC: tuple[tuple[float, float], ...] = ((6860.0, 6960.0), (7590.0, 7705.0))

_PREFIX = "STELIB_v3.2_"


def stelib_from_hdul(hdul: fits.HDUList, path: PathLike, labels: Mapping[str, str] | None = None) -> Template:
    """Build a Template from an open STELIB ``STELIB_v3.2_*.fits(.gz)`` file.

    Parameters
    ----------
    hdul
        Open FITS file with a 1-D primary image, linear AIR wavelength axis
        ``CRVAL1 + (i + 1 - CRPIX1) * CDELT1`` (~3200-9900 A, ~1 A/pix).
    path
        Where it was read from.
    labels
        Optional ``labels.csv`` row; only used for labels the header lacks
        (the header's SPECTYPE/TEFF/LOG_G/FE_H are the primary source).

    Returns
    -------
    Template
        Vacuum wavelengths. Gaps (stored as exact 0.0) and the telluric
        windows :data:`TELLURIC_WINDOWS_VAC` have mask False and are filled
        by linear interpolation; ``meta["telluric_windows"]`` lists the
        windows so coverage checks can tell "filled on purpose" from "no
        data". Fluxes are erg/s/cm2/A (absolute), not normalised.
    """
    hdu = hdul[0]
    if hdu.data is None or hdu.data.ndim != 1:
        raise ValueError("STELIB file has no 1-D primary image")
    flux = np.asarray(hdu.data, dtype=np.float64)
    header = hdu.header
    wave_air = linear_axis(header, flux.size)
    spectype = str(header.get("SPECTYPE", "")).strip()
    teff = to_float(header.get("TEFF"))
    logg = to_float(header.get("LOG_G"))
    feh = to_float(header.get("FE_H"))
    meta: dict[str, object] = {
        "format": "stelib",
        "object": str(header.get("OBJECT", "")).strip(),
        "radvel": to_float(header.get("RADVEL")),
        "av_applied": to_float(header.get("ISEXTINC")),
        "bunit": str(header.get("BUNIT", "")).strip(),
    }
    wave = air_to_vacuum(wave_air)
    measured = np.isfinite(flux) & (flux != 0.0)
    telluric = np.zeros(wave.size, dtype=bool)
    for lo, hi in TELLURIC_WINDOWS_VAC:
        telluric |= (wave >= lo) & (wave <= hi)
    wave, flux, mask = finalize(wave, flux, measured & ~telluric)
    meta["telluric_windows"] = TELLURIC_WINDOWS_VAC
    meta["n_gap_pixels"] = int((~measured).sum())

    if not spectype and labels:
        spectype = labels.get("spectype", "")
    if labels:
        teff = teff if np.isfinite(teff) else to_float(labels.get("teff"))
        logg = logg if np.isfinite(logg) else to_float(labels.get("logg"))
        feh = feh if np.isfinite(feh) else to_float(labels.get("feh"))
    stem = file_stem(path)
    source_id = stem[len(_PREFIX) :] if stem.startswith(_PREFIX) else stem
    return typed_template(
        wave,
        flux,
        mask,
        spectype,
        library="stelib",
        source_id=source_id,
        path=path,
        meta=meta,
        teff=teff,
        logg=logg,
        feh=feh,
    )
