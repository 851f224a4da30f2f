"""The inference engine: every model output for in-memory arrays or a dataset file (torch or ONNX Runtime).

* :func:`predict_arrays` - probabilities for raw arrays held in memory (stripes or 1D spectra);
  whole-exposure classification reuses it.
* :func:`predict_arrays_all` - every model output (:meth:`~drcnet.models.SpectralModel.forward_all`) for
  raw arrays held in memory.
* :func:`predict_dataset` - probabilities (and every model output) for (a split of) a dataset file,
  streamed from disk in batches (:func:`drcnet.data.batches.iter_batches`).
* :func:`make_runner` - the inference engine behind them: the torch model in fp32 or under bf16
  autocast (:func:`resolve_precision` checks the hardware), or an ONNX Runtime session
  (:class:`drcnet.models.onnx_export.OnnxModel`).

The same normalisation as in training is applied (:func:`drcnet.data.normalize.prepare_input`; for
dataset files the same Z-score on whole batches, :meth:`drcnet.data.torch_dataset.SpectraDataset.read_batch`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from drcnet.calibration import softmax
from drcnet.data.batches import iter_batches
from drcnet.data.normalize import input_roles, prepare_input
from drcnet.data.torch_dataset import SpectraDataset

PRECISIONS = ("fp32", "bf16")
"""Inference precisions: ``fp32`` (default) or ``bf16`` (torch autocast; weights stay fp32)."""

DEFAULT_BATCH = 256
"""Objects per forward pass for inference (training batches are set by the training config)."""

Runner = Callable[[np.ndarray], dict[str, np.ndarray]]
"""An inference engine: normalised input ``(B, ...)`` float32 -> named float32 outputs ``(B, ...)``."""


def finite_rows(a: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: True where object ``i`` of ``a`` (shape ``(N, ...)``) has only finite values."""
    return np.isfinite(a).all(axis=tuple(range(1, a.ndim)))  # no reshape: also for N = 0


