"""A trained model's folder rebuilds itself: ``load_run(run_dir)`` (astroNN's ``load_folder`` idea).

Run folder layout (written by :mod:`drcnet.train`)::

    RUN_DIR/
      run.json            model name + config, train config, data fingerprint, seed, provenance,
                          world size, steps per epoch, status, best epoch
      best.safetensors    weights of the epoch with the lowest validation loss (metadata: model, config)
      last.safetensors    last finished epoch: weights, optimiser tensors, RNG states and loop state
      history.csv         epoch, train/val loss and accuracy, lr, steps, time
      metrics.json ...    written by ``drcnet evaluate``

The normalisation is not stored: it is fixed by the model's ``input_kind``
(:mod:`drcnet.data.normalize`), so a rebuilt model sees exactly what it saw in training.
Shipped models live in ``drcnet/pretrained/<name>/`` in the same layout (:func:`pretrained_dir`).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from drcnet.models.base import SpectralModel
from drcnet.models.fastpath import set_fast
from drcnet.models.registry import build_model

RUN_JSON = "run.json"
BEST = "best.safetensors"
LAST = "last.safetensors"
HISTORY = "history.csv"
FORMAT = "drcnet-run-v1"
PRETRAINED_ROOT = Path(__file__).resolve().parent.parent / "pretrained"
DEFAULT_MODEL = "drcnet-hybrid"
"""The shipped model that ``predict``, ``evaluate``, ``frames classify`` and ``night classify`` use when no
run folder is given: the ``hybrid_optimal`` (DRC-Net on the raw stripes and RC-Net on the optimal 1D
extraction, their probabilities mixed) trained with the ``survey`` preset on the survey population (real LAMOST
spectra + libraries on LAMOST's labels, domain-randomised, ``other`` objects); its ``MODEL_CARD.md`` says
what it does and does not do. ``drcnet-survey`` is its DRC-Net alone (2D stripes only), ``drcnet`` the
paper reproduction (fast preset, PyHammer dwarfs)."""
EXPORT_JSON = "EXPORT.json"


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_checksum(path: str | Path, expected: str | None) -> None:
    """Check a weights file against the SHA-256 its run folder recorded (no-op when none was recorded).

    Raises
    ------
    ValueError
        Naming the file, when its bytes differ from what was written.
    """
    if not expected:
        return
    actual = file_sha256(path)
    if actual != expected:
        raise ValueError(
            f"{path}: damaged weights file (SHA-256 {actual[:16]}..., run.json recorded "
            f"{expected[:16]}...); restore it from a backup, re-export or retrain"
        )


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and JSON-decoded metadata of a safetensors file.

    Returns
    -------
    tensors : dict of str to torch.Tensor
        Every tensor of the file, on the CPU.
    metadata : dict
        The file's metadata, each value decoded from JSON where it is JSON.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Naming the file, when it is not a readable safetensors file (garbled header, cut short).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except Exception as err:  # safetensors raises its own SafetensorError (and OSError/ValueError) on damage
        raise ValueError(
            f"{path}: not a readable safetensors file ({type(err).__name__}: {err}); the file is "
            "damaged or cut short: restore it, re-export or retrain"
        ) from err
    out: dict[str, Any] = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except (json.JSONDecodeError, TypeError):
            out[k] = v
    return tensors, out


def read_run_json(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``run.json``.

    Raises
    ------
    FileNotFoundError
        When ``run_dir`` holds no ``run.json`` (the message says how to make one).
    """
    p = Path(run_dir) / RUN_JSON
    if not p.is_file():
        raise FileNotFoundError(f"{run_dir} is not a drcnet run folder (no {RUN_JSON}); make one with `drcnet train`")
    return json.loads(p.read_text())


@dataclass
class RunInfo:
    """What ``run.json`` says about a run, plus where it lives."""

    run_dir: Path
    model_name: str
    model_config: dict[str, Any]
    input_kind: str
    meta: dict[str, Any]

    @property
    def label(self) -> str:
        """A short name for tables: the model name and the run folder's name."""
        return f"{self.model_name} ({self.run_dir.name})"


def read_run(run_dir: str | Path) -> RunInfo:
    """Read a run folder's ``run.json`` into a :class:`RunInfo`."""
    meta = read_run_json(run_dir)
    return RunInfo(Path(run_dir), meta["model"], meta["model_config"], meta["input_kind"], meta)


def run_label_convention(run_dir: str | Path, meta: dict[str, Any] | None = None) -> str:
    """The label convention a run was trained on: ``"mk"`` (library stars' MK types, ``drcnet simulate``
    files: the paper reproduction) or ``"lamost"`` (LAMOST's labels: the survey population).

    ``run.json``'s ``label_convention`` (every shipped model's records it); else ``"mk"`` (runs trained
    before the key existed, on ``drcnet simulate`` files).
    """
    meta = read_run_json(run_dir) if meta is None else meta
    value = meta.get("label_convention")
    return str(value) if value in ("mk", "lamost") else "mk"


def saved_model_config(meta: dict[str, Any]) -> dict[str, Any]:
    """The model config a run folder's ``run.json`` (``meta``) was trained with, ready for ``build_model``.

    ``run.json`` records the model's own config (:meth:`SpectralModel.config_dict`); a DRC-Net run folder
    written before ``reduce_activation`` existed used ReLUs between the reduction convolutions, which is
    put back here. Used to load a run and to resume one, so both build the network that was trained.
    """
    config = dict(meta["model_config"])
    if meta.get("model") == "drcnet" and "reduce_activation" not in config:
        # run folders written before the option existed used ReLUs between the reduction convolutions
        config["reduce_activation"] = "relu"
    return config


def load_run(
    run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu", fast: bool = True
) -> tuple[SpectralModel, RunInfo]:
    """Rebuild the model of a run folder with its best (or last) weights, in eval mode.

    Parameters
    ----------
    run_dir
        Folder written by ``drcnet train`` (or a shipped model, :func:`pretrained_dir`).
    which
        ``"best"`` (lowest validation loss) or ``"last"`` (last finished epoch).
    device
        Where to put the model.
    fast
        Use the CPU fast path (same results).

    Returns
    -------
    model : SpectralModel
        In eval mode on ``device``.
    info : RunInfo

    Raises
    ------
    FileNotFoundError
        No ``run.json`` in ``run_dir``.
    ValueError
        ``which`` is neither ``"best"`` nor ``"last"``; the weights file is damaged (its SHA-256
        differs from the one ``run.json`` recorded, or it cannot be read) or does not fit the model.
    """
    info = read_run(run_dir)
    model = build_model(info.model_name, **saved_model_config(info.meta))
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    path = Path(run_dir) / (BEST if which == "best" else LAST)
    expected = (info.meta.get("checksums") or {}).get(path.name)
    if not expected and path.is_file():
        warnings.warn(
            f"{Path(run_dir) / 'run.json'} records no checksum for {path.name} (a run folder from before "
            "checksums were recorded): the weights cannot be verified, a damaged file would load unnoticed",
            stacklevel=2,
        )
    verify_checksum(path, expected)
    raw, _ = read_safetensors(path)
    tensors = raw if which == "best" else {k[len("model.") :]: v for k, v in raw.items() if k.startswith("model.")}
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        raise ValueError(
            f"{path}: weights do not fit a {info.model_name} with the config in run.json ({str(err).splitlines()[0]})"
        ) from err
    set_fast(model, fast)
    return model.to(device).eval(), info


def pretrained_dir(name: str = DEFAULT_MODEL) -> Path:
    """Folder of the shipped model ``name`` (a run folder inside the installed package).

    Raises
    ------
    FileNotFoundError
        When no shipped model has that name (the message lists the shipped ones).
    """
    folder = PRETRAINED_ROOT / name
    if not (folder / RUN_JSON).is_file():
        shipped = sorted(p.name for p in PRETRAINED_ROOT.iterdir() if (p / RUN_JSON).is_file())
        raise FileNotFoundError(f"no shipped model named {name!r}; shipped: {', '.join(shipped) or 'none'}")
    return folder


def resolve_run(run: str | Path | None = None) -> Path:
    """The run folder of ``run``: a path, a shipped model's name (:func:`shipped_models`) or ``None``.

    The one resolver of the package: ``drcnet predict``/``evaluate``/``export``/``frames classify``/``night
    classify``, ``train --init-from`` and :func:`drcnet.load_model` all take a run this way.

    Parameters
    ----------
    run
        A run folder (or an ``.onnx`` file) that exists; a bare name of a shipped model (``drcnet-survey``);
        or ``None`` for the default model (:data:`DEFAULT_MODEL`).

    Returns
    -------
    pathlib.Path
        The path as given when it exists, else the shipped model's folder inside the package.

    Raises
    ------
    FileNotFoundError
        A path that does not exist, or a bare name that is no shipped model (the message lists them).
    """
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


def shipped_models() -> list[dict[str, Any]]:
    """The trained models shipped inside the package, with their version and training facts.

    Returns
    -------
    list of dict
        One per folder of ``drcnet/pretrained``: ``name``, ``model``, ``version`` and ``git_commit``
        (of the export), ``preset``, ``best_epoch`` and ``path``.
    """
    out = []
    for folder in sorted(p for p in PRETRAINED_ROOT.iterdir() if (p / RUN_JSON).is_file()):
        meta = read_run_json(folder)
        export = json.loads((folder / EXPORT_JSON).read_text()) if (folder / EXPORT_JSON).is_file() else {}
        out.append(
            {
                "name": folder.name,
                "model": meta.get("model"),
                "version": export.get("version", "?"),
                "git_commit": str(export.get("git_commit", "?"))[:12],
                "preset": meta.get("train_config", {}).get("preset"),
                "best_epoch": meta.get("best_epoch"),
                "path": str(folder),
            }
        )
    return out
