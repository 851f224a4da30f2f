"""Benchmark raw exposures: simulation speed, reduction speed and memory, and classification consistency.

Targets (issue: raw exposures):

* one spectrograph (blue + red, 250 fibers) from raw FITS files to the catalogue in <= 5 s on 2 cores once
  the model is loaded; memory <= 2 GB while reducing;
* simulating one spectrograph's exposure set (2 x (5 bias + flat + arc + science)) in <= 30 s.

``speed`` times, in this order: a plain reference (reading the 16 raw files with astropy, the I/O floor),
the simulation, then - in a child process, so its peak memory is its own - loading a model, the reduction,
the classification and the catalogue. Ratios against the reference are printed along with wall and CPU time.

``speed --previous REF`` also times the previous raw-frame path (the package at git commit ``REF``, checked
out into a temporary worktree) on the same frames in the same run, interleaved with the current one, best of
``--rounds``, and prints the ratio and both peak memories.

``exposure`` times a full exposure (16 spectrographs, ~3,600 object fibers) the way a user runs it:
``drcnet frames classify --exposure DIR --out catalogue.csv`` as a whole process (imports, model, reduction,
classification, catalogue, QA page), each process's own peak memory from ``wait4``; the previous path (git
``REF``) and the current one alternate round by round and the best of ``--rounds`` of each is compared
(issue 11 targets: <= 16 s, <= 2 GB; before: 54 s, 4.5 GB). The exposure is simulated first unless
``--exposure-dir`` names one.

``accuracy`` is the expensive consistency check: a model trained on ``drcnet simulate`` data classifies
(a) the reduced stripes of a simulated exposure and (b) the same objects (template, RV, E(B-V), magnitude,
airmass, fiber and neighbours) rendered by the dataset path (``ForwardModel.render_object``); the
accuracies must agree within 3 points.

Usage::

    DRCNET_DATA=../shared/data .venv/bin/python benchmarks/bench_frames.py speed [--run RUN_DIR] [--model ffcnn] \
        [--previous 140e0c3^] [--rounds 3]
    DRCNET_DATA=../shared/data .venv/bin/python benchmarks/bench_frames.py exposure [--exposure-dir DIR] \
        [--spectrographs 16] [--run RUN_DIR] [--previous 140e0c3^] [--rounds 2] [--no-qa]
    DRCNET_DATA=../shared/data .venv/bin/python benchmarks/bench_frames.py accuracy --run RUN_DIR \\
        --dataset TRAIN.h5 [--spectrographs 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _templates(root: Path, dataset: Path | None = None) -> list:
    from drcnet.library import load_templates

    temps = load_templates([root / "spectral_libraries" / "pyhammer"], classes=("F", "G", "K")).templates
    if dataset is None:
        return temps
    import h5py

    from drcnet.data.schema import decode

    with h5py.File(dataset, "r") as h:
        ids = decode(h["templates/template_id"][:])
        split = decode(h["templates/split"][:])
    test = {i for i, s in zip(ids, split, strict=True) if s == "test"}
    chosen = [t for t in temps if t.template_id in test]
    if not chosen:
        raise SystemExit(f"{dataset}: no test-split templates found in the library")
    return chosen


def _predictor(run: Path | None, model_name: str):
    from drcnet.inference.predictor import Predictor

    if run is not None:
        return Predictor.load(run)
    import torch

    from drcnet.data.normalize import prepare_input
    from drcnet.models import create_model

    torch.manual_seed(0)
    model = create_model(model_name).eval()

    def predict(stripes, flux1d, sky1d):
        out = []
        with torch.inference_mode():
            for s in range(0, len(stripes), 64):
                x = prepare_input(
                    model.input_kind,
                    stripes=stripes[s : s + 64].astype(np.float32),
                    flux1d=flux1d[s : s + 64],
                    sky1d=sky1d[s : s + 64],
                )
                out.append(torch.softmax(model(torch.as_tensor(np.ascontiguousarray(x))), 1).numpy())
        return np.concatenate(out)

    return predict


def _child(folder: str, run: str | None, model_name: str, out: str, queue) -> None:  # type: ignore[no-untyped-def]
    import torch

    from drcnet.workflows.classify_exposure import classify_exposure

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    predictor = _predictor(Path(run) if run else None, model_name)
    t_load = time.perf_counter() - t0
    c0 = _cpu()
    res = classify_exposure(None, folder, out, predictor=predictor)
    cpu = _cpu() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    queue.put({"load_model": t_load, **res.timings, "cpu": cpu, "peak_rss_mib": rss, "rows": len(res.table)})


PREVIOUS = "140e0c3^"
"""The raw-frame path before issue 11's work on it (the parent of its first commit)."""
REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def previous_tree(ref: str | None):  # type: ignore[no-untyped-def]
    """The package's ``src`` folder at git ``ref``, in a temporary worktree (None: nothing)."""
    if not ref:
        yield None
        return
    tmp = Path(tempfile.mkdtemp(prefix="drcnet_prev_"))
    tree = tmp / "tree"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), ref], check=True, capture_output=True
    )
    try:
        yield tree / "src"
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
        subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], capture_output=True)


