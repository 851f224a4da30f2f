"""PyTorch view of a dataset file (:mod:`drcnet.data.schema`), read lazily from disk.

:class:`SpectraDataset` keeps only the small per-object columns (label, split, S/N, object id) in
memory; stripes and 1D spectra are read object by object from the HDF5 file when asked for. The
file is opened on first access *in each process* (each DataLoader worker and each DDP rank opens
its own handle; a handle is never shared across ``fork``), so a paper-size file streams with flat
memory.

Each item is ``(x, y, index)``: ``x`` the normalised model input (:mod:`drcnet.data.normalize`),
``y`` the class label (int64, -1 unknown) and ``index`` the position within the dataset.

:meth:`SpectraDataset.read_batch` reads many objects at once instead (contiguous file rows as one
slice, float16 -> float32 once, one vectorised Z-score for the batch): what prediction uses
(:mod:`drcnet.data.batches`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from drcnet.data.normalize import RAW_ARRAYS, as_roles, hybrid_input, prepare_input, zscore_fast
from drcnet.data.schema import SPLIT_NAMES, decode, open_dataset, snr_bin

INPUT_KINDS = tuple(RAW_ARRAYS)


def split_names(h5: h5py.File) -> list[str]:
    """The file's split names (``split_names`` attribute, default train/val/test)."""
    raw = h5.attrs.get("split_names", ",".join(SPLIT_NAMES))
    if isinstance(raw, bytes):
        raw = raw.decode()
    return [s for s in str(raw).split(",") if s]


def no_split_message(path: str | Path, split: str) -> str:
    """The one-line error for ``--split`` on a dataset file that has no ``split`` dataset."""
    return (
        f"{path}: the file has no 'split' dataset (which object is train, val or test), so it has no {split!r} "
        "split; add one (an int8 'split' dataset, 0 train, 1 val, 2 test, one per object), or use the "
        "command on every object (`drcnet predict` without --split)"
    )


def catalogue_targets(h: h5py.File, label: np.ndarray) -> np.ndarray:
    """Targets of the catalogue heads for every object of an open dataset file.

    Returns
    -------
    numpy.ndarray
        ``(N, 5)`` float32: subclass index on :data:`~drcnet.conventions.SUBCLASSES` (-1 unknown), luminosity
        class index on :data:`~drcnet.conventions.LUM_CLASSES` (0 dwarf, 1 giant: log g below
        :data:`drcnet.library.labels.GIANT_LOGG`; -1 unknown), Teff (K), log g, [Fe/H] (NaN unknown).
        Objects that are not F/G/K (label -1 or ``other``) get every target unknown.
    """
    from drcnet.conventions import CLASSES, subclass_index
    from drcnet.library.labels import GIANT_LOGG

    n = len(label)
    out = np.full((n, 5), np.nan, dtype=np.float32)
    sub = decode(h["subclass"][:]) if "subclass" in h else [""] * n
    out[:, 0] = [subclass_index(s) for s in sub]
    for k, name in enumerate(("teff", "logg", "feh")):
        key = f"params/{name}"
        if key in h:
            out[:, 2 + k] = h[key][:].astype(np.float32)
    logg = out[:, 3]
    out[:, 1] = np.where(np.isfinite(logg), (logg < GIANT_LOGG).astype(np.float32), -1.0)
    fgk = (label >= 0) & (label < len(CLASSES))
    out[~fgk, :2] = -1.0
    out[~fgk, 2:] = np.nan
    return out


