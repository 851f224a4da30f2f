"""Planning a dataset: how many objects of which class in which split and S/N bin, from which templates.

The paper preset reproduces Table 1 exactly (objects by split and S/N_r bin)
with the classes in the paper's ratio F 4500 : G 6500 : K 4680. Templates are
split by source star, stratified by class, so no star is seen in two splits.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from drcnet import CLASSES
from drcnet.conventions import SPLIT_NAMES
from drcnet.library.template import Template

TABLE1: dict[tuple[str, int], int] = {
    ("train", 0): 4840, ("val", 0): 605, ("test", 0): 605,
    ("test", 1): 461, ("test", 2): 436, ("test", 3): 1042,
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


def split_templates(templates: Sequence[Template], rng: np.random.Generator,
                    splits_needed: Sequence[str] = SPLIT_NAMES) -> np.ndarray:
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
                f"{', '.join(splits_needed)} each need their own; add a library with more {cls} stars")
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

    cls: np.ndarray          # class index into CLASSES
    split: np.ndarray        # split index into SPLIT_NAMES
    snr_bin: np.ndarray      # required S/N_r bin, -1 when free
    snr_range: np.ndarray    # (N, 2) range the target S/N is drawn from
    template: np.ndarray     # template index

    def __len__(self) -> int:
        return int(self.cls.size)


SNR_TARGET_RANGES: dict[int, tuple[float, float]] = {0: (32.0, 150.0), 1: (21.0, 29.0), 2: (11.0, 19.0), 3: (2.5, 9.5)}
"""Where target S/N_r values are drawn in each bin (log-uniform), inside the bin so few need a re-draw."""


def plan_objects(cells: dict[tuple[str, int], int] | None, templates: Sequence[Template],
                 template_split: np.ndarray, rng: np.random.Generator, n: int | None = None,
                 snr_range: tuple[float, float] | None = None, all_test: bool = False) -> ObjectPlan:
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
