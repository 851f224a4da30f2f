"""Warm start: initialise a new model from a trained run's weights wherever they fit.

Used to grow a shipped model into a bigger one without training from scratch on a 2-core machine:
e.g. the three-class ``drcnet-robust`` into the four-class model with catalogue heads. Every tensor
whose name and shape agree is copied; an output layer with more rows than the source (``F, G, K`` ->
``F, G, K, other``) gets the source's rows first and keeps its fresh initialisation for the rest;
everything else (new heads) keeps its fresh initialisation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from drcnet.models import SpectralModel
from drcnet.models.run_folder import BEST, RUN_JSON, file_sha256, pretrained_dir, read_run_json, read_safetensors


def resolve_run(name_or_path: str) -> Path:
    """A run folder from a path or a shipped model name.

    Raises
    ------
    FileNotFoundError
        Neither a folder with ``run.json`` nor a shipped model (the message lists the shipped ones).
    """
    path = Path(name_or_path)
    if (path / RUN_JSON).is_file():
        return path
    return pretrained_dir(name_or_path)


def warm_start(model: SpectralModel, source: str) -> dict[str, Any]:
    """Copy the best weights of run ``source`` into ``model`` where they fit (in place).

    Parameters
    ----------
    model
        The freshly built model.
    source
        Run folder or shipped model name.

    Returns
    -------
    dict
        What was done, for ``run.json``: ``source`` (the name as given), ``source_model``,
        ``weights_sha256``, ``copied``, ``partial`` (grown output layers) and ``fresh`` (tensor names).

    Raises
    ------
    ValueError
        The source is another architecture (no tensor at all could be copied).
    """
    folder = resolve_run(source)
    meta = read_run_json(folder)
    tensors, _ = read_safetensors(folder / BEST)
    own = model.state_dict()
    copied, partial, fresh = [], [], []
    with torch.no_grad():
        for name, target in own.items():
            src = tensors.get(name)
            if src is not None and src.shape == target.shape:
                target.copy_(src)
                copied.append(name)
            elif (src is not None and src.ndim == target.ndim and src.shape[1:] == target.shape[1:]
                  and src.shape[0] < target.shape[0]):
                target[: src.shape[0]].copy_(src)
                partial.append(name)
            else:
                fresh.append(name)
    if not copied:
        raise ValueError(f"{source}: a {meta.get('model')} run; none of its weights fit a {model.name}")
    model.load_state_dict(own)
    return {"source": source, "source_model": meta.get("model"), "weights_sha256": file_sha256(folder / BEST),
            "copied": len(copied), "partial": partial, "fresh": fresh}
