"""The model registry: each model class registers itself where it is defined (``@register_model``).

>>> from drcnet.models import create_model, list_models
>>> list_models()
['drcnet', 'ffcnn', 'hybrid', 'hybrid_optimal', 'rcnet']
"""

from __future__ import annotations

from typing import Any, TypeVar

from drcnet.models.base import InputKind, SpectralModel, config_from_dict

_REGISTRY: dict[str, type[SpectralModel]] = {}
M = TypeVar("M", bound=type[SpectralModel])


def register_model(cls: M) -> M:
    """Class decorator: add a model class to the registry under ``cls.name``.

    Raises
    ------
    ValueError
        When the class has no ``name`` or another class holds that name already.
    """
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a model named {cls.name!r} is registered already")
    _REGISTRY[cls.name] = cls
    return cls


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_REGISTRY)


def model_class(name: str) -> type[SpectralModel]:
    """The class registered under ``name`` (``KeyError`` listing the registered names otherwise)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(list_models())}") from None


def build_model(name: str, **config: Any) -> SpectralModel:
    """Build model ``name`` with its default config overridden by ``config`` (fresh weights).

    Raises
    ------
    KeyError
        Unknown model name.
    ValueError
        Unknown config keys.
    """
    cls = model_class(name)
    return cls(config_from_dict(cls.Config, config))


def model_input_kind(name: str) -> InputKind:
    """``"stripes"``, ``"spectra1d"``, ``"hybrid"`` or ``"hybrid_optimal"``: which input model ``name`` needs."""
    return model_class(name).input_kind
