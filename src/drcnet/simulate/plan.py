"""Planning a dataset: how many objects of which class in which split and S/N bin, from which templates.

The paper preset reproduces Table 1 exactly (objects by split and S/N_r bin)
with the classes in the paper's ratio F 4500 : G 6500 : K 4680. Templates are
split by source star, stratified by class, so no star is seen in two splits.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from drcnet.conventions import CLASSES, CLASSES_WITH_OTHER, OTHER, SPLIT_NAMES
from drcnet.library.template import Template
from drcnet.simulate.sources import OTHER_SHARE, source_group

TABLE1: dict[tuple[str, int], int] = {
    ("train", 0): 4840,
    ("val", 0): 605,
    ("test", 0): 605,
    ("test", 1): 461,
    ("test", 2): 436,
    ("test", 3): 1042,
}
"""The paper's Table 1: objects per (split, S/N_r bin); bins 0: >30, 1: 20-30, 2: 10-20, 3: <10."""

PRESETS: dict[str, dict[tuple[str, int], int]] = {
    "paper": TABLE1,
    "small": {("train", 0): 484, ("val", 0): 61, ("test", 0): 61, ("test", 1): 46, ("test", 2): 44, ("test", 3): 104},
    "tiny": {("train", 0): 60, ("val", 0): 12, ("test", 0): 12, ("test", 1): 8, ("test", 2): 8, ("test", 3): 12},
}
"""Cell counts per preset; ``small`` is Table 1 at one tenth, ``tiny`` is for tests and demos."""

CLASS_RATIO: dict[str, int] = {"F": 4500, "G": 6500, "K": 4680}
"""The paper's class counts (section 2.1), used as a ratio."""

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
"""Share of each class's source stars (and of free-S/N objects) in train / val / test (the paper's 8:1:1)."""


