"""The forms of the org settings, certificates and access check pages."""

from __future__ import annotations

from idp.web.admin.forms.base import AdminForm, FlagField, TextField, one_of, required


class TrustedRangeForm(AdminForm):
    cidr = TextField(limit=100, validators=[required("Enter a range such as 10.0.0.0/8 or 2001:db8::/32.")])


class SelfEnrollForm(AdminForm):
    self_enroll = TextField(limit=None, strip=False, validators=[one_of(("0", "1"), "self_enroll")])


class RotateKeyForm(AdminForm):
    """The next signing key: its type and validity (the key rules are admin_queries.validate_rotation's)."""

    key_type = TextField(limit=20, strip=False)
    days = TextField(limit=10)


class AccessCheckForm(AdminForm):
    """Who, which app, from where, with or without a second factor (checked by admin_queries.check_access)."""

    username = TextField(limit=150)
    app = TextField(limit=100)
    ip = TextField(limit=64)
    mfa = FlagField(true_values=("1",))
