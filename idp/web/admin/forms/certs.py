"""The certificates page's form: the next signing key's type and validity."""

from __future__ import annotations

from idp.web.admin.forms.base import AdminForm, TextField


class RotateKeyForm(AdminForm):
    """Key type and days (the rules are admin_queries.validate_rotation's, refused as FormErrors by field)."""

    key_type = TextField(limit=20, strip=False)
    days = TextField(limit=10)
