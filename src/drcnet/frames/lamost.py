"""LAMOST raw frames on disk: file names, headers, reading and checking (the instrument adapter).

Everything LAMOST-specific about raw files lives here; the reduction in
:mod:`drcnet.reduce` works on plain arrays.

Names follow ``../shared/REFERENCE.md`` section 4,
``Class+type-spID+color-planID-run-MJD``::

    rb-16r-20150924000612-10000-82496166.fit(.gz)
    |`-- type: o object, s sky, f flat, b bias, a arc, t test
    `--- class: r raw

with the spectrograph number (1-16, written with two digits by drcnet, one or
two accepted), the arm colour ``b``/``r``, the plan id (no ``-``), a run number
and the MJD in minutes.

A raw frame is one primary HDU of ``4136 x (32 + 4096 + 32)`` unsigned 16-bit
pixels: the left 32 columns are amplifier A's overscan, data columns 0..2047
belong to amplifier A, 2048..4095 to amplifier B, and the right 32 columns are
B's overscan (see :mod:`drcnet.instrument`).
"""

from __future__ import annotations

import gzip
import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from drcnet.frames.errors import FrameError, MissingFrameError
from drcnet.instrument import N_COLS, N_ROWS, OVERSCAN, CCDConfig
from drcnet.provenance import atomic_path

RAW_SHAPE: tuple[int, int] = (N_ROWS, 2 * OVERSCAN + N_COLS)
"""Shape of a raw frame: rows x (overscan A + data + overscan B)."""

KIND_LETTER: dict[str, str] = {"science": "o", "sky": "s", "flat": "f", "bias": "b", "arc": "a", "test": "t"}
"""Frame kind -> LAMOST type letter."""
LETTER_KIND: dict[str, str] = {v: k for k, v in KIND_LETTER.items()}
OBSTYPE: dict[str, str] = {"science": "OBJECT", "sky": "SKY", "flat": "FLAT", "bias": "BIAS", "arc": "ARC", "test": "TEST"}
"""Frame kind -> header OBSTYPE."""
ARM_LETTER: dict[str, str] = {"blue": "b", "red": "r"}
LETTER_ARM: dict[str, str] = {v: k for k, v in ARM_LETTER.items()}

_NAME_RE = re.compile(
    r"^r(?P<type>[osfbat])-(?P<spid>\d{1,2})(?P<color>[br])-(?P<planid>[^-/]+)-(?P<run>\d+)-(?P<mjd>\d+)"
    r"\.fits?(?:\.gz)?$")

DATASEC = f"[{OVERSCAN + 1}:{OVERSCAN + N_COLS},1:{N_ROWS}]"
BIASSEC_A = f"[1:{OVERSCAN},1:{N_ROWS}]"
BIASSEC_B = f"[{OVERSCAN + N_COLS + 1}:{2 * OVERSCAN + N_COLS},1:{N_ROWS}]"
MAX_NAN_FRACTION = 0.5
"""A frame with more NaN pixels than this share is refused outright."""


class FrameWarning(UserWarning):
    """Something odd in a raw file that the reduction works around (e.g. a missing GAIN card)."""


# -- names -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RawName:
    """The parts of a LAMOST raw-file name."""

    kind: str
    spid: int
    arm: str
    planid: str
    run: int
    mjd_min: int

    def filename(self, suffix: str = ".fit") -> str:
        """File name, e.g. ``rb-01r-SIM00000-10000-86400720.fit``."""
        return (f"r{KIND_LETTER[self.kind]}-{self.spid:02d}{ARM_LETTER[self.arm]}-{self.planid}"
                f"-{self.run}-{self.mjd_min}{suffix}")


def parse_raw_name(name: str) -> RawName | None:
    """Parse a LAMOST raw-file name; ``None`` when ``name`` is not one."""
    m = _NAME_RE.match(Path(name).name)
    if m is None:
        return None
    return RawName(kind=LETTER_KIND[m["type"]], spid=int(m["spid"]), arm=LETTER_ARM[m["color"]],
                   planid=m["planid"], run=int(m["run"]), mjd_min=int(m["mjd"]))


