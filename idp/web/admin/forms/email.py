"""The email notifications section's forms: the SMTP settings (the password write-only), the admin recipients,
a test message."""

from __future__ import annotations

import re

from idp.web.admin.forms.base import AdminForm, TextField, required


class SmtpSettingsForm(AdminForm):
    smtp_url = TextField(limit=2048, validators=[required("Enter the SMTP server's URL, such as "
                                                          "smtp://mailer@mail.example.org:587?starttls=require.")])
    smtp_password = TextField(limit=500, strip=False)   # write-only: empty keeps the stored password
    smtp_from = TextField(limit=320)


class AdminEmailsForm(AdminForm):
    admin_emails = TextField(limit=20_000)

    def addresses(self) -> list[str]:
        return [a for a in re.split(r"[\s,;]+", self.admin_emails.data or "") if a]


class TestEmailForm(AdminForm):
    to = TextField(limit=320, validators=[required("Enter the address to send the test email to.")])
