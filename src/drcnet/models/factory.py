"""``create_model``: a registered architecture with fresh weights, or a shipped trained one.

Kept apart from :mod:`drcnet.models.registry` (names -> classes) and :mod:`drcnet.models.run_folder`
(folder -> model) so the two import nothing of each other: this module sits above both.
"""

from __future__ import annotations

from typing import Any

from drcnet.models.base import SpectralModel
from drcnet.models.registry import build_model, model_class
from drcnet.models.run_folder import DEFAULT_MODEL, load_run, pretrained_dir, shipped_models


def create_model(name: str, pretrained: bool = False, **config: Any) -> SpectralModel:
    """Build model ``name`` with its default config overridden by ``config``.

    Parameters
    ----------
    name
        A registered model (:func:`drcnet.models.list_models`).
    pretrained
        Return a shipped trained model of that architecture instead (in eval mode, with its own config;
        ``config`` must then be empty): the default model when it is that architecture, else the
        shipped folder named ``name``, else the first shipped one of that architecture.
    **config
        Overrides of the model's config dataclass.

    Raises
    ------
    KeyError
        Unknown model name.
    ValueError
        Unknown config keys, or config overrides together with ``pretrained``.
    FileNotFoundError
        ``pretrained`` for a model that is not shipped.
    """
    if not pretrained:
        return build_model(name, **config)
    model_class(name)  # KeyError for an unknown name, before looking at the shipped models
    if config:
        raise ValueError(f"a pretrained {name!r} has its own config; drop {sorted(config)} or pretrained=True")
    shipped = {s["name"]: s["model"] for s in shipped_models()}
    candidates = [DEFAULT_MODEL, name] + sorted(shipped)
    folder = next((c for c in candidates if shipped.get(c) == name), None)
    if folder is None:
        raise FileNotFoundError(f"no shipped {name!r} model; shipped: {', '.join(sorted(shipped)) or 'none'}")
    return load_run(pretrained_dir(folder))[0]
