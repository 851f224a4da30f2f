"""The paper's split on any labelled dataset (``drcnet split``): merge files, then Table 1's rule.

Zhang et al. (2023), section 2.1 and Table 1: objects with S/N_r above 30 are split 8:1:1 into
train / validation / test, everything below 30 goes to the test set. Here the split is by star (a
star's spectra never sit in two of train/val/test among the S/N_r > 30 objects), with the hash rule
of the simulator (:func:`drcnet.simulate.sources.lamost_split_of`, 8:1:1): stable, whatever the
other files merged. With ``table1`` the exact counts of Table 1 are taken, each cell's classes in the
paper's ratio F 4500 : G 6500 : K 4680 (as ``drcnet simulate --preset paper`` does,
:data:`drcnet.simulate.plan.TABLE1`), or an error says how many are missing per cell and class.

The star is the ``designation`` column (from a survey catalogue, ``drcnet frames reduce --catalogue``),
else the template id (simulated files: one source spectrum), else the object id. The S/N_r is the
catalogue's (``params/snr_r_cat``) where the file has it, else the measured ``snr_r``; the output's
``snr_bin`` follows it, so ``drcnet evaluate`` reports the same bins the split used.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from drcnet.conventions import CLASSES, CLASSES_WITH_OTHER, SNR_BIN_NAMES, SPLIT_NAMES, snr_bin
from drcnet.data.schema import decode, open_dataset
from drcnet.provenance import atomic_path, provenance
from drcnet.simulate.plan import CLASS_RATIO, SPLIT_FRACTIONS, TABLE1, apportion
from drcnet.simulate.sources import lamost_split_of

SNR_SPLIT = 30.0
"""Table 1's threshold: above it 8:1:1, below it test only."""
SALT = "drcnet-split"
"""Hash salt of the split by star (changing it re-deals the stars)."""
_SCHEMA_ATTRS = ("schema_version", "arms", "stripe_rows", "stripe_cols", "col_start", "split_names")
_BLOCK = 256


@dataclass
class SplitResult:
    """What :func:`split_datasets` wrote."""

    out: Path
    counts: dict[str, dict[str, int]]  # split -> S/N bin name -> objects
    class_counts: dict[str, dict[str, int]]  # split -> class -> objects
    n_in: int
    left_out: dict[str, int]  # reason -> objects not written


def _layout(h: h5py.File) -> dict[str, tuple[tuple[int, ...], str]]:
    """Per-object datasets (name -> (shape after N, dtype kind+size)); strings by kind only."""
    n = h["label"].shape[0]
    out: dict[str, tuple[tuple[int, ...], str]] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.shape and obj.shape[0] == n and not name.startswith("templates/"):
            kind = "S" if obj.dtype.kind == "S" else obj.dtype.str
            out[name] = (tuple(obj.shape[1:]), kind)

    h.visititems(visit)
    return out


def check_compatible(paths: Sequence[Path]) -> dict[str, tuple[tuple[int, ...], str]]:
    """The common layout of ``paths``, or a one-line error naming the first file that differs and how.

    Raises
    ------
    ValueError
        A file of another schema (attributes, per-object datasets, shapes or types).
    """
    first_attrs: dict[str, Any] = {}
    layout: dict[str, tuple[tuple[int, ...], str]] = {}
    for i, path in enumerate(paths):
        with open_dataset(path) as h:
            attrs = {
                k: (h.attrs[k].decode() if isinstance(h.attrs.get(k), bytes) else h.attrs.get(k)) for k in _SCHEMA_ATTRS
            }
            attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in attrs.items()}
            lay = _layout(h)
        if i == 0:
            first_attrs, layout = attrs, lay
            continue
        diff = [
            f"{k} {attrs[k]!r} (first file {first_attrs[k]!r})" for k in _SCHEMA_ATTRS if attrs[k] != first_attrs[k]
        ]
        only_here = sorted(set(lay) - set(layout))
        only_first = sorted(set(layout) - set(lay))
        shapes = [f"{k} {lay[k]} vs {layout[k]}" for k in sorted(set(lay) & set(layout)) if lay[k] != layout[k]]
        if diff or only_here or only_first or shapes:
            parts = (
                diff
                + ([f"has {', '.join(only_here)} that {paths[0]} lacks"] if only_here else [])
                + ([f"lacks {', '.join(only_first)} of {paths[0]}"] if only_first else [])
                + shapes
            )
            raise ValueError(
                f"{path}: cannot be merged with {paths[0]}: {'; '.join(parts)}; merge files made the "
                "same way (e.g. all by `drcnet frames reduce --catalogue`)"
            )
    return layout