# -- headers ---------------------------------------------------------------------------------------
def provenance_cards(prov: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """Header cards that carry a provenance record (:func:`drcnet.provenance.provenance`)."""
    return [
        ("DRCVERS", str(prov.get("version", "")), "drcnet version that wrote this file"),
        ("DRCGIT", str(prov.get("git_commit", "")), "drcnet git commit"),
        ("DRCDATE", str(prov.get("created_utc", "")), "written (UTC)"),
        ("DRCSEED", -1 if prov.get("seed") is None else int(prov["seed"]), "random seed (-1: none)"),
        ("DRCCONF", json.dumps(prov.get("config", {}), separators=(",", ":")), ""),
    ]


def frame_header(name: RawName, exptime_s: float, ccd: CCDConfig, prov: Mapping[str, Any],
                 extra: Mapping[str, Any] | None = None) -> fits.Header:
    """LAMOST-style primary header of a raw frame."""
    mjd = name.mjd_min / 1440.0
    from astropy.time import Time

    h = fits.Header()
    cards: list[tuple[str, Any, str]] = [
        ("TELESCOP", "LAMOST", "Guoshoujing Telescope"),
        ("INSTRUME", "LRS", "low-resolution spectrographs"),
        ("OBSTYPE", OBSTYPE[name.kind], "BIAS, FLAT, ARC or OBJECT"),
        ("EXPTIME", float(exptime_s), "exposure time (s)"),
        ("SPID", name.spid, "spectrograph 1-16"),
        ("CAMERA", ARM_LETTER[name.arm], "b: blue arm, r: red arm"),
        ("ARM", name.arm, "spectrograph arm"),
        ("PLANID", name.planid, "plan (plate) id"),
        ("RUN", name.run, "run number"),
        ("MJD", round(mjd, 6), "modified Julian date of the start (days)"),
        ("MJDMIN", name.mjd_min, "MJD in minutes (as in the file name)"),
        ("DATE-OBS", Time(mjd, format="mjd").isot, "start of the exposure (UTC)"),
        ("GAIN", float(ccd.gain_e_per_adu), "e-/ADU"),
        ("RDNOISE", float(ccd.read_noise_e), "read noise (e-)"),
        ("SATURATE", int(ccd.adc_max), "ADC ceiling (ADU)"),
        ("DATASEC", DATASEC, "data area (both amplifiers)"),
        ("BIASSECA", BIASSEC_A, "overscan of amplifier A (cols 0-2047)"),
        ("BIASSECB", BIASSEC_B, "overscan of amp B (cols 2048-4095)"),
        ("NAMPS", 2, "output amplifiers"),
    ]
    cards += [(k, v, "") for k, v in (extra or {}).items()]
    cards += provenance_cards(prov)
    for key, value, comment in cards:
        h[key] = (value, comment)
    return h


# -- raw arrays ------------------------------------------------------------------------------------
def assemble_raw(data: np.ndarray, overscan: np.ndarray) -> np.ndarray:
    """Raw frame from the data area ``(rows, 4096)`` and the overscan ``(rows, 2, 32)``."""
    rows = data.shape[0]
    raw = np.empty((rows, RAW_SHAPE[1]), dtype=np.uint16)
    raw[:, :OVERSCAN] = overscan[:, 0]
    raw[:, OVERSCAN:OVERSCAN + N_COLS] = data
    raw[:, OVERSCAN + N_COLS:] = overscan[:, 1]
    return raw


def data_area(raw: np.ndarray) -> np.ndarray:
    """View of the data columns 0..4095 of a raw frame."""
    return raw[:, OVERSCAN:OVERSCAN + N_COLS]


def overscan_area(raw: np.ndarray) -> np.ndarray:
    """Overscan strips ``(rows, 2, 32)`` of amplifiers A and B (a copy)."""
    return np.stack([raw[:, :OVERSCAN], raw[:, OVERSCAN + N_COLS:]], axis=1)


def write_raw_frame(path: str | Path, raw: np.ndarray, header: fits.Header) -> Path:
    """Write a raw frame (uint16 with BZERO 32768, as LAMOST does) atomically."""
    path = Path(path)
    if raw.shape != RAW_SHAPE:
        raise ValueError(f"{path}: refusing to write a frame of shape {raw.shape}; expected {RAW_SHAPE}")
    hdu = fits.PrimaryHDU(raw, header=header)
    with atomic_path(path) as tmp:
        if path.name.endswith(".gz"):
            with gzip.open(tmp, "wb", compresslevel=1) as fh:
                hdu.writeto(fh, output_verify="exception")
        else:
            hdu.writeto(tmp, overwrite=True, output_verify="exception")
    return path


# -- reading ---------------------------------------------------------------------------------------
@dataclass
class RawFrame:
    """A raw frame read from disk and checked.

    Attributes
    ----------
    path
        The file.
    raw
        Pixels, ``RAW_SHAPE``: uint16 as written by the camera, or float32
        when the file holds floats (then NaN marks bad pixels).
    header
        Primary header.
    name
        The parsed file name (``None`` when the name is not LAMOST-style).
    """

    path: Path
    raw: np.ndarray
    header: fits.Header
    name: RawName | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def data(self) -> np.ndarray:
        """Data columns 0..4095 (a view)."""
        return data_area(self.raw)

    @property
    def overscan(self) -> np.ndarray:
        """Overscan strips ``(rows, 2, 32)``."""
        return overscan_area(self.raw)

    @property
    def exptime(self) -> float:
        return float(self.header.get("EXPTIME", 0.0))

    def gain(self, default: CCDConfig) -> float:
        """GAIN (e-/ADU) from the header; the configured value (with a warning) when it is missing."""
        return self._card("GAIN", default.gain_e_per_adu)

    def read_noise_e(self, default: CCDConfig) -> float:
        """RDNOISE (e-) from the header; the configured value (with a warning) when it is missing."""
        return self._card("RDNOISE", default.read_noise_e)

    def saturation(self, default: CCDConfig) -> float:
        return self._card("SATURATE", float(default.adc_max), warn=False)

    def _card(self, key: str, default: float, warn: bool = True) -> float:
        value = self.header.get(key)
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = float("nan")
        if not np.isfinite(value) or value <= 0:
            if warn:
                msg = f"{self.path}: header card {key} is missing or invalid; using the configured {default}"
                warnings.warn(msg, FrameWarning, stacklevel=3)
                self.warnings.append(msg)
            return float(default)
        return value


def _open_fits(path: Path) -> tuple[np.ndarray | None, fits.Header]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                header = hdul[0].header.copy()
                data = hdul[0].data
                data = None if data is None else np.asarray(data)
    except (OSError, ValueError, TypeError, IndexError, EOFError, KeyError) as exc:
        raise FrameError(f"{path}: cannot be read as a FITS file ({exc}); it is truncated or corrupt - "
                         "copy it again from the archive") from exc
    return data, header


def read_raw_frame(path: str | Path, kind: str | None = None, spid: int | None = None,
                   arm: str | None = None) -> RawFrame:
    """Read and check one raw frame.

    Parameters
    ----------
    path
        The FITS file.
    kind, spid, arm
        What the frame should be; checked against the header (``OBSTYPE``,
        ``SPID``, ``CAMERA``) where given.

    Raises
    ------
    MissingFrameError
        The file does not exist.
    FrameError
        Unreadable FITS, wrong shape, no pixels, mostly NaN pixels, or a header
        that says it is another kind of frame, spectrograph or arm.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFrameError(f"{path}: file not found")
    data, header = _open_fits(path)
    if data is None:
        raise FrameError(f"{path}: the primary HDU holds no image; expected a raw frame of {RAW_SHAPE[0]} rows x "
                         f"{RAW_SHAPE[1]} columns")
    if data.shape != RAW_SHAPE:
        raise FrameError(f"{path}: frame shape is {data.shape}, expected {RAW_SHAPE} = {N_ROWS} rows x "
                         f"({OVERSCAN} + {N_COLS} + {OVERSCAN}) columns (overscan A, data, overscan B); "
                         "is this a raw LAMOST frame?")
    if data.dtype.kind in "ui":
        raw = data.astype(np.uint16, copy=False) if data.dtype != np.uint16 else data
    elif data.dtype.kind == "f":
        raw = data.astype(np.float32, copy=False)
        bad = ~np.isfinite(raw)
        if bad.mean() > MAX_NAN_FRACTION:
            raise FrameError(f"{path}: {100 * bad.mean():.0f} % of the pixels are NaN or infinite; the frame is unusable")
        raw[bad] = np.nan
    else:
        raise FrameError(f"{path}: pixel type {data.dtype} is not an image type")
    name = parse_raw_name(path.name)
    frame = RawFrame(path=path, raw=raw, header=header, name=name)
    _check_header(frame, kind, spid, arm)
    return frame


def _check_header(frame: RawFrame, kind: str | None, spid: int | None, arm: str | None) -> None:
    h, path = frame.header, frame.path
    if kind is not None and "OBSTYPE" in h:
        got = str(h["OBSTYPE"]).strip().upper()
        if got != OBSTYPE[kind]:
            raise FrameError(f"{path}: header OBSTYPE is {got!r} but this file is used as the {kind} frame "
                             f"(OBSTYPE {OBSTYPE[kind]!r}); check the file name's type letter")
    if spid is not None and "SPID" in h and int(h["SPID"]) != spid:
        raise FrameError(f"{path}: header SPID is {h['SPID']} but the file name says spectrograph {spid}")
    if arm is not None and "CAMERA" in h:
        cam = str(h["CAMERA"]).strip().lower()[:1]
        if cam and cam != ARM_LETTER[arm]:
            raise FrameError(f"{path}: header CAMERA is {h['CAMERA']!r} but the file name says the {arm} arm")
