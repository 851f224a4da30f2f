# Over 400 lines on purpose: LAMOST's grid, continuum and the template-match and CNN labellers share the grid.
"""LAMOST labels from spectra: put a spectrum on LAMOST's grid and label it as LAMOST's pipeline would.

LAMOST's ``CLASS``/``SUBCLASS`` is the output of a template match of the 1D spectrum, so the spectrum
decides it up to noise. This module learns that mapping from real LAMOST spectra (``lamost_real``) and
applies it to any :class:`~drcnet.library.template.Template` (library stars included):

* :func:`prepare` puts one spectrum on one common grid (:data:`GRID_WAVE`: uniform in log10 lambda,
  step 1e-4 = 69 km/s, LAMOST's own pixel, 3,800-8,900 A vacuum, rest frame) at LAMOST's resolution
  (R = 1,800), in one of two representations: ``"flux"`` (the calibrated flux shape over its median)
  or ``"norm"`` (continuum-normalised by an iteratively clipped B-spline, knots every ~200 A).
* :class:`TemplateMatchLabeller` (LAMOST's method in spirit): per-subclass median spectra of the training
  stars; the label is the subclass of least chi^2.
* :class:`CnnLabeller`: a compact 1D CNN trained on the prepared real spectra with noise augmentation,
  seeded and deterministic on CPU.

Both follow ``fit(templates) -> labeller`` and ``predict(templates) -> list[SpectralLabel]``. Training
templates need a class (``t.cls``) and a subclass (``t.subclass``, e.g. ``"F9"``); A and M stars may be
included as boundary classes. The benchmark is ``benchmarks/real_stars/label_ceiling.py``.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from scipy.interpolate import BSpline
from scipy.ndimage import gaussian_filter1d

from drcnet.conventions import FWHM_PER_SIGMA

from .spectype import parse_spectral_type
from .template import Template

Representation = Literal["flux", "norm"]

#: Pixel of the common grid in log10(lambda) (69 km/s; LAMOST's own pixel).
LOG10_STEP = 1.0e-4
#: Range of the common grid, vacuum A (inside LAMOST's 3,700-9,100 A).
GRID_RANGE_A = (3800.0, 8900.0)
_N_PIX = int(math.floor(math.log10(GRID_RANGE_A[1] / GRID_RANGE_A[0]) / LOG10_STEP)) + 1
#: The common grid: vacuum wavelength (A) of each of the ``N_PIX`` pixels.
GRID_WAVE: np.ndarray = GRID_RANGE_A[0] * 10.0 ** (LOG10_STEP * np.arange(_N_PIX))
N_PIX = _N_PIX
#: LAMOST's resolving power (low-resolution survey).
LAMOST_RESOLVING_POWER = 1800.0
#: Telluric O2 bands left uncorrected in LAMOST spectra (B and A bands, vacuum A): excluded from fits.
TELLURIC_BANDS_A: tuple[tuple[float, float], ...] = ((6860.0, 6960.0), (7590.0, 7705.0))
#: Each library's own resolution (the values of ``drcnet.simulate.spectra.NATIVE_RESOLUTION``, which
#: this layer cannot import; a test keeps the two equal): resolving power or FWHM in A.
NATIVE_RESOLUTION: dict[str, dict[str, float]] = {
    "pyhammer": {"native_resolving_power": 2000.0},
    "miles": {"native_fwhm_a": 2.50},
    "stelib": {"native_fwhm_a": 3.0},
    "lamost": {"native_resolving_power": 1800.0},
}
#: Knot spacing of the continuum spline (A at the grid's centre; ~150 pixels).
CONTINUUM_KNOT_A = 200.0
#: Continuum fit: iterations, and the clipping below (absorption) / above (emission, cosmics) in sigma.
CONTINUUM_ITER = 6
CONTINUUM_CLIP = (1.5, 3.0)
#: Largest |z| taken as a stellar radial velocity for the rest-frame shift (3,000 km/s).
MAX_STAR_Z = 0.01
#: Pixels the fits use (False in the telluric bands).
GRID_USE: np.ndarray = np.ones(N_PIX, bool)
for _lo, _hi in TELLURIC_BANDS_A:
    GRID_USE &= ~((_lo <= GRID_WAVE) & (_hi >= GRID_WAVE))


def _native_sigma_kms(t: Template) -> float:
    """Gaussian sigma (km/s) of the template's own line spread at the grid's centre (0 if unknown)."""
    native = NATIVE_RESOLUTION.get(t.library, {})
    if "fwhm_A" in t.meta:
        try:
            fwhm_a = float(t.meta["fwhm_A"])
            if math.isfinite(fwhm_a) and fwhm_a > 0:
                native = {"native_fwhm_a": fwhm_a}
        except (TypeError, ValueError):
            pass
    c_kms = 299792.458
    if "native_resolving_power" in native:
        return c_kms / native["native_resolving_power"] / FWHM_PER_SIGMA
    if "native_fwhm_a" in native:
        centre = math.sqrt(GRID_RANGE_A[0] * GRID_RANGE_A[1])
        return c_kms * native["native_fwhm_a"] / centre / FWHM_PER_SIGMA
    return 0.0


def _bridge(values: np.ndarray, good: np.ndarray) -> np.ndarray:
    """``values`` with the pixels where ``good`` is False filled by linear interpolation (edges: nearest)."""
    if good.all() or not good.any():
        return values
    idx = np.arange(values.size)
    out = values.copy()
    out[~good] = np.interp(idx[~good], idx[good], values[good])
    return out


def _on_grid(t: Template) -> tuple[np.ndarray, np.ndarray]:
    """Flux of ``t`` on :data:`GRID_WAVE` at LAMOST resolution, rest frame, and the measured-pixel mask.

    The flux is smoothed on a fine log grid (4 sub-pixels per grid pixel) with the Gaussian that takes the
    template's own line spread (:data:`NATIVE_RESOLUTION`, at the grid's centre) to R = 1,800, then
    averaged into grid pixels. A LAMOST spectrum (observed frame) is shifted by its pipeline ``meta["z"]``.
    """
    wave = np.asarray(t.wave, float)
    flux = np.asarray(t.flux, float)
    mask = np.asarray(t.mask, bool) & np.isfinite(flux)
    z = t.meta.get("z") if t.library == "lamost" else None
    try:
        zf = float(z) if z is not None else 0.0
    except (TypeError, ValueError):
        zf = 0.0
    if math.isfinite(zf) and abs(zf) < MAX_STAR_Z:
        wave = wave / (1.0 + zf)
    sub = 4
    fine_log = math.log10(GRID_RANGE_A[0]) + LOG10_STEP * (np.arange(N_PIX * sub) - (sub - 1) / 2.0) / sub
    fine_w = 10.0**fine_log
    inside = (fine_w >= wave[0]) & (fine_w <= wave[-1])
    f = np.interp(fine_w, wave, flux)
    m = np.interp(fine_w, wave, mask.astype(float)) > 0.5
    m &= inside
    pix_kms = 299792.458 * math.log(10.0) * LOG10_STEP / sub
    target = 299792.458 / LAMOST_RESOLVING_POWER / FWHM_PER_SIGMA
    need = math.sqrt(max(target**2 - _native_sigma_kms(t) ** 2, 0.0)) / pix_kms
    f = _bridge(f, m)
    if need > 0.1:
        f = gaussian_filter1d(f, need, mode="nearest")
    grid = f.reshape(N_PIX, sub).mean(axis=1)
    good = m.reshape(N_PIX, sub).mean(axis=1) > 0.5
    return grid, good


def _continuum_basis() -> np.ndarray:
    """Cubic B-spline design matrix ``(N_PIX, n_basis)`` with knots every :data:`CONTINUUM_KNOT_A`."""
    x = np.arange(N_PIX, dtype=float)
    centre = math.sqrt(GRID_RANGE_A[0] * GRID_RANGE_A[1])
    step_px = CONTINUUM_KNOT_A / (centre * math.log(10.0) * LOG10_STEP)
    n_inner = max(int(round((N_PIX - 1) / step_px)), 1)
    inner = np.linspace(0.0, N_PIX - 1.0, n_inner + 1)
    knots = np.concatenate([[inner[0]] * 3, inner, [inner[-1]] * 3])
    return BSpline.design_matrix(x, knots, 3).toarray()


_BASIS: np.ndarray | None = None


def continuum(flux: np.ndarray, use: np.ndarray | None = None) -> np.ndarray:
    """Smooth continuum of a spectrum on :data:`GRID_WAVE`: iteratively clipped cubic B-spline.

    Parameters
    ----------
    flux : numpy.ndarray
        ``(N_PIX,)`` flux on the common grid (any positive scale).
    use : numpy.ndarray, optional
        ``(N_PIX,)`` bool, pixels the fit may use (default :data:`GRID_USE`).

    Returns
    -------
    numpy.ndarray
        ``(N_PIX,)`` continuum, the flux's units. Pixels more than 1.5 sigma below the fit (absorption
        lines) or 3 sigma above it (emission, cosmics) are left out of the next of 6 iterations, so the
        fit settles on the upper envelope between the lines. Raises ValueError if ``flux`` is not
        ``(N_PIX,)``.
    """
    global _BASIS
    flux = np.asarray(flux, float)
    if flux.shape != (N_PIX,):
        raise ValueError(
            f"continuum: flux has shape {flux.shape}, expected ({N_PIX},) on GRID_WAVE; call prepare() first"
        )
    if _BASIS is None:
        _BASIS = _continuum_basis()
    b = _BASIS
    w = (GRID_USE if use is None else use) & np.isfinite(flux)
    level = float(np.nanmedian(np.abs(flux[w]))) if w.any() else 1.0
    cont = np.full(N_PIX, level)
    d2 = np.diff(np.eye(b.shape[1]), 2, axis=0)
    for _ in range(CONTINUUM_ITER):
        bw = b[w]
        btb = bw.T @ bw
        # a light second-difference penalty (P-spline) bridges knot spans left without pixels
        pen = 1e-3 * max(float(np.mean(np.diag(btb))), 1.0) * (d2.T @ d2)
        coef = np.linalg.solve(btb + pen + 1e-9 * np.eye(b.shape[1]), bw.T @ flux[w])
        cont = b @ coef
        r = flux - cont
        # the noise floor (1e-3 of the level) keeps noise-free spectra from clipping every pixel
        sig = max(1.4826 * float(np.median(np.abs(r[w] - np.median(r[w])))), 1e-3 * level)
        new = (GRID_USE if use is None else use) & (r > -CONTINUUM_CLIP[0] * sig) & (r < CONTINUUM_CLIP[1] * sig)
        if new.sum() < 4 * b.shape[1] or np.array_equal(new, w):
            break
        w = new
    return cont


def prepare(t: Template, representation: Representation = "norm") -> np.ndarray:
    """One spectrum on the common grid (:data:`GRID_WAVE`) at LAMOST resolution, rest frame.

    Parameters
    ----------
    t : Template
        Any template (vacuum wavelengths in A; ``mask`` False where filled). LAMOST templates are moved to
        the rest frame by their pipeline redshift ``meta["z"]``; library templates are already at rest.
    representation : {"norm", "flux"}
        ``"norm"``: divided by its continuum (:func:`continuum`), so 1 between lines and ``1 - depth`` in
        a line. ``"flux"``: the calibrated F_lambda shape divided by its median over the fitted pixels.

    Returns
    -------
    numpy.ndarray
        ``(N_PIX,)`` float32. Masked pixels, pixels outside the template's range and the telluric bands
        (:data:`TELLURIC_BANDS_A`) are bridged linearly (edges: nearest measured value).

    Raises
    ------
    ValueError
        If the representation is unknown or the template has no measured flux on the grid (naming it).
    """
    if representation not in ("flux", "norm"):
        raise ValueError(f"prepare: representation {representation!r} unknown; use 'flux' or 'norm'")
    f, good = _on_grid(t)
    good &= GRID_USE
    if good.sum() < N_PIX // 4 or not np.any(f[good] > 0):
        raise ValueError(
            f"prepare: {t.template_id} ({t.path}) has too little measured flux in "
            f"{GRID_RANGE_A[0]:.0f}-{GRID_RANGE_A[1]:.0f} A; leave it out"
        )
    f = _bridge(f, good)
    if representation == "flux":
        out = f / np.median(f[good])
    else:
        c = continuum(f, good)
        c = np.where(c > 1e-3 * np.median(np.abs(c)), c, np.nan)
        out = np.nan_to_num(f / c, nan=1.0)
        out = _bridge(out, good)
        out = np.clip(out, -0.5, 2.5)
    return out.astype(np.float32)


def prepare_many(templates: Sequence[Template], representation: Representation = "norm") -> np.ndarray:
    """:func:`prepare` for each template, stacked: ``(N, N_PIX)`` float32 (raises on the first bad one)."""
    return np.stack([prepare(t, representation) for t in templates]) if templates else np.zeros((0, N_PIX), np.float32)


def subclass_index(subclass: str) -> float:
    """Position of an MK subclass on one axis (A0 = 0, F0 = 10, G0 = 20, K0 = 30, M0 = 40; NaN unknown).

    >>> subclass_index("F9"), subclass_index("G0")
    (19.0, 20.0)
    """
    st = parse_spectral_type(subclass)
    base = {"O": -20.0, "B": -10.0, "A": 0.0, "F": 10.0, "G": 20.0, "K": 30.0, "M": 40.0}.get(st.cls)
    if base is None or not st.parsed:
        return math.nan
    num = st.subclass[1:] if st.subclass else ""
    try:
        return base + float(num)
    except ValueError:
        return base + 5.0


@dataclass(frozen=True)
class SpectralLabel:
    """A LAMOST-convention label read from a spectrum.

    Attributes
    ----------
    cls : str
        Class letter (``"F"``, ``"G"``, ``"K"``, or a boundary class ``"A"``/``"M"``).
    subclass : str
        Subclass (``"F9"``) within ``cls``.
    margin : float
        How clear the class is: for :class:`CnnLabeller` the probability of ``cls`` minus that of the
        runner-up class (0..1); for :class:`TemplateMatchLabeller` the relative chi^2 gap between the
        best subclass of the runner-up class and the best subclass overall (chi2_2 / chi2_1 - 1, >= 0).
    class_scores : dict
        Per class: probability (CNN) or pseudo-probability (template match), summing to 1.
    labeller : str
        Name of the labeller and representation that decided (``"template_match/norm"``).
    """

    cls: str
    subclass: str
    margin: float
    class_scores: dict[str, float] = field(default_factory=dict)
    labeller: str = ""


def training_labels(templates: Sequence[Template]) -> tuple[list[str], list[str]]:
    """Class letters and integer subclasses (``"F7.5"`` -> ``"F7"``, ``"A1IV"`` -> ``"A1"``) of labelled templates.

    Raises ValueError naming the first template without a class or subclass.
    """
    cls, sub = [], []
    for t in templates:
        if not t.cls or not t.subclass:
            raise ValueError(f"fit: {t.template_id} ({t.path}) has no class/subclass; give labelled templates only")
        st = parse_spectral_type(t.subclass)
        s = st.subclass if st.parsed and st.subclass else t.subclass
        # a LAMOST subclass such as "F7.5" or "A1IV" keeps its letter and integer number only
        num = s[1:].split(".")[0] if len(s) > 1 and s[1:2].isdigit() else ""
        cls.append(t.cls)
        sub.append(f"{t.cls}{num}" if num else t.cls)
    return cls, sub


def _class_scores_from_subclass(p_sub: np.ndarray, sub_names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Sum subclass probabilities ``(N, S)`` into classes ``(N, C)``; class names in first-seen order."""
    classes = list(dict.fromkeys(s[0] for s in sub_names))
    p_cls = np.stack([p_sub[:, [i for i, s in enumerate(sub_names) if s[0] == c]].sum(axis=1) for c in classes], axis=1)
    return classes, p_cls


