"""drcnet: classify F/G/K stars straight from raw LAMOST 2D spectra.

Implements DRC-Net (Zhang et al. 2023, RAA 23:125005), its baselines (RC-Net on
1D aperture spectra, FFCNN on 2D stripes), and a LAMOST forward model that
renders raw fiber stripes from real stellar spectra.
"""

from typing import Any

from drcnet.conventions import CLASSES

__all__ = ["CLASSES", "__version__"]


def __getattr__(name: str) -> Any:
    """``drcnet.__version__``, read from the installed package's metadata on first use.

    Lazy because ``importlib.metadata`` costs ~70 ms of every command's start-up (``drcnet --help``)
    and only provenance records need the version.
    """
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("drcnet")
        except PackageNotFoundError:  # running from a source tree without install
            value = "0.0.0+unknown"
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module 'drcnet' has no attribute {name!r}")
