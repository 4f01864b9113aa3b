"""The access check's form: who, which app, from where, with or without a second factor."""

from __future__ import annotations

from idp.web.admin.forms.base import AdminForm, FlagField, TextField


class AccessCheckForm(AdminForm):
    """Checked by flows.access.check_access, which refuses with FormErrors by field."""

    username = TextField(limit=150)
    app = TextField(limit=100)
    ip = TextField(limit=64)
    mfa = FlagField(true_values=("1",))
    passkey = FlagField(true_values=("1",))
