"""Small synthetic dataset files in the real layout (:mod:`drcnet.data.schema`) for model tests.

Not a physical simulation (that is ``drcnet simulate``): each object is a Gaussian spatial
profile (11 rows) times a class-dependent spectrum per arm (a sloped continuum and absorption
lines at class-specific columns, shifted by a random "radial velocity"), plus Gaussian noise set by
the object's S/N_r, written with :class:`~drcnet.data.schema.DatasetWriter` so every reader sees
exactly what it would see in a simulated file. A model can learn the classes; low S/N is harder.

Swap in real data by pointing the tests/benchmark at a file made by ``drcnet simulate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from drcnet.data.schema import COL_START, OPTIMAL_1D, SPLIT_NAMES, STRIPE_COLS, STRIPE_ROWS, DatasetWriter, snr_bin
from drcnet.provenance import atomic_path, provenance

# objects per (split, S/N bin); bins 0: >30, 1: 20-30, 2: 10-20, 3: <10
TINY_LAYOUT: dict[str, tuple[int, int, int, int]] = {
    "train": (60, 0, 0, 0),
    "val": (20, 0, 0, 0),
    "test": (16, 8, 8, 8),
}
PAPER_LAYOUT: dict[str, tuple[int, int, int, int]] = {
    "train": (4840, 0, 0, 0),
    "val": (605, 0, 0, 0),
    "test": (605, 461, 436, 1042),
}
_SNR_RANGES = ((35.0, 80.0), (20.5, 29.5), (10.5, 19.5), (4.0, 9.5))
_LINES_PER_CLASS = 8


def _class_templates(rng: np.random.Generator, cols: int) -> np.ndarray:
    """``(3, 2, cols)`` noiseless class spectra (mean about 1)."""
    x = np.linspace(-1.0, 1.0, cols)
    out = np.empty((3, 2, cols))
    shared = rng.integers(100, cols - 100, size=(2, 6))  # lines all classes have, class-dependent depth
    for c in range(3):
        for arm in range(2):
            slope = (0.25 - 0.2 * c) * (1.0 if arm == 0 else 0.5)
            s = 1.0 + slope * x
            own = rng.integers(100, cols - 100, size=_LINES_PER_CLASS)
            for pos in own:
                s -= 0.35 * np.exp(-0.5 * ((np.arange(cols) - pos) / 2.5) ** 2)
            for j, pos in enumerate(shared[arm]):
                depth = 0.1 + 0.12 * ((c + j) % 3)
                s -= depth * np.exp(-0.5 * ((np.arange(cols) - pos) / 3.0) ** 2)
            out[c, arm] = s
    return out


def make_synthetic_dataset(
    path: str | Path,
    layout: Mapping[str, tuple[int, int, int, int]] | None = None,
    seed: int = 0,
    amplitude: float = 2000.0,
    block: int = 256,
    unknown_fraction: float = 0.0,
) -> Path:
    """Write a synthetic dataset file and return its path.

    Parameters
    ----------
    path
        Output HDF5 file (written atomically).
    layout
        Objects per split and S/N bin, ``{"train": (n_bin0, n_bin1, n_bin2, n_bin3), ...}``;
        default :data:`TINY_LAYOUT` (120 objects). :data:`PAPER_LAYOUT` gives the paper's Table 1.
    seed
        Random seed (same seed, same file content).
    amplitude
        Peak 1D flux in ADU.
    block
        Objects generated and written at a time (memory stays ~block x 264 kB).
    unknown_fraction
        Fraction of test objects whose label is stored as -1 (unknown).
    """
    layout = dict(layout or TINY_LAYOUT)
    rng = np.random.default_rng(seed)
    templates = _class_templates(rng, STRIPE_COLS)
    split_code, snr = [], []
    for s_name, counts in layout.items():
        for b, n in enumerate(counts):
            split_code += [SPLIT_NAMES.index(s_name)] * n
            snr.append(rng.uniform(*_SNR_RANGES[b], size=n))
    n = len(split_code)
    split_arr = np.asarray(split_code, dtype=np.int8)
    snr_arr = np.concatenate(snr).astype(np.float32) if snr else np.zeros(0, np.float32)
    labels = rng.integers(0, 3, size=n).astype(np.int8)
    if unknown_fraction > 0:
        test = np.flatnonzero(split_arr == SPLIT_NAMES.index("test"))
        k = int(round(unknown_fraction * len(test)))
        labels[rng.choice(test, size=k, replace=False)] = -1
    rows = np.arange(STRIPE_ROWS) - STRIPE_ROWS // 2
    cols = np.arange(STRIPE_COLS)
    wave = np.stack([3700.0 + 0.57 * (COL_START + cols), 5700.0 + 0.84 * (COL_START + cols)]).astype(np.float32)
    config = {
        "generator": "tests/_support/synthetic_dataset.py",
        "layout": layout,
        "amplitude": amplitude,
        "unknown_fraction": unknown_fraction,
    }
    attrs = {"provenance": provenance(config, seed), "config": config, "seed": seed, "synthetic": 1}
    path = Path(path)
    with atomic_path(path) as tmp, DatasetWriter(tmp, n, attrs=attrs, optional=OPTIMAL_1D) as w:
        for start in range(0, n, block):
            stop = min(n, start + block)
            m = stop - start
            lab = labels[start:stop]
            cls = np.where(lab >= 0, lab, rng.integers(0, 3, size=m))
            shift = rng.integers(-6, 7, size=m)
            spec = np.stack([np.roll(templates[c], s, axis=-1) for c, s in zip(cls, shift)])  # (m, 2, cols)
            flux = amplitude * rng.uniform(0.6, 1.4, size=(m, 1, 1)) * spec
            sigma_row = rng.uniform(1.2, 1.8, size=(m, 1, 1, 1))
            centre = rng.uniform(-0.4, 0.4, size=(m, 1, 1, 1))
            prof = np.exp(-0.5 * ((rows[None, None, :, None] - centre) / sigma_row) ** 2)
            prof /= prof.sum(axis=2, keepdims=True)
            clean = flux[:, :, None, :] * prof
            sigma1d = amplitude / snr_arr[start:stop, None, None, None]
            noise = rng.normal(size=clean.shape) * sigma1d / np.sqrt(STRIPE_ROWS)
            stripes = (clean + noise + 50.0).astype(np.float16)  # +50 ADU residual offset
            flux1d = stripes.astype(np.float32).sum(axis=2)
            # the optimal (Horne) extraction with the true profile; every pixel has the same noise, so the
            # weights are the profile's: f = sum(P D) / sum(P^2), variance sigma_pixel^2 / sum(P^2)
            p2 = (prof**2).sum(axis=2)
            flux1d_opt = ((prof * stripes.astype(np.float32)).sum(axis=2) / p2).astype(np.float32)
            ivar1d_opt = (p2 * STRIPE_ROWS / sigma1d[:, :, :, 0] ** 2) * np.ones_like(flux1d_opt)
            w.write(
                start,
                {
                    "stripes": stripes,
                    "flux1d": flux1d,
                    "ivar1d": np.broadcast_to(1.0 / sigma1d[:, :, :, 0] ** 2, flux1d.shape).astype(np.float32),
                    "sky1d": np.zeros_like(flux1d),
                    "flux1d_opt": flux1d_opt,
                    "ivar1d_opt": ivar1d_opt.astype(np.float32),
                    "wave1d": np.broadcast_to(wave, flux1d.shape),
                    "label": lab,
                    "snr_r": snr_arr[start:stop],
                    "snr_bin": snr_bin(snr_arr[start:stop]),
                    "split": split_arr[start:stop],
                    "object_id": np.array([f"synth-{i:06d}".encode() for i in range(start, stop)]),
                    "template_id": np.array([f"synthetic:{c}".encode() for c in cls]),
                },
            )
    return path