def run_measured(cmd: list[str], env: dict[str, str]) -> dict[str, object]:
    """Run ``cmd`` as a child process: wall time, CPU time and its own peak RSS (``wait4``), stdout."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024, "out": out}


def _env(src: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src) if src is not None else str(REPO / "src")
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "2")
    return env


CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(2)
import drcnet
from drcnet.workflows.classify_exposure import classify_exposure
try:  # this tree's one predictor; an older tree's loader
    from drcnet.inference.predictor import Predictor
    load = Predictor.load
except ImportError:
    from drcnet.workflows.classify_exposure import load_predictor
    load = lambda r: load_predictor(r)[0]
folder, run, out, qa = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
t0 = time.perf_counter()
predictor = load(run)
t_load = time.perf_counter() - t0
res = classify_exposure(None, folder, out, predictor=predictor, qa_dir=None if qa == "-" else qa)
print("RESULT " + json.dumps({"src": drcnet.__file__, "load_model": t_load, **res.timings, "rows": len(res.table)}))
"""


def _one_spectrograph(src: Path | None, folder: Path, run: Path, tmp: Path) -> dict[str, object]:
    r = run_measured([sys.executable, "-c", CHILD, str(folder), str(run), str(tmp / "cat.csv"), "-"], _env(src))
    got = json.loads(next(line for line in str(r["out"]).splitlines() if line.startswith("RESULT "))[7:])
    return {**r, **got, "to_cat": got["reduce"] + got["classify"] + got["write_catalogue"]}


def compare_one_spectrograph(folder: Path, run: Path, ref: str, rounds: int) -> None:
    """Raw FITS -> catalogue of one spectrograph, previous vs current path, interleaved, best of ``rounds``."""
    best: dict[str, dict[str, object]] = {}
    with previous_tree(ref) as prev_src, tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for name, src in (("previous", prev_src), ("current", None)):
                r = _one_spectrograph(src, folder, run, Path(tmp))
                if name not in best or r["to_cat"] < best[name]["to_cat"]:  # type: ignore[operator]
                    best[name] = r
    for name in ("previous", "current"):
        r = best[name]
        print(
            f"  {name:8s} ({ref if name == 'previous' else 'working tree'}): raw FITS -> catalogue "
            f"{r['to_cat']:.2f} s = reduce {r['reduce']:.2f} + classify {r['classify']:.2f} + write "
            f"{r['write_catalogue']:.2f}; process peak {r['peak_mib']:.0f} MiB; {r['rows']} rows"
        )
    print(
        f"  current / previous: x{best['previous']['to_cat'] / best['current']['to_cat']:.2f} faster "  # type: ignore[operator]
        f"(reduce x{best['previous']['reduce'] / best['current']['reduce']:.2f}); best of {rounds} "  # type: ignore[operator]
        f"interleaved rounds (target <= 1.0 s)"
    )


