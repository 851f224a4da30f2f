"""The Template record: one stellar spectrum from any library, on one convention."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Template:
    """One stellar spectrum with its labels, on vacuum wavelengths.

    Attributes
    ----------
    wave
        Vacuum wavelength in Angstrom, strictly increasing, float64.
    flux
        Relative F_lambda, float64, finite everywhere (gaps are filled or the
        template is rejected; ``mask`` says which pixels are measured).
    mask
        True where the flux is a measurement, False where it was filled
        (STELIB gaps and telluric bands, LAMOST masked pixels, spliced regions).
    cls
        MK class letter (``"F"``, ``"G"``, ``"K"``, other letters for other
        classes), ``""`` when unknown.
    subclass
        MK subclass such as ``"G5"`` or ``"F7.5"``, ``""`` when unknown.
    teff, logg, feh
        Effective temperature (K), log surface gravity (cgs) and [Fe/H];
        NaN when unknown.
    lumclass
        Luminosity class (``"V"``, ``"III"``, ...), ``""`` when unknown.
    library
        Source library: ``"pyhammer"``, ``"miles"``, ``"stelib"`` or ``"lamost"``.
    source_id
        Identifier of the star (or co-add) within its library; together with
        ``library`` it names one source uniquely (see :attr:`template_id`).
    path
        The file it was read from.
    meta
        Anything else worth keeping (header values, splice partner, ...).
    """

    wave: np.ndarray
    flux: np.ndarray
    mask: np.ndarray
    cls: str
    subclass: str
    teff: float = math.nan
    logg: float = math.nan
    feh: float = math.nan
    lumclass: str = ""
    library: str = ""
    source_id: str = ""
    path: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def template_id(self) -> str:
        """Globally unique id, ``"<library>:<source_id>"``."""
        return f"{self.library}:{self.source_id}"

    def covers(self, wmin: float, wmax: float) -> bool:
        """Return True if the spectrum spans ``[wmin, wmax]`` Angstrom."""
        return bool(self.wave[0] <= wmin and self.wave[-1] >= wmax)
