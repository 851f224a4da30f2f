import sys

import torch

from drcnet.data.torch_dataset import SpectraDataset
from drcnet.models import load_run as load_model

torch.set_num_threads(1)
run, data = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 300
which = sys.argv[4] if len(sys.argv) > 4 else "last"
m = load_model(run, which=which)[0]
m.eval()
ds = SpectraDataset(data, "stripes", "val", labelled_only=True)
x = torch.stack([ds[i][0] for i in range(n)])
y = torch.tensor(ds.labels[:n])
with torch.no_grad():
    f = m.features(x)
    acc = (m(x).argmax(1) == y).float().mean().item()
    out = {
        "acc": round(acc, 3),
        "feat_std": [round(float(f[:, a].std(0).mean()), 3) for a in range(2)],
        "feat_mean_abs": [round(float(f[:, a].abs().mean()), 3) for a in range(2)],
        "dead_units": [round(float((f[:, a].amax(0) <= 0).float().mean()), 3) for a in range(2)],
    }
    if m.aux is not None:
        out["aux_acc"] = [round(float((m.aux[a](f[:, a]).argmax(1) == y).float().mean()), 3) for a in range(2)]
    for a in range(2):
        xa = x.clone()
        xa[:, a] = torch.randn_like(xa[:, a])
        out[f"acc_arm{a}_noise"] = round(float((m(xa).argmax(1) == y).float().mean()), 3)
print(out)
