# Over 400 lines on purpose: every check of one raw frame beside the one reader that applies them.
"""Reading and checking one raw frame (the LAMOST layout by default; any :class:`Spectrograph`).

:func:`read_raw_frame` reads the pixels and checks them (shape, pixel type,
NaN share) and the header against what the file should be (frame type,
spectrograph, camera); :func:`check_frame_file` is the cheap check of the
header and file size that runs before any work starts.
"""

from __future__ import annotations

import gzip
import io
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyError
from astropy.utils.exceptions import AstropyWarning

from drcnet.instrument.base import Spectrograph
from drcnet.instrument.config import CCDConfig
from drcnet.instrument.errors import FrameError, FrameWarning, MissingFrameError
from drcnet.instrument.lamost import LAMOST, RawName, parse_raw_name
from drcnet.notices import notify, quiet

MAX_NAN_FRACTION = 0.5
"""A frame with more NaN pixels than this share is refused outright."""


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
    spectrograph: Spectrograph = field(default=LAMOST, repr=False)
    garbled: dict[str, str] = field(default_factory=dict)
    """Header cards that could not be parsed (keyword -> the card's raw text); removed from ``header``."""

    @property
    def data(self) -> np.ndarray:
        """Data columns 0..4095 (a view)."""
        return self.spectrograph.data_area(self.raw)

    @property
    def overscan(self) -> np.ndarray:
        """Overscan strips ``(rows, 2, 32)``."""
        return self.spectrograph.overscan_area(self.raw)

    @property
    def exptime(self) -> float:
        """Exposure time (s) from the header; 0 when absent."""
        return float(self.spectrograph.card(self.header, "exptime", 0.0))

    def gain(self, default: CCDConfig) -> float:
        """GAIN (e-/ADU) from the header; the configured value (with a warning) when it is missing."""
        return self._card("gain", default.gain_e_per_adu)

    def read_noise_e(self, default: CCDConfig) -> float:
        """RDNOISE (e-) from the header; the configured value (with a warning) when it is missing."""
        return self._card("read_noise", default.read_noise_e)

    def saturation(self, default: CCDConfig) -> float:
        """SATURATE (ADU) from the header; the configured ADC ceiling when it is missing."""
        return self._card("saturation", float(default.adc_max), warn=False)

    def _card(self, meaning: str, default: float, warn: bool = True) -> float:
        key = self.spectrograph.header_keys[meaning]
        raw = self.garbled.get(key, self.header.get(key))
        try:
            value = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            value = float("nan")
        if not np.isfinite(value) or value <= 0:
            if warn:
                what = "is missing" if raw is None else f"= {str(raw).strip()!r} is not a usable number"
                msg = f"{self.path}: header card {key} {what}; using the configured {default}"
                notify(msg, FrameWarning, stacklevel=3)  # the calling thread's collector, else a warning
                self.warnings.append(msg)
            return float(default)
        return value


@contextmanager
def _fits_errors(path: Path) -> Iterator[None]:
    """Turn astropy's errors on a truncated or corrupt file into one :class:`FrameError` naming it."""
    try:
        yield
    except (OSError, ValueError, TypeError, IndexError, EOFError, KeyError) as exc:
        raise FrameError(
            f"{path}: cannot be read as a FITS file ({exc}); it is truncated or corrupt - "
            "copy it again from the archive"
        ) from exc


