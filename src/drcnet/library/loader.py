"""Load whole spectral libraries (folders or single files) into Template records."""

from __future__ import annotations

import os
import warnings
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._common import PathLike, folder_labels
from .errors import LibraryError, LibraryWarning
from .formats import read_spectrum
from .splice import MATCH_RULES, PartnerPool, SpliceError, choose_partner, splice_red
from .template import Template

#: File-name endings treated as spectrum files inside a library folder.
SPECTRUM_SUFFIXES = (".fits", ".fits.gz", ".fit", ".fit.gz", ".fts", ".fits.fz")
#: Minimum fraction of measured (mask True) pixels inside ``require_range``.
MIN_COVERAGE = 0.95
#: The same for already-observed survey spectra (LAMOST): their masks flag sky-line residuals and bad
#: columns, which are bridged by linear interpolation (:func:`~drcnet.library._common.fill_masked`)
#: rather than dropping the star; only spectra with most of the range missing are skipped.
MIN_COVERAGE_OBSERVED = 0.60
#: Where a PyHammer folder to splice from is looked for, relative to a library folder.
SPLICE_CANDIDATES = ("../pyhammer", "../spectral_libraries/pyhammer")
#: A template whose red end falls short of ``require_range[1]`` by less than
#: this (A) is spliced from PyHammer; a larger shortfall is rejected.
MAX_SPLICE_SHORTFALL = 2000.0

# What a corrupt, truncated or non-spectrum file raises while being read.
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, zlib.error)


@dataclass
class LoadResult:
    """What :func:`load_templates` read, and what it left out and why.

    Attributes
    ----------
    templates
        The accepted templates, in path order.
    skipped
        ``(path, reason)`` for every file not returned for a reason other than
        its class (unreadable, unrecognised, coverage, splice impossible).
    unknown_labels
        Raw class strings that could not be parsed, ``"<library>: <raw>"`` ->
        count (those templates are never given a guessed class).
    by_library
        Number of accepted templates per library.
    dropped_by_class
        ``"<library>:<cls>"`` -> number of readable templates dropped because
        their class was not requested (``"<library>:?"`` for unknown class).
    """

    templates: list[Template] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unknown_labels: Counter[str] = field(default_factory=Counter)
    by_library: dict[str, int] = field(default_factory=dict)
    dropped_by_class: Counter[str] = field(default_factory=Counter)


def _is_spectrum_file(p: Path) -> bool:
    return p.is_file() and p.name.lower().endswith(SPECTRUM_SUFFIXES)


