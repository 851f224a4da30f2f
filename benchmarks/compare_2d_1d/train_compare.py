"""Issue 21 item 1: DRC-Net, FFCNN and RC-Net (boxcar and optimal 1D) trained alike, scored on held-out real stars.

One training population (``drcnet simulate-population``: domain-randomised, real LAMOST stars of the
training split plus the libraries) is rendered once; ``optimal1d.py`` writes its twin whose
``flux1d``/``ivar1d`` are the optimal (Horne) extraction of the same stripes with the true profile. Every
arm -- ``drcnet`` and ``ffcnn`` (stripes), ``rcnet`` on the boxcar file, ``rcnet`` on the optimal file --
is trained with the same preset, epochs and seeds (:func:`drcnet.train.loop.train`). The evaluation file
renders the validation and test splits' real LAMOST stars (held out by a hash of the star's name, never in
the training population) with the nominal forward model, S/N_r log-uniform 3-80 (its optimal twin for the
optimal arm); each run is scored per S/N_r bin with the interval counted by star
(:func:`drcnet.metrics.source_clustered_accuracy`, a cluster bootstrap over the source spectra), and the
seeds are summarised (mean, standard deviation, and the seeds' predictions pooled, clustered by star).

usage::

    DRCNET_DATA=../shared/data python benchmarks/compare_2d_1d/train_compare.py --workdir /tmp/cmp \
        --n-train 8000 --n-val 1000 --n-eval 2400 --epochs 12 --seeds 0,1,2 --pop-seed 7 --eval-seed 11

A smoke run (minutes): ``--n-train 300 --n-val 60 --n-eval 300 --epochs 1 --seeds 0``.
Writes ``results/train_compare.json`` (provenance, config, per-run and per-arm cells, timings) and
``results/train_compare.md`` (the table).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import optimal1d
import torch

from drcnet.conventions import SNR_BIN_NAMES
from drcnet.data.schema import decode
from drcnet.inference.engine import predict_dataset
from drcnet.inference.predictor import load_model
from drcnet.metrics import clustered_accuracy_interval, source_clustered_accuracy
from drcnet.paths import data_root as default_data_root
from drcnet.provenance import provenance, write_json_atomic, write_text_atomic
from drcnet.train.config import TrainConfig
from drcnet.train.loop import train
from drcnet.workflows.simulate_population import simulate_population

ARMS = {
    "drcnet": ("drcnet", "boxcar"),
    "ffcnn": ("ffcnn", "boxcar"),
    "rcnet-boxcar": ("rcnet", "boxcar"),
    "rcnet-optimal": ("rcnet", "optimal"),
    "hybrid": ("hybrid", "boxcar"),
}
"""Arm name -> (registered model, which file: the boxcar population or its optimal twin)."""


def build_files(work: Path, root: Path, args: argparse.Namespace) -> tuple[dict[str, Path], dict[str, Any]]:
    """Render (or reuse) the training population, the held-out evaluation file and their optimal twins."""
    timing: dict[str, Any] = {}
    pop, ev = work / "population.h5", work / "eval_heldout.h5"
    if not pop.is_file():
        t = time.perf_counter()
        simulate_population(
            pop,
            root,
            {"train": args.n_train, "val": args.n_val},
            seed=args.pop_seed,
            workers=args.workers,
            progress=False,
        )
        timing["render_population_s"] = time.perf_counter() - t
    if not ev.is_file():
        t = time.perf_counter()
        # the held-out real stars only: the LAMOST val + test splits, nominal instrument
        n_val = args.n_eval // 2
        simulate_population(
            ev,
            root,
            {"val": n_val, "test": args.n_eval - n_val},
            seed=args.eval_seed,
            snr_range=(3.0, 80.0),
            randomize=False,
            include=("lamost",),
            workers=args.workers,
            progress=False,
        )
        timing["render_eval_s"] = time.perf_counter() - t
    files = {"boxcar": pop, "eval_boxcar": ev}
    for name, src in (("optimal", pop), ("eval_optimal", ev)):
        dst = src.with_name(src.stem + "_optimal.h5")
        if not dst.is_file():
            t = time.perf_counter()
            timing[f"ivar_ratio_{name}"] = optimal1d.write_optimal_dataset(src, dst)
            timing[f"optimal_{name}_s"] = time.perf_counter() - t
        files[name] = dst
    return files, timing


def _completed(out: Path, cfg: TrainConfig) -> dict[str, Any] | None:
    """``run.json`` of a completed run in ``out`` trained as ``cfg`` asks (model, seed, preset, epochs, file)."""
    path = out / "run.json"
    if not path.is_file():
        return None
    meta = json.loads(path.read_text())
    done = meta.get("train_config", {})
    same = (
        meta.get("status") == "completed"
        and meta.get("model") == cfg.model
        and done.get("seed") == cfg.seed
        and done.get("preset") == cfg.preset
        and (cfg.epochs is None or done.get("epochs") == cfg.epochs)
        and Path(done.get("data", "")).name == Path(cfg.data).name
    )
    return meta if same else None


def score(run_dir: Path, data: Path) -> dict[str, Any]:
    """Predictions of a run on the evaluation file: per-bin accuracy with the interval counted by star."""
    model = load_model(run_dir)
    p = predict_dataset(model, data)
    with h5py.File(data, "r") as h:
        tid = np.array(decode(h["template_id"][:]), dtype=object)[p["rows"]]
    fgk = (p["label"] >= 0) & (p["label"] < 3)
    # a four-class answer 'other' on an F/G/K star is wrong: pred 3 != label
    pred = np.where(p["pred"] < 0, 3, p["pred"])
    cells = source_clustered_accuracy(p["label"][fgk], pred[fgk], p["snr_bin"][fgk], tid[fgk])
    return {
        "cells": cells,
        "label": p["label"][fgk].tolist(),
        "pred": pred[fgk].tolist(),
        "snr_bin": p["snr_bin"][fgk].tolist(),
        "star": tid[fgk].tolist(),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Seeds of one arm: per bin the mean and sd of the seeds' accuracies and the pooled clustered cell."""
    out: dict[str, Any] = {}
    pooled = source_clustered_accuracy(
        np.concatenate([r["label"] for r in runs]),
        np.concatenate([r["pred"] for r in runs]),
        np.concatenate([r["snr_bin"] for r in runs]),
        np.concatenate([r["star"] for r in runs]),
    )
    for b in ["all", *SNR_BIN_NAMES]:
        accs = [(r["cells"]["all"] if b == "all" else r["cells"]["bins"].get(b, {})).get("accuracy") for r in runs]
        accs = [a for a in accs if a is not None]
        cell = pooled["all"] if b == "all" else pooled["bins"].get(b, {})
        out[b] = {
            "mean": float(np.mean(accs)) if accs else None,
            "sd": float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
            "n_seeds": len(accs),
            "pooled_accuracy": cell.get("accuracy"),
            "pooled_ci95_by_star": cell.get("accuracy_ci95_by_source"),
            "n_renders": cell.get("n"),
            "n_stars": cell.get("n_sources"),
        }
    return out


