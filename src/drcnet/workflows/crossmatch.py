# Over 400 lines on purpose: one job (survey catalogue -> fiber labels) with its matching rules and errors.
"""Cross-match the fibers of raw exposures with a LAMOST LRS catalogue (the paper's Figure 4, step 1).

A fiber is found by ``obsid`` when its fiber map carries one, else by (lmjd, planid, spid, fiberid)
(:mod:`drcnet.instrument.lrs_catalogue`). Each matched fiber gets the catalogue's label (F/G/K, or
``other`` / left out for everything else, the user's choice), subclass, S/N_r, LASP parameters and the
star's designation (the identity the paper's split goes by). Nothing is lost silently: every object
fiber without a row, every row of the reduced spectrographs without a fiber, every duplicated key and
every label that is not F/G/K is counted in :meth:`CatalogueMatcher.report`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from drcnet.conventions import CLASSES, CLASSES_WITH_OTHER, OTHER
from drcnet.instrument.fibermap import FiberMap
from drcnet.instrument.lrs_catalogue import CatalogueError, frame_keys, read_lrs_catalogue
from drcnet.library.labels import lamost_label

NON_FGK_CHOICES: tuple[str, ...] = ("other", "drop")
"""What a matched object that is not an F/G/K star becomes: label ``other`` (3) or left out (label -1)."""
PARAM_COLUMNS: dict[str, str] = {
    "snr_r_cat": "snrr",
    "snr_g_cat": "snrg",
    "teff": "teff",
    "teff_err": "teff_err",
    "logg": "logg",
    "logg_err": "logg_err",
    "feh": "feh",
    "feh_err": "feh_err",
}
"""Dataset ``/params/<name>`` -> catalogue column."""
DESIGNATION_DTYPE = "S40"


@dataclass(frozen=True)
class FiberKeys:
    """The catalogue keys of one spectrograph's fibers (arrays of one value per fiber)."""

    lmjd: int
    planid: str
    spid: int
    fiber: np.ndarray  # 1-based
    is_object: np.ndarray  # bool: the fiber map points it at an object
    obsid: np.ndarray  # int64, -1 where the fiber map carries none

    @classmethod
    def of(cls, fibermap: FiberMap, header: Mapping[str, Any]) -> FiberKeys:
        """Keys from a fiber map and the science frame's header (``MJD`` -> lmjd, ``PLANID``)."""
        lmjd, planid = frame_keys(header, fibermap.planid)
        obsid = getattr(fibermap, "obsid", None)
        obsid = np.full(len(fibermap), -1, np.int64) if obsid is None else np.asarray(obsid, np.int64)
        return cls(
            lmjd=lmjd,
            planid=planid,
            spid=int(fibermap.spid),
            fiber=np.asarray(fibermap.fiber, int),
            is_object=np.asarray(fibermap.is_object, bool),
            obsid=obsid,
        )


def catalogue_label(cls: str, subclass: str) -> tuple[str, str]:
    """drcnet class (F/G/K, or ``other``) and subclass of a LAMOST ``class``/``subclass`` pair.

    >>> catalogue_label("STAR", "G5")
    ('G', 'G5')
    >>> catalogue_label("STAR", "A1V")
    ('other', 'A1V')
    >>> catalogue_label("GALAXY", "Non")
    ('other', 'GALAXY')
    """
    c, sub = lamost_label(cls, subclass)
    if c in CLASSES:
        return c, sub
    raw = str(cls).strip().upper()
    if raw == "STAR":
        return OTHER, str(subclass).strip() or "STAR"
    return OTHER, raw or "UNKNOWN"


@dataclass
class FiberMatch:
    """What one spectrograph's fibers got from the catalogue (arrays of one value per fiber)."""

    row: np.ndarray  # catalogue row, -1 none (or ambiguous)
    label: np.ndarray  # int8: 0 F, 1 G, 2 K, 3 other, -1 none / left out
    subclass: np.ndarray  # str
    designation: np.ndarray  # str, "" none
    obsid: np.ndarray  # int64, -1 none
    params: dict[str, np.ndarray] = field(default_factory=dict)  # PARAM_COLUMNS, NaN none


