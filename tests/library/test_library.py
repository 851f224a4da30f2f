"""drcnet.library: every reader on real files, format detection, loader bookkeeping, MILES splice."""

from __future__ import annotations

import gzip
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from drcnet.library import (
    LibraryError,
    LibraryWarning,
    LoadResult,
    Template,
    UnrecognisedFormatError,
    air_to_vacuum,
    detect_format,
    load_templates,
    parse_spectral_type,
    read_spectrum,
    summarize,
    vacuum_to_air,
)
from drcnet.library.loader import measured_coverage
from drcnet.library.stelib import TELLURIC_WINDOWS_VAC

HALPHA_VAC = 6564.61
HALPHA_AIR = 6562.80
DR1_011 = "spec-55862-B6212_sp06-011_dr1.fits.gz"
DR7 = "spec-55859-F5902_sp01-001_dr7.fits.gz"
DR8 = "spec-55859-F5902_sp01-013_dr8.fits.gz"


@pytest.fixture(scope="module")
def data(data_root: Path) -> Path:
    """Shared reference data (see ``data_root`` in conftest.py)."""
    return data_root


@pytest.fixture(scope="module")
def libs(data: Path) -> Path:
    return data / "spectral_libraries"


@pytest.fixture(scope="module")
def lamost(data: Path) -> Path:
    return data / "lamost_format_examples"


