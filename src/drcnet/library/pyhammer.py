"""Reader for the PyHammer (Kesseli et al. 2017) empirical SDSS/BOSS templates."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np
from astropy.io import fits

from ._common import PathLike, file_stem, finalize, to_float, typed_template
from .template import Template

# "<SpT>_<feh bin>_Dwarf", e.g. "F0_+0.0_Dwarf"
_NAME = re.compile(r"^(?P<spt>[A-Z]\d(?:\.\d)?)_(?P<feh>[+-]\d\.\d)_(?P<lum>[A-Za-z]+)$")

#: Half-width of a PyHammer [Fe/H] bin; a tag T means the bin (T - 0.5, T].
FEH_BIN_WIDTH = 0.5


def feh_bin_centre(tag: str) -> float:
    """Representative [Fe/H] of a PyHammer metallicity bin tag.

    The tag ``T`` labels the bin ``T - 0.5 < [Fe/H] < T`` (``+0.5`` is
    ``> 0.0``, ``-2.0`` is ``< -2.0``; see the library README), so the centre is
    ``T - 0.25``. Returns NaN for an unreadable tag.
    """
    t = to_float(tag)
    return t - FEH_BIN_WIDTH / 2 if math.isfinite(t) else math.nan


def _loglam_to_wave(loglam: np.ndarray) -> np.ndarray:
    """Vacuum wavelength from the stored float32 log10(lambda).

    The grid is log-uniform but stored in float32, which quantises it (steps
    jump by one ulp). If a straight line fits to within float32 rounding we
    rebuild the exact float64 grid from the fit; otherwise keep the values.
    """
    ll = np.asarray(loglam, dtype=np.float64)
    idx = np.arange(ll.size, dtype=np.float64)
    # Closed-form least-squares line; plain sums, because polyfit/np.dot go
    # through BLAS, whose thread start-up dominates for 61618 points.
    dx = idx - idx.mean()
    ym = ll.mean()
    slope = float(np.sum(dx * (ll - ym)) / np.sum(dx * dx))
    fit = ym + slope * dx
    if np.max(np.abs(fit - ll)) < 1e-6:
        ll = fit
    return np.exp(ll * np.log(10.0))


def pyhammer_from_hdul(hdul: fits.HDUList, path: PathLike, labels: Mapping[str, str] | None = None) -> Template:
    """Build a Template from an open PyHammer ``*_Dwarf.fits(.gz)`` template.

    Parameters
    ----------
    hdul
        The open FITS file (HDU1 table ``LogLam``/``Flux``, HDU2 table with colours
        and, for most files, ``Teff``/``Log_g`` in row 0).
    path
        Where it was read from (for ``source_id`` and ``Template.path``).
    labels
        The file's row of ``labels.csv`` (``spt``, ``cls``, ``feh_bin``,
        ``teff_mean``, ``logg_mean``); when None the labels come from the file
        name and HDU2.

    Returns
    -------
    Template
        Vacuum wavelengths (PyHammer is vacuum), ``lumclass="V"``,
        ``feh`` = the [Fe/H] bin centre (see :func:`feh_bin_centre`; the bin
        tag is kept in ``meta["feh_bin"]``), ``source_id`` = file stem.
    """
    stem = file_stem(path)
    table = hdul[1].data
    names = {n.lower(): n for n in table.columns.names}
    wave = _loglam_to_wave(table[names["loglam"]])
    flux = np.asarray(table[names["flux"]], dtype=np.float64)
    hdr_teff = hdr_logg = math.nan
    if len(hdul) > 2 and hdul[2].data is not None:
        pcols = {n.lower(): n for n in hdul[2].columns.names}
        # K5_+1.0 and the K7 files have colours only, no Teff/Log_g column.
        if "teff" in pcols:
            hdr_teff = to_float(hdul[2].data[pcols["teff"]][0])
        if "log_g" in pcols:
            hdr_logg = to_float(hdul[2].data[pcols["log_g"]][0])
    mask = np.isfinite(flux)
    wave, flux, mask = finalize(wave, flux, mask)

    name = _NAME.match(stem)
    if labels:
        spt_raw = labels.get("spt", "")
        feh_tag = labels.get("feh_bin", "")
        teff = to_float(labels.get("teff_mean"))
        logg = to_float(labels.get("logg_mean"))
    else:
        spt_raw = name.group("spt") if name else ""
        feh_tag = name.group("feh") if name else ""
        teff, logg = hdr_teff, hdr_logg
    meta: dict[str, object] = {"format": "pyhammer", "feh_bin": feh_tag}
    # Every PyHammer template is a dwarf co-add (file names end in _Dwarf).
    return typed_template(
        wave,
        flux,
        mask,
        spt_raw,
        library="pyhammer",
        source_id=stem,
        path=path,
        meta=meta,
        teff=teff,
        logg=logg,
        feh=feh_bin_centre(feh_tag),
        dwarfs=True,
    )
