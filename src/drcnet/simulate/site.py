"""The site and the atmosphere: night-sky spectrum, extinction curve, telluric absorption.

Reads the real data in ``<DRCNET_DATA>/observatory`` (see its README): the
night-sky spectrum (vacuum, 3000-10000 A, with [O I] 5577/6300, Na D, OH bands
and the O2 A/B absorption) and the KPNO extinction curve (a stand-in for
Xinglong).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from drcnet.instrument.config import InstrumentConfig
from drcnet.paths import DataNotFoundError, observatory_dir
from drcnet.simulate.spectra import LogGridSpectrum, ab_magnitude, photon_flux, to_resolution

TELLURIC_BANDS_A = ((6862.0, 6960.0), (7592.0, 7710.0))
"""O2 B and A bands (vacuum A) where the sky continuum shows the telluric absorption."""


def read_extinction_curve(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a two-column extinction curve (A, mag per airmass), skipping comments."""
    try:
        data = np.loadtxt(path, comments="#")
    except (OSError, ValueError) as exc:
        raise DataNotFoundError(f"{path}: cannot read the extinction curve ({exc})") from exc
    if data.ndim != 2 or data.shape[1] < 2:
        raise DataNotFoundError(f"{path}: expected two columns (wavelength A, mag/airmass)")
    return data[:, 0], data[:, 1]


def read_sky(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the night-sky spectrum (HDU 0 flux, HDU 1 wavelength)."""
    try:
        with fits.open(path, memmap=False) as hdul:
            flux = np.asarray(hdul[0].data, dtype=np.float64)
            wave = np.asarray(hdul[1].data, dtype=np.float64)
    except (OSError, IndexError, TypeError) as exc:
        raise DataNotFoundError(f"{path}: cannot read the night-sky spectrum ({exc})") from exc
    if flux.shape != wave.shape:
        raise DataNotFoundError(f"{path}: flux and wavelength HDUs differ in length")
    return wave, flux


def telluric_transmission(sky_wave: np.ndarray, sky_flux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Derive the O2 A/B band transmission at airmass 1 from the sky continuum.

    Inside each band, the sky continuum (a running 20th percentile, which
    ignores the emission lines) is divided by a straight line between the
    continuum just outside the band. Elsewhere the transmission is 1.
    """
    from scipy.ndimage import percentile_filter

    trans = np.ones_like(sky_wave)
    step = float(np.median(np.diff(sky_wave)))
    for lo, hi in TELLURIC_BANDS_A:
        pad = 30.0
        sel = (sky_wave > lo - pad) & (sky_wave < hi + pad)
        cont = percentile_filter(sky_flux[sel], 20, size=max(3, int(4.0 / step)))
        w = sky_wave[sel]
        left = np.median(cont[w < lo])
        right = np.median(cont[w > hi])
        line = left + (right - left) * (w - lo) / (hi - lo)
        band = (w >= lo) & (w <= hi)
        t = np.ones_like(w)
        t[band] = np.clip(cont[band] / line[band], 0.0, 1.0)
        trans[sel] = t
    return sky_wave, trans


@dataclass(frozen=True)
class Site:
    """Atmosphere and sky, prepared once for the forward model.

    Attributes
    ----------
    sky
        Sky photon rate per fiber (photons/s/cm^2/A at the telescope), at the
        instrument resolution.
    ext_wave, ext_mag
        Extinction curve, mag per airmass.
    telluric
        O2 transmission at airmass 1, at the instrument resolution.
    """

    sky: LogGridSpectrum
    ext_wave: np.ndarray
    ext_mag: np.ndarray
    telluric: LogGridSpectrum

    @classmethod
    def load(cls, instrument: InstrumentConfig, data_root: str | Path | None = None) -> Site:
        """Load the observatory data and prepare it for ``instrument``."""
        obs = observatory_dir(data_root)
        sky_path = obs / "paranal_sky.fits"
        ext_path = obs / "kpnoextinct.dat"
        for p in (sky_path, ext_path):
            if not p.is_file():
                raise DataNotFoundError(f"{p} is missing from the observatory data folder {obs}")
        sky_wave, sky_flux = read_sky(sky_path)
        site = instrument.site
        # scale the relative sky to the chosen r-band surface brightness, times the fiber's area
        fiber_mag = site.sky_r_mag_arcsec2 - 2.5 * np.log10(site.fiber_area_arcsec2)
        flam = sky_flux * 10 ** (-0.4 * (fiber_mag - ab_magnitude(sky_wave, sky_flux)))
        rp = instrument.blue.resolving_power
        # the sky file is far sharper than LAMOST (0.05 A steps): treat it as unresolved
        sky = to_resolution(sky_wave, photon_flux(sky_wave, flam), rp)
        tw, tt = telluric_transmission(sky_wave, sky_flux)
        telluric = to_resolution(tw, tt, rp)
        ext_wave, ext_mag = read_extinction_curve(ext_path)
        return cls(sky=sky, ext_wave=ext_wave, ext_mag=ext_mag, telluric=telluric)

    def extinction(self, wave: np.ndarray, airmass: float, ln_wave: np.ndarray | None = None) -> np.ndarray:
        """Atmospheric transmission (continuum extinction and O2 bands) at ``airmass``.

        Parameters
        ----------
        wave : numpy.ndarray
            Vacuum wavelengths (A), any shape.
        airmass : float
            Airmass of the observation.
        ln_wave : numpy.ndarray, optional
            ``np.log(wave)`` when the caller has it already (same result, one logarithm less).

        Returns
        -------
        numpy.ndarray
            Transmission (0..1), the shape of ``wave``.
        """
        mag = np.interp(wave, self.ext_wave, self.ext_mag)
        ln_wave = np.log(wave) if ln_wave is None else ln_wave
        t_o2 = np.clip(self.telluric.at_ln(ln_wave, fill=1.0), 1e-6, 1.0)
        return 10 ** (-0.4 * mag * airmass) * t_o2**airmass
