"""Accuracy by S/N bin, source, luminosity class, and the arm-ablation check, for one run on one file.

usage: eval9.py RUN DATA [--split test] [--ablate] [--labels-from-population]
"""

import argparse
import json

import h5py
import numpy as np
import torch

from drcnet.data.schema import decode
from drcnet.data.torch_dataset import SpectraDataset
from drcnet.models import load_run as load_model

ap = argparse.ArgumentParser()
ap.add_argument("run")
ap.add_argument("data")
ap.add_argument("--split", default="test")
ap.add_argument("--ablate", action="store_true")
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--out", default=None)
a = ap.parse_args()
torch.set_num_threads(a.threads)
model = load_model(a.run)[0]
model.eval()
ds = SpectraDataset(a.data, "stripes", a.split, labelled_only=True)
with h5py.File(a.data) as h:
    tid = np.array(decode(h["template_id"][:]))[ds.rows]
    tt = {
        k: decode(h["templates/" + k][:]) if h["templates/" + k].dtype.kind in "SO" else h["templates/" + k][:]
        for k in h["templates"]
    }
    ebv = h["params/ebv"][:][ds.rows]
lum_of = dict(zip(tt["template_id"], tt.get("lumclass", [""] * len(tt["template_id"]))))
mk_of = dict(zip(tt["template_id"], tt.get("mk_class", tt["cls"])))
gen = torch.Generator().manual_seed(0)


def run(mode):
    preds = []
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=False)
    with torch.inference_mode():
        for x, _y, *_ in loader:
            if mode is not None:
                x = x.clone()
                x[:, mode] = torch.randn(x[:, mode].shape, generator=gen)  # z-scored: noise of the same mean/std
            preds.append(model(x).argmax(1).numpy())
    return np.concatenate(preds)


y = ds.labels
snr = ds.snr_r


def bins(p):
    out = {}
    for name, sel in (
        (">30", snr > 30),
        ("20-30", (snr > 20) & (snr <= 30)),
        ("10-20", (snr > 10) & (snr <= 20)),
        ("<10", snr <= 10),
        ("all", snr > -1),
    ):
        out[name] = (round(float((p[sel] == y[sel]).mean()), 4), int(sel.sum())) if sel.any() else (None, 0)
    return out


p = run(None)
res = {"n": int(len(y)), "by_snr": bins(p)}
src = np.array([t.split(":")[0] for t in tid])
lum = np.array([lum_of.get(t, "") or "?" for t in tid])
hi = snr > 30
res["by_source_snr>30"] = {
    s: (round(float((p[hi & (src == s)] == y[hi & (src == s)]).mean()), 4), int((hi & (src == s)).sum()))
    for s in sorted(set(src))
}
res["by_source_lum_snr>30"] = {
    f"{s}:{l}": (round(float((p[m] == y[m]).mean()), 4), int(m.sum()))
    for s in sorted(set(src))
    for l in sorted(set(lum))
    for m in [hi & (src == s) & (lum == l)]
    if m.sum() > 0
}
res["by_lum_snr>30"] = {
    l: (round(float((p[hi & (lum == l)] == y[hi & (lum == l)]).mean()), 4), int((hi & (lum == l)).sum()))
    for l in sorted(set(lum))
}
mk = np.array(["FGK".find(mk_of.get(t, "?")) for t in tid])
res["acc_vs_mk_labels_snr>30"] = round(float((p[hi] == mk[hi]).mean()), 4)
res["by_ebv_snr>30"] = {
    r: (round(float((p[m] == y[m]).mean()), 4), int(m.sum()))
    for r, m in (("<0.1", hi & (ebv < 0.1)), ("0.1-0.3", hi & (ebv >= 0.1) & (ebv < 0.3)), (">=0.3", hi & (ebv >= 0.3)))
    if m.sum()
}
n_out = int(getattr(model.config, "n_classes", 3))
cm = np.zeros((max(int(y.max()) + 1, 3), n_out), int)
for t_, q in zip(y, p):
    cm[t_, q] += 1
res["confusion(rows true F,G,K[,other]; columns predicted)"] = cm.tolist()
if n_out == 4:
    res["called_other_by_snr"] = {
        k: round(float((p[m] == 3).mean()), 4) for k, m in (("all", snr > -1), (">20", snr > 20)) if m.any()
    }
if a.ablate:
    res["ablate_blue_noise"] = bins(run(0))
    res["ablate_red_noise"] = bins(run(1))
print(json.dumps(res, indent=1))
if a.out:
    json.dump(res, open(a.out, "w"), indent=1)