@pytest.fixture(scope="module")
def ph_miles(libs: Path) -> LoadResult:
    """PyHammer + all MILES in one call (the PyHammer reads are reused for the splice), Teff-matched splice."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LibraryWarning)
        return load_templates([libs / "pyhammer", libs / "miles"], splice_match="teff")


def _by_id(result: LoadResult) -> dict[str, Template]:
    return {t.template_id: t for t in result.templates}


def _line_min(t: Template, centre: float, half: float = 10.0) -> float:
    sel = (t.wave > centre - half) & (t.wave < centre + half)
    return float(t.wave[sel][np.argmin(t.flux[sel])])


def _check_invariants(t: Template) -> None:
    assert t.wave.dtype == np.float64 and t.flux.dtype == np.float64 and t.mask.dtype == bool
    assert t.wave.shape == t.flux.shape == t.mask.shape
    assert np.all(np.diff(t.wave) > 0)
    assert np.all(np.isfinite(t.flux))


# ---------------------------------------------------------------- air / vacuum
def test_air_vacuum_round_trip_and_halpha() -> None:
    air = np.linspace(2000.01, 12000.0, 20001)
    assert np.max(np.abs(vacuum_to_air(air_to_vacuum(air)) - air)) < 1e-4
    vac = np.linspace(2000.7, 12000.0, 20001)  # air > 2000 A from vacuum 2000.65 A on
    assert np.max(np.abs(air_to_vacuum(vacuum_to_air(vac)) - vac)) < 1e-4
    assert np.all(air_to_vacuum(air) > air) and np.all(np.diff(air_to_vacuum(air)) > 0)
    assert air_to_vacuum(HALPHA_AIR) == pytest.approx(HALPHA_VAC, abs=0.02)
    # below 2000 A wavelengths are vacuum by the IAU convention: unchanged
    assert air_to_vacuum(1500.0) == 1500.0


# ---------------------------------------------------------------- MK type parser
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("G1V", ("G", "G1", "V")),
        ("KIIvw", ("K", "", "II")),
        ("K0 III", ("K", "K0", "III")),
        ("G8/K0IIIw.", ("G", "G8", "III")),
        ("F7.5II", ("F", "F7.5", "II")),
        ("sdG0", ("G", "G0", "VI")),
        ("A7V", ("A", "A7", "V")),
        ("K3Iab:", ("K", "K3", "Iab")),
    ],
)
def test_parse_spectral_type(text: str, expected: tuple[str, str, str]) -> None:
    st = parse_spectral_type(text)
    assert st.parsed and (st.cls, st.subclass, st.lumclass) == expected


@pytest.mark.parametrize("text", ["", "GB", "AGB", "HB", "III", "07Ia", "S?", "WN", "DA:", "Carbon"])
def test_parse_spectral_type_refuses_to_guess(text: str) -> None:
    assert parse_spectral_type(text) == ("", "", "", False)


# ---------------------------------------------------------------- format detection
def test_detect_format_every_layout(libs: Path, lamost: Path) -> None:
    expected = {
        libs / "pyhammer" / "F0_+0.0_Dwarf.fits.gz": "pyhammer",
        libs / "miles" / "MILES_res2.50_star_m0001V.fits.gz": "miles",
        libs / "stelib" / "STELIB_v3.2_HD099747.fits.gz": "stelib",
        lamost / DR1_011: "lamost_dr1",
        lamost / DR7: "lamost_dr7",
        lamost / DR8: "lamost_dr8",
    }
    for path, fmt in expected.items():
        assert detect_format(path) == fmt, path.name


def test_detect_format_rejects_unknown_fits(tmp_path: Path) -> None:
    odd = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((10, 10), dtype=np.float32)).writeto(odd)
    with pytest.raises(UnrecognisedFormatError, match="not a recognised spectrum file"):
        detect_format(odd)


# ---------------------------------------------------------------- readers
def test_pyhammer_reader(libs: Path) -> None:
    t = read_spectrum(libs / "pyhammer" / "F5_+0.0_Dwarf.fits.gz")
    _check_invariants(t)
    assert t.wave[0] == pytest.approx(3650.05, abs=0.01) and t.wave[-1] == pytest.approx(10199.88, abs=0.01)
    assert (t.cls, t.subclass, t.lumclass, t.library, t.source_id) == ("F", "F5", "V", "pyhammer", "F5_+0.0_Dwarf")
    assert t.teff == pytest.approx(6260.206) and t.feh == pytest.approx(-0.25) and t.meta["feh_bin"] == "+0.0"
    assert t.mask.all()
    # vacuum: H-alpha absorption minimum at 6564.6 (air would be 6562.8)
    for name in ("F5_+0.0_Dwarf.fits.gz", "G2_+0.0_Dwarf.fits.gz"):
        assert abs(_line_min(read_spectrum(libs / "pyhammer" / name), HALPHA_VAC) - HALPHA_VAC) < 1.0


def test_miles_reader_converts_air_to_vacuum(libs: Path) -> None:
    t = read_spectrum(libs / "miles" / "MILES_res2.50_star_m0001V.fits.gz")
    _check_invariants(t)
    assert t.wave[0] == pytest.approx(float(air_to_vacuum(3540.5)), abs=1e-6)
    assert t.wave[0] == pytest.approx(3541.512, abs=0.01) and t.wave[-1] == pytest.approx(7411.64, abs=0.01)
    assert (t.cls, t.subclass, t.lumclass, t.source_id) == ("G", "G3", "V", "m0001")  # spt "G3 V"
    assert (t.teff, t.logg, t.feh) == (5305.0, 4.49, -0.75)
    # m0022 is F5V: its H-alpha minimum sits at the vacuum wavelength, ~1.8 A from the air one
    f5 = read_spectrum(libs / "miles" / "MILES_res2.50_star_m0022V.fits.gz")
    assert f5.subclass == "F5"
    assert abs(_line_min(f5, HALPHA_VAC) - HALPHA_VAC) < 1.0
    assert abs(_line_min(f5, HALPHA_VAC) - HALPHA_AIR) > 1.2


def test_miles_luminosity_class_from_spt(libs: Path) -> None:
    t = read_spectrum(libs / "miles" / "MILES_res2.50_star_m0505V.fits.gz")  # spt "KIIvw"
    assert (t.cls, t.subclass, t.lumclass) == ("K", "", "II")


def test_stelib_gap_and_telluric_filled_and_masked(libs: Path) -> None:
    path = libs / "stelib" / "STELIB_v3.2_HD099747.fits.gz"  # F5V with a gap at 5828-5876 A (vacuum)
    with fits.open(path) as h:
        raw = np.asarray(h[0].data, dtype=np.float64)
    t = read_spectrum(path)
    _check_invariants(t)
    assert (t.cls, t.subclass, t.lumclass) == ("F", "F5", "V")
    gap = (raw == 0.0) & (t.wave > 5800) & (t.wave < 5900)
    assert gap.sum() == 49
    assert not t.mask[gap].any()
    assert np.all(t.flux[gap] > 0)
    lo, hi = np.where(gap)[0][[0, -1]]
    left, right = t.flux[lo - 1], t.flux[hi + 1]
    assert np.all((t.flux[gap] >= min(left, right)) & (t.flux[gap] <= max(left, right)))  # a straight line
    for wlo, whi in TELLURIC_WINDOWS_VAC:
        assert not t.mask[(t.wave >= wlo) & (t.wave <= whi)].any()
    assert measured_coverage(t, 3700.0, 9000.0) > 0.95


def test_stelib_low_coverage_rejected(libs: Path) -> None:
    # HD131156 (G8V) has no data at 5840-6201 A: 92.9 % measured coverage of 3700-9000 A
    res = load_templates([libs / "stelib" / "STELIB_v3.2_HD131156.fits.gz"])
    assert res.templates == [] and len(res.skipped) == 1
    assert "measured coverage of 3700-9000 A is 92.9 % < 95 %" in res.skipped[0][1]


def test_lamost_dr1(lamost: Path) -> None:
    t = read_spectrum(lamost / DR1_011)
    _check_invariants(t)
    assert t.wave[0] == pytest.approx(3699.99, abs=0.01) and t.wave[-1] == pytest.approx(9088.66, abs=0.01)
    assert t.wave.size == 3904
    assert (t.cls, t.subclass, t.lumclass) == ("A", "A7", "V")
    assert (t.library, t.source_id) == ("lamost", "spec-55862-B6212_sp06-011")
    assert not t.mask[0] and not t.mask[-1]  # ivar = 0 at both ends in this file
    assert 0.9 < t.mask.mean() < 1.0


def test_lamost_dr7_and_dr8(lamost: Path) -> None:
    t7 = read_spectrum(lamost / DR7)
    t8 = read_spectrum(lamost / DR8)
    for t in (t7, t8):
        _check_invariants(t)
        assert t.wave.size == 3908
        assert t.wave[0] == pytest.approx(3699.99, abs=0.01) and t.wave[-1] == pytest.approx(9097.04, abs=0.01)
    assert (t7.cls, t7.subclass, t7.lumclass, t7.source_id) == ("G", "G7", "", "spec-55859-F5902_sp01-001")
    assert (t8.cls, t8.subclass, t8.source_id) == ("A", "A2", "spec-55859-F5902_sp01-013")
    assert t7.meta["format"] == "lamost_dr7" and t8.meta["format"] == "lamost_dr8"
    # the red-end zero padding (ivar > 0 there) is masked
    assert not t7.mask[-1] and t7.mask.sum() == 3908 - 29


def test_lamost_folder_loads_all_layouts(lamost: Path) -> None:
    res = load_templates([lamost], classes=None, require_range=None)
    assert res.by_library == {"lamost": 6} and res.skipped == []
    assert sorted(t.subclass for t in res.templates) == ["A2", "A5", "A7", "G7", "M0", "M0"]


# ---------------------------------------------------------------- loader
def test_pyhammer_counts(ph_miles: LoadResult) -> None:
    ph = [t for t in ph_miles.templates if t.library == "pyhammer"]
    assert len(ph) == 147 and ph_miles.by_library["pyhammer"] == 147
    assert {c: sum(t.cls == c for t in ph) for c in "FGK"} == {"F": 52, "G": 55, "K": 40}
    assert "pyhammer: 147 templates (F 52, G 55, K 40)" in summarize(ph_miles).splitlines()


def test_miles_counts(ph_miles: LoadResult) -> None:
    """985 MILES files -> 704 F/G/K templates.

    labels.csv counts F 213, G 273, K 247; of these, 26 "G" are the
    globular-cluster code "GB" (giant branch, not an MK type: left
    unclassified, never guessed), and 3 K stars (m0407, m0443, m0445) have
    no Teff so no splice partner can be chosen for their red end.
    """
    miles = [t for t in ph_miles.templates if t.library == "miles"]
    assert {c: sum(t.cls == c for t in miles) for c in "FGK"} == {"F": 213, "G": 247, "K": 244}
    assert ph_miles.by_library["miles"] == 704
    skipped = sorted(Path(p).name for p, _ in ph_miles.skipped)
    assert skipped == [f"MILES_res2.50_star_m{n}V.fits.gz" for n in ("0407", "0443", "0445")]
    assert all("no Teff" in r for _, r in ph_miles.skipped)
    assert ph_miles.unknown_labels["miles: 'GB'"] == 26
    assert sum(ph_miles.unknown_labels.values()) == 79
    assert ph_miles.dropped_by_class["miles:?"] == 79
    assert ph_miles.dropped_by_class["miles:A"] == 93 and ph_miles.dropped_by_class["miles:M"] == 50


def test_miles_splice(ph_miles: LoadResult) -> None:
    ids = _by_id(ph_miles)
    miles = [t for t in ph_miles.templates if t.library == "miles"]
    assert all("spliced_red_from" in t.meta for t in miles)
    t = ids["miles:m0001"]
    _check_invariants(t)
    assert t.wave[-1] >= 9000.0
    # m0001: G3V, Teff 5305, [Fe/H] -0.75. G partners within 100 K of the best
    # Teff match (G7_-1.0, 5328 K) include G9_-0.5 (5412 K), whose bin centre
    # -0.75 is the nearest [Fe/H]: it wins.
    partner = t.meta["spliced_red_from"]
    assert partner == "pyhammer:G9_-0.5_Dwarf" and partner in ids
    assert math.isfinite(t.meta["splice_scale"]) and t.meta["splice_scale"] > 0
    # blue part untouched and measured; everything from the blend start on is borrowed
    native = read_spectrum(t.path)
    n_keep = int(np.sum(native.wave < 7150.0))
    assert np.array_equal(t.flux[:n_keep], native.flux[:n_keep]) and t.mask[:n_keep].all()
    assert not t.mask[t.wave >= 7150.0].any()
    # continuous across the blend end for every spliced template
    for s in miles:
        i = int(np.searchsorted(s.wave, 7350.0))
        assert abs(s.flux[i] / s.flux[i - 1] - 1.0) < 0.05, s.template_id


def test_splice_needs_pyhammer(libs: Path, tmp_path: Path) -> None:
    path = libs / "miles" / "MILES_res2.50_star_m0001V.fits.gz"
    res = load_templates([path], splice_library=tmp_path / "nowhere")
    assert res.templates == []
    assert "no PyHammer library to splice the red end from" in res.skipped[0][1]
    # without a coverage requirement nothing is spliced or extrapolated
    res = load_templates([path], require_range=None)
    assert res.templates[0].wave[-1] == pytest.approx(7411.64, abs=0.01)
    # an explicit splice library; the alternative rule matches on spectrum shape
    pyh = tmp_path / "my_pyhammer"
    pyh.mkdir()
    for name in ("G0_+0.0_Dwarf.fits.gz", "G5_-1.0_Dwarf.fits.gz", "K3_+0.0_Dwarf.fits.gz"):
        shutil.copy(libs / "pyhammer" / name, pyh / name)
    res = load_templates([path], splice_library=pyh, splice_match="shape")
    t = res.templates[0]
    assert t.meta["splice_match"] == "shape" and t.wave[-1] >= 9000.0
    assert t.meta["spliced_red_from"] in ("pyhammer:G0_+0.0_Dwarf", "pyhammer:G5_-1.0_Dwarf")


def test_stelib_counts(libs: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LibraryWarning)
        res = load_templates([libs / "stelib"])
    # 167 F/G/K stars; 70 have < 95 % measured coverage of 3700-9000 A
    assert {c: sum(t.cls == c for t in res.templates) for c in "FGK"} == {"F": 40, "G": 33, "K": 24}
    assert len(res.skipped) == 70 and all("measured coverage" in r for _, r in res.skipped)
    for t in res.templates:
        _check_invariants(t)
        assert t.covers(3700.0, 9000.0)


def test_corrupt_files_are_skipped(libs: Path, tmp_path: Path) -> None:
    good = libs / "pyhammer" / "G2_+0.0_Dwarf.fits.gz"
    shutil.copy(good, tmp_path / good.name)
    (tmp_path / "garbage.fits").write_bytes(b"this is not a FITS file" * 100)
    raw = good.read_bytes()
    (tmp_path / "truncated.fits.gz").write_bytes(raw[: len(raw) // 3])
    (tmp_path / "truncated_plain.fits").write_bytes(gzip.decompress(raw)[:20000])
    with pytest.warns(LibraryWarning) as record:
        res = load_templates([tmp_path])
    messages = " ".join(str(w.message) for w in record)
    for name in ("garbage.fits", "truncated.fits.gz", "truncated_plain.fits"):
        assert name in messages
    assert messages.count("; skipped") == 3
    assert sorted(Path(p).name for p, _ in res.skipped) == ["garbage.fits", "truncated.fits.gz", "truncated_plain.fits"]
    assert [t.source_id for t in res.templates] == ["G2_+0.0_Dwarf"]


def test_empty_folder_raises(tmp_path: Path) -> None:
    empty = tmp_path / "empty_library"
    empty.mkdir()
    with pytest.raises(LibraryError, match="empty_library"):
        load_templates([empty])
    bad = tmp_path / "only_bad"
    bad.mkdir()
    (bad / "x.fits").write_bytes(b"garbage" * 10)
    with pytest.warns(LibraryWarning), pytest.raises(LibraryError, match="only_bad.*no usable spectrum"):
        load_templates([bad])


def test_unknown_labels_warned_once_with_counts(libs: Path) -> None:
    files = [libs / "miles" / f"MILES_res2.50_star_m{n}V.fits.gz" for n in ("0923", "0924", "0929")]  # GB, GB, HB
    with pytest.warns(LibraryWarning, match=r"3 spectrum file\(s\).*miles: 'GB' x2, miles: 'HB' x1") as record:
        res = load_templates(files)
    assert len(record) == 1
    assert res.templates == [] and res.unknown_labels == {"miles: 'GB'": 2, "miles: 'HB'": 1}