class CatalogueMatcher:
    """Match fibers to the rows of one LAMOST catalogue, spectrograph by spectrograph, keeping count.

    Parameters
    ----------
    catalogue
        A catalogue file (:func:`~drcnet.instrument.lrs_catalogue.read_lrs_catalogue`) or its arrays.
    non_fgk
        ``"other"``: objects that are not F/G/K stars get label 3; ``"drop"``: label -1 (left out of
        training and scoring; the fiber stays in the file).
    ignore_lmjd
        Match on (planid, spid, fiberid) alone (a catalogue whose lmjd follows another convention).

    Raises
    ------
    ValueError
        ``non_fgk`` is not one of :data:`NON_FGK_CHOICES`.
    """

    def __init__(
        self, catalogue: str | Path | Mapping[str, np.ndarray], non_fgk: str = "other", ignore_lmjd: bool = False
    ) -> None:
        if non_fgk not in NON_FGK_CHOICES:
            raise ValueError(f"--non-fgk {non_fgk!r}: choose {' or '.join(NON_FGK_CHOICES)}")
        self.path = str(catalogue) if isinstance(catalogue, (str, Path)) else "<table>"
        self.cat = read_lrs_catalogue(catalogue) if isinstance(catalogue, (str, Path)) else dict(catalogue)
        self.non_fgk = non_fgk
        self.ignore_lmjd = ignore_lmjd
        n = len(self.cat["obsid"])
        self.n_rows = n
        self._by_key: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        self._by_obsid: dict[int, list[int]] = defaultdict(list)
        for i in range(n):
            self._by_key[
                self._key(
                    int(self.cat["lmjd"][i]),
                    str(self.cat["planid"][i]),
                    int(self.cat["spid"][i]),
                    int(self.cat["fiberid"][i]),
                )
            ].append(i)
            if self.cat["obsid"][i] >= 0:
                self._by_obsid[int(self.cat["obsid"][i])].append(i)
        labels = [catalogue_label(c, s) for c, s in zip(self.cat["class"], self.cat["subclass"], strict=True)]
        self._cls = np.array([c for c, _ in labels], dtype=object).astype(str) if n else np.array([], str)
        self._sub = np.array([s for _, s in labels], dtype=object).astype(str) if n else np.array([], str)
        self.used = np.zeros(n, dtype=bool)
        self._spectrographs: list[tuple[int, str, int]] = []
        self._counts: Counter[str] = Counter()
        self._unmatched: list[str] = []
        self._duplicate_fibers: list[str] = []
        self._non_fgk: Counter[str] = Counter()

    def _key(self, lmjd: int, planid: str, spid: int, fiber: int) -> tuple[Any, ...]:
        return (planid, spid, fiber) if self.ignore_lmjd else (lmjd, planid, spid, fiber)

    def _rows(self, keys: FiberKeys, i: int) -> list[int]:
        if keys.obsid[i] >= 0 and int(keys.obsid[i]) in self._by_obsid:
            return self._by_obsid[int(keys.obsid[i])]
        return self._by_key.get(self._key(keys.lmjd, keys.planid, keys.spid, int(keys.fiber[i])), [])

    def n_matches(self, keys: FiberKeys) -> int:
        """How many of the spectrograph's fibers have at least one catalogue row (nothing is recorded)."""
        return sum(1 for i in range(keys.fiber.size) if self._rows(keys, i))

    def check_any(self, keys: Sequence[FiberKeys]) -> None:
        """Raise before any work when no fiber of ``keys`` is in the catalogue (a catalogue of another plate).

        Raises
        ------
        CatalogueError
            Naming the frames' (planid, lmjd, spid) and what the catalogue holds instead.
        """
        if any(self.n_matches(k) for k in keys):
            return
        frames = sorted({(k.planid, k.lmjd) for k in keys})
        spids = sorted({k.spid for k in keys})
        cat_plans = Counter(zip(self.cat["planid"].tolist(), self.cat["lmjd"].tolist(), strict=True))
        same_plan = sorted({(p, m) for p, m in cat_plans if p in {f[0] for f in frames}})
        listed = ", ".join(f"{p} lmjd {m} ({c} rows)" for (p, m), c in cat_plans.most_common(5)) or "no rows"
        hint = ""
        if same_plan and not self.ignore_lmjd:
            hint = (
                f"; it lists the same plan on lmjd {', '.join(str(m) for _, m in same_plan)} (drcnet's lmjd is "
                "floor(MJD + 0.5 + 8/24) from the MJD header card): pass --catalogue-ignore-lmjd to match on "
                "planid, spid and fiberid alone"
            )
        elif same_plan:
            hint = f"; it lists that plan but not spectrograph(s) {spids}"
        raise CatalogueError(
            f"{self.path}: no fiber of the frames is in the catalogue - the frames are plan(s) "
            f"{', '.join(f'{p} lmjd {m}' for p, m in frames)}, spectrograph(s) {spids}; the catalogue holds {listed}"
            f"{hint}. Is it the catalogue of another plate?"
        )

    def match(self, keys: FiberKeys, names: Sequence[str] | None = None) -> FiberMatch:
        """Match one spectrograph's fibers (and count what happened).

        Parameters
        ----------
        keys
            The spectrograph's fiber keys.
        names
            Fiber names for the report (default ``<planid>-spXX-FFF``).
        """
        n = keys.fiber.size
        self._spectrographs.append((keys.lmjd, keys.planid, keys.spid))
        out = FiberMatch(
            row=np.full(n, -1, np.int64),
            label=np.full(n, -1, np.int8),
            subclass=np.full(n, "", "<U16"),
            designation=np.full(n, "", "<U40"),
            obsid=np.full(n, -1, np.int64),
            params={k: np.full(n, np.nan, np.float32) for k in PARAM_COLUMNS},
        )
        for i in range(n):
            name = names[i] if names is not None else f"{keys.planid}-sp{keys.spid:02d}-{int(keys.fiber[i]):03d}"
            rows = self._rows(keys, i)
            if keys.is_object[i]:
                self._counts["object_fibers"] += 1
            if not rows:
                if keys.is_object[i]:
                    self._counts["object_fibers_without_row"] += 1
                    self._unmatched.append(name)
                continue
            self.used[rows] = True
            if len(rows) > 1:
                self._counts["fibers_with_duplicate_rows"] += 1
                self._duplicate_fibers.append(f"{name} (rows {', '.join(str(r + 2) for r in rows[:4])})")
                continue  # ambiguous: no label rather than a guess
            r = rows[0]
            self._counts["matched"] += 1
            if not keys.is_object[i]:
                self._counts["matched_non_object_fibers"] += 1
            cls, sub = str(self._cls[r]), str(self._sub[r])
            out.row[i] = r
            out.subclass[i] = sub[:8]
            out.designation[i] = str(self.cat["designation"][r])
            out.obsid[i] = int(self.cat["obsid"][r])
            for name_, col in PARAM_COLUMNS.items():
                out.params[name_][i] = self.cat[col][r]
            if cls in CLASSES:
                out.label[i] = CLASSES.index(cls)
                self._counts[f"label_{cls}"] += 1
            else:
                self._non_fgk[f"{self.cat['class'][r] or '?'}:{sub}"] += 1
                self._counts["non_fgk"] += 1
                out.label[i] = CLASSES_WITH_OTHER.index(OTHER) if self.non_fgk == "other" else -1
        return out

    def report(self) -> dict[str, Any]:
        """Counts of everything that happened so far (JSON-ready)."""
        reduced = {(m, p, s) for m, p, s in self._spectrographs}
        reduced_ps = {(p, s) for _, p, s in self._spectrographs}
        on_reduced = np.array(
            [
                ((p, s) in reduced_ps) if self.ignore_lmjd else ((m, p, s) in reduced)
                for m, p, s in zip(
                    self.cat["lmjd"].tolist(), self.cat["planid"].tolist(), self.cat["spid"].tolist(), strict=True
                )
            ],
            dtype=bool,
        )
        dup_keys = [k for k, rows in self._by_key.items() if len(rows) > 1]
        c = self._counts
        return {
            "catalogue": self.path,
            "rows": self.n_rows,
            "non_fgk": self.non_fgk,
            "ignore_lmjd": self.ignore_lmjd,
            "spectrographs": [{"lmjd": m, "planid": p, "spid": s} for m, p, s in self._spectrographs],
            "object_fibers": c["object_fibers"],
            "matched": c["matched"],
            "labels": {cls: c[f"label_{cls}"] for cls in CLASSES},
            "non_fgk_objects": c["non_fgk"],
            "non_fgk_by_class": dict(self._non_fgk.most_common()),
            "object_fibers_without_row": c["object_fibers_without_row"],
            "object_fibers_without_row_examples": self._unmatched[:20],
            "rows_without_fiber": int(np.sum(on_reduced & ~self.used)),
            "rows_without_fiber_examples": [
                int(self.cat["obsid"][r]) for r in np.flatnonzero(on_reduced & ~self.used)[:20]
            ],
            "rows_for_other_spectrographs": int(np.sum(~on_reduced)),
            "duplicate_keys": len(dup_keys),
            "duplicate_rows": int(sum(len(self._by_key[k]) for k in dup_keys)),
            "fibers_with_duplicate_rows": c["fibers_with_duplicate_rows"],
            "fibers_with_duplicate_rows_examples": self._duplicate_fibers[:20],
            "matched_non_object_fibers": c["matched_non_object_fibers"],
        }

    def report_lines(self) -> list[str]:
        """The report as a few lines for the console."""
        r = self.report()
        fate = "label other" if self.non_fgk == "other" else "left out (label -1)"
        lines = [
            f"catalogue {r['catalogue']}: {r['matched']} of {r['object_fibers']} object fibers matched "
            f"(F {r['labels']['F']}, G {r['labels']['G']}, K {r['labels']['K']}, not F/G/K "
            f"{r['non_fgk_objects']}: {fate})"
        ]
        if r["non_fgk_objects"]:
            lines.append("  not F/G/K: " + ", ".join(f"{k} {v}" for k, v in list(r["non_fgk_by_class"].items())[:12]))
        if r["object_fibers_without_row"]:
            lines.append(
                f"  {r['object_fibers_without_row']} object fiber(s) without a catalogue row (label -1): "
                + ", ".join(r["object_fibers_without_row_examples"][:8])
            )
        if r["rows_without_fiber"]:
            lines.append(
                f"  {r['rows_without_fiber']} catalogue row(s) of these spectrographs without a fiber "
                f"(obsid {', '.join(str(o) for o in r['rows_without_fiber_examples'][:8])})"
            )
        if r["duplicate_keys"]:
            lines.append(
                f"  {r['duplicate_keys']} duplicated key(s) ({r['duplicate_rows']} rows); "
                f"{r['fibers_with_duplicate_rows']} fiber(s) left unlabelled as ambiguous: "
                + ", ".join(r["fibers_with_duplicate_rows_examples"][:4])
            )
        if r["rows_for_other_spectrographs"]:
            lines.append(
                f"  {r['rows_for_other_spectrographs']} row(s) for other plates/spectrographs/nights (not reduced here)"
            )
        return lines


