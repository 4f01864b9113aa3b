"""The org settings page's forms: a trusted IP range, MFA self-enrolment on or off, an admin console IP range."""

from __future__ import annotations

from idp.web.admin.forms.base import AdminForm, TextField, one_of, required


class TrustedRangeForm(AdminForm):
    cidr = TextField(limit=100, validators=[required("Enter a range such as 10.0.0.0/8 or 2001:db8::/32.")])


class SelfEnrollForm(AdminForm):
    self_enroll = TextField(limit=None, strip=False, validators=[one_of(("0", "1"), "self_enroll")])


class AdminRangeForm(AdminForm):
    cidr = TextField(limit=100, validators=[required("Enter a range such as 10.0.0.0/8 or 2001:db8::/32.")])