class MissingArrayError(KeyError):
    """A dataset file lacks an array the model's input is made from (:func:`check_arrays`); a ``KeyError``
    whose text is the message itself (no quotes around it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def check_arrays(path: str | Path, input_kind: str, h: h5py.File | None = None) -> None:
    """Refuse a dataset file that lacks an array input ``input_kind`` is made from (``h``: the file already
    open, else it is opened here).

    Raises
    ------
    MissingArrayError
        Naming the file, the missing arrays and what to do (for ``flux1d_opt``, the optimal extraction the
        ``hybrid_optimal`` default model reads: re-make the file, or classify the stripes alone).
    """
    if h is None:
        with open_dataset(path) as f:
            return check_arrays(path, input_kind, f)
    missing = [k for k in RAW_ARRAYS.get(input_kind, ()) if k not in h]
    if not missing:
        return
    hint = ""
    if "flux1d_opt" in missing:
        hint = (
            " (the optimal 1D extraction: drcnet simulate, simulate-population and frames reduce write it; "
            "files simulated by earlier drcnet versions lack it): re-make the file, or classify the stripes "
            f"alone with the 2D model: drcnet predict drcnet-survey --data {Path(path).name} --out TABLE"
        )
    raise MissingArrayError(f"{path} has no {', '.join(missing)}, needed for input kind {input_kind!r}{hint}")


class SpectraDataset(Dataset):
    """Objects of one dataset file (optionally one split) as model inputs.

    Parameters
    ----------
    path
        Dataset HDF5 file.
    input_kind
        ``"stripes"`` -> ``x`` is ``(2, 11, 3000)`` float32 Z-scored per stripe;
        ``"spectra1d"`` -> ``x`` is ``(1, 6000)`` float32 (per-arm Z-scored ``flux1d - sky1d``, concatenated);
        ``"hybrid"`` -> ``x`` is ``(2, 12, 3000)`` float32 (both: :func:`drcnet.data.normalize.hybrid_input`);
        ``"hybrid_optimal"`` -> the same with the optimal extraction ``flux1d_opt`` as the 1D spectrum.
    split
        Split name (``"train"``, ``"val"``, ``"test"``) or ``None`` for all objects.
    indices
        Explicit file rows (sorted); overrides ``split``.
    labelled_only
        Drop objects with label -1.
    with_validity
        Items are ``(x, y, i, valid)``: ``valid`` is False when the raw input holds a NaN or inf
        pixel (the normalisation sets those to 0, so the model's answer would be made up).
    with_targets
        Items are ``(x, y, i, t)`` with ``t`` the catalogue-head targets (:meth:`targets`), float32 ``(5,)``.
    """

    def __init__(
        self,
        path: str | Path,
        input_kind: str = "stripes",
        split: str | None = None,
        indices: np.ndarray | None = None,
        labelled_only: bool = False,
        with_validity: bool = False,
        with_targets: bool = False,
    ) -> None:
        if with_validity and with_targets:
            raise ValueError("with_validity and with_targets cannot both be set")
        if input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind must be one of {INPUT_KINDS}, got {input_kind!r}")
        self.path = str(path)
        self.input_kind = input_kind
        self.split = split
        self.with_validity = with_validity
        self.with_targets = with_targets
        with open_dataset(self.path) as h:
            n = h["label"].shape[0]
            label = h["label"][:].astype(np.int64)
            has_split = "split" in h
            split_col = h["split"][:] if has_split else np.zeros(n, np.int8)
            snr = h["snr_r"][:].astype(np.float32) if "snr_r" in h else np.full(n, np.nan, np.float32)
            sbin = h["snr_bin"][:].astype(np.int8) if "snr_bin" in h else snr_bin(snr)
            oid = decode(h["object_id"][:]) if "object_id" in h else [str(i) for i in range(n)]
            names = split_names(h)
            targets = catalogue_targets(h, label) if with_targets else None
            check_arrays(self.path, input_kind, h)
        if indices is not None:
            rows = np.asarray(indices, dtype=np.int64)
        elif split is not None:
            if not has_split:  # no silent "every object is train"
                raise ValueError(no_split_message(self.path, split))
            if split not in names:
                raise ValueError(f"{self.path}: no split named {split!r}; the file has {names}")
            rows = np.flatnonzero(split_col == names.index(split))
        else:
            rows = np.arange(n)
        if labelled_only:
            rows = rows[label[rows] >= 0]
        self.rows = rows
        self.labels = label[rows]
        self.snr_r = snr[rows]
        self.snr_bin = sbin[rows]
        self.object_id = [oid[i] for i in rows]
        self.targets = targets[rows] if targets is not None else None
        self._h5: h5py.File | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def _file(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            # a handle inherited through fork is not used: open our own
            self._h5 = open_dataset(self.path)
            self._pid = os.getpid()
        return self._h5

    def read_raw(self, i: int) -> dict[str, np.ndarray]:
        """The raw arrays of item ``i`` (:data:`drcnet.data.normalize.RAW_ARRAYS` of the input kind)."""
        h = self._file()
        row = int(self.rows[i])
        return {k: h[k][row] for k in RAW_ARRAYS[self.input_kind]}

    def read_batch(self, positions: np.ndarray | list[int] | slice) -> tuple[np.ndarray, np.ndarray]:
        """Normalised model inputs of many items at once.

        Contiguous file rows are read as one HDF5 slice (the file is chunked per object, so a slice is
        chunk-aligned); stripes are converted float16 -> float32 once and Z-scored as a batch with
        :func:`drcnet.data.normalize.zscore_fast` (equal to :meth:`__getitem__`'s
        :func:`~drcnet.data.normalize.zscore` within a few float32 ulps); 1D spectra use
        :func:`~drcnet.data.normalize.prepare_input` on the batch.

        Parameters
        ----------
        positions
            Item positions (``0 <= p < len(self)``), any order, or a slice of them.

        Returns
        -------
        x : numpy.ndarray
            ``(B, 2, 11, 3000)`` float32 (stripes), ``(B, 1, 6000)`` float32 (1D spectra) or
            ``(B, 2, 12, 3000)`` (hybrid), in the order of ``positions``.
        valid : numpy.ndarray
            ``(B,)`` bool, False where the raw input holds a NaN or inf pixel.
        """
        pos = np.arange(len(self))[positions] if isinstance(positions, slice) else np.asarray(positions, np.int64)
        rows = self.rows[pos]
        h = self._file()
        raw = as_roles({k: _read_rows(h[k], rows) for k in RAW_ARRAYS[self.input_kind]})
        valid = np.ones(len(rows), dtype=bool)
        z2d = None
        if "stripes" in raw:
            z2d, finite = zscore_fast(raw.pop("stripes"), (-2, -1), return_finite=True)
            valid &= finite.reshape(len(rows), -1).all(axis=1)
            if not raw:
                return z2d, valid
        for a in raw.values():
            valid &= np.isfinite(a.reshape(len(a), -1)).all(axis=1)
        z1d = prepare_input("spectra1d", **raw)
        return (z1d if z2d is None else hybrid_input(z2d, z1d)), valid

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        raw = self.read_raw(i)
        x = prepare_input(self.input_kind, **as_roles(raw))
        item = (torch.from_numpy(x), torch.tensor(self.labels[i], dtype=torch.int64), int(i))
        if self.with_validity:
            return (*item, all(bool(np.isfinite(a).all()) for a in raw.values()))
        if self.targets is not None:
            return (*item, torch.from_numpy(self.targets[i]))
        return item

    def __getitems__(self, indices: list[int]) -> list[tuple[Any, ...]]:
        """The items ``indices`` (what a ``DataLoader`` asks for one batch), read with :meth:`read_batch`.

        The same items as ``[self[i] for i in indices]`` (one HDF5 slice per run of consecutive rows and
        one vectorised Z-score instead of one read and one Z-score per object); the ``DataLoader``'s
        sampler, and so the order and the random state, are untouched.
        """
        x, valid = self.read_batch(list(indices))
        xt = torch.from_numpy(x)
        items: list[tuple[Any, ...]] = []
        for k, i in enumerate(indices):
            item = (xt[k], torch.tensor(self.labels[i], dtype=torch.int64), int(i))
            if self.with_validity:
                item = (*item, bool(valid[k]))
            elif self.targets is not None:
                item = (*item, torch.from_numpy(self.targets[i]))
            items.append(item)
        return items

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_h5"] = None
        state["_pid"] = None
        return state

    def close(self) -> None:
        """Close this process's file handle (it is reopened on next access)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None


def _read_rows(ds: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """``ds[rows]`` in the order of ``rows`` (any order, repeats allowed), one slice per run of consecutive rows."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), *ds.shape[1:]), dtype=ds.dtype)
    if not len(rows):
        return out
    order = np.argsort(rows, kind="stable")
    srt = rows[order]
    uniq, first = np.unique(srt, return_index=True)
    buf = (
        out
        if np.array_equal(order, np.arange(len(rows))) and len(uniq) == len(rows)
        else np.empty((len(uniq), *ds.shape[1:]), dtype=ds.dtype)
    )
    breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
    for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(uniq)]):
        ds.read_direct(buf, np.s_[int(uniq[a]) : int(uniq[b - 1]) + 1], np.s_[int(a) : int(b)])
    if buf is not out:
        # position of each requested row within the unique sorted rows
        out[:] = buf[np.searchsorted(uniq, rows)]
    return out
