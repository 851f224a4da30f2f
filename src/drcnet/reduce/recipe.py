"""The arm recipe: one arm of one spectrograph from its frames to an :class:`~drcnet.reduce.arm.ArmReduction`.

The frames come one at a time from a provider (:class:`ArmFrames`): the science frame
first (its header sets gain, read noise and saturation), then the bias frames one by one,
the flat, the arc. Each is dropped after the step that needs it, so at most the science
frame and one other are in memory. The provider reads files
(:class:`drcnet.workflows.arm_frames.RawArmFrames`); this module reads none and
imports no instrument: the detector's numbers come in as a :class:`~drcnet.hardware.Detector`.

Steps (:mod:`drcnet.reduce.arm`, :mod:`drcnet.reduce.science`):

1. the bias frames' pattern, subtracted where significant (:func:`~drcnet.reduce.calib.bias_model`);
2. trace all fibers on the flat (:func:`~drcnet.reduce.arm.trace_flat`);
3. extract the arc along the traces and fit each fiber's wavelength offset
   (:func:`~drcnet.reduce.arm.calibrate_arc`);
4. cut every fiber's 11 x 3000 stripe from the science frame, and the QA page's pictures
   (:func:`~drcnet.reduce.preview.qa_pictures`) while it is in memory;
5. boxcar and optimal extraction with the flat's spatial profile, relative fiber efficiency
   and the master sky;
6. per fiber: saturation, cosmic-ray hits, NaN pixels, lost traces; plausibility of the arm.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from drcnet.conventions import stripe_columns
from drcnet.hardware import Detector
from drcnet.reduce.arm import (
    ArmReduction,
    ReduceConfig,
    assemble_arm,
    calibrate_arc,
    sky_spectra,
    trace_flat,
)
from drcnet.reduce.calib import BiasModel, bias_model
from drcnet.reduce.plausibility import faint_sky, light_problems, raw_problems
from drcnet.reduce.preview import qa_pictures
from drcnet.reduce.science import (
    bad_flat_fibers,
    cut_science,
    extract_spectra,
    flat_profile,
)
from drcnet.reduce.wavecal import LineList

__all__ = ["ArmFrames", "Frame", "RecipeError", "ScienceFrame", "reduce_arm"]


class RecipeError(ValueError):
    """A frame cannot be used (no fibers on the flat, no usable sky fiber); the message names its file."""


class Frame(Protocol):
    """One raw frame as arrays (:class:`drcnet.instrument.rawframe.RawFrame` is one).

    ``raw``: the whole frame (data column ``c`` is frame column ``c + detector.overscan``);
    ``data``: the data area ``(rows, n_cols)``; ``overscan``: ``(rows, 2, overscan)``;
    ``warnings``: what reading it worked around (messages naming the file).
    """

    @property
    def raw(self) -> np.ndarray: ...

    @property
    def data(self) -> np.ndarray: ...

    @property
    def overscan(self) -> np.ndarray: ...

    @property
    def warnings(self) -> list[str]: ...


@dataclass
class ScienceFrame:
    """The science frame and what its header says (from :meth:`ArmFrames.science`)."""

    frame: Frame
    gain: float
    """e-/ADU."""
    read_noise_adu: float
    saturation: float
    """ADC ceiling (ADU)."""
    header: dict[str, object] = field(default_factory=dict)
    """Header cards kept in the calibration record (JSON-ready)."""


class ArmFrames(Protocol):
    """Where the recipe gets one arm's frames, one at a time, and the names it reports them by."""

    @property
    def arm(self) -> str:
        """``"blue"`` or ``"red"``."""
        ...

    @property
    def spid(self) -> int:
        """Spectrograph number (named in messages)."""
        ...

    def science(self) -> ScienceFrame:
        """Read the science frame (asked for first)."""
        ...

    def bias_frames(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(data, overscan)`` of each bias frame, read one at a time (may yield none)."""
        ...

    def flat(self) -> Frame:
        """Read the lamp flat."""
        ...

    def arc(self) -> Frame:
        """Read the arc."""
        ...

    def name(self, kind: str) -> str:
        """The file (``science``, ``flat``, ``arc``) or ``folder`` named in messages."""
        ...

    def record(self) -> dict[str, object]:
        """The files record kept in the calibration summary."""
        ...


class _Clock:
    """Wall time of each stage of an arm's reduction."""

    def __init__(self) -> None:
        self._t = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        t = time.perf_counter()
        self.laps[name] = t - self._t
        self._t = t


def _bias(frames: ArmFrames, config: ReduceConfig, detector: Detector, notes: list[str]) -> BiasModel:
    # one bias frame in memory at a time (read, reduced to column means and a sample, dropped)
    bias = bias_model(frames.bias_frames(), config.bias_significance, detector=detector)
    if bias.n_frames == 0:
        notes.append(f"spectrograph {frames.spid} {frames.arm}: no bias frames; the overscan alone sets the bias")
    return bias


def reduce_arm(
    frames: ArmFrames,
    detector: Detector,
    n_fibers: int,
    sky_fibers: np.ndarray,
    lines: LineList,
    config: ReduceConfig,
    fibertype: np.ndarray | None = None,
) -> ArmReduction:
    """Reduce one arm: bias, traces, wavelength solution, stripes, 1D spectra, master sky, per-fiber flags.

    Parameters
    ----------
    frames
        The arm's frames, read one at a time (:class:`ArmFrames`).
    detector
        The CCD (rows, data columns, overscan, amplifier boundary, trace origin).
    n_fibers
        Fibers on the slit.
    sky_fibers
        ``(n_fibers,)`` sky fibers (the fiber map's).
    lines
        Arc lamp lines.
    config
        Reduction options.
    fibertype
        ``(n_fibers,)`` the fiber map's FIBERTYPE: anchors the fiber numbering on the flat (dead
        fibers are dark) and feeds the plausibility checks (:mod:`drcnet.reduce.plausibility`).

    Returns
    -------
    ArmReduction
        With ``files``, ``header``, ``warnings`` (anything worked around, naming the file),
        ``timings`` and the QA pictures filled.

    Raises
    ------
    RecipeError
        No fibers on the flat, an ambiguous fiber numbering, no usable sky fiber (names the file).
    """
    arm_cfg = config.instrument.arm(frames.arm)
    offset = detector.overscan  # data column c is raw column c + offset
    ftype = np.asarray(fibertype) if fibertype is not None else np.full(n_fibers, "Obj")
    clock = _Clock()
    science_frame = frames.science()
    sci, gain, rn_adu, saturation = (
        science_frame.frame,
        science_frame.gain,
        science_frame.read_noise_adu,
        science_frame.saturation,
    )
    header = science_frame.header
    notes = list(sci.warnings)
    problems = raw_problems(sci.data, sci.overscan, rn_adu)
    bias = _bias(frames, config, detector, notes)
    clock.lap("bias")
    flat = frames.flat()
    notes.extend(flat.warnings)
    try:
        flat_net, traces = trace_flat(
            flat.data, flat.overscan, bias.pattern, n_fibers, config, ftype != "Dead", detector=detector
        )
    except ValueError as exc:
        raise RecipeError(f"{frames.name('flat')}: {exc}; is this a lamp flat of spectrograph {frames.spid}?") from exc
    del flat
    if traces.slit_shift:
        notes.append(
            f"{frames.name('flat')}: the slit image is shifted by {traces.slit_shift:+d} fibers from its "
            "nominal place; fibers numbered by the fiber map's pattern"
        )
    centres = traces.centres(np.arange(detector.n_cols))
    clock.lap("trace")
    arc = frames.arc()
    notes.extend(arc.warnings)
    wave = calibrate_arc(
        arc.raw,
        arc.overscan,
        offset,
        centres,
        traces.lost,
        arm_cfg,
        lines,
        rn_adu,
        bias.pattern,
        config,
        detector=detector,
    )
    del arc
    _arc_notes(frames.name("arc"), wave.n_lines, traces.lost, notes)
    clock.lap("wavecal")
    science = cut_science(
        sci.raw, sci.overscan, offset, centres, bias.pattern, saturation, config.defect_column_share, detector=detector
    )
    preview, zoom, zoom_origin = qa_pictures(sci.data, science.level, centres, detector.amp_boundary)
    del sci, science_frame
    cols = stripe_columns()
    bad_flat = bad_flat_fibers(flat_net, science.pixels)
    profile, flat_flux = flat_profile(
        flat_net,
        science.pixels,
        config.flat_smooth_cols,
        centres[:, cols] if bad_flat.any() or np.any(traces.bad_flat) else None,
    )
    del flat_net
    clock.lap("stripes")
    extracted = extract_spectra(science, profile, gain, rn_adu, config.optimal_clip_sigma)
    clock.lap("extract")
    wave1d = wave.wavelength(np.arange(n_fibers), cols)
    assert science.bad_fiber is not None
    usable_sky = sky_fibers & ~traces.lost & ~science.saturated & ~science.bad_fiber
    try:
        sky = sky_spectra(extracted[1], wave1d, flat_flux, traces.lost, usable_sky)
    except ValueError as exc:
        raise RecipeError(
            f"{frames.name('science')}: {exc} (the fiber map marks {int(sky_fibers.sum())}: "
            f"{int((sky_fibers & traces.lost).sum())} without a trace, "
            f"{int((sky_fibers & science.saturated).sum())} saturated, "
            f"{int((sky_fibers & science.bad_fiber).sum())} with NaN pixels); "
            "cannot build the master sky"
        ) from exc
    clock.lap("sky")
    out = assemble_arm(frames.arm, science, extracted, sky, wave1d, traces, wave, bias, bad_flat, config)
    lit = ~traces.lost & ~science.saturated
    problems += light_problems(
        out.stripes,
        profile,
        out.flux1d,
        lit & (ftype != "Dead"),
        lit & (ftype == "Sky"),
        lit & (ftype == "Unused"),
        lit & np.isin(ftype, ["Obj", "F-std", "PosErr"]),
        rn_adu,
    )
    if not problems:  # a faint arm (sky detected, but weak) is reduced and classified, and flagged
        out.faint = faint_sky(out.flux1d, lit & (ftype == "Sky"), rn_adu, out.stripes.shape[1])
    if out.faint:
        notes.append(
            f"{frames.name('science')}: {out.faint}; the {frames.arm} arm is reduced and classified as "
            "usual, every fiber flagged faint_arm"
        )
    _science_notes(frames, out, problems, notes)
    out.problems = problems
    out.files = frames.record()
    out.header = header
    out.warnings, out.timings = notes, clock.laps
    out.preview, out.zoom, out.zoom_origin = preview, zoom, zoom_origin
    return out


def _arc_notes(arc_name: str, n_lines: np.ndarray, lost: np.ndarray, notes: list[str]) -> None:
    """Warn (naming the arc file) when the arc shows no lines for some or all traced fibers."""
    missing = (n_lines == 0) & ~lost
    if missing[~lost].all():
        msg = (
            f"{arc_name}: no arc line found in any fiber (lamp off or wrong frame?); every fiber keeps the "
            "nominal wavelength solution and is flagged no_arc_lines"
        )
    elif missing.any():
        fibers = (np.flatnonzero(missing) + 1).tolist()
        msg = (
            f"{arc_name}: no arc line found for {missing.sum()} fiber(s) ({fibers[:10]}"
            f"{' ...' if len(fibers) > 10 else ''}); they take the median offset and are flagged no_arc_lines"
        )
    else:
        return
    notes.append(msg)


def _science_notes(frames: ArmFrames, out: ArmReduction, problems: list[str], notes: list[str]) -> None:
    """Warnings (naming the science file) for defect columns, bad calibration pixels and an implausible arm."""
    msgs = []
    science = frames.name("science")
    if out.defect_columns:
        c = out.defect_columns
        msgs.append(
            f"{science}: {len(c)} column(s) saturated or NaN across most fibers ({c[:5]}"
            f"{' ...' if len(c) > 5 else ''}): a detector defect, interpolated; the fibers are not flagged"
        )
    assert out.bad_calib is not None
    if out.bad_calib.any():
        fibers = (np.flatnonzero(out.bad_calib) + 1).tolist()
        msgs.append(
            f"{frames.name('folder')}: bad calibration pixels (flat, arc or overscan) touch "
            f"{len(fibers)} fiber(s) ({fibers[:10]}{' ...' if len(fibers) > 10 else ''}): flagged bad_calib"
        )
    if problems:
        msgs.append(
            f"{science}: implausible science frame ({'; '.join(problems)}); every fiber of the "
            f"{frames.arm} arm is flagged bad_arm and gets no class"
        )
    notes.extend(msgs)
