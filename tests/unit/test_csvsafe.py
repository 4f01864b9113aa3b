"""idp.csvsafe: whatever the value, no segment a spreadsheet could split off starts a formula, and restore gives
the exact value back (what the user import relies on)."""

from __future__ import annotations

import csv
import io
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from idp.csvsafe import neutralise, restore, to_text

SEPARATORS = re.compile(r"[,;\t|\r\n]")
DANGEROUS = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# the characters that matter, plus a few ordinary ones, so that the interesting cases come up often
ALPHABET = st.sampled_from(list("=+-@'\t\r\n,;| ax1\uff1d\uff0b\uff0d\uff20"))


def neutral(cell: str) -> bool:
    if cell[:1] in ("\t", "\r"):
        return False
    return not any(seg.lstrip(" ").startswith(DANGEROUS) for seg in [cell, *SEPARATORS.split(cell)[1:]])


@settings(max_examples=3000, deadline=None)
@given(st.text(ALPHABET, max_size=12) | st.text(max_size=20))
def test_neutral_and_reversible(value: str) -> None:
    cell = neutralise(value)
    assert neutral(cell), (value, cell)
    assert restore(cell) == value
    assert cell.replace("'", "") == value.replace("'", "")     # only quote marks are added


def test_examples() -> None:
    assert neutralise("urn:x;=cmd|' /C calc'!A0") == "urn:x;'=cmd|'' /C calc'!A0"   # a ' there is doubled
    assert neutralise("\t=1") == "'\t'=1"
    assert neutralise("=1") == "'=1" and neutralise("a-b") == "a-b" and neutralise(None) == ""
    assert neutralise("2026-12-05T10:00:00Z") == "2026-12-05T10:00:00Z"


def test_every_cell_is_quoted() -> None:
    text = to_text([["id", "name"], [1, "=x"], [2, None]])
    assert text == '"id","name"\r\n"1","\'=x"\r\n"2",""\r\n'
    assert list(csv.reader(io.StringIO(text, newline="")))[1] == ["1", "'=x"]


def test_every_separator_and_trigger_is_guarded() -> None:
    """Written out independently of the implementation's sets: each separator a spreadsheet may split on,
    each formula trigger (ASCII and full-width), with and without spaces after the separator."""
    separators = [",", ";", "\t", "|", "\r", "\n"]
    triggers = ["=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20"]
    for sep in separators:
        for trigger in triggers:
            for spaces in ("", "  "):
                value = f"ok{sep}{spaces}{trigger}cmd"
                assert neutralise(value) == f"ok{sep}{spaces}'{trigger}cmd", (sep, trigger)
                assert restore(neutralise(value)) == value
        assert neutralise(f"ok{sep}x=1") == f"ok{sep}x=1"       # a trigger not at a segment's start is harmless
    for trigger in triggers:
        assert neutralise(f"{trigger}1") == f"'{trigger}1"