def _hash_unit(key: str) -> float:
    return int(hashlib.sha256(f"{SALT}:order:{key}".encode()).hexdigest()[:12], 16) / float(16**12)


def assign_splits(star: Sequence[str], snr: np.ndarray) -> np.ndarray:
    """Table 1's rule: S/N_r > 30 split 8:1:1 by a hash of the star, the rest test (split indices)."""
    high = np.asarray(snr) > SNR_SPLIT
    out = np.full(len(star), SPLIT_NAMES.index("test"), dtype=np.int8)
    for i in np.flatnonzero(high):
        out[i] = lamost_split_of(star[i], SPLIT_FRACTIONS, SALT)
    return out


def table1_rows(split: np.ndarray, sbin: np.ndarray, label: np.ndarray, keys: Sequence[str]) -> np.ndarray:
    """Rows giving exactly Table 1's cells, classes in the paper's ratio (hash order within each cell).

    Raises
    ------
    ValueError
        Some cells cannot be filled: says how many objects are missing per cell and class.
    """
    ratio = [CLASS_RATIO[c] for c in CLASSES]
    chosen: list[np.ndarray] = []
    missing: list[str] = []
    for (split_name, b), count in TABLE1.items():
        s = SPLIT_NAMES.index(split_name)
        for c, need in enumerate(apportion(count, ratio)):
            pool = np.flatnonzero((split == s) & (sbin == b) & (label == c))
            if pool.size < need:
                missing.append(f"{split_name} {SNR_BIN_NAMES[b]} {CLASSES[c]}: {need - pool.size} of {need}")
                continue
            order = np.argsort([_hash_unit(keys[i]) for i in pool], kind="stable")
            chosen.append(pool[order[:need]])
    if missing:
        raise ValueError(
            f"--table1: not enough objects for Table 1's exact counts; missing (split, S/N_r bin, "
            f"class: short of needed) {'; '.join(missing)}; add nights, or split without --table1"
        )
    return np.sort(np.concatenate(chosen))


