# Over 400 lines on purpose: the one Predictor: loading (torch/ONNX, any run) and every input kind share its state.
"""One predictor: a run folder or shipped model (torch or ONNX Runtime) on any input.

* :class:`Predictor` - :meth:`Predictor.load` a run folder, a shipped model's name (``drcnet models``),
  ``None`` (the default model) or an ``.onnx`` file; then predict on arrays held in memory
  (:meth:`~Predictor.predict_arrays`, :meth:`~Predictor.predict_proba`), on a dataset file
  (:meth:`~Predictor.predict_file`), or, called as ``predictor(stripes, flux1d, sky1d)``, on the reduced
  stripes of an exposure (what :mod:`drcnet.workflows.classify_exposure` calls).
* :func:`predict_table` - ``drcnet predict --data``: the prediction table of a dataset file, written
  by :func:`drcnet.inference.table.write_catalogue`.
* :func:`export_run_onnx` - ``drcnet export --onnx``: a run's model -> ``.onnx``.

The run folder is found by :func:`drcnet.models.run_folder.resolve_run`, the package's one resolver.
This module does not import the metrics (scipy), so ``drcnet predict`` starts fast.
"""

from __future__ import annotations

import tempfile
import warnings
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from drcnet.data.normalize import is_hybrid

ENGINES = ("torch", "onnx")
"""Inference engines: PyTorch (default) or ONNX Runtime (the model exported on the fly, or an ``.onnx`` file)."""


def _is_onnx_file(run: str | Path | None) -> bool:
    return run is not None and str(run).endswith(".onnx")


