"""``drcnet predict --data`` and ``drcnet export --onnx``: load a model (torch or ONNX), predict, write.

* :func:`load_predictor` - a run folder, a shipped model's name or an ``.onnx`` file -> something
  :func:`drcnet.predict.predict_dataset` runs (a torch model, or an ONNX Runtime session).
* :func:`predict_table` - the prediction table (:data:`drcnet.predict.PRED_COLUMNS`) of a dataset file,
  with the engine (``torch`` / ``onnx``) and precision (``fp32`` / ``bf16``) chosen by the caller.
* :func:`export_run_onnx` - a run folder's model -> ``.onnx``.

Unlike :mod:`drcnet.workflows.evaluate` this module does not import the metrics (scipy): ``drcnet
predict`` starts faster.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

ENGINES = ("torch", "onnx")
"""Inference engines: PyTorch (default) or ONNX Runtime (the model exported on the fly, or an ``.onnx`` file)."""


def resolve_run(run: str | Path | None) -> Path:
    """A run folder from a path, a shipped model's name (``drcnet models``), or ``None`` (the default model)."""
    from drcnet.models.run_folder import DEFAULT_MODEL, pretrained_dir

    if run is None:
        return pretrained_dir(DEFAULT_MODEL)
    p = Path(run)
    if p.exists():
        return p
    if p.name == str(run) and "/" not in str(run):
        try:
            return pretrained_dir(str(run))
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{run}: neither a run folder nor a shipped model ({err})") from err
    raise FileNotFoundError(f"{run}: no such run folder")


def load_predictor(run: str | Path | None, which: str = "best", fast: bool = True, engine: str = "torch",
                   workdir: str | Path | None = None) -> Any:
    """The model to predict with.

    Parameters
    ----------
    run
        Run folder, shipped model name, ``.onnx`` file (ONNX Runtime), or ``None`` (the default model).
    which
        ``best`` or ``last`` weights (run folders).
    fast
        Torch CPU fast path.
    engine
        ``torch``, or ``onnx``: a run folder's model is exported to ONNX (into ``workdir``, default a
        temporary folder) and run with ONNX Runtime.
    workdir
        Where an on-the-fly export is written.

    Returns
    -------
    torch.nn.Module or drcnet.models.onnx_export.OnnxModel
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if run is not None and str(run).endswith(".onnx"):
        from drcnet.models.onnx_export import OnnxModel

        if engine != "onnx":
            raise ValueError(f"{run} is an ONNX file: use --engine onnx")
        return OnnxModel(run)
    from drcnet.models.run_folder import load_run

    model, _ = load_run(resolve_run(run), which=which, fast=fast)
    if engine == "torch":
        return model
    from drcnet.models.onnx_export import OnnxModel, export_onnx

    folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="drcnet-onnx-"))
    path = folder / "model.onnx"
    export_onnx(model, path)
    return OnnxModel(path)


def predict_table(run: str | Path | None, data: str | Path, out: str | Path, split: str | None = None,
                  which: str = "best", batch_size: int | None = None, workers: int = 1, fast: bool = True,
                  precision: str = "fp32", engine: str = "torch", on_unsupported: str = "fallback") -> Path:
    """Write the prediction table (:data:`drcnet.predict.PRED_COLUMNS`) of ``split`` (``None``: all) of ``data``.

    Parameters
    ----------
    run
        See :func:`load_predictor`.
    data
        Dataset HDF5 file.
    out
        CSV file to write (atomically).
    batch_size
        Objects per forward pass (``None``: :data:`drcnet.predict.DEFAULT_BATCH`).
    workers
        ``0``: read in the calling thread; ``>= 1``: read the next batch in a background thread.
    precision
        ``fp32`` or ``bf16`` (torch engine only).
    on_unsupported
        bf16 on hardware without it: ``fallback`` (warn, fp32), ``error`` or ``emulate``
        (:func:`drcnet.predict.resolve_precision`).

    Probabilities are calibrated with the run folder's ``calibration.json`` when it has one (``drcnet
    calibrate``; an ``.onnx`` file carries none). Objects whose input holds NaN/inf pixels get no class
    (``bad_input`` 1) and a ``UserWarning`` says how many.
    """
    from drcnet.calibration import load_calibration
    from drcnet.models.fastpath import configure_cpu
    from drcnet.predict import DEFAULT_BATCH, predict_dataset, predictions_csv, resolve_precision
    from drcnet.provenance import write_text_atomic

    if engine == "onnx" and precision != "fp32":
        raise ValueError("--precision bf16 is for the torch engine; ONNX runs the exported fp32 model")
    if fast or engine == "onnx":
        configure_cpu()
    precision = resolve_precision(precision, "cpu", on_unsupported) if engine == "torch" else "fp32"
    with tempfile.TemporaryDirectory(prefix="drcnet-onnx-") as tmp:
        model = load_predictor(run, which=which, fast=fast, engine=engine, workdir=tmp)
        pred = predict_dataset(model, data, split, batch_size=batch_size or DEFAULT_BATCH, workers=workers,
                               precision=precision)
    n_bad = int((~pred["valid"]).sum())
    if n_bad:
        warnings.warn(f"{data}: {n_bad} of {len(pred['valid'])} objects have NaN/inf pixels in their input and are "
                      "not classified (bad_input = 1 in the table)", stacklevel=2)
    onnx_file = run is not None and str(run).endswith(".onnx")
    calibration = None if onnx_file else load_calibration(resolve_run(run))
    return write_text_atomic(out, predictions_csv(pred, calibration))


def export_run_onnx(run: str | Path | None, out: str | Path, which: str = "best") -> dict[str, Any]:
    """Export a run folder's (or shipped model's) model to ``out`` (``.onnx``); returns the stored metadata.

    Raises
    ------
    ValueError
        ``out`` does not end in ``.onnx``.
    """
    from drcnet.models.onnx_export import export_onnx
    from drcnet.models.run_folder import load_run

    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"--out {out}: the ONNX file name must end in .onnx")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out {out}: folder {out.parent} does not exist")
    model, info = load_run(resolve_run(run), which=which, fast=False)
    meta = export_onnx(model, out)
    meta["run"] = str(info.run_dir)
    return meta
