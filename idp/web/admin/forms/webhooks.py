"""The Notifications page's form (a new webhook endpoint). URL, types, app and filters are checked by
services.webhooks."""

from __future__ import annotations

from idp.web.admin.forms.base import AdminForm, ListField, TextField


class NewWebhookForm(AdminForm):
    url = TextField(limit=2048)
    events = ListField(limit=60, keep_empty=False, unique=True, max_items=100)
    app = TextField(limit=100)
    outcomes = ListField(limit=20, keep_empty=False, unique=True, max_items=10)
    reasons = TextField(limit=2000)
    description = TextField(limit=200)