@dataclass
class TemplateMatchLabeller:
    """Minimum-chi^2 match against per-subclass median spectra (LAMOST's method in spirit).

    Parameters
    ----------
    representation : {"norm", "flux"}
        Which :func:`prepare` representation is matched.
    min_members : int
        Subclasses with fewer training spectra get no template (their stars still vote in no other).
    temperature : float
        Relative chi^2 gap that divides the pseudo-probabilities by e (``class_scores`` only).
    """

    representation: Representation = "norm"
    min_members: int = 3
    temperature: float = 0.01
    subclasses: list[str] = field(default_factory=list)
    templates_: np.ndarray | None = None

    @property
    def name(self) -> str:
        return f"template_match/{self.representation}"

    def fit(self, templates: Sequence[Template], x: np.ndarray | None = None) -> TemplateMatchLabeller:
        """Median prepared spectrum of each subclass; ``x`` (``(N, N_PIX)``) skips :func:`prepare_many`."""
        _, sub = training_labels(templates)
        x = prepare_many(templates, self.representation) if x is None else np.asarray(x, np.float32)
        sub_arr = np.array(sub)
        names = sorted(
            {s for s in sub if (sub_arr == s).sum() >= self.min_members}, key=lambda s: (subclass_index(s), s)
        )
        if len(names) < 2:
            raise ValueError(f"template match: fewer than two subclasses with >= {self.min_members} spectra")
        self.subclasses = names
        self.templates_ = np.stack([np.median(x[sub_arr == s], axis=0) for s in names]).astype(np.float32)
        return self

    def chi2(self, x: np.ndarray) -> np.ndarray:
        """``(N, S)`` chi^2 of each prepared spectrum against each subclass template (unit weights).

        The template is scaled by the least-squares factor first (the flux scale is free), over the
        pixels of :data:`GRID_USE`.
        """
        if self.templates_ is None:
            raise RuntimeError("TemplateMatchLabeller: call fit() before predict()")
        xs = np.asarray(x, np.float64)[:, GRID_USE]
        tm = self.templates_[:, GRID_USE].astype(np.float64)
        xt = xs @ tm.T
        tt = (tm**2).sum(axis=1)
        xx = (xs**2).sum(axis=1)
        a = xt / tt
        return np.maximum(xx[:, None] - 2 * a * xt + a**2 * tt[None, :], 0.0)

    def predict(self, templates: Sequence[Template], x: np.ndarray | None = None) -> list[SpectralLabel]:
        """Label each template (``x`` as in :meth:`fit`)."""
        x = prepare_many(templates, self.representation) if x is None else x
        c2 = self.chi2(x)
        rel = c2 / np.maximum(c2.min(axis=1, keepdims=True), 1e-30) - 1.0
        p_sub = np.exp(-rel / self.temperature)
        p_sub /= p_sub.sum(axis=1, keepdims=True)
        classes, p_cls = _class_scores_from_subclass(p_sub, self.subclasses)
        out = []
        for i in range(len(x)):
            j = int(np.argmin(c2[i]))
            best_cls = self.subclasses[j][0]
            other = [c2[i, k] for k, s in enumerate(self.subclasses) if s[0] != best_cls]
            margin = float(min(other) / max(c2[i, j], 1e-30) - 1.0) if other else math.inf
            out.append(
                SpectralLabel(
                    best_cls,
                    self.subclasses[j],
                    margin,
                    {c: float(p_cls[i, k]) for k, c in enumerate(classes)},
                    self.name,
                )
            )
        return out


