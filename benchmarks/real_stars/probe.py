import sys

import h5py
import numpy as np
import torch
from scipy.ndimage import median_filter

from drcnet.data.normalize import zscore_stripes
from drcnet.instrument import FiberConfig
from drcnet.simulate.optics import profile_integral

torch.set_num_threads(1)
P = profile_integral(np.arange(-5, 6).astype(float), FiberConfig())
with h5py.File(sys.argv[1]) as h:  # a population file from `drcnet simulate-population`
    N = 2500
    st = h["stripes"][:N].astype(np.float32)
    y = h["label"][:N].astype(int)
    snr = h["snr_r"][:N]
    f1 = h["flux1d"][:N] - h["sky1d"][:N]
sel = snr > 20
tr = np.arange(N) < 1900
te = ~tr


def fit(X, name):
    X = (X - X[tr].mean(0)) / (X[tr].std(0) + 1e-6)
    Xt = torch.tensor(X, dtype=torch.float32)
    yt = torch.tensor(y)
    lin = torch.nn.Linear(X.shape[1], 3)
    opt = torch.optim.Adam(lin.parameters(), 1e-3, weight_decay=1e-3)
    for _ in range(300):
        opt.zero_grad()
        l = torch.nn.functional.cross_entropy(lin(Xt[tr]), yt[tr])
        l.backward()
        opt.step()
    p = lin(Xt).argmax(1).numpy()
    print(f"{name:45s} test acc all {np.mean(p[te] == y[te]):.3f}  S/N>20 {np.mean(p[te & sel] == y[te & sel]):.3f}")


z = zscore_stripes(st)
for a, arm in [(1, "red")]:
    seq = np.einsum("naij,i->naj", z, P)[:, a]
    seq_cn = seq / median_filter(seq, size=(1, 101))  # continuum-normalised
    fit(seq, f"{arm}: raw stripe, profile-weighted (sky in)")
    d = f1[:, a]
    fit(d / median_filter(d, size=(1, 101)), f"{arm}: sky-subtracted 1D, continuum-normalised")
