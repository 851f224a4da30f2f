"""The model registry: each model class registers itself where it is defined (``@register_model``).

>>> from drcnet.models import create_model, list_models
>>> list_models()
['drcnet', 'ffcnn', 'rcnet']
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


def create_model(name: str, pretrained: bool = False, **config: Any) -> SpectralModel:
    """Build model ``name`` with its default config overridden by ``config``.

    Parameters
    ----------
    name
        A registered model (:func:`list_models`).
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
    cls = model_class(name)
    if pretrained:
        if config:
            raise ValueError(f"a pretrained {name!r} has its own config; drop {sorted(config)} or pretrained=True")
        from drcnet.models.run_folder import DEFAULT_MODEL, load_run, pretrained_dir, shipped_models

        shipped = {s["name"]: s["model"] for s in shipped_models()}
        candidates = [DEFAULT_MODEL, name] + sorted(shipped)
        folder = next((c for c in candidates if shipped.get(c) == name), None)
        if folder is None:
            raise FileNotFoundError(f"no shipped {name!r} model; shipped: {', '.join(sorted(shipped)) or 'none'}")
        return load_run(pretrained_dir(folder))[0]
    return cls(config_from_dict(cls.Config, config))


def model_input_kind(name: str) -> InputKind:
    """``"stripes"`` or ``"spectra1d"``: which input model ``name`` needs."""
    return model_class(name).input_kind
