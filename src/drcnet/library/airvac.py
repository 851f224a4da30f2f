"""Air <-> vacuum wavelength conversion (IAU standard, as used by SDSS).

MILES and STELIB are on air wavelengths, PyHammer and LAMOST on vacuum; every
:class:`~drcnet.library.template.Template` is stored in vacuum.

The refractive index of standard air is the Ciddor (1996) based fit given by
Morton (2000, ApJS 130, 403, eq. 8), the same one the VALD/SDSS tools use:

    n - 1 = 8.34254e-5 + 2.406147e-2 / (130 - s^2) + 1.5998e-4 / (38.9 - s^2),
    s = 1e4 / lambda_vac  [1/micron]

By the IAU convention only wavelengths above 2000 A are given in air, so
wavelengths whose air value is at or below 2000 A are returned unchanged (the
two functions are exact inverses for air wavelengths above 2000 A).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Below this wavelength (Angstrom) wavelengths are vacuum by convention.
AIR_LIMIT = 2000.0


def _refractive_index_vac(wave_vac: NDArray[np.float64]) -> NDArray[np.float64]:
    """Refractive index of standard air at vacuum wavelength ``wave_vac`` (A)."""
    s2 = (1.0e4 / wave_vac) ** 2
    return 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)


def vacuum_to_air(wave_vac: ArrayLike) -> NDArray[np.float64]:
    """Convert vacuum wavelengths to air (Morton 2000).

    Parameters
    ----------
    wave_vac
        Vacuum wavelength(s) in Angstrom.

    Returns
    -------
    numpy.ndarray
        Air wavelength(s) in Angstrom (float64); unchanged where the air
        wavelength would be <= 2000 A (vacuum <= 2000.65 A).
    """
    w = np.asarray(wave_vac, dtype=np.float64)
    out = w.copy()
    sel = w > AIR_LIMIT
    air = w[sel] / _refractive_index_vac(w[sel])
    # The cut is on the AIR side (as in air_to_vacuum), so that both functions
    # are exact inverses wherever the air wavelength exceeds 2000 A.
    out[sel] = np.where(air > AIR_LIMIT, air, w[sel])
    return out


def air_to_vacuum(wave_air: ArrayLike) -> NDArray[np.float64]:
    """Convert air wavelengths to vacuum (exact inverse of :func:`vacuum_to_air`).

    Parameters
    ----------
    wave_air
        Air wavelength(s) in Angstrom (valid above 2000 A).

    Returns
    -------
    numpy.ndarray
        Vacuum wavelength(s) in Angstrom (float64); values <= 2000 A unchanged.

    Notes
    -----
    Starts from the closed-form inverse of N. Piskunov (VALD) and refines it by
    fixed-point iteration on ``lambda_vac = lambda_air * n(lambda_vac)`` so that
    the round trip with :func:`vacuum_to_air` is exact to ~1e-9 A; the
    closed form alone is good to only ~1e-5 A.
    """
    w = np.asarray(wave_air, dtype=np.float64)
    out = w.copy()
    sel = w > AIR_LIMIT
    wa = w[sel]
    s2 = (1.0e4 / wa) ** 2
    n = 1.0 + 8.336624212083e-5 + 2.408926869968e-2 / (130.1065924522 - s2) + 1.599740894897e-4 / (38.92568793293 - s2)
    wv = wa * n
    for _ in range(3):  # converges by a factor ~1e-4 per step
        wv = wa * _refractive_index_vac(wv)
    out[sel] = wv
    return out