GZIP_MAGIC = b"\x1f\x8b"


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def _gzip_error(path: Path, exc: BaseException) -> FrameError:
    return FrameError(
        f"{path}: the gzip stream is damaged ({type(exc).__name__}: {exc}); the pixels cannot be "
        "trusted - copy the file again from the archive"
    )


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed in full when gzipped (so the gzip CRC and length are verified)."""
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise _gzip_error(path, exc) from exc
    return raw


def verify_gzip(path: Path, chunk: int = 1 << 22) -> None:
    """Decompress a gzipped file to its end without keeping it, so a damaged stream (CRC, length) is caught.

    Raises
    ------
    FrameError
        The gzip stream is damaged or cut short (names the file).
    """
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(chunk):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        raise _gzip_error(path, exc) from exc


def clean_header(header: fits.Header) -> dict[str, str]:
    """Remove the cards of ``header`` whose value cannot be parsed; return keyword -> the card's raw text.

    astropy raises a long :class:`~astropy.io.fits.verify.VerifyError` on the first
    access to such a card (``GAIN    = 1.5 e-/ADU``); the reader reports it instead,
    naming the file, the card and its text, and carries on without it.
    """
    garbled: dict[str, str] = {}
    with quiet(AstropyWarning):
        for card in list(header.cards):
            image = str(getattr(card, "_image", None) or "")
            try:
                card.value  # noqa: B018 - parsing is the check
            except (VerifyError, ValueError):
                text = image[10:] if image[8:10] == "= " else image[8:]
                garbled[card.keyword] = text.strip()
        for key in garbled:
            while key in header:
                del header[key]
    return garbled


FITS_BLOCK = 2880
"""Bytes per FITS block (header and data are padded to whole blocks)."""
_MAX_HEADER_BLOCKS = 64


def _read_plain_image(path: Path) -> tuple[np.ndarray, fits.Header, dict[str, str]] | None:
    """Fast path of :func:`_open_fits` for an uncompressed primary image of 16-bit or 32-bit float pixels.

    The header is parsed by astropy from its own blocks; the pixels are read straight into a
    numpy array (``readinto``), byte-swapped in place and, for the camera's unsigned 16-bit
    convention (``BITPIX = 16``, ``BZERO = 32768``, ``BSCALE = 1``), turned into ``uint16``
    by flipping the sign bit - the same values astropy gives, without its scaled copies.
    Returns None for anything else (gzip, other pixel types or scalings, a file shorter than its
    header announces), which :func:`_open_fits` then reads (or refuses) with astropy.
    """
    with open(path, "rb") as fh:
        if fh.read(2) == GZIP_MAGIC:
            return None
        fh.seek(0)
        blocks = []
        for _ in range(_MAX_HEADER_BLOCKS):
            blk = fh.read(FITS_BLOCK)
            if len(blk) < FITS_BLOCK:
                return None  # let astropy say what is wrong
            blocks.append(blk)
            if any(blk[k : k + 8] == b"END     " for k in range(0, FITS_BLOCK, 80)):
                break
        else:
            return None
        text = b"".join(blocks)
        if not text.startswith(b"SIMPLE  ="):
            return None
        try:
            with quiet(AstropyWarning):
                header = fits.Header.fromstring(text.decode("ascii"))
                bitpix = int(header.get("BITPIX", 0))
                naxis = int(header.get("NAXIS", 0))
                shape = (int(header.get("NAXIS2", 0)), int(header.get("NAXIS1", 0)))
                bzero = float(header.get("BZERO", 0.0))
                bscale = float(header.get("BSCALE", 1.0))
        except (VerifyError, ValueError, TypeError, UnicodeDecodeError):
            return None
        if naxis != 2 or min(shape) <= 0 or bscale != 1.0 or "BLANK" in header:
            return None
        if bitpix == 16 and bzero == 32768.0:
            out = np.empty(shape, dtype=np.uint16)
        elif bitpix == -32 and bzero == 0.0:
            out = np.empty(shape, dtype=np.float32)
        else:
            return None
        got = fh.readinto(memoryview(out).cast("B"))
    if got < out.nbytes:
        return None  # truncated: astropy's reader says so, in its own words (see _fits_errors)
    out.byteswap(inplace=True)  # FITS is big-endian
    if bitpix == 16:
        out ^= np.uint16(0x8000)  # signed + 32768 -> unsigned
    return out, header, clean_header(header)


def _open_fits(path: Path) -> tuple[np.ndarray | None, fits.Header, dict[str, str]]:
    if sys.byteorder == "little":
        fast = _read_plain_image(path)
        if fast is not None:
            return fast
    raw = _read_bytes(path)
    with _fits_errors(path), quiet(AstropyWarning), fits.open(io.BytesIO(raw), memmap=False) as hdul:
        header = hdul[0].header.copy()
        data = hdul[0].data
        data = None if data is None else np.asarray(data)
    del raw
    return data, header, clean_header(header)


def _garbled_warnings(path: Path, garbled: dict[str, str]) -> list[str]:
    msgs = [f"{path}: header card {k} cannot be parsed ({v!r}); it is ignored" for k, v in garbled.items()]
    for m in msgs:
        notify(m, FrameWarning, stacklevel=3)
    return msgs


def read_raw_frame(
    path: str | Path,
    kind: str | None = None,
    spid: int | None = None,
    arm: str | None = None,
    spectrograph: Spectrograph = LAMOST,
) -> RawFrame:
    """Read and check one raw frame.

    Parameters
    ----------
    path
        The FITS file.
    kind, spid, arm
        What the frame should be; checked against the header (``OBSTYPE``,
        ``SPID``, ``CAMERA``) where given.
    spectrograph
        The instrument (detector layout, header map); LAMOST by default.

    Returns
    -------
    RawFrame
        Pixels ``spectrograph.raw_shape`` (uint16, or float32 with NaN for bad pixels) and header.

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
    data, header, garbled = _open_fits(path)
    raw_shape = spectrograph.raw_shape
    if data is None:
        raise FrameError(
            f"{path}: the primary HDU holds no image; expected a raw frame of {raw_shape[0]} rows x "
            f"{raw_shape[1]} columns"
        )
    if data.shape != raw_shape:
        raise FrameError(_shape_message(path, data.shape, spectrograph))
    if data.dtype.kind in "ui":
        raw = data.astype(np.uint16, copy=False) if data.dtype != np.uint16 else data
    elif data.dtype.kind == "f":
        raw = data.astype(np.float32, copy=False)
        bad = ~np.isfinite(raw)
        if bad.mean() > MAX_NAN_FRACTION:
            raise FrameError(
                f"{path}: {100 * bad.mean():.0f} % of the pixels are NaN or infinite; the frame is unusable"
            )
        raw[bad] = np.nan
    else:
        raise FrameError(f"{path}: pixel type {data.dtype} is not an image type")
    name = parse_raw_name(path.name)
    frame = RawFrame(path=path, raw=raw, header=header, name=name, spectrograph=spectrograph, garbled=garbled)
    spec_keys = spectrograph.header_keys
    reported = {spec_keys[m] for m in ("gain", "read_noise", "saturation") if m in spec_keys}  # reported by _card
    frame.warnings.extend(_garbled_warnings(path, {k: v for k, v in garbled.items() if k not in reported}))
    _check_header(frame, kind, spid, arm)
    return frame