LAMOST_NIGHT_COLUMNS: tuple[str, ...] = (
    "lamost_obsid",
    "lamost_designation",
    "lamost_class",
    "lamost_subclass",
    "lamost_snrr",
    "lamost_teff",
    "lamost_logg",
    "lamost_feh",
    "lamost_correct",
)
"""Columns ``drcnet night classify --catalogue`` adds to the night catalogue."""


def annotate_night(catalogue: str | Path, records: Sequence[Mapping[str, Any]], matcher: CatalogueMatcher) -> Any:
    """Add the survey catalogue's columns to a night catalogue (Parquet, and its FITS copy), atomically.

    Each row (one object fiber of one task) is matched on (lmjd, planid, spid, fiber); the lmjd comes from
    the task's science file name (:func:`~drcnet.instrument.lrs_catalogue.science_lmjd`). Added columns
    (:data:`LAMOST_NIGHT_COLUMNS`): obsid (-1 none), designation, class (F/G/K/other, or ``""`` when
    unmatched or left out with ``non_fgk="drop"``), subclass, S/N_r, LASP Teff/logg/[Fe/H], and
    ``lamost_correct`` (pred equals the catalogue's class; null where there is none).

    Returns
    -------
    pyarrow.Table
        The annotated catalogue (also written over ``catalogue`` and its ``.fits`` copy).

    Raises
    ------
    CatalogueError
        No fiber of the night is in the catalogue.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from drcnet.inference.table import write_catalogue
    from drcnet.instrument.lrs_catalogue import science_lmjd
    from drcnet.provenance import atomic_path

    path = Path(catalogue)
    table = pq.read_table(path)
    n = table.num_rows
    lmjd_of: dict[tuple[str, int], int] = {}
    for rec in records:
        if rec.get("status") in ("ok", "skipped"):
            lmjd_of[(str(rec["exposure"]), int(rec["spid"]))] = science_lmjd(
                rec["folder"], str(rec["planid"]), int(rec["spid"]), rec.get("run")
            )
    exposure = np.asarray(table["exposure"].to_pylist(), dtype=object)
    planid = np.asarray(table["planid"].to_pylist(), dtype=object)
    spid = np.asarray(table["spid"].to_numpy(), dtype=int)
    fiber = np.asarray(table["fiber"].to_numpy(), dtype=int)
    groups: dict[tuple[str, str, int], np.ndarray] = {}
    for key in dict.fromkeys(zip(exposure.tolist(), planid.tolist(), spid.tolist(), strict=True)):
        groups[key] = np.flatnonzero((exposure == key[0]) & (planid == key[1]) & (spid == key[2]))
    keys = {
        g: FiberKeys(
            lmjd=lmjd_of.get((g[0], g[2]), -1),
            planid=g[1],
            spid=g[2],
            fiber=fiber[rows],
            is_object=np.ones(rows.size, bool),
            obsid=np.full(rows.size, -1, np.int64),
        )
        for g, rows in groups.items()
    }
    matcher.check_any(list(keys.values()))
    cols = {
        "lamost_obsid": np.full(n, -1, np.int64),
        "lamost_designation": np.full(n, "", object),
        "lamost_class": np.full(n, "", object),
        "lamost_subclass": np.full(n, "", object),
        "lamost_snrr": np.full(n, np.nan),
        "lamost_teff": np.full(n, np.nan),
        "lamost_logg": np.full(n, np.nan),
        "lamost_feh": np.full(n, np.nan),
    }
    for g, rows in groups.items():
        m = matcher.match(keys[g], [f"{g[0]}/sp{g[2]:02d}-{f:03d}" for f in fiber[rows]])
        cols["lamost_obsid"][rows] = m.obsid
        cols["lamost_designation"][rows] = m.designation
        cols["lamost_class"][rows] = [CLASSES_WITH_OTHER[k] if k >= 0 else "" for k in m.label]
        cols["lamost_subclass"][rows] = m.subclass
        for name, param in (
            ("lamost_snrr", "snr_r_cat"),
            ("lamost_teff", "teff"),
            ("lamost_logg", "logg"),
            ("lamost_feh", "feh"),
        ):
            cols[name][rows] = m.params[param]
    pred = np.asarray(table["pred"].to_pylist(), dtype=object) if "pred" in table.column_names else np.full(n, "")
    correct = [None if c == "" else bool(p == c) for p, c in zip(pred, cols["lamost_class"], strict=True)]
    for name in LAMOST_NIGHT_COLUMNS[:-1]:
        if name in table.column_names:
            table = table.drop_columns([name])
        values = cols[name]
        arr = pa.array(values.tolist(), pa.string()) if values.dtype == object else pa.array(values)
        table = table.append_column(name, arr)
    if "lamost_correct" in table.column_names:
        table = table.drop_columns(["lamost_correct"])
    table = table.append_column("lamost_correct", pa.array(correct, pa.bool_()))
    meta = dict(table.schema.metadata or {})
    import json

    meta[b"drcnet.catalogue_match"] = json.dumps(matcher.report(), default=str).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    prov = json.loads(meta.get(b"drcnet.provenance", b"{}"))
    write_catalogue(table, path.with_name(path.name[: -len(".parquet")] + ".fits"), prov)
    return table
