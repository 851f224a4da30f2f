"""Warm start: initialise a new model from a trained run's weights wherever they fit.

Used to grow a shipped model into a bigger one without training from scratch on a 2-core machine:
e.g. the three-class ``drcnet-robust`` into the four-class model with catalogue heads. Every tensor
whose name and shape agree is copied; an output layer with more rows than the source (``F, G, K`` ->
``F, G, K, other``) gets the source's rows first and keeps its fresh initialisation for the rest;
everything else (new heads) keeps its fresh initialisation.
"""

from __future__ import annotations

from typing import Any

import torch

from drcnet.models import SpectralModel
from drcnet.models.run_folder import (
    BEST,
    file_sha256,
    read_run_json,
    read_safetensors,
    resolve_run,
    saved_model_config,
)


def warm_start(model: SpectralModel, source: str) -> dict[str, Any]:
    """Copy the best weights of run ``source`` into ``model`` where they fit (in place).

    Parameters
    ----------
    model
        The freshly built model.
    source
        Run folder or shipped model name; for a model made of sub-networks (the ``hybrid``), several runs
        separated by commas (``drcnet-survey,runs/rcnet``): a run of an architecture the model holds as a
        part (``model.part_prefix(run_model)``, e.g. ``drcnet`` -> ``net2d.``) fills that part.

    Returns
    -------
    dict
        What was done, for ``run.json``: ``source`` (the name as given), ``source_model``,
        ``weights_sha256``, ``copied``, ``partial`` (grown output layers) and ``fresh`` (tensor names);
        with several sources ``source``, ``source_model`` and ``weights_sha256`` are lists, one per source.

    Raises
    ------
    ValueError
        A source is another architecture (no tensor at all could be copied); with several sources, the
        model is not made of parts, a source is a whole run of the model's own architecture, or two
        sources would fill the same part.
    """
    sources = [s.strip() for s in source.split(",") if s.strip()]
    if len(sources) > 1:
        _check_parts(model, sources)
        parts = [_copy_weights(model, s) for s in sources]
        fresh = set(parts[0]["fresh"]).intersection(*(p["fresh"] for p in parts[1:]))
        return {
            "source": sources,
            "source_model": [p["source_model"] for p in parts],
            "weights_sha256": [p["weights_sha256"] for p in parts],
            "copied": sum(p["copied"] for p in parts),
            "partial": [n for p in parts for n in p["partial"]],
            "fresh": sorted(fresh),
        }
    return _copy_weights(model, sources[0] if sources else source)


def _part_of(model: SpectralModel, source_model: str) -> str | None:
    """The prefix of the part of ``model`` that a run of ``source_model`` fills (``""``: the whole model)."""
    if source_model == model.name:
        return ""
    part_prefix = getattr(model, "part_prefix", None)
    return part_prefix(source_model) if callable(part_prefix) else None


def _check_parts(model: SpectralModel, sources: list[str]) -> None:
    """Refuse several sources unless each fills its own part of ``model`` (see :func:`warm_start`)."""
    if not callable(getattr(model, "part_prefix", None)):
        raise ValueError(
            f"--init-from {','.join(sources)}: the {model.name} model is one network and starts from one run; "
            "several runs separated by commas fill the parts of a model made of networks (the hybrid)"
        )
    filled: dict[str, str] = {}
    for src in sources:
        src_model = str(read_run_json(resolve_run(src)).get("model"))
        prefix = _part_of(model, src_model)
        if prefix == "":
            raise ValueError(
                f"--init-from {','.join(sources)}: {src} is a whole {model.name} run and would overwrite the "
                "other sources; start from it alone"
            )
        if prefix is None:
            raise ValueError(
                f"{src}: a {src_model} run is not a part of a {model.name}; none of its weights fit "
                "(give one run of each network it holds: a drcnet run and an rcnet run for the hybrid)"
            )
        if prefix in filled:
            raise ValueError(
                f"--init-from {','.join(sources)}: {filled[prefix]} and {src} would both fill "
                f"{prefix.rstrip('.')}; give one run per part"
            )
        filled[prefix] = src


