"""One rule for the single-line text admins and imports put into what the IdP signs and sends (field values,
attribute names, FriendlyNames, formula results): printable Unicode that XML 1.0 can carry — no C0/C1 control
characters, no DEL, no lone surrogates, no U+FFFE/U+FFFF. A value that breaks this rule would make the response
unbuildable at sign-in, so it is refused where it enters."""

from __future__ import annotations

import re

_NOT_CLEAN = re.compile("[^\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def is_clean_text(value: str) -> bool:
    return _NOT_CLEAN.search(value) is None