def speed(args: argparse.Namespace) -> int:
    from astropy.io import fits

    from drcnet.paths import data_root
    from drcnet.simulate.exposure import ExposureConfig, simulate_exposure

    root = data_root()
    templates = _templates(root)
    keep = tempfile.TemporaryDirectory()
    folder_kept = Path(args.out or keep.name) / "exposure"
    with tempfile.TemporaryDirectory() as tmp:
        folder = folder_kept
        c0, t0 = _cpu(), time.perf_counter()
        sim = simulate_exposure(ExposureConfig(seed=args.seed), templates, folder, data_root=root, workers=2)
        t_sim, c_sim = time.perf_counter() - t0, _cpu() - c0
        files = sorted(folder.glob("r*.fit"))
        t0 = time.perf_counter()
        for p in files:
            fits.getdata(p)
        t_ref = time.perf_counter() - t0
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(
            target=_child,
            args=(
                str(folder),
                str(args.run) if args.run else None,
                args.model,
                str(Path(tmp) / "catalogue.csv"),
                queue,
            ),
        )
        proc.start()
        r = queue.get()
        proc.join()
    print(f"reference: read the {len(files)} raw frames with astropy: {t_ref:.2f} s")
    print(
        f"simulate one spectrograph (16 frames, 2 workers): {t_sim:.1f} s wall, {c_sim:.1f} s CPU "
        f"(target <= 30 s); x{t_sim / t_ref:.0f} the reference; in-function {sim.seconds:.1f} s"
    )
    to_cat = r["reduce"] + r["classify"] + r["write_catalogue"]
    print(f"model ({args.run or 'untrained ' + args.model}) loaded in {r['load_model']:.1f} s")
    print(
        f"raw FITS -> catalogue: {to_cat:.2f} s (target <= 5 s) = reduce {r['reduce']:.2f} s + classify "
        f"{r['classify']:.2f} s + write {r['write_catalogue']:.2f} s; {r['cpu']:.1f} s CPU; "
        f"x{to_cat / t_ref:.1f} the reference"
    )
    print(
        f"peak memory of the reducing process: {r['peak_rss_mib']:.0f} MiB (target <= 2048, model included); "
        f"{r['rows']} catalogue rows"
    )
    if args.previous:
        from drcnet.models import DEFAULT_MODEL, pretrained_dir

        run = args.run or pretrained_dir(DEFAULT_MODEL)
        print(f"previous vs current path on the same frames ({run}):")
        compare_one_spectrograph(folder_kept, Path(run), args.previous, args.rounds)
    return 0


CLI = "from drcnet.cli import app; app()"
TIMES = re.compile(r"reduce ([0-9.]+) s, classify ([0-9.]+) s(?:, QA ([0-9.]+) s)?")