def paired_by_star(a: np.ndarray, b: np.ndarray, star: np.ndarray) -> dict[str, Any]:
    """Accuracy of ``a`` minus that of ``b`` on the same renders, with a 95 % interval by star.

    ``a``, ``b``: right (1) or wrong (0) per render; ``star``: the render's source star. The interval is the
    cluster bootstrap of :func:`drcnet.metrics.clustered_accuracy_interval` applied to the per-render
    differences (stars drawn with replacement, each bringing all its renders, of every seed).
    """
    diff = a.astype(float) - b.astype(float)
    same = bool(np.all(diff == diff[0]))  # no spread: the bootstrap's fallback (a Wilson interval) would not fit
    ci = [float(diff[0])] * 2 if same else clustered_accuracy_interval(diff, star)
    return {"diff": float(diff.mean()), "ci95_by_star": ci, "n_renders": int(diff.size), "n_stars": len(set(star))}


def paired(runs: dict[str, list[dict[str, Any]]], against: Sequence[str] = ("rcnet-optimal", "rcnet-boxcar")) -> dict:
    """Every arm minus each 1D arm in ``against``, per S/N_r bin, on the same renders of the same seeds.

    Raises
    ------
    SystemExit
        Two arms' runs of one seed were not scored on the same renders (the files differ).
    """

    def stacked(arm: str) -> dict[str, np.ndarray]:
        rs = sorted(runs[arm], key=lambda r: r.get("seed", 0))
        return {k: np.concatenate([np.asarray(r[k]) for r in rs]) for k in ("label", "pred", "snr_bin", "star")}

    out: dict[str, Any] = {}
    for ref in against:
        if ref not in runs:
            continue
        r = stacked(ref)
        for arm in runs:
            if arm == ref or len(runs[arm]) != len(runs[ref]):
                continue
            x = stacked(arm)
            if not (np.array_equal(x["star"], r["star"]) and np.array_equal(x["label"], r["label"])):
                raise SystemExit(f"{arm} and {ref} were not scored on the same renders")
            cells = {}
            for i, b in enumerate(["all", *SNR_BIN_NAMES]):
                # snr_bin holds the bin's index in SNR_BIN_NAMES (drcnet.conventions)
                m = np.ones(len(r["star"]), bool) if b == "all" else r["snr_bin"] == i - 1
                if m.any():
                    cells[b] = paired_by_star(
                        x["pred"][m] == x["label"][m], r["pred"][m] == r["label"][m], r["star"][m]
                    )
            out[f"{arm} - {ref}"] = cells
    return out


