"""Bad input on the library side (issue 13 item 11): a LAMOST 1D file with a garbled header card.

In a library folder the file is skipped with a warning naming it (the rest loads); read on its own it is a
one-line error naming the file and the card - never astropy's long VerifyError traceback.
"""

from __future__ import annotations

import gzip
import shutil
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from drcnet.cli import app
from drcnet.library import LibraryWarning, load_templates, read_spectrum

DR8 = "spec-55859-F5902_sp01-013_dr8.fits.gz"


def _garbled_copy(src: Path, dst: Path, key: str, image: str) -> Path:
    raw = bytearray(gzip.decompress(src.read_bytes()))
    i = raw.find(key.ljust(8).encode() + b"= ")
    assert i >= 0, key
    raw[i : i + 80] = image.ljust(80).encode()
    dst.write_bytes(bytes(raw))
    return dst


@pytest.fixture(scope="module")
def lamost(data_root: Path) -> Path:
    return data_root / "lamost_format_examples"


@pytest.mark.parametrize(
    "key, image",
    [
        ("Z", "Z       = 0.00012 +- 0.00002"),
        ("SUBCLASS", "SUBCLASS= G2 (uncertain"),
        ("FILENAME", "FILENAME= spec-55859 '"),
    ],
)
def test_garbled_card_skips_the_file_and_keeps_the_folder(lamost, tmp_path, key, image):
    folder = tmp_path / "lib"
    folder.mkdir()
    for p in sorted(lamost.glob("*.fits.gz")):
        if p.name != DR8:
            shutil.copy(p, folder / p.name)
    bad = _garbled_copy(lamost / DR8, folder / "garbled.fits", key, image)
    with pytest.warns(LibraryWarning) as rec:
        res = load_templates([folder], classes=None, require_range=None)
    assert res.by_library == {"lamost": 5}
    assert [s[0] for s in res.skipped] == [str(bad)]
    assert any(str(bad) in str(w.message) and f"unparsable header card {key}" in str(w.message) for w in rec)
    with pytest.raises(ValueError, match=f"{bad.name}: unparsable header card {key}"):
        read_spectrum(bad)


def test_garbled_library_file_on_the_command_line_is_one_line(lamost, tmp_path):
    bad = _garbled_copy(lamost / DR8, tmp_path / "garbled.fits", "Z", "Z       = 0.00012 +- 0.00002")
    res = CliRunner().invoke(
        app, ["simulate", "--library", str(bad), "--out", str(tmp_path / "d.h5"), "--preset", "tiny"]
    )
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in res.output and "VerifyError" not in res.output
    assert "garbled.fits" in text and "unparsable header card Z" in text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert not (tmp_path / "d.h5").exists()
