"""``make demo``: the whole path on built-in defaults, printed as the CLI commands it runs.

1. simulate a small dataset (Table 1 at one tenth) from the real PyHammer templates;
2. plot one object of each class;
3. train DRC-Net and RC-Net with the fast preset;
4. evaluate them like the paper and write the report (Table 3, Tables 4-5, Figure 7);
5. render 300 real LAMOST stars the shipped models never saw and score the default model (the
   hybrid, ``drcnet-hybrid``) and the paper reproduction on them;
6. simulate one raw LAMOST exposure (one spectrograph) and classify it straight from the raw frames with
   the default model, scored against LAMOST's convention (the one it was trained on: the fiber map's
   ``TRUE_CLASS_LAMOST``), with its score against the library stars' MK types beside it for comparison.

Everything lands in ``--out`` (default ``out/demo``); the report is ``report/report.html``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from drcnet.models import DEFAULT_MODEL, pretrained_dir


def run(args: list[str]) -> None:
    """Run one ``drcnet`` command in-process, echoing it as a user would type it."""
    from drcnet.cli import app

    print(f"\n$ drcnet {shlex.join(args)}", flush=True)
    t0 = time.perf_counter()
    try:
        app(args, standalone_mode=False)
    except SystemExit as exc:  # typer.Exit inside a command
        if exc.code not in (0, None):
            raise
    print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)


def exposure_summary(catalogue: Path, exposure: Path) -> str:
    """One line: the default model's exposure accuracy on LAMOST's convention, and on MK types beside it.

    Both over the classified object fibers whose true class (in that convention) is F, G or K; stars whose
    LAMOST class is ambiguous count only in the MK figure.
    """
    import numpy as np
    from astropy.table import Table

    from drcnet.conventions import CLASSES
    from drcnet.instrument.fibermap import read_fibermap

    cat = Table.read(catalogue, format="ascii.csv")
    col = cat["pred"]
    preds = np.asarray(col.filled("") if hasattr(col, "filled") else col).astype(str)  # an empty pred reads as masked
    pred = {(int(s), int(f)): p for s, f, p in zip(cat["spid"], cat["fiber"], preds, strict=True)}
    scores: dict[str, list[bool]] = {"TRUE_CLASS_LAMOST": [], "TRUE_CLASS": []}
    for path in sorted(exposure.glob("fibermap-*.fits")):
        fm = read_fibermap(path)
        for key, hits in scores.items():
            if fm.truth is None or key not in fm.truth:
                continue
            for fiber, true in zip(fm.fiber, fm.truth[key], strict=True):
                p = pred.get((fm.spid, int(fiber)), "")
                if p and str(true) in CLASSES:
                    hits.append(p == str(true))
    lam, mk = (scores[k] for k in ("TRUE_CLASS_LAMOST", "TRUE_CLASS"))
    if not lam:
        return "exposure: the fiber maps carry no LAMOST-convention truth (TRUE_CLASS_LAMOST): no score"
    return (
        f"\ndefault model ({DEFAULT_MODEL}) on the simulated exposure: accuracy {np.mean(lam):.3f} against "
        f"LAMOST's convention, the labels it was trained on ({len(lam)} F/G/K stars; library stars labelled "
        f"by the shipped LAMOST labeller); {np.mean(mk):.3f} against the library's MK types ({len(mk)} stars)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="drcnet demo: simulate, train, evaluate, report, classify raw frames")
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--epochs", type=int, default=8, help="training epochs per model (fast preset)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    data = out / "small.h5"
    seed = str(args.seed)
    run(["simulate", "--preset", "small", "--out", str(data), "--seed", seed, "--overwrite"])
    for index in (0, 1, 2):
        run(["plot-sample", str(data), "--index", str(index), "--out", str(out / f"sample_{index}.png")])
    runs = []
    for model in ("drcnet", "rcnet"):
        run_dir = out / "runs" / model
        run(
            [
                "train",
                "--model",
                model,
                "--data",
                str(data),
                "--out",
                str(run_dir),
                "--preset",
                "fast",
                "--epochs",
                str(args.epochs),
                "--seed",
                seed,
                "--overwrite",
            ]
        )
        run(["evaluate", str(run_dir), "--data", str(data)])
        runs.append(str(run_dir))
    run(["report", *runs, "--data", str(data), "--out", str(out / "report")])
    shipped = str(pretrained_dir(DEFAULT_MODEL))
    # the default model is trained for real LAMOST stars on LAMOST's labels: score it on real stars it never
    # saw (the held-out test split of the survey population, nominal instrument), and the paper
    # reproduction on the paper's PyHammer data it was made for
    real = out / "real_stars.h5"
    # (a fifth of them A/M stars, galaxies and sky-only fibers: the default model should call those `other`)
    run(
        [
            "simulate-population",
            "--out",
            str(real),
            "--n-train",
            "0",
            "--n-val",
            "0",
            "--n-test",
            "300",
            "--include",
            "lamost",
            "--no-randomize",
            "--snr-min",
            "3",
            "--snr-max",
            "80",
            "--other",
            "0.2",
            "--seed",
            seed,
            "--overwrite",
        ]
    )
    run(["evaluate", shipped, "--data", str(real), "--out", str(out / "default_on_real_stars")])
    run(
        [
            "evaluate",
            str(pretrained_dir("drcnet")),
            "--data",
            str(real),
            "--out",
            str(out / "paper_model_on_real_stars"),
        ]
    )
    exposure = out / "exposure"
    run(["frames", "simulate", "--out", str(exposure), "--spectrographs", "1", "--seed", seed, "--overwrite"])
    run(["predict", shipped, "--exposure", str(exposure), "--out", str(out / "catalogue.csv")])
    print(exposure_summary(out / "catalogue.csv", exposure), flush=True)
    print(f"\ndone: open {out / 'report' / 'report.html'} and the exposure QA page next to {out / 'catalogue.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