def apportion(total: int, weights: Sequence[float]) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder); they sum to ``total``."""
    w = np.asarray(weights, dtype=float)
    exact = total * w / w.sum()
    out = np.floor(exact).astype(int)
    short = total - out.sum()
    order = np.argsort(-(exact - out), kind="stable")
    out[order[:short]] += 1
    return out


def source_key(t: Template) -> str:
    """Name of the source star: the same star in two libraries gets the same key."""
    name = str(t.meta.get("star_name") or t.meta.get("name") or t.meta.get("object") or "")
    name = re.sub(r"[\s_\-]+", "", name).upper()
    return name if name else t.template_id


def group_sources(templates: Sequence[Template]) -> list[int]:
    """Group index for each template: same star, or a MILES star and the template spliced onto it.

    Groups are the connected components of "same star name" and "spliced red
    end from" links, so a split by group never shares a star's light.
    """
    parent = list(range(len(templates)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        parent[find(i)] = find(j)

    first: dict[str, int] = {}
    ids = {t.template_id: i for i, t in enumerate(templates)}
    for i, t in enumerate(templates):
        key = source_key(t)
        if key in first:
            union(i, first[key])
        else:
            first[key] = i
        partner = t.meta.get("spliced_red_from")
        if partner in ids:
            union(i, ids[partner])
    roots = [find(i) for i in range(len(templates))]
    remap = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    return [remap[r] for r in roots]


def split_templates(
    templates: Sequence[Template], rng: np.random.Generator, splits_needed: Sequence[str] = SPLIT_NAMES
) -> np.ndarray:
    """Assign every template to a split, by source group, stratified by class.

    Returns an array of split indices (into :data:`SPLIT_NAMES`), -1 for
    templates of classes not used. Each class's groups are shuffled and dealt
    out so that the template counts follow :data:`SPLIT_FRACTIONS`.

    Raises
    ------
    ValueError
        If a class has too few distinct source stars to give each needed split one.
    """
    groups = group_sources(templates)
    out = np.full(len(templates), -1, dtype=int)
    for cls in CLASSES:
        members: dict[int, list[int]] = defaultdict(list)
        for i, t in enumerate(templates):
            if t.cls == cls:
                members[groups[i]].append(i)
        group_ids = list(members)
        needed = [SPLIT_NAMES.index(s) for s in splits_needed]
        if len(group_ids) < len(needed):
            raise ValueError(
                f"class {cls}: {len(group_ids)} distinct source star(s) in the libraries, but the splits "
                f"{', '.join(splits_needed)} each need their own; add a library with more {cls} stars"
            )
        rng.shuffle(group_ids)
        n_templates = sum(len(members[g]) for g in group_ids)
        fractions = np.array([SPLIT_FRACTIONS[s] for s in needed])
        targets = apportion(n_templates, fractions / fractions.sum())
        # every needed split gets at least one group; then fill toward the targets, largest deficit first
        filled = np.zeros(len(needed), dtype=int)
        for k, g in enumerate(group_ids):
            slot = k if k < len(needed) else int(np.argmax(targets - filled))
            for i in members[g]:
                out[i] = needed[slot]
            filled[slot] += len(members[g])
    return out


@dataclass(frozen=True)
class ObjectPlan:
    """What to render for every object (arrays of length N)."""

    cls: np.ndarray  # class index into CLASSES
    split: np.ndarray  # split index into SPLIT_NAMES
    snr_bin: np.ndarray  # required S/N_r bin, -1 when free
    snr_range: np.ndarray  # (N, 2) range the target S/N is drawn from
    template: np.ndarray  # template index

    def __len__(self) -> int:
        return int(self.cls.size)


SNR_TARGET_RANGES: dict[int, tuple[float, float]] = {0: (32.0, 150.0), 1: (21.0, 29.0), 2: (11.0, 19.0), 3: (2.5, 9.5)}
"""Where target S/N_r values are drawn in each bin (log-uniform), inside the bin so few need a re-draw."""


def plan_objects(
    cells: dict[tuple[str, int], int] | None,
    templates: Sequence[Template],
    template_split: np.ndarray,
    rng: np.random.Generator,
    n: int | None = None,
    snr_range: tuple[float, float] | None = None,
    all_test: bool = False,
) -> ObjectPlan:
    """Lay out every object: class, split, S/N bin or range, and template.

    Either ``cells`` (a preset: exact counts per split and bin) or ``n`` with
    ``snr_range`` (free S/N, splits 8:1:1 or all test).
    """
    ratio = [CLASS_RATIO[c] for c in CLASSES]
    rows: list[tuple[int, int, int, float, float]] = []
    if cells is not None:
        for (split_name, b), count in cells.items():
            lo, hi = SNR_TARGET_RANGES[b]
            for c, k in enumerate(apportion(count, ratio)):
                rows += [(c, SPLIT_NAMES.index(split_name), b, lo, hi)] * int(k)
    else:
        if n is None or snr_range is None:
            raise ValueError("give a preset, or --n with --snr-min/--snr-max")
        split_counts = [0, 0, n] if all_test else apportion(n, SPLIT_FRACTIONS)
        for s, count in enumerate(split_counts):
            for c, k in enumerate(apportion(int(count), ratio)):
                rows += [(c, s, -1, snr_range[0], snr_range[1])] * int(k)
    arr = np.array(rows, dtype=float).reshape(-1, 5)
    order = rng.permutation(len(arr))  # mix classes and bins so every block of the file is representative
    arr = arr[order]
    cls = arr[:, 0].astype(int)
    split = arr[:, 1].astype(int)
    template = np.empty(len(arr), dtype=int)
    cls_of = np.array([CLASSES.index(t.cls) if t.cls in CLASSES else -1 for t in templates])
    for s in np.unique(split):
        for c in np.unique(cls):
            sel = np.flatnonzero((split == s) & (cls == c))
            if sel.size == 0:
                continue
            pool = np.flatnonzero((template_split == s) & (cls_of == c))
            if pool.size == 0:
                raise ValueError(f"no {CLASSES[c]} template was assigned to the {SPLIT_NAMES[s]} split")
            # use every template about equally often, in a shuffled order
            reps = int(np.ceil(sel.size / pool.size))
            template[sel] = np.concatenate([rng.permutation(pool) for _ in range(reps)])[: sel.size]
    return ObjectPlan(cls=cls, split=split, snr_bin=arr[:, 2].astype(int), snr_range=arr[:, 3:5], template=template)


# -- objects of class "other" (drcnet simulate --other) -------------------------------------------
OTHER_LABEL = CLASSES_WITH_OTHER.index(OTHER)
"""Label index of class ``other`` in dataset files (:data:`drcnet.conventions.CLASSES_WITH_OTHER`)."""

SKY_SHARE = 0.15
"""Share of sky-only fibers among the ``other`` objects of ``drcnet simulate --other`` (the population's
:data:`~drcnet.simulate.sources.OTHER_SHARE` gives sky 0.15 when every source group is present)."""


def other_counts(
    fraction: float, cells: dict[tuple[str, int], int] | None, n: int | None, all_test: bool
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int] | None, int | None]:
    """How many ``other`` objects go where, and what is left for F/G/K.

    ``round(fraction x total)`` objects are ``other`` (exactly: ``--other 0.25`` of 40 is 10), spread over
    the preset's cells in proportion to their sizes, or over the splits 8:1:1 (all test with ``all_test``).

    Returns
    -------
    other_cells, fgk_cells, fgk_n
        ``{(split name, S/N bin or -1): count}`` of the ``other`` objects, and the preset cells (or ``n``)
        left for F, G and K.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"--other must be a share in [0, 1], got {fraction}")
    if cells is not None:
        keys = list(cells)
        total = sum(cells.values())
        k = math.floor(fraction * total + 0.5)
        per = apportion(k, [cells[c] for c in keys]) if k else np.zeros(len(keys), int)
        return (
            {c: int(p) for c, p in zip(keys, per, strict=True) if p},
            {c: cells[c] - int(p) for c, p in zip(keys, per, strict=True)},
            None,
        )
    if n is None:
        raise ValueError("give a preset, or --n with --snr-min/--snr-max")
    k = math.floor(fraction * n + 0.5)
    per_split = [0, 0, k] if all_test else apportion(k, SPLIT_FRACTIONS).tolist()
    return {(SPLIT_NAMES[s], -1): int(c) for s, c in enumerate(per_split) if c}, None, n - k


