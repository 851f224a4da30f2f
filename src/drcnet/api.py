"""The public Python API: what ``import drcnet`` offers a notebook user.

>>> import drcnet
>>> model = drcnet.load_model("drcnet-survey")                      # doctest: +SKIP
>>> table = model.predict_file("my.h5")                             # doctest: +SKIP
>>> catalogue = drcnet.classify_exposure("exposure/")               # doctest: +SKIP

Every name is reached lazily from :mod:`drcnet` (``drcnet.load_model`` ...), so ``import drcnet`` stays
light; the first use imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drcnet.inference.predictor import Predictor

__all__ = ["Predictor", "classify_exposure", "load_model", "predict", "predict_file"]


def load_model(
    name_or_run: str | Path | None = None, engine: str = "torch", which: str = "best", batch_size: int = 64
) -> Predictor:
    """A trained model ready to predict: a shipped model's name, a run folder, an ``.onnx`` file or ``None``.

    Parameters
    ----------
    name_or_run
        ``"drcnet-hybrid"`` (the default, also for ``None``), another shipped model (``drcnet models``), a
        run folder from ``drcnet train``, or an ``.onnx`` file from ``drcnet export --onnx``.
    engine
        ``"torch"`` or ``"onnx"`` (ONNX Runtime; the model is exported on the fly).
    which
        ``"best"`` or ``"last"`` weights of a run folder.
    batch_size
        Objects per forward pass on arrays and exposures.

    Returns
    -------
    Predictor
        :class:`drcnet.inference.predictor.Predictor`: ``predict_proba``, ``catalogue``, ``predict_file``.

    Raises
    ------
    FileNotFoundError
        Neither a run folder nor a shipped model (the message lists the shipped ones).
    """
    return Predictor.load(
        name_or_run,
        which=which,
        engine=engine if not str(name_or_run).endswith(".onnx") else "onnx",
        batch_size=batch_size,
    )


def _as_predictor(model: Predictor | str | Path | None) -> Predictor:
    return model if isinstance(model, Predictor) else load_model(model)


def predict(
    stripes: Any = None,
    flux1d: Any = None,
    sky1d: Any = None,
    model: Predictor | str | Path | None = None,
    snr_r: Any = None,
) -> Any:
    """The catalogue columns (``pred``, ``prob_F`` ... ``ood``) of raw arrays, one row per object.

    Parameters
    ----------
    stripes
        ``(N, 2, 11, 3000)`` raw 2D stripes (blue, red arm; 11 rows across the trace; 3000 pixels), for
        DRC-Net/FFCNN and hybrid models.
    flux1d, sky1d
        ``(N, 2, 3000)`` 1D spectra and the sky under the same aperture (ADU), for RC-Net and hybrid models:
        the boxcar (aperture) sum for RC-Net and ``hybrid``, the optimal extraction (a dataset file's
        ``flux1d_opt``) for ``hybrid_optimal``, the default model (``Predictor.input_kind`` says which).
    model
        A :class:`Predictor`, or what :func:`load_model` takes (default: the shipped default model).
    snr_r
        ``(N,)`` S/N_r per object, for the per-bin calibration (default: the overall bin).

    Returns
    -------
    astropy.table.Table
        :data:`drcnet.catalogue.CATALOGUE_COLUMNS`.

    Raises
    ------
    ValueError
        The array the model needs is missing or has another shape (the message gives the expected one).
    """
    return _as_predictor(model).catalogue(stripes, flux1d, sky1d, snr_r=snr_r)


def predict_file(data: str | Path, model: Predictor | str | Path | None = None, split: str | None = None) -> Any:
    """The ``drcnet predict`` table of a dataset HDF5 file, as an astropy Table (the CLI's rows, unformatted).

    Parameters
    ----------
    data
        Dataset file (``drcnet simulate``, ``drcnet frames reduce``).
    model
        A :class:`Predictor`, or what :func:`load_model` takes.
    split
        Split name, or ``None`` for every object.
    """
    return _as_predictor(model).predict_file(data, split)


def classify_exposure(
    folder: str | Path,
    model: Predictor | str | Path | None = None,
    out: str | Path | None = None,
    qa_dir: str | Path | None = None,
    spids: list[int] | None = None,
) -> Any:
    """Reduce a raw exposure and classify every object fiber: the exposure catalogue as an astropy Table.

    Parameters
    ----------
    folder
        Exposure folder: raw frames (``r?-XX?-PLANID-RUN-MJD.fit[.gz]``) and fiber maps.
    model
        A :class:`Predictor`, or what :func:`load_model` takes (default: the shipped default model).
    out
        Also write the catalogue here (``.csv``, ``.parquet`` or ``.fits``); default: only a temporary file.
    qa_dir
        Also write the QA page here.
    spids
        Only these spectrographs.

    Returns
    -------
    astropy.table.Table
        One row per object fiber: :data:`drcnet.inference.table.EXPOSURE_COLUMNS` (+ truth columns for a
        simulated exposure); ``meta["label_convention"]`` says which truth was used.

    Raises
    ------
    NotADirectoryError
        ``folder`` is a file (a dataset file goes to :func:`predict_file`).
    drcnet.instrument.exposure.MissingFrameError
        ``folder`` does not exist or holds no raw frames.
    drcnet.outputs.OutputError
        ``out`` or ``qa_dir`` is one of the exposure's files, the folder itself, or of the wrong kind.
    ValueError
        ``out`` does not end in ``.csv``, ``.parquet`` or ``.fits``.
    """
    import tempfile

    from drcnet.workflows.classify_exposure import classify_exposure as run_workflow

    if Path(folder).is_file():
        raise NotADirectoryError(
            f"{folder}: is a file, not an exposure folder of raw frames; for a dataset HDF5 file use "
            "drcnet.predict_file (command line: drcnet predict --data)"
        )
    from drcnet.instrument.exposure import exposure_input_files
    from drcnet.workflows.classify_exposure import check_outputs

    if out is not None:  # before any work: never over a raw frame or fiber map of the exposure
        check_outputs(out, qa_dir, files=exposure_input_files(folder), trees=[folder])
    predictor = _as_predictor(model)
    with tempfile.TemporaryDirectory(prefix="drcnet-catalogue-") as tmp:
        path = Path(out) if out is not None else Path(tmp) / "catalogue.csv"
        res = run_workflow(
            predictor.run_dir,
            folder,
            path,
            qa_dir=qa_dir,
            predictor=predictor,
            spids=spids,
            label_convention=predictor.label_convention,
        )
    return res.table