def exposure(args: argparse.Namespace) -> int:
    """A full exposure through ``drcnet frames classify`` (whole processes): previous vs current path."""
    from drcnet.models import DEFAULT_MODEL, pretrained_dir

    run = Path(args.run or pretrained_dir(DEFAULT_MODEL))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folder = args.exposure_dir
        if folder is None:
            from drcnet.paths import data_root
            from drcnet.simulate.exposure import ExposureConfig, simulate_exposure

            root = data_root()
            folder = tmp / "exposure"
            t0 = time.perf_counter()
            simulate_exposure(
                ExposureConfig(seed=args.seed, spectrographs=args.spectrographs),
                _templates(root),
                folder,
                data_root=root,
                workers=2,
            )
            print(f"simulated {args.spectrographs} spectrographs in {time.perf_counter() - t0:.0f} s")
        n_frames = len(list(Path(folder).glob("r*.fit*")))
        results: dict[str, list[dict[str, object]]] = {"previous": [], "current": []}
        with previous_tree(args.previous) as prev_src:
            for k in range(args.rounds):
                for name, src in (("previous", prev_src), ("current", None)):
                    if name == "previous" and src is None:
                        continue
                    out = tmp / f"{name}_{k}" / "catalogue.csv"
                    cmd = [
                        sys.executable,
                        "-c",
                        CLI,
                        "frames",
                        "classify",
                        str(run),
                        "--exposure",
                        str(folder),
                        "--out",
                        str(out),
                    ] + (["--no-qa"] if args.no_qa else [])
                    r = run_measured(cmd, _env(src))
                    m = TIMES.search(str(r["out"]))
                    r["stages"] = tuple(float(x) if x else 0.0 for x in m.groups()) if m else (0.0, 0.0, 0.0)
                    results[name].append(r)
                    print(
                        f"  round {k + 1} {name:8s}: {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU, "
                        f"peak {r['peak_mib']:.0f} MiB (reduce {r['stages'][0]:.1f} s, classify "  # type: ignore[index]
                        f"{r['stages'][1]:.1f} s, QA {r['stages'][2]:.1f} s)",
                        flush=True,
                    )  # type: ignore[index]
    print(
        f"full exposure: {n_frames} raw frames, `drcnet frames classify` {'without' if args.no_qa else 'with'} "
        f"the QA page, whole process, best of {args.rounds}:"
    )
    best = {name: min(rs, key=lambda r: r["wall"]) for name, rs in results.items() if rs}  # type: ignore[arg-type,return-value]
    for name, r in best.items():
        st = r["stages"]
        print(
            f"  {name:8s}: {r['wall']:.1f} s wall (reduce {st[0]:.1f}, classify {st[1]:.1f}, QA {st[2]:.1f}), "  # type: ignore[index]
            f"{r['cpu']:.1f} s CPU, peak memory {r['peak_mib']:.0f} MiB (targets <= 16 s, <= 2048 MiB)"
        )
    if "previous" in best:
        p, c = best["previous"], best["current"]
        print(
            f"  current / previous: x{p['wall'] / c['wall']:.2f} faster wall, x{p['cpu'] / c['cpu']:.2f} less CPU, "  # type: ignore[operator]
            f"x{p['peak_mib'] / c['peak_mib']:.2f} less peak memory"
        )  # type: ignore[operator]
    return 0