def plan_other_objects(
    counts: dict[tuple[str, int], int],
    templates: Sequence[Template],
    template_split: np.ndarray,
    snr_range: tuple[float, float] | None,
    rng: np.random.Generator,
    sky_share: float = SKY_SHARE,
) -> ObjectPlan:
    """Lay out the ``other`` objects (label :data:`OTHER_LABEL`) over ``templates`` (other + sky only).

    In each split, ``sky_share`` of the objects are sky-only fibers (``meta["no_light"]``; all of them
    when the split has no other template), the rest spread over the source groups by
    :data:`~drcnet.simulate.sources.OTHER_SHARE` (renormalised over the groups present), each
    group's templates used about equally often. Counts are exact (largest remainder), not drawn.

    Raises
    ------
    ValueError
        A split needs objects but has no template to draw them from.
    """
    sky = np.array([bool(t.meta.get("no_light")) for t in templates])
    rows: list[tuple[int, int, float, float, int]] = []
    for (split_name, b), count in counts.items():
        s = SPLIT_NAMES.index(split_name)
        lo, hi = SNR_TARGET_RANGES[b] if b >= 0 else snr_range  # type: ignore[misc]
        real = np.flatnonzero((template_split == s) & ~sky)
        dark = np.flatnonzero((template_split == s) & sky)
        if real.size == 0:
            n_sky = int(count)  # nothing else in this split: every other object is a sky-only fiber
        elif sky_share > 0:
            n_sky = int(apportion(int(count), [1 - sky_share, sky_share])[1])
        else:
            n_sky = 0
        if n_sky and dark.size == 0:
            raise ValueError(
                f"no other template (O/B/A/M star, galaxy, QSO) in the {split_name} split and sky-only "
                "fibers are off; add a library with such spectra, or allow sky-only fibers"
            )
        picks = [int(rng.choice(dark)) for _ in range(n_sky)]
        groups: dict[str, list[int]] = {}
        for i in real:
            groups.setdefault(source_group(templates[i]), []).append(int(i))
        names = sorted(groups)
        if names:
            for g, k in zip(
                names, apportion(int(count) - n_sky, [OTHER_SHARE.get(g, 0.1) for g in names]), strict=True
            ):
                pool = np.array(groups[g])
                reps = int(np.ceil(k / pool.size)) if k else 0
                picks += np.concatenate([rng.permutation(pool) for _ in range(reps)])[: int(k)].tolist() if reps else []
        rows += [(s, b, lo, hi, p) for p in picks]
    arr = np.array(rows, dtype=float).reshape(-1, 5)
    return ObjectPlan(
        cls=np.full(len(arr), OTHER_LABEL, dtype=int),
        split=arr[:, 0].astype(int),
        snr_bin=arr[:, 1].astype(int),
        snr_range=arr[:, 2:4],
        template=arr[:, 4].astype(int),
    )


def merge_plans(a: ObjectPlan, b: ObjectPlan, template_offset: int, rng: np.random.Generator) -> ObjectPlan:
    """``a`` and ``b`` (whose templates follow ``a``'s, from ``template_offset``) in one shuffled plan."""
    order = rng.permutation(len(a) + len(b))
    return ObjectPlan(
        cls=np.concatenate([a.cls, b.cls])[order],
        split=np.concatenate([a.split, b.split])[order],
        snr_bin=np.concatenate([a.snr_bin, b.snr_bin])[order],
        snr_range=np.concatenate([a.snr_range.reshape(-1, 2), b.snr_range.reshape(-1, 2)])[order],
        template=np.concatenate([a.template, b.template + template_offset])[order],
    )
