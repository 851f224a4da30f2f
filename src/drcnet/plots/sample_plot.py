"""``drcnet plot-sample``: look at one object of a dataset file (stripes, 1D spectra, source template)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from drcnet.conventions import ARMS, CLASSES
from drcnet.data.schema import decode
from drcnet.provenance import atomic_path

LINES_A: dict[str, float] = {
    "Ca II K": 3934.78,
    "Ca II H": 3969.59,
    "H$\\delta$": 4102.89,
    "H$\\gamma$": 4341.68,
    "H$\\beta$": 4862.68,
    "Mg b": 5174.0,
    "Na D": 5894.0,
    "H$\\alpha$": 6564.61,
    "Ca II 8542": 8544.44,
}
"""Vacuum wavelengths of the lines marked on the plots."""


TEMPLATE_FOLDERS: tuple[str, ...] = ("spectral_libraries", "lamost_format_examples")
"""Folders of the data root a dataset's template paths may point into."""


def resolve_template(stored: str, data_root: str | Path | None = None) -> tuple[Path | None, str]:
    """The template file a dataset names, looked up under the configured data root only.

    A dataset file is input, not a trusted pointer: its ``/templates/path`` is never
    opened as it stands. Its part from a known library folder on
    (``.../spectral_libraries/pyhammer/K5_+0.0_Dwarf.fits.gz`` ->
    ``<data root>/spectral_libraries/pyhammer/K5_+0.0_Dwarf.fits.gz``) is joined to the
    data root, and used only when it stays inside it and exists.

    Returns
    -------
    path, why
        The file, or None and the reason it is not used.
    """
    from drcnet.paths import DataNotFoundError
    from drcnet.paths import data_root as configured_root

    try:
        root = configured_root(data_root).resolve()
    except DataNotFoundError:
        return None, "no data root is configured (--data-root or $DRCNET_DATA)"
    parts = Path(stored).parts
    start = next((i for i, p in enumerate(parts) if p in TEMPLATE_FOLDERS), None)
    if start is None:
        return None, f"the stored path {stored!r} is not inside a library folder of the data root; not opened"
    candidate = root.joinpath(*parts[start:]).resolve()
    if not candidate.is_relative_to(root):
        return None, f"the stored path {stored!r} leads outside the data root; not opened"
    if not candidate.is_file():
        return None, f"{candidate} does not exist"
    return candidate, ""


def plot_sample(file: str | Path, index: int, out: str | Path, data_root: str | Path | None = None) -> Path:
    """Plot object ``index`` of ``file`` into the PNG ``out``.

    Top: the blue and red 11 x 3000 stripes (raw ADU, like the paper's Figure 2)
    with a 150-column zoom; middle: their boxcar 1D extractions with the master
    sky; bottom: the source template the object was rendered from (when the
    template file can be read), all on vacuum wavelength.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with h5py.File(file, "r") as h:
        n = h["label"].shape[0]
        if not 0 <= index < n:
            raise IndexError(f"{file}: index {index} is out of range (the file holds {n} objects, 0..{n - 1})")
        stripes = h["stripes"][index].astype(np.float32)
        flux, sky, wave = h["flux1d"][index], h["sky1d"][index], h["wave1d"][index]
        label = int(h["label"][index])
        snr = float(h["snr_r"][index])
        oid = decode(h["object_id"][index : index + 1])[0]
        subclass = decode(h["subclass"][index : index + 1])[0]
        tid = decode(h["template_id"][index : index + 1])[0]
        tpath = ""
        if "templates" in h and tid:
            ids = decode(h["templates/template_id"][:])
            if tid in ids:
                tpath = decode(h["templates/path"][ids.index(tid) : ids.index(tid) + 1])[0]
    fig = plt.figure(figsize=(13, 10), constrained_layout=True)
    grid = fig.add_gridspec(5, 4)
    for a, arm in enumerate(ARMS):
        ax = fig.add_subplot(grid[0, a * 2 : a * 2 + 2])
        ax.imshow(
            stripes[a],
            aspect="auto",
            origin="lower",
            cmap="gray",
            interpolation="nearest",
            extent=(wave[a][0], wave[a][-1], -5.5, 5.5),
        )
        ax.set_title(f"{arm} stripe (11 x 3000, raw ADU)")
        ax.set_ylabel("row - centre")
        zoom = fig.add_subplot(grid[1, a * 2 : a * 2 + 2])
        zoom.imshow(stripes[a][:, 1500:1650], aspect="auto", origin="lower", cmap="gray", interpolation="nearest")
        zoom.set_title(f"{arm}: columns 1500-1650 (as the paper's Figure 2)")
        ax1 = fig.add_subplot(grid[2, a * 2 : a * 2 + 2])
        ax1.plot(wave[a], flux[a], lw=0.5, color="k", label="aperture sum (sky included)")
        ax1.plot(wave[a], sky[a], lw=0.5, color="tab:orange", label="master sky")
        ax1.plot(wave[a], flux[a] - sky[a], lw=0.5, color="tab:blue", label="sky subtracted")
        ax1.set_xlabel("vacuum wavelength (A)")
        ax1.set_ylabel("ADU")
        ax1.legend(fontsize=7, loc="upper right")
        _mark_lines(ax1, wave[a][0], wave[a][-1])
    ax_t = fig.add_subplot(grid[3:, :])
    resolved, why = resolve_template(tpath, data_root) if tpath else (None, "")
    if tpath and resolved is None:
        ax_t.text(0.5, 0.5, f"template {tid}: {why}", ha="center", transform=ax_t.transAxes)
    elif resolved is not None:
        try:
            from drcnet.library import read_spectrum

            t = read_spectrum(resolved)
            sel = (t.wave > 3700) & (t.wave < 9100)
            ax_t.plot(t.wave[sel], t.flux[sel] / np.median(t.flux[sel]), lw=0.5, color="k")
            ax_t.set_title(f"source template {tid}")
            _mark_lines(ax_t, 3700, 9100)
        except (OSError, ValueError) as exc:
            ax_t.text(0.5, 0.5, f"template {tpath} could not be read: {exc}", ha="center", transform=ax_t.transAxes)
    else:
        ax_t.text(0.5, 0.5, "no source template recorded for this object", ha="center", transform=ax_t.transAxes)
    ax_t.set_xlabel("vacuum wavelength (A)")
    cls = CLASSES[label] if label >= 0 else "?"
    fig.suptitle(f"{oid}: class {cls} ({subclass}), S/N_r = {snr:.1f}, template {tid}")
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return out


def _mark_lines(ax, lo: float, hi: float) -> None:
    for name, w in LINES_A.items():
        if lo < w < hi:
            ax.axvline(w, color="tab:red", lw=0.5, alpha=0.5)
            ax.text(w, 0.98, name, rotation=90, va="top", ha="right", fontsize=6, transform=ax.get_xaxis_transform())