def paired_markdown(diffs: dict[str, Any]) -> str:
    """The paired differences as a table: points, [95 % interval by star]."""
    bins = list(SNR_BIN_NAMES)
    lines = ["| difference (points) | " + " | ".join(f"S/N_r {b}" for b in bins) + " |", "|---|" + "---|" * len(bins)]
    for name, cells in diffs.items():
        row = []
        for b in bins:
            c = cells.get(b)
            row.append(
                "-" if c is None else
                f"{100 * c['diff']:+.1f} [{100 * c['ci95_by_star'][0]:+.1f}, {100 * c['ci95_by_star'][1]:+.1f}]"
            )  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def markdown(summary: dict[str, Any], n_seeds: int) -> str:
    bins = list(SNR_BIN_NAMES)
    lines = ["| arm | input | " + " | ".join(f"S/N_r {b}" for b in bins) + " |", "|---|---|" + "---|" * len(bins)]
    for arm, by in summary.items():
        model, file = ARMS[arm]
        inp = {"drcnet": "2D stripes", "ffcnn": "2D stripes", "hybrid": "2D stripes + 1D boxcar"}.get(
            model, f"1D {file}"
        )
        cells = []
        for b in bins:
            c = by[b]
            if c["mean"] is None:
                cells.append("-")
                continue
            sd = f" +- {c['sd']:.3f}" if c["sd"] is not None else ""
            ci = c["pooled_ci95_by_star"]
            ci_txt = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
            cells.append(f"{c['mean']:.3f}{sd}{ci_txt} ({c['n_stars']} stars)")
        lines.append(f"| {arm} | {inp} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"mean over {n_seeds} seed(s) +- their sd; [95 % interval of the seeds' pooled predictions, "
        "counted by star]; held-out real LAMOST stars (val + test splits), nominal instrument."
    )
    return "\n".join(lines)


def _no_paths(config: dict[str, Any]) -> dict[str, Any]:
    """The command's options with its paths reduced to file names (a results file holds no machine's paths)."""
    paths = ("workdir", "out", "data_root", "merge")
    return {
        k: (",".join(Path(p).name for p in str(v).split(",")) if k in paths and v else v) for k, v in config.items()
    }


def merge(parts: list[Path], out: Path) -> int:
    """One table from results files of the same benchmark split by ``--arms`` (e.g. run on two cores at once)."""
    loaded = [json.loads(p.read_text()) for p in parts]
    # the same files and budget; the seeds may be split between parts (each arm is summarised over its own)
    keys = ("n_train", "n_val", "n_eval", "preset", "epochs", "pop_seed", "eval_seed")
    for p, d in zip(parts[1:], loaded[1:], strict=True):
        differ = [k for k in keys if d["config"][k] != loaded[0]["config"][k]]
        if differ:
            raise SystemExit(f"{p}: not the same benchmark as {parts[0]} ({', '.join(differ)} differ)")
    per_run = [r for d in loaded for r in d["runs"]]
    seen: dict[tuple[str, int], Path] = {}
    for p, d in zip(parts, loaded, strict=True):
        for r in d["runs"]:
            if (r["arm"], r["seed"]) in seen:
                raise SystemExit(f"{r['arm']} seed {r['seed']} is in both {seen[(r['arm'], r['seed'])]} and {p}")
            seen[(r["arm"], r["seed"])] = p
    for r in per_run:
        if "scored" not in r:
            raise SystemExit(f"run {r['arm']} seed {r['seed']} holds no predictions (written before --merge existed)")
    config = {
        **_no_paths(loaded[0]["config"]),
        "arms": ",".join(a for a in ARMS if any(r["arm"] == a for r in per_run)),
        "seeds": ",".join(sorted({str(r["seed"]) for r in per_run})),
        "merged": [p.name for p in parts],
    }
    timing = {"parts": [d["timing"] for d in loaded]}
    report(per_run, config, loaded[0]["files"], timing, sum(d["runtime_s"] for d in loaded), out)
    return 0


def report(
    per_run: list[dict[str, Any]],
    config: dict[str, Any],
    files: dict[str, str],
    timing: dict[str, Any],
    runtime_s: float,
    out: Path,
) -> None:
    """Summarise the runs (each with its ``scored`` predictions) per arm, pair the arms, write JSON and table."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in per_run:
        runs.setdefault(r["arm"], []).append({"cells": r["cells"], "seed": r["seed"], **r["scored"]})
    order = [a for a in ARMS if a in runs]
    summary = {a: summarise(runs[a]) for a in order}
    diffs = paired({a: runs[a] for a in order})
    table = markdown(summary, max((len(rs) for rs in runs.values()), default=0))
    if diffs:
        table += "\n\nPaired on the same renders (seeds pooled), arm minus a 1D arm:\n\n" + paired_markdown(diffs)
    payload = {
        "provenance": provenance(config, seed=config["pop_seed"]),
        "config": config,
        "files": files,
        "timing": timing,
        "runtime_s": runtime_s,
        "runs": per_run,
        "summary": summary,
        "paired": diffs,
        "table_markdown": table,
    }
    write_json_atomic(out, payload)
    write_text_atomic(out.with_suffix(".md"), table + "\n")
    print(table)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="DRC-Net vs FFCNN vs RC-Net (boxcar, optimal): same data, budget, seeds")
    ap.add_argument("--workdir", required=True, help="population, evaluation files and run folders go here")
    ap.add_argument("--n-train", type=int, default=8000)
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--n-eval", type=int, default=2400, help="renders of the held-out real stars")
    ap.add_argument("--preset", default="robust")
    ap.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--pop-seed", type=int, default=7)
    ap.add_argument("--eval-seed", type=int, default=11)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1, help="rendering processes")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_compare.json"))
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="score a run folder of the same arm, seed, preset, epochs and file that completed before instead of "
        "training it again (a benchmark split by --arms or stopped part-way)",
    )
    ap.add_argument(
        "--merge",
        default=None,
        help="comma-separated results of runs split by --arms (same files and seeds): one table of all their arms",
    )
    args = ap.parse_args(argv)
    if args.merge:
        return merge([Path(p) for p in args.merge.split(",") if p], Path(args.out))
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    root = Path(args.data_root) if args.data_root else default_data_root()
    files, timing = build_files(work, root, args)
    seeds = [int(s) for s in args.seeds.split(",") if s != ""]
    arms = [a for a in args.arms.split(",") if a]
    per_run: list[dict[str, Any]] = []
    for arm in arms:
        model, file = ARMS[arm]
        for seed in seeds:
            out = work / f"{arm}_seed{seed}"
            t = time.perf_counter()
            cfg = TrainConfig(
                model=model,
                data=str(files[file]),
                out=str(out),
                preset=args.preset,
                epochs=args.epochs,
                seed=seed,
                device="cpu",
                threads=args.threads,
                workers=0,
                progress=False,
            )
            info = _completed(out, cfg) if args.reuse else None
            reused = info is not None
            if info is None:
                info = train(cfg, overwrite=True)
            t_train = time.perf_counter() - t
            r = score(out, files["eval_" + file])
            per_run.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "train_s": None if reused else t_train,
                    "reused": reused,
                    "epochs_run": info.get("epochs_run", info.get("state", {}).get("epoch")),
                    "n_train": info.get("n_train"),
                    "status": info.get("status"),
                    "cells": r["cells"],
                    "scored": {k: r[k] for k in ("label", "pred", "snr_bin", "star")},
                }
            )
            print(f"{arm} seed {seed}: {t_train:.0f} s, all {r['cells']['all']['accuracy']:.3f}", flush=True)
    runtime_s = time.perf_counter() - t0
    # names in --workdir, no paths of this machine
    report(per_run, _no_paths(vars(args)), {k: v.name for k, v in files.items()}, timing, runtime_s, Path(args.out))
    print(json.dumps({"runtime_s": runtime_s, "timing": timing}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