def split_datasets(inputs: Sequence[str | Path], out: str | Path, table1: bool = False) -> SplitResult:
    """Merge labelled dataset files and split them the paper's way into ``out`` (atomically).

    Parameters
    ----------
    inputs
        Dataset files of one schema (``drcnet frames reduce --catalogue``, ``drcnet simulate``, ...).
    out
        The file to write: every per-object dataset of the inputs, labelled objects only, with
        ``split`` and ``snr_bin`` set by the rule; attribute ``split_rule`` (JSON) says what was done.
    table1
        Take exactly Table 1's counts (F/G/K only, classes in the paper's ratio).

    Raises
    ------
    FileNotFoundError, OSError, KeyError
        An input cannot be read as a dataset file.
    ValueError
        Inputs of different schemas; no labelled object; ``table1`` counts not available.
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise ValueError("give at least one dataset file to split")
    out = Path(out)
    if out.resolve() in {p.resolve() for p in paths}:
        raise ValueError(f"{out}: the output must not be one of the inputs")
    layout = check_compatible(paths)
    labels, stars, snrs, sources = [], [], [], []
    for f, path in enumerate(paths):
        with open_dataset(path) as h:
            n = h["label"].shape[0]
            labels.append(h["label"][:].astype(np.int64))
            star = decode(h["designation"][:]) if "designation" in h else [""] * n
            tid = decode(h["template_id"][:]) if "template_id" in h else [""] * n
            oid = decode(h["object_id"][:])
            stars.append([s or t or f"{path.name}:{o}" for s, t, o in zip(star, tid, oid, strict=True)])
            snr = h["snr_r"][:].astype(np.float64)
            if "params/snr_r_cat" in h:
                cat = h["params/snr_r_cat"][:].astype(np.float64)
                snr = np.where(np.isfinite(cat), cat, snr)
            snrs.append(snr)
            sources += [(f, i) for i in range(n)]
    label = np.concatenate(labels)
    star = [s for block in stars for s in block]
    snr = np.concatenate(snrs)
    n_in = label.size
    left_out: Counter[str] = Counter()
    keep = label >= 0
    left_out["unlabelled (label -1)"] = int(np.sum(~keep))
    nan = keep & ~np.isfinite(snr)
    left_out["no S/N_r"] = int(np.sum(nan))
    keep &= ~nan
    if table1:
        other = keep & (label >= len(CLASSES))
        left_out["not F/G/K (Table 1 is F/G/K only)"] = int(np.sum(other))
        keep &= ~other
    split = assign_splits(star, snr)
    sbin = snr_bin(snr).astype(np.int8)
    rows = np.flatnonzero(keep)
    if table1:
        keys = [f"{star[i]}:{sources[i][0]}:{sources[i][1]}" for i in range(n_in)]
        sub = table1_rows(split[rows], sbin[rows], label[rows], [keys[i] for i in rows])
        left_out["beyond Table 1's counts"] = int(rows.size - sub.size)
        rows = rows[sub]
    if rows.size == 0:
        raise ValueError(
            f"{', '.join(map(str, paths))}: no labelled object to split (every label is -1); reduce "
            "with --catalogue to label the fibers"
        )
    train_stars = {star[i] for i in rows if split[i] == SPLIT_NAMES.index("train")}
    test_low_seen = int(
        sum(1 for i in rows if split[i] == SPLIT_NAMES.index("test") and snr[i] <= SNR_SPLIT and star[i] in train_stars)
    )
    counts = {
        s: {b: int(np.sum((split[rows] == k) & (sbin[rows] == j))) for j, b in enumerate(SNR_BIN_NAMES)}
        for k, s in enumerate(SPLIT_NAMES)
    }
    class_counts = {
        s: {c: int(np.sum((split[rows] == k) & (label[rows] == j))) for j, c in enumerate(CLASSES_WITH_OTHER)}
        for k, s in enumerate(SPLIT_NAMES)
    }
    rule = {
        "rule": "S/N_r > 30: 8:1:1 train/val/test by star (sha256 hash of the designation); S/N_r <= 30: test",
        "salt": SALT,
        "snr_source": "params/snr_r_cat where finite, else snr_r",
        "table1": table1,
        "inputs": [str(p.resolve()) for p in paths],
        "n_in": n_in,
        "n_out": int(rows.size),
        "left_out": dict(left_out),
        "counts": counts,
        "class_counts": class_counts,
        "test_low_snr_objects_of_train_stars": test_low_seen,
    }
    _write(paths, layout, rows, sources, split, sbin, out, rule)
    return SplitResult(out=out, counts=counts, class_counts=class_counts, n_in=n_in, left_out=dict(left_out))


def _write(
    paths: Sequence[Path],
    layout: dict[str, tuple[tuple[int, ...], str]],
    rows: np.ndarray,
    sources: Sequence[tuple[int, int]],
    split: np.ndarray,
    sbin: np.ndarray,
    out: Path,
    rule: dict[str, Any],
) -> None:
    n = rows.size
    src = np.array([sources[i] for i in rows], dtype=np.int64).reshape(-1, 2)
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as dst:
        with open_dataset(paths[0]) as h0:
            for k, v in h0.attrs.items():
                dst.attrs[k] = v
            dtypes = {name: h0[name].dtype for name in layout}
        for name in layout:  # widest string type over the inputs
            if dtypes[name].kind == "S":
                for p in paths[1:]:
                    with open_dataset(p) as h:
                        dtypes[name] = max(dtypes[name], h[name].dtype, key=lambda d: d.itemsize)
        for name, (shape, _) in layout.items():
            chunks = (1, *shape) if shape else (min(max(n, 1), 4096),)
            dst.create_dataset(name, shape=(n, *shape), dtype=dtypes[name], chunks=chunks)
        start = 0
        for f, path in enumerate(paths):
            mine = src[src[:, 0] == f, 1]
            with open_dataset(path) as h:
                for lo in range(0, mine.size, _BLOCK):
                    idx = mine[lo : lo + _BLOCK]
                    for name in layout:
                        dst[name][start + lo : start + lo + idx.size] = h[name][idx]
            start += mine.size
        dst["split"][:] = split[rows]
        dst["snr_bin"][:] = sbin[rows]
        prov = provenance(rule, None)
        dst.attrs["provenance"] = json.dumps(prov)
        dst.attrs["config"] = json.dumps(rule)
        dst.attrs["split_rule"] = json.dumps(rule)
        dst.attrs["n_objects"] = n
        dst.attrs["kind"] = "split"
        dst.attrs["split_names"] = ",".join(SPLIT_NAMES)
        dst.attrs["seed"] = -1