def load_model(
    run: str | Path | None,
    which: str = "best",
    fast: bool = True,
    engine: str = "torch",
    workdir: str | Path | None = None,
) -> Any:
    """The network of a run (or an ONNX Runtime session), without calibration.

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
        temporary folder removed once the session holds the model) and run with ONNX Runtime.
    workdir
        Where an on-the-fly export is written.

    Returns
    -------
    torch.nn.Module or drcnet.models.onnx_export.OnnxModel

    Raises
    ------
    ValueError
        Unknown engine; an ``.onnx`` file with ``engine="torch"``.
    FileNotFoundError
        No such run folder or shipped model.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if _is_onnx_file(run):
        from drcnet.models.onnx_export import OnnxModel

        if engine != "onnx":
            raise ValueError(f"{run} is an ONNX file: use --engine onnx")
        return OnnxModel(run)  # type: ignore[arg-type]
    from drcnet.models.run_folder import load_run, resolve_run

    model, _ = load_run(resolve_run(run), which=which, fast=fast)
    if engine == "torch":
        return model
    from drcnet.models.onnx_export import OnnxModel, export_onnx

    if workdir is not None:
        path = Path(workdir) / "model.onnx"
        export_onnx(model, path)
        return OnnxModel(path)
    with tempfile.TemporaryDirectory(prefix="drcnet-onnx-") as tmp:  # the session keeps the model in memory
        export_onnx(model, Path(tmp) / "model.onnx")
        return OnnxModel(Path(tmp) / "model.onnx")


class Predictor:
    """A trained model ready to classify: its network (torch or ONNX Runtime), calibration and run facts.

    Parameters
    ----------
    model
        A torch model from :mod:`drcnet.models` or an :class:`~drcnet.models.onnx_export.OnnxModel`.
    calibration
        The run's :class:`~drcnet.calibration.Calibration` (None: plain softmax, no set, no OOD flag).
    info
        Facts about the run for provenance (``run_dir``, ``model``, ``input_kind``, ``calibrated``).
    label_convention
        ``"mk"`` or ``"lamost"``: the labels the model was trained on.
    batch_size
        Objects per forward pass for arrays and exposures.
    precision
        ``"fp32"``, or ``"bf16"`` (torch autocast; see :func:`drcnet.inference.engine.resolve_precision`).

    Examples
    --------
    >>> import drcnet
    >>> p = drcnet.load_model("drcnet-survey")          # doctest: +SKIP
    >>> p.predict_proba(stripes).shape                  # doctest: +SKIP
    (10, 4)
    """

    def __init__(
        self,
        model: Any,
        calibration: Any = None,
        info: dict[str, Any] | None = None,
        label_convention: str = "mk",
        batch_size: int = 64,
        precision: str = "fp32",
    ) -> None:
        _check_batch_size(batch_size)
        self.model, self.calibration = model, calibration
        self.info: dict[str, Any] = dict(info or {})
        self.label_convention, self.batch_size, self.precision = label_convention, batch_size, precision

    @classmethod
    def load(
        cls,
        run: str | Path | None = None,
        which: str = "best",
        engine: str = "torch",
        fast: bool = True,
        batch_size: int = 64,
        precision: str = "fp32",
        workdir: str | Path | None = None,
    ) -> Predictor:
        """Load a run folder, a shipped model's name, ``None`` (the default model) or an ``.onnx`` file.

        Parameters are those of :func:`load_model`, and ``batch_size``/``precision`` of the class. The
        CPU fast path is configured (:func:`drcnet.models.fastpath.configure_cpu`) when ``fast`` or for ONNX.
        The calibration is the run folder's ``calibration.json`` (an ``.onnx`` file carries none).

        Raises
        ------
        FileNotFoundError
            No such run folder, shipped model or ONNX file.
        TypeError
            ``run`` is neither a str, a path nor None.
        ValueError
            Unknown engine or weights; bf16 with the ONNX engine; ``batch_size`` below 1; an empty name.
        """
        from drcnet.calibration import load_calibration
        from drcnet.models.fastpath import configure_cpu
        from drcnet.models.run_folder import read_run, resolve_run, run_label_convention

        if run is not None and not isinstance(run, (str, PathLike)):
            raise TypeError(
                f"the model must be a shipped model's name (`drcnet models`), a run folder or an .onnx file "
                f"(str or Path), or None for the default model; got {type(run).__name__} {run!r}"
            )
        if isinstance(run, str) and not run.strip():
            raise ValueError(
                "the model name is empty: give a shipped model's name (`drcnet models`), a run folder or an "
                ".onnx file, or None for the default model"
            )
        if engine == "onnx" and precision != "fp32":
            raise ValueError("--precision bf16 is for the torch engine; ONNX runs the exported fp32 model")
        if fast or engine == "onnx":
            configure_cpu()
        model = load_model(run, which=which, fast=fast, engine=engine, workdir=workdir)
        if _is_onnx_file(run):
            meta = getattr(model, "meta", {})
            info = {
                "run_dir": str(run),
                "model": meta.get("model"),
                "input_kind": model.input_kind,
                "calibrated": False,
                "engine": "onnx",
            }
            return cls(model, None, info, "mk", batch_size, precision)
        run_dir = resolve_run(run)
        calibration = load_calibration(run_dir)
        run_info = read_run(run_dir)
        info = {
            "run_dir": str(run_dir),
            "model": run_info.model_name,
            "input_kind": run_info.input_kind,
            "calibrated": calibration is not None,
        }
        if engine != "torch":
            info["engine"] = engine
        return cls(model, calibration, info, run_label_convention(run_dir, run_info.meta), batch_size, precision)

    @property
    def input_kind(self) -> str:
        """``"stripes"`` (``(N, 2, 11, 3000)`` raw stripes), ``"spectra1d"`` (flux1d + sky1d), ``"hybrid"`` (all
        three) or ``"hybrid_optimal"`` (all three, ``flux1d`` the optimal extraction)."""
        return str(getattr(self.model, "input_kind", "stripes"))

    @property
    def run_dir(self) -> str | None:
        """The run folder (or ``.onnx`` file) the model came from; None for a model given directly."""
        return self.info.get("run_dir")

    def predict_arrays(self, stripes: Any = None, flux1d: Any = None, sky1d: Any = None) -> dict[str, np.ndarray]:
        """Every model output for raw inputs held in memory (:func:`drcnet.inference.engine.predict_arrays_all`).

        Parameters
        ----------
        stripes
            ``(N, 2, 11, 3000)`` (or one ``(2, 11, 3000)``) raw stripes, for 2D and hybrid models.
        flux1d, sky1d
            ``(N, 2, 3000)`` 1D spectra and sky, for 1D and hybrid models: the boxcar (aperture) sum, or for a
            ``hybrid_optimal`` model (:attr:`input_kind`; the default model) the optimal extraction.

        Returns
        -------
        dict of numpy.ndarray
            ``"logits"`` ``(N, C)`` and, for a model with heads, ``"subclass_logits"``, ``"params_mean"`` ...;
            NaN rows for inputs with NaN/inf pixels.

        Raises
        ------
        ValueError
            The array the model needs is missing, is not an array of real numbers (complex, bool, strings,
            ragged lists), or its shape is not the one above.
        """
        from drcnet.inference.engine import predict_arrays_all

        stripes, flux1d, sky1d = _checked_arrays(self.input_kind, stripes, flux1d, sky1d)
        return predict_arrays_all(
            self.model,
            stripes=stripes,
            flux1d=flux1d,
            sky1d=sky1d,
            batch_size=self.batch_size,
            precision=self.precision,
        )

    def predict_proba(self, stripes: Any = None, flux1d: Any = None, sky1d: Any = None) -> np.ndarray:
        """``(N, C)`` float32 softmax probabilities (uncalibrated) in the model's class order (F, G, K[, other]).

        Raises
        ------
        ValueError
            As :meth:`predict_arrays`.
        """
        from drcnet.inference.engine import probabilities

        logits = self.predict_arrays(stripes, flux1d, sky1d)["logits"]
        return probabilities(logits[None])[0] if logits.ndim == 1 else probabilities(logits)

    def catalogue(self, stripes: Any = None, flux1d: Any = None, sky1d: Any = None, snr_r: Any = None) -> Any:
        """The catalogue columns (:data:`drcnet.catalogue.CATALOGUE_COLUMNS`) of arrays, as an astropy Table.

        Parameters
        ----------
        stripes, flux1d, sky1d
            As :meth:`predict_arrays`; one object gives a one-row table.
        snr_r
            ``(N,)`` S/N_r of each object (or one value for all), for the per-bin calibration (default:
            NaN, the overall bin).

        Raises
        ------
        ValueError
            As :meth:`predict_arrays`; ``snr_r`` is not numbers, or not one per object.
        """
        from astropy.table import Table

        from drcnet.catalogue import CATALOGUE_COLUMNS, catalogue_columns

        outputs = self.predict_arrays(stripes, flux1d, sky1d)
        if outputs["logits"].ndim == 1:  # one object, (2, 11, 3000): a one-row table
            outputs = {k: v[None] for k, v in outputs.items()}
        n = len(outputs["logits"])
        snr = np.full(n, np.nan) if snr_r is None else _checked_snr(snr_r, n)
        cols = catalogue_columns(outputs, snr, self.calibration)
        data = {
            c: (np.asarray(cols[c]).astype(str) if np.asarray(cols[c]).dtype == object else np.asarray(cols[c]))
            for c in CATALOGUE_COLUMNS
        }
        return Table(data)

    def predict_file(
        self,
        data: str | Path,
        split: str | None = None,
        batch_size: int | None = None,
        workers: int = 1,
        astropy: bool = True,
    ) -> Any:
        """The ``drcnet predict`` table (:data:`drcnet.inference.table.PRED_COLUMNS`) of a dataset file.

        Parameters
        ----------
        data
            Dataset HDF5 file (``drcnet simulate`` / ``frames reduce``).
        split
            Split name, or ``None`` for every object.
        batch_size
            Objects per forward pass (default :data:`drcnet.inference.engine.DEFAULT_BATCH`).
        workers
            ``0``: read in the calling thread; ``>= 1``: read the next batch in a background thread.
        astropy
            Return an astropy Table (default), or the plain :class:`drcnet.inference.table.Columns`
            (``drcnet predict``: no astropy import).

        Returns
        -------
        astropy.table.Table
            One row per object. Objects whose input holds NaN/inf pixels get no class (``bad_input`` 1)
            and a ``UserWarning`` says how many.

        Raises
        ------
        IsADirectoryError
            ``data`` is a folder (raw frames go to :func:`drcnet.api.classify_exposure`).
        FileNotFoundError, OSError
            ``data`` does not exist or is not an HDF5 file (:class:`drcnet.data.torch_dataset.SpectraDataset`).
        """
        from drcnet.inference.engine import DEFAULT_BATCH, predict_dataset
        from drcnet.inference.table import prediction_columns

        if batch_size is not None:
            _check_batch_size(batch_size)
        if Path(data).is_dir():
            raise IsADirectoryError(
                f"{data}: is a folder, not a dataset HDF5 file; for a folder of raw frames use "
                "drcnet.classify_exposure (command line: drcnet predict --exposure)"
            )
        pred = predict_dataset(
            self.model, data, split, batch_size=batch_size or DEFAULT_BATCH, workers=workers, precision=self.precision
        )
        n_bad = int((~pred["valid"]).sum())
        if n_bad:
            warnings.warn(
                f"{data}: {n_bad} of {len(pred['valid'])} objects have NaN/inf pixels in their input and "
                "are not classified (bad_input = 1 in the table)",
                stacklevel=2,
            )
        table = prediction_columns(pred, self.calibration)
        return table.to_astropy() if astropy else table

    def __call__(self, stripes: np.ndarray, flux1d: np.ndarray, sky1d: np.ndarray) -> dict[str, np.ndarray]:
        """Every output for one spectrograph's object fibers (:data:`drcnet.workflows.classify_exposure.Predictor`)."""
        from drcnet.inference.engine import predict_arrays_all

        if self.input_kind == "stripes":
            return predict_arrays_all(
                self.model, stripes=stripes.astype(np.float32), batch_size=self.batch_size, precision=self.precision
            )
        return predict_arrays_all(
            self.model,
            stripes=stripes.astype(np.float32) if is_hybrid(self.input_kind) else None,
            flux1d=flux1d,
            sky1d=sky1d,
            batch_size=self.batch_size,
            precision=self.precision,
        )


