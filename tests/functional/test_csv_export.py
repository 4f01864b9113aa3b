"""Every CSV the IdP writes (event export from the CLI and the console, user export) neutralises spreadsheet
formula injection in every cell whatever separator the spreadsheet splits on, quotes every cell, and the user
export still imports back unchanged."""

from __future__ import annotations

import csv
import io
import re

import pytest
from flask import Flask

from idp.errors import EventContext
from idp.events import EventFilter, record_event
from idp.extensions import db
from idp.reasons import Reason
from idp.services import users as users_svc
from idp.services.admin_queries import export_events

# what a spreadsheet may split a cell on (it guesses the separator, or the locale sets it)
SEPARATORS = re.compile(r"[,;\t|\r\n]")
DANGEROUS = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")

PAYLOADS = [
    "urn:x;=cmd|' /C calc'!A0",
    "\t=1+2",
    "ok,=HYPERLINK(\"http://evil\")",
    "a|@SUM(1)",
    "x\r\n+1",
    "  =1",
    "\uff1dcmd",
    "b; \uff20x",
    "-2+3",
    "'=already quoted",
]


def assert_neutral(cell: str) -> None:
    """No segment a spreadsheet could see (the cell itself, or any part after a separator, leading spaces
    skipped) starts a formula; the cell does not start with a tab or CR either."""
    assert cell[:1] not in ("\t", "\r"), repr(cell)
    for segment in [cell, *SEPARATORS.split(cell)[1:]]:
        assert not segment.lstrip(" ").startswith(DANGEROUS), (repr(cell), repr(segment))


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def assert_all_quoted(text: str, n_cells: int) -> None:
    first = text.splitlines()[0]
    assert first.startswith('"') and first.count('"') == 2 * n_cells, first


def record(sp_entity_id: str, user_agent: str) -> None:
    record_event(EventContext(event_type="sso", sp_entity_id=sp_entity_id, request_id=sp_entity_id),
                 Reason.UNKNOWN_SP, client_ip="192.0.2.1", user_agent=user_agent)
    db.session.commit()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_event_export_cli_neutralises_every_cell(app: Flask, payload: str) -> None:
    record(payload, payload)
    result = app.test_cli_runner().invoke(args=["events", "--format", "csv"])
    assert result.exit_code == 0, result.output
    header, *rows = rows_of(result.output)
    assert_all_quoted(result.output, len(header))
    assert len(rows) == 1
    for cell in rows[0]:
        assert_neutral(cell)
    row = dict(zip(header, rows[0], strict=True))
    # only quote marks were added: the value is still readable
    assert row["sp_entity_id"].replace("'", "").replace("\r", "") == payload.replace("'", "").replace("\r", "")


def test_event_export_console_chunks_neutralise(app: Flask) -> None:
    for p in PAYLOADS:
        record(p, p)
    export = export_events(EventFilter(), "csv")
    text = "".join(export.chunks)
    header, *rows = rows_of(text)
    assert_all_quoted(text, len(header))
    assert len(rows) == len(PAYLOADS)
    for row in rows:
        for cell in row:
            assert_neutral(cell)


def test_user_export_neutralises_and_imports_back_unchanged(app: Flask, tmp_path) -> None:  # type: ignore[no-untyped-def]
    names = [("Bob;=HYPERLINK(1)", "x|+1"), ("\uff1dcmd", "a, @b"), ("'=q", "-n")]
    for i, (first, last) in enumerate(names):
        users_svc.add_user(f"user{i}", email=f"u{i}@example.com", first_name=first, last_name=last,
                          password_hash=None)
    db.session.commit()
    runner = app.test_cli_runner()
    out = runner.invoke(args=["users", "export"])
    assert out.exit_code == 0, out.output
    header, *rows = rows_of(out.output)
    assert_all_quoted(out.output, len(header))
    for row in rows:
        for cell in row:
            assert_neutral(cell)
    # the guarded file imports back as the same values
    path = tmp_path / "users.csv"
    path.write_text(out.output, encoding="utf-8", newline="")
    for i in range(len(names)):
        users_svc.find_user(f"user{i}").first_name = "changed"   # type: ignore[union-attr]
    db.session.commit()
    imported = runner.invoke(args=["users", "import", str(path)])
    assert imported.exit_code == 0, imported.output
    db.session.expire_all()
    for i, (first, last) in enumerate(names):
        u = users_svc.find_user(f"user{i}")
        assert u is not None and (u.first_name, u.last_name) == (first, last)
