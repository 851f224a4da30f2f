"""The QA page's pictures: each arm's frame with its traces, the class map, the stripes figure (PNG).

The frame pictures are drawn from what the reduction cut while the frame was in memory
(``ArmReduction.preview``/``zoom``, :func:`drcnet.reduce.preview.qa_pictures`), written as images
(``matplotlib.pyplot.imsave``) with the traces drawn into the pixels: no figure, axes or per-fiber
artist. Only the stripes figure is a matplotlib figure, drawn once per exposure. The page itself is
:mod:`drcnet.workflows.qa`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from drcnet.conventions import ARMS, CLASSES_WITH_OTHER, OTHER
from drcnet.provenance import atomic_path
from drcnet.reduce.preview import PREVIEW_BIN
from drcnet.reduce.trace import TraceSet

CLASS_COLORS = {"F": "#1f77b4", "G": "#2ca02c", "K": "#d62728", OTHER: "#9467bd", "": "#999999"}
ZOOM_SCALE = 4
"""Each zoom pixel is drawn as ZOOM_SCALE x ZOOM_SCALE picture pixels."""
N_PICKS = 4
"""Object fibers per exposure in the stripes figure (spread in S/N_r), besides a sky fiber."""
PNG_FAST = {"compress_level": 1}
"""PNG encoding with zlib level 1: about half the time of the default level, files a few % larger."""


@dataclass
class QAArm:
    """What the QA page shows of one arm."""

    arm: str
    traces: TraceSet
    lost: np.ndarray
    preview: np.ndarray | None
    zoom: np.ndarray | None
    zoom_origin: tuple[int, int]
    summary: dict[str, Any]
    problems: list[str]
    warnings: list[str]
    spectra: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    """Fiber index -> ``wave``, ``flux``, ``flux_opt``, ``sky`` ``(3000,)`` and ``stripe`` ``(11, 3000)``."""


@dataclass
class QASpectrograph:
    """What the QA page needs of one reduced, classified spectrograph (~2 MB instead of ~200 MB)."""

    spid: int
    planid: str
    fiber: np.ndarray
    fibertype: np.ndarray
    flags: np.ndarray
    snr_r: np.ndarray
    picks: list[int]
    pred: dict[int, str]
    """Fiber number -> predicted class (object fibers)."""
    arms: dict[str, QAArm]


def _rgb(color: str) -> np.ndarray:
    from matplotlib.colors import to_rgb

    return np.array(to_rgb(color), dtype=np.float32)


def _gray(image: np.ndarray) -> np.ndarray:
    """asinh-stretched net ADU as an RGB picture (dark = bright sky, as the old ``gray_r`` map), ``(rows, cols, 3)``."""
    v = np.arcsinh(np.clip(np.nan_to_num(image, nan=0.0), 0, None) / 20)
    top = float(v.max()) if v.size and v.max() > 0 else 1.0
    g = 1.0 - v / top
    return np.repeat(g[..., None], 3, axis=2).astype(np.float32)


def _draw(rgb: np.ndarray, rows: np.ndarray, cols: np.ndarray, color: np.ndarray) -> None:
    """Set the pixels ``(rows, cols)`` (picture coordinates, clipped to it) to ``color`` in place."""
    rows = np.asarray(rows)
    cols = np.broadcast_to(cols, rows.shape)
    ok = (rows >= 0) & (rows < rgb.shape[0]) & (cols >= 0) & (cols < rgb.shape[1])
    rgb[rows[ok], cols[ok]] = color


def frame_png(out: Path, q: QASpectrograph, arm: str) -> str:
    """The binned frame with every trace drawn into it, beside the zoom with traces and stripe apertures."""
    import matplotlib.pyplot as plt

    a = q.arms[arm]
    assert a.preview is not None and a.zoom is not None
    left = _gray(a.preview)
    n_rows = left.shape[0]
    bin_cols = np.arange(0, left.shape[1], 6)  # traces dotted, so the frame stays visible between them
    centres = a.traces.centres(bin_cols * PREVIEW_BIN + (PREVIEW_BIN - 1) / 2.0)  # (fibers, picture cols)
    prow = np.floor(centres / PREVIEW_BIN).astype(int)
    lost = a.lost[: centres.shape[0]]
    _draw(left, prow[~lost], bin_cols[None, :], _rgb("tab:orange"))
    _draw(left, prow[lost], bin_cols[None, :], _rgb("red"))
    # zoom, ZOOM_SCALE x, with the traces (orange) and the stripe apertures (blue)
    zoom = _gray(a.zoom)
    zs = ZOOM_SCALE
    right = np.repeat(np.repeat(zoom, zs, axis=0), zs, axis=1)
    r0, c0 = a.zoom_origin
    zc = np.arange(c0, c0 + a.zoom.shape[1])
    zcentres = a.traces.centres(zc)
    x = (zc - c0)[None, :] * zs + np.arange(zs)[:, None]  # (zs, cols) sub-pixels
    f0 = centres.shape[0] // 2
    for f in range(max(f0 - 4, 0), min(f0 + 4, centres.shape[0])):
        tr = zcentres[f]
        centre = np.floor(tr + 0.5)
        for y, color in ((tr, "tab:orange"), (centre - 5.5, "tab:blue"), (centre + 5.5, "tab:blue")):
            row = np.round((y - r0 + 0.5) * zs - 0.5).astype(int)
            _draw(right, np.broadcast_to(row[None, :], x.shape), x, _rgb(color))
    # both panels, bottom-aligned, row 0 at the bottom (origin "lower"), a white gap between them
    height = max(n_rows, right.shape[0])
    picture = np.ones((height, left.shape[1] + 16 + right.shape[1], 3), dtype=np.float32)
    picture[:n_rows, : left.shape[1]] = left
    picture[: right.shape[0], left.shape[1] + 16 :] = right
    path = out / f"frame_sp{q.spid:02d}_{arm}.png"
    with atomic_path(path) as tmp:
        plt.imsave(tmp, np.clip(picture[::-1], 0, 1), format="png", pil_kwargs=PNG_FAST)
    return path.name


def classmap_png(out: Path, q: QASpectrograph, table: Table) -> str:
    """Fibers left to right (4 picture columns each): predicted class (brightness = its probability), the
    true class, a black mark where the prediction is wrong and a red one where there is no class."""
    import matplotlib.pyplot as plt

    n = len(q.fiber)
    w = 4
    sel = np.asarray(table["spid"]) == q.spid
    t = table[sel]
    col = {int(f): i for i, f in enumerate(q.fiber)}
    idx = np.array([col[int(f)] for f in t["fiber"]], dtype=int)
    probs = [np.asarray(t[f"prob_{c}"], dtype=float) for c in CLASSES_WITH_OTHER if f"prob_{c}" in t.colnames]
    pmax = np.nan_to_num(np.nanmax(np.stack(probs), axis=0), nan=0.0) if probs and len(t) else np.zeros(len(t))
    bands = {
        "pred": np.ones((n, 3), np.float32),
        "true": np.ones((n, 3), np.float32),
        "mark": np.ones((n, 3), np.float32),
    }
    white = np.ones(3, np.float32)
    for i, p, pm in zip(idx, np.asarray(t["pred"]).astype(str), pmax, strict=True):
        bands["pred"][i] = white + (_rgb(CLASS_COLORS.get(p, "#999999")) - white) * float(np.clip(pm, 0.15, 1.0))
        if p == "":
            bands["mark"][i] = _rgb("red")
    if "true_class" in t.colnames:
        for i, c, ok, p in zip(
            idx,
            np.asarray(t["true_class"]).astype(str),
            np.asarray(t["correct"], dtype=bool),
            np.asarray(t["pred"]).astype(str),
            strict=True,
        ):
            bands["true"][i] = _rgb(CLASS_COLORS.get(c, "#999999"))
            if p and not ok:
                bands["mark"][i] = 0.0
    heights = {"pred": 40, "true": 12, "mark": 8}
    picture = np.concatenate(
        [np.repeat(np.repeat(bands[k][None], heights[k], axis=0), w, axis=1) for k in ("pred", "true", "mark")], axis=0
    )
    path = out / f"classmap_sp{q.spid:02d}.png"
    with atomic_path(path) as tmp:
        plt.imsave(tmp, np.clip(picture, 0, 1), format="png", pil_kwargs=PNG_FAST)
    return path.name


def stripes_png(out: Path, items: Sequence[QASpectrograph], n: int = N_PICKS) -> str | None:
    """One figure for the exposure: object fibers spread in S/N_r over all spectrographs, and a sky fiber."""
    import matplotlib.pyplot as plt

    objects = [(q.snr_r[f], k, f) for k, q in enumerate(items) for f in q.picks if q.fibertype[f] != "Sky"]
    skies = [(k, f) for k, q in enumerate(items) for f in q.picks if q.fibertype[f] == "Sky"]
    if not objects and not skies:
        return None
    objects.sort()
    chosen = [objects[int(round(qq * (len(objects) - 1)))][1:] for qq in np.linspace(0.05, 0.95, n)] if objects else []
    chosen = list(dict.fromkeys(chosen + skies[:1]))
    n_rows = len(chosen)
    fig, axes = plt.subplots(n_rows, 2, figsize=(14, 2.6 * n_rows), squeeze=False)
    above, below = 0.95, 0.35  # inches: room for each panel's stripe inset and title
    w, h = fig.get_size_inches()
    height = (2.6 * n_rows - below - n_rows * above) / n_rows
    fig.subplots_adjust(
        left=0.55 / w,
        right=1 - 0.15 / w,
        bottom=below / h,
        top=1 - (above - 0.05) / h,
        hspace=(above + 0.05) / max(height, 0.1),
        wspace=0.12,
    )
    for row, (k, f) in enumerate(chosen):
        q = items[k]
        for c, arm in enumerate(ARMS):
            sp = q.arms[arm].spectra[f]
            ax = axes[row, c]
            wv = sp["wave"]
            ax.plot(wv, sp["flux"], lw=0.5, label="boxcar")
            ax.plot(wv, sp["flux_opt"], lw=0.5, label="optimal")
            ax.plot(wv, sp["sky"], lw=0.5, label="master sky")
            inset = ax.inset_axes((0.0, 1.0, 1.0, 0.25))
            st = sp["stripe"]
            inset.imshow(
                st,
                aspect="auto",
                cmap="gray_r",
                vmin=np.percentile(st, 1),
                vmax=np.percentile(st, 99.5),
                extent=(wv[0], wv[-1], -5.5, 5.5),
                interpolation="nearest",
            )
            inset.set_axis_off()
            ax.set_title(
                f"sp{q.spid:02d} fiber {q.fiber[f]} ({q.fibertype[f]}) {arm}  S/N_r={q.snr_r[f]:.1f}  "
                f"pred={q.pred.get(int(q.fiber[f]), '-') or 'none'}",
                fontsize=8,
                pad=38,
            )
            ax.tick_params(labelsize=7)
            if row == 0 and c == 0:
                ax.legend(fontsize=7)
    path = out / "stripes.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png", pil_kwargs=PNG_FAST)
    plt.close(fig)
    return path.name