def _shape_message(path: Path, shape: tuple[int, ...], spec: Spectrograph) -> str:
    return (
        f"{path}: frame shape is {shape}, expected {spec.raw_shape} = {spec.n_rows} rows x "
        f"({spec.overscan} + {spec.n_cols} + {spec.overscan}) columns (overscan A, data, overscan B); "
        f"is this a raw {spec.name} frame?"
    )


def _check_header(frame: RawFrame, kind: str | None, spid: int | None, arm: str | None) -> None:
    h, path, spec = frame.header, frame.path, frame.spectrograph
    key = spec.header_keys["frame_type"]
    if kind is not None and key in h:
        got = str(h[key]).strip().upper()
        if got != spec.frame_types[kind]:
            raise FrameError(
                f"{path}: header {key} is {got!r} but this file is used as the {kind} frame "
                f"({key} {spec.frame_types[kind]!r}); check the file name's type letter"
            )
    key = spec.header_keys["spectrograph"]
    if spid is not None and key in h and _as_int(h[key]) != spid:
        raise FrameError(
            f"{path}: header {key} is {h[key]} but the file name says spectrograph {spid}; "
            f"a frame of another spectrograph? (remove it, or choose spectrographs with --spid)"
        )
    key = spec.header_keys["camera"]
    if arm is not None and key in h:
        cam = str(h[key]).strip().lower()[:1]
        if cam and cam != spec.camera_letters[arm]:
            raise FrameError(f"{path}: header {key} is {h[key]!r} but the file name says the {arm} arm")


def _as_int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def check_frame_file(path: str | Path, spectrograph: Spectrograph = LAMOST) -> fits.Header:
    """Cheap check of a raw file before the reduction starts: readable header, right shape, not truncated.

    Only the header is read; for an uncompressed file its size is compared with
    the size the header announces, a gzipped file is decompressed to its end (its
    CRC checked, nothing kept). Unparsable header cards are dropped from the
    returned header. The full read (:func:`read_raw_frame`) checks the rest.

    Returns
    -------
    astropy.io.fits.Header
        The primary header.

    Raises
    ------
    MissingFrameError
        The file does not exist.
    FrameError
        Unreadable header, wrong shape, a file shorter than its header announces, or a damaged gzip stream.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFrameError(f"{path}: file not found")
    gzipped = _is_gzip(path)
    if gzipped:
        verify_gzip(path)
    with _fits_errors(path), quiet(AstropyWarning), fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
        hdu = hdul[0]
        header = hdu.header.copy()
        offset = hdu._data_offset if hasattr(hdu, "_data_offset") else None
    clean_header(header)
    raw_shape = spectrograph.raw_shape
    shape = (int(header.get("NAXIS2", 0)), int(header.get("NAXIS1", 0))) if header.get("NAXIS", 0) == 2 else None
    if shape != raw_shape:
        got = tuple(int(header.get(f"NAXIS{i}", 0)) for i in range(int(header.get("NAXIS", 0)), 0, -1))
        raise FrameError(_shape_message(path, got, spectrograph))
    if offset is not None and not gzipped:
        need = offset + raw_shape[0] * raw_shape[1] * abs(int(header["BITPIX"])) // 8
        size = path.stat().st_size
        if size < need:
            raise FrameError(
                f"{path}: the file is truncated ({size} bytes, the header announces {need}); "
                "copy it again from the archive"
            )
    return header
