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


class Spectrograph:
    """Detector layout, header map and frame types of one instrument (class attributes; no state).

    Attributes
    ----------
    name
        Instrument name used in messages (``"LAMOST"``).
    n_rows, n_cols, overscan
        Rows, data columns and overscan columns per amplifier of a raw frame. A raw
        frame is ``(n_rows, overscan + n_cols + overscan)``: amplifier A's overscan
        strip on the left, amplifier B's on the right.
    header_keys
        Meaning -> header card: ``frame_type``, ``exptime``, ``spectrograph``,
        ``camera``, ``gain``, ``read_noise``, ``saturation``, ``n_fibers``.
    frame_types
        Frame kind (``bias``, ``flat``, ``arc``, ``science``, ...) -> value of the
        ``frame_type`` card.
    camera_letters
        Arm -> value of the ``camera`` card.
    """

    name: ClassVar[str] = ""
    n_rows: ClassVar[int] = 0
    n_cols: ClassVar[int] = 0
    overscan: ClassVar[int] = 0
    header_keys: ClassVar[Mapping[str, str]] = {}
    frame_types: ClassVar[Mapping[str, str]] = {}
    camera_letters: ClassVar[Mapping[str, str]] = {}

    @property
    def raw_shape(self) -> tuple[int, int]:
        """Shape of a raw frame: rows x (overscan A + data + overscan B)."""
        return (self.n_rows, 2 * self.overscan + self.n_cols)

    def data_area(self, raw: np.ndarray) -> np.ndarray:
        """View of the data columns ``0 .. n_cols - 1`` of a raw frame ``raw_shape``."""
        return raw[:, self.overscan:self.overscan + self.n_cols]

    def overscan_area(self, raw: np.ndarray) -> np.ndarray:
        """Overscan strips ``(rows, 2, overscan)`` of amplifiers A and B (a copy)."""
        return np.stack([raw[:, :self.overscan], raw[:, self.overscan + self.n_cols:]], axis=1)

    def assemble_raw(self, data: np.ndarray, overscan: np.ndarray) -> np.ndarray:
        """Raw uint16 frame from the data area ``(rows, n_cols)`` and the overscan ``(rows, 2, overscan)``."""
        raw = np.empty((data.shape[0], self.raw_shape[1]), dtype=np.uint16)
        raw[:, :self.overscan] = overscan[:, 0]
        raw[:, self.overscan:self.overscan + self.n_cols] = data
        raw[:, self.overscan + self.n_cols:] = overscan[:, 1]
        return raw

    def card(self, header: Mapping[str, Any], meaning: str, default: Any = None) -> Any:
        """The value of the header card that carries ``meaning`` (``default`` when absent)."""
        key = self.header_keys[meaning]
        return header[key] if key in header else default

    def frame_type(self, header: Mapping[str, Any]) -> str | None:
        """Frame kind (``bias``, ``flat``, ``arc``, ``science``, ...) from a header; None when unknown."""
        value = str(self.card(header, "frame_type", "")).strip().upper()
        return next((kind for kind, v in self.frame_types.items() if v == value), None)