def _expand(path: Path) -> list[Path]:
    """Spectrum files of a folder (sorted) or the file itself."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if _is_spectrum_file(p))
        if not files:
            raise LibraryError(
                f"{path}: no spectrum files found in this folder (looked for {', '.join('*' + s for s in SPECTRUM_SUFFIXES)})"
            )
        return files
    if path.is_file():
        return [path]
    raise LibraryError(f"{path}: no such file or folder")


def measured_coverage(t: Template, wmin: float, wmax: float) -> float:
    """Fraction of pixels in ``[wmin, wmax]`` that are measured (mask True).

    Pixels deliberately replaced (STELIB telluric windows listed in
    ``meta["telluric_windows"]``, the spliced red end beyond the blend start)
    are left out of the count: they were not missing data.
    """
    sel = (t.wave >= wmin) & (t.wave <= wmax)
    for lo, hi in t.meta.get("telluric_windows", ()):
        sel &= ~((t.wave >= lo) & (t.wave <= hi))
    if "splice_blend" in t.meta:
        sel &= t.wave < t.meta["splice_blend"][0]
    n = int(sel.sum())
    return float(t.mask[sel].sum()) / n if n else 0.0


class _Loader:
    """One :func:`load_templates` call: caches, splice pool, bookkeeping."""

    def __init__(
        self,
        classes: Sequence[str] | None,
        require_range: tuple[float, float] | None,
        splice_library: PathLike | None,
        splice_match: str,
    ):
        self.classes = None if classes is None else {c.upper() for c in classes}
        self.require_range = require_range
        self.splice_library = Path(splice_library) if splice_library is not None else None
        self.splice_match = splice_match
        self.result = LoadResult()
        self._cache: dict[Path, Template] = {}
        self._pools: dict[Path, PartnerPool | None] = {}
        self._added: set[Path] = set()

    # -- reading ---------------------------------------------------------------
    def read(self, path: Path) -> Template | None:
        """Read one file (cached); warn, record and return None if unreadable."""
        key = path.resolve()
        if key in self._cache:
            return self._cache[key]
        labels = folder_labels(path.parent).get(path.name)
        try:
            t = read_spectrum(path, labels=labels)
        except _READ_ERRORS as exc:
            reason = f"unreadable ({type(exc).__name__}: {exc})"
            warnings.warn(f"{path}: {reason}; skipped", LibraryWarning, stacklevel=4)  # -> caller of load_templates
            self.result.skipped.append((str(path), reason))
            return None  # not cached: if read again it is reported again
        self._cache[key] = t
        return t

    def pool_for(self, t: Template) -> tuple[PartnerPool | None, Path]:
        """PyHammer templates to splice ``t`` from (``splice_library`` or ``<folder>/../pyhammer``)."""
        folder = self.splice_library
        if folder is None:
            here = Path(t.path).parent
            found = [here / c for c in SPLICE_CANDIDATES if (here / c).is_dir()]
            if not found:  # e.g. a folder of survey spectra outside the data root: use the root's PyHammer
                try:
                    from drcnet.paths import data_root

                    root_ph = data_root() / "spectral_libraries" / "pyhammer"
                    found = [root_ph] if root_ph.is_dir() else []
                except Exception:  # noqa: BLE001  (no data root configured: report "no PyHammer library")
                    found = []
            folder = found[0] if found else here / SPLICE_CANDIDATES[0]
        key = folder.resolve()
        if key not in self._pools:
            pool: PartnerPool | None = None
            if folder.is_dir():
                files = [p for p in sorted(folder.iterdir()) if _is_spectrum_file(p)]
                with warnings.catch_warnings():
                    # Bad files there are reported when (if) that folder is loaded itself.
                    warnings.simplefilter("ignore", LibraryWarning)
                    n_skipped = len(self.result.skipped)
                    read = [self.read(p) for p in files]
                    del self.result.skipped[n_skipped:]
                members = [x for x in read if x is not None and x.library == "pyhammer"]
                pool = PartnerPool(members) if members else None
            self._pools[key] = pool
        return self._pools[key], folder

    # -- acceptance --------------------------------------------------------------
    def accept(self, t: Template) -> Template | str:
        """Return the (possibly spliced) template, or the reason to skip it."""
        if self.require_range is None:
            return t
        wmin, wmax = self.require_range
        if t.wave[0] > wmin:
            return f"starts at {t.wave[0]:.1f} A > {wmin:.0f} A (does not span {wmin:.0f}-{wmax:.0f} A)"
        if t.wave[-1] < wmax:
            short = wmax - t.wave[-1]
            if t.library == "pyhammer" or short >= MAX_SPLICE_SHORTFALL:
                return f"ends at {t.wave[-1]:.1f} A < {wmax:.0f} A (does not span {wmin:.0f}-{wmax:.0f} A)"
            pool, folder = self.pool_for(t)
            if pool is None:
                return (
                    f"ends at {t.wave[-1]:.1f} A < {wmax:.0f} A and no PyHammer library to splice the red end from "
                    f"(looked in {folder}; pass splice_library=...)"
                )
            try:
                t = splice_red(t, choose_partner(t, pool, self.splice_match), pool)
                t.meta["splice_match"] = self.splice_match
            except SpliceError as exc:
                return f"ends at {t.wave[-1]:.1f} A < {wmax:.0f} A and cannot be spliced: {exc}"
        cov = measured_coverage(t, wmin, wmax)
        need = MIN_COVERAGE_OBSERVED if t.library == "lamost" else MIN_COVERAGE
        if cov < need:
            return f"measured coverage of {wmin:.0f}-{wmax:.0f} A is {100 * cov:.1f} % < {100 * need:.0f} %"
        return t

    def add(self, path: Path) -> bool:
        """Read, filter and record one file; True if it was readable."""
        key = path.resolve()
        if key in self._added:  # the same file given twice (folder and file): count it once
            return key in self._cache
        self._added.add(key)
        t = self.read(path)
        if t is None:
            return False
        if "unparsed_label" in t.meta:
            self.result.unknown_labels[f"{t.library}: {t.meta['unparsed_label']!r}"] += 1
        if self.classes is not None and t.cls not in self.classes:
            self.result.dropped_by_class[f"{t.library}:{t.cls or '?'}"] += 1
            return True
        out = self.accept(t)
        if isinstance(out, str):
            self.result.skipped.append((str(path), out))
            return True
        assert np.all(np.isfinite(out.flux)) and np.all(np.diff(out.wave) > 0)
        self.result.templates.append(out)
        self.result.by_library[out.library] = self.result.by_library.get(out.library, 0) + 1
        return True


def load_templates(
    paths: Sequence[PathLike] | PathLike,
    classes: Sequence[str] | None = ("F", "G", "K"),
    require_range: tuple[float, float] | None = (3700.0, 9000.0),
    splice_library: PathLike | None = None,
    splice_match: str = "shape",
) -> LoadResult:
    """Read spectral-library folders and/or single spectrum files.

    Parameters
    ----------
    paths
        Library folders (every ``*.fits``/``*.fits.gz`` inside is read; labels
        from ``labels.csv`` there) and/or single files. Formats are detected
        from content (:func:`~drcnet.library.formats.detect_format`).
    classes
        MK class letters to keep; None keeps all (including unknown ``""``).
    require_range
        ``(wmin, wmax)`` vacuum A that every template must span with >= 95 %
        measured pixels (STELIB telluric windows and spliced pixels excluded
        from the count). Templates ending < 2000 A short of ``wmax`` (MILES)
        get their red end spliced from PyHammer. None disables both.
    splice_library
        PyHammer folder to splice from; default ``<folder>/../pyhammer``.
    splice_match
        How the splice partner is chosen: ``"teff"`` (same class, nearest
        Teff then nearest [Fe/H]) or ``"shape"`` (same class, best spectral
        match over 6000-7350 A); see :func:`~drcnet.library.splice.choose_partner`.

    Returns
    -------
    LoadResult

    Raises
    ------
    LibraryError
        If a path does not exist, or a folder has no spectrum file or none
        that can be read.

    Warns
    -----
    LibraryWarning
        Once per unreadable file (``"<path>: <reason>; skipped"``) and once per
        call listing unparseable class labels with their counts.
    """
    if splice_match not in MATCH_RULES:
        raise ValueError(f"splice_match must be one of {MATCH_RULES}, not {splice_match!r}")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    loader = _Loader(classes, require_range, splice_library, splice_match)
    for p in map(Path, paths):
        files = _expand(p)
        n_ok = 0
        n_skipped = len(loader.result.skipped)
        for f in files:  # a plain loop keeps the warning stacklevel fixed
            n_ok += loader.add(f)
        if p.is_dir() and n_ok == 0:
            why = loader.result.skipped[n_skipped:]
            reason = (
                f"; {Path(why[0][0]).name}: {why[0][1]}" + (f" (and {len(why) - 1} more)" if len(why) > 1 else "")
                if why
                else ""
            )
            raise LibraryError(
                f"{p}: no usable spectrum in this folder ({len(files)} file(s) named like spectra, none readable "
                f"as PyHammer, MILES, STELIB or LAMOST DR1/DR7/DR8+{reason})"
            )
    res = loader.result
    if res.unknown_labels:
        listed = ", ".join(f"{k} x{n}" for k, n in sorted(res.unknown_labels.items(), key=lambda kv: (-kv[1], kv[0])))
        warnings.warn(
            f"{sum(res.unknown_labels.values())} spectrum file(s) have class labels that could not be parsed "
            f"(left unclassified, not guessed): {listed}",
            LibraryWarning,
            stacklevel=2,
        )
    return res


def summarize(result: LoadResult) -> str:
    """One line per library: ``"pyhammer: 147 templates (F 52, G 55, K 40)"``, then drops."""
    lines = []
    per_lib: dict[str, Counter[str]] = {}
    for t in result.templates:
        per_lib.setdefault(t.library, Counter())[t.cls or "?"] += 1
    for lib in sorted(per_lib):
        counts = ", ".join(f"{c} {n}" for c, n in sorted(per_lib[lib].items()))
        n_spliced = sum(1 for t in result.templates if t.library == lib and "spliced_red_from" in t.meta)
        extra = f"; {n_spliced} red-spliced from PyHammer" if n_spliced else ""
        lines.append(f"{lib}: {sum(per_lib[lib].values())} templates ({counts}){extra}")
    if result.skipped:
        lines.append(f"skipped: {len(result.skipped)} file(s)")
        reasons = Counter(_reason_kind(r) for _, r in result.skipped)
        lines.extend(f"  {n} x {kind}" for kind, n in reasons.most_common())
    if result.dropped_by_class:
        drops = ", ".join(f"{k} {n}" for k, n in sorted(result.dropped_by_class.items()))
        lines.append(f"not requested (class): {drops}")
    if result.unknown_labels:
        lines.append(f"unparseable labels: {sum(result.unknown_labels.values())}")
    return "\n".join(lines)


def _reason_kind(reason: str) -> str:
    """Shorten a skip reason to its kind for the summary."""
    for key in ("unreadable", "measured coverage", "cannot be spliced", "no PyHammer library", "does not span"):
        if key in reason:
            return key
    return reason
