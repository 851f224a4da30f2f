"""Probabilities that mean what they say: temperature scaling per S/N_r bin, calibration error, OOD score.

A network trained with cross-entropy is usually over-confident, and more so at low S/N. Temperature
scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks") divides the logits by one
scalar ``T`` fitted on held-out data by minimising the negative log-likelihood; it changes no
prediction, only how sure it is. drcnet fits one ``T`` per S/N_r bin of the paper (Table 1), since the
measured S/N_r is known for every object at prediction time and the over-confidence depends on it.

Calibration error: the expected calibration error (ECE) of the top-label probability, 15 equal-width
confidence bins (Guo et al. 2017; Naeini et al. 2015), reported per S/N_r bin before and after, with
:func:`ece_floor`, the ECE a perfectly calibrated model would show on a set of that size (the binned ECE
is biased upwards on small sets: a few hundred objects per bin put the floor at 0.03-0.07).

Out-of-distribution score: the energy score ``E(x) = -T log sum_k exp(l_k / T)`` (Liu et al. 2020,
"Energy-based Out-of-distribution Detection"). It needs no extra model or stored feature statistics,
works on the calibrated logits of any model, and was shown to separate unseen inputs better than the
maximum softmax probability; objects whose energy is above the 99th percentile of the validation
objects (:data:`OOD_QUANTILE`) are flagged ``ood``. It is a flag for what looks like none of the
training data, distinct from the trained ``other`` class.

Prediction sets: split-conformal (least-ambiguous set-valued classifier, Sadinle et al. 2019) on the
calibrated probabilities: the set holds every class with ``1 - p >= qhat`` excluded, ``qhat`` the
conformal quantile of ``1 - p(true class)`` on the validation objects at the chosen coverage. The
quantile is computed with :func:`numpy.quantile` (``method="higher"``), the finite-sample correction of
split conformal prediction.

The calibration lives in ``calibration.json`` in the run folder (:func:`save_calibration`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from drcnet.conventions import SNR_BIN_NAMES, snr_bin

CALIBRATION_JSON = "calibration.json"
ECE_BINS = 15
"""Confidence bins of the expected calibration error."""
OOD_QUANTILE = 0.99
"""Share of validation objects below the OOD energy threshold."""
T_RANGE = (0.05, 20.0)
"""Search range of the temperature."""
TEMPERATURE_MODES = ("per-bin", "none")
"""``fit_calibration(temperature=...)``: temperatures fitted per S/N_r bin, or all 1."""


def softmax(logits: np.ndarray, temperature: float | np.ndarray = 1.0) -> np.ndarray:
    """Softmax of ``(N, C)`` logits divided by ``temperature`` (scalar or ``(N,)``), float64, stable."""
    t = np.asarray(temperature, dtype=np.float64)
    z = np.asarray(logits, dtype=np.float64) / (t[:, None] if t.ndim == 1 else t)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    p = softmax(logits, temperature)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-300, None))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the NLL (bounded scalar search in log T, :func:`scipy.optimize.minimize_scalar`).

    Returns 1.0 for an empty set.
    """
    from scipy.optimize import minimize_scalar

    if len(labels) == 0:
        return 1.0
    res = minimize_scalar(
        lambda lt: nll(logits, labels, float(np.exp(lt))),
        bounds=(np.log(T_RANGE[0]), np.log(T_RANGE[1])),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(res.x))


