"""`idp fields`, the --field options of `idp users`, `idp users show`, and CSV import/export: per-line reports,
dry runs that write nothing, all-or-nothing, --skip-invalid, and an export that imports back unchanged."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from idp.extensions import db
from idp.models import AdminAudit, User, UserFieldUnique
from idp.services import users as users_svc

from .test_cli import fails, ok


def state() -> dict[str, Any]:
    """Every user with their fields, and the unique claims and audit rows: what an import may change."""
    db.session.expire_all()
    users = {u.username: (u.email, u.first_name, u.last_name, u.group_names, u.password_hash, dict(u.custom_fields))
             for u in db.session.scalars(select(User))}
    claims = sorted((c.field_name, c.value, c.user_id) for c in db.session.scalars(select(UserFieldUnique)))
    return {"users": users, "claims": claims, "audit": db.session.query(AdminAudit).count()}


@pytest.fixture
def fields(app: Flask, alice: User, bob: User) -> None:
    ok(app, "groups", "add", "sales")
    ok(app, "fields", "add", "employee_number", "--type", "string", "--unique", "--label", "Employee number")
    ok(app, "fields", "add", "department", "--type", "string")
    ok(app, "fields", "add", "projects", "--type", "list")
    ok(app, "fields", "add", "contractor", "--type", "bool")
    ok(app, "fields", "add", "start_date", "--type", "date")


def write(tmp_path: Path, text: str, name: str = "users.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def report(app: Flask, *args: str, code: int = 0) -> dict[str, Any]:
    result = app.test_cli_runner().invoke(args=["users", "import", *args, "--format", "json"])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def results(rep: dict[str, Any]) -> list[tuple[str, str]]:
    return [(line["username"], line["result"]) for line in rep["lines"]]


# ---------------------------------------------------------------- fields and users

def test_fields_add_list_remove(app: Flask, fields: None) -> None:
    rows = json.loads(ok(app, "fields", "list", "--format", "json").stdout)
    assert [(r["name"], r["type"], r["unique"]) for r in rows] == [
        ("contractor", "bool", False), ("department", "string", False), ("employee_number", "string", True),
        ("projects", "list", False), ("start_date", "date", False)]
    assert "employee_number          string  unique  Employee number" in ok(app, "fields", "list").stdout
    fails(app, "fields", "add", "department", "--type", "string", fragment="user field 'department' already exists")
    fails(app, "fields", "add", "email", "--type", "string", fragment="reserved")
    fails(app, "fields", "add", "Bad-Name", "--type", "string", fragment="is not valid")
    fails(app, "fields", "add", "x", "--type", "int", fragment="Invalid value for '--type'", code=2)
    fails(app, "fields", "remove", "nothing", fragment="no user field 'nothing'")
    assert ok(app, "fields", "remove", "start_date").stdout == "field start_date removed (0 user values deleted)\n"


def test_fields_remove_refused_while_an_app_uses_it(app: Flask, fields: None, make_sp: Any) -> None:
    sp = make_sp("pysaml2", slug="crm")
    from idp.services import apps as apps_svc
    row = apps_svc.get_app(sp.slug)
    row.settings = {**row.settings, "attributes": {"dept": "formula:upper(user.department)"}}
    ok(app, "users", "set", "alice", "--field", "department=Sales")
    r = fails(app, "fields", "remove", "department", fragment="user field 'department' is used by app crm "
                                                              "(attribute dept); change those apps first")
    assert r.stdout == ""
    assert "crm (attribute dept)" in json.loads(ok(app, "fields", "list", "--format", "json").stdout)[1]["used_by"][0]
    assert json.loads(ok(app, "users", "show", "alice", "--format", "json").stdout)["fields"] == {
        "department": "Sales"}


def test_users_set_add_and_show_fields(app: Flask, fields: None) -> None:
    ok(app, "users", "set", "alice", "--field", "employee_number=E-1", "--field", "projects=apollo;gemini",
       "--field", "contractor=yes", "--field", "start_date=2024-03-01")
    shown = json.loads(ok(app, "users", "show", "alice", "--format", "json").stdout)
    assert shown["fields"] == {"employee_number": "E-1", "projects": ["apollo", "gemini"], "contractor": True,
                               "start_date": "2024-03-01"}
    text = ok(app, "users", "show", "alice").stdout
    assert "  projects           apollo;gemini\n" in text and "  department         (not set)\n" in text
    ok(app, "users", "set", "alice", "--clear-field", "projects", "--field", "contractor=")
    assert json.loads(ok(app, "users", "show", "alice", "--format", "json").stdout)["fields"] == {
        "employee_number": "E-1", "start_date": "2024-03-01"}
    ok(app, "users", "add", "carol", "--email", "carol@example.com", "--field", "department=Ops")
    assert json.loads(ok(app, "users", "show", "carol", "--format", "json").stdout)["fields"] == {"department": "Ops"}


@pytest.mark.parametrize(("args", "fragment"), [
    (["--field", "employee_number=e-1"], "employee_number: this value is already held by alice"),
    (["--field", "start_date=2024-02-30"], "start_date: '2024-02-30' is not a real date"),
    (["--field", "contractor=maybe"], "contractor: 'maybe' is not a bool"),
    (["--field", "nope=1"], "nope: no user field 'nope'"),
    (["--field", "department"], "--field takes NAME=VALUE"),
    (["--field", "projects=a", "--clear-field", "projects"], "both set and cleared"),
    (["--field", "department=Ops"], "field 'department' is given more than once"),
    (["--field", "projects=ok;a\x01"], "projects: a list item contains control characters"),
])
def test_users_set_bad_field_changes_nothing(app: Flask, fields: None, args: list[str], fragment: str) -> None:
    ok(app, "users", "set", "alice", "--field", "employee_number=E-1")
    before = state()
    fails(app, "users", "set", "bob", "--disabled", "--field", "department=Sales", *args, fragment=fragment)
    assert state() == before
    if "--clear-field" not in args:   # `users add` has nothing to clear
        fails(app, "users", "add", "carol", "--email", "carol@example.com", "--field", "department=Sales", *args,
              fragment=fragment)
        assert state() == before


# ---------------------------------------------------------------- import

GOOD = (
    "username,email,first_name,last_name,groups,employee_number,department,projects,contractor,start_date\n"
    "alice,,,,sales,E-1,Sales,apollo;gemini,yes,2024-03-01\n"          # updated
    "bob,,,,,,,,,\n"                                                   # unchanged
    "carol,carol@example.com,Carol,Danvers,sales;engineering,E-2,,,no,\n"  # created
)


def test_import_creates_updates_and_reports(app: Flask, fields: None, tmp_path: Path) -> None:
    rep = report(app, write(tmp_path, GOOD))
    assert results(rep) == [("alice", "updated"), ("bob", "unchanged"), ("carol", "created")]
    assert rep["summary"] == {"created": 1, "updated": 1, "unchanged": 1, "refused": 0}
    assert rep["written"] is True and rep["lines"][0]["line"] == 2
    assert rep["lines"][0]["changes"] == ["groups", "employee_number", "department", "projects", "contractor",
                                          "start_date"]
    carol = users_svc.get_user("carol")
    assert (carol.email, carol.first_name, carol.group_names, carol.password_hash) == (
        "carol@example.com", "Carol", ["engineering", "sales"], None)   # no password, as `users add` without one
    assert carol.custom_fields == {"employee_number": "E-2", "contractor": False}
    alice = users_svc.get_user("alice")
    assert alice.group_names == ["sales"] and alice.email == "alice@example.com"    # empty cell: unchanged
    assert alice.custom_fields["projects"] == ["apollo", "gemini"]
    audited = {(a.action, a.target) for a in db.session.scalars(select(AdminAudit))}
    assert {("user.update", "alice"), ("user.fields", "alice"), ("user.add", "carol"),
            ("user.fields", "carol")} <= audited
    assert ("user.update", "bob") not in audited and ("user.fields", "bob") not in audited
    # the same file again: every line unchanged, nothing written
    before = state()
    assert [r for _, r in results(report(app, write(tmp_path, GOOD)))] == ["unchanged"] * 3
    assert state() == before


def test_import_table_report(app: Flask, fields: None, tmp_path: Path) -> None:
    out = ok(app, "users", "import", write(tmp_path, GOOD)).stdout.splitlines()
    assert out[0].split() == ["LINE", "USERNAME", "RESULT", "DETAIL"]
    assert out[1].split()[:3] == ["2", "alice", "updated"] and out[3].split()[:3] == ["4", "carol", "created"]
    assert out[-2:] == ["1 created, 1 updated, 1 unchanged, 0 refused", "written"]


BAD = (
    "username,email,groups,employee_number,contractor,start_date\n"
    "dave,dave@example.com,,E-9,,\n"                 # 2: valid
    "erin,not-an-email,,,,\n"                        # 3: bad email
    "frank,frank@example.com,,,perhaps,\n"           # 4: bad type
    "dave,dave2@example.com,,,,\n"                   # 5: duplicate username in the file
    "gina,gina@example.com,,e-1,,\n"                 # 6: unique value alice holds
    "hank,hank@example.com,,E-9,,\n"                 # 7: unique value line 2 gives dave
    "ivan,ivan@example.com,ghosts,,,\n"              # 8: unknown group
    "judy,,,,,\n"                                    # 9: new user without email
    "bad name,x@example.com,,,,\n"                   # 10: invalid username
    "kim,kim@example.com,,,,2023-02-29\n"            # 11: not a real date
    "bob,,,,true,\n"                                 # 12: valid update
)
REASONS = {
    3: "email 'not-an-email' is not a valid address",
    4: "contractor: 'perhaps' is not a bool (true/false, yes/no, 1/0)",
    5: "duplicate username: line 2 is the same user",
    6: "employee_number: this value is already held by alice",
    7: "employee_number: this value is already given to dave on line 2",
    8: "no group 'ghosts' (create it with `idp groups add`)",
    9: "email is required for a new user",
    10: "username 'bad name' is not valid (letters, digits, . _ @ + -)",
    11: "start_date: '2023-02-29' is not a real date",
}


def test_import_is_all_or_nothing(app: Flask, fields: None, tmp_path: Path) -> None:
    ok(app, "users", "set", "alice", "--field", "employee_number=E-1")
    before = state()
    rep = report(app, write(tmp_path, BAD), code=1)
    assert rep["written"] is False
    refused = {line["line"]: line["reason"] for line in rep["lines"] if line["result"] == "refused"}
    assert refused == REASONS
    assert [(line["line"], line["result"]) for line in rep["lines"] if line["result"] != "refused"] == [
        (2, "created"), (12, "updated")]
    assert state() == before     # not even the valid lines, nor their audit rows
    r = fails(app, "users", "import", write(tmp_path, BAD), fragment="nothing written: 9 lines refused")
    assert "3      erin" in r.stdout


def test_import_dry_run_writes_nothing(app: Flask, fields: None, tmp_path: Path) -> None:
    before = state()
    rep = report(app, write(tmp_path, GOOD), "--dry-run")
    assert results(rep) == [("alice", "updated"), ("bob", "unchanged"), ("carol", "created")]
    assert rep["dry_run"] is True and rep["written"] is False
    assert state() == before
    assert ok(app, "users", "import", "--dry-run", write(tmp_path, GOOD)).stdout.endswith(
        "dry run: nothing written\n")
    report(app, write(tmp_path, BAD), "--dry-run", code=1)     # refusals still exit 1
    assert state() == before


def test_import_skip_invalid_writes_the_valid_lines(app: Flask, fields: None, tmp_path: Path) -> None:
    ok(app, "users", "set", "alice", "--field", "employee_number=E-1")
    before = state()
    rep = report(app, write(tmp_path, BAD), "--skip-invalid", code=1)
    assert rep["written"] is True and rep["summary"]["refused"] == 9
    after = state()
    assert set(after["users"]) - set(before["users"]) == {"dave"}
    assert after["users"]["dave"][5] == {"employee_number": "E-9"}
    assert after["users"]["bob"][5] == {"contractor": True}
    assert ("employee_number", "e-9", users_svc.get_user("dave").id) in after["claims"]
    # refused lines left nothing: no user, no claim, no audit row naming them
    for name in ("erin", "frank", "gina", "hank", "ivan", "judy", "kim"):
        assert db.session.query(AdminAudit).filter_by(target=name).count() == 0


@pytest.mark.parametrize(("content", "fragment"), [
    (b"username,email,shoe_size\nalice,,42\n", "unknown column 'shoe_size'"),
    (b"email,department\na@example.com,x\n", "no username column"),
    (b"username,email,email\nalice,a@example.com,b@example.com\n", "column email appears more than once"),
    (b"", "the file is empty"),
    (b"username,first_name\nalice,Ren\xe9\n", "not UTF-8 text (line 2)"),
    (b'username,first_name\nalice,"a"b\n', "not readable CSV (line 2)"),
    (b'username,first_name\nalice,"open\n', "not readable CSV (line 2)"),
])
def test_import_refuses_a_bad_file_before_any_line(app: Flask, fields: None, tmp_path: Path, content: bytes,
                                                   fragment: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    before = state()
    r = fails(app, "users", "import", str(path), fragment=fragment)
    assert r.stdout == "" and state() == before


def test_import_limits(app: Flask, fields: None, tmp_path: Path) -> None:
    lines = "".join(f"user{i},u{i}@example.com\n" for i in range(10_001))
    fails(app, "users", "import", write(tmp_path, "username,email\n" + lines), fragment="more than 10,000 lines")
    big = tmp_path / "big.csv"
    big.write_bytes(b"username,department\n" + b"alice," + b"x" * (5 * 1024 * 1024) + b"\n")
    fails(app, "users", "import", str(big), fragment="larger than 5 MB")
    assert users_svc.find_user("user0") is None


def test_import_accepts_a_spreadsheet_bom_and_crlf(app: Flask, fields: None, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffusername,department\r\nalice,Génie\r\n".encode())
    assert results(report(app, str(path))) == [("alice", "updated")]
    assert users_svc.get_user("alice").custom_fields == {"department": "Génie"}


# ---------------------------------------------------------------- export

def test_export_round_trip_is_unchanged(app: Flask, fields: None, tmp_path: Path) -> None:
    ok(app, "users", "set", "alice", "--field", "employee_number=E-1", "--field", 'projects=["semi;colon", "b"]',
       "--field", "contractor=true", "--field", "start_date=2024-03-01", "--field", "department==1+1")
    ok(app, "users", "set", "bob", "--field", "department='quoted", "--field", "contractor=no", "--group", "sales")
    ok(app, "users", "add", "carol", "--email", "-carol@example.com", "--first-name", "@Carol",
       "--last-name", 'Comma, "Quote"')
    out = tmp_path / "export.csv"
    ok(app, "users", "export", "--output", str(out))
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert rows[0] == ["username", "email", "first_name", "last_name", "groups", "contractor", "department",
                       "employee_number", "projects", "start_date"]
    alice = dict(zip(rows[0], rows[1], strict=True))
    assert alice["department"] == "'=1+1"                # a spreadsheet shows it as text, never runs it
    assert alice["projects"] == '["semi;colon", "b"]' and alice["groups"] == "engineering"
    assert dict(zip(rows[0], rows[3], strict=True))["email"] == "'-carol@example.com"
    before = state()
    rep = report(app, str(out))
    assert results(rep) == [("alice", "unchanged"), ("bob", "unchanged"), ("carol", "unchanged")]
    assert state() == before
    # standard output carries the same document
    assert ok(app, "users", "export").stdout == out.read_text(encoding="utf-8")


def test_export_json_is_typed_and_has_no_secrets(app: Flask, fields: None) -> None:
    ok(app, "users", "set", "alice", "--field", "projects=a;b", "--field", "contractor=1")
    text = ok(app, "users", "export", "--format", "json").stdout
    rows = json.loads(text)
    assert [r["username"] for r in rows] == ["alice", "bob"]
    assert rows[0]["projects"] == ["a", "b"] and rows[0]["contractor"] is True and rows[0]["department"] is None
    assert "argon2" not in text and "password" not in text and "totp" not in text
