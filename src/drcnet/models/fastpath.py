"""CPU speed settings shared by training, prediction and the benchmark.

What makes these networks fast on a small CPU (measured in ``benchmarks/bench_training.py``):

* channels-last 2D convolutions instead of ``Conv1d`` (oneDNN's fast layout), in-place ReLU and
  residual adds, max-pool without index tensors: the models' ``fast`` path;
* the glibc allocator told to keep freed memory (:func:`tune_allocator`): activations of 10-20 MB
  are otherwise returned to the kernel with ``munmap`` after every layer and page-faulted back in
  on the next allocation, which costs about as much as the convolutions themselves;
* ``torch.inference_mode`` for prediction.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_tuned = False


def tune_allocator(mmap_threshold: int = 1 << 30, trim_threshold: int = 1 << 31) -> bool:
    """Make glibc ``malloc`` serve large blocks from the heap and keep freed memory for reuse.

    Equivalent to ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` in the environment, but
    settable at run time. Process-wide; does nothing (returns ``False``) off glibc. The process keeps
    its peak heap instead of returning it to the system between batches; the peak is unchanged.
    """
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("DRCNET_NO_MALLOPT"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold))
        )
    except (OSError, AttributeError):
        return False
    _tuned = ok
    return ok


def configure_cpu(threads: int | None = None) -> dict[str, object]:
    """Apply the CPU speed settings: allocator tuning and the intra-op thread count.

    Parameters
    ----------
    threads
        Intra-op threads; ``None`` keeps torch's default (one per core).

    Returns
    -------
    dict
        What was set (for the run's provenance).
    """
    if threads:
        torch.set_num_threads(int(threads))
    return {
        "mallopt": tune_allocator(),
        "threads": torch.get_num_threads(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
    }


def set_fast(model: torch.nn.Module, fast: bool) -> torch.nn.Module:
    """Switch every sub-module that has a ``fast`` attribute (the models' fast path) on or off."""
    for m in model.modules():
        if hasattr(m, "fast"):
            m.fast = bool(fast)  # type: ignore[assignment]  # (torch types Module attributes as Tensor | Module)
    return model