def expected_calibration_error(prob: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE: sum over confidence bins of (share of objects) x |accuracy - mean confidence|.

    Parameters
    ----------
    prob
        ``(N, C)`` probabilities.
    labels
        ``(N,)`` true class indices.
    n_bins
        Equal-width confidence bins on [0, 1].

    Returns
    -------
    float
        In [0, 1]; NaN for an empty set.
    """
    if len(labels) == 0:
        return float("nan")
    return float(_ece(prob.max(axis=1), (prob.argmax(axis=1) == labels).astype(float)[None, :], n_bins)[0])


def _ece(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> np.ndarray:
    """ECE ``(D,)`` of confidences ``(N,)`` against ``D`` draws of 0/1 outcomes ``(D, N)``."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    ece = np.zeros(correct.shape[0])
    for b in range(n_bins):
        sel = idx == b
        if sel.any():
            ece += sel.mean() * np.abs(correct[:, sel].mean(axis=1) - conf[sel].mean())
    return ece


def ece_floor(prob: np.ndarray, n_bins: int = ECE_BINS, n_draws: int = 400, seed: int = 0) -> float:
    """The ECE a perfectly calibrated classifier would show on a set of this size and these confidences.

    The binned ECE is biased upwards on a finite set: even when every confidence is exactly the chance
    of being right, each bin's accuracy scatters binomially around its mean confidence. This draws the
    outcomes of a perfectly calibrated classifier (object ``i`` right with probability ``max_k p_ik``)
    ``n_draws`` times and returns the mean ECE, the level below which a measured ECE says nothing (for
    one bin of ``n`` objects at confidence ``c`` it tends to ``sqrt(2 c (1 - c) / (pi n))``).

    Parameters
    ----------
    prob
        ``(N, C)`` probabilities of the set whose ECE is reported.
    n_bins
        Confidence bins, as in :func:`expected_calibration_error`.
    n_draws
        Monte Carlo draws.
    seed
        Seed of the draws (the result is reproducible).

    Returns
    -------
    float
        Mean ECE under perfect calibration; NaN for an empty set.
    """
    if len(prob) == 0:
        return float("nan")
    conf = np.asarray(prob, dtype=np.float64).max(axis=1)
    rng = np.random.default_rng(seed)
    total = 0.0
    for start in range(0, n_draws, 50):  # 50 draws at a time: memory ~ 50 x N, whatever n_draws
        k = min(50, n_draws - start)
        total += float(np.sum(_ece(conf, (rng.random((k, len(conf))) < conf).astype(float), n_bins)))
    return total / n_draws


def energy(logits: np.ndarray, temperature: float | np.ndarray = 1.0) -> np.ndarray:
    """Energy score ``-T logsumexp(l / T)`` per object (higher: less like the training data)."""
    from scipy.special import logsumexp

    z = np.asarray(logits, dtype=np.float64)
    t = np.broadcast_to(np.asarray(temperature, dtype=np.float64), (len(z),))
    return -t * logsumexp(z / t[:, None], axis=1)


@dataclass
class Calibration:
    """A model's calibration (stored as ``calibration.json`` in its run folder).

    Attributes
    ----------
    temperatures
        One temperature per S/N_r bin (:data:`~drcnet.conventions.SNR_BIN_NAMES` order).
    ood_threshold
        Energy above which an object is flagged out-of-distribution.
    conformal_qhat, coverage
        Split-conformal threshold on ``1 - p`` for prediction sets at ``coverage`` (None: not fitted).
    n_objects
        Validation objects per S/N_r bin the temperatures were fitted on.
    ece_before, ece_after
        ECE per S/N_r bin on the fitting set, before and after scaling.
    provenance
        Where the calibration came from (dataset fingerprint, split, version).
    """

    temperatures: list[float]
    ood_threshold: float
    conformal_qhat: float | None = None
    coverage: float | None = None
    n_objects: list[int] = field(default_factory=list)
    ece_before: list[float] = field(default_factory=list)
    ece_after: list[float] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    def temperature_of(self, snr_r: np.ndarray) -> np.ndarray:
        """``(N,)`` temperature of each object from its S/N_r (NaN S/N_r: the lowest bin's)."""
        b = snr_bin(np.nan_to_num(np.asarray(snr_r, dtype=float), nan=0.0))
        return np.asarray(self.temperatures, dtype=np.float64)[b]

    def probabilities(self, logits: np.ndarray, snr_r: np.ndarray) -> np.ndarray:
        """Calibrated ``(N, C)`` probabilities."""
        return softmax(logits, self.temperature_of(snr_r))

    def ood_score(self, logits: np.ndarray, snr_r: np.ndarray) -> np.ndarray:
        """``(N,)`` energy of the calibrated logits."""
        return energy(logits, self.temperature_of(snr_r))

    def prediction_sets(self, prob: np.ndarray) -> np.ndarray | None:
        """``(N, C)`` bool membership of each class in the conformal set (None when not fitted)."""
        if self.conformal_qhat is None:
            return None
        return (1.0 - prob) <= self.conformal_qhat


def fit_calibration(
    logits: np.ndarray,
    labels: np.ndarray,
    snr_r: np.ndarray,
    coverage: float | None = 0.9,
    min_objects: int = 50,
    provenance: dict[str, Any] | None = None,
    temperature: str = "per-bin",
) -> Calibration:
    """Fit per-bin temperatures, the OOD threshold and (optionally) the conformal threshold.

    Parameters
    ----------
    logits
        ``(N, C)`` uncalibrated logits of labelled validation objects (finite rows only).
    labels
        ``(N,)`` class indices.
    snr_r
        ``(N,)`` measured S/N_r.
    coverage
        Target coverage of the prediction sets (None: no sets).
    min_objects
        A bin with fewer objects takes the temperature fitted on all objects.
    temperature
        ``"per-bin"``: one temperature per S/N_r bin fitted by likelihood (Guo et al. 2017); ``"none"``:
        every temperature 1 (the model's own probabilities), the OOD and conformal thresholds still fitted:
        for a model whose fitted temperatures make held-out objects worse calibrated (the shipped default:
        README, its model card).

    Raises
    ------
    ValueError
        Shapes disagree, no object, or an unknown ``temperature``.
    """
    if temperature not in TEMPERATURE_MODES:
        raise ValueError(f"temperature must be one of {TEMPERATURE_MODES}, got {temperature!r}")
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) != len(snr_r):
        raise ValueError(f"logits {logits.shape}, labels {labels.shape} and snr_r {np.shape(snr_r)} do not match")
    if len(labels) == 0:
        raise ValueError("no labelled object to calibrate on")
    bins = snr_bin(np.nan_to_num(np.asarray(snr_r, float), nan=0.0))
    fitted = temperature == "per-bin"
    t_all = fit_temperature(logits, labels) if fitted else 1.0
    temps, counts, before, after = [], [], [], []
    for b in range(len(SNR_BIN_NAMES)):
        sel = bins == b
        counts.append(int(sel.sum()))
        t = fit_temperature(logits[sel], labels[sel]) if fitted and sel.sum() >= min_objects else t_all
        temps.append(t)
        before.append(expected_calibration_error(softmax(logits[sel]), labels[sel]))
        after.append(expected_calibration_error(softmax(logits[sel], t), labels[sel]))
    cal = Calibration(
        temperatures=temps,
        ood_threshold=0.0,
        n_objects=counts,
        ece_before=before,
        ece_after=after,
        provenance=dict(provenance or {}),
    )
    cal.ood_threshold = float(np.quantile(cal.ood_score(logits, snr_r), OOD_QUANTILE))
    if coverage is not None:
        if not 0.0 < coverage < 1.0:
            raise ValueError(f"coverage must be in (0, 1), got {coverage}")
        prob = cal.probabilities(logits, snr_r)
        scores = 1.0 - prob[np.arange(len(labels)), labels]
        n = len(scores)
        level = min(1.0, np.ceil((n + 1) * coverage) / n)
        cal.conformal_qhat, cal.coverage = float(np.quantile(scores, level, method="higher")), float(coverage)
    return cal


def save_calibration(run_dir: str | Path, cal: Calibration) -> Path:
    """Write ``calibration.json`` into ``run_dir`` atomically; returns its path."""
    from drcnet.provenance import write_json_atomic

    path = Path(run_dir) / CALIBRATION_JSON
    write_json_atomic(path, asdict(cal))
    return path


def load_calibration(run_dir: str | Path) -> Calibration | None:
    """The run folder's calibration, or None when it has none.

    Raises
    ------
    ValueError
        ``calibration.json`` exists but is not a calibration (names the file).
    """
    path = Path(run_dir) / CALIBRATION_JSON
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text())
        return Calibration(**values)
    except (json.JSONDecodeError, TypeError) as err:
        raise ValueError(f"{path}: not a drcnet calibration ({err}); re-create it with `drcnet calibrate`") from err
