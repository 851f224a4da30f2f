"""Parse MK spectral-type strings (``"G1V"``, ``"KIIvw"``, ``"sdF2:"``, ``"A7V"``).

One parser for every library (MILES ``SpT``, STELIB ``SPECTYPE``, LAMOST
``SUBCLASS``) so that the labels mean the same thing everywhere. The parser is
deliberately conservative: a string it cannot read is reported as unparsed and
never guessed (e.g. the MILES globular-cluster codes ``"GB"``/``"HB"``/``"AGB"``
mean giant/horizontal/asymptotic branch, not class G/H/A).
"""

from __future__ import annotations

import re
from typing import NamedTuple

#: MK class letters we accept; anything else (W, C, S, R, D, ...) is unparsed.
MK_CLASSES = "OBAFGKM"

# Optional luminosity prefix, class letter, optional numeric subclass, remainder.
# "sd" = subdwarf (VI), "d" = dwarf (V), "g" = giant (III) -- LAMOST uses dM/gM/sdM.
_HEAD = re.compile(r"^\s*(?P<prefix>sd|d|g)?:?\s*(?P<cls>[A-Z])(?P<num>\d+(?:\.\d+)?)?(?P<rest>.*)$")

# Roman-numeral luminosity class, longest alternatives first so that "III"
# is not read as "I", "IV" not as "I" and "Iab" not as "Ia".
_LUM = re.compile(r"(Ia\+|Iab|Ia|Ib|III|II|IV|I|VI|V)")

_PREFIX_LUM = {"sd": "VI", "d": "V", "g": "III"}


class SpectralType(NamedTuple):
    """Result of :func:`parse_spectral_type`.

    Attributes
    ----------
    cls
        MK class letter, ``""`` if unparsed.
    subclass
        Letter plus numeric subclass (``"G8"``, ``"F7.5"``), ``""`` if the
        string gives only a letter.
    lumclass
        Luminosity class (``"V"``, ``"III"``, ``"Iab"``, ...), ``""`` if none.
    parsed
        False when the string could not be read as an MK type (or was empty).
    """

    cls: str
    subclass: str
    lumclass: str
    parsed: bool


UNPARSED = SpectralType("", "", "", False)


def _format_num(num: str) -> str:
    """Drop a trailing ``.0`` so that ``"G8.0"`` and ``"G8"`` agree."""
    if "." in num:
        num = num.rstrip("0").rstrip(".")
    return num


def parse_spectral_type(text: str | None) -> SpectralType:
    """Parse an MK spectral-type string.

    Parameters
    ----------
    text
        Raw string, e.g. ``"G1V"``, ``"K0 III"``, ``"G8/K0IIIw."``,
        ``"KIIvw"``, ``"sdG0"``, ``"dM0"``, ``"A7V"``.

    Returns
    -------
    SpectralType
        ``parsed`` is False (and all fields empty) for an empty string, for a
        class letter outside OBAFGKM (``"WN"``, ``"DA:"``, ``"S?"``,
        ``"Carbon"``), for strings that do not start with a class letter
        (``"III"``, ``"07Ia"``) and for a class letter followed by another
        capital letter (``"GB"``, ``"AGB"``, ``"HB"``: evolutionary-stage
        codes, not MK types).

    Notes
    -----
    Ranges and alternatives keep the first type (``"F3-5V"`` -> F3,
    ``"G8/K0III"`` -> G8, ``"F8 V-VI"`` -> V). Uncertainty marks (``:``,
    ``?``) and peculiarity suffixes (``w``, ``p``, ``e``, ``var``, ``CN``...)
    are ignored. A prefix ``sd``/``d``/``g`` sets VI/V/III when no roman
    numeral is given.
    """
    if text is None:
        return UNPARSED
    s = str(text).strip()
    m = _HEAD.match(s)
    if m is None or m.group("cls") not in MK_CLASSES:
        return UNPARSED
    cls = m.group("cls")
    num = m.group("num")
    rest = m.group("rest")
    # A second capital right after the letter that is not a roman numeral
    # ("GB", "AGB", "HB") means this is not an MK type.
    if num is None and rest[:1].isupper() and rest[:1] not in "IV":
        return UNPARSED
    subclass = f"{cls}{_format_num(num)}" if num else ""
    lum_match = _LUM.search(rest)
    if lum_match is not None:
        lumclass = lum_match.group(1)
    else:
        lumclass = _PREFIX_LUM.get(m.group("prefix") or "", "")
    return SpectralType(cls, subclass, lumclass, True)
