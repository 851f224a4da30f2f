"""drcnet: classify F/G/K stars straight from raw LAMOST 2D spectra.

Implements DRC-Net (Zhang et al. 2023, RAA 23:125005), its baselines (RC-Net on
1D aperture spectra, FFCNN on 2D stripes), and a LAMOST forward model that
renders raw fiber stripes from real stellar spectra.

The Python API (:mod:`drcnet.api`), imported on first use so ``import drcnet`` stays light:

>>> import drcnet
>>> model = drcnet.load_model("drcnet-survey")          # doctest: +SKIP
>>> model.predict_file("my.h5")                         # doctest: +SKIP
>>> drcnet.classify_exposure("exposure/")               # doctest: +SKIP
"""

from typing import Any

from drcnet.conventions import CLASSES

_API = ("Predictor", "classify_exposure", "load_model", "predict", "predict_file")
"""Names of :mod:`drcnet.api` reached as ``drcnet.<name>``."""

__all__ = ["CLASSES", "__version__", *_API]


def __getattr__(name: str) -> Any:
    """``drcnet.__version__`` and the API names of :mod:`drcnet.api`, each imported on first use.

    Lazy because ``importlib.metadata`` costs ~70 ms of every command's start-up (``drcnet --help``)
    and only provenance records need the version; the API imports torch.
    """
    if name == "__version__":
        from drcnet.provenance import package_version

        value = package_version()
        globals()["__version__"] = value
        return value
    if name in _API:
        from drcnet import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'drcnet' has no attribute {name!r}")