def _cnn(n_out: int):  # -> torch.nn.Module
    """Compact 1D CNN: four strided convolutions, adaptive pooling to 16 positions, a linear head."""
    import torch.nn as nn

    def block(ci: int, co: int) -> list:
        return [nn.Conv1d(ci, co, 7, stride=2, padding=3), nn.BatchNorm1d(co), nn.ReLU()]

    return nn.Sequential(
        *block(1, 8),
        *block(8, 16),
        *block(16, 32),
        *block(32, 32),
        nn.AdaptiveAvgPool1d(16),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(32 * 16, n_out),
    )


@dataclass
class CnnLabeller:
    """A small 1D CNN predicting the LAMOST subclass from a prepared spectrum (class = sum over subclasses).

    Trained with Adam on cross-entropy, with Gaussian noise added per spectrum at a random S/N (log-uniform
    ``snr_range``) so it works across S/N. Input: the prepared spectrum binned by ``bin`` pixels
    (default 2: 138 km/s pixels, under LAMOST's 167 km/s FWHM). Deterministic on CPU for a fixed ``seed``
    (one torch thread inside :meth:`fit` / :meth:`predict`, restored after).

    Parameters
    ----------
    representation : {"norm", "flux"}
    epochs, batch_size, lr, seed : training settings
    min_members : int
        Subclasses with fewer training spectra are merged into their class's commonest subclass.
    snr_range : tuple of float
        Per-pixel S/N range of the augmentation noise (on top of each spectrum's own noise).
    class_loss_weight : float
        Weight of an extra cross-entropy on the class probability (sum of its subclasses' probabilities).
    """

    representation: Representation = "norm"
    epochs: int = 40
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    bin: int = 2
    min_members: int = 3
    snr_range: tuple[float, float] = (5.0, 200.0)
    class_loss_weight: float = 1.0
    subclasses: list[str] = field(default_factory=list)
    model_: object | None = None

    @property
    def name(self) -> str:
        return f"cnn/{self.representation}"

    def _input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        n = (x.shape[1] // self.bin) * self.bin
        x = x[:, :n].reshape(len(x), -1, self.bin).mean(axis=2)
        return x - 1.0 if self.representation == "norm" else np.log(np.clip(x, 1e-3, None))

    def fit(self, templates: Sequence[Template], x: np.ndarray | None = None) -> CnnLabeller:
        """Train on labelled templates (``x``: their prepared ``(N, N_PIX)`` spectra, optional)."""
        import torch

        _, sub = training_labels(templates)
        x = prepare_many(templates, self.representation) if x is None else x
        counts: dict[str, int] = {}
        for s in sub:
            counts[s] = counts.get(s, 0) + 1
        common: dict[str, str] = {}
        for s in sorted(counts, key=lambda s: -counts[s]):
            common.setdefault(s[0], s)
        sub = [s if counts[s] >= self.min_members else common[s[0]] for s in sub]
        self.subclasses = sorted(set(sub), key=lambda s: (subclass_index(s), s))
        y = np.array([self.subclasses.index(s) for s in sub])
        cls_names = list(dict.fromkeys(s[0] for s in self.subclasses))
        ycls = np.array([cls_names.index(self.subclasses[i][0]) for i in y])
        xin = self._input(x)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            torch.manual_seed(self.seed)
            rng = np.random.default_rng(self.seed)
            model = _cnn(len(self.subclasses))
            member = torch.tensor([[1.0 if s[0] == c else 0.0 for c in cls_names] for s in self.subclasses])
            opt = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=1e-4)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)
            # classes weighted by 1/sqrt(count) so the scarce K stars still count
            cls_count = np.bincount(y, minlength=len(self.subclasses)).astype(float)
            wts = torch.tensor(1.0 / np.sqrt(np.maximum(cls_count, 1.0)), dtype=torch.float32)
            loss_fn = torch.nn.CrossEntropyLoss(weight=wts / wts.mean(), label_smoothing=0.05)
            scale = np.abs(xin).mean() if self.representation == "flux" else 1.0
            model.train()
            for _ in range(self.epochs):
                order = rng.permutation(len(y))
                for b0 in range(0, len(order), self.batch_size):
                    idx = order[b0 : b0 + self.batch_size]
                    snr = np.exp(rng.uniform(*np.log(self.snr_range), size=(len(idx), 1)))
                    xb = xin[idx] + rng.standard_normal(xin[idx].shape).astype(np.float32) * (scale / snr).astype(
                        np.float32
                    )
                    out = model(torch.from_numpy(xb[:, None, :].astype(np.float32)))
                    loss = loss_fn(out, torch.from_numpy(y[idx]))
                    if self.class_loss_weight > 0:
                        # the class's probability is the sum over its subclasses: score it directly too
                        p_cls = torch.softmax(out, dim=1) @ member
                        loss = loss + self.class_loss_weight * torch.nn.functional.nll_loss(
                            torch.log(p_cls + 1e-7), torch.from_numpy(ycls[idx])
                        )
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                sched.step()
            model.eval()
        finally:
            torch.set_num_threads(threads)
        self.model_ = model
        return self

    def subclass_probabilities(self, x: np.ndarray) -> np.ndarray:
        """``(N, S)`` softmax over :attr:`subclasses` for prepared spectra ``x`` ``(N, N_PIX)``."""
        import torch

        if self.model_ is None:
            raise RuntimeError("CnnLabeller: call fit() before predict()")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.no_grad():
                xin = torch.from_numpy(self._input(x)[:, None, :].astype(np.float32))
                out = torch.cat([self.model_(xin[i : i + 256]) for i in range(0, len(xin), 256)])  # type: ignore[operator]
                return torch.softmax(out, dim=1).numpy().astype(np.float64)
        finally:
            torch.set_num_threads(threads)

    def predict(self, templates: Sequence[Template], x: np.ndarray | None = None) -> list[SpectralLabel]:
        """Label each template (``x`` as in :meth:`fit`)."""
        x = prepare_many(templates, self.representation) if x is None else x
        p_sub = self.subclass_probabilities(x)
        classes, p_cls = _class_scores_from_subclass(p_sub, self.subclasses)
        out = []
        for i in range(len(x)):
            order = np.argsort(-p_cls[i], kind="stable")
            c = classes[order[0]]
            margin = float(p_cls[i, order[0]] - (p_cls[i, order[1]] if len(order) > 1 else 0.0))
            js = [j for j, s in enumerate(self.subclasses) if s[0] == c]
            sub = self.subclasses[max(js, key=lambda j: p_sub[i, j])]
            out.append(SpectralLabel(c, sub, margin, {k: float(p_cls[i, n]) for n, k in enumerate(classes)}, self.name))
        return out


