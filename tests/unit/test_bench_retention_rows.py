"""The bench's retention rows: reported without targets, in their units."""

from __future__ import annotations

from bench.run import TARGETS, _table, _target_doc


def test_retention_rows_are_reported_with_their_units() -> None:
    keys = ("retention_purge_1m_s", "sso_during_purge_per_s", "sso_during_purge_p95_ms", "sso_no_purge_per_s",
            "sso_no_purge_p95_ms")
    assert [TARGETS[k][0] for k in keys] == ["s", "/wall-s", "ms", "/wall-s", "ms"]
    assert not set(keys) & set(_target_doc(dict.fromkeys(keys, 1.0)))
    rows = {line.split()[0]: line for line in _table({"retention_purge_1m_s": 18.8}, {}, False).splitlines()}
    assert rows["retention_purge_1m_s"].split()[1:4] == ["18.8", "s", "info"]
