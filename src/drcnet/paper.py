"""Published numbers of Zhang et al. (2023) that the report sets our results beside (REFERENCE.md section 1)."""

from __future__ import annotations

PAPER_TABLE3: dict[str, dict[str, float]] = {
    # model: {F_P, F_R, F_F1, G_P, G_R, G_F1, K_P, K_R, K_F1, ACC}; test set, S/N_r > 30
    "drcnet": {
        "F_P": 0.930,
        "F_R": 0.816,
        "F_F1": 0.869,
        "G_P": 0.835,
        "G_R": 0.925,
        "G_F1": 0.878,
        "K_P": 0.869,
        "K_R": 0.785,
        "K_F1": 0.825,
        "ACC": 0.866,
    },
    "ffcnn": {
        "F_P": 0.876,
        "F_R": 0.763,
        "F_F1": 0.816,
        "G_P": 0.792,
        "G_R": 0.903,
        "G_F1": 0.843,
        "K_P": 0.845,
        "K_R": 0.742,
        "K_F1": 0.807,
        "ACC": 0.829,
    },
    "rcnet": {
        "F_P": 0.767,
        "F_R": 0.948,
        "F_F1": 0.848,
        "G_P": 0.929,
        "G_R": 0.795,
        "G_F1": 0.857,
        "K_P": 0.846,
        "K_R": 0.917,
        "K_F1": 0.880,
        "ACC": 0.860,
    },
}
PAPER_NAMES: dict[str, str] = {"drcnet": "DRC-Net", "ffcnn": "FFCNN", "rcnet": "RC-Net"}
PAPER_TABLE1: dict[str, tuple[int, int, int, int]] = {
    "train": (4840, 0, 0, 0),
    "val": (605, 0, 0, 0),
    "test": (605, 461, 436, 1042),
}
PAPER_DRC_MINUS_RC: dict[str, float] = {">30": 0.6, "20-30": -6.6, "10-20": 0.4, "<10": 6.5}
"""DRC-Net minus RC-Net accuracy per S/N_r bin, in points (the paper's text on Figure 7 / Tables 4-5)."""
