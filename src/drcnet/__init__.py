"""drcnet: classify F/G/K stars straight from raw LAMOST 2D spectra.

Implements DRC-Net (Zhang et al. 2023, RAA 23:125005), its baselines (RC-Net on
1D aperture spectra, FFCNN on 2D stripes), and a LAMOST forward model that
renders raw fiber stripes from real stellar spectra.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("drcnet")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

from drcnet.conventions import CLASSES

__all__ = ["CLASSES", "__version__"]
