"""Batched, chunk-aligned reading of a dataset file for inference.

:func:`iter_batches` walks a :class:`~drcnet.data.torch_dataset.SpectraDataset` in consecutive batches of
items and yields :class:`Batch` records with the normalised model input of the whole batch
(:meth:`~drcnet.data.torch_dataset.SpectraDataset.read_batch`: one HDF5 slice per run of consecutive file
rows, float16 -> float32 once, one vectorised Z-score). With ``prefetch`` the next batch is read in a
background thread while the caller runs the model on the current one (HDF5 reads and numpy release the
GIL for most of their time).

This replaces, for prediction, a ``torch.utils.data.DataLoader`` over single items, whose per-object
reads, per-object normalisation and inter-process transfer cost more than the model on a small CPU.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from drcnet.data.torch_dataset import SpectraDataset


@dataclass(frozen=True)
class Batch:
    """One batch of model inputs.

    Attributes
    ----------
    x
        ``(B, 2, 11, 3000)`` or ``(B, 1, 6000)`` float32 normalised model input.
    index
        ``(B,)`` int64 item positions within the dataset (not file rows).
    valid
        ``(B,)`` bool, False where the raw input holds a NaN or inf pixel.
    """

    x: np.ndarray
    index: np.ndarray
    valid: np.ndarray


def iter_batches(ds: SpectraDataset, batch_size: int = 256, prefetch: bool = True) -> Generator[Batch, None, None]:
    """Yield the items of ``ds`` in order, ``batch_size`` at a time (the last batch may be shorter).

    Parameters
    ----------
    ds
        The dataset (its file is opened in this process on first read).
    batch_size
        Items per batch (>= 1).
    prefetch
        Read the next batch in a background thread while the current one is being used.

    Yields
    ------
    Batch
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    starts = range(0, len(ds), batch_size)

    def read(start: int) -> Batch:
        idx = np.arange(start, min(start + batch_size, len(ds)), dtype=np.int64)
        x, valid = ds.read_batch(idx)
        return Batch(x=x, index=idx, valid=valid)

    if not prefetch or len(starts) < 2:
        for start in starts:
            yield read(start)
        return
    q: queue.Queue[Batch | BaseException | None] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def producer() -> None:
        try:
            for start in starts:
                if stop.is_set():
                    return
                item = read(start)
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)
            return
        q.put(None)

    ds._file()  # open the file in this thread first: one handle, shared with the reader thread
    t = threading.Thread(target=producer, name="drcnet-batch-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            t.join(timeout=0.05)
