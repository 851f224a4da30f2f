import numpy as np
import torch

from drcnet.instrument import FiberConfig
from drcnet.models import load_run as load_model
from drcnet.models.drcnet import SpatialReduction
from drcnet.models.run_folder import pretrained_dir
from drcnet.simulate.optics import profile_integral

P = profile_integral(np.arange(-5, 6).astype(float), FiberConfig())


def cos(e):
    e = e / np.linalg.norm(e)
    return float(e @ P / np.linalg.norm(P))


m = load_model(pretrained_dir("drcnet"))[0]
with torch.no_grad():
    for a, n in enumerate(("blue", "red")):
        e = m.reduce[a].composed()[0][:, 0].numpy()
        print(
            n,
            "trained |cos(profile, fiber profile)|",
            round(abs(cos(e)), 3),
            "gain on fiber light (|w.P|/|w|max)",
            round(abs(e @ P) / np.abs(e).max(), 3),
        )
    cs = []
    for s in range(200):
        torch.manual_seed(s)
        r = SpatialReduction()
        cs.append(abs(cos(r.composed()[0][:, 0].numpy())))
    print(
        "random init |cos|: median",
        round(np.median(cs), 3),
        "10th pct",
        round(np.percentile(cs, 10), 3),
        "90th",
        round(np.percentile(cs, 90), 3),
    )