def _device_of(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _as_numpy(a: Any) -> np.ndarray | None:
    if a is None:
        return None
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _forward_all(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every output of ``model`` for a batch (``{"logits": model(x)}`` for a model without ``forward_all``)."""
    fwd = getattr(model, "forward_all", None)
    return fwd(x) if callable(fwd) else {"logits": model(x)}


def _store_np(outputs: dict[str, np.ndarray], batch: dict[str, np.ndarray], rows: Any, n: int) -> None:
    """Copy one batch of outputs (of a :data:`Runner`) into the ``(n, ...)`` float32 arrays of ``outputs``
    (made on first use, NaN)."""
    for name, a in batch.items():
        if name not in outputs:
            outputs[name] = np.full((n, *a.shape[1:]), np.nan, dtype=np.float32)
        outputs[name][rows] = a


def probabilities(logits: np.ndarray) -> np.ndarray:
    """``(N, C)`` float32 softmax of ``(N, C)`` logits (:func:`drcnet.calibration.softmax`); a row with a
    non-finite logit stays ``nan``."""
    return softmax(logits).astype(np.float32)


def bf16_support(device: torch.device | str = "cpu") -> tuple[bool, str]:
    """Whether ``device`` runs bfloat16 natively, and a sentence saying why (not).

    On a CPU oneDNN needs AVX512-BF16 or AMX (``torch.ops.mkldnn._is_mkldnn_bf16_supported``); without
    them torch emulates bf16, which is slower than fp32. On CUDA, ``torch.cuda.is_bf16_supported``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        ok = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        return ok, ("CUDA device supports bf16" if ok else "this CUDA device has no bf16 support")
    try:
        ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        ok = False
    cap = torch.backends.cpu.get_cpu_capability()
    if ok:
        return True, f"CPU supports bf16 in oneDNN (capability {cap})"
    return False, (
        f"this CPU has no native bf16 (no AVX512-BF16/AMX; torch reports capability {cap}): "
        "bf16 would be emulated and slower than fp32"
    )


def resolve_precision(precision: str, device: torch.device | str = "cpu", on_unsupported: str = "fallback") -> str:
    """The precision to run: ``precision`` itself, or ``fp32`` where bf16 is asked for but not supported.

    Parameters
    ----------
    precision
        ``"fp32"`` or ``"bf16"``.
    device
        Where the model runs.
    on_unsupported
        What to do when bf16 is asked for on hardware without it: ``"fallback"`` (warn, run fp32),
        ``"error"`` (raise :class:`RuntimeError` with the reason) or ``"emulate"`` (run bf16 anyway,
        slowly; for accuracy checks).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if on_unsupported not in ("fallback", "error", "emulate"):
        raise ValueError(f"on_unsupported must be fallback, error or emulate, got {on_unsupported!r}")
    if precision == "fp32" or on_unsupported == "emulate":
        return precision
    ok, why = bf16_support(device)
    if ok:
        return precision
    if on_unsupported == "error":
        raise RuntimeError(f"--precision bf16: {why}; use --precision fp32")
    warnings.warn(f"--precision bf16: {why}; running in fp32", stacklevel=2)
    return "fp32"


def make_runner(model: Any, precision: str = "fp32") -> Runner:
    """The inference engine for ``model``.

    Parameters
    ----------
    model
        A torch model from :mod:`drcnet.models`, or any object with a ``run(x) -> dict`` method taking
        a float32 numpy batch (e.g. :class:`drcnet.models.onnx_export.OnnxModel`).
    precision
        ``"fp32"``, or ``"bf16"`` for torch autocast to bfloat16 (use :func:`resolve_precision` first
        to check the hardware; ONNX models run in the precision they were exported in).

    Returns
    -------
    Runner
        ``x`` ``(B, ...)`` float32 numpy -> ``{name: (B, ...) float32 numpy}``, at least ``"logits"``
        (every output of ``forward_all`` where the model has it).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    run = getattr(model, "run", None)
    if not isinstance(model, torch.nn.Module) and callable(run):
        if precision != "fp32":
            raise ValueError("an ONNX model runs in the precision it was exported in: use precision='fp32'")
        return lambda x: {k: np.asarray(v, dtype=np.float32) for k, v in run(x).items()}
    device = _device_of(model)

    def runner(x: np.ndarray) -> dict[str, np.ndarray]:
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device, non_blocking=True)
        ctx = (
            torch.autocast(device_type=device.type, dtype=torch.bfloat16)
            if precision == "bf16"
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), ctx:
            out = _forward_all(model, xt)
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    return runner


def predict_arrays_all(
    model: Any,
    stripes: Any = None,
    flux1d: Any = None,
    sky1d: Any = None,
    batch_size: int = 64,
    precision: str = "fp32",
) -> dict[str, np.ndarray]:
    """Every model output for raw, un-normalised inputs held in memory.

    Parameters
    ----------
    model
        A model from :mod:`drcnet.models` (e.g. from :func:`drcnet.models.load_run`), or an
        :class:`~drcnet.models.onnx_export.OnnxModel`; its ``input_kind`` says which arrays it needs.
    stripes
        ``(N, 2, 11, 3000)`` (or one ``(2, 11, 3000)``) raw stripes, for 2D and hybrid models.
    flux1d, sky1d
        ``(N, 2, 3000)`` (or one ``(2, 3000)``) aperture spectra and sky, for 1D and hybrid models
        (``sky1d`` may be ``None`` for sky-subtracted spectra); for a ``hybrid_optimal`` model ``flux1d`` is
        the optimal extraction (``flux1d_opt`` of a dataset file).
    batch_size
        Objects per forward pass.
    precision
        ``"fp32"``, or ``"bf16"`` (torch autocast; check the hardware with :func:`resolve_precision`).

    Returns
    -------
    dict of numpy.ndarray
        Output name -> float32 ``(N, ...)`` array (``(...)`` for a single object): ``"logits"`` ``(N, C)``
        (C = 3 or 4) always, and for a model with catalogue heads ``"subclass_logits"`` ``(N, 24)``,
        ``"lum_logits"`` ``(N, 2)``, ``"params_mean"`` / ``"params_sigma"`` ``(N, 3)`` (Teff in K, log g
        and [Fe/H] in dex), ... (:meth:`~drcnet.models.SpectralModel.forward_all`). Every row of an object
        whose input holds a NaN or inf pixel is ``nan`` (no answer is made up for damaged data). No
        object (``N = 0``) gives ``(0, ...)`` arrays of the same names.

    Raises
    ------
    ValueError
        The array the model needs is not given.

    The same normalisation as in training is applied (:func:`drcnet.data.normalize.prepare_input`).
    """
    kind = getattr(model, "input_kind", "stripes")
    given = {"stripes": _as_numpy(stripes), "flux1d": _as_numpy(flux1d), "sky1d": _as_numpy(sky1d)}
    need = input_roles(kind)
    if any(given[k] is None for k in need if k != "sky1d"):
        shapes = {"stripes": "stripes=(N, 2, 11, 3000)", "flux1d": "flux1d=(N, 2, 3000) and sky1d"}
        raise ValueError(
            f"{type(model).__name__} takes {kind!r} input: pass {' and '.join(shapes[k] for k in need if k in shapes)}"
        )
    arrays: dict[str, np.ndarray] = {k: a for k in need if (a := given[k]) is not None}
    main = arrays[need[0]]
    single = main.ndim == (3 if need[0] == "stripes" else 2)
    if single:
        arrays = {k: a[None] for k, a in arrays.items()}
        main = arrays[need[0]]
    is_torch = isinstance(model, torch.nn.Module)
    was_training = model.training if is_torch else False
    if is_torch:
        model.eval()
    out: dict[str, np.ndarray] = {}
    try:
        runner = make_runner(model, precision)
        if len(main) == 0:  # no object: the outputs of one blank object, cut to (0, ...)
            blank = {k: np.zeros((1, *a.shape[1:]), dtype=np.float32) for k, a in arrays.items()}
            out = {k: v[:0] for k, v in runner(prepare_input(kind, **blank)).items()}
        for start in range(0, len(main), batch_size):
            sl = slice(start, start + batch_size)
            _store_np(out, runner(prepare_input(kind, **{k: a[sl] for k, a in arrays.items()})), sl, len(main))
    finally:
        if is_torch:
            model.train(was_training)
    bad = np.zeros(len(main), dtype=bool)
    for a in arrays.values():
        bad |= ~finite_rows(a)
    for a in out.values():
        a[bad] = np.nan
    return {k: v[0] for k, v in out.items()} if single else out


def predict_arrays(
    model: Any,
    stripes: Any = None,
    flux1d: Any = None,
    sky1d: Any = None,
    batch_size: int = 64,
    precision: str = "fp32",
) -> np.ndarray:
    """Class probabilities for raw, un-normalised inputs held in memory.

    Parameters are those of :func:`predict_arrays_all`.

    Returns
    -------
    numpy.ndarray
        ``(N, C)`` (or ``(C,)`` for one object) float32 softmax probabilities in the model's class order
        (:func:`drcnet.conventions.class_names`: F, G, K and, for a four-class model, ``other``); all
        ``nan`` for an object whose input holds a NaN or inf pixel.
    """
    logits = predict_arrays_all(
        model, stripes=stripes, flux1d=flux1d, sky1d=sky1d, batch_size=batch_size, precision=precision
    )["logits"]
    return probabilities(logits[None])[0] if logits.ndim == 1 else probabilities(logits)


def predict_dataset(
    model: Any,
    data: str | Path,
    split: str | None = None,
    batch_size: int = DEFAULT_BATCH,
    workers: int = 1,
    progress: bool = False,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Probabilities and every model output for each object of ``split`` (``None``: all) of a dataset file.

    The file is read in batches of consecutive objects (:func:`drcnet.data.batches.iter_batches`: one
    HDF5 slice per run of file rows, one vectorised Z-score per batch), the next batch read in a
    background thread while the model runs on the current one.

    Parameters
    ----------
    model
        A torch model from :mod:`drcnet.models` or an :class:`~drcnet.models.onnx_export.OnnxModel`.
    data
        Dataset HDF5 file.
    split
        Split name, or ``None`` for all objects.
    batch_size
        Objects per forward pass (default :data:`DEFAULT_BATCH`).
    workers
        ``0``: read each batch in the calling thread; ``>= 1``: read ahead in one background thread.
    progress
        Show a progress bar.
    precision
        ``"fp32"`` or ``"bf16"`` (torch autocast; check the hardware with :func:`resolve_precision` first).

    Returns
    -------
    dict
        ``object_id`` (list), ``rows`` (index of each object in the file), ``label`` (-1 unknown, 3
        ``other``), ``snr_r``, ``snr_bin``, ``prob`` ``(N, C)`` (C = 3 or 4, the model's classes), ``pred``
        and ``valid`` (False where the input holds NaN/inf pixels: ``prob`` is ``nan`` and ``pred`` -1
        there), and ``outputs``: every model output as in :func:`predict_arrays_all` (name -> float32
        ``(N, ...)``, ``nan`` rows for invalid input).
    """
    from tqdm.auto import tqdm

    kind = getattr(model, "input_kind", "stripes")
    ds = SpectraDataset(data, kind, split, with_validity=True)
    if isinstance(model, torch.nn.Module):
        model.eval()
    runner = make_runner(model, precision)
    outputs: dict[str, np.ndarray] = {}
    valid = np.ones(len(ds), dtype=bool)
    batches = iter_batches(ds, batch_size=batch_size, prefetch=workers > 0)
    try:
        with tqdm(total=len(ds), desc="predict", disable=not progress, leave=False) as bar:
            for b in batches:
                _store_np(outputs, runner(b.x), b.index, len(ds))
                valid[b.index] = b.valid
                bar.update(len(b.index))
    finally:
        batches.close()  # stops the reader thread before the file is closed
        ds.close()
    if "logits" not in outputs:  # no object: an empty (0, C) answer
        config = getattr(model, "config", None) or getattr(model, "meta", {}).get("config", {})
        n_classes = int(config.get("n_classes", 3) if isinstance(config, dict) else getattr(config, "n_classes", 3))
        outputs["logits"] = np.zeros((0, n_classes), dtype=np.float32)
    for a in outputs.values():
        a[~valid] = np.nan
    prob = probabilities(outputs["logits"])
    pred = np.where(valid, np.nan_to_num(prob).argmax(axis=1), -1) if len(ds) else np.zeros(0, np.int64)
    return {
        "object_id": ds.object_id,
        "rows": np.asarray(ds.rows, dtype=np.int64),
        "label": ds.labels.astype(np.int64),
        "snr_r": ds.snr_r,
        "snr_bin": ds.snr_bin.astype(np.int64),
        "prob": prob,
        "pred": pred,
        "valid": valid,
        "outputs": outputs,
    }
