"""One arm's raw frames, read one at a time for the arm recipe (:func:`drcnet.reduce.recipe.reduce_arm`).

:class:`RawArmFrames` is the recipe's frame provider (:class:`drcnet.reduce.recipe.ArmFrames`)
over the files of an arm (:class:`~drcnet.instrument.exposure.ArmFiles`): each frame is read
through the instrument adapter (:func:`~drcnet.instrument.rawframe.read_raw_frame`) when the
recipe asks for it, so at most the science frame and one other are in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drcnet.instrument.base import Spectrograph
from drcnet.instrument.config import CCDConfig
from drcnet.instrument.exposure import ArmFiles
from drcnet.instrument.lamost import LAMOST
from drcnet.instrument.rawframe import RawFrame, read_raw_frame
from drcnet.reduce.recipe import ScienceFrame


@dataclass
class RawArmFrames:
    """The frames of one arm of one spectrograph, read from its raw files when asked for.

    Attributes
    ----------
    files
        The arm's files (bias, flat, arc, science).
    spid
        Spectrograph number (1-16).
    ccd
        Gain, read noise and ADC ceiling used when the science header lacks them.
    spectrograph
        The instrument adapter (detector layout, header map).
    """

    files: ArmFiles
    spid: int
    ccd: CCDConfig
    spectrograph: Spectrograph = LAMOST

    @property
    def arm(self) -> str:
        """``"blue"`` or ``"red"``."""
        return self.files.arm

    def _read(self, path: Path, kind: str) -> RawFrame:
        return read_raw_frame(path, kind, self.spid, self.files.arm, spectrograph=self.spectrograph)

    def science(self) -> ScienceFrame:
        """The science frame, its gain (e-/ADU), read noise (ADU), saturation (ADU) and header record.

        The header's warnings are the frame's own record (:attr:`RawFrame.warnings`), not a capture of
        the warnings module: the two arms run in two threads, and :class:`warnings.catch_warnings` is
        process-wide.
        """
        sci = self._read(self.files.science, "science")
        gain = sci.gain(self.ccd)
        rn_adu = sci.read_noise_e(self.ccd) / gain
        saturation = sci.saturation(self.ccd)
        return ScienceFrame(
            frame=sci,
            gain=gain,
            read_noise_adu=rn_adu,
            saturation=saturation,
            header=self.spectrograph.header_record(sci.header),
        )

    def bias_frames(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(data, overscan)`` of each bias frame, one in memory at a time."""
        for path in self.files.bias:
            b = self._read(path, "bias")
            yield b.data, b.overscan
            del b

    def flat(self) -> RawFrame:
        """The lamp flat."""
        return self._read(self.files.flat, "flat")

    def arc(self) -> RawFrame:
        """The arc."""
        return self._read(self.files.arc, "arc")

    def name(self, kind: str) -> str:
        """The file of the ``science``, ``flat`` or ``arc`` frame, or the ``folder``, as messages name it."""
        if kind == "folder":
            return str(self.files.science.parent)
        return str(getattr(self.files, kind))

    def record(self) -> dict[str, object]:
        """Folder and file names of the arm, for the calibration record."""
        f = self.files
        return {
            "folder": str(f.science.parent),
            "science": f.science.name,
            "flat": f.flat.name,
            "arc": f.arc.name,
            "bias": [p.name for p in f.bias],
        }
