"""Exceptions and warnings raised while reading spectral libraries."""

from __future__ import annotations


class LibraryError(ValueError):
    """A library folder or file cannot give any usable spectrum.

    Raised for problems the caller must fix (an empty folder, a path that does
    not exist, a file whose format is not recognised when read on its own).
    """


class UnrecognisedFormatError(LibraryError):
    """A FITS file that matches none of the supported spectrum layouts."""


class LibraryWarning(UserWarning):
    """A single file was skipped, or labels could not be parsed, while loading.

    Loading goes on; the details are also recorded in
    :class:`drcnet.library.loader.LoadResult`.
    """
