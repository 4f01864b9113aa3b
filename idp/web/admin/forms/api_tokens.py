"""The API tokens page's form (a new token). Names, scopes and expiry are checked by services.api_tokens."""

from __future__ import annotations

from idp.web.admin.forms.base import AdminForm, ListField, TextField


class NewApiTokenForm(AdminForm):
    name = TextField(limit=100)
    scopes = ListField(limit=40, keep_empty=False, unique=True, max_items=40)
    expires = TextField(limit=6)