def _check_batch_size(batch_size: Any) -> None:
    """Refuse a batch size that is not a whole number >= 1."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number of objects per forward pass, >= 1; got {batch_size!r}")


def _real_array(name: str, a: Any, shape: str) -> np.ndarray:
    """``a`` as a numpy array of real numbers (float or integer), or a ValueError naming ``name``."""
    if type(a).__module__.startswith("torch"):
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as err:  # a ragged list
        raise ValueError(f"{name} must be one array of shape {shape}, not a ragged list ({err})") from None
    if arr.dtype.kind not in "fiu":
        raise ValueError(
            f"{name} must hold real numbers (float or integer ADU), got dtype {arr.dtype}; pass a float32 array"
        )
    return arr


def _kind_word(kind: str) -> str:
    """``"hybrid "`` for the hybrid input kind (error messages), else nothing."""
    return "hybrid " if is_hybrid(kind) else ""


def _checked_arrays(kind: str, stripes: Any, flux1d: Any, sky1d: Any) -> tuple[Any, Any, Any]:
    """The arrays as numpy arrays of real numbers; arrays of the wrong shape or kind are refused with the
    shape expected (one object or a stack of them). A hybrid model needs both the stripes and the 1D
    spectra of the same objects."""
    if kind == "stripes" or is_hybrid(kind):
        if stripes is None:
            raise ValueError(f"this {_kind_word(kind)}model takes stripes: pass stripes=(N, 2, 11, 3000) raw stripes")
        stripes = _real_array("stripes", stripes, "(N, 2, 11, 3000)")
        if stripes.shape[-3:] != (2, 11, 3000) or stripes.ndim not in (3, 4):
            raise ValueError(
                f"stripes must have shape (N, 2, 11, 3000) or (2, 11, 3000) (arms, rows across the "
                f"trace, pixels), got {stripes.shape}"
            )
        if kind == "stripes":
            return stripes, flux1d, sky1d
    if flux1d is None:
        if is_hybrid(kind):
            extraction = " (the optimal extraction, flux1d_opt)" if kind == "hybrid_optimal" else ""
            raise ValueError(
                f"this hybrid model takes 1D spectra too: pass flux1d=(N, 2, 3000){extraction} and sky1d=(N, 2, 3000) of the "
                "same objects (a dataset file and drcnet.classify_exposure have them), or classify stripes alone "
                "with the 2D model: drcnet.load_model('drcnet-survey')"
            )
        raise ValueError("this model takes 1D spectra: pass flux1d=(N, 2, 3000) and sky1d=(N, 2, 3000)")
    arrays = []
    for name, a in (("flux1d", flux1d), ("sky1d", sky1d)):
        if a is not None:
            a = _real_array(name, a, "(N, 2, 3000)")
            if a.shape[-2:] != (2, 3000) or a.ndim not in (2, 3):
                raise ValueError(f"{name} must have shape (N, 2, 3000) or (2, 3000) (arms, pixels), got {a.shape}")
        arrays.append(a)
    if arrays[1] is not None and arrays[1].shape != arrays[0].shape:
        raise ValueError(f"sky1d must have the shape of flux1d {arrays[0].shape}, got {arrays[1].shape}")
    if is_hybrid(kind) and arrays[0].shape[:-2] != stripes.shape[:-3]:
        raise ValueError(
            f"the stripes {stripes.shape} and flux1d {arrays[0].shape} must be of the same objects "
            "(one (2, 11, 3000) stripe pair per (2, 3000) spectrum)"
        )
    return stripes, arrays[0], arrays[1]


def _checked_snr(snr_r: Any, n: int) -> np.ndarray:
    """``snr_r`` as ``(n,)`` float64: one S/N_r per object, or one value for all."""
    try:
        snr = np.asarray(snr_r, dtype=np.float64)
    except (ValueError, TypeError):
        raise ValueError(f"snr_r must be numbers (the S/N_r of each object), got {snr_r!r:.80}") from None
    if snr.ndim == 0:
        return np.full(n, float(snr))
    if snr.shape != (n,):
        raise ValueError(f"snr_r must hold one S/N_r per object: shape ({n},), got {snr.shape}")
    return snr


def predict_table(
    run: str | Path | None,
    data: str | Path,
    out: str | Path,
    split: str | None = None,
    which: str = "best",
    batch_size: int | None = None,
    workers: int = 1,
    fast: bool = True,
    precision: str = "fp32",
    engine: str = "torch",
    on_unsupported: str = "fallback",
) -> Path:
    """Write the prediction table (:data:`drcnet.inference.table.PRED_COLUMNS`) of ``split`` of ``data``.

    Parameters
    ----------
    run
        Run folder, shipped model name, ``.onnx`` file or ``None`` (:meth:`Predictor.load`).
    data
        Dataset HDF5 file.
    out
        Table to write (atomically): ``.csv``, ``.parquet`` or ``.fits``
        (:func:`drcnet.inference.table.write_catalogue`); any other ending is written as CSV (with
        ``<out>.provenance.json`` beside it, as for ``.csv``).
    split
        Split name, or ``None`` for every object.
    batch_size
        Objects per forward pass (``None``: :data:`drcnet.inference.engine.DEFAULT_BATCH`).
    workers
        ``0``: read in the calling thread; ``>= 1``: read the next batch in a background thread.
    precision
        ``fp32`` or ``bf16`` (torch engine only).
    on_unsupported
        bf16 on hardware without it: ``fallback`` (warn, fp32), ``error`` or ``emulate``
        (:func:`drcnet.inference.engine.resolve_precision`).

    Probabilities are calibrated with the run folder's ``calibration.json`` when it has one.
    """
    from drcnet.inference.engine import resolve_precision
    from drcnet.inference.table import catalogue_format, write_catalogue, write_csv
    from drcnet.provenance import provenance

    if engine == "onnx" and precision != "fp32":
        raise ValueError("--precision bf16 is for the torch engine; ONNX runs the exported fp32 model")
    precision = resolve_precision(precision, "cpu", on_unsupported) if engine == "torch" else "fp32"
    predictor = Predictor.load(run, which=which, engine=engine, fast=fast, precision=precision)
    table = predictor.predict_file(data, split, batch_size=batch_size, workers=workers, astropy=False)
    prov = provenance(
        {
            "data": str(Path(data).resolve()),
            "split": split,
            "which": which,
            "engine": engine,
            "precision": precision,
            "run": predictor.info,
        }
    )
    try:
        catalogue_format(out)
    except ValueError:  # any other ending: the CSV table, as before, with its provenance beside it
        from drcnet.provenance import write_json_atomic

        path = write_csv(table, out)
        write_json_atomic(path.with_name(path.name + ".provenance.json"), prov)
        return path
    return write_catalogue(table, out, prov)


def export_run_onnx(run: str | Path | None, out: str | Path, which: str = "best") -> dict[str, Any]:
    """Export a run folder's (or shipped model's) model to ``out`` (``.onnx``); returns the stored metadata.

    Raises
    ------
    ValueError
        ``out`` does not end in ``.onnx``.
    FileNotFoundError
        The folder of ``out`` does not exist; no such run.
    """
    from drcnet.models.onnx_export import export_onnx
    from drcnet.models.run_folder import load_run, resolve_run

    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"--out {out}: the ONNX file name must end in .onnx")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out {out}: folder {out.parent} does not exist")
    model, info = load_run(resolve_run(run), which=which, fast=False)
    meta = export_onnx(model, out)
    meta["run"] = str(info.run_dir)
    return meta
