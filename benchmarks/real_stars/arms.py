"""Does a model use both arms? Accuracy on held-out real stars with one arm replaced by noise.

For every object of each file, one arm's input is replaced by Gaussian noise of the same mean and spread:
its stripe (every model), and for a model that reads the 1D spectra too (``rcnet``, ``hybrid``;
``hybrid_optimal`` reads the optimal extraction ``flux1d_opt``) its sky-subtracted 1D spectrum (sky set
to 0). A model that uses an arm loses accuracy when that arm is noise.
Prints accuracy (all, S/N_r > 30, S/N_r < 10) clean, blue -> noise, red -> noise.

Usage::

    python benchmarks/real_stars/arms.py drcnet-hybrid drcnet-survey --data eval_val.h5 --data eval_test.h5
"""

from __future__ import annotations

import argparse

import h5py
import numpy as np

from drcnet.inference.engine import predict_arrays
from drcnet.models.run_folder import load_run, resolve_run


def with_arm_as_noise(arrays: dict[str, np.ndarray], arm: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``arrays`` (stripes ``(N, 2, 11, L)``, flux1d/sky1d ``(N, 2, L)``) with ``arm`` replaced by noise."""
    out = {k: a.copy() for k, a in arrays.items()}
    part = arrays["stripes"][:, arm]
    out["stripes"][:, arm] = rng.normal(
        part.mean(axis=(1, 2), keepdims=True), part.std(axis=(1, 2), keepdims=True), part.shape
    )
    spec = arrays["flux1d"][:, arm] - arrays["sky1d"][:, arm]
    out["flux1d"][:, arm] = rng.normal(spec.mean(axis=1, keepdims=True), spec.std(axis=1, keepdims=True), spec.shape)
    out["sky1d"][:, arm] = 0.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="run folders or shipped model names")
    parser.add_argument("--data", action="append", required=True, help="held-out F/G/K file(s), scored one by one")
    args = parser.parse_args()
    for name in args.models:
        model, _ = load_run(resolve_run(name))
        for path in args.data:
            # a hybrid_optimal model reads the optimal extraction as its 1D spectrum
            spectrum = "flux1d_opt" if model.input_kind == "hybrid_optimal" else "flux1d"
            with h5py.File(path, "r") as h:
                arrays = {k: h[k][:].astype(np.float32) for k in ("stripes", "sky1d")}
                arrays["flux1d"] = h[spectrum][:].astype(np.float32)
                label, snr = h["label"][:].astype(int), h["snr_r"][:]
            rng = np.random.default_rng(0)
            cells = []
            for arm, what in ((None, "clean"), (0, "blue -> noise"), (1, "red -> noise")):
                x = arrays if arm is None else with_arm_as_noise(arrays, arm, rng)
                ok = predict_arrays(model, **x).argmax(1) == label
                cells.append(f"{what} {ok.mean():.3f} (>30 {ok[snr > 30].mean():.3f}, <10 {ok[snr < 10].mean():.3f})")
            print(f"{name} {path}: " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
