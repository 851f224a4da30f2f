"""Spectral libraries -> :class:`Template` records on one vacuum-wavelength convention.

Supported inputs (format detected from file content, not names): PyHammer
SDSS/BOSS templates, MILES v9.1, STELIB v3.2 and LAMOST low-resolution 1D
spectra in the DR1, DR7 and DR8+ layouts. Use :func:`load_templates` for whole
folders and :func:`read_spectrum` for one file.
"""

from __future__ import annotations

from .airvac import air_to_vacuum, vacuum_to_air
from .errors import LibraryError, LibraryWarning, UnrecognisedFormatError
from .formats import FORMATS, detect_format, read_spectrum
from .loader import LoadResult, load_templates, summarize
from .spectype import SpectralType, parse_spectral_type
from .template import Template

__all__ = [
    "FORMATS",
    "LibraryError",
    "LibraryWarning",
    "LoadResult",
    "SpectralType",
    "Template",
    "UnrecognisedFormatError",
    "air_to_vacuum",
    "detect_format",
    "load_templates",
    "parse_spectral_type",
    "read_spectrum",
    "summarize",
    "vacuum_to_air",
]
