"""Model zoo: a registry of plain ``nn.Module`` classifiers, one file per model.

>>> from drcnet.models import create_model, list_models
>>> list_models()
['drcnet', 'ffcnn', 'rcnet']
>>> model = create_model("drcnet", fc_widths=(128, 32))
>>> model.input_kind
'stripes'

Each model class has a config dataclass (``Model.Config``), keeps it on ``model.config``, declares
``input_kind`` (``"stripes"``: ``(B, 2, 11, 3000)``; ``"spectra1d"``: ``(B, 1, 6000)``; see
:mod:`drcnet.models.base`) and returns logits over :data:`drcnet.CLASSES`. ``model.fast``
(default ``True``) selects the channels-last CPU fast path, numerically equivalent to the plain one.
"""

from __future__ import annotations

from typing import Any

from drcnet.models.base import INPUT_KINDS, InputKind, SpectralModel, config_from_dict
from drcnet.models.drcnet import DRCNet, DRCNetConfig
from drcnet.models.ffcnn import FFCNN, FFCNNConfig
from drcnet.models.rcnet import RCNet, RCNetConfig

_REGISTRY: dict[str, type[SpectralModel]] = {}


def register_model(cls: type[SpectralModel]) -> type[SpectralModel]:
    """Add a model class to the registry under ``cls.name`` (usable as a decorator)."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a model named {cls.name!r} is registered already")
    _REGISTRY[cls.name] = cls
    return cls


for _cls in (DRCNet, RCNet, FFCNN):
    register_model(_cls)


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_REGISTRY)


def model_class(name: str) -> type[SpectralModel]:
    """The class registered under ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(list_models())}") from None


def create_model(name: str, **config: Any) -> SpectralModel:
    """Build model ``name`` with its default config overridden by ``config`` (unknown keys raise)."""
    cls = model_class(name)
    return cls(config_from_dict(cls.Config, config))


def model_input_kind(name: str) -> InputKind:
    """``"stripes"`` or ``"spectra1d"``: which input model ``name`` needs."""
    return model_class(name).input_kind


__all__ = [
    "INPUT_KINDS", "InputKind", "SpectralModel", "DRCNet", "DRCNetConfig", "RCNet", "RCNetConfig",
    "FFCNN", "FFCNNConfig", "create_model", "list_models", "model_class", "model_input_kind", "register_model",
]
