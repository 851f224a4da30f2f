"""Where drcnet finds the real reference data at run time.

The data (spectral libraries, sky spectrum, extinction curve, arc lines) are
never copied into the repository; they are read from ``$DRCNET_DATA`` or from a
folder given on the command line.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "DRCNET_DATA"
GET_DATA_HINT = (
    "Point the environment variable DRCNET_DATA at the project's shared data folder "
    "(the one holding spectral_libraries/ and observatory/; in a checkout it is ../shared/data), "
    "or pass the folder on the command line (--library / --data-root)."
)


class DataNotFoundError(FileNotFoundError):
    """Raised when required reference data cannot be located."""


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the reference-data root folder.

    Parameters
    ----------
    explicit
        A folder given by the caller; wins over ``$DRCNET_DATA``.

    Raises
    ------
    DataNotFoundError
        If neither is set or the folder does not exist.
    """
    candidate = explicit if explicit is not None else os.environ.get(ENV_VAR)
    if candidate is None:
        raise DataNotFoundError(f"No reference data location is set. {GET_DATA_HINT}")
    root = Path(candidate).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"Reference data folder {root} does not exist. {GET_DATA_HINT}")
    return root


def observatory_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the ``observatory`` folder (sky spectrum, extinction curve, arc lines)."""
    root = data_root(explicit)
    obs = root / "observatory"
    if not obs.is_dir():
        raise DataNotFoundError(
            f"{obs} is missing: it should hold paranal_sky.fits, kpnoextinct.dat and arc_lines/. {GET_DATA_HINT}"
        )
    return obs
