"""What the reduction needs to know about an instrument's raw files: one small base class.

A :class:`Spectrograph` names the detector layout (data area and overscan
strips of a raw frame), the header cards that carry the exposure time, gain,
read noise and saturation level, and how a frame's type is written in its
header. The LAMOST low-resolution spectrographs are
:data:`drcnet.instrument.lamost.LAMOST`; another instrument is another module
with its own subclass (the idea of PypeIt's ``pypeit/spectrographs``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from drcnet.hardware import Detector


class Spectrograph:
    """Detector layout, header map and frame types of one instrument (class attributes; no state).

    Attributes
    ----------
    name
        Instrument name used in messages (``"LAMOST"``).
    detector
        The CCD (:class:`~drcnet.hardware.Detector`): rows, data columns, overscan columns per
        amplifier, amplifier boundary, trace origin, gain and read-noise defaults. A raw frame is
        ``(n_rows, overscan + n_cols + overscan)``: amplifier A's overscan strip on the left,
        amplifier B's on the right. ``n_rows``, ``n_cols`` and ``overscan`` are its numbers.
    header_keys
        Meaning -> header card: ``frame_type``, ``exptime``, ``spectrograph``,
        ``camera``, ``gain``, ``read_noise``, ``saturation``, ``n_fibers``.
    record_keys
        Science-frame header cards kept in the reduced dataset's calibration record.
    frame_types
        Frame kind (``bias``, ``flat``, ``arc``, ``science``, ...) -> value of the
        ``frame_type`` card.
    camera_letters
        Arm -> value of the ``camera`` card.
    """

    name: ClassVar[str] = ""
    detector: ClassVar[Detector]
    header_keys: ClassVar[Mapping[str, str]] = {}
    record_keys: ClassVar[tuple[str, ...]] = ()
    frame_types: ClassVar[Mapping[str, str]] = {}
    camera_letters: ClassVar[Mapping[str, str]] = {}

    @property
    def n_rows(self) -> int:
        """Rows of a raw frame (the detector's)."""
        return self.detector.n_rows

    @property
    def n_cols(self) -> int:
        """Data columns of a raw frame (the detector's)."""
        return self.detector.n_cols

    @property
    def overscan(self) -> int:
        """Overscan columns per amplifier (the detector's)."""
        return self.detector.overscan

    @property
    def raw_shape(self) -> tuple[int, int]:
        """Shape of a raw frame: rows x (overscan A + data + overscan B)."""
        return self.detector.raw_shape

    def data_area(self, raw: np.ndarray) -> np.ndarray:
        """View of the data columns ``0 .. n_cols - 1`` of a raw frame ``raw_shape``."""
        return self.detector.data_area(raw)

    def overscan_area(self, raw: np.ndarray) -> np.ndarray:
        """Overscan strips ``(rows, 2, overscan)`` of amplifiers A and B (a copy)."""
        return self.detector.overscan_area(raw)

    def assemble_raw(self, data: np.ndarray, overscan: np.ndarray) -> np.ndarray:
        """Raw uint16 frame from the data area ``(rows, n_cols)`` and the overscan ``(rows, 2, overscan)``."""
        return self.detector.assemble_raw(data, overscan)

    def header_record(self, header: Mapping[str, Any]) -> dict[str, object]:
        """The :attr:`record_keys` cards of a science header present in it, JSON-ready (other values as text)."""
        return {k: _json_value(header[k]) for k in self.record_keys if k in header}

    def card(self, header: Mapping[str, Any], meaning: str, default: Any = None) -> Any:
        """The value of the header card that carries ``meaning`` (``default`` when absent)."""
        key = self.header_keys[meaning]
        return header[key] if key in header else default

    def frame_type(self, header: Mapping[str, Any]) -> str | None:
        """Frame kind (``bias``, ``flat``, ``arc``, ``science``, ...) from a header; None when unknown."""
        value = str(self.card(header, "frame_type", "")).strip().upper()
        return next((kind for kind, v in self.frame_types.items() if v == value), None)


def _json_value(value: object) -> object:
    return value if isinstance(value, (str, int, float, bool)) else str(value)
