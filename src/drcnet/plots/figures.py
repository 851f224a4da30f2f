"""Matplotlib figures for evaluation and the report (Agg backend, PNG)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from drcnet.conventions import CLASSES  # noqa: E402
from drcnet.paper import PAPER_DRC_MINUS_RC  # noqa: E402
from drcnet.provenance import atomic_path  # noqa: E402


def save_png(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` as PNG atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def _cm_axes(ax: Any, cm: np.ndarray, title: str, classes: Sequence[str]) -> None:
    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                f"{cm[i, j]}\n{frac[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if frac[i, j] > 0.6 else "black",
            )
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)


def plot_confusions(
    panels: Mapping[str, Any], path: str | Path, suptitle: str = "", classes: Sequence[str] = CLASSES
) -> Path:
    """One confusion-matrix panel per entry of ``panels`` (title -> matrix or None), saved as PNG.

    Cells show counts and row-normalised fractions (recall on the diagonal).
    """
    items = [(k, v) for k, v in panels.items() if v is not None]
    n = max(1, len(items))
    fig, axes = plt.subplots(1, n, figsize=(3.1 * n, 3.2), squeeze=False)
    for ax, (title, cm) in zip(axes[0], items):
        _cm_axes(ax, np.asarray(cm), title, classes)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


def plot_accuracy_vs_snr(
    curves: Mapping[str, Sequence[float | None]],
    bin_names: Sequence[str],
    path: str | Path,
    paper_diff: Mapping[str, float] = PAPER_DRC_MINUS_RC,
    diff_pair: tuple[str, str] | None = None,
    intervals: Mapping[str, Sequence[Sequence[float] | None]] | None = None,
) -> Path:
    """Figure 7: test accuracy per S/N_r bin, one line per model; DRC-Net minus RC-Net annotated.

    Parameters
    ----------
    curves
        Label -> accuracy per bin (fractions; ``None`` where a bin has no objects).
    bin_names
        Bin labels in plotting order (high to low S/N).
    paper_diff
        Published DRC-Net minus RC-Net differences (points) per bin.
    diff_pair
        Labels of the (DRC-Net, RC-Net) curves whose difference is compared with the paper's.
    intervals
        Label -> (low, high) accuracy interval per bin (fractions; ``None`` where unknown), drawn as
        error bars.
    """
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(6.4, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    x = np.arange(len(bin_names))
    for k, (label, acc) in enumerate(curves.items()):
        y = np.array([np.nan if a is None else 100 * a for a in acc], dtype=float)
        ci = (intervals or {}).get(label)
        if ci is None:
            ax.plot(x, y, marker="o", label=label)
            continue
        lo = np.array([np.nan if c is None else 100 * c[0] for c in ci], dtype=float)
        hi = np.array([np.nan if c is None else 100 * c[1] for c in ci], dtype=float)
        # small horizontal offsets keep overlapping error bars apart
        ax.errorbar(
            x + 0.04 * (k - (len(curves) - 1) / 2), y, yerr=[y - lo, hi - y], marker="o", capsize=3, label=label
        )
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy against S/N$_r$ (paper Figure 7)" + ("; bars: 95 % Wilson intervals" if intervals else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    width = 0.35
    paper = [paper_diff.get(b, np.nan) for b in bin_names]
    ax2.bar(x - width / 2, paper, width, color="0.6", label="paper: DRC-Net - RC-Net")
    for xi, v in zip(x, paper):
        ax2.annotate(f"{v:+.1f}", (xi - width / 2, v), ha="center", va="bottom" if v >= 0 else "top", fontsize=8)
    if diff_pair and diff_pair[0] in curves and diff_pair[1] in curves:
        a, b = curves[diff_pair[0]], curves[diff_pair[1]]
        ours = [np.nan if (p is None or q is None) else 100 * (p - q) for p, q in zip(a, b)]
        ax2.bar(x + width / 2, ours, width, color="C0", label="this work: DRC-Net - RC-Net")
        for xi, v in zip(x, ours):
            if np.isfinite(v):
                ax2.annotate(
                    f"{v:+.1f}", (xi + width / 2, v), ha="center", va="bottom" if v >= 0 else "top", fontsize=8
                )
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_ylabel("difference (points)")
    ax2.set_xticks(x, [f"S/N {b}" for b in bin_names])
    ax2.set_xlabel("S/N$_r$ bin")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return save_png(fig, path)


def plot_history(history: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Training curves: loss and accuracy (train, validation) against epoch."""
    ep = [int(r["epoch"]) for r in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.3))
    for key, style in (("train", "-"), ("val", "--")):
        a1.plot(ep, [float(r[f"{key}_loss"]) for r in history], style, marker=".", label=key)
        a2.plot(ep, [float(r[f"{key}_acc"]) for r in history], style, marker=".", label=key)
    best = [int(r["epoch"]) for r in history if str(r.get("improved", "0")) in ("1", "True")]
    if best:
        a1.axvline(best[-1], color="0.5", lw=0.8, ls=":", label=f"best epoch {best[-1]}")
    a1.set_xlabel("epoch")
    a1.set_ylabel("cross-entropy")
    a2.set_xlabel("epoch")
    a2.set_ylabel("accuracy")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)
