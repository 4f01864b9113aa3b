"""The one reading of on/off values in query strings and forms."""

from __future__ import annotations

import pytest

from idp.web.params import flag


@pytest.mark.parametrize(("raw", "expected"), [
    ("1", True), ("true", True), ("TRUE", True), (" on ", True), ("yes", True),
    ("0", False), ("false", False), ("Off", False), ("no", False),
    (None, None), ("", None), ("2", None), ("truee", None), ("１", None), ("true\x00", None),
])
def test_flag(raw: str | None, expected: bool | None) -> None:
    assert flag(raw) is expected
