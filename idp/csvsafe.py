"""One guard against spreadsheet formula injection for every CSV the IdP writes (events, users).

A spreadsheet runs a cell that starts with = + - @ (or their full-width forms) as a formula, and it may split a
cell on any separator it guesses or the locale sets (, ; tab | and line breaks), so a value such as
`urn:x;=cmd|...` is dangerous even when the CSV quotes it. `neutralise` puts a ' before every such start: at the
beginning of the cell and after each separator (spaces skipped), and before a leading tab or CR; a ' already in
one of those places gets another, so `restore` (what an import does) gives back the exact value. Every cell is
quoted as well (QUOTE_ALL).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence

FORMULA_CHARS = "=+\\-@\uff1d\uff0b\uff0d\uff20"      # = + - @ and full-width ＝ ＋ － ＠
SEPARATORS = ",;\t|\r\n"
_SEGMENT = re.compile(f"((?:^|[{SEPARATORS}]) *)(?=[{FORMULA_CHARS}'])")
_SEGMENT_GUARDED = re.compile(f"((?:^|[{SEPARATORS}]) *)'(?=[{FORMULA_CHARS}'])")
_LEADING = re.compile("^(?=[\t\r])")
_LEADING_GUARDED = re.compile("^'(?=[\t\r])")


def neutralise(value: object) -> str:
    """The cell text of `value` (None: empty) that no spreadsheet runs as a formula, whatever its separator."""
    text = "" if value is None else str(value)
    return _LEADING.sub("'", _SEGMENT.sub(r"\1'", text), count=1)


def restore(cell: str) -> str:
    """The value `neutralise` was given (the exact inverse)."""
    return _SEGMENT_GUARDED.sub(r"\1", _LEADING_GUARDED.sub("", cell, count=1))


def to_text(rows: Iterable[Sequence[object]], *, lineterminator: str = "\r\n") -> str:
    """CSV text of `rows` (the header is a row too): every cell neutralised and quoted."""
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator=lineterminator)
    writer.writerows([neutralise(c) for c in row] for row in rows)
    return buf.getvalue()