# -- the shipped labeller ---------------------------------------------------------------------------
#: The labeller shipped inside the package (``scripts/export_labeller.py`` writes it).
SHIPPED_LABELLER = Path(__file__).resolve().parent / "data" / "lamost_labeller.safetensors"
#: Key of the JSON metadata in the safetensors header.
LABELLER_META_KEY = "drcnet_labeller"
#: :class:`CnnLabeller` settings stored with the weights (and restored on load).
_SETTINGS = (
    "representation",
    "epochs",
    "batch_size",
    "lr",
    "seed",
    "bin",
    "min_members",
    "snr_range",
    "class_loss_weight",
)


def save_labeller(labeller: CnnLabeller, path: str | Path, extra: dict[str, object] | None = None) -> Path:
    """Write a fitted :class:`CnnLabeller` as safetensors (float32 weights, JSON metadata), atomically.

    Parameters
    ----------
    labeller
        A fitted labeller.
    path
        Output file (``.safetensors``).
    extra
        More metadata (provenance: training data checksum, number of spectra, package version, ...);
        must be JSON-serialisable and hold no machine paths.

    Returns
    -------
    pathlib.Path
        ``path``. Raises RuntimeError if the labeller is not fitted.
    """
    from safetensors.torch import save_file

    from drcnet.provenance import atomic_path

    if labeller.model_ is None:
        raise RuntimeError("save_labeller: the labeller is not fitted; call fit() first")
    state = {k: v.detach().contiguous().clone() for k, v in labeller.model_.state_dict().items()}  # type: ignore[attr-defined]
    meta = {
        "format": 1,
        "subclasses": list(labeller.subclasses),
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k in _SETTINGS for v in [getattr(labeller, k)]},
        **(extra or {}),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={LABELLER_META_KEY: json.dumps(meta, sort_keys=True)})
    return path


