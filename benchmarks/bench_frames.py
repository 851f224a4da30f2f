"""Benchmark raw exposures: simulation speed, reduction speed and memory, and classification consistency.

Targets (issue: raw exposures):

* one spectrograph (blue + red, 250 fibers) from raw FITS files to the catalogue in <= 5 s on 2 cores once
  the model is loaded; memory <= 2 GB while reducing;
* simulating one spectrograph's exposure set (2 x (5 bias + flat + arc + science)) in <= 30 s.

``speed`` times, in this order: a plain reference (reading the 16 raw files with astropy, the I/O floor),
the simulation, then - in a child process, so its peak memory is its own - loading a model, the reduction,
the classification and the catalogue. Ratios against the reference are printed along with wall and CPU time.

``accuracy`` is the expensive consistency check: a model trained on ``drcnet simulate`` data classifies
(a) the reduced stripes of a simulated exposure and (b) the same objects (template, RV, E(B-V), magnitude,
airmass, fiber and neighbours) rendered by the dataset path (``ForwardModel.render_object``); the
accuracies must agree within 3 points.

Usage::

    DRCNET_DATA=../shared/data .venv/bin/python benchmarks/bench_frames.py speed [--run RUN_DIR] [--model ffcnn]
    DRCNET_DATA=../shared/data .venv/bin/python benchmarks/bench_frames.py accuracy --run RUN_DIR \\
        --dataset TRAIN.h5 [--spectrographs 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
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
    from drcnet.workflows.classify_exposure import load_predictor

    if run is not None:
        return load_predictor(run)[0]
    import torch

    from drcnet.data.normalize import prepare_input
    from drcnet.models import create_model

    torch.manual_seed(0)
    model = create_model(model_name).eval()

    def predict(stripes, flux1d, sky1d):
        out = []
        with torch.inference_mode():
            for s in range(0, len(stripes), 64):
                x = prepare_input(model.input_kind, stripes=stripes[s:s + 64].astype(np.float32),
                                  flux1d=flux1d[s:s + 64], sky1d=sky1d[s:s + 64])
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


def speed(args: argparse.Namespace) -> int:
    from astropy.io import fits

    from drcnet.simulate.exposure import ExposureConfig, simulate_exposure
    from drcnet.paths import data_root

    root = data_root()
    templates = _templates(root)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.out or tmp) / "exposure"
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
        proc = ctx.Process(target=_child, args=(str(folder), str(args.run) if args.run else None, args.model,
                                                str(Path(tmp) / "catalogue.csv"), queue))
        proc.start()
        r = queue.get()
        proc.join()
    print(f"reference: read the {len(files)} raw frames with astropy: {t_ref:.2f} s")
    print(f"simulate one spectrograph (16 frames, 2 workers): {t_sim:.1f} s wall, {c_sim:.1f} s CPU "
          f"(target <= 30 s); x{t_sim / t_ref:.0f} the reference; in-function {sim.seconds:.1f} s")
    to_cat = r["reduce"] + r["classify"] + r["write_catalogue"]
    print(f"model ({args.run or 'untrained ' + args.model}) loaded in {r['load_model']:.1f} s")
    print(f"raw FITS -> catalogue: {to_cat:.2f} s (target <= 5 s) = reduce {r['reduce']:.2f} s + classify "
          f"{r['classify']:.2f} s + write {r['write_catalogue']:.2f} s; {r['cpu']:.1f} s CPU; "
          f"x{to_cat / t_ref:.1f} the reference")
    print(f"peak memory of the reducing process: {r['peak_rss_mib']:.0f} MiB (target <= 2048, model included); "
          f"{r['rows']} catalogue rows")
    return 0


def accuracy(args: argparse.Namespace) -> int:
    from drcnet import CLASSES
    from drcnet.data.schema import SNR_BIN_NAMES, snr_bin
    from drcnet.workflows.classify_exposure import classify_exposure, load_predictor
    from drcnet.simulate.exposure import ExposureConfig, simulate_exposure
    from drcnet.paths import data_root
    from drcnet.simulate.render import ForwardModel
    from drcnet.simulate.site import Site

    root = data_root()
    templates = _templates(root, args.dataset)
    predictor, info = load_predictor(args.run)
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
    print(f"accuracy: reduced frames {acc_f:.4f}; the same objects by `drcnet simulate`'s renderer "
          f"{', '.join(f'{a:.4f}' for a in acc_sims)} (mean {acc_s:.4f}, spread {100 * np.ptp(acc_sims):.2f} points "
          f"over {args.realisations} renderings)")
    print(f"difference frames - simulate: {100 * (acc_f - acc_s):+.2f} points (target |diff| <= 3)")
    bins_f = snr_bin(np.asarray(t["snr_r"], float)[idx])
    for b, name in enumerate(SNR_BIN_NAMES):
        sel = ok & (bins_f == b)
        if sel.any():
            sims = np.mean([np.mean(ps[sel] == truth[sel]) for ps in preds_sim])
            print(f"  S/N_r {name:>6}: n={int(sel.sum()):4d}  frames {np.mean(pred_frames[sel] == truth[sel]):.3f}  "
                  f"simulate {sims:.3f}")
    agree_fs = np.mean([np.mean(pred_frames[ok] == ps[ok]) for ps in preds_sim])
    agree_ss = np.mean([np.mean(preds_sim[i][ok] == preds_sim[j][ok]) for i in range(len(preds_sim))
                        for j in range(i + 1, len(preds_sim))]) if len(preds_sim) > 1 else float("nan")
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
    a = sub.add_parser("accuracy")
    a.add_argument("--run", type=Path, required=True)
    a.add_argument("--dataset", type=Path, default=None, help="the training dataset: use its test-split templates")
    a.add_argument("--spectrographs", type=int, default=2)
    a.add_argument("--seed", type=int, default=1)
    a.add_argument("--realisations", type=int, default=3, help="renderings of the objects by the dataset path")
    a.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    return speed(args) if args.what == "speed" else accuracy(args)


if __name__ == "__main__":
    sys.exit(main())