def accuracy(args: argparse.Namespace) -> int:
    from drcnet import CLASSES
    from drcnet.data.schema import SNR_BIN_NAMES, snr_bin
    from drcnet.inference.predictor import Predictor
    from drcnet.paths import data_root
    from drcnet.simulate.exposure import ExposureConfig, simulate_exposure
    from drcnet.simulate.render import ForwardModel
    from drcnet.simulate.site import Site
    from drcnet.workflows.classify_exposure import classify_exposure

    root = data_root()
    templates = _templates(root, args.dataset)
    predictor = Predictor.load(args.run)
    info = predictor.info
    cfg = ExposureConfig(seed=args.seed, spectrographs=args.spectrographs)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.out or tmp) / "exposure"
        sim = simulate_exposure(cfg, templates, folder, data_root=root, workers=2)
        res = classify_exposure(None, folder, Path(tmp) / "catalogue.csv", predictor=predictor)
    t = res.table
    # the same objects through the dataset path: same source, fiber and neighbours; its own geometry draw and
    # noise, so it is rendered --realisations times to show how much two renderings of one plate differ anyway
    model = ForwardModel(cfg.instrument, Site.load(cfg.instrument, root), templates)
    keys, truth, sources = [], [], []
    for sp in sim.spectrographs:
        plan = sp.plan
        for f, src in enumerate(plan.sources):
            if src is None or plan.fibertype[f] not in ("Obj", "F-std"):
                continue
            nb = tuple(plan.sources[k] if 0 <= k < len(plan.sources) else None for k in (f - 1, f + 1))
            keys.append((sp.spid, f + 1))
            truth.append(templates[src.template].cls)
            sources.append((sp.spid, f, src, nb))
    truth = np.array(truth)
    preds_sim = []
    for k in range(args.realisations):
        stripes, flux, sky = [], [], []
        for spid, f, src, nb in sources:
            r = model.render_object(src, f, np.random.default_rng([args.seed, k, spid, f]), neighbours=nb)
            stripes.append(np.stack([a.stripe for a in r.arms]).astype(np.float16))
            flux.append(np.stack([a.flux1d for a in r.arms]))
            sky.append(np.stack([a.sky1d for a in r.arms]))
        p = predictor(np.stack(stripes), np.stack(flux).astype(np.float32), np.stack(sky).astype(np.float32))
        preds_sim.append(np.array([CLASSES[i] for i in p.argmax(1)]))
    row = {(int(s), int(f)): i for i, (s, f) in enumerate(zip(t["spid"], t["fiber"], strict=True))}
    idx = np.array([row[k] for k in keys])
    pred_frames = np.asarray(t["pred"]).astype(str)[idx]
    ok = pred_frames != ""
    acc_f = float(np.mean(pred_frames[ok] == truth[ok]))
    acc_sims = np.array([np.mean(ps[ok] == truth[ok]) for ps in preds_sim])
    acc_s = float(acc_sims.mean())
    print(f"model {info['model']} ({args.run}); {int(ok.sum())} objects on {args.spectrographs} spectrograph(s)")
    print(
        f"accuracy: reduced frames {acc_f:.4f}; the same objects by `drcnet simulate`'s renderer "
        f"{', '.join(f'{a:.4f}' for a in acc_sims)} (mean {acc_s:.4f}, spread {100 * np.ptp(acc_sims):.2f} points "
        f"over {args.realisations} renderings)"
    )
    print(f"difference frames - simulate: {100 * (acc_f - acc_s):+.2f} points (target |diff| <= 3)")
    bins_f = snr_bin(np.asarray(t["snr_r"], float)[idx])
    for b, name in enumerate(SNR_BIN_NAMES):
        sel = ok & (bins_f == b)
        if sel.any():
            sims = np.mean([np.mean(ps[sel] == truth[sel]) for ps in preds_sim])
            print(
                f"  S/N_r {name:>6}: n={int(sel.sum()):4d}  frames {np.mean(pred_frames[sel] == truth[sel]):.3f}  "
                f"simulate {sims:.3f}"
            )
    agree_fs = np.mean([np.mean(pred_frames[ok] == ps[ok]) for ps in preds_sim])
    agree_ss = (
        np.mean(
            [
                np.mean(preds_sim[i][ok] == preds_sim[j][ok])
                for i in range(len(preds_sim))
                for j in range(i + 1, len(preds_sim))
            ]
        )
        if len(preds_sim) > 1
        else float("nan")
    )
    print(f"same class predicted: frames vs a rendering {100 * agree_fs:.1f} %, two renderings {100 * agree_ss:.1f} %")
    return 0 if abs(acc_f - acc_s) <= 0.03 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--run", type=Path, default=None, help="training run folder (default: an untrained --model)")
    s.add_argument("--model", default="drcnet", help="untrained model to time when no --run is given")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, default=None, help="keep the exposure here")
    s.add_argument("--previous", default=None, help=f"also time the path at this git commit (e.g. {PREVIOUS})")
    s.add_argument("--rounds", type=int, default=3, help="interleaved rounds for --previous (best of)")
    e = sub.add_parser("exposure")
    e.add_argument("--exposure-dir", type=Path, default=None, help="an exposure folder (default: simulate one)")
    e.add_argument("--spectrographs", type=int, default=16)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--run", type=Path, default=None, help="run folder (default: the shipped default model)")
    e.add_argument("--previous", default=PREVIOUS, help="git commit of the previous path ('' to skip it)")
    e.add_argument("--rounds", type=int, default=2)
    e.add_argument("--no-qa", action="store_true", help="without the QA page")
    a = sub.add_parser("accuracy")
    a.add_argument("--run", type=Path, required=True)
    a.add_argument("--dataset", type=Path, default=None, help="the training dataset: use its test-split templates")
    a.add_argument("--spectrographs", type=int, default=2)
    a.add_argument("--seed", type=int, default=1)
    a.add_argument("--realisations", type=int, default=3, help="renderings of the objects by the dataset path")
    a.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    return {"speed": speed, "exposure": exposure, "accuracy": accuracy}[args.what](args)


if __name__ == "__main__":
    sys.exit(main())
