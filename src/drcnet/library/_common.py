"""Small helpers shared by the readers: opening FITS files, gap filling, labels."""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyError, VerifyWarning
from astropy.utils.exceptions import AstropyUserWarning
from numpy.typing import NDArray

from .spectype import parse_spectral_type
from .template import Template

PathLike = str | os.PathLike[str]

#: Name of the per-folder label table shipped with the reference data.
LABELS_FILE = "labels.csv"


@contextmanager
def open_fits(path: PathLike) -> Iterator[fits.HDUList]:
    """Open a (possibly gzipped) FITS file for reading, strictly.

    ``memmap=False`` because gzip streams cannot be memory-mapped anyway and a
    closed file must not keep arrays alive. astropy only *warns* about a
    truncated file (and pads the data), so that warning is turned into an
    error here: a truncated spectrum must be skipped, not used. The harmless
    VerifyWarning about STELIB's non-standard ``APNUM1`` card is silenced.
    The file is read (and, if gzipped, decompressed) into memory in one go:
    astropy seeks back and forth between headers and data, and every backward
    seek in a gzip stream restarts decompression (this halves the PyHammer
    load time). A truncated gzip stream raises EOFError here.
    """
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    # Always parse from memory: no file handle is left open if parsing fails.
    source = io.BytesIO(raw)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=VerifyWarning)
        warnings.filterwarnings("error", message=".*truncated.*", category=AstropyUserWarning)
        try:
            with fits.open(source, memmap=False, lazy_load_hdus=False) as hdul:
                yield hdul
        except AstropyUserWarning as exc:
            # A warning escalated above: report it as the I/O error it is.
            raise OSError(str(exc)) from exc
        except VerifyError as exc:
            # An unparsable header card (``Z = 0.001 +- 0.0002``): astropy's message is long and names no file.
            raise ValueError(f"{path}: {_card_problem(exc)}; the file's header is damaged") from exc


def _card_problem(exc: BaseException) -> str:
    """``unparsable header card Z`` from astropy's VerifyError text (first line only)."""
    import re

    lines = str(exc).strip().splitlines()
    m = re.search(r"Unparsable card \((\S+)\)", lines[0] if lines else "")
    return (
        f"unparsable header card {m.group(1)}" if m else f"invalid header ({lines[0] if lines else type(exc).__name__})"
    )


def fill_masked(wave: NDArray[np.float64], flux: NDArray[np.float64], good: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Replace the flux at pixels where ``good`` is False by linear interpolation.

    Pixels beyond the first/last good pixel take the nearest good value
    (``numpy.interp`` behaviour); such edges are marked bad in the mask anyway.

    Raises
    ------
    ValueError
        If there is no good pixel at all.
    """
    if not good.any():
        raise ValueError("no valid flux pixel")
    if good.all():
        return flux
    out = flux.copy()
    out[~good] = np.interp(wave[~good], wave[good], flux[good])
    return out


def finalize(wave: Any, flux: Any, mask: Any) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """Return float64 wave/flux and a bool mask with non-finite flux masked and filled.

    Raises
    ------
    ValueError
        If the wavelength is not strictly increasing or not finite, or the
        array lengths differ.
    """
    w = np.ascontiguousarray(wave, dtype=np.float64)
    f = np.ascontiguousarray(flux, dtype=np.float64)
    m = np.ascontiguousarray(mask, dtype=bool)
    if not (w.ndim == f.ndim == m.ndim == 1 and w.size == f.size == m.size and w.size > 1):
        raise ValueError(f"wave/flux/mask shapes differ or are empty: {w.shape}, {f.shape}, {m.shape}")
    if not np.all(np.isfinite(w)) or not np.all(np.diff(w) > 0):
        raise ValueError("wavelength is not finite and strictly increasing")
    m &= np.isfinite(f)
    f = fill_masked(w, np.where(np.isfinite(f), f, 0.0), m)
    return w, f, m


def to_float(value: Any) -> float:
    """Convert a header/CSV value to float; NaN for missing (``''``, ``'-'``, ``'--'``)."""
    if value is None:
        return math.nan
    if isinstance(value, (int, float, np.number)):
        v = float(value)
    else:
        text = str(value).strip()
        try:
            v = float(text)
        except ValueError:
            return math.nan
    return v if math.isfinite(v) else math.nan


@lru_cache(maxsize=64)
def _read_labels_csv(path: str, mtime: float) -> dict[str, dict[str, str]]:
    """Read ``labels.csv`` keyed by its ``file`` column (cached per file version)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["file"]: row for row in csv.DictReader(fh) if row.get("file")}


def folder_labels(folder: PathLike) -> dict[str, dict[str, str]]:
    """Return the rows of ``<folder>/labels.csv`` keyed by file name ({} if absent)."""
    p = Path(folder) / LABELS_FILE
    if not p.is_file():
        return {}
    return _read_labels_csv(str(p.resolve()), p.stat().st_mtime)


def labels_for(path: PathLike) -> dict[str, str] | None:
    """Return the ``labels.csv`` row for a spectrum file, or None."""
    p = Path(path)
    return folder_labels(p.parent).get(p.name)


def file_stem(path: PathLike) -> str:
    """File name without ``.gz``/``.fz`` and ``.fits``/``.fit`` suffixes."""
    name = Path(path).name
    for suffix in (".gz", ".fz", ".fits", ".fit", ".fts"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def typed_template(
    wave: NDArray[np.float64],
    flux: NDArray[np.float64],
    mask: NDArray[np.bool_],
    spt_raw: str,
    *,
    library: str,
    source_id: str,
    path: PathLike,
    meta: dict[str, Any],
    teff: float,
    logg: float,
    feh: float,
    unparsed_label: str | None = None,
    dwarfs: bool = False,
) -> Template:
    """A :class:`Template` classified by its MK type ``spt_raw`` (class, subclass, luminosity class).

    ``meta`` gets ``spt_raw`` and, when the type cannot be parsed, ``unparsed_label``
    (default: ``spt_raw``). With ``dwarfs`` every spectrum of the library is a dwarf:
    a parsed type gets luminosity class V whatever it says.
    """
    st = parse_spectral_type(spt_raw)
    meta["spt_raw"] = spt_raw
    if not st.parsed:
        meta["unparsed_label"] = spt_raw if unparsed_label is None else unparsed_label
    lumclass = ("V" if st.parsed else "") if dwarfs else st.lumclass
    return Template(
        wave=wave,
        flux=flux,
        mask=mask,
        cls=st.cls,
        subclass=st.subclass,
        teff=teff,
        logg=logg,
        feh=feh,
        lumclass=lumclass,
        library=library,
        source_id=source_id,
        path=str(path),
        meta=meta,
    )
