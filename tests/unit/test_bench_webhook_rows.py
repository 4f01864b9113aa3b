"""The bench's webhook rows: reported without targets, deliveries per wall-second, SSO per CPU-second, a ratio."""

from __future__ import annotations

from bench.run import TARGETS, _table, _target_doc


def test_webhook_rows_are_reported_with_their_units() -> None:
    assert {k: TARGETS[k][0] for k in ("webhook_delivery_per_s", "sso_webhook_per_s", "sso_webhook_ratio")} == \
        {"webhook_delivery_per_s": "/wall-s", "sso_webhook_per_s": "/CPU-s", "sso_webhook_ratio": "x"}
    assert "sso_webhook_ratio" not in _target_doc({"sso_webhook_ratio": 0.9})   # no target: reported only
    rows = {line.split()[0]: line for line in _table({"webhook_delivery_per_s": 190.2, "sso_webhook_ratio": 0.86},
                                                     {}, False).splitlines()}
    assert rows["webhook_delivery_per_s"].split()[1:4] == ["190.2", "/wall-s", "info"]
    assert rows["sso_webhook_ratio"].split()[1:4] == ["0.86", "x", "info"]