def _copy_weights(model: SpectralModel, source: str) -> dict[str, Any]:
    """:func:`warm_start` from one run."""
    folder = resolve_run(source)
    meta = read_run_json(folder)
    tensors, _ = read_safetensors(folder / BEST)
    prefix = _part_of(model, str(meta.get("model"))) or ""
    if prefix:
        tensors = {prefix + k: v for k, v in tensors.items()}
    own = model.state_dict()
    copied, partial, fresh = [], [], []
    with torch.no_grad():
        for name, target in own.items():
            src = tensors.get(name)
            if src is not None and src.shape == target.shape:
                target.copy_(src)
                copied.append(name)
            elif (
                src is not None
                and src.ndim == target.ndim
                and src.shape[1:] == target.shape[1:]
                and src.shape[0] < target.shape[0]
            ):
                target[: src.shape[0]].copy_(src)
                partial.append(name)
            else:
                fresh.append(name)
    if not copied:
        raise ValueError(f"{source}: a {meta.get('model')} run; none of its weights fit a {model.name}")
    model.load_state_dict(own)
    return {
        "source": source,
        "source_model": meta.get("model"),
        "weights_sha256": file_sha256(folder / BEST),
        "copied": len(copied),
        "partial": partial,
        "fresh": fresh,
    }


def with_source_architecture(cfg: Any) -> Any:
    """``cfg`` with the model and architecture of its ``init_from`` run when its preset asks for it.

    The ``finetune`` preset (:data:`drcnet.train.config.PRESETS`, ``model_from_init``) trains the very
    network of the source run: its ``model_config`` is the source's, with ``cfg.model_config`` (the user's
    ``--model-config``) on top. Other presets, or no ``init_from``: ``cfg`` unchanged.

    Raises
    ------
    FileNotFoundError
        The source run does not exist.
    ValueError
        ``cfg.model`` names another architecture than the source run's.
    """
    from dataclasses import replace

    from drcnet.train.config import PRESETS, merge_model_config

    if not cfg.init_from or not PRESETS.get(cfg.preset or "", {}).get("model_from_init"):
        return cfg
    if len([s for s in cfg.init_from.split(",") if s.strip()]) > 1:
        raise ValueError(
            f"--init-from {cfg.init_from}: the {cfg.preset} preset fine-tunes one trained run "
            "(e.g. --init-from drcnet-hybrid); several runs separated by commas start a new hybrid "
            "(--model hybrid with another preset)"
        )
    meta = read_run_json(resolve_run(cfg.init_from))
    if cfg.model and cfg.model != meta.get("model"):
        raise ValueError(
            f"--init-from {cfg.init_from} is a {meta.get('model')} run but --model is {cfg.model}; "
            f"fine-tuning keeps the source's architecture (drop --model or give --model {meta.get('model')})"
        )
    config = merge_model_config(saved_model_config(meta), cfg.model_config)
    return replace(cfg, model=str(meta.get("model")), model_config=config)


def freeze_parts(model: torch.nn.Module, parts: list[str]) -> int:
    """Fix the weights of the model's parts ``parts`` (``requires_grad`` off); return how many tensors.

    A part is a top-level sub-module (``reduce``) or, in a model made of networks (the ``hybrid``), a
    dotted path to one (``net2d.reduce``).

    Raises
    ------
    ValueError
        A name that is not a part of the model (the message lists the top-level parts).
    """
    found: dict[str, torch.nn.Module] = {}
    unknown = []
    for p in parts:
        if not p.strip():
            raise ValueError(
                f"--freeze {','.join(parts)!r}: an empty part name (it would freeze the whole model); "
                "name the parts, e.g. net2d.reduce"
            )
        try:
            found[p] = model.get_submodule(p)
        except AttributeError:
            unknown.append(p)
    if unknown:
        children = dict(model.named_children())
        have = [n for n, m in children.items() if any(True for _ in m.parameters())]
        raise ValueError(
            f"--freeze {','.join(unknown)}: not a part of this {getattr(model, 'name', 'model')}; "
            f"parts with weights: {', '.join(have)} (a part inside one is named with dots, e.g. net2d.reduce)"
        )
    n = 0
    for module in found.values():
        for param in module.parameters():
            param.requires_grad_(False)
            n += 1
    return n
