"""The LAMOST low-resolution spectrographs: raw-file names, header map, frame headers, writing frames.

Everything LAMOST-specific about raw files lives here (:data:`LAMOST`, a
:class:`~drcnet.instrument.base.Spectrograph`); reading and checking a frame is
:mod:`drcnet.instrument.rawframe`, and the reduction in :mod:`drcnet.reduce`
works on plain arrays.

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
B's overscan (see :mod:`drcnet.instrument.config`).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from drcnet.instrument.base import Spectrograph
from drcnet.instrument.config import DETECTOR, N_COLS, N_ROWS, OVERSCAN, CCDConfig
from drcnet.provenance import atomic_path

KIND_LETTER: dict[str, str] = {"science": "o", "sky": "s", "flat": "f", "bias": "b", "arc": "a", "test": "t"}
"""Frame kind -> LAMOST type letter."""
LETTER_KIND: dict[str, str] = {v: k for k, v in KIND_LETTER.items()}
OBSTYPE: dict[str, str] = {
    "science": "OBJECT",
    "sky": "SKY",
    "flat": "FLAT",
    "bias": "BIAS",
    "arc": "ARC",
    "test": "TEST",
}
"""Frame kind -> header OBSTYPE."""
ARM_LETTER: dict[str, str] = {"blue": "b", "red": "r"}
LETTER_ARM: dict[str, str] = {v: k for k, v in ARM_LETTER.items()}


class LamostLRS(Spectrograph):
    """The 16 LAMOST low-resolution spectrographs (two arms each, one e2v CCD203-82 per arm)."""

    name = "LAMOST"
    detector = DETECTOR
    header_keys = {
        "frame_type": "OBSTYPE",
        "exptime": "EXPTIME",
        "spectrograph": "SPID",
        "camera": "CAMERA",
        "gain": "GAIN",
        "read_noise": "RDNOISE",
        "saturation": "SATURATE",
        "n_fibers": "NFIBERS",
    }
    record_keys = (
        "OBSTYPE",
        "EXPTIME",
        "SPID",
        "CAMERA",
        "PLANID",
        "RUN",
        "MJD",
        "DATE-OBS",
        "GAIN",
        "RDNOISE",
        "DRCSEED",
    )
    frame_types = OBSTYPE
    camera_letters = ARM_LETTER


LAMOST = LamostLRS()
"""The LAMOST adapter every reader and writer uses by default."""
RAW_SHAPE: tuple[int, int] = LAMOST.raw_shape
"""Shape of a raw frame: rows x (overscan A + data + overscan B)."""

_NAME_RE = re.compile(
    r"^r(?P<type>[osfbat])-(?P<spid>\d{1,2})(?P<color>[br])-(?P<planid>[^-/]+)-(?P<run>\d+)-(?P<mjd>\d+)"
    r"\.fits?(?:\.gz)?$"
)

DATASEC = f"[{OVERSCAN + 1}:{OVERSCAN + N_COLS},1:{N_ROWS}]"
BIASSEC_A = f"[1:{OVERSCAN},1:{N_ROWS}]"
BIASSEC_B = f"[{OVERSCAN + N_COLS + 1}:{2 * OVERSCAN + N_COLS},1:{N_ROWS}]"


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
        return (
            f"r{KIND_LETTER[self.kind]}-{self.spid:02d}{ARM_LETTER[self.arm]}-{self.planid}"
            f"-{self.run}-{self.mjd_min}{suffix}"
        )


def parse_raw_name(name: str) -> RawName | None:
    """Parse a LAMOST raw-file name; ``None`` when ``name`` is not one."""
    m = _NAME_RE.match(Path(name).name)
    if m is None:
        return None
    return RawName(
        kind=LETTER_KIND[m["type"]],
        spid=int(m["spid"]),
        arm=LETTER_ARM[m["color"]],
        planid=m["planid"],
        run=int(m["run"]),
        mjd_min=int(m["mjd"]),
    )


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


def frame_header(
    name: RawName, exptime_s: float, ccd: CCDConfig, prov: Mapping[str, Any], extra: Mapping[str, Any] | None = None
) -> fits.Header:
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
    return LAMOST.assemble_raw(data, overscan)


def data_area(raw: np.ndarray) -> np.ndarray:
    """View of the data columns 0..4095 of a raw frame."""
    return LAMOST.data_area(raw)


def overscan_area(raw: np.ndarray) -> np.ndarray:
    """Overscan strips ``(rows, 2, 32)`` of amplifiers A and B (a copy)."""
    return LAMOST.overscan_area(raw)


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
