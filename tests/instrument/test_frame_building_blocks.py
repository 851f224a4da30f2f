"""Building blocks of the frame simulator: names, headers, fiber maps, lamps, band profiles, cosmic rays."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from drcnet.instrument import N_COLS, N_ROWS, PIXEL_SIZE_CM, InstrumentConfig
from drcnet.instrument.arclines import read_arc_lines
from drcnet.instrument.errors import FrameError
from drcnet.instrument.fibermap import FiberMap, read_fibermap, write_fibermap
from drcnet.instrument.lamost import RAW_SHAPE, RawName, assemble_raw, frame_header, parse_raw_name, write_raw_frame
from drcnet.instrument.rawframe import read_raw_frame
from drcnet.library.template import Template
from drcnet.provenance import provenance
from drcnet.reduce.wavesol import columns_of
from drcnet.simulate.ccd import spread_light
from drcnet.simulate.cosmics import deposit_cosmic_rays
from drcnet.simulate.exposure.frames import BandProfile, bias_data, expected_frames, fiber_band
from drcnet.simulate.exposure.lamps import arc_electrons
from drcnet.simulate.exposure.plan import ExposureConfig, plan_fibers
from drcnet.simulate.optics import FiberGeometry, ProfileTable, column_of, fiber_geometries

INST = InstrumentConfig()
COLS = np.arange(N_COLS)


def test_lamost_names_parse_and_format():
    n = parse_raw_name("rb-16r-20150924000612-10000-82496166.fit.gz")
    assert n == RawName("bias", 16, "red", "20150924000612", 10000, 82496166)
    assert parse_raw_name(n.filename()) == n
    assert n.filename(".fit") == "rb-16r-20150924000612-10000-82496166.fit"
    assert parse_raw_name(RawName("science", 3, "blue", "SIM1", 7, 99).filename()).spid == 3
    assert parse_raw_name("spec-55859-F5902_sp01-001.fits") is None


def test_raw_frame_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(900, 1200, (N_ROWS, N_COLS)).astype(np.uint16)
    over = rng.integers(990, 1010, (N_ROWS, 2, 32)).astype(np.uint16)
    raw = assemble_raw(data, over)
    name = RawName("flat", 2, "blue", "P1", 10005, 86400730)
    prov = provenance({"a": 1}, seed=3)
    path = write_raw_frame(tmp_path / name.filename(), raw, frame_header(name, 10.0, INST.ccd, prov))
    frame = read_raw_frame(path, "flat", 2, "blue")
    assert frame.raw.dtype == np.uint16 and np.array_equal(frame.raw, raw)
    assert np.array_equal(frame.data, data) and np.array_equal(frame.overscan, over)
    h = frame.header
    assert (h["OBSTYPE"], h["SPID"], h["CAMERA"], h["EXPTIME"], h["DRCSEED"]) == ("FLAT", 2, "b", 10.0, 3)
    assert h["MJD"] == pytest.approx(86400730 / 1440) and h["GAIN"] == INST.ccd.gain_e_per_adu
    with pytest.raises(FrameError, match="the file name says the red arm"):
        read_raw_frame(path, "flat", 2, "red")
    with pytest.raises(ValueError, match="refusing to write a frame of shape"):
        write_raw_frame(tmp_path / "x.fit", raw[:, :100], frame_header(name, 1.0, INST.ccd, prov))
    # a frame that is mostly NaN is refused
    fits.PrimaryHDU(np.full(RAW_SHAPE, np.nan, np.float32)).writeto(tmp_path / "nan.fit")
    with pytest.raises(FrameError, match="100 % of the pixels are NaN"):
        read_raw_frame(tmp_path / "nan.fit")


def _template(cls: str) -> Template:
    wave = np.arange(3500.0, 9500.0, 1.0)
    return Template(
        wave, np.ones_like(wave), np.ones(wave.size, bool), cls, cls + "5", library="synthetic", source_id=cls
    )


def test_fiber_plan_and_fibermap_round_trip(tmp_path):
    cfg = ExposureConfig(seed=4)
    temps = [_template(c) for c in "FGK"]
    plan = plan_fibers(cfg, temps, spid=2)
    assert plan_fibers(cfg, temps, spid=2).objid.tolist() == plan.objid.tolist()  # reproducible
    counts = {t: int(np.sum(plan.fibertype == t)) for t in ("Obj", "Sky", "F-std", "Unused", "Dead")}
    assert counts == {"Obj": 220, "Sky": 20, "F-std": 5, "Unused": 3, "Dead": 2}
    mags = np.array([s.mag_r for s in plan.sources if s is not None])
    assert (mags < 10.5).sum() == 3  # the saturating stars
    fm = FiberMap(
        spid=2,
        planid=cfg.planid,
        fiber=np.arange(1, 251),
        objid=plan.objid,
        fibertype=plan.fibertype,
        mag=np.zeros(250, np.float32),
    )
    path = write_fibermap(tmp_path / "fm.fits", fm, provenance())
    back = read_fibermap(path, spid=2, n_fibers=250)
    assert back.fibertype.tolist() == plan.fibertype.tolist() and back.truth is None
    with pytest.raises(FrameError, match="lists 250 fibers but the frames hold 200"):
        read_fibermap(path, n_fibers=200)
    with pytest.raises(ValueError, match="leave no program fibers"):
        ExposureConfig(n_sky=200, n_unused=50)


def test_arc_lines_and_their_columns(data_root):
    lines = read_arc_lines(data_root / "observatory" / "arc_lines")
    assert set(lines.ion) == {"HgI", "NeI", "ArI", "CdI"} and np.all(np.diff(lines.wave) >= 0)
    for arm in INST.arms:
        w = lines.wave[(lines.wave > 4000) & (lines.wave < 8500)][:20]
        assert np.allclose(columns_of(arm, w, 0.7, u0=2047.5), [column_of(arm, x, 0.7) for x in w], atol=1e-9)
    # one isolated line: all its electrons land in the CCD, centred where the solution puts it
    arm = INST.red
    one = (
        lines.select(np.abs(lines.wave - 7069.17) < 0.01)
        if np.any(np.abs(lines.wave - 7069.17) < 0.01)
        else lines.select(np.array([np.argmin(np.abs(lines.wave - 7000))]))
    )
    g = FiberGeometry(0, 100.0, 0.0, 0.0, 0.4, 1.0)
    e = arc_electrons(arm, g, COLS, one, 1000.0)
    centre = (e * COLS).sum() / e.sum()
    assert abs(centre - columns_of(arm, one.wave, 0.4, u0=2047.5)[0]) < 0.01


def test_band_profile_matches_spread_light():
    profile = ProfileTable(INST.fiber)
    band = BandProfile(profile)
    geoms = fiber_geometries(INST.fiber, np.random.default_rng(1), np.array([0, 1, 2, 125, 249]))
    for g in geoms:
        lo, hi = fiber_band(g, profile.reach)
        want = profile(np.arange(lo, hi), g.trace(COLS))
        assert np.allclose(band(lo, hi, g.trace(COLS)), want, rtol=0, atol=2e-7)
    # a whole frame from per-fiber light equals spread_light over the full rows (checked on a row window)
    light = {"x": np.vstack([np.linspace(1e4, 2e4, N_COLS) * (k + 1) for k in range(len(geoms))])}
    frames = expected_frames(geoms, light, profile)
    rows = np.arange(40, 140)
    want = spread_light(rows, COLS, [(g, light["x"][k]) for k, g in enumerate(geoms)], profile)
    assert np.allclose(frames["x"][rows], want, rtol=1e-5, atol=1e-3)


def test_cosmic_rays_and_bias_frames():
    rng = np.random.default_rng(2)
    ccd = INST.ccd
    data = np.full((N_ROWS, N_COLS), 1000, dtype=np.uint16)
    hits = deposit_cosmic_rays(data, ccd, 600.0, rng)
    expected_events = ccd.cosmic_rate_per_cm2_min * N_ROWS * N_COLS * PIXEL_SIZE_CM**2 * 10.0
    changed = np.flatnonzero(data.ravel() != 1000)
    assert set(changed.tolist()) <= set(hits.tolist())
    assert 1.5 * expected_events < hits.size < 6 * expected_events  # 1-6 pixels per track
    assert data.max() <= ccd.adc_max
    b = bias_data(ccd, rng)
    rn = ccd.read_noise_e / ccd.gain_e_per_adu
    for a, cols in enumerate((slice(0, 2048), slice(2048, 4096))):
        assert abs(b[:, cols].mean() - ccd.bias_adu[a]) < 0.01
        assert abs(b[:, cols].std() - np.sqrt(rn**2 + 1 / 12)) < 0.02


def test_lamost_is_a_spectrograph_with_a_header_map():
    """The adapter's base class: detector layout, header cards and frame types come from the LAMOST subclass."""
    from drcnet.instrument.base import Spectrograph
    from drcnet.instrument.config import CCDConfig
    from drcnet.instrument.lamost import LAMOST

    assert isinstance(LAMOST, Spectrograph) and LAMOST.raw_shape == RAW_SHAPE
    ccd = CCDConfig()
    header = frame_header(RawName("arc", 3, "red", "P1", 10006, 86400732), 30.0, ccd, {})
    assert LAMOST.frame_type(header) == "arc" and LAMOST.card(header, "gain") == ccd.gain_e_per_adu
    assert LAMOST.card(header, "camera") == "r" and LAMOST.card(header, "exptime") == 30.0
    data = np.arange(N_ROWS * N_COLS, dtype=np.uint32).reshape(N_ROWS, N_COLS).astype(np.uint16)
    over = np.full((N_ROWS, 2, (RAW_SHAPE[1] - N_COLS) // 2), 7, dtype=np.uint16)
    raw = LAMOST.assemble_raw(data, over)
    assert np.array_equal(LAMOST.data_area(raw), data) and np.array_equal(LAMOST.overscan_area(raw), over)
