"""The app page's provisioning form: SCIM base URL, credential (bearer token or OAuth client credentials; the
secret write-only: blank keeps the stored one, never rendered back), operations, deprovision mode, on/off and the
mapping rows (SCIM path = a user field or a formula, as the attribute editor). Saved by
services.provisioning.configure, the same validation as `idp apps provisioning`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from idp.attributes.release import FORMULA_PREFIX, parse_source
from idp.models import AppProvisioning
from idp.services import ServiceError
from idp.services import provisioning as prov
from idp.services.field_schema import current_schema
from idp.web.admin.forms.base import AdminForm, FlagField, ListField, TextField, one_of
from idp.web.admin.forms.release import FORMULA, MAX_FORMULA, source_groups

AUTH_KINDS = ("bearer", "client_credentials")
MAX_ROWS = 100
BLANK_ROWS = 2


@dataclass(frozen=True, slots=True)
class MappingRow:
    path: str
    source: str           # a field name, FORMULA, or ""
    formula: str = ""

    @property
    def stored_source(self) -> str:
        return FORMULA_PREFIX + self.formula if self.source == FORMULA or (not self.source and self.formula) \
            else self.source

    @classmethod
    def of(cls, path: str, text: str) -> MappingRow:
        kind, value = parse_source(text)
        return cls(path, FORMULA, value) if kind == "formula" else cls(path, value)


class ProvisioningForm(AdminForm):
    scim_url = TextField(limit=3000)
    auth_kind = TextField(limit=30, validators=[one_of(AUTH_KINDS, "the credential kind")])
    token = TextField(limit=5000)            # write-only
    client_id = TextField(limit=300)
    token_url = TextField(limit=3000)
    client_secret = TextField(limit=5000)    # write-only
    operations = ListField(limit=20, keep_empty=False, unique=True, max_items=10)
    deprovision = TextField(limit=20, validators=[one_of(prov.DEPROVISION_MODES, "losing access")])
    enabled = FlagField()
    map_path = ListField(limit=200, max_items=MAX_ROWS)
    map_field = ListField(limit=64, max_items=MAX_ROWS)
    map_formula = ListField(limit=MAX_FORMULA, max_items=MAX_ROWS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.row_errors: dict[int, str] = {}
        self.mapping_error: str | None = None
        self.schema = current_schema()

    def add_error(self, name: str | None, message: str) -> None:
        if name == "mapping":   # the rows are no WTForms field: the message sits above the mapping table
            self.mapping_error = message
        else:
            super().add_error(name, message)

    @property
    def errors_by_field(self) -> dict[str, str]:
        return {**self.messages, **({"mapping": self.mapping_error} if self.mapping_error else {})}

    @classmethod
    def from_config(cls, cfg: AppProvisioning | None) -> ProvisioningForm:
        """The form filled with the stored settings (the secrets left blank)."""
        shown = prov.show_config(cfg) if cfg is not None else None
        mapping = shown["mapping"] if shown else dict(prov.DEFAULT_MAPPING)
        rows = [MappingRow.of(path, source) for path, source in mapping.items()]
        return cls(formdata=None, data={
            "scim_url": shown["scim_url"] if shown else "", "auth_kind": shown["auth"] if shown else "bearer",
            "client_id": (shown or {}).get("client_id") or "", "token_url": (shown or {}).get("token_url") or "",
            "operations": shown["operations"] if shown else list(prov.DEFAULT_OPERATIONS),
            "deprovision": shown["deprovision"] if shown else "deactivate",
            "enabled": shown["enabled"] if shown else False,
            "map_path": [r.path for r in rows], "map_field": [r.source for r in rows],
            "map_formula": [r.formula for r in rows]})

    @property
    def rows(self) -> list[MappingRow]:
        paths, fields, formulas = self.map_path.data, self.map_field.data, self.map_formula.data
        return [MappingRow(p, fields[i] if i < len(fields) else "", formulas[i] if i < len(formulas) else "")
                for i, p in enumerate(paths)]

    @property
    def blank_rows(self) -> int:
        return BLANK_ROWS

    @property
    def source_groups(self) -> list[tuple[str, list[tuple[str, str]]]]:
        return source_groups(self.schema)

    def validate_rows(self) -> bool:
        """Each filled row checked on its own (path, field or formula), the error next to it."""
        self.row_errors = {}
        if not (len(self.map_path.data) == len(self.map_field.data) == len(self.map_formula.data)):
            self.add_error("mapping", "The mapping rows are incomplete; reload the page and try again.")
            return False
        seen: set[str] = set()
        for i, row in enumerate(self.rows):
            if not row.path:   # a cleared path removes the row (blank rows are new ones left empty)
                continue
            if row.path in seen:
                self.row_errors[i] = f"{row.path} is mapped twice."
                continue
            seen.add(row.path)
            if not row.stored_source or row.stored_source == FORMULA_PREFIX:
                self.row_errors[i] = "Choose a field or write a formula."
                continue
            try:
                prov.check_mapping_entry(row.path, row.stored_source)
            except ServiceError as exc:
                self.row_errors[i] = str(exc)
        if self.row_errors:
            self.add_error("mapping", "Fix the mapping rows marked below.")
        return not self.row_errors

    def changes(self, cfg: AppProvisioning | None) -> dict[str, Any] | None:
        """configure()'s arguments, or None with errors next to the fields (a secret missing where one is needed).
        The mapping is the rows as posted: stored paths left out are removed."""
        ok = True
        out: dict[str, Any] = {"scim_url": self.scim_url.data, "operations": list(self.operations.data),
                               "deprovision": self.deprovision.data, "enabled": bool(self.enabled.data)}
        if self.auth_kind.data == "bearer":
            if self.token.data:
                out["token"] = self.token.data
            elif cfg is None or cfg.auth_kind != "bearer" or cfg.secret_sealed is None:
                self.add_error("token", "Enter the bearer token.")
                ok = False
        else:
            out["client_id"], out["token_url"] = self.client_id.data, self.token_url.data
            if self.client_secret.data:
                out["client_secret"] = self.client_secret.data
            elif cfg is None or cfg.auth_kind != "client_credentials" or cfg.secret_sealed is None:
                self.add_error("client_secret", "Enter the client secret.")
                ok = False
        posted = {row.path: row.stored_source for row in self.rows if row.path}
        current = dict(cfg.mapping or {}) if cfg is not None else dict(prov.DEFAULT_MAPPING)
        out["mapping"] = {**{path: "" for path in current if path not in posted}, **posted}
        return out if ok else None

    def field_for(self, exc: ServiceError) -> str | None:
        """Which field a refusal of services.provisioning.configure belongs to."""
        if exc.field == "url":
            return "token_url" if "token URL" in str(exc) else "scim_url"
        if exc.field == "secret":
            return "token" if self.auth_kind.data == "bearer" else "client_secret"
        return exc.field if exc.field in ("client_id", "operations", "mapping", "deprovision") else None


class ReconcileForm(AdminForm):
    """"Reconcile now", or with dry_run "Dry run" (the button's value)."""

    dry_run = FlagField()