def load_labeller(path: str | Path) -> tuple[CnnLabeller, dict[str, object]]:
    """A :class:`CnnLabeller` and its metadata from a file written by :func:`save_labeller`.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Naming the file: not a labeller file (no metadata, or weights that do not fit the settings).
    """
    import torch
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: labeller file not found (write it with scripts/export_labeller.py)")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(LABELLER_META_KEY)
            state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118  (safe_open has no iterator)
        meta = json.loads(raw) if raw else None
    except Exception as err:  # safetensors raises its own error type on a damaged file
        raise ValueError(f"{path}: not a readable safetensors file ({type(err).__name__}: {err})") from err
    if not isinstance(meta, dict) or "subclasses" not in meta or "settings" not in meta:
        raise ValueError(f"{path}: no drcnet labeller metadata; write it with scripts/export_labeller.py")
    settings = dict(meta["settings"])
    settings["snr_range"] = tuple(settings.get("snr_range", (5.0, 200.0)))
    lab = CnnLabeller(**settings, subclasses=list(meta["subclasses"]))
    model = _cnn(len(lab.subclasses))
    try:
        model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as err:
        raise ValueError(
            f"{path}: weights do not fit a CnnLabeller with {len(lab.subclasses)} subclasses ({err})"
        ) from err
    model.eval()
    lab.model_ = model
    return lab, meta


@functools.lru_cache(maxsize=1)
def _shipped() -> tuple[CnnLabeller, dict[str, object]]:
    return load_labeller(SHIPPED_LABELLER)


def load_shipped_labeller() -> CnnLabeller:
    """The labeller shipped with drcnet (:data:`SHIPPED_LABELLER`), loaded once per process.

    A :class:`CnnLabeller` (``"cnn/norm"``) fitted by :func:`drcnet.simulate.population.fit_labeller` on the
    training-split real LAMOST stars (seed 0); its metadata (:func:`shipped_labeller_metadata`) names the
    ``lamost_real/index.csv`` checksum, the number of training spectra and the package version it came from.
    """
    return _shipped()[0]


def shipped_labeller_metadata() -> dict[str, object]:
    """The shipped labeller's metadata (subclasses, settings, training-data checksum, provenance)."""
    return dict(_shipped()[1])
