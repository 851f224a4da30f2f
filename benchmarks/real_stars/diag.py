"""Diagnose per-arm collapse of a DRC-Net run on a dataset file."""

import sys

import h5py
import numpy as np
import torch

from drcnet.data.normalize import zscore_stripes
from drcnet.models import load_run as load_model

run, data = sys.argv[1], sys.argv[2]
model = load_model(run)[0]
model.eval()
model.fast = False
with h5py.File(data) as h:
    st = h["stripes"][:256].astype(np.float32)
    y = h["label"][:256]
    sky = h["sky1d"][:256]
    fl = h["flux1d"][:256]
x = torch.from_numpy(zscore_stripes(st))
with torch.no_grad():
    for a, name in enumerate(("blue", "red")):
        red = model.reduce[a]
        e, b = red.composed()
        prof = e[:, 0].numpy()
        print(
            name,
            "composed 11-row profile:",
            np.round(prof / np.abs(prof).max(), 2),
            "sum/|max|",
            round(float(prof.sum() / np.abs(prof).max()), 2),
        )
        r = red(x[:, a : a + 1])
        h = r
        dead = []
        for m in model.backbones[a].blocks:
            h = m(h)
            dead.append(float((h.amax(dim=(0, 2)) <= 0).float().mean()))
        pre = model.backbones[a].fc(h.flatten(1))
        f = torch.relu(pre)
        print(
            f"  reduced-seq std over objects (mean over px): {r.std(0).mean():.4f}; per-object std along px: {r.std(-1).mean():.4f}"
        )
        print("  dead channel fraction per residual block:", np.round(dead, 2))
        print(
            f"  128-d feature: mean std over objects {f.std(0).mean():.4f}; dead units (never >0): {(f.amax(0) <= 0).float().mean():.3f}"
        )
    # sky-line dominance of the raw stripes: share of z-scored stripe variance from sky
    for a, name in enumerate(("blue", "red")):
        star = fl[:, a] - sky[:, a]
        s_sky = sky[:, a]
        print(
            f"{name}: median ratio (sky1d peak / star median) {np.median(s_sky.max(1) / np.maximum(np.median(star, 1), 1e-3)):.1f};"
            f" share of stripe variance from sky (var(sky1d)/var(flux1d)) {np.median(s_sky.var(1) / fl[:, a].var(1)):.2f}"
        )
