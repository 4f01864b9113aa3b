"""The org settings page's forms: a trusted IP range, MFA self-enrolment on or off, the enrolment mode, an admin
console IP range."""

from __future__ import annotations

from idp.web.admin.forms.base import AdminForm, TextField, one_of, required


class TrustedRangeForm(AdminForm):
    cidr = TextField(limit=100, validators=[required("Enter a range such as 10.0.0.0/8 or 2001:db8::/32.")])


class SelfEnrollForm(AdminForm):
    self_enroll = TextField(limit=None, strip=False, validators=[one_of(("0", "1"), "self_enroll")])


class AdminRangeForm(AdminForm):
    cidr = TextField(limit=100, validators=[required("Enter a range such as 10.0.0.0/8 or 2001:db8::/32.")])


ENROLMENT_KINDS = ("trusted-ranges", "link-only", "grace-days")


class EnrolmentModeForm(AdminForm):
    """Who may set up a first second factor without an enrolment link; the text on the refusal page."""

    mfa_enrolment = TextField(limit=40, validators=[one_of(ENROLMENT_KINDS, "mfa_enrolment")])
    grace_days = TextField(limit=10)
    enrolment_help = TextField(limit=600)

    def mode(self) -> str:
        kind = self.mfa_enrolment.data
        return f"grace-days:{self.grace_days.data}" if kind == "grace-days" else kind
